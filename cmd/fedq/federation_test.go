package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
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
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	coordDone := make(chan int, 1)
	go func() {
		coordDone <- runQuiet(ctx, "--log-level", "error", "coordinator", "run", "--dir", coord, "--heartbeat", "1s")
	}()
	var agentDone []chan int
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
		done := make(chan int, 1)
		agentDone = append(agentDone, done)
		go func() {
			done <- runQuiet(ctx, "--log-level", "error", "agent", "run", "--dir", adir, "--data", "blobs="+csv)
		}()
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
	stop()
	for _, d := range append(agentDone, coordDone) {
		if code := <-d; code != 0 {
			t.Errorf("a daemon exited with %d", code)
		}
	}
}

// runQuiet runs the CLI with its output discarded (daemons).
func runQuiet(ctx context.Context, args ...string) int {
	var sink strings.Builder
	return run(ctx, append([]string{"fedq"}, args...), &sink, &sink)
}
