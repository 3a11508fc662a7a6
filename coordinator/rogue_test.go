package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// rogue is a hand-driven agent: it speaks the protocol directly so that it can send
// what a correct agent never would.
type rogue struct {
	mu   sync.Mutex // serialises control frames
	t    *testing.T
	conn *quic.Conn
	ctrl *quic.Stream
	rd   *protocol.Reader
	hi   *protocol.Welcome
}

func dialRogue(t *testing.T, c *cluster, id *agent.Identity, dataset string) *rogue {
	t.Helper()
	tr, err := transport.NewClientTransport()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { transport.CloseTransport(tr) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := transport.Dial(ctx, tr, c.addr, transport.ClientTLS(id.CA, id.Cert))
	if err != nil {
		t.Fatal(err)
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &rogue{t: t, conn: conn, ctrl: st, rd: protocol.NewReader(st, 0)}
	r.send(&protocol.Hello{ProtocolVersion: protocol.Version, AgentID: id.State.ID,
		Capabilities: protocol.Capabilities{Datasets: []protocol.DatasetInfo{{Name: dataset, Examples: 10, Labelled: 10}}}})
	w, err := protocol.Expect[*protocol.Welcome](r.rd.Read())
	if err != nil {
		t.Fatal(err)
	}
	r.hi = w
	// Heartbeats, as every agent must send.
	hbCtx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go func() {
		tick := time.NewTicker(time.Duration(w.HeartbeatIntervalMs) * time.Millisecond)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			select {
			case <-hbCtx.Done():
				return
			case <-tick.C:
				if r.write(&protocol.Heartbeat{Seq: seq}) != nil {
					return
				}
			}
		}
	}()
	return r
}

func (r *rogue) write(m protocol.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return protocol.WriteMessage(r.ctrl, m)
}

func (r *rogue) send(m protocol.Message) {
	r.t.Helper()
	if err := r.write(m); err != nil {
		r.t.Fatal(err)
	}
}

// offer waits for a TaskOffer, answering heartbeats' absence is fine for a few seconds.
func (r *rogue) offer() *protocol.TaskOffer {
	r.t.Helper()
	_ = r.ctrl.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		m, err := r.rd.Read()
		if err != nil {
			r.t.Fatal(err)
		}
		if o, ok := m.(*protocol.TaskOffer); ok {
			return o
		}
	}
}

// upload sends an update stream and returns the coordinator's verdict.
func (r *rogue) upload(hdr *protocol.UpdateHeader, tensors []protocol.TensorRef) error {
	_, err := r.uploadDigest(hdr, tensors, protocol.DigestSHA256)
	return err
}

// uploadDigest is upload with the tensor stream's digest chosen; it returns the ack.
func (r *rogue) uploadDigest(hdr *protocol.UpdateHeader, tensors []protocol.TensorRef, d protocol.Digest) (*protocol.UpdateAck, error) {
	st, err := r.conn.OpenStreamSync(context.Background())
	if err != nil {
		return nil, err
	}
	_ = st.SetDeadline(time.Now().Add(10 * time.Second))
	_ = protocol.WriteMessage(st, hdr)
	tw := protocol.NewTensorWriter(protocol.Limits{})
	if err := tw.SetDigest(d); err != nil {
		return nil, err
	}
	_, _ = tw.Write(st, tensors, nil)
	_ = st.Close()
	m, err := protocol.NewReader(st, 0).Read()
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *protocol.Error:
		return nil, m
	case *protocol.UpdateAck:
		return m, nil
	}
	return nil, fmt.Errorf("unexpected reply %s", m.Type())
}

// startBlobsRound submits the task "blobs" — one dense layer, 4 inputs to 2 classes,
// trained on the agents' "blobs" data — for perRound agents of which quorum must
// deliver within the train deadline, and starts one round.
func startBlobsRound(t *testing.T, adm *coordinator.AdminClient, perRound, quorum int, train string) {
	t.Helper()
	spec := fmt.Sprintf(`{"name": "blobs", "dataset": "blobs",
	  "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 2}]},
	  "train": {"epochs": 1, "batch": 8, "lr": 0.1}, "agents_per_round": %d, "quorum": %d, "over_select": 1,
	  "deadlines": {"configure": "5s", "train": %q}, "seed": 1}`, perRound, quorum, train)
	ctx := context.Background()
	if _, err := adm.SubmitTask(ctx, json.RawMessage(spec)); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.StartRounds(ctx, "blobs", 1); err != nil {
		t.Fatal(err)
	}
}

// blobsLayout is the parameters of startBlobsRound's model, as an update carries them.
func blobsLayout() []protocol.TensorInfo {
	return []protocol.TensorInfo{{Name: "fc1.weight", DType: protocol.DTypeF32, Shape: []int{2, 4}}, {Name: "fc1.bias", DType: protocol.DTypeF32, Shape: []int{2}}}
}

// waitRoundDone waits for the only task's rounds to end; what says what is awaited.
func waitRoundDone(t *testing.T, adm *coordinator.AdminClient, what string) {
	t.Helper()
	waitForWithin(t, time.Minute, func() bool {
		ts, err := adm.Tasks(context.Background())
		return err == nil && ts[0].Status == "done"
	}, what)
}

// checkUpdates fails t unless the blobs task's newest version aggregates want updates.
func checkUpdates(t *testing.T, adm *coordinator.AdminClient, want float64) {
	t.Helper()
	vs, err := adm.Versions(context.Background(), "blobs")
	if err != nil {
		t.Fatal(err)
	}
	if n := vs[len(vs)-1].Metrics["updates"]; n != want {
		t.Fatalf("the version aggregates %v updates, want %v", n, want)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (a logger's).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUploadDigests: the coordinator offers undigested uploads, takes updates with and
// without a SHA-256 (an agent of an earlier release hashes its uploads), and a real agent
// uploads without one.
func TestUploadDigests(t *testing.T) {
	var log syncBuffer
	c := newClusterWith(t, func(c *cluster) {
		c.logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	trainingAgent(t, c, "agent", blobs(100, 1))
	hashed := dialRogue(t, c, c.enroll("hashed"), "blobs")
	bare := dialRogue(t, c, c.enroll("bare"), "blobs")
	if !hashed.hi.HasFeature(protocol.FeatureUndigestedUploads) {
		t.Fatalf("Welcome.Features = %q, want %q", hashed.hi.Features, protocol.FeatureUndigestedUploads)
	}
	adm := c.admin()
	startBlobsRound(t, adm, 3, 3, "20s")
	layout := blobsLayout()
	update := make([]float32, 10)
	for i := range update {
		update[i] = float32(i) / 100
	}
	for _, tc := range []struct {
		r      *rogue
		digest protocol.Digest
	}{{hashed, protocol.DigestSHA256}, {bare, protocol.DigestNone}} {
		o := tc.r.offer()
		tc.r.send(&protocol.TaskAccept{TaskID: o.TaskID, Round: o.Round})
		ack, err := tc.r.uploadDigest(&protocol.UpdateHeader{TaskID: o.TaskID, Round: o.Round, BaseVersion: o.BaseVersion, BaseHash: o.BaseHash, Examples: 10},
			protocol.ParamRefs(layout, update), tc.digest)
		if err != nil {
			t.Fatalf("upload with digest %s: %v", tc.digest, err)
		}
		want, err := protocol.WriteTensors(io.Discard, protocol.ParamRefs(layout, update), nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.digest == protocol.DigestNone {
			want = protocol.Hash{}
		}
		if ack.SHA256 != want {
			t.Errorf("digest %s: ack hash %s, want %s", tc.digest, ack.SHA256, want)
		}
	}
	waitRoundDone(t, adm, "the round to commit")
	checkUpdates(t, adm, 3)
	for agent, digest := range map[string]protocol.Digest{"agent": protocol.DigestNone, "hashed": protocol.DigestSHA256, "bare": protocol.DigestNone} {
		if !regexp.MustCompile(`msg="update read" agent=` + agent + ` .* digest=` + string(digest) + `\b`).MatchString(log.String()) {
			t.Errorf("no update from %s read with digest %s in the coordinator's log", agent, digest)
		}
	}
}

func TestBadUpdatesAreRejectedAndTheRoundGoesOn(t *testing.T) {
	c := newCluster(t)
	for i := range 3 {
		trainingAgent(t, c, "good-"+string(rune('a'+i)), blobs(100, uint64(i)))
	}
	r := dialRogue(t, c, c.enroll("rogue"), "blobs")
	adm := c.admin()
	startBlobsRound(t, adm, 4, 3, "10s")
	o := r.offer()
	r.send(&protocol.TaskAccept{TaskID: o.TaskID, Round: o.Round})
	layout := blobsLayout()
	good := make([]float32, 10)
	hdr := func(base uint64, taskID string) *protocol.UpdateHeader {
		return &protocol.UpdateHeader{TaskID: taskID, Round: o.Round, BaseVersion: base, BaseHash: o.BaseHash, Examples: 10}
	}
	nan := make([]float32, 10)
	nan[3] = float32(math.NaN())
	wrongShape := []protocol.TensorRef{{Info: protocol.TensorInfo{Name: "fc1.weight", DType: protocol.DTypeF32, Shape: []int{4, 2}}, F32: good[:8]},
		{Info: layout[1], F32: good[8:]}}
	cases := []struct {
		name    string
		hdr     *protocol.UpdateHeader
		tensors []protocol.TensorRef
		code    protocol.ErrorCode
	}{
		{"stale base", hdr(o.BaseVersion+5, o.TaskID), protocol.ParamRefs(layout, good), protocol.CodeStaleBase},
		{"replay of another attempt", hdr(o.BaseVersion, "blobs.r1.a9.oldboot"), protocol.ParamRefs(layout, good), protocol.CodeNotFound},
		{"wrong shapes", hdr(o.BaseVersion, o.TaskID), wrongShape, protocol.CodeInvalid},
	}
	for _, tc := range cases {
		if err := r.upload(tc.hdr, tc.tensors); protocol.CodeOf(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}
	// The rogue's admission was used up by the wrong-shaped upload: a NaN now, or any
	// second try, is refused as well.
	if err := r.upload(hdr(o.BaseVersion, o.TaskID), protocol.ParamRefs(layout, nan)); err == nil {
		t.Error("a NaN update after a failed one was accepted")
	}
	waitRoundDone(t, adm, "the round to commit without the rogue")
	checkUpdates(t, adm, 3) // the good ones
}

func TestNaNUpdateIsRejected(t *testing.T) {
	c := newCluster(t)
	for i := range 2 {
		trainingAgent(t, c, "good-"+string(rune('a'+i)), blobs(100, uint64(i)))
	}
	r := dialRogue(t, c, c.enroll("rogue"), "blobs")
	adm := c.admin()
	startBlobsRound(t, adm, 3, 2, "10s")
	o := r.offer()
	r.send(&protocol.TaskAccept{TaskID: o.TaskID, Round: o.Round})
	layout := blobsLayout()
	nan := make([]float32, 10)
	nan[3] = float32(math.Inf(1))
	err := r.upload(&protocol.UpdateHeader{TaskID: o.TaskID, Round: o.Round, BaseVersion: o.BaseVersion, BaseHash: o.BaseHash, Examples: 10},
		protocol.ParamRefs(layout, nan))
	if protocol.CodeOf(err) != protocol.CodeInvalid {
		t.Fatalf("non-finite update: %v, want invalid", err)
	}
	waitRoundDone(t, adm, "the round to commit without the NaN update")
}
