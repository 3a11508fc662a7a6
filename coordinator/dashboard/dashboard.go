// Package dashboard is the coordinator's web dashboard: a JSON API over a Source (the
// coordinator, or a fake in tests), a page that draws it, and the coordinator's
// Prometheus metrics, on one HTTP handler. `fedq coordinator run --http ADDR` and
// `fedq sim --dashboard ADDR` serve it; it also renders the accuracy and loss curves to
// PNG for `fedq plot` and `fedq sim --plot`.
//
// Decisions:
//
//   - One admin token guards everything but /healthz: a random 256-bit secret that the
//     coordinator keeps in a file of its directory (dashboard.token, mode 0600, made on
//     first use). A client presents it as "Authorization: Bearer TOKEN", as the cookie
//     fedq_dashboard_token, or once as ?token=TOKEN on the page, which sets the cookie
//     (HttpOnly, SameSite=Strict) and redirects to the bare URL. A missing or wrong
//     token is 401. Tokens are compared in constant time.
//   - /metrics needs the token too by default (Prometheus sends it with
//     `authorization: {credentials_file: …}`); Config.PublicMetrics opens it, for a
//     scraper on a trusted network.
//   - The page polls the JSON API every two seconds (Server-Sent Events would save
//     little at this rate and complicate proxies). Its script, style and charts are
//     hand-written, embedded in the binary and drawn as SVG: nothing is loaded from
//     another origin, and the Content-Security-Policy says so.
//   - Routes use Go 1.22's method and wildcard patterns: GET /, GET /static/…,
//     GET /api/tasks, GET /api/tasks/{name}, GET /metrics, GET /healthz. An unknown
//     task is 404 with a JSON message.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// TokenFile is the name of the dashboard's token file in a coordinator's directory.
const TokenFile = "dashboard.token"

// cookieName is the cookie that carries the token in a browser.
const cookieName = "fedq_dashboard_token"

// Config configures the dashboard's handler.
type Config struct {
	// Source is what the dashboard shows (required).
	Source Source
	// Token is the admin token every request but /healthz must present (required).
	Token string
	// Metrics serves GET /metrics (nil: 404).
	Metrics http.Handler
	// PublicMetrics serves /metrics without the token.
	PublicMetrics bool
	// Logger receives errors (default slog.Default()).
	Logger *slog.Logger
}

// handler is the dashboard.
type handler struct {
	cfg   Config
	token [32]byte // SHA-256 of the token: compared in constant time
	mux   *http.ServeMux
}

// New returns the dashboard's HTTP handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Source == nil {
		return nil, errors.New("dashboard: no source")
	}
	if len(cfg.Token) < 16 {
		return nil, errors.New("dashboard: the token must have at least 16 characters")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &handler{cfg: cfg, token: sha256.Sum256([]byte(cfg.Token)), mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	h.mux.Handle("GET /{$}", h.auth(http.HandlerFunc(h.index)))
	h.mux.Handle("GET /static/", h.auth(http.FileServerFS(static)))
	h.mux.Handle("GET /api/tasks", h.auth(http.HandlerFunc(h.overview)))
	h.mux.Handle("GET /api/tasks/{name}", h.auth(http.HandlerFunc(h.task)))
	h.mux.Handle("/api/", h.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.error(w, http.StatusNotFound, fmt.Sprintf("no API endpoint %s %s: try GET /api/tasks or GET /api/tasks/{name}", r.Method, r.URL.Path))
	})))
	if cfg.Metrics != nil {
		m := cfg.Metrics
		if !cfg.PublicMetrics {
			m = h.auth(m)
		}
		h.mux.Handle("GET /metrics", m)
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	hd.Set("Referrer-Policy", "no-referrer")
	h.mux.ServeHTTP(w, r)
}

// presented returns the token a request carries, and whether it came in the query.
func presented(r *http.Request) (string, bool) {
	if a := r.Header.Get("Authorization"); a != "" {
		if tok, ok := strings.CutPrefix(a, "Bearer "); ok {
			return strings.TrimSpace(tok), false
		}
		return "", false
	}
	if tok := r.URL.Query().Get("token"); tok != "" {
		return tok, true
	}
	if c, err := r.Cookie(cookieName); err == nil {
		return c.Value, false
	}
	return "", false
}

// valid reports whether tok is the token, in constant time.
func (h *handler) valid(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	return tok != "" && subtle.ConstantTimeCompare(sum[:], h.token[:]) == 1
}

// auth lets through requests that present the token; the page, given it in the query,
// keeps it in a cookie and drops it from the address.
func (h *handler) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, inQuery := presented(r)
		if !h.valid(tok) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fedq"`)
			msg := "missing admin token: open the dashboard as /?token=TOKEN (the token is in the coordinator's dashboard.token file) or send Authorization: Bearer TOKEN"
			if tok != "" {
				msg = "wrong admin token: use the one in the coordinator's dashboard.token file"
			}
			h.error(w, http.StatusUnauthorized, msg)
			return
		}
		if inQuery && r.URL.Path == "/" {
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// index serves the page.
func (h *handler) index(w http.ResponseWriter, _ *http.Request) {
	page, err := fs.ReadFile(static, "static/index.html")
	if err != nil {
		h.error(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(page)
}

// overview serves GET /api/tasks.
func (h *handler) overview(w http.ResponseWriter, r *http.Request) {
	ov, err := h.cfg.Source.Overview(r.Context())
	if err != nil {
		h.cfg.Logger.Error("dashboard: overview", "err", err)
		h.error(w, http.StatusInternalServerError, err.Error())
		return
	}
	h.json(w, http.StatusOK, ov)
}

// task serves GET /api/tasks/{name}.
func (h *handler) task(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	t, err := h.cfg.Source.Task(r.Context(), name)
	switch {
	case errors.Is(err, ErrNotFound):
		h.error(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		h.cfg.Logger.Error("dashboard: task", "task", name, "err", err)
		h.error(w, http.StatusInternalServerError, err.Error())
		return
	}
	h.json(w, http.StatusOK, t)
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

func (h *handler) error(w http.ResponseWriter, code int, msg string) {
	h.json(w, code, apiError{Error: msg})
}

func (h *handler) json(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		h.cfg.Logger.Debug("dashboard: write answer", "err", err)
	}
}

// NewToken returns a fresh random token: 64 hexadecimal digits.
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// LoadOrCreateToken reads the token from path, or makes one there (mode 0600) if the
// file does not exist.
func LoadOrCreateToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(data))
		if len(tok) < 16 {
			return "", fmt.Errorf("dashboard token %s: shorter than 16 characters; delete the file to have a new one made", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("dashboard token: %w", err)
	}
	tok := NewToken()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("dashboard token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("dashboard token %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("dashboard token %s: %w", path, err)
	}
	return tok, nil
}

// Serve answers HTTP requests on ln with h until ctx is done, then shuts down, giving
// requests in flight up to five seconds.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("dashboard: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-done
	if err != nil {
		return fmt.Errorf("dashboard: shut down: %w", err)
	}
	return nil
}
