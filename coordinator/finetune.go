package coordinator

import (
	"context"
	"fmt"

	"github.com/fedq/fedq/aggregation"
	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/protocol"
)

// Semi-supervised training with labels at the coordinator (SemiFL, Diao et al. 2022):
// the coordinator holds small labelled sets (Config.Labelled, from `fedq coordinator run
// --data NAME=PATH`), which never leave it. A task in mode labels-at-coordinator names
// one; its initial model is trained on it (warm-up) before it is stored as version 1,
// and every aggregated model is fine-tuned on it before it is committed, so that the
// agents, which only have unlabelled data, pseudo-label with a model that has just seen
// labels. Fine-tuning runs on the round driver's goroutine, like central evaluation: a
// few epochs of a few hundred examples, seconds; its seed is the task's and the round's,
// so a retried commit fine-tunes the same way.

// semiModel is a task's trainable model for warm-up and fine-tuning.
type semiModel struct {
	m    *compute.Model[float32]
	data *dataset.Dataset
}

// semiParams is what a task's offers carry for semi-supervised local training.
func semiParams(s *task.Semi) *protocol.SemiParams {
	if s == nil {
		return nil
	}
	return &protocol.SemiParams{Threshold: s.Threshold, LambdaU: s.LambdaU, Ratio: uint32(s.Ratio), Static: s.PseudoLabels == task.PseudoStatic}
}

// labelledSet returns the coordinator's labelled set a labels-at-coordinator task
// names, checked against its model; nil for other tasks.
func (r *rounds) labelledSet(tm *taskModel) (*semiModel, error) {
	s := tm.spec.Semi
	if s == nil || s.Mode != task.LabelsAtCoordinator {
		return nil, nil
	}
	if tm.semi != nil {
		return tm.semi, nil
	}
	d := r.srv.cfg.Labelled[s.Labelled]
	if d == nil {
		return nil, fmt.Errorf("task %q: the coordinator holds no labelled dataset %q (fedq coordinator run --data %s=PATH)", tm.spec.Name, s.Labelled, s.Labelled)
	}
	labelled := 0
	for _, y := range d.Y {
		if y >= 0 {
			labelled++
		}
	}
	if labelled == 0 {
		return nil, fmt.Errorf("task %q: the coordinator's dataset %q has no labelled examples", tm.spec.Name, s.Labelled)
	}
	m, err := compute.New[float32](tm.mspec, compute.Options{Seed: tm.spec.Seed})
	if err != nil {
		return nil, err
	}
	if d.SampleSize() != m.InputSize() || d.NumClasses > tm.mspec.Classes {
		return nil, fmt.Errorf("task %q: the coordinator's dataset %q has samples of %v and %d classes; the model takes %v and has %d",
			tm.spec.Name, s.Labelled, d.Shape, d.NumClasses, tm.mspec.Input, tm.mspec.Classes)
	}
	tm.semi = &semiModel{m: m, data: d}
	return tm.semi, nil
}

// trainLabelled trains weights in place on the task's labelled set for epochs epochs
// (on weakly augmented views unless the task says none, SGD at rate lr with the
// fine-tuning's momentum and batch) and returns the training metrics; nothing for
// tasks without labels at the coordinator.
func (r *rounds) trainLabelled(tm *taskModel, weights []float32, epochs int, lr float64, seed uint64) (map[string]float64, error) {
	sm, err := r.labelledSet(tm)
	if sm == nil || err != nil || epochs == 0 {
		return nil, err
	}
	s := tm.spec.Semi
	if err := sm.m.SetValues(weights); err != nil {
		return nil, err
	}
	opt, err := compute.NewSGD(sm.m, lr, s.FineTune.Momentum, 0, false)
	if err != nil {
		return nil, err
	}
	res, err := compute.TrainSemi(context.Background(), sm.m, opt, sm.data,
		compute.TrainConfig{Epochs: epochs, Batch: s.FineTune.Batch, Seed: seed},
		s.FineTuneSemi())
	if err != nil {
		return nil, fmt.Errorf("train on the coordinator's labelled set: %w", err)
	}
	copy(weights, sm.m.Values())
	if err := aggregation.CheckUpdate(weights, len(weights)); err != nil {
		return nil, fmt.Errorf("train on the coordinator's labelled set: %w", err)
	}
	return map[string]float64{"finetune_loss": res.Loss, "finetune_accuracy": res.Accuracy,
		"finetune_seconds": res.Elapsed.Seconds()}, nil
}

// warmUp trains a labels-at-coordinator task's initial model on the labelled set.
func (r *rounds) warmUp(tm *taskModel) error {
	if s := tm.spec.Semi; s == nil || s.Mode != task.LabelsAtCoordinator {
		return nil
	}
	s := tm.spec.Semi
	m, err := r.trainLabelled(tm, tm.accum, s.WarmupEpochs, s.FineTune.LR, tm.spec.Seed)
	if err != nil {
		return err
	}
	r.log.Info("warm-up on the coordinator's labelled set", "task", tm.spec.Name, "epochs", s.WarmupEpochs,
		"loss", m["finetune_loss"], "seconds", m["finetune_seconds"])
	return nil
}

// fineTune trains an aggregated model on the task's labelled set before it is
// committed, at the fine-tuning's rate scaled by the task's learning-rate schedule,
// adding the fine-tuning's figures to metrics.
func (r *rounds) fineTune(tm *taskModel, round uint64, next []float32, metrics map[string]float64) error {
	s := tm.spec.Semi
	if s == nil || s.Mode != task.LabelsAtCoordinator {
		return nil
	}
	lr := tm.spec.Train.ScaleLR(s.FineTune.LR, round, tm.spec.Rounds)
	m, err := r.trainLabelled(tm, next, s.FineTune.Epochs, lr, tm.spec.Seed^round<<20)
	if err != nil || m == nil {
		return err
	}
	for k, v := range m {
		metrics[k] = v
	}
	metrics["finetune_lr"] = lr
	return nil
}
