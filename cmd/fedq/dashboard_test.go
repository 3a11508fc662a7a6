package main

import (
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/dashboard"
	"github.com/fedq/fedq/coordinator/store"
)

// freeTCPAddr returns a loopback address with a free TCP port.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestCoordinatorHTTPAndPlot runs `fedq coordinator run --http` in a child process and
// checks its dashboard's token, API and metrics, then `fedq plot` over the admin API
// and, with the coordinator stopped, from its state file.
func TestCoordinatorHTTPAndPlot(t *testing.T) {
	dir := t.TempDir()
	coord := filepath.Join(dir, "coord")
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := uc.LocalAddr().String()
	uc.Close()
	if code, _, errOut := runCLI(t, "ca", "init", "--dir", coord, "--addr", addr); code != 0 {
		t.Fatal(errOut)
	}
	web := freeTCPAddr(t)
	d := daemon(t, "--log-level", "error", "coordinator", "run", "--dir", coord, "--http", web)
	base := "http://" + web
	get := func(path, token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if code, _ := get("/healthz", ""); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dashboard did not come up")
		}
	}
	tokenFile := filepath.Join(coord, dashboard.TokenFile)
	st, err := os.Stat(tokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v (mode %v)", err, st.Mode())
	}
	raw, _ := os.ReadFile(tokenFile)
	token := strings.TrimSpace(string(raw))

	spec := filepath.Join(dir, "task.json")
	if err := os.WriteFile(spec, []byte(`{"name": "blobs", "dataset": "blobs",
	  "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 2}]},
	  "train": {"epochs": 1, "batch": 8, "lr": 0.1}, "agents_per_round": 2, "seed": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "task", "submit", "--dir", coord, spec); code != 0 {
		t.Fatal(errOut)
	}
	cases := []struct {
		path, token string
		code        int
		contains    string
	}{
		{"/api/tasks", "", 401, "missing admin token"},
		{"/api/tasks", "0123456789abcdef-wrong", 401, "wrong admin token"},
		{"/metrics", "", 401, "token"},
		{"/api/tasks", token, 200, `"name":"blobs"`},
		{"/api/tasks/blobs", token, 200, `"versions":[{"number":1`},
		{"/api/tasks/nope", token, 404, `no task \"nope\" on this coordinator`},
		{"/", token, 200, "chart-accuracy"},
	}
	for _, tc := range cases {
		if code, body := get(tc.path, tc.token); code != tc.code || !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s (token %q): %d %s, want %d with %q", tc.path, tc.token, code, body, tc.code, tc.contains)
		}
	}
	code, body := get("/metrics", token)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if code != 200 || err != nil {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	if f := fams["fedq_task_version"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("fedq_task_version: %v", f)
	}

	png1 := filepath.Join(dir, "online.png")
	if code, _, errOut := runCLI(t, "plot", "--dir", coord, "--task", "nope", "-o", png1); code == 0 || !strings.Contains(errOut, `no task "nope"`) {
		t.Errorf("plot of an unknown task: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "plot", "--dir", coord, "--task", "blobs", "-o", png1); code == 0 || !strings.Contains(errOut, "no version has accuracy or loss") {
		t.Errorf("plot of a task without rounds: exit %d: %s", code, errOut)
	}
	_ = d.Process.Signal(os.Interrupt)
	if err := d.Wait(); err != nil {
		t.Fatalf("coordinator: %v", err)
	}

	// Offline: two rounds' versions written straight into the stopped coordinator's
	// store, then plotted from it.
	s, err := store.Open(filepath.Join(coord, coordinator.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	for r := uint64(1); r <= 2; r++ {
		v := store.Version{Number: r + 1, Parent: r, Task: "blobs", Round: r, Params: 10, Created: time.Now(),
			Metrics: map[string]float64{"accuracy": 0.5 + 0.2*float64(r), "test_loss": 1 / float64(r), "train_loss": 1.1 / float64(r)}}
		if _, err := s.Commit(store.RoundRecord{Task: "blobs", Round: r, Attempt: 1, TaskID: "x", Started: time.Now()}, v); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	png2 := filepath.Join(dir, "offline.png")
	code, out, errOut := runCLI(t, "plot", "--offline", "--dir", coord, "--task", "blobs", "-o", png2)
	if code != 0 || !strings.Contains(out, "3 versions of blobs") {
		t.Fatalf("plot --offline: exit %d: %s %s", code, out, errOut)
	}
	f, err := os.Open(png2)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Fatalf("plot --offline wrote no PNG: %v", err)
	}
}
