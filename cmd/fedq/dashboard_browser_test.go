package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator/dashboard"
)

// chromiumFlags are those the machine notes prescribe for headless Chromium as root on
// a closed network.
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1700"}

// artifactDir is where the browser test leaves its screenshot: $FEDQ_ARTIFACTS, or
// bin/artifacts at the top of the repository.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("FEDQ_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "bin", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboardInBrowser runs `fedq sim --dashboard` in-process, waits for its rounds,
// loads the dashboard in headless Chromium and checks that the accuracy chart the
// page's script drew has a point for every round that ran; it saves a screenshot.
func TestDashboardInBrowser(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium): no browser test")
	}
	if _, err := dataset.MNISTDir(); err != nil {
		t.Skipf("no MNIST (make data): %v", err)
	}
	const rounds = 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stdout bytes.Buffer
	exited := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"fedq", "sim", "--agents", "6", "--fraction", "0.5", "--rounds", "3", "--batch", "50",
			"--model", `{"input":[1,28,28],"classes":10,"layers":[{"type":"flatten"},{"type":"dense","out":10}]}`,
			"--dashboard", "127.0.0.1:0", "--dashboard-hold"}, &stdout, pw)
		pw.Close()
		exited <- code
	}()
	urls := make(chan string, 1)
	var stderr bytes.Buffer
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			stderr.WriteString(line + "\n")
			if u, ok := strings.CutPrefix(line, "dashboard: "); ok {
				urls <- u
			}
		}
	}()
	var pageURL string
	select {
	case pageURL = <-urls:
	case code := <-exited:
		<-stderrDone
		t.Fatalf("fedq sim exited with %d before serving its dashboard: %s", code, stderr.String())
	case <-time.After(2 * time.Minute):
		t.Fatal("no dashboard address from fedq sim within 2 minutes")
	}
	base, token, ok := strings.Cut(pageURL, "?token=")
	if !ok {
		t.Fatalf("dashboard line %q has no token", pageURL)
	}

	// Wait for the rounds through the API (with the token), and check the token is needed.
	api := func(path, tok string) (int, []byte) {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	if code, _ := api("api/tasks/sim", "wrong-token-wrong-token"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code, body := api("api/tasks/nope", token); code != http.StatusNotFound || !strings.Contains(string(body), `no task \"nope\"`) {
		t.Errorf("unknown task: %d %s, want 404 with a message", code, body)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, body := api("api/tasks/sim", token)
		var task dashboard.Task
		if code == http.StatusOK && json.Unmarshal(body, &task) == nil && task.Status == "done" && task.Round == rounds {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the simulation did not finish its %d rounds: %d %s", rounds, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	chromium := func(args ...string) string {
		cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
		defer ccancel()
		args = append(append(append([]string{}, chromiumFlags...), "--user-data-dir="+t.TempDir(), "--virtual-time-budget=8000"), args...)
		out, err := exec.CommandContext(cctx, browser, append(args, pageURL)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	dom := chromium("--dump-dom")
	svg := regexp.MustCompile(`<svg id="chart-accuracy"[^>]*>`).FindString(dom)
	if svg == "" {
		t.Fatalf("no accuracy chart in the page's DOM:\n%s", dom)
	}
	if !strings.Contains(svg, `data-rounds="1,2,3"`) || !strings.Contains(svg, `data-points="3"`) {
		t.Errorf("accuracy chart %s: want rounds 1,2,3 drawn", svg)
	}
	if n := strings.Count(dom, `class="pt s-accuracy"`); n != rounds {
		t.Errorf("%d points on the accuracy chart, want %d", n, rounds)
	}
	if !strings.Contains(dom, `data-loaded="true"`) || !regexp.MustCompile(`<span id="error" class="error" hidden=""></span>`).MatchString(dom) {
		t.Errorf("the page did not load its data, or shows an error:\n%s", dom)
	}
	shot := filepath.Join(artifactDir(t), "dashboard.png")
	chromium("--screenshot=" + shot)
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)

	cancel()
	if code := <-exited; code != 0 {
		<-stderrDone
		t.Fatalf("fedq sim exited with %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "final accuracy") {
		t.Errorf("fedq sim printed no result: %s", stdout.String())
	}
}
