package coordinator

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/aggregation"
	"github.com/fedq/fedq/coordinator/engine"
	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/privacy/dp"
	"github.com/fedq/fedq/privacy/secagg"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// secureRound is the driver's side of a running secure round: the protocol's server
// state and the parameters every offer carries.
type secureRound struct {
	srv    *secagg.Server
	cfg    secagg.Config
	params *protocol.SecAggParams
	// Distributed DP: the round's encoding, the agents its noise is planned for (the
	// fewest survivors it may commit with), and the population its agents were sampled
	// from (the sum is divided by the expected participants, or with fixed-size
	// sampling by the number sampled).
	ddp      *dp.Distributed
	planned  int
	eligible int
}

// startSecure prepares the secure aggregation of a round that is starting.
func (r *rounds) startSecure(tm *taskModel, a engine.StartRound) error {
	sa := tm.spec.SecAgg
	members := slices.Sorted(slices.Values(a.Selected))
	choice, err := sa.Choose(len(members))
	if err != nil {
		return err
	}
	cfg := secagg.Config{Round: a.TaskID, Members: members, Neighbours: choice.Neighbours, Threshold: choice.Threshold,
		Dim: protocol.MaskedLen(tm.size), Clip: sa.Clip, MaxWeight: sa.MaxWeight}
	if cfg.MaxWeight == 0 {
		cfg.MaxWeight = r.maxWeight(tm, members)
	}
	_, _ = rand.Read(cfg.GraphSeed[:])
	var ddp *dp.Distributed
	var planned int
	if p := tm.spec.Privacy; p != nil && p.Mode == task.Distributed {
		if len(members) > p.MaxAgents {
			return fmt.Errorf("%d agents sampled, more than the %d distributed DP's sum is sized for (privacy.max_agents)", len(members), p.MaxAgents)
		}
		var seed [32]byte
		_, _ = rand.Read(seed[:])
		planned = p.PlannedAgents(len(members), sa.Dropout)
		if ddp, err = p.Plan(tm.size, seed, planned); err != nil {
			return err
		}
		// The masked vector is the encoded update alone: DP-FedAvg's sum is unweighted,
		// and no agent's loss may leave it un-noised.
		cfg.Dim, cfg.MaxWeight = ddp.Padded, 1
	}
	if r.verify == nil {
		v := transport.NewCertVerifier(r.srv.ca.CAPool(), r.srv.cfg.Now)
		r.verify = &v
	}
	srv, err := secagg.NewServer(cfg, *r.verify)
	if err != nil {
		return err
	}
	cfg = srv.Config()
	tm.sa = &secureRound{srv: srv, cfg: cfg, ddp: ddp, planned: planned, eligible: a.Eligible, params: &protocol.SecAggParams{Threshold: uint32(cfg.Threshold),
		Neighbours: uint32(cfg.Neighbours), ModulusBits: 32, QuantRange: float64(cfg.Levels), ClipRange: cfg.Clip,
		Participants: uint32(len(members)), Members: members, GraphSeed: cfg.GraphSeed[:], MaxWeight: cfg.MaxWeight, Levels: cfg.Levels}}
	r.log.Info("secure round", "task", a.TaskID, "agents", len(members), "neighbours", cfg.Neighbours, "threshold", cfg.Threshold,
		"max_weight", cfg.MaxWeight, "noise_planned_for", planned)
	return nil
}

// maxWeight is the largest weight the round's agents can report — the examples they
// train on: local steps × batch, or the largest of their datasets × epochs. (The masked
// vector carries the update's values, the training loss and the weight, each scaled by
// weight/maxWeight, so the coordinator learns no agent's weight or loss either.)
func (r *rounds) maxWeight(tm *taskModel, members []string) float64 {
	t := tm.spec.Train
	if t.LocalSteps > 0 {
		return float64(t.LocalSteps * t.Batch)
	}
	most := 0.0
	for _, m := range members {
		for _, d := range r.caps[m].Datasets {
			if d.Name == tm.spec.Dataset {
				most = max(most, float64(d.Examples))
			}
		}
	}
	return max(1, most*float64(max(1, t.Epochs)))
}

// secureMessage takes a secure-aggregation message from an agent's control stream, on
// the loop.
func (r *rounds) secureMessage(agent string, m protocol.Message) {
	var taskID string
	var round uint64
	switch m := m.(type) {
	case *protocol.SecAggAdvertise:
		taskID, round = m.TaskID, m.Round
	case *protocol.SecAggShares:
		taskID, round = m.TaskID, m.Round
	case *protocol.SecAggUnmaskResponse:
		taskID, round = m.TaskID, m.Round
	default:
		return
	}
	tm := r.byTask[taskID]
	if tm == nil || tm.sa == nil || tm.sa.cfg.Round != taskID || tm.record == nil || tm.record.Round != round {
		r.log.Warn("secure-aggregation message for no running secure round", "agent", agent, "task", taskID, "type", m.Type())
		return
	}
	var phase engine.Phase
	var err error
	switch m := m.(type) {
	case *protocol.SecAggAdvertise:
		phase = engine.PhaseAdvertise
		err = tm.sa.srv.AddKeys(secagg.Keys{Member: agent, EncPub: m.EncPub, MaskPub: m.MaskPub, SelfCommit: m.SelfCommit,
			Signature: m.Signature, Credential: r.certs[agent]})
	case *protocol.SecAggShares:
		phase = engine.PhaseShare
		err = tm.sa.srv.AddShares(agent, m.Encrypted)
	case *protocol.SecAggUnmaskResponse:
		phase = engine.PhaseUnmask
		err = tm.sa.srv.AddReveals(agent, m.Shares)
	}
	if err != nil {
		r.log.Warn("secure-aggregation message refused", "agent", agent, "task", taskID, "type", m.Type(), "err", err)
		return
	}
	r.step(engine.SecAggSent{Agent: agent, TaskID: taskID, Phase: phase})
}

// closeSecure closes a phase of a secure round and sends what follows it.
func (r *rounds) closeSecure(a engine.CloseSecAgg) engine.Event {
	tm := r.tasks[a.Task]
	if tm == nil || tm.sa == nil || tm.sa.cfg.Round != a.TaskID {
		return engine.SecAggFailed{TaskID: a.TaskID, Reason: "no secure-aggregation state (the coordinator restarted?)"}
	}
	round := tm.record.Round
	var in []string
	switch a.Phase {
	case engine.PhaseAdvertise:
		rosters, err := tm.sa.srv.CloseAdvertise()
		if err != nil {
			return engine.SecAggFailed{TaskID: a.TaskID, Reason: err.Error()}
		}
		for _, m := range slices.Sorted(maps.Keys(rosters)) {
			peers := make([]protocol.SecAggPeer, len(rosters[m]))
			for i, k := range rosters[m] {
				peers[i] = protocol.SecAggPeer{AgentID: k.Member, EncPub: k.EncPub, MaskPub: k.MaskPub, Signature: k.Signature,
					Certificate: k.Credential, SelfCommit: k.SelfCommit}
			}
			r.srv.sendTo(m, &protocol.SecAggRoster{Round: round, TaskID: a.TaskID, Peers: peers})
			in = append(in, m)
		}
	case engine.PhaseShare:
		fwd, err := tm.sa.srv.CloseShares()
		if err != nil {
			return engine.SecAggFailed{TaskID: a.TaskID, Reason: err.Error()}
		}
		for _, m := range slices.Sorted(maps.Keys(fwd)) {
			r.srv.sendTo(m, &protocol.SecAggShares{Round: round, TaskID: a.TaskID, Encrypted: fwd[m]})
			in = append(in, m)
		}
	case engine.PhaseTrain:
		survivors, err := tm.sa.srv.CloseMasked()
		if err != nil {
			return engine.SecAggFailed{TaskID: a.TaskID, Reason: err.Error()}
		}
		if tm.sa.ddp != nil && len(survivors) < tm.sa.planned {
			// Fail before any share is revealed: unmasked, the sum of fewer agents' noise
			// shares than planned would be under-noised even in the coordinator's memory.
			return engine.SecAggFailed{TaskID: a.TaskID, Reason: fmt.Sprintf(
				"%d masked updates, distributed DP's noise is planned for %d: not unmasking a sum with too little noise", len(survivors), tm.sa.planned)}
		}
		for _, m := range survivors {
			r.srv.sendTo(m, &protocol.SecAggUnmaskRequest{Round: round, TaskID: a.TaskID, Survivors: survivors})
		}
		in = survivors
	default:
		return engine.SecAggFailed{TaskID: a.TaskID, Reason: fmt.Sprintf("no phase %s to close", a.Phase)}
	}
	r.log.Info("secure phase closed", "task", a.TaskID, "phase", a.Phase, "agents", len(in))
	return engine.SecAggClosed{TaskID: a.TaskID, Phase: a.Phase, In: in}
}

// receiveMasked reads a masked update (one U32 tensor) into a staging buffer and adds it
// to the round's masked sum on the loop; no masked vector is kept.
func (r *rounds) receiveMasked(ctx context.Context, agent string, st *quic.Stream, hdr *protocol.UpdateHeader, tm *taskModel, failed func(error) error) error {
	var buf []uint32
	select {
	case buf = <-tm.maskStaging:
	case <-ctx.Done():
		return failed(ctx.Err())
	}
	var sa *secureRound
	if err := r.call(ctx, func() { sa = tm.sa }); err != nil {
		tm.maskStaging <- buf
		return failed(err)
	}
	if sa == nil || sa.cfg.Round != hdr.TaskID {
		tm.maskStaging <- buf
		return failed(protocol.NewError(protocol.CodeDeadlineExceeded, "round %d closed while the update arrived", hdr.Round))
	}
	if len(buf) != sa.cfg.Dim {
		buf = make([]uint32, sa.cfg.Dim)
	}
	defer func() { tm.maskStaging <- buf }()
	_ = st.SetReadDeadline(time.Now().Add(transport.FirstFrameTimeout + time.Duration(4*sa.cfg.Dim)*time.Microsecond))
	tr, err := protocol.NewTensorReader(st, protocol.Limits{})
	if err != nil {
		return failed(err)
	}
	if err := protocol.ReadMasked(tr, buf); err != nil {
		return failed(err)
	}
	if err := tr.Finish(); err != nil {
		return failed(err)
	}
	var addErr error
	if err := r.call(ctx, func() {
		if r.byTask[hdr.TaskID] != tm || tm.sa != sa {
			addErr = protocol.NewError(protocol.CodeDeadlineExceeded, "round %d closed while the update arrived", hdr.Round)
			return
		}
		if hook := r.srv.cfg.ObserveUpdate; hook != nil {
			hook(agent, hdr, nil, buf)
		}
		if addErr = sa.srv.AddMasked(agent, buf); addErr != nil {
			addErr = protocol.NewError(protocol.CodeInvalid, "%v", addErr)
			return
		}
		r.step(engine.UpdateReceived{Agent: agent, TaskID: hdr.TaskID})
	}); err != nil {
		return failed(err)
	}
	if addErr != nil {
		return failed(addErr)
	}
	return ackUpdate(st, hdr, tr)
}

// finishSecure unmasks a secure round's sum and folds the weighted mean update into the
// round's aggregator, as one update of the total weight; it returns that weight
// (examples), the weighted mean training loss, and whether the round has one (not
// under distributed DP).
func (r *rounds) finishSecure(tm *taskModel) (examples uint64, loss float64, hasLoss bool, err error) {
	sa := tm.sa
	tm.sa = nil
	sum, n, err := sa.srv.Finish()
	if err != nil {
		return 0, 0, false, err
	}
	if sa.ddp != nil {
		return uint64(n), 0, false, r.finishDistributed(tm, sa, sum, n)
	}
	mean := make([]float32, sa.cfg.Dim-1)
	total, err := sa.cfg.Dequantize(mean, sum, n)
	if err != nil {
		return 0, 0, false, err
	}
	examples = uint64(math.Round(total * sa.cfg.MaxWeight))
	loss = float64(mean[tm.size])
	if err := aggregation.CheckUpdate(mean[:tm.size], tm.size); err != nil {
		return 0, 0, false, err
	}
	if err := tm.agg.Add(mean[:tm.size], max(1, examples)); err != nil {
		return 0, 0, false, err
	}
	tm.results = append(tm.results, aggregation.Result{Examples: examples, Metrics: map[string]float64{"loss": loss}})
	return examples, loss, true, nil
}

// finishDistributed decodes a distributed-DP round's sum — the survivors' clipped,
// noised updates — and folds DP-FedAvg's estimate of the mean, the sum over the expected
// participants (fraction × eligible; with fixed-size sampling, the number sampled), into
// the aggregator. A round whose survivors are fewer than the agents its noise was
// planned for carries too little noise and is not committed.
func (r *rounds) finishDistributed(tm *taskModel, sa *secureRound, sum []uint32, n int) error {
	if n < sa.planned {
		return fmt.Errorf("%d agents' noise in the sum, planned for %d: the round would release too little noise", n, sa.planned)
	}
	mean := make([]float32, tm.size)
	expected := max(1, tm.spec.Privacy.Denominator(sa.eligible))
	if err := sa.ddp.Decode(mean, sum, 1/expected); err != nil {
		return err
	}
	if err := aggregation.CheckUpdate(mean, tm.size); err != nil {
		return err
	}
	if err := tm.agg.Add(mean, 1); err != nil {
		return err
	}
	return nil
}
