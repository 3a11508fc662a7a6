package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// Backoff is the reconnection schedule: Min, doubling up to Max, each delay scaled by a
// random factor in [1−Jitter, 1+Jitter] so that many agents do not reconnect in step.
type Backoff struct {
	Min, Max time.Duration
	Jitter   float64
}

// DefaultBackoff is 1 s doubling to 60 s with ±20 % jitter, as PROTOCOL.md suggests.
var DefaultBackoff = Backoff{Min: time.Second, Max: time.Minute, Jitter: 0.2}

// delay returns the wait before reconnection attempt n (0-based).
func (b Backoff) delay(n int, rng *rand.Rand) time.Duration {
	d := b.Min
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + b.Jitter*(2*rng.Float64()-1)))
	}
	return d
}

// EventKind says what happened to an agent's connection.
type EventKind int

// Events reported to Config.OnEvent.
const (
	// Connected: the coordinator answered Welcome; the session is up.
	Connected EventKind = iota + 1
	// Disconnected: the session ended; Err says why; the daemon will retry.
	Disconnected
	// Failed: a connection attempt failed; Err says why; the daemon will retry.
	Failed
)

// Event is a change of the daemon's connection.
type Event struct {
	Kind    EventKind
	Session string
	Attempt int
	Err     error
}

// Config configures a Daemon.
type Config struct {
	// Identity is the enrolled agent (see Load).
	Identity *Identity
	// Addr overrides the coordinator address of the identity.
	Addr string
	// Capabilities are announced in Hello: datasets, backend, device.
	Capabilities protocol.Capabilities
	// SoftwareVersion is announced in Hello.
	SoftwareVersion string
	// Backoff is the reconnection schedule (default DefaultBackoff).
	Backoff Backoff
	// Logger receives the daemon's logs (default slog.Default()).
	Logger *slog.Logger
	// OnEvent, when set, is called on every connection change (tests, status pages).
	OnEvent func(Event)
	// Transport, when set, is the QUIC transport (UDP socket) to dial from, shared with
	// other users; by default the daemon opens its own.
	Transport *quic.Transport
	// Data are the local datasets tasks may name, by name.
	Data map[string]*dataset.Dataset
	// Threads is the compute threads of local training (default 1).
	Threads int
	// BeforeUpload, when set, may change each update (local − base, in the model's
	// parameter order) just before it is sent. fedq sim uses it to play Byzantine
	// agents; a site could use it for local privacy mechanisms.
	BeforeUpload func(round uint64, update []float32)
	// TrueLabels, for simulation only, holds the hidden true labels of datasets whose
	// labels were removed (by dataset name, one per example): semi-supervised training
	// scores its pseudo-labels against them (pseudo_accuracy). Training never uses them.
	TrueLabels map[string][]int32
	// DropOut, when set, is asked at each step of a task (the Drop… phases); true makes
	// the agent silently stop taking part in that task, as if it had dropped out. fedq
	// sim --dropout uses it to exercise the rounds' dropout handling.
	DropOut func(taskID, phase string) bool
}

// Phases at which Config.DropOut is asked.
const (
	DropAdvertise = "advertise_keys" // before advertising secure-aggregation keys
	DropShare     = "share_keys"     // before sending shares
	DropUpload    = "upload"         // after training, before the upload
	DropUnmask    = "unmask"         // before revealing shares
)

// errDroppedOut ends a task the agent plays dropping out of.
var errDroppedOut = errors.New("dropped out (simulated)")

// dropsOut reports whether the agent plays dropping out of a task at phase.
func (d *Daemon) dropsOut(taskID, phase string) bool {
	if d.cfg.DropOut == nil || !d.cfg.DropOut(taskID, phase) {
		return false
	}
	d.log.Info("dropping out (simulated)", "task", taskID, "phase", phase)
	return true
}

// quit tells the coordinator the agent abandons a task, as a dropped connection would.
func quit(send func(protocol.Message) error, o *protocol.TaskOffer, reason string) error {
	return send(&protocol.TaskDecline{TaskID: o.TaskID, Round: o.Round, Code: protocol.CodeCancelled, Reason: reason})
}

// Daemon keeps an agent connected to its coordinator.
type Daemon struct {
	cfg Config
	log *slog.Logger
	rng *rand.Rand

	mu      sync.Mutex
	session string
	conn    *quic.Conn // the connection of the current session, or nil
	// undigested: the session's coordinator takes uploads without a SHA-256
	// (protocol.FeatureUndigestedUploads).
	undigested bool

	cache  modelCache
	tasks  tasks
	models models
	secure secureTasks
	// verify checks other agents' certificates in secure rounds (see peerCerts).
	verify     transport.CertVerifier
	verifyOnce sync.Once
}

// New returns a daemon for an enrolled identity.
func New(cfg Config) (*Daemon, error) {
	if cfg.Identity == nil {
		return nil, errors.New("agent: no identity: enroll first")
	}
	if cfg.Backoff.Min <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Addr == "" {
		cfg.Addr = cfg.Identity.State.Addr
	}
	if err := (&protocol.Hello{ProtocolVersion: protocol.Version, Capabilities: cfg.Capabilities}).Validate(); err != nil {
		return nil, fmt.Errorf("agent capabilities: %w", err)
	}
	return &Daemon{cfg: cfg, log: cfg.Logger.With("agent", cfg.Identity.State.ID), rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}, nil
}

// Session returns the current session ID, or "" when not connected.
func (d *Daemon) Session() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.session
}

// setSession records the current session (w is its Welcome), or none when w is nil.
func (d *Daemon) setSession(conn *quic.Conn, w *protocol.Welcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w == nil {
		d.session, d.conn, d.undigested = "", nil, false
		return
	}
	d.session, d.conn, d.undigested = w.SessionID, conn, w.HasFeature(protocol.FeatureUndigestedUploads)
}

// ErrNotConnected is returned by calls that need a session when there is none.
var ErrNotConnected = errors.New("agent: not connected to the coordinator")

// FetchModel downloads model version (whose weights must hash to hash, unless zero) on
// its own stream of the current session; see transport.FetchModel.
func (d *Daemon) FetchModel(ctx context.Context, version uint64, hash protocol.Hash, read func(*protocol.TensorReader) error) error {
	d.mu.Lock()
	conn := d.conn
	d.mu.Unlock()
	if conn == nil {
		return ErrNotConnected
	}
	return transport.FetchModel(ctx, conn, version, hash, read)
}

func (d *Daemon) emit(e Event) {
	if d.cfg.OnEvent != nil {
		d.cfg.OnEvent(e)
	}
}

// Run keeps the agent connected until ctx is done, then says goodbye and returns nil.
// It returns an error only when retrying cannot help: the agent was revoked, or its
// certificate is not (or no longer) accepted — the operator must act.
func (d *Daemon) Run(ctx context.Context) error {
	tr := d.cfg.Transport
	if tr == nil {
		var err error
		if tr, err = transport.NewClientTransport(); err != nil {
			return err
		}
		defer transport.CloseTransport(tr)
	}
	attempt := 0
	for {
		retryAfter, connected, err := d.connect(ctx, tr)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			attempt = 0
			d.emit(Event{Kind: Disconnected, Err: err})
			d.log.Warn("disconnected from coordinator", "err", err)
		} else {
			d.emit(Event{Kind: Failed, Attempt: attempt, Err: err})
			d.log.Warn("cannot connect to coordinator", "addr", d.cfg.Addr, "attempt", attempt+1, "err", err)
		}
		if permanent(err) {
			return err
		}
		wait := max(d.cfg.Backoff.delay(attempt, d.rng), retryAfter)
		attempt++
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// permanent reports whether an error will not go away by reconnecting.
func permanent(err error) bool {
	switch protocol.CodeOf(err) {
	case protocol.CodeRevoked, protocol.CodeUnauthenticated, protocol.CodeUnsupportedVersion:
		return true
	}
	var ce *certRejected
	return errors.As(err, &ce)
}

// certRejected marks a TLS rejection of the agent's certificate.
type certRejected struct{ err error }

func (e *certRejected) Error() string { return e.err.Error() }
func (e *certRejected) Unwrap() error { return e.err }

// sessionErr turns an error on the connection into what the operator should read.
func sessionErr(conn *quic.Conn, err error) error {
	err = transport.ConnError(conn, err)
	if explained := transport.ExplainTLSFailure(err); explained != err {
		return &certRejected{explained}
	}
	return err
}

// connect runs one connection: dial, Hello/Welcome, then the session until it ends. It
// reports whether a session was established and any wait the coordinator asked for.
func (d *Daemon) connect(ctx context.Context, tr *quic.Transport) (retryAfter time.Duration, connected bool, err error) {
	id := d.cfg.Identity
	dctx, cancel := context.WithTimeout(ctx, transport.HandshakeTimeout)
	defer cancel()
	conn, err := transport.Dial(dctx, tr, d.cfg.Addr, transport.ClientTLS(id.CA, id.Cert))
	if err != nil {
		return 0, false, err
	}
	defer transport.Close(conn, nil)
	st, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return 0, false, sessionErr(conn, err)
	}
	w := protocol.NewWriter(st, 0)
	rd := protocol.NewReader(st, 0)
	_ = st.SetDeadline(time.Now().Add(transport.FirstFrameTimeout))
	hello := &protocol.Hello{ProtocolVersion: protocol.Version, MinProtocolVersion: protocol.MinVersion, AgentID: id.State.ID,
		SoftwareVersion: d.cfg.SoftwareVersion, Capabilities: d.cfg.Capabilities}
	if err := w.Write(hello); err != nil {
		return 0, false, sessionErr(conn, err)
	}
	m, err := rd.Read()
	if err != nil {
		return 0, false, sessionErr(conn, err)
	}
	_ = st.SetDeadline(time.Time{})
	var welcome *protocol.Welcome
	switch m := m.(type) {
	case *protocol.Welcome:
		welcome = m
	case *protocol.Error:
		return 0, false, m
	default:
		return 0, false, protocol.NewError(protocol.CodeProtocol, "expected Welcome, got %s", m.Type())
	}
	d.setSession(conn, welcome)
	defer d.setSession(nil, nil)
	d.log.Info("connected to coordinator", "addr", d.cfg.Addr, "session", welcome.SessionID, "version", welcome.ProtocolVersion)
	d.emit(Event{Kind: Connected, Session: welcome.SessionID})
	retryAfter, err = d.serve(ctx, conn, st, w, rd, time.Duration(welcome.HeartbeatIntervalMs)*time.Millisecond)
	return retryAfter, true, err
}

// serve runs an established session: heartbeats out, control messages in.
func (d *Daemon) serve(ctx context.Context, conn *quic.Conn, st *quic.Stream, w *protocol.Writer, rd *protocol.Reader, hb time.Duration) (time.Duration, error) {
	var wmu sync.Mutex
	send := func(m protocol.Message) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = st.SetWriteDeadline(time.Now().Add(hb))
		return w.Write(m)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(hb)
		defer t.Stop()
		var seq uint64
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				seq++
				n := d.tasks.count()
				if err := send(&protocol.Heartbeat{Seq: seq, SentAtMs: time.Now().UnixMilli(), Busy: n > 0, ActiveTasks: uint32(n)}); err != nil {
					_ = conn.CloseWithError(0, "")
					return
				}
			}
		}
	}()
	// On shutdown: Goodbye, then close once the coordinator has read it (or soon).
	stop := context.AfterFunc(ctx, func() {
		_ = send(&protocol.Goodbye{Reason: "agent shutting down"})
		_ = st.Close()
		select {
		case <-conn.Context().Done():
		case <-time.After(time.Second):
		}
		transport.Close(conn, nil)
	})
	defer stop()
	silence := 3 * hb
	for {
		_ = st.SetReadDeadline(time.Now().Add(silence))
		m, err := rd.Read()
		if err != nil {
			if ctx.Err() != nil {
				return 0, nil
			}
			return 0, sessionErr(conn, err)
		}
		switch m := m.(type) {
		case *protocol.HeartbeatAck:
		case *protocol.Goodbye:
			d.log.Info("coordinator said goodbye", "reason", m.Reason)
			return time.Duration(m.RetryAfterMs) * time.Millisecond, &protocol.Error{Code: m.Code, Msg: m.Reason}
		case *protocol.Error:
			return 0, m
		case *protocol.TaskOffer:
			if err := d.offer(sctx, m, send); err != nil {
				return 0, sessionErr(conn, err)
			}
		case *protocol.TaskCancel:
			d.tasks.cancel(m.TaskID)
			d.secure.remove(m.TaskID)
		case *protocol.SecAggRoster, *protocol.SecAggShares, *protocol.SecAggUnmaskRequest:
			if err := d.secureMessage(m, send); err != nil {
				return 0, sessionErr(conn, err)
			}
		default:
			d.log.Debug("ignored message", "type", m.Type())
		}
	}
}
