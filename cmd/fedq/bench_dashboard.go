package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fedq/fedq/coordinator/dashboard"
)

// freeTCPAddrNow returns a loopback address with a free TCP port.
func freeTCPAddrNow() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// dashboardProbe measures how long the coordinator's dashboard takes to answer, by
// GETting its endpoints one after another with a pause between rounds of requests.
type dashboardProbe struct {
	base, token string
	paths       []string
	client      *http.Client

	mu     sync.Mutex
	lat    map[string][]time.Duration
	errors map[string]int
}

func newDashboardProbe(addr, dir string, paths ...string) (*dashboardProbe, error) {
	raw, err := os.ReadFile(filepath.Join(dir, dashboard.TokenFile))
	if err != nil {
		return nil, fmt.Errorf("dashboard token: %w", err)
	}
	return &dashboardProbe{base: "http://" + addr, token: strings.TrimSpace(string(raw)), paths: paths,
		client: &http.Client{Timeout: 30 * time.Second}, lat: map[string][]time.Duration{}, errors: map[string]int{}}, nil
}

// get times one request; a failure or an answer other than 200 counts as an error.
func (p *dashboardProbe) get(ctx context.Context, path string) {
	req, err := http.NewRequestWithContext(ctx, "GET", p.base+path, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	start := time.Now()
	resp, err := p.client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s", resp.Status)
		}
	}
	d := time.Since(start)
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.errors[path]++
		return
	}
	p.lat[path] = append(p.lat[path], d)
}

// sample requests every path n times, or until ctx is done when n is 0, pausing
// between rounds of requests.
func (p *dashboardProbe) sample(ctx context.Context, n int, pause time.Duration) {
	for i := 0; n == 0 || i < n; i++ {
		for _, path := range p.paths {
			p.get(ctx, path)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// report summarises the latencies per path, and resets them.
func (p *dashboardProbe) report() map[string]map[string]float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]map[string]float64{}
	for _, path := range p.paths {
		ls := p.lat[path]
		slices.Sort(ls)
		q := func(f float64) float64 {
			if len(ls) == 0 {
				return 0
			}
			return float64(ls[min(len(ls)-1, int(f*float64(len(ls))))].Microseconds()) / 1000
		}
		out[path] = map[string]float64{"requests": float64(len(ls)), "errors": float64(p.errors[path]),
			"p50_ms": q(0.5), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": q(1)}
	}
	p.lat, p.errors = map[string][]time.Duration{}, map[string]int{}
	return out
}

// printDashboardReport writes one line per path.
func printDashboardReport(w io.Writer, when string, rep map[string]map[string]float64) {
	for _, path := range slices.Sorted(func(yield func(string) bool) {
		for k := range rep {
			if !yield(k) {
				return
			}
		}
	}) {
		r := rep[path]
		fmt.Fprintf(w, "dashboard %s: GET %-16s %4.0f requests, %2.0f errors: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms\n",
			when, path, r["requests"], r["errors"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"])
	}
}
