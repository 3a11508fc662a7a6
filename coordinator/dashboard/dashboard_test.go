package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testToken = "0123456789abcdef0123456789abcdef"

// fakeSource is a Source with one task, "mnist".
type fakeSource struct{}

func (fakeSource) Overview(context.Context) (Overview, error) {
	return Overview{Online: 3, Enrolled: 4, Tasks: []TaskSummary{{Name: "mnist", Status: "running", Version: 3, Round: 2}}}, nil
}

func (fakeSource) Task(_ context.Context, name string) (Task, error) {
	if name != "mnist" {
		return Task{}, fmt.Errorf("no task %q on this coordinator: %w", name, ErrNotFound)
	}
	t0 := time.Unix(1700000000, 0).UTC()
	return Task{TaskSummary: TaskSummary{Name: "mnist", Version: 3, Round: 2},
		Versions: []VersionPoint{{Number: 1}, {Number: 2, Round: 1, Metrics: map[string]float64{"accuracy": 0.8}},
			{Number: 3, Round: 2, Metrics: map[string]float64{"accuracy": 0.9}}},
		Rounds: []RoundSpan{{Round: 1, Attempt: 1, Outcome: "committed", Started: t0, Ended: t0.Add(time.Second),
			Phases: []PhaseSpan{{Phase: "configure", Start: t0, End: t0.Add(100 * time.Millisecond)}}}}}, nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestHandler(t *testing.T, public bool) http.Handler {
	t.Helper()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("fedq_up 1\n")) })
	h, err := New(Config{Source: fakeSource{}, Token: testToken, Metrics: metrics, PublicMetrics: public, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRoutesAndAuth(t *testing.T) {
	type req struct {
		path, bearer, cookie string
		public               bool
	}
	cases := []struct {
		name     string
		req      req
		code     int
		contains string // in the body
	}{
		{"no token", req{path: "/api/tasks"}, 401, "missing admin token"},
		{"wrong token", req{path: "/api/tasks", bearer: "not-the-token-at-all"}, 401, "wrong admin token"},
		{"wrong token in the query", req{path: "/api/tasks?token=nope"}, 401, "wrong admin token"},
		{"wrong cookie", req{path: "/api/tasks", cookie: testToken + "x"}, 401, "wrong admin token"},
		{"page without token", req{path: "/"}, 401, "token"},
		{"static without token", req{path: "/static/app.js"}, 401, "token"},
		{"metrics without token", req{path: "/metrics"}, 401, "token"},
		{"bearer", req{path: "/api/tasks", bearer: testToken}, 200, `"online":3`},
		{"cookie", req{path: "/api/tasks", cookie: testToken}, 200, `"enrolled":4`},
		{"query on the API", req{path: "/api/tasks?token=" + testToken}, 200, `"name":"mnist"`},
		{"task", req{path: "/api/tasks/mnist", bearer: testToken}, 200, `"accuracy":0.9`},
		{"unknown task", req{path: "/api/tasks/cifar", bearer: testToken}, 404, `no task \"cifar\" on this coordinator`},
		{"unknown endpoint", req{path: "/api/agents", bearer: testToken}, 404, "no API endpoint GET /api/agents"},
		{"page", req{path: "/", cookie: testToken}, 200, `<svg id="chart-accuracy"`},
		{"script", req{path: "/static/app.js", cookie: testToken}, 200, "function drawAccuracy"},
		{"style", req{path: "/static/style.css", cookie: testToken}, 200, ".chart"},
		{"metrics with token", req{path: "/metrics", bearer: testToken}, 200, "fedq_up 1"},
		{"public metrics", req{path: "/metrics", public: true}, 200, "fedq_up 1"},
		{"health needs no token", req{path: "/healthz"}, 200, "ok"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, tc.req.public)
			r := httptest.NewRequest("GET", tc.req.path, nil)
			if tc.req.bearer != "" {
				r.Header.Set("Authorization", "Bearer "+tc.req.bearer)
			}
			if tc.req.cookie != "" {
				r.AddCookie(&http.Cookie{Name: cookieName, Value: tc.req.cookie})
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.contains) {
				t.Fatalf("GET %s: %d %q, want %d containing %q", tc.req.path, w.Code, w.Body.String(), tc.code, tc.contains)
			}
			if tc.code == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if strings.HasPrefix(tc.req.path, "/api/") {
				if ct := w.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				var body map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
					t.Errorf("body is not a JSON object: %v", err)
				}
			}
		})
	}
}

func TestTokenInQuerySetsCookieAndRedirects(t *testing.T) {
	h := newTestHandler(t, false)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/?token="+testToken, nil))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Fatalf("got %d to %q, want 303 to /", w.Code, w.Header().Get("Location"))
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != cookieName || cookies[0].Value != testToken || !cookies[0].HttpOnly {
		t.Fatalf("cookies %v", cookies)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := New(Config{Token: testToken}); err == nil {
		t.Error("no source: accepted")
	}
	if _, err := New(Config{Source: fakeSource{}, Token: "short"}); err == nil {
		t.Error("short token: accepted")
	}
}

func TestLoadOrCreateToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), TokenFile)
	tok, err := LoadOrCreateToken(path)
	if err != nil || len(tok) != 64 {
		t.Fatalf("token %q, %v", tok, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v", err, st.Mode())
	}
	again, err := LoadOrCreateToken(path)
	if err != nil || again != tok {
		t.Fatalf("second load: %q, %v; want %q", again, err, tok)
	}
	if err := os.WriteFile(path, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateToken(path); err == nil {
		t.Error("a 3-character token was accepted")
	}
}

func TestServeShutsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, newTestHandler(t, false)) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestPlotCurves(t *testing.T) {
	var vs []VersionPoint
	for r := range 6 {
		vs = append(vs, VersionPoint{Number: uint64(r + 1), Round: uint64(r),
			Metrics: map[string]float64{"accuracy": 0.5 + 0.08*float64(r), "test_loss": 1 / float64(r+1), "train_loss": 1.2 / float64(r+1)}})
	}
	var buf bytes.Buffer
	if err := PlotCurves(&buf, vs, PlotOptions{Title: "test", Target: 0.9}); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 768 || b.Dy() != 672 {
		t.Errorf("image %v, want 768×672 (8×7 in at 96 dpi)", b)
	}
	if err := PlotCurves(io.Discard, []VersionPoint{{Number: 1}}, PlotOptions{}); err == nil {
		t.Error("a plot without metrics: no error")
	}
}

// FuzzRequest checks that no request without the token gets anything but /healthz, and
// that no request makes the handler panic.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{"/", "/api/tasks", "/api/tasks/mnist", "/metrics", "/static/app.js", "/healthz", "/api/tasks/%2e%2e"} {
		f.Add(s, "", "")
		f.Add(s, "Bearer "+testToken[:31], "fedq_dashboard_token="+testToken+"0")
	}
	h, err := New(Config{Source: fakeSource{}, Token: testToken, Metrics: http.NotFoundHandler(), Logger: quiet()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path, authz, cookie string) {
		r, err := http.NewRequest("GET", "http://127.0.0.1"+path, nil)
		if err != nil || r.URL.Path == "" {
			return
		}
		r.Header.Set("Authorization", authz)
		r.Header.Set("Cookie", cookie)
		if strings.Contains(path+authz+cookie, testToken) {
			return
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code < 300 && r.URL.Path != "/healthz" {
			t.Fatalf("GET %q (Authorization %q, Cookie %q) without the token: %d", path, authz, cookie, w.Code)
		}
	})
}
