package coordinator

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// Admin methods (AdminRequest.Method) and their JSON bodies.
const (
	// MethodAgentsList takes {} and returns []AgentStatus.
	MethodAgentsList = "agents.list"
	// MethodAgentsRevoke takes {"id": ...} and returns the revoked AgentStatus.
	MethodAgentsRevoke = "agents.revoke"
	// MethodStatus takes {} and returns Status.
	MethodStatus = "status"
	// MethodTaskSubmit takes a task spec and returns its initial store.Version.
	MethodTaskSubmit = "task.submit"
	// MethodTaskList takes {} and returns []TaskInfo.
	MethodTaskList = "task.list"
	// MethodRoundStart takes RoundStartRequest and returns the TaskInfo.
	MethodRoundStart = "round.start"
	// MethodVersionsList takes VersionsRequest and returns []store.Version.
	MethodVersionsList = "versions.list"
	// MethodVersionGet takes VersionRequest and returns the store.Version.
	MethodVersionGet = "versions.get"
)

// TaskInfo is a task as admin clients see it.
type TaskInfo struct {
	Name       string             `json:"name"`
	Spec       json.RawMessage    `json:"spec"`
	Status     string             `json:"status"`
	Dataset    string             `json:"dataset"`
	Model      string             `json:"model"`
	NextRound  uint64             `json:"next_round"`
	RoundsLeft int                `json:"rounds_left"`
	Version    uint64             `json:"version"`
	Metrics    map[string]float64 `json:"metrics,omitempty"` // of the latest version
	// Privacy is what a private task has spent, as of its latest version, and its budget.
	Privacy *TaskPrivacy `json:"privacy,omitempty"`
	Waiting bool         `json:"waiting_for_agents,omitempty"`
	Round   any          `json:"round,omitempty"` // engine.RoundStatus of the running round
	Created time.Time    `json:"created"`
}

// TaskPrivacy is a private task's budget and what it has spent.
type TaskPrivacy struct {
	Epsilon   float64 `json:"epsilon"` // spent
	Delta     float64 `json:"delta"`
	Budget    float64 `json:"budget_epsilon"`
	Rounds    uint64  `json:"rounds"`     // committed
	MaxRounds uint64  `json:"max_rounds"` // the budget allows
}

// RoundStartRequest is the body of MethodRoundStart.
type RoundStartRequest struct {
	Task   string `json:"task"`
	Rounds int    `json:"rounds"`
}

// VersionsRequest is the body of MethodVersionsList.
type VersionsRequest struct {
	Task string `json:"task,omitempty"`
}

// VersionRequest is the body of MethodVersionGet: a number, or the latest of a task
// (of the only task when Task is empty).
type VersionRequest struct {
	Number uint64 `json:"number,omitempty"`
	Latest bool   `json:"latest,omitempty"`
	Task   string `json:"task,omitempty"`
}

// Status is the coordinator's state in numbers, and its tasks.
type Status struct {
	Addr     string     `json:"addr"`
	Online   int        `json:"online"`
	Enrolled int        `json:"enrolled"`
	Since    time.Time  `json:"since"`
	Tasks    []TaskInfo `json:"tasks"`
}

// AgentStatus is an agent as admin clients see it: its record and, when connected, its
// session.
type AgentStatus struct {
	ID              string                `json:"id"`
	State           string                `json:"state"` // online, offline or revoked
	EnrolledAt      time.Time             `json:"enrolled_at"`
	RevokedAt       *time.Time            `json:"revoked_at,omitempty"`
	LastSeen        time.Time             `json:"last_seen,omitzero"`
	Session         string                `json:"session,omitempty"`
	Remote          string                `json:"remote,omitempty"`
	SoftwareVersion string                `json:"software_version,omitempty"`
	Capabilities    protocol.Capabilities `json:"capabilities"`
}

// RevokeRequest is the body of MethodAgentsRevoke.
type RevokeRequest struct {
	ID string `json:"id"`
}

// adminHandler answers one admin method.
type adminHandler func(ctx context.Context, body []byte) (any, error)

func (s *Server) adminHandlers() map[string]adminHandler {
	return map[string]adminHandler{
		MethodAgentsList:   s.adminAgentsList,
		MethodAgentsRevoke: s.adminAgentsRevoke,
		MethodStatus:       s.adminStatus,
		MethodTaskSubmit:   s.adminTaskSubmit,
		MethodTaskList:     s.adminTaskList,
		MethodRoundStart:   s.adminRoundStart,
		MethodVersionsList: s.adminVersionsList,
		MethodVersionGet:   s.adminVersionGet,
	}
}

// serveAdmin answers an admin client's requests, one per stream.
func (s *Server) serveAdmin(ctx context.Context, conn *quic.Conn, peer transport.Peer, log *slog.Logger) {
	handlers := s.adminHandlers()
	defer transport.Close(conn, nil)
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		go func() {
			rd := protocol.NewReader(st, 0)
			m, err := transport.ReadFirst(st, rd)
			if err != nil {
				transport.Reject(st, protocol.NewError(protocol.CodeProtocol, "admin stream: %v", err))
				return
			}
			if mr, ok := m.(*protocol.ModelRequest); ok { // model pull
				if err := s.serveModel(st, mr); err != nil {
					transport.Reject(st, err)
				}
				return
			}
			req, ok := m.(*protocol.AdminRequest)
			if !ok {
				transport.Reject(st, protocol.NewError(protocol.CodeProtocol, "an admin stream must begin with AdminRequest, got %s", m.Type()))
				return
			}
			h, ok := handlers[req.Method]
			if !ok {
				transport.Reject(st, protocol.NewError(protocol.CodeNotFound, "unknown admin method %q", req.Method))
				return
			}
			out, err := h(ctx, req.Body)
			if err != nil {
				log.Warn("admin request failed", "method", req.Method, "err", err)
				transport.Reject(st, err)
				return
			}
			bodies, err := replyPages(out)
			if err != nil {
				transport.Reject(st, protocol.NewError(protocol.CodeInternal, "encode reply: %v", err))
				return
			}
			log.Info("admin request", "method", req.Method)
			for i, body := range bodies {
				_ = st.SetWriteDeadline(time.Now().Add(transport.FirstFrameTimeout))
				if err := protocol.WriteMessage(st, &protocol.AdminResponse{Body: body, More: i < len(bodies)-1}); err != nil {
					st.CancelWrite(quic.StreamErrorCode(protocol.CodeOf(err).AppErrorCode()))
					return
				}
			}
			_ = st.Close()
			transport.EndRead(st)
		}()
	}
}

// adminPage is how many elements of a list reply go in one AdminResponse frame, so that
// a reply of any length fits the protocol's frame limit.
const adminPage = 500

// replyPages encodes a reply as JSON bodies: one, or for a slice, one JSON array per page.
func replyPages(out any) ([][]byte, error) {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Slice || v.Len() <= adminPage {
		b, err := json.Marshal(out)
		return [][]byte{b}, err
	}
	var bodies [][]byte
	for i := 0; i < v.Len(); i += adminPage {
		b, err := json.Marshal(v.Slice(i, min(i+adminPage, v.Len())).Interface())
		if err != nil {
			return nil, err
		}
		bodies = append(bodies, b)
	}
	return bodies, nil
}

func (s *Server) adminAgentsList(context.Context, []byte) (any, error) {
	recs, err := s.store.Agents()
	if err != nil {
		return nil, protocol.NewError(protocol.CodeInternal, "agent registry: %v", err)
	}
	online := map[string]SessionInfo{}
	for _, si := range s.Sessions() {
		online[si.Agent] = si
	}
	out := make([]AgentStatus, 0, len(recs))
	for _, r := range recs {
		st := AgentStatus{ID: r.ID, State: "offline", EnrolledAt: r.EnrolledAt, RevokedAt: r.RevokedAt, LastSeen: r.LastSeen,
			SoftwareVersion: r.SoftwareVersion, Capabilities: r.Capabilities}
		if si, ok := online[r.ID]; ok {
			st.State, st.Session, st.Remote, st.LastSeen = "online", si.Session, si.Remote, si.LastSeen
			st.SoftwareVersion, st.Capabilities = si.SoftwareVersion, si.Capabilities
		}
		if r.Revoked() {
			st.State = "revoked"
		}
		out = append(out, st)
	}
	return out, nil
}

func (s *Server) adminStatus(context.Context, []byte) (any, error) {
	recs, err := s.store.Agents()
	if err != nil {
		return nil, protocol.NewError(protocol.CodeInternal, "agent registry: %v", err)
	}
	tasks, err := s.taskInfos(context.Background())
	if err != nil {
		return nil, err
	}
	return Status{Addr: s.Addr().String(), Online: s.Online(), Enrolled: len(recs), Since: s.started, Tasks: tasks}, nil
}

func (s *Server) taskInfos(ctx context.Context) ([]TaskInfo, error) {
	recs, err := s.store.Tasks()
	if err != nil {
		return nil, protocol.NewError(protocol.CodeInternal, "tasks: %v", err)
	}
	live, err := s.rounds.tasksStatus(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]int{}
	for i, t := range live {
		byName[t.Name] = i
	}
	out := make([]TaskInfo, 0, len(recs))
	for _, rec := range recs {
		ti := TaskInfo{Name: rec.Name, Spec: rec.Spec, Status: rec.Status, NextRound: rec.Round, RoundsLeft: rec.RoundsLeft, Version: rec.Latest, Created: rec.Created}
		spec, err := task.Parse(rec.Spec)
		if err == nil {
			ti.Dataset = spec.Dataset
			if ms, err := spec.ModelSpec(); err == nil {
				ti.Model = ms.Name
			}
		}
		if v, ok, err := s.store.Version(rec.Latest); err == nil && ok {
			ti.Metrics = v.Metrics
			if spec != nil && spec.Privacy != nil {
				p := spec.Privacy
				ti.Privacy = &TaskPrivacy{Delta: p.Delta, Budget: p.Epsilon, Rounds: v.Round, MaxRounds: p.MaxRounds()}
				if v.Privacy != nil {
					ti.Privacy.Epsilon = v.Privacy.Epsilon
				}
			}
		}
		if i, ok := byName[rec.Name]; ok {
			ti.Status, ti.NextRound, ti.RoundsLeft, ti.Waiting = string(live[i].Status), live[i].NextRound, live[i].RoundsLeft, live[i].Waiting
			ti.Version = live[i].Base
			if live[i].Round != nil {
				ti.Round = live[i].Round
			}
		}
		out = append(out, ti)
	}
	return out, nil
}

func (s *Server) adminTaskSubmit(ctx context.Context, body []byte) (any, error) {
	spec, err := task.Parse(body)
	if err != nil {
		return nil, protocol.NewError(protocol.CodeInvalid, "%v", err)
	}
	var v store.Version
	if callErr := s.rounds.call(ctx, func() { v, err = s.rounds.submit(spec) }); callErr != nil {
		return nil, callErr
	}
	return v, err
}

func (s *Server) adminTaskList(ctx context.Context, _ []byte) (any, error) { return s.taskInfos(ctx) }

func (s *Server) adminRoundStart(ctx context.Context, body []byte) (any, error) {
	var req RoundStartRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Task == "" {
		return nil, protocol.NewError(protocol.CodeInvalid, "round.start needs {\"task\": NAME, \"rounds\": N}")
	}
	if req.Rounds == 0 {
		rec, ok, err := s.store.Task(req.Task)
		if err != nil || !ok {
			return nil, protocol.NewError(protocol.CodeNotFound, "no task %q: submit it first (fedq task submit FILE)", req.Task)
		}
		spec, err := task.Parse(rec.Spec)
		if err != nil {
			return nil, err
		}
		if req.Rounds = spec.Rounds; req.Rounds == 0 {
			return nil, protocol.NewError(protocol.CodeInvalid, "how many rounds? the task names none: give --rounds")
		}
	}
	if _, err := s.rounds.requestRounds(ctx, req.Task, req.Rounds); err != nil {
		return nil, err
	}
	infos, err := s.taskInfos(ctx)
	if err != nil {
		return nil, err
	}
	for _, ti := range infos {
		if ti.Name == req.Task {
			return ti, nil
		}
	}
	return nil, protocol.NewError(protocol.CodeNotFound, "no task %q", req.Task)
}

func (s *Server) adminVersionsList(_ context.Context, body []byte) (any, error) {
	var req VersionsRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, protocol.NewError(protocol.CodeInvalid, "versions.list: %v", err)
	}
	vs, err := s.store.Versions(req.Task)
	if err != nil {
		return nil, protocol.NewError(protocol.CodeInternal, "versions: %v", err)
	}
	if vs == nil {
		vs = []store.Version{}
	}
	return vs, nil
}

func (s *Server) adminVersionGet(_ context.Context, body []byte) (any, error) {
	var req VersionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, protocol.NewError(protocol.CodeInvalid, "versions.get: %v", err)
	}
	n := req.Number
	if req.Latest || n == 0 {
		recs, err := s.store.Tasks()
		if err != nil {
			return nil, err
		}
		var match []store.TaskRecord
		for _, r := range recs {
			if req.Task == "" || r.Name == req.Task {
				match = append(match, r)
			}
		}
		switch {
		case len(match) == 0:
			return nil, protocol.NewError(protocol.CodeNotFound, "no task %q", req.Task)
		case len(match) > 1:
			return nil, protocol.NewError(protocol.CodeInvalid, "%d tasks: say which (--task)", len(match))
		}
		n = match[0].Latest
	}
	v, ok, err := s.store.Version(n)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, protocol.NewError(protocol.CodeNotFound, "no version %d", n)
	}
	return v, nil
}

func (s *Server) adminAgentsRevoke(_ context.Context, body []byte) (any, error) {
	var req RevokeRequest
	if err := json.Unmarshal(body, &req); err != nil || req.ID == "" {
		return nil, protocol.NewError(protocol.CodeInvalid, "agents.revoke needs {\"id\": AGENT}")
	}
	rec, err := s.store.Revoke(req.ID, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	s.dropSession(req.ID, protocol.NewError(protocol.CodeRevoked, "agent %q was revoked", req.ID))
	return AgentStatus{ID: rec.ID, State: "revoked", EnrolledAt: rec.EnrolledAt, RevokedAt: rec.RevokedAt, LastSeen: rec.LastSeen}, nil
}

// AdminClient calls a coordinator's admin methods over QUIC with an admin certificate.
type AdminClient struct {
	tr   *quic.Transport
	conn *quic.Conn
	// SigningKey verifies the coordinator's model versions (nil if the admin directory
	// has no signing.pub).
	SigningKey ed25519.PublicKey
}

// DialAdmin connects to the coordinator described by an admin directory: the
// coordinator's own --dir, or one written by `fedq admin cert`. addr, when not empty,
// overrides the address in it.
func DialAdmin(ctx context.Context, dir, addr string) (*AdminClient, error) {
	cd, err := ca.LoadAdmin(dir)
	if err != nil {
		return nil, err
	}
	if addr == "" {
		addr = cd.Addr
	}
	tr, err := transport.NewClientTransport()
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, transport.HandshakeTimeout)
	defer cancel()
	conn, err := transport.Dial(dctx, tr, addr, transport.ClientTLS(cd.CA, cd.Cert))
	if err != nil {
		_ = transport.CloseTransport(tr)
		return nil, fmt.Errorf("connect to coordinator at %s: %w", addr, err)
	}
	return &AdminClient{tr: tr, conn: conn, SigningKey: cd.SigningKey}, nil
}

// Call invokes method with req (JSON-encoded) and decodes the reply into resp.
func (c *AdminClient) Call(ctx context.Context, method string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	st, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		return transport.ConnError(c.conn, err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(d)
	}
	if err := protocol.WriteMessage(st, &protocol.AdminRequest{Method: method, Body: body}); err != nil {
		return transport.ConnError(c.conn, err)
	}
	_ = st.Close()
	rd := protocol.NewReader(st, protocol.MaxFrameSize)
	var pages []json.RawMessage
	for {
		m, err := rd.Read()
		if err != nil {
			return transport.ConnError(c.conn, err)
		}
		switch m := m.(type) {
		case *protocol.AdminResponse:
			pages = append(pages, m.Body)
			if m.More {
				continue
			}
		case *protocol.Error:
			transport.EndRead(st)
			return m
		default:
			st.CancelRead(quic.StreamErrorCode(protocol.CodeProtocol.AppErrorCode()))
			return fmt.Errorf("%s: unexpected reply %s", method, m.Type())
		}
		break
	}
	transport.EndRead(st)
	if resp == nil {
		return nil
	}
	reply := []byte(pages[0])
	if len(pages) > 1 {
		// A paged list: join the pages' arrays.
		var all []json.RawMessage
		for _, p := range pages {
			var part []json.RawMessage
			if err := json.Unmarshal(p, &part); err != nil {
				return fmt.Errorf("%s reply: %w", method, err)
			}
			all = append(all, part...)
		}
		if reply, err = json.Marshal(all); err != nil {
			return err
		}
	}
	if err := json.Unmarshal(reply, resp); err != nil {
		return fmt.Errorf("%s reply: %w", method, err)
	}
	return nil
}

// Close closes the connection.
func (c *AdminClient) Close() error {
	transport.Close(c.conn, nil)
	return transport.CloseTransport(c.tr)
}

// Agents lists the enrolled agents (MethodAgentsList), ordered by ID.
func (c *AdminClient) Agents(ctx context.Context) ([]AgentStatus, error) {
	var out []AgentStatus
	if err := c.Call(ctx, MethodAgentsList, struct{}{}, &out); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b AgentStatus) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, nil
}

// Status returns the coordinator's state in numbers (MethodStatus).
func (c *AdminClient) Status(ctx context.Context) (Status, error) {
	var out Status
	err := c.Call(ctx, MethodStatus, struct{}{}, &out)
	return out, err
}

// SubmitTask submits a task spec (JSON) and returns its initial version.
func (c *AdminClient) SubmitTask(ctx context.Context, spec json.RawMessage) (store.Version, error) {
	var v store.Version
	err := c.Call(ctx, MethodTaskSubmit, spec, &v)
	return v, err
}

// Tasks lists the tasks.
func (c *AdminClient) Tasks(ctx context.Context) ([]TaskInfo, error) {
	var out []TaskInfo
	err := c.Call(ctx, MethodTaskList, struct{}{}, &out)
	return out, err
}

// StartRounds asks for n more rounds of a task (0: the task's own number).
func (c *AdminClient) StartRounds(ctx context.Context, name string, n int) (TaskInfo, error) {
	var out TaskInfo
	err := c.Call(ctx, MethodRoundStart, RoundStartRequest{Task: name, Rounds: n}, &out)
	return out, err
}

// Versions lists the versions of a task (all when empty).
func (c *AdminClient) Versions(ctx context.Context, name string) ([]store.Version, error) {
	var out []store.Version
	err := c.Call(ctx, MethodVersionsList, VersionsRequest{Task: name}, &out)
	return out, err
}

// Version returns a version's metadata.
func (c *AdminClient) Version(ctx context.Context, req VersionRequest) (store.Version, error) {
	var out store.Version
	err := c.Call(ctx, MethodVersionGet, req, &out)
	return out, err
}

// FetchModel downloads a version's weights; see transport.FetchModel.
func (c *AdminClient) FetchModel(ctx context.Context, version uint64, hash protocol.Hash, read func(*protocol.TensorReader) error) error {
	return transport.FetchModel(ctx, c.conn, version, hash, read)
}

// Revoke revokes agent id (MethodAgentsRevoke).
func (c *AdminClient) Revoke(ctx context.Context, id string) (AgentStatus, error) {
	var out AgentStatus
	err := c.Call(ctx, MethodAgentsRevoke, RevokeRequest{ID: id}, &out)
	return out, err
}

// Raw sends data as the whole content of one stream and returns the coordinator's
// answer as an error (nil only if it answered AdminResponse): for tests of malformed
// input.
func (c *AdminClient) Raw(ctx context.Context, data []byte) error {
	st, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	_ = st.SetDeadline(time.Now().Add(transport.FirstFrameTimeout))
	if _, err := st.Write(data); err != nil {
		return err
	}
	_ = st.Close()
	m, err := protocol.NewReader(st, protocol.MaxFrameSize).Read()
	if err != nil {
		return err
	}
	if e, ok := m.(*protocol.Error); ok {
		return e
	}
	return nil
}
