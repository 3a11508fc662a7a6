package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/internal/keyfile"
	"github.com/fedq/fedq/protocol"
)

// federation is an in-process coordinator on 127.0.0.1 with a submitted task.
type federation struct {
	t    *testing.T
	dir  string
	addr string
	adm  *coordinator.AdminClient
}

const blobsTask = `{"name": "blobs", "dataset": "blobs",
  "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 8}, {"type": "relu"}, {"type": "dense", "out": 2}]},
  "train": {"epochs": 1, "batch": 8, "lr": 0.1}, "agents_per_round": 2, "quorum": 2,
  "deadlines": {"configure": "5s", "train": "20s"}, "seed": 3}`

func newFederation(t *testing.T) *federation {
	t.Helper()
	dir := t.TempDir()
	if _, err := ca.Init(dir, ca.InitOptions{Addr: "127.0.0.1:4433"}); err != nil {
		t.Fatal(err)
	}
	srv, err := coordinator.Listen(coordinator.Config{Dir: dir, Listen: "127.0.0.1:0", Heartbeat: time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})
	f := &federation{t: t, dir: dir, addr: srv.Addr().String()}
	if f.adm, err = coordinator.DialAdmin(ctx, dir, f.addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.adm.Close() })
	if _, err := f.adm.SubmitTask(ctx, json.RawMessage(blobsTask)); err != nil {
		t.Fatal(err)
	}
	return f
}

// blobs is a small separable dataset: two Gaussian blobs in 4 dimensions.
func blobs(n int, seed uint64) *dataset.Dataset {
	r := rand.New(rand.NewPCG(seed, 5))
	d := &dataset.Dataset{Name: "blobs", Shape: []int{4}, NumClasses: 2}
	for range n {
		y := r.IntN(2)
		c := float32(2*y - 1)
		d.X = append(d.X, c+float32(r.NormFloat64())*0.5, -c+float32(r.NormFloat64())*0.5, float32(r.NormFloat64()), c)
		d.Y = append(d.Y, int32(y))
	}
	return d
}

// agent starts a training agent offering "blobs".
func (f *federation) agent(name string, seed uint64) {
	t := f.t
	auth, err := ca.Load(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := auth.CreateToken(name, time.Hour, f.addr, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id, err := agent.Enroll(context.Background(), t.TempDir(), tok, agent.EnrollOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	data := blobs(200, seed)
	connected := make(chan struct{}, 1)
	d, err := agent.New(agent.Config{Identity: id, Logger: quietLogger(), Data: map[string]*dataset.Dataset{"blobs": data},
		Capabilities: protocol.Capabilities{Backend: "cpu", Datasets: agent.Describe([]*agent.LocalData{{Name: "blobs", Data: data}})},
		Backoff:      agent.Backoff{Min: 50 * time.Millisecond, Max: 400 * time.Millisecond},
		OnEvent: func(e agent.Event) {
			if e.Kind == agent.Connected {
				select {
				case connected <- struct{}{}:
				default:
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatalf("agent %s did not connect", name)
	}
}

// A version pulled from a real coordinator verifies: its signature, and the SHA-256 of
// its weights as this package hashes them is the hash the coordinator signed.
func TestPullFromCoordinator(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	p := &Puller{Dir: f.dir, Addr: f.addr, Task: "blobs"}
	defer p.Close()
	v, err := p.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Pull(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header == nil || m.Version != v.Number || protocol.HashWeights(m.Net.Values()) != v.Hash || m.Header.Hash != v.Hash || m.Task != "blobs" {
		t.Fatalf("pulled %+v (header %+v), version %+v", m, m.Header, v)
	}
	s := New(Options{Logger: quietLogger()})
	if err := s.Swap("blobs", m); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s)
	code, resp, err := post(http.DefaultClient, url+"/v2/models/blobs/infer", inferBody([]float32{1, -1, 0, 1}, 1, []int{4}, ""))
	if err != nil || code != 200 || resp.ModelVersion != fmt.Sprint(v.Number) {
		t.Fatalf("infer: %d %+v %v", code, resp, err)
	}
}

// logBuffer collects log lines for a test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Follow serves the first version, then swaps in each version rounds commit.
func TestFollowSwapsNewVersions(t *testing.T) {
	f := newFederation(t)
	for i := range 2 {
		f.agent(fmt.Sprintf("site-%d", i), uint64(i))
	}
	s := New(Options{Logger: quietLogger()})
	url := startServer(t, s)
	var logs logBuffer
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan error, 1)
	go func() {
		followed <- Follow(ctx, s, "blobs", &Puller{Dir: f.dir, Addr: f.addr, Task: "blobs"}, 20*time.Millisecond,
			slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	defer func() {
		cancel()
		if err := <-followed; err != nil {
			t.Errorf("Follow: %v", err)
		}
	}()
	waitFor(t, 10*time.Second, func() bool { _, ok := s.Current("blobs"); return ok }, "the first version")
	first, _ := s.Current("blobs")
	if _, err := f.adm.StartRounds(ctx, "blobs", 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool { v, _ := s.Current("blobs"); return v == first+2 }, "two new versions")
	code, resp, err := post(http.DefaultClient, url+"/v2/models/blobs/infer", inferBody([]float32{1, -1, 0, 1}, 1, []int{4}, ""))
	if err != nil || code != 200 || resp.ModelVersion != fmt.Sprint(first+2) {
		t.Fatalf("infer after follow: %d %+v %v", code, resp, err)
	}
	if strings.Contains(logs.String(), "refusing") {
		t.Fatalf("a good version was refused:\n%s", logs.String())
	}
}

// A version that does not verify (here: signed by a key other than the one the admin
// directory trusts) is refused with a clear log line, and the model being served stays.
func TestFollowRefusesUnverifiedVersion(t *testing.T) {
	f := newFederation(t)
	auth, err := ca.Load(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	ops := t.TempDir()
	if err := auth.WriteAdminCert(ops, "ops", time.Now()); err != nil {
		t.Fatal(err)
	}
	pem, err := keyfile.PublicKeyPEM(testKey(9).Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ops, ca.SigningPubFile), pem, 0o644); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Logger: quietLogger()})
	old, _ := model(t, blobsSpec(t), 1, 0)
	if err := s.Swap("blobs", old); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s)
	var logs logBuffer
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan error, 1)
	go func() {
		followed <- Follow(ctx, s, "blobs", &Puller{Dir: ops, Addr: f.addr, Task: "blobs"}, 20*time.Millisecond,
			slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), "refusing") }, "the refusal")
	time.Sleep(100 * time.Millisecond) // more polls: the refused version is not tried again
	cancel()
	if err := <-followed; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "refusing"); n != 1 || !strings.Contains(out, "signature does not verify") {
		t.Fatalf("%d refusals; logs:\n%s", n, out)
	}
	code, resp, err := post(http.DefaultClient, url+"/v2/models/blobs/infer", inferBody([]float32{1, -1, 0, 1}, 1, []int{4}, ""))
	if err != nil || code != 200 || resp.ModelVersion != "0" {
		t.Fatalf("the old model stopped serving: %d %+v %v", code, resp, err)
	}
}

// blobsSpec is the model of blobsTask.
func blobsSpec(t testing.TB) compute.Spec {
	t.Helper()
	sp, err := compute.ParseSpec([]byte(`{"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 8}, {"type": "relu"}, {"type": "dense", "out": 2}]}`))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}
