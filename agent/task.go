package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/compute/blas"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/privacy/dp"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// modelCache keeps the last few verified models by hash, so an agent selected in
// consecutive rounds of the same version, or re-offered a round, does not download
// twice.
type modelCache struct {
	mu      sync.Mutex
	entries []cachedModel
	spare   []float32 // weights of an evicted entry, reused by the next download
}

type cachedModel struct {
	hash    protocol.Hash
	version protocol.VersionHeader
	weights []float32
}

const modelCacheSize = 2

func (c *modelCache) get(h protocol.Hash) (cachedModel, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if e.hash == h {
			return e, true
		}
	}
	return cachedModel{}, false
}

func (c *modelCache) put(e cachedModel) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = append([]cachedModel{e}, c.entries...)
	if len(c.entries) > modelCacheSize {
		c.spare = c.entries[modelCacheSize].weights
		c.entries = c.entries[:modelCacheSize]
	}
}

// buffer returns a weights buffer of n values: an evicted entry's if it fits, else new.
// Reusing it matters for big models, which otherwise cost a fresh allocation per round.
func (c *modelCache) buffer(n int) []float32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.spare) == n {
		b := c.spare
		c.spare = nil
		return b
	}
	return make([]float32, n)
}

// layoutOf describes a model's parameters as the tensors they travel as.
func layoutOf[T compute.Float](m *compute.Model[T]) []protocol.TensorInfo {
	ps := m.Params()
	out := make([]protocol.TensorInfo, len(ps))
	for i, p := range ps {
		out[i] = protocol.TensorInfo{Name: p.Name, DType: protocol.DTypeF32, Shape: p.Shape}
	}
	return out
}

// decline is a reason to refuse an offer.
func decline(code protocol.ErrorCode, format string, a ...any) error {
	return protocol.NewError(code, format, a...)
}

// checkOffer decides whether this agent can do an offered task, before accepting it.
func (d *Daemon) checkOffer(o *protocol.TaskOffer) (compute.Spec, *dataset.Dataset, error) {
	if o.Kind != protocol.TaskTrain {
		return compute.Spec{}, nil, decline(protocol.CodeUnavailable, "task kind %q is not supported by this agent", o.Kind)
	}
	data := d.cfg.Data[o.Dataset]
	if data == nil {
		return compute.Spec{}, nil, decline(protocol.CodeUnavailable, "no dataset %q here", o.Dataset)
	}
	spec, err := compute.ParseSpec(o.ModelSpec)
	if err != nil {
		return compute.Spec{}, nil, decline(protocol.CodeInvalid, "model spec: %v", err)
	}
	if data.SampleSize() != prodInts(spec.Input) {
		return compute.Spec{}, nil, decline(protocol.CodeUnavailable, "dataset %q has samples of %v, the model takes %v", o.Dataset, data.Shape, spec.Input)
	}
	if data.NumClasses > spec.Classes {
		return compute.Spec{}, nil, decline(protocol.CodeUnavailable, "dataset %q has %d classes, the model %d", o.Dataset, data.NumClasses, spec.Classes)
	}
	switch o.Config.Optimizer {
	case "", "sgd", "adam":
	default:
		return compute.Spec{}, nil, decline(protocol.CodeUnavailable, "optimizer %q is not supported", o.Config.Optimizer)
	}
	if o.Semi != nil && o.DP != nil && o.DP.Mechanism == protocol.MechanismDPSGD {
		return compute.Spec{}, nil, decline(protocol.CodeUnavailable, "record-level DP with pseudo-labels is not supported by this agent build")
	}
	if p := o.DP; p != nil && p.Mechanism == protocol.MechanismDiscreteGaussian {
		if o.SecAgg == nil {
			return compute.Spec{}, nil, decline(protocol.CodeInvalid, "distributed DP (discrete-gaussian) without secure aggregation would reveal each noised update")
		}
	} else if p != nil {
		if p.Mechanism != protocol.MechanismDPSGD {
			return compute.Spec{}, nil, decline(protocol.CodeUnavailable, "differential privacy mechanism %q is not supported by this agent build (have: %s, %s)",
				p.Mechanism, protocol.MechanismDPSGD, protocol.MechanismDiscreteGaussian)
		}
		if o.Config.LocalSteps == 0 {
			return compute.Spec{}, nil, decline(protocol.CodeInvalid, "dp-sgd needs a number of local steps to be accounted for")
		}
		labelled := 0
		for _, y := range data.Y {
			if y >= 0 {
				labelled++
			}
		}
		if labelled < int(p.MinRecords) {
			return compute.Spec{}, nil, decline(protocol.CodeInvalid, "dataset %q has %d labelled records; the task's privacy accounting needs at least %d", o.Dataset, labelled, p.MinRecords)
		}
	}
	return spec, data, nil
}

func prodInts(s []int) int {
	n := 1
	for _, v := range s {
		n *= v
	}
	return n
}

// models keeps the agent's compute model of the last spec it trained, so consecutive
// rounds reuse its buffers instead of allocating (and initialising) a model each time.
// A model is lent to one task at a time: the coordinator offers an agent one task at
// a time, but a task it cancelled may still be finishing a step when the next begins.
type models struct {
	mu   sync.Mutex
	spec string
	m    *compute.Model[float32]
}

// take returns a model for spec for the caller's use alone: the kept one when it has
// the same spec and is not lent, otherwise a new one. Its weights are whatever they
// were: the caller sets them. put gives it back.
func (ms *models) take(spec compute.Spec, threads int) (*compute.Model[float32], error) {
	key := string(spec.JSON())
	ms.mu.Lock()
	if ms.m != nil && ms.spec == key {
		m := ms.m
		ms.m = nil
		ms.mu.Unlock()
		return m, nil
	}
	ms.mu.Unlock()
	return compute.New[float32](spec, compute.Options{Seed: 1, Threads: threads})
}

// put keeps m, a model of spec that its task no longer uses, for the next task.
func (ms *models) put(spec compute.Spec, m *compute.Model[float32]) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.spec, ms.m = string(spec.JSON()), m
}

// runTask does an accepted training task: get the base model, train, upload the update.
func (d *Daemon) runTask(ctx context.Context, o *protocol.TaskOffer, spec compute.Spec, data *dataset.Dataset) error {
	log := d.log.With("task", o.TaskID)
	start := time.Now()
	m, err := d.models.take(spec, d.cfg.Threads)
	if err != nil {
		return err
	}
	defer d.models.put(spec, m)
	layout := layoutOf(m)
	base, err := d.baseModel(ctx, o, layout)
	if err != nil {
		return fmt.Errorf("get model %d: %w", o.BaseVersion, err)
	}
	log.Debug("base model ready", "version", o.BaseVersion, "seconds", time.Since(start).Seconds())
	if err := m.SetValues(base); err != nil {
		return err
	}
	opt, err := newOptimizer(m, o.Config, base)
	if err != nil {
		return err
	}
	cfg := compute.TrainConfig{Epochs: int(o.Config.Epochs), Batch: int(o.Config.Batch), MaxSteps: int(o.Config.LocalSteps),
		Seed: uint64(o.Round)<<32 ^ uint64(o.BaseVersion)}
	if p := o.DP; p != nil && p.Mechanism == protocol.MechanismDPSGD {
		cfg.DP = &compute.DPSGD{Clip: p.ClipNorm, NoiseMultiplier: p.NoiseMultiplier, Rand: dp.SecureRand()}
	}
	if cfg.Epochs == 0 {
		perEpoch := (data.Len() + cfg.Batch - 1) / cfg.Batch
		cfg.Epochs = (cfg.MaxSteps + perEpoch - 1) / perEpoch
	}
	var res compute.TrainResult
	var semi map[string]float64
	if o.Semi != nil {
		res, semi, err = trainSemi(ctx, m, opt, data, cfg, o.Semi, d.cfg.TrueLabels[o.Dataset])
	} else {
		res, err = compute.Train(ctx, m, opt, data, cfg)
	}
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	// The update is local − base, in place in the model's parameters.
	delta := m.Values()
	subtractBase(delta, base)
	if hook := d.cfg.BeforeUpload; hook != nil {
		hook(o.Round, delta)
	}
	metrics := map[string]float64{"loss": res.Loss, "accuracy": res.Accuracy, "train_seconds": res.Elapsed.Seconds()}
	maps.Copy(metrics, semi)
	for k, v := range metrics {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			delete(metrics, k)
		}
	}
	log.Debug("trained", "samples", res.Samples, "seconds", time.Since(start).Seconds())
	hdr := &protocol.UpdateHeader{TaskID: o.TaskID, Round: o.Round, BaseVersion: o.BaseVersion, BaseHash: o.BaseHash,
		Examples: uint64(res.Samples), Metrics: metrics}
	tensors := protocol.ParamRefs(layout, delta)
	if d.dropsOut(o.TaskID, DropUpload) {
		return errDroppedOut
	}
	if o.SecAgg != nil {
		// Masked: the weight and the loss travel inside the masked vector, and nothing
		// of this agent's alone in the clear.
		y, err := d.maskUpdate(ctx, o.TaskID, delta, res.Loss, res.Samples)
		if err != nil {
			return fmt.Errorf("secure aggregation: %w", err)
		}
		hdr.Examples, hdr.Metrics, hdr.Masked = 0, nil, true
		tensors = []protocol.TensorRef{{Info: protocol.TensorInfo{Name: protocol.MaskedTensor, DType: protocol.DTypeU32, Shape: []int{len(y)}}, U32: y}}
	}
	if err := d.upload(ctx, hdr, tensors); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	log.Info("task done", "samples", res.Samples, "loss", res.Loss, "seconds", time.Since(start).Seconds())
	return nil
}

// subtractBase turns trained weights into the update, delta −= base, with the vector
// kernel: −1·b is exact, so each value is the same as delta[i] − base[i].
func subtractBase(delta, base []float32) { blas.Axpy(-1, base, delta) }

// baseModel returns the offer's base weights, from the cache or downloaded, verified
// against the coordinator's signature and the offer's version and hash.
func (d *Daemon) baseModel(ctx context.Context, o *protocol.TaskOffer, layout []protocol.TensorInfo) ([]float32, error) {
	if e, ok := d.cache.get(o.BaseHash); ok && e.version.Number == o.BaseVersion && len(e.weights) == protocol.LayoutSize(layout) {
		return e.weights, nil
	}
	weights := d.cache.buffer(protocol.LayoutSize(layout))
	var vh protocol.VersionHeader
	err := d.FetchModel(ctx, o.BaseVersion, o.BaseHash, func(tr *protocol.TensorReader) error {
		var err error
		if vh, err = protocol.VerifyVersion(d.cfg.Identity.SigningKey, tr.Header().Meta); err != nil {
			return err
		}
		if vh.Number != o.BaseVersion || vh.Hash != o.BaseHash {
			return protocol.NewError(protocol.CodeHashMismatch, "the signed model is version %d (%s), the task names %d (%s)", vh.Number, vh.Hash, o.BaseVersion, o.BaseHash)
		}
		return protocol.ReadParams(tr, layout, weights)
	})
	if err != nil {
		return nil, err
	}
	d.cache.put(cachedModel{hash: o.BaseHash, version: vh, weights: weights})
	return weights, nil
}

// newOptimizer builds the local optimizer a task asks for; with FedProx's μ > 0 it adds
// the proximal term around base, the global model.
func newOptimizer(m *compute.Model[float32], c protocol.TrainConfig, base []float32) (compute.Optimizer[float32], error) {
	var opt compute.Optimizer[float32]
	var err error
	if c.Optimizer == "adam" {
		opt, err = compute.NewAdam(m, c.LR, 0, 0, 0, c.WeightDecay)
	} else {
		opt, err = compute.NewSGD(m, c.LR, c.Momentum, c.WeightDecay, false)
	}
	if err != nil || c.ProxMu == 0 {
		return opt, err
	}
	return compute.NewProximal(opt, c.ProxMu, base)
}

// upload sends an update on its own stream and waits for the coordinator's verdict.
func (d *Daemon) upload(ctx context.Context, hdr *protocol.UpdateHeader, tensors []protocol.TensorRef) error {
	d.mu.Lock()
	conn, undigested := d.conn, d.undigested
	d.mu.Unlock()
	if conn == nil {
		return ErrNotConnected
	}
	tw := protocol.NewTensorWriter(protocol.Limits{})
	if undigested {
		// QUIC authenticates every byte; a SHA-256 of the update would only cost
		// a pass over it at each end (see protocol.Digest).
		if err := tw.SetDigest(protocol.DigestNone); err != nil {
			return err
		}
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return transport.ConnError(conn, err)
	}
	stop := context.AfterFunc(ctx, func() {
		st.CancelWrite(quic.StreamErrorCode(protocol.CodeCancelled.AppErrorCode()))
		st.CancelRead(quic.StreamErrorCode(protocol.CodeCancelled.AppErrorCode()))
	})
	defer stop()
	// The coordinator may refuse at once (stale base, closed round): its Error frame
	// then arrives while we write, and our writes fail; read the verdict either way.
	before, start := conn.ConnectionStats(), time.Now()
	writeErr := func() error {
		if err := protocol.WriteMessage(st, hdr); err != nil {
			return err
		}
		_, err := tw.Write(st, tensors, nil)
		return err
	}()
	_ = st.Close()
	m, err := protocol.NewReader(st, protocol.MaxFrameSize).Read()
	if err != nil {
		if writeErr != nil {
			return transport.ConnError(conn, writeErr)
		}
		return transport.ConnError(conn, err)
	}
	transport.EndRead(st)
	switch m := m.(type) {
	case *protocol.UpdateAck:
		after := conn.ConnectionStats()
		d.log.Debug("update sent", "task", hdr.TaskID, "seconds", time.Since(start).Seconds(),
			"congestion_window", after.CongestionWindow, "smoothed_rtt", after.SmoothedRTT,
			"packets_sent", after.PacketsSent-before.PacketsSent, "packets_lost", after.PacketsLost-before.PacketsLost)
		return nil
	case *protocol.Error:
		return m
	default:
		return fmt.Errorf("unexpected reply %s", m.Type())
	}
}

// tasks tracks the agent's running tasks, to cancel them.
type tasks struct {
	mu      sync.Mutex
	running map[string]context.CancelFunc
}

func (t *tasks) start(id string, cancel context.CancelFunc) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.running == nil {
		t.running = map[string]context.CancelFunc{}
	}
	if _, ok := t.running[id]; ok {
		return false
	}
	t.running[id] = cancel
	return true
}

func (t *tasks) done(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.running, id)
}

func (t *tasks) cancel(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.running[id]; ok {
		c()
	}
}

func (t *tasks) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.running)
}

// offer handles a TaskOffer on the control stream: decline at once, or accept and run
// the task in the background.
func (d *Daemon) offer(ctx context.Context, o *protocol.TaskOffer, send func(protocol.Message) error) error {
	spec, data, err := d.checkOffer(o)
	if err != nil {
		pe, _ := errors.AsType[*protocol.Error](err)
		return send(&protocol.TaskDecline{TaskID: o.TaskID, Round: o.Round, Code: pe.Code, Reason: pe.Msg})
	}
	tctx, cancel := context.WithCancel(ctx)
	if !d.tasks.start(o.TaskID, cancel) {
		cancel()
		return nil // a duplicate offer
	}
	var adv *protocol.SecAggAdvertise
	if o.SecAgg != nil {
		n, err := spec.NumParams()
		if err == nil {
			adv, err = d.startSecure(o, n)
		}
		if err != nil {
			d.tasks.done(o.TaskID)
			cancel()
			return send(&protocol.TaskDecline{TaskID: o.TaskID, Round: o.Round, Code: protocol.CodeInvalid, Reason: "secure aggregation: " + err.Error()})
		}
	}
	if err := send(&protocol.TaskAccept{TaskID: o.TaskID, Round: o.Round}); err != nil {
		d.tasks.done(o.TaskID)
		d.secure.remove(o.TaskID)
		cancel()
		return err
	}
	if adv != nil {
		if d.dropsOut(o.TaskID, DropAdvertise) {
			d.tasks.cancel(o.TaskID)
			d.secure.remove(o.TaskID)
			return quit(send, o, errDroppedOut.Error())
		}
		if err := send(adv); err != nil {
			return err
		}
	}
	go func() {
		defer cancel()
		defer d.tasks.done(o.TaskID)
		if err := d.runTask(tctx, o, spec, data); err != nil {
			d.secure.remove(o.TaskID) // a secure task that delivered stays for the unmask phase
			switch {
			case errors.Is(err, errDroppedOut):
				_ = quit(send, o, err.Error())
			case tctx.Err() == nil:
				// Abandon the task at once rather than let the round wait for its deadline.
				d.log.Warn("task failed", "task", o.TaskID, "err", err)
				_ = send(&protocol.TaskDecline{TaskID: o.TaskID, Round: o.Round, Code: protocol.CodeOf(err), Reason: "task failed: " + err.Error()})
			}
		}
	}()
	return nil
}
