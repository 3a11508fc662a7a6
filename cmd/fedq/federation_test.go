package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFederationCLI drives a whole federation through the command line, in process: CA,
// token, coordinator, two enrolled agents with CSV data, a task, rounds, versions, a
// model pull verified and evaluated.
func TestFederationCLI(t *testing.T) {
	dir := t.TempDir()
	coord := filepath.Join(dir, "coord")
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := uc.LocalAddr().String()
	uc.Close()
	mustRun := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("fedq %v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	mustRun("ca", "init", "--dir", coord, "--addr", addr)
	// The daemons run as child processes of this test binary (urfave/cli keeps global
	// state, so two apps may not run at once in one process).
	daemons := []*exec.Cmd{daemon(t, "--log-level", "error", "coordinator", "run", "--dir", coord, "--heartbeat", "1s")}
	for i, name := range []string{"east", "west"} {
		var tok struct{ Token string }
		if err := json.Unmarshal([]byte(mustRun("token", "create", "--dir", coord, "--name", name, "--json")), &tok); err != nil {
			t.Fatal(err)
		}
		adir := filepath.Join(dir, name)
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, _, errOut := runCLI(t, "agent", "enroll", "--token", tok.Token, "--dir", adir)
			if code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("enroll %s: %s", name, errOut)
			}
			time.Sleep(200 * time.Millisecond)
		}
		csv := filepath.Join(dir, name+".csv")
		writeBlobs(t, csv, 300, uint64(i+1))
		daemons = append(daemons, daemon(t, "--log-level", "error", "agent", "run", "--dir", adir, "--data", "blobs="+csv))
	}
	waitOnline := time.Now().Add(20 * time.Second)
	for {
		var st struct{ Online int }
		_ = json.Unmarshal([]byte(mustRun("status", "--dir", coord, "--json")), &st)
		if st.Online == 2 {
			break
		}
		if time.Now().After(waitOnline) {
			t.Fatal("agents did not come online")
		}
		time.Sleep(100 * time.Millisecond)
	}
	spec := filepath.Join(dir, "task.json")
	if err := os.WriteFile(spec, []byte(`{"name": "blobs", "dataset": "blobs",
	  "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 8}, {"type": "relu"}, {"type": "dense", "out": 2}]},
	  "train": {"epochs": 2, "batch": 8, "lr": 0.1}, "agents_per_round": 2, "rounds": 3, "seed": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun("task", "submit", "--dir", coord, spec)
	if out := mustRun("round", "start", "--dir", coord, "--task", "blobs", "--watch"); !strings.Contains(out, "3 rounds done") {
		t.Fatalf("round start --watch: %q", out)
	}
	var vs []struct {
		Number uint64
		Round  uint64
	}
	if err := json.Unmarshal([]byte(mustRun("versions", "--dir", coord, "--task", "blobs", "--json")), &vs); err != nil || len(vs) != 4 {
		t.Fatalf("versions: %v %v", vs, err)
	}
	model := filepath.Join(dir, "global.safetensors")
	mustRun("model", "pull", "--dir", coord, "--version", "latest", "-o", model)
	test := filepath.Join(dir, "test.csv")
	writeBlobs(t, test, 200, 9)
	var ev struct {
		TestAccuracy float64 `json:"test_accuracy"`
	}
	out := mustRun("eval", "--model", model, "--dataset", filepath.Join(dir, "east.csv"), "--label-column", "label", "--test", test, "--json")
	if err := json.Unmarshal([]byte(out), &ev); err != nil || ev.TestAccuracy < 0.9 {
		t.Fatalf("the federated model's accuracy: %s (%v)", out, err)
	}
	if code, _, errOut := runCLI(t, "model", "pull", "--dir", coord, "--version", "99", "-o", model); code == 0 || !strings.Contains(errOut, "no version 99") {
		t.Fatalf("pull of a missing version: exit %d %s", code, errOut)
	}
	for i := len(daemons) - 1; i >= 0; i-- { // agents first, then the coordinator
		d := daemons[i]
		_ = d.Process.Signal(os.Interrupt)
		if err := d.Wait(); err != nil {
			t.Errorf("fedq %v: %v", d.Args[2:], err)
		}
	}
}

// TestMain lets the test binary run the CLI as a child process: with FEDQ_TEST_CLI set,
// it runs fedq with the arguments after "--" until interrupted.
func TestMain(m *testing.M) {
	if os.Getenv("FEDQ_TEST_CLI") != "" {
		args := os.Args
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		code := run(ctx, append([]string{"fedq"}, args...), os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// daemon starts fedq with args in a child process, killed when the test ends.
func daemon(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "FEDQ_TEST_CLI=1")
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}
