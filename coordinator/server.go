package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// StateFile is the bbolt file in the coordinator's directory.
const StateFile = "state.db"

// DefaultHeartbeat is how often agents are told to send heartbeats.
const DefaultHeartbeat = 10 * time.Second

// Config configures a coordinator.
type Config struct {
	// Dir is the directory made by `fedq ca init`: CA, keys, tokens, state.
	Dir string
	// Listen is the UDP address to listen on, e.g. ":4433" (default: the port of the
	// address in coordinator.json, on all interfaces).
	Listen string
	// PacketConn, when set, is the socket to serve on instead of listening on Listen.
	PacketConn net.PacketConn
	// Heartbeat is the heartbeat interval announced to agents (default 10 s); a session
	// silent for three intervals is closed.
	Heartbeat time.Duration
	// Logger receives the coordinator's logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock for tokens and certificates (default time.Now).
	Now func() time.Time
	// Evaluate, when set, scores every new version before it is committed.
	Evaluate Evaluator
	// ObserveUpdate, if set, sees every update as the coordinator receives it, whole and
	// checked, before it is aggregated: plain is a plain update's values, masked a
	// securely aggregated update's masked vector (tests use it to show what the
	// coordinator holds). The slices are only valid during the call.
	ObserveUpdate func(agent string, hdr *protocol.UpdateHeader, plain []float32, masked []uint32)
	// StagingBuffers is how many uploads of a task are received at once (default 1):
	// each holds one model-sized buffer until it is checked and folded in.
	StagingBuffers int
	// AggregationMemory bounds, in bytes, the updates that strategies keeping every
	// update of a round (median, trimmed mean, Krum) hold in memory; the rest go to
	// memory-mapped files in Dir (0: aggregation.DefaultMemoryBytes).
	AggregationMemory int64
	// AfterBlobWrite, when set, is called between writing a new version's weights and
	// committing its metadata: fault-injection tests crash the process there.
	AfterBlobWrite func(task string, round uint64)
	// Labelled are labelled datasets the coordinator holds, by name, for semi-supervised
	// tasks with labels at the coordinator (see finetune.go); they never leave it.
	Labelled map[string]*dataset.Dataset
}

// Server is a running coordinator endpoint.
type Server struct {
	cfg   Config
	ca    *ca.Authority
	store *store.Store
	log   *slog.Logger
	tr    *quic.Transport
	ln    *quic.Listener
	conn  net.PacketConn

	mu       sync.Mutex
	sessions map[string]*session
	conns    sync.WaitGroup
	closed   atomic.Bool
	models   atomic.Pointer[ModelSource]
	started  time.Time
	blobs    *store.Blobs
	rounds   *rounds
	metrics  *metrics
}

// session is a connected agent.
type session struct {
	agent     string
	id        string
	conn      *quic.Conn
	remote    string
	since     time.Time
	hello     *protocol.Hello
	lastSeen  atomic.Int64 // unix nanoseconds
	wmu       sync.Mutex   // serialises frames on the control stream
	ctrl      *quic.Stream
	ctrlW     *protocol.Writer
	closeOnce sync.Once
	out       chan protocol.Message // frames queued by the round engine's driver
}

// sessionQueue bounds the frames queued for one agent; an agent that lets it fill up
// is too slow to take part and its session is closed.
const sessionQueue = 256

// queue hands a frame to the session's writer without waiting.
func (s *session) queue(m protocol.Message) {
	select {
	case s.out <- m:
	default:
		s.close(protocol.NewError(protocol.CodeBusy, "agent too slow: %d frames queued", sessionQueue))
	}
}

// writeQueued sends queued frames until the session ends.
func (s *session) writeQueued() {
	for {
		select {
		case m := <-s.out:
			if err := s.send(m); err != nil {
				s.close(err)
				return
			}
		case <-s.conn.Context().Done():
			return
		}
	}
}

// send writes one frame on the session's control stream.
func (s *session) send(m protocol.Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.ctrl.SetWriteDeadline(time.Now().Add(transport.FirstFrameTimeout))
	return s.ctrlW.Write(m)
}

// close ends the session's connection with err's code.
func (s *session) close(err error) {
	s.closeOnce.Do(func() { transport.Close(s.conn, err) })
}

// Listen loads the coordinator's directory, opens its state and binds its UDP socket.
// Call Serve to accept connections.
func Listen(cfg Config) (*Server, error) {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	auth, err := ca.Load(cfg.Dir)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(cfg.Dir, StateFile))
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ca: auth, store: st, log: cfg.Logger, sessions: map[string]*session{}, started: cfg.Now()}
	s.metrics = newMetrics(func() float64 { return float64(s.Online()) })
	if err := s.restore(); err != nil {
		st.Close()
		return nil, err
	}
	pc := cfg.PacketConn
	if pc == nil {
		addr := cfg.Listen
		if addr == "" {
			_, port, err := net.SplitHostPort(auth.Config.Addr)
			if err != nil {
				st.Close()
				return nil, fmt.Errorf("coordinator.json address %q: %w", auth.Config.Addr, err)
			}
			addr = ":" + port
		}
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("listen address %q: %w", addr, err)
		}
		uc, err := transport.ListenUDP(ua)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		pc = uc
		s.conn = uc
	}
	s.tr = &quic.Transport{Conn: pc}
	s.ln, err = s.tr.Listen(transport.ServerTLS(auth.ServerCert, auth.CAPool()), transport.QUICConfig())
	if err != nil {
		s.closeSocket()
		st.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	return s, nil
}

// restore checks the store against its blobs and reloads the tasks, so that an
// interrupted round is tried again from the last committed version.
func (s *Server) restore() error {
	blobs, err := store.OpenBlobs(filepath.Join(s.cfg.Dir, "blobs"))
	if err != nil {
		return err
	}
	s.blobs = blobs
	rep, err := s.store.Check(blobs)
	if err != nil {
		return fmt.Errorf("the store is damaged (%w); restore the coordinator directory from a backup", err)
	}
	if rep.OrphansRemoved > 0 {
		s.log.Warn("removed weights no version names (an interrupted commit)", "files", rep.OrphansRemoved)
	}
	s.rounds = newRounds(s)
	recs, err := s.store.Tasks()
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if err := s.rounds.load(rec); err != nil {
			return err
		}
	}
	var src ModelSource = s.rounds
	s.models.Store(&src)
	if len(recs) > 0 {
		s.log.Info("tasks restored", "tasks", len(recs), "versions", rep.Versions)
	}
	return nil
}

// Addr is the address the coordinator listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Authority returns the coordinator's CA.
func (s *Server) Authority() *ca.Authority { return s.ca }

// Store returns the coordinator's state.
func (s *Server) Store() *store.Store { return s.store }

func (s *Server) closeSocket() {
	_ = s.tr.Close()
	if s.conn != nil {
		_ = s.conn.Close()
	}
}

// Serve accepts connections until ctx is done, then says goodbye to every agent, closes
// the connections, the socket and the state file, and returns nil. It returns an error
// only if accepting fails for another reason.
func (s *Server) Serve(ctx context.Context) error {
	s.log.Info("coordinator listening", "addr", s.Addr().String(), "ca", s.ca.CAHash().String()[:16])
	stop := context.AfterFunc(ctx, func() { _ = s.ln.Close() })
	defer stop()
	rctx, stopRounds := context.WithCancel(context.Background())
	roundsDone := make(chan struct{})
	go func() { s.rounds.run(rctx); close(roundsDone) }()
	defer func() { stopRounds(); <-roundsDone }()
	var serveErr error
	for {
		conn, err := s.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, quic.ErrServerClosed) {
				serveErr = fmt.Errorf("accept: %w", err)
			}
			break
		}
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.handle(ctx, conn)
		}()
	}
	s.endSessions()
	stopRounds()
	<-roundsDone
	s.release()
	return serveErr
}

// endSessions ends every session politely and waits for the connections, at most
// shutdownGrace before it closes them.
func (s *Server) endSessions() {
	s.closed.Store(true)
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ss := range sessions {
		wg.Go(func() {
			_ = ss.send(&protocol.Goodbye{Reason: "coordinator shutting down", Code: protocol.CodeShuttingDown, RetryAfterMs: 1000})
			ss.close(protocol.NewError(protocol.CodeShuttingDown, "coordinator shutting down"))
		})
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		// A connection that has not ended by now is stuck on its peer: closing the
		// socket ends every connection at once.
		s.log.Warn("connections still open after goodbye: closing them", "grace", shutdownGrace)
		s.closeSocket()
		<-done
	}
}

// shutdownGrace is how long a stopping coordinator waits for its connections to end
// after saying goodbye, before it closes them.
const shutdownGrace = 5 * time.Second

// release closes the socket and the state.
func (s *Server) release() {
	s.closeSocket()
	if err := s.store.Close(); err != nil {
		s.log.Error("close state", "err", err)
	}
	s.log.Info("coordinator stopped")
}

// sendTo queues a frame for an agent's session, if it has one.
func (s *Server) sendTo(agent string, m protocol.Message) {
	s.mu.Lock()
	ss := s.sessions[agent]
	s.mu.Unlock()
	if ss != nil {
		ss.queue(m)
	}
}

// handle serves one connection according to its client certificate.
func (s *Server) handle(ctx context.Context, conn *quic.Conn) {
	peer := transport.PeerOf(conn)
	log := s.log.With("remote", conn.RemoteAddr().String())
	switch peer.Role {
	case "":
		s.serveEnrollment(ctx, conn, log)
	case transport.RoleAgent:
		s.serveAgent(ctx, conn, peer, log.With("agent", peer.ID))
	case transport.RoleAdmin:
		s.serveAdmin(ctx, conn, peer, log.With("admin", peer.ID))
	default:
		transport.Close(conn, protocol.NewError(protocol.CodeUnauthenticated, "certificate has no fedq role"))
	}
}

// acceptFirst accepts the first stream of a connection and reads its first frame, both
// within transport.FirstFrameTimeout.
func acceptFirst(ctx context.Context, conn *quic.Conn) (*quic.Stream, *protocol.Reader, protocol.Message, error) {
	actx, cancel := context.WithTimeout(ctx, transport.FirstFrameTimeout)
	defer cancel()
	st, err := conn.AcceptStream(actx)
	if err != nil {
		return nil, nil, nil, err
	}
	rd := protocol.NewReader(st, 0)
	m, err := transport.ReadFirst(st, rd)
	return st, rd, m, err
}

// rejectAndClose tells the peer why on stream st (when there is one), lets the frame
// reach it, and closes the connection with the error's code.
func rejectAndClose(conn *quic.Conn, st *quic.Stream, err error) {
	if st != nil {
		transport.Reject(st, err)
		// Closing at once could drop the frame: give the peer a moment to read it and
		// close first.
		select {
		case <-conn.Context().Done():
		case <-time.After(time.Second):
		}
	}
	transport.Close(conn, err)
}

func newSessionID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// serveEnrollment answers the one EnrollRequest an unauthenticated connection may make.
func (s *Server) serveEnrollment(ctx context.Context, conn *quic.Conn, log *slog.Logger) {
	st, _, m, err := acceptFirst(ctx, conn)
	if err != nil {
		rejectAndClose(conn, st, protocol.NewError(protocol.CodeProtocol, "no enrollment request: %v", err))
		return
	}
	req, ok := m.(*protocol.EnrollRequest)
	if !ok {
		rejectAndClose(conn, st, protocol.NewError(protocol.CodeUnauthenticated, "%s needs a client certificate; enroll first", m.Type()))
		return
	}
	resp, err := s.enroll(req)
	if err != nil {
		log.Warn("enrollment refused", "err", err)
		rejectAndClose(conn, st, err)
		return
	}
	_ = st.SetWriteDeadline(time.Now().Add(transport.FirstFrameTimeout))
	if err := protocol.WriteMessage(st, resp); err != nil {
		transport.Close(conn, err)
		return
	}
	_ = st.Close()
	log.Info("agent enrolled", "agent", resp.AgentID)
	select {
	case <-conn.Context().Done():
	case <-time.After(transport.FirstFrameTimeout):
		transport.Close(conn, nil)
	}
}

// enroll checks a token and signs the agent's certificate request.
func (s *Server) enroll(req *protocol.EnrollRequest) (*protocol.EnrollResponse, error) {
	tok, err := protocol.ParseJoinToken(req.Token)
	if err != nil {
		return nil, protocol.NewError(protocol.CodeTokenInvalid, "%v", err)
	}
	now := s.cfg.Now()
	rec, err := s.ca.CheckToken(tok, now)
	if err != nil {
		return nil, err
	}
	cert, err := s.ca.SignCSR(req.CSR, rec.Name, transport.RoleAgent, now)
	if err != nil {
		return nil, protocol.NewError(protocol.CodeInvalid, "%v", err)
	}
	err = s.store.Enroll(rec.ID, store.Agent{ID: rec.Name, Serial: cert.SerialNumber.Text(16), EnrolledAt: now.UTC()})
	if err != nil {
		return nil, err
	}
	// A new certificate supersedes the old one: end a session that still uses it.
	s.dropSession(rec.Name, protocol.NewError(protocol.CodeRevoked, "agent re-enrolled with a new certificate"))
	return &protocol.EnrollResponse{Certificate: cert.Raw, CACertificate: s.ca.CACert.Raw, AgentID: rec.Name,
		SigningKey: s.ca.SigningKey.Public().(ed25519.PublicKey)}, nil
}

// checkAgent decides whether an agent certificate may open a session.
func (s *Server) checkAgent(peer transport.Peer) error {
	rec, ok, err := s.store.Agent(peer.ID)
	if err != nil {
		return protocol.NewError(protocol.CodeInternal, "agent registry: %v", err)
	}
	switch {
	case !ok:
		return protocol.NewError(protocol.CodeUnauthenticated, "agent %q is not enrolled here", peer.ID)
	case rec.Revoked():
		return protocol.NewError(protocol.CodeRevoked, "agent %q was revoked at %s", peer.ID, rec.RevokedAt.Format(time.RFC3339))
	case rec.Serial != peer.Cert.SerialNumber.Text(16):
		return protocol.NewError(protocol.CodeRevoked, "agent %q presented a certificate replaced by a later enrollment", peer.ID)
	}
	return nil
}

// serveAgent runs an agent's session: Hello/Welcome, then the control stream until the
// agent leaves, goes silent, or is replaced.
func (s *Server) serveAgent(ctx context.Context, conn *quic.Conn, peer transport.Peer, log *slog.Logger) {
	st, rd, m, err := acceptFirst(ctx, conn)
	if err != nil {
		rejectAndClose(conn, st, protocol.NewError(protocol.CodeProtocol, "no Hello: %v", err))
		return
	}
	if err := s.checkAgent(peer); err != nil {
		log.Warn("session refused", "err", err)
		rejectAndClose(conn, st, err)
		return
	}
	hello, ok := m.(*protocol.Hello)
	if !ok {
		rejectAndClose(conn, st, protocol.NewError(protocol.CodeProtocol, "the control stream must begin with Hello, got %s", m.Type()))
		return
	}
	version, err := protocol.NegotiateVersion(hello.MinProtocolVersion, hello.ProtocolVersion)
	if err != nil {
		rejectAndClose(conn, st, err)
		return
	}
	now := s.cfg.Now()
	ss := &session{agent: peer.ID, id: newSessionID(), conn: conn, remote: conn.RemoteAddr().String(), since: now,
		hello: hello, ctrl: st, ctrlW: protocol.NewWriter(st, 0), out: make(chan protocol.Message, sessionQueue)}
	ss.lastSeen.Store(now.UnixNano())
	s.metrics.track(conn)
	defer s.metrics.untrack(conn)
	if !s.addSession(ss) {
		rejectAndClose(conn, st, protocol.NewError(protocol.CodeShuttingDown, "coordinator shutting down"))
		return
	}
	defer s.removeSession(ss)
	// The round engine learns of the agent before the agent learns it is connected: a
	// round started after Welcome arrived must be able to select it.
	s.rounds.agentUp(peer.ID, ss.id, hello.Capabilities, peer.Cert.Raw)
	defer s.rounds.agentDown(peer.ID, ss.id)
	err = ss.send(&protocol.Welcome{ProtocolVersion: version, AgentID: peer.ID, SessionID: ss.id,
		HeartbeatIntervalMs: uint32(s.cfg.Heartbeat / time.Millisecond), ServerTimeMs: now.UnixMilli(),
		Features: []string{protocol.FeatureUndigestedUploads}})
	if err != nil {
		ss.close(err)
		return
	}
	if err := s.store.Seen(peer.ID, now, hello.SoftwareVersion, &hello.Capabilities); err != nil {
		log.Error("record session", "err", err)
	}
	log.Info("agent connected", "session", ss.id, "datasets", len(hello.Capabilities.Datasets), "version", hello.SoftwareVersion)
	go ss.writeQueued()
	go s.acceptStreams(ctx, ss, log)
	err = s.control(ss, rd)
	ss.close(err)
	_ = s.store.Seen(peer.ID, s.cfg.Now(), "", nil)
	log.Info("agent disconnected", "session", ss.id, "reason", errString(err))
}

func errString(err error) string {
	if err == nil {
		return "goodbye"
	}
	return err.Error()
}

// control reads the control stream until the session ends.
func (s *Server) control(ss *session, rd *protocol.Reader) error {
	silence := 3 * s.cfg.Heartbeat
	for {
		_ = ss.ctrl.SetReadDeadline(time.Now().Add(silence))
		m, err := rd.Read()
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				return protocol.NewError(protocol.CodeDeadlineExceeded, "no heartbeat for %v", silence)
			}
			if pe, ok := errors.AsType[*protocol.Error](err); ok && !pe.Code.Retryable() && isSkippable(pe.Code) {
				continue // a frame we cannot use, already consumed; the stream goes on
			}
			return transport.ConnError(ss.conn, err)
		}
		ss.lastSeen.Store(s.cfg.Now().UnixNano())
		switch m := m.(type) {
		case *protocol.Heartbeat:
			if err := ss.send(&protocol.HeartbeatAck{Seq: m.Seq, ServerTimeMs: s.cfg.Now().UnixMilli()}); err != nil {
				return err
			}
		case *protocol.Goodbye:
			return nil
		case *protocol.Error:
			return m
		default:
			s.rounds.control(ss.agent, m)
		}
	}
}

// isSkippable reports whether a Reader error left the stream usable (the bad frame was
// consumed whole).
func isSkippable(c protocol.ErrorCode) bool {
	return c == protocol.CodeUnknownMessage || c == protocol.CodeMalformed || c == protocol.CodeInvalid
}

// acceptStreams serves the streams an agent opens besides the control stream.
func (s *Server) acceptStreams(ctx context.Context, ss *session, log *slog.Logger) {
	for {
		st, err := ss.conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		go func() {
			rd := protocol.NewReader(st, 0)
			m, err := transport.ReadFirst(st, rd)
			if err != nil {
				transport.Reject(st, protocol.NewError(protocol.CodeProtocol, "stream: %v", err))
				return
			}
			switch m := m.(type) {
			case *protocol.ModelRequest:
				if err := s.serveModel(st, m); err != nil {
					log.Warn("model download failed", "version", m.Version, "err", err)
					transport.Reject(st, err)
				}
			case *protocol.UpdateHeader:
				if err := s.rounds.receive(ctx, ss.agent, st, m); err != nil {
					log.Warn("update refused", "task", m.TaskID, "err", err)
					transport.Reject(st, err)
					return
				}
				_ = st.Close()
				transport.EndRead(st)
			default:
				log.Warn("unexpected stream", "first", m.Type())
				transport.Reject(st, protocol.NewError(protocol.CodeProtocol, "a stream may not begin with %s", m.Type()))
			}
		}()
	}
}

// addSession registers ss, replacing (and closing) an older session of the same agent.
func (s *Server) addSession(ss *session) bool {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return false
	}
	old := s.sessions[ss.agent]
	s.sessions[ss.agent] = ss
	s.mu.Unlock()
	if old != nil {
		_ = old.send(&protocol.Goodbye{Reason: "a newer session of this agent replaced this one", Code: protocol.CodeSessionReplaced})
		old.close(protocol.NewError(protocol.CodeSessionReplaced, "replaced by a newer session"))
	}
	return true
}

func (s *Server) removeSession(ss *session) {
	s.mu.Lock()
	if s.sessions[ss.agent] == ss {
		delete(s.sessions, ss.agent)
	}
	s.mu.Unlock()
}

// dropSession closes the session of agent id, if it has one.
func (s *Server) dropSession(id string, err error) {
	s.mu.Lock()
	ss := s.sessions[id]
	s.mu.Unlock()
	if ss != nil {
		_ = ss.send(&protocol.Goodbye{Reason: message(err), Code: protocol.CodeOf(err)})
		ss.close(err)
	}
}

// message is an error's text without the protocol's code prefix, for Goodbye.Reason.
func message(err error) string {
	if pe, ok := errors.AsType[*protocol.Error](err); ok && pe.Msg != "" {
		return pe.Msg
	}
	return err.Error()
}

// SessionInfo describes a connected agent.
type SessionInfo struct {
	Agent           string                `json:"agent"`
	Session         string                `json:"session"`
	Remote          string                `json:"remote"`
	Since           time.Time             `json:"since"`
	LastSeen        time.Time             `json:"last_seen"`
	SoftwareVersion string                `json:"software_version,omitempty"`
	Capabilities    protocol.Capabilities `json:"capabilities"`
}

// Sessions lists the connected agents.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, SessionInfo{Agent: ss.agent, Session: ss.id, Remote: ss.remote, Since: ss.since,
			LastSeen: time.Unix(0, ss.lastSeen.Load()), SoftwareVersion: ss.hello.SoftwareVersion, Capabilities: ss.hello.Capabilities})
	}
	return out
}

// Online reports how many agents are connected.
func (s *Server) Online() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
