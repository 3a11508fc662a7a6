package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedq/fedq/compute"
)

// Defaults of Options.
const (
	DefaultMaxBatch        = 64
	DefaultMaxWait         = 2 * time.Millisecond
	DefaultMaxQueue        = 1024
	DefaultMaxBody         = 8 << 20
	DefaultShutdownTimeout = 10 * time.Second
)

// Options configure a Server. Zero values take the defaults above.
type Options struct {
	// MaxBatch is the most samples one forward pass runs (a single larger request runs
	// alone).
	MaxBatch int
	// MaxWait is the longest a batch waits for more requests after its first one.
	MaxWait time.Duration
	// Workers is how many forward passes of a model may run at once, each on its own
	// replica of the network (compute.Model.Replica: the weights are shared, each has its
	// own activations); 0 means runtime.GOMAXPROCS. One worker gathers a batch while the
	// others run theirs.
	Workers int
	// MaxQueue is how many requests may wait for a model's workers; more are refused
	// with 503.
	MaxQueue int
	// MaxBody bounds an infer request's body in bytes; a larger one is refused with 413.
	MaxBody int64
	// Rate limits each client (by remote IP) to this many infer requests a second, with
	// bursts of Burst (default: Rate rounded up); 0 means no limit. Over it: 429.
	Rate  float64
	Burst int
	// ShutdownTimeout bounds how long Serve waits for requests in flight when its
	// context ends.
	ShutdownTimeout time.Duration
	// Version is the server version GET /v2 reports.
	Version string
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxWait <= 0 {
		o.MaxWait = DefaultMaxWait
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = DefaultMaxQueue
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Server serves models over the Open Inference Protocol v2 (REST). Its methods are safe
// for concurrent use.
type Server struct {
	opt     Options
	log     *slog.Logger
	metrics *metrics
	limiter *clientLimiter
	handler http.Handler

	mu     sync.RWMutex
	models map[string]*slot
	closed bool

	bodies sync.Pool // *bytes.Buffer: request bodies, reused once decoded
}

// maxPooledBody is the largest request buffer kept for reuse; a bigger one (a large
// batch) is left to the garbage collector rather than held by the pool.
const maxPooledBody = 1 << 20

// readBody reads a request body of at most limit bytes into a pooled buffer, sized
// from Content-Length when the client sent one; putBody returns it once the request is
// decoded (nothing decoded refers to it).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) (*bytes.Buffer, error) {
	buf, _ := s.bodies.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	if n := r.ContentLength; n > 0 && n <= limit {
		buf.Grow(int(n) + bytes.MinRead) // ReadFrom wants MinRead free to read the EOF without growing
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		s.putBody(buf)
		return nil, err
	}
	return buf, nil
}

func (s *Server) putBody(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBody {
		s.bodies.Put(buf)
	}
}

// slot is a model name and the version it serves now.
type slot struct {
	name string
	cur  atomic.Pointer[instance]
}

// acquire returns the current instance with a reference taken, or nil if none is loaded.
func (s *slot) acquire() *instance {
	for {
		in := s.cur.Load()
		if in == nil {
			return nil
		}
		if in.acquire() {
			return in
		}
		// Retired between Load and acquire: a newer instance is already in cur.
	}
}

// New returns a server with no models; add them with Swap.
func New(opt Options) *Server {
	opt = opt.withDefaults()
	s := &Server{opt: opt, log: opt.Logger, metrics: newMetrics(), models: map[string]*slot{}}
	if opt.Rate > 0 {
		s.limiter = newClientLimiter(opt.Rate, opt.Burst)
	}
	m := s.metrics
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", m.instrument("live", s.live))
	mux.HandleFunc("GET /v2/health/ready", m.instrument("ready", s.ready))
	mux.HandleFunc("GET /v2", m.instrument("server_metadata", s.serverMetadata))
	mux.HandleFunc("GET /v2/models/{name}", m.instrument("model_metadata", s.modelMetadata))
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}", m.instrument("model_metadata", s.modelMetadata))
	mux.HandleFunc("GET /v2/models/{name}/ready", m.instrument("model_ready", s.modelReady))
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}/ready", m.instrument("model_ready", s.modelReady))
	mux.HandleFunc("POST /v2/models/{name}/infer", m.instrument("infer", s.infer))
	mux.HandleFunc("POST /v2/models/{name}/versions/{version}/infer", m.instrument("infer", s.infer))
	mux.Handle("GET /metrics", m.handler())
	mux.HandleFunc("/", m.instrument("other", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: %s %s (see GET /v2 and /v2/models/{name})", r.Method, r.URL.Path)
	}))
	s.handler = mux
	return s
}

// Handler returns the server's HTTP handler, for a caller that runs its own http.Server.
func (s *Server) Handler() http.Handler { return s.handler }

// Register names a model that is not loaded yet: until Swap loads it, the model (and the
// server) reports not ready, and its infer requests are answered 503.
func (s *Server) Register(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.models[name]; !ok {
		s.models[name] = &slot{name: name}
	}
}

// Swap makes m the version served under name, atomically: requests that arrive from now
// on run on m, requests already queued on the previous version finish on it, and that
// version's workers stop once they are answered. The server owns m.Net from now on: it
// freezes it (compute.Model.Freeze) and runs it beside Options.Workers-1 replicas, so
// m.Net must be built with Options.Inference.
func (s *Server) Swap(name string, m *Model) error {
	if m == nil || m.Net == nil {
		return fmt.Errorf("swap model %q: no network", name)
	}
	if err := m.Net.Freeze(); err != nil { // served weights never change: lay them out for inference
		return fmt.Errorf("swap model %q: %w", name, err)
	}
	nets := []*compute.Model[float32]{m.Net}
	for len(nets) < s.opt.Workers {
		r, err := m.Net.Replica()
		if err != nil {
			return fmt.Errorf("swap model %q: %w", name, err)
		}
		nets = append(nets, r)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("swap model %q: the server is closed", name)
	}
	sl, ok := s.models[name]
	if !ok {
		sl = &slot{name: name}
		s.models[name] = sl
	}
	batchSize := s.metrics.batch.WithLabelValues(name)
	in := newInstance(m, nets, s.opt.MaxBatch, s.opt.MaxQueue, s.opt.MaxWait, func(n int) { batchSize.Observe(float64(n)) })
	old := sl.cur.Swap(in)
	s.mu.Unlock()
	s.metrics.version.WithLabelValues(name).Set(float64(m.Version))
	s.metrics.swaps.WithLabelValues(name).Inc()
	if old != nil {
		old.retire()
		s.log.Info("model swapped", "model", name, "version", m.Version, "previous", old.model.Version, "task", m.Task, "verified", m.Header != nil)
	} else {
		s.log.Info("model loaded", "model", name, "version", m.Version, "task", m.Task, "verified", m.Header != nil,
			"params", m.Net.NumParams(), "input", m.Net.Spec().Input, "classes", m.Net.Spec().Classes)
	}
	return nil
}

// Current returns the version served under name, and whether one is loaded.
func (s *Server) Current(name string) (uint64, bool) {
	sl := s.slot(name)
	if sl == nil {
		return 0, false
	}
	in := sl.cur.Load()
	if in == nil {
		return 0, false
	}
	return in.model.Version, true
}

// Close stops taking models and waits until every model's workers have answered what was
// queued. Call it after the HTTP server has stopped (Serve does).
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	var ins []*instance
	for _, sl := range s.models {
		if in := sl.cur.Swap(nil); in != nil {
			ins = append(ins, in)
			in.retire()
		}
	}
	s.mu.Unlock()
	for _, in := range ins {
		<-in.stopped
	}
}

// Serve answers HTTP requests on ln until ctx ends, then shuts down gracefully: it stops
// accepting, waits up to Options.ShutdownTimeout for requests in flight, and closes the
// server (see Close).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down: finishing the requests in flight", "addr", ln.Addr().String(), "timeout", s.opt.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.opt.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	s.Close()
	if err != nil {
		return fmt.Errorf("shut down the server on %s: %w", ln.Addr(), err)
	}
	return nil
}

func (s *Server) slot(name string) *slot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.models[name]
}

func (s *Server) live(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	s.mu.RLock()
	ready := len(s.models) > 0 && !s.closed
	for _, sl := range s.models {
		ready = ready && sl.cur.Load() != nil
	}
	s.mu.RUnlock()
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]bool{"ready": ready})
}

func (s *Server) serverMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, ServerMetadata{Name: "fedq", Version: s.opt.Version, Extensions: []string{"binary_tensor_data"}})
}

// current resolves the {name} and optional {version} of a request to the loaded
// instance, or writes the error answer and returns nil.
func (s *Server) current(w http.ResponseWriter, r *http.Request) *instance {
	name := r.PathValue("name")
	sl := s.slot(name)
	if sl == nil {
		writeError(w, http.StatusNotFound, "unknown model %q", name)
		return nil
	}
	in := sl.cur.Load()
	if in == nil {
		writeError(w, http.StatusServiceUnavailable, "model %q is not loaded yet", name)
		return nil
	}
	if v := r.PathValue("version"); v != "" && v != in.model.VersionString() {
		writeError(w, http.StatusNotFound, "model %q has no version %q loaded (it serves version %s)", name, v, in.model.VersionString())
		return nil
	}
	return in
}

func (s *Server) modelMetadata(w http.ResponseWriter, r *http.Request) {
	in := s.current(w, r)
	if in == nil {
		return
	}
	spec := in.model.Net.Spec()
	shape := []int64{-1}
	for _, d := range spec.Input {
		shape = append(shape, int64(d))
	}
	writeJSON(w, http.StatusOK, ModelMetadata{
		Name: r.PathValue("name"), Versions: []string{in.model.VersionString()}, Platform: Platform,
		Inputs:  []TensorMetadata{{Name: InputName, Datatype: DatatypeFP32, Shape: shape}},
		Outputs: []TensorMetadata{{Name: LogitsName, Datatype: DatatypeFP32, Shape: []int64{-1, int64(spec.Classes)}}, {Name: LabelName, Datatype: DatatypeINT64, Shape: []int64{-1}}},
	})
}

func (s *Server) modelReady(w http.ResponseWriter, r *http.Request) {
	if in := s.current(w, r); in != nil {
		writeJSON(w, http.StatusOK, map[string]any{"name": r.PathValue("name"), "ready": true})
	}
}

func (s *Server) infer(w http.ResponseWriter, r *http.Request) {
	if s.limiter != nil && !s.limiter.allow(r.RemoteAddr, time.Now()) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "rate limit: at most %g infer requests a second per client", s.opt.Rate)
		return
	}
	name := r.PathValue("name")
	sl := s.slot(name)
	if sl == nil {
		writeError(w, http.StatusNotFound, "unknown model %q", name)
		return
	}
	// The reference keeps this version's batcher alive until the answer is written,
	// whatever Swap does meanwhile.
	in := sl.acquire()
	if in == nil {
		writeError(w, http.StatusServiceUnavailable, "model %q is not loaded yet", name)
		return
	}
	defer in.release()
	version := in.model.VersionString()
	if v := r.PathValue("version"); v != "" && v != version {
		writeError(w, http.StatusNotFound, "model %q has no version %q loaded (it serves version %s)", name, v, version)
		return
	}
	headerLen := -1
	if h := r.Header.Get(HeaderContentLength); h != "" {
		var err error
		if headerLen, err = strconv.Atoi(h); err != nil || headerLen < 0 {
			writeError(w, http.StatusBadRequest, "%s %q is not a byte count", HeaderContentLength, h)
			return
		}
	}
	body, err := s.readBody(w, r, s.opt.MaxBody)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body is over %d bytes (the server's --max-body)", tooBig.Limit)
			return
		}
		writeError(w, http.StatusBadRequest, "read request body: %v", err)
		return
	}
	in.coming.Add(1) // the batcher may wait for this request while it decodes
	queued := false
	defer func() {
		if !queued {
			in.coming.Add(-1)
		}
	}()
	d, err := decodeInferBinary(body.Bytes(), headerLen, in.model.Net.Spec().Input, in.inSize)
	s.putBody(body)
	if err != nil {
		var re *requestError
		if errors.As(err, &re) {
			writeError(w, re.status, "%s", re.msg)
		} else {
			writeError(w, http.StatusBadRequest, "%v", err)
		}
		return
	}
	j := &job{x: d.x, n: d.n, done: make(chan struct{})}
	if !in.enqueue(j) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "model %q is overloaded: %d requests queued", name, s.opt.MaxQueue)
		return
	}
	queued = true
	select {
	case <-j.done:
	case <-r.Context().Done():
		return // the client is gone; the batcher still answers the job, to no one
	}
	out := appendResponse(make([]byte, 0, 64+len(j.out)*12), name, version, d, in.classes, j.out)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// writeError answers an Open Inference Protocol error: {"error": "message"}.
func writeError(w http.ResponseWriter, code int, format string, a ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, a...)})
}

// Models lists the names the server knows, sorted.
func (s *Server) Models() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.models))
	for n := range s.models {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
