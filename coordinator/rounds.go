package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/aggregation"
	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/coordinator/engine"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// Evaluator scores a new version centrally, before it is committed (for example on a
// held-out set the coordinator holds, as `fedq sim` does); its metrics are stored with
// the version.
type Evaluator func(task string, round uint64, spec compute.Spec, weights []float32) (map[string]float64, error)

// rounds is the driver of the round engine: it owns the engine and every task's model
// in memory, and carries out the engine's actions with the store, the blobs and the
// agents' sessions. All of its state is touched only on its loop goroutine; other
// goroutines hand it work through in.
type rounds struct {
	srv    *Server
	log    *slog.Logger
	eng    *engine.Engine
	in     chan func()
	tasks  map[string]*taskModel
	byTask map[string]*taskModel // current round's task ID → model
	online map[string]string     // agent → its latest session ID
	// ended holds, per agent, the last session whose end came while another session
	// was registered: post may deliver a session's up after its down when the loop's
	// queue is full, and that up must not bring back an agent that is gone.
	ended  map[string]string
	caps   map[string]protocol.Capabilities
	certs  map[string][]byte // agent → its certificate (DER), for secure aggregation
	verify *transport.CertVerifier
}

// taskModel is a task in memory: its model's shape, its latest version (the base of
// its next round) and the aggregate of the running round.
//
// The coordinator holds a fixed set of model-sized buffers per task, and allocates none
// per round: the accumulator, and the staging buffers of uploads being received. The
// base is not held: it is a stored blob, which downloads stream from the file (the
// operating system's page cache, shared and outside the process's heap) and which a
// commit adds to the round's aggregate update from disk. Memory is therefore
// (1 + StagingBuffers) models, whatever the number of agents or of downloads.
type taskModel struct {
	spec     *task.Spec
	mspec    compute.Spec
	layout   []protocol.TensorInfo
	size     int
	specJSON []byte
	version  store.Version
	strategy aggregation.Strategy
	agg      aggregation.Aggregator
	dp       *centralDP           // agg, when the task has central DP
	open     bool                 // agg is accumulating the running round
	accum    []float32            // the buffer agg accumulates into
	record   *store.RoundRecord   // the running attempt
	results  []aggregation.Result // the running round's metrics from agents
	staging  chan []float32       // model-sized buffers for uploads being received
	// Secure aggregation: the running round's protocol state, and the staging buffers
	// of masked uploads.
	sa          *secureRound
	maskStaging chan []uint32
	semi        *semiModel // labels at the coordinator: see finetune.go
}

// startAggregate resets the aggregator for a new round, into the task's accumulator;
// eligible is the population the round's agents were sampled from.
func (tm *taskModel) startAggregate(eligible int) {
	if tm.agg == nil {
		tm.agg = tm.strategy.NewRound(tm.size)
		if p := tm.spec.Privacy; p != nil && p.Mode == task.Central {
			sizes := make([]int, len(tm.layout))
			for i, t := range tm.layout {
				sizes[i] = t.NumElements()
			}
			tm.dp = newCentralDP(tm.agg, p, sizes)
			if v := tm.version.Privacy; v != nil && v.NextClip > 0 {
				tm.dp.setClip(v.NextClip) // adaptive clipping continues where it was
			}
			tm.agg = tm.dp
		}
	}
	if tm.dp != nil {
		tm.dp.startRound(tm.spec.Privacy.Denominator(eligible))
	}
	if tm.accum == nil {
		tm.accum = make([]float32, tm.size)
	}
	tm.agg.Reset(tm.accum)
	tm.results = tm.results[:0]
	tm.open = true
}

// restoreStrategy sets the strategy's state to what version v stored.
func (r *rounds) restoreStrategy(tm *taskModel, v store.Version) error {
	var state []float32
	if !v.StrategyState.IsZero() {
		state = make([]float32, v.StrategyStateValues)
		if err := r.srv.blobs.Get(v.StrategyState, state); err != nil {
			return fmt.Errorf("version %d: strategy state: %w", v.Number, err)
		}
	}
	if err := tm.strategy.SetState(state); err != nil {
		return fmt.Errorf("version %d: strategy state: %w", v.Number, err)
	}
	return nil
}

func newRounds(s *Server) *rounds {
	return &rounds{srv: s, log: s.log, eng: engine.New(newSessionID()[:8]), in: make(chan func(), 1024),
		tasks: map[string]*taskModel{}, byTask: map[string]*taskModel{}, online: map[string]string{}, ended: map[string]string{},
		caps: map[string]protocol.Capabilities{}, certs: map[string][]byte{}}
}

// post queues work for the loop without waiting.
func (r *rounds) post(fn func()) {
	select {
	case r.in <- fn:
	default:
		go func() { r.in <- fn }() // never block a connection on a busy loop
	}
}

// call runs fn on the loop and waits for it, or for ctx.
func (r *rounds) call(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case r.in <- func() { fn(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the loop: work from other goroutines, and a clock tick every 100 ms.
func (r *rounds) run(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	r.step(engine.Tick{Now: r.srv.cfg.Now()})
	for {
		select {
		case fn := <-r.in:
			fn()
		case <-t.C:
			r.step(engine.Tick{Now: r.srv.cfg.Now()})
		case <-ctx.Done():
			return
		}
	}
}

// step feeds the engine an event and carries out its actions, and the events those
// produce, in order.
func (r *rounds) step(ev engine.Event) {
	queue := []engine.Event{ev}
	for len(queue) > 0 {
		ev, queue = queue[0], queue[1:]
		acts := r.eng.Step(ev)
		r.observe(ev, acts)
		for _, a := range acts {
			if next := r.do(a); next != nil {
				queue = append(queue, next)
			}
		}
	}
}

// load restores a task from the store at start: its spec, and its latest version's
// weights (verified), and hands it to the engine.
func (r *rounds) load(rec store.TaskRecord) error {
	spec, err := task.Parse(rec.Spec)
	if err != nil {
		return fmt.Errorf("task %s: %w", rec.Name, err)
	}
	tm, err := r.model(spec)
	if err != nil {
		return err
	}
	v, ok, err := r.srv.store.Version(rec.Latest)
	if err != nil || !ok {
		return fmt.Errorf("task %s: latest version %d: missing (%v)", rec.Name, rec.Latest, err)
	}
	if err := r.srv.blobs.Verify(v.Hash, tm.size); err != nil {
		return fmt.Errorf("task %s: %w", rec.Name, err)
	}
	if err := r.restoreStrategy(tm, v); err != nil {
		return fmt.Errorf("task %s: %w", rec.Name, err)
	}
	tm.version = v
	r.tasks[spec.Name] = tm
	r.step(engine.TaskAdded{State: engine.TaskState{Spec: spec, Status: engine.Status(rec.Status), Round: rec.Round,
		RoundsLeft: rec.RoundsLeft, Base: engine.Version{Number: v.Number, Hash: v.Hash}}})
	return nil
}

// model prepares a task's in-memory state; its accumulator holds the initial weights
// drawn from the spec's seed (which submit stores) until the first round resets it.
func (r *rounds) model(spec *task.Spec) (*taskModel, error) {
	ms, err := spec.ModelSpec()
	if err != nil {
		return nil, err
	}
	m, err := compute.New[float32](ms, compute.Options{Seed: spec.Seed, Inference: true})
	if err != nil {
		return nil, err
	}
	strat, err := aggregation.New(spec.Strategy.Name, spec.Strategy.Params, aggregation.Options{
		Buffering: aggregation.Buffering{MemoryBytes: r.srv.cfg.AggregationMemory, Dir: r.srv.cfg.Dir}})
	if err != nil {
		return nil, err
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	tm := &taskModel{spec: spec, mspec: ms, specJSON: specJSON, strategy: strat, accum: m.Values(), size: m.NumParams()}
	for _, p := range m.Params() {
		tm.layout = append(tm.layout, protocol.TensorInfo{Name: p.Name, DType: protocol.DTypeF32, Shape: p.Shape})
	}
	staging := max(1, r.srv.cfg.StagingBuffers)
	tm.staging = make(chan []float32, staging)
	tm.maskStaging = make(chan []uint32, staging)
	for range staging {
		tm.staging <- nil // allocated on first use
		tm.maskStaging <- nil
	}
	return tm, nil
}

// submit creates a task: its initial model (from the spec's seed), stored as the task's
// first version, in one transaction with the task.
func (r *rounds) submit(spec *task.Spec) (store.Version, error) {
	if _, ok := r.tasks[spec.Name]; ok {
		return store.Version{}, protocol.NewError(protocol.CodeInvalid, "a task named %q exists", spec.Name)
	}
	tm, err := r.model(spec)
	if err != nil {
		return store.Version{}, protocol.NewError(protocol.CodeInvalid, "%v", err)
	}
	if err := r.warmUp(tm); err != nil {
		return store.Version{}, protocol.NewError(protocol.CodeInvalid, "%v", err)
	}
	hash, err := r.srv.blobs.Put(tm.accum)
	if err != nil {
		return store.Version{}, err
	}
	next, err := r.srv.store.NextVersion()
	if err != nil {
		return store.Version{}, err
	}
	v := store.Version{Number: next, Task: spec.Name, Hash: hash, Params: tm.size, Created: r.srv.cfg.Now().UTC(), Strategy: spec.Strategy.Name}
	v.Signature = v.Header().Sign(r.srv.ca.SigningKey)
	rec := store.TaskRecord{Name: spec.Name, Spec: tm.specJSON, Status: string(engine.Idle), Round: 1, Created: v.Created}
	if err := r.srv.store.AddTask(rec, v); err != nil {
		return store.Version{}, err
	}
	tm.version = v
	r.tasks[spec.Name] = tm
	r.step(engine.TaskAdded{State: engine.TaskState{Spec: spec, Status: engine.Idle, Round: 1, Base: engine.Version{Number: v.Number, Hash: v.Hash}}})
	r.log.Info("task submitted", "task", spec.Name, "version", v.Number, "params", tm.size)
	return v, nil
}

// do carries out one action and returns the event it results in, if any.
func (r *rounds) do(a engine.Action) engine.Event {
	switch a := a.(type) {
	case engine.StartRound:
		tm := r.tasks[a.Task]
		tm.record = &store.RoundRecord{Task: a.Task, Round: a.Round, Attempt: a.Attempt, TaskID: a.TaskID, Selected: len(a.Selected), Started: r.srv.cfg.Now().UTC()}
		tm.startAggregate(a.Eligible)
		r.byTask[a.TaskID] = tm
		r.log.Info("round started", "task", a.Task, "round", a.Round, "attempt", a.Attempt, "selected", len(a.Selected), "base", a.Base.Number)
		tm.sa = nil
		if tm.spec.SecureAggregation {
			if err := r.startSecure(tm, a); err != nil {
				return engine.SecAggFailed{TaskID: a.TaskID, Reason: err.Error()}
			}
		}
	case engine.SendOffer:
		tm := r.tasks[a.Task]
		t := tm.spec.Train
		local := tm.strategy.ConfigureTrain(a.Round)
		offer := &protocol.TaskOffer{TaskID: a.TaskID, Round: a.Round, Kind: protocol.TaskTrain,
			BaseVersion: a.Base.Number, BaseHash: a.Base.Hash, Dataset: tm.spec.Dataset, ModelSpec: tm.mspec.JSON(),
			DeadlineMs: a.Deadline.UnixMilli(),
			Config: protocol.TrainConfig{Epochs: uint32(t.Epochs), LocalSteps: uint32(t.LocalSteps), Batch: uint32(t.Batch), LR: t.LRAt(a.Round, tm.spec.Rounds),
				Optimizer: t.Optimizer, Momentum: t.Momentum, WeightDecay: t.WeightDecay, ProxMu: local.ProxMu}}
		if p := tm.spec.Privacy; p != nil && p.Mode == task.Record {
			offer.DP = &protocol.DPParams{Mechanism: protocol.MechanismDPSGD, ClipNorm: p.Clip, NoiseMultiplier: p.NoiseMultiplier,
				MinRecords: uint32(p.MinRecords)}
		}
		offer.Semi = semiParams(tm.spec.Semi)
		if tm.sa != nil && tm.sa.cfg.Round == a.TaskID {
			offer.SecAgg = tm.sa.params
			if d := tm.sa.ddp; d != nil {
				offer.DP = &protocol.DPParams{Mechanism: protocol.MechanismDiscreteGaussian, ClipNorm: d.Clip,
					NoiseMultiplier: tm.spec.Privacy.NoiseMultiplier, Gamma: d.Gamma, Bits: uint32(d.Bits), Sigma2: d.Sigma2,
					RotationSeed: d.Seed[:]}
			}
		} else if tm.spec.SecureAggregation {
			break // the round could not start its secure aggregation and is failing
		}
		r.srv.sendTo(a.Agent, offer)
	case engine.CloseSecAgg:
		return r.closeSecure(a)
	case engine.CancelOffer:
		r.srv.sendTo(a.Agent, &protocol.TaskCancel{TaskID: a.TaskID, Reason: a.Reason, Code: protocol.CodeCancelled})
	case engine.CommitRound:
		return r.commit(a)
	case engine.FailRound:
		tm := r.tasks[a.Task]
		if tm.record != nil {
			rec := *tm.record
			rec.Ended, rec.Reason = r.srv.cfg.Now().UTC(), a.Reason
			if err := r.srv.store.FailAttempt(rec); err != nil {
				r.log.Error("record round failure", "task", a.TaskID, "err", err)
			}
		}
		tm.record = nil
		tm.open = false
		tm.sa = nil
		delete(r.byTask, a.TaskID)
		r.log.Warn("round failed", "task", a.Task, "round", a.Round, "attempt", a.Attempt, "reason", a.Reason)
	case engine.TaskFinished:
		if a.Reason != "" {
			if err := r.srv.store.EndTask(a.Task, string(engine.Exhausted)); err != nil {
				r.log.Error("record task end", "task", a.Task, "err", err)
			}
			r.log.Warn("task stopped", "task", a.Task, "reason", a.Reason)
			break
		}
		r.log.Info("task finished", "task", a.Task)
	}
	return nil
}

// commit aggregates a round into a new version, stores it and makes it the base.
func (r *rounds) commit(a engine.CommitRound) engine.Event {
	tm := r.tasks[a.Task]
	delete(r.byTask, a.TaskID)
	fail := func(err error) engine.Event {
		r.log.Error("commit failed", "task", a.TaskID, "err", err)
		return engine.CommitFailed{TaskID: a.TaskID, Err: err}
	}
	tm.open = false
	hasLoss := true
	if tm.sa != nil {
		examples, loss, withLoss, err := r.finishSecure(tm)
		if err != nil {
			r.log.Warn("secure aggregation failed", "task", a.TaskID, "err", err)
			return engine.SecAggFailed{TaskID: a.TaskID, Reason: err.Error()}
		}
		a.Examples, a.Loss, hasLoss = examples, loss, withLoss
	}
	// next = base + step(Δ), in the accumulator, with the base read from its blob.
	// Whatever happens the accumulator is reset by the next round (a failed commit is
	// retried as a new attempt from the same base), and the strategy's state goes back
	// to the base's.
	next, err := tm.agg.Finish()
	if err != nil {
		return fail(err)
	}
	if err := tm.strategy.Apply(next); err != nil {
		return fail(err)
	}
	stateAdvanced := true
	defer func() {
		if stateAdvanced {
			if err := r.restoreStrategy(tm, tm.version); err != nil {
				r.log.Error("restore strategy state", "task", a.Task, "err", err)
			}
		}
	}()
	if err := r.srv.blobs.AddTo(tm.version.Hash, next); err != nil {
		return fail(fmt.Errorf("base version %d: %w", tm.version.Number, err))
	}
	if err := aggregation.CheckUpdate(next, tm.size); err != nil {
		return fail(fmt.Errorf("the aggregate is not finite: %w", err))
	}
	metrics := map[string]float64{"train_loss": a.Loss, "updates": float64(a.Updates), "examples": float64(a.Examples)}
	if !hasLoss { // distributed DP: no agent's loss leaves it un-noised
		delete(metrics, "train_loss")
	}
	if t := tm.spec.Train; t.LRSchedule != task.ScheduleConstant {
		metrics["train_lr"] = t.LRAt(a.Round, tm.spec.Rounds)
	}
	for k, v := range tm.strategy.AggregateEvaluate(tm.results) {
		if !strings.HasPrefix(k, "train_") {
			k = "train_" + k
		}
		metrics[k] = v
	}
	if err := r.fineTune(tm, a.Round, next, metrics); err != nil {
		return fail(err)
	}
	if ev := r.srv.cfg.Evaluate; ev != nil && tm.strategy.ConfigureEvaluate(a.Round) {
		m, err := ev(a.Task, a.Round, tm.mspec, next)
		if err != nil {
			r.log.Warn("evaluation failed", "task", a.Task, "err", err)
		}
		for k, v := range m {
			metrics[k] = v
		}
	}
	hash, err := r.srv.blobs.Put(next)
	if err != nil {
		return fail(err)
	}
	var stateHash protocol.Hash
	state := tm.strategy.State()
	if state != nil {
		if stateHash, err = r.srv.blobs.Put(state); err != nil {
			return fail(fmt.Errorf("strategy state: %w", err))
		}
	}
	if hook := r.srv.cfg.AfterBlobWrite; hook != nil {
		hook(a.Task, a.Round)
	}
	num, err := r.srv.store.NextVersion()
	if err != nil {
		return fail(err)
	}
	v := store.Version{Number: num, Parent: tm.version.Number, Task: a.Task, Round: a.Round, Hash: hash, Params: tm.size,
		Created: r.srv.cfg.Now().UTC(), Metrics: metrics, Strategy: tm.strategy.Name(),
		StrategyState: stateHash, StrategyStateValues: len(state)}
	if p := tm.spec.Privacy; p != nil {
		eps, err := tm.spec.Spent(a.Round)
		if err != nil {
			return fail(err)
		}
		v.Privacy = &store.PrivacySpent{Epsilon: eps, Delta: p.Delta, Rounds: a.Round, NoiseMultiplier: p.NoiseMultiplier,
			SampleRate: p.SampleRate(), Clip: p.Clip, Mode: p.Mode}
		if tm.dp != nil {
			v.Privacy.Clip, v.Privacy.NextClip = tm.dp.clip, tm.dp.next
		}
	}
	v.Signature = v.Header().Sign(r.srv.ca.SigningKey)
	rec := *tm.record
	rec.Ended, rec.Updates, rec.Examples, rec.Loss = r.srv.cfg.Now().UTC(), a.Updates, a.Examples, a.Loss
	if _, err := r.srv.store.Commit(rec, v); err != nil {
		return fail(err)
	}
	tm.version = v
	tm.record = nil
	stateAdvanced = false
	if tm.dp != nil {
		tm.dp.setClip(tm.dp.next)
	}
	r.log.Info("round committed", "task", a.Task, "round", a.Round, "version", v.Number, "updates", a.Updates,
		"train_loss", a.Loss, "accuracy", metrics["accuracy"])
	return engine.Committed{TaskID: a.TaskID, Version: engine.Version{Number: v.Number, Hash: v.Hash}}
}

// Model implements ModelSource: any stored version, streamed from its blob file.
func (r *rounds) Model(version uint64, hash protocol.Hash) (*ModelStream, error) {
	v, ok, err := r.srv.store.Version(version)
	if err != nil {
		return nil, protocol.NewError(protocol.CodeInternal, "version %d: %v", version, err)
	}
	if !ok {
		return nil, protocol.NewError(protocol.CodeNotFound, "no version %d", version)
	}
	if !hash.IsZero() && hash != v.Hash {
		return nil, protocol.NewError(protocol.CodeHashMismatch, "version %d hashes to %s, not %s", version, v.Hash, hash)
	}
	layout, err := r.layoutOf(v.Task)
	if err != nil {
		return nil, err
	}
	f, err := r.srv.blobs.Open(v.Hash, v.Params)
	if err != nil {
		return nil, protocol.NewError(protocol.CodeInternal, "version %d: %v", version, err)
	}
	return &ModelStream{Layout: layout, Meta: protocol.SignedMeta(v.Header(), r.srv.ca.SigningKey), Sum: v.Hash, Data: f}, nil
}

// layoutOf returns the parameter layout of a task's model.
func (r *rounds) layoutOf(name string) ([]protocol.TensorInfo, error) {
	var layout []protocol.TensorInfo
	if err := r.call(context.Background(), func() {
		if tm := r.tasks[name]; tm != nil {
			layout = tm.layout
		}
	}); err != nil {
		return nil, err
	}
	if layout == nil {
		return nil, protocol.NewError(protocol.CodeNotFound, "no task %q", name)
	}
	return layout, nil
}

// agentUp and agentDown tell the engine about sessions, in session order: a session's
// end counts only if no newer session of the agent has begun, and a session's start
// that arrives after its own end (post reorders when the loop is saturated) is ignored.
func (r *rounds) agentUp(id, session string, caps protocol.Capabilities, cert []byte) {
	names := make([]string, len(caps.Datasets))
	for i, d := range caps.Datasets {
		names[i] = d.Name
	}
	r.post(func() {
		if r.ended[id] == session {
			delete(r.ended, id) // this session already ended: its up came late
			return
		}
		r.online[id] = session
		r.caps[id], r.certs[id] = caps, cert
		r.step(engine.AgentUp{ID: id, Datasets: names})
	})
}

func (r *rounds) agentDown(id, session string) {
	r.post(func() {
		if r.online[id] != session {
			r.ended[id] = session // replaced by a newer session, or its up is still queued
			return
		}
		delete(r.online, id)
		delete(r.caps, id)
		delete(r.certs, id)
		r.step(engine.AgentDown{ID: id})
	})
}

// control handles a task reply from an agent's control stream.
func (r *rounds) control(agent string, m protocol.Message) {
	switch m := m.(type) {
	case *protocol.TaskAccept:
		r.post(func() { r.step(engine.Accepted{Agent: agent, TaskID: m.TaskID}) })
	case *protocol.TaskDecline:
		r.post(func() { r.step(engine.Declined{Agent: agent, TaskID: m.TaskID, Reason: m.Reason}) })
	case *protocol.SecAggAdvertise, *protocol.SecAggShares, *protocol.SecAggUnmaskResponse:
		r.post(func() { r.secureMessage(agent, m) })
	}
}

// receive serves an update-upload stream: admission by the engine, then the update is
// read whole into a staging buffer and checked, and only then folded into the round's
// aggregate on the loop — a broken or bad upload never touches the aggregate. Staging
// buffers are a bounded pool per task (Config.StagingBuffers), so memory stays a small
// multiple of the model whatever the number of agents: a waiting upload is held back by
// QUIC flow control.
func (r *rounds) receive(ctx context.Context, agent string, st *quic.Stream, hdr *protocol.UpdateHeader) error {
	var tm *taskModel
	var admitErr error
	if err := r.call(ctx, func() {
		tm = r.byTask[hdr.TaskID]
		admitErr = r.eng.Admit(agent, hdr.TaskID, hdr.Round, engine.Version{Number: hdr.BaseVersion, Hash: hdr.BaseHash})
	}); err != nil {
		return err
	}
	if admitErr != nil {
		r.srv.metrics.reject(admitErr)
		return admitErr
	}
	failed := func(err error) error {
		r.srv.metrics.reject(err)
		r.post(func() { r.step(engine.UpdateFailed{Agent: agent, TaskID: hdr.TaskID, Err: err}) })
		return err
	}
	if tm.spec.SecureAggregation != hdr.Masked {
		if hdr.Masked {
			return failed(protocol.NewError(protocol.CodeInvalid, "a masked update for %s, which does not use secure aggregation", hdr.TaskID))
		}
		return failed(protocol.NewError(protocol.CodeInvalid, "a plain update for %s, which uses secure aggregation: mask it", hdr.TaskID))
	}
	if hdr.Masked {
		return r.receiveMasked(ctx, agent, st, hdr, tm, failed)
	}
	if hdr.Examples == 0 {
		return failed(protocol.NewError(protocol.CodeInvalid, "an update trained on no examples"))
	}
	var buf []float32
	waited := time.Now()
	select {
	case buf = <-tm.staging:
	case <-ctx.Done():
		return failed(ctx.Err())
	}
	if buf == nil {
		buf = make([]float32, tm.size)
	}
	defer func() { tm.staging <- buf }()
	_ = st.SetReadDeadline(time.Now().Add(transport.FirstFrameTimeout + time.Duration(4*tm.size)*time.Microsecond))
	tr, err := protocol.NewTensorReader(st, protocol.Limits{})
	if err != nil {
		return failed(err)
	}
	reading := time.Now()
	if err := protocol.ReadParams(tr, tm.layout, buf); err != nil {
		return failed(err)
	}
	if err := tr.Finish(); err != nil {
		return failed(err)
	}
	r.log.Debug("update read", "agent", agent, "task", hdr.TaskID, "round", hdr.Round, "digest", tr.Digest(),
		"staging_wait_seconds", reading.Sub(waited).Seconds(), "read_seconds", time.Since(reading).Seconds())
	if err := aggregation.CheckUpdate(buf, tm.size); err != nil {
		return failed(protocol.NewError(protocol.CodeInvalid, "%v", err))
	}
	var foldErr error
	if err := r.call(ctx, func() {
		if r.byTask[hdr.TaskID] != tm || !tm.open {
			foldErr = protocol.NewError(protocol.CodeDeadlineExceeded, "round %d closed while the update arrived", hdr.Round)
			return
		}
		if hook := r.srv.cfg.ObserveUpdate; hook != nil {
			hook(agent, hdr, buf, nil)
		}
		if foldErr = tm.agg.Add(buf, hdr.Examples); foldErr != nil {
			return
		}
		tm.results = append(tm.results, aggregation.Result{Examples: hdr.Examples, Metrics: hdr.Metrics})
		r.step(engine.UpdateReceived{Agent: agent, TaskID: hdr.TaskID, Examples: hdr.Examples, Loss: hdr.Metrics["loss"]})
	}); err != nil {
		return failed(err)
	}
	if foldErr != nil {
		return failed(foldErr)
	}
	return ackUpdate(st, hdr, tr)
}

// ackUpdate tells the agent its update, whose stream hashed to tr.Sum(), was taken.
func ackUpdate(st *quic.Stream, hdr *protocol.UpdateHeader, tr *protocol.TensorReader) error {
	_ = st.SetWriteDeadline(time.Now().Add(transport.FirstFrameTimeout))
	return protocol.WriteMessage(st, &protocol.UpdateAck{TaskID: hdr.TaskID, Round: hdr.Round, SHA256: tr.Sum()})
}

// Snapshot of the engine for admin clients.
func (r *rounds) tasksStatus(ctx context.Context) ([]engine.TaskStatus, error) {
	var out []engine.TaskStatus
	err := r.call(ctx, func() { out = r.eng.Tasks() })
	slices.SortFunc(out, func(a, b engine.TaskStatus) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, err
}

// requestRounds asks for n more rounds of a task, durably first.
func (r *rounds) requestRounds(ctx context.Context, name string, n int) (store.TaskRecord, error) {
	var rec store.TaskRecord
	var err error
	callErr := r.call(ctx, func() { rec, err = r.requestRoundsNow(name, n) })
	return rec, errors.Join(callErr, err)
}

// requestRoundsNow is requestRounds on the loop.
func (r *rounds) requestRoundsNow(name string, n int) (store.TaskRecord, error) {
	if n < 1 {
		return store.TaskRecord{}, protocol.NewError(protocol.CodeInvalid, "rounds must be at least 1, got %d", n)
	}
	tm := r.tasks[name]
	if tm == nil {
		return store.TaskRecord{}, protocol.NewError(protocol.CodeNotFound, "no task %q: submit it first (fedq task submit FILE)", name)
	}
	if p := tm.spec.Privacy; p != nil {
		if done := tm.version.Round; done+1 > p.MaxRounds() {
			spent, _ := tm.spec.Spent(done)
			return store.TaskRecord{}, protocol.NewError(protocol.CodeInvalid,
				"task %q: privacy budget exhausted: %d rounds spent ε = %.4g of %g (δ = %g); another round would exceed it",
				name, done, spent, p.Epsilon, p.Delta)
		}
	}
	rec, err := r.srv.store.RequestRounds(name, n)
	if err != nil {
		return store.TaskRecord{}, err
	}
	r.step(engine.RoundsRequested{Task: name, N: n})
	return rec, nil
}
