package task

import (
	"math"

	"github.com/fedq/fedq/compute"
)

// Semi-supervised modes.
const (
	// LabelsAtCoordinator is SemiFL-style alternate training (Diao et al. 2022): the
	// coordinator holds a small labelled set, which never leaves it; it trains the
	// initial model on it (Semi.WarmupEpochs) and fine-tunes every aggregated model on
	// it before committing the version, while agents train on pseudo-labels only.
	LabelsAtCoordinator = "labels-at-coordinator"
	// LabelsAtAgents is FixMatch inside each agent's local training: agents hold a few
	// labelled examples and many unlabelled ones.
	LabelsAtAgents = "labels-at-agents"
)

// Semi makes a task semi-supervised: agents train with FixMatch (Sohn et al. 2020) —
// each unlabelled example is pseudo-labelled from a weakly augmented view with the
// model being trained, kept when its top probability is at least Threshold, and trained
// on a strongly augmented view; labelled examples, if an agent has some, are mixed in at
// Ratio unlabelled per labelled, the unlabelled loss weighted by LambdaU. Agents report
// the share of pseudo-labels kept (train_pseudo_coverage in the version's metrics) and,
// where they know the true labels (simulation), how many were right
// (train_pseudo_accuracy).
//
// Semi-supervised training is local training, so it composes with central DP and with
// secure aggregation; record-level DP (DP-SGD in each agent) is not supported with it,
// and is refused.
type Semi struct {
	// Mode is LabelsAtCoordinator or LabelsAtAgents.
	Mode string `json:"mode"`
	// Threshold is τ, the confidence a pseudo-label needs (default 0.95).
	Threshold float64 `json:"threshold,omitempty"`
	// LambdaU weighs the unlabelled loss (default 1).
	LambdaU float64 `json:"lambda_u,omitempty"`
	// Ratio is unlabelled examples per labelled one in a local step (default 7).
	Ratio int `json:"ratio,omitempty"`
	// PseudoLabels is when agents make their pseudo-labels: "online" (the default), at
	// every step with the model being trained, as FixMatch; or "static", once per round
	// with the base model before training, as SemiFL — a local model that drifts cannot
	// then confirm its own mistakes within the round.
	PseudoLabels string `json:"pseudo_labels,omitempty"`
	// Labelled, for LabelsAtCoordinator, names the coordinator's labelled dataset
	// (`fedq coordinator run --data NAME=PATH`).
	Labelled string `json:"labelled,omitempty"`
	// WarmupEpochs, for LabelsAtCoordinator, is how many epochs the initial model is
	// trained on the labelled set before round 1 (default 30).
	WarmupEpochs int `json:"warmup_epochs,omitempty"`
	// FineTune, for LabelsAtCoordinator, is the coordinator's training on the labelled
	// set after each aggregation, also used for the warm-up (defaults: 5 epochs, the
	// task's batch, lr 0.05, no momentum — the CNN diverged at lr 0.05 with momentum 0.9).
	FineTune FineTune `json:"finetune,omitzero"`
}

// FineTune is the coordinator's supervised training on its labelled set (with SGD).
type FineTune struct {
	Epochs   int     `json:"epochs,omitempty"`
	Batch    int     `json:"batch,omitempty"`
	LR       float64 `json:"lr,omitempty"`
	Momentum float64 `json:"momentum,omitempty"`
	// Augment is AugmentWeak (the default: weakly augmented views, as FixMatch's
	// labelled batches) or AugmentNone (the images as they are).
	Augment string `json:"augment,omitempty"`
}

// Augmentations of the coordinator's labelled images (FineTune.Augment).
const (
	AugmentWeak = "weak"
	AugmentNone = "none"
)

// FineTuneSemi is how compute trains on the coordinator's labelled set: its examples are
// all labelled, so only the augmentation of their views matters.
func (m *Semi) FineTuneSemi() compute.Semi {
	return compute.Semi{Threshold: m.Threshold, LambdaU: m.LambdaU, Ratio: m.Ratio, Plain: m.FineTune.Augment == AugmentNone}
}

// Semi defaults.
const (
	DefaultThreshold    = 0.95
	DefaultLambdaU      = 1.0
	DefaultRatio        = 7
	DefaultWarmupEpochs = 30
	DefaultFineTune     = 5
	DefaultFineTuneLR   = 0.05
)

// When agents make pseudo-labels (Semi.PseudoLabels).
const (
	PseudoOnline = "online"
	PseudoStatic = "static"
)

// normalize fills the defaults and checks the fields against the rest of the spec.
func (m *Semi) normalize(s *Spec) error {
	switch m.Mode {
	case LabelsAtCoordinator, LabelsAtAgents:
	case "":
		return bad("semi.mode", "required: %s or %s", LabelsAtCoordinator, LabelsAtAgents)
	default:
		return bad("semi.mode", "%q: want %s or %s", m.Mode, LabelsAtCoordinator, LabelsAtAgents)
	}
	if m.Threshold == 0 {
		m.Threshold = DefaultThreshold
	}
	if !(m.Threshold > 0 && m.Threshold <= 1) {
		return bad("semi.threshold", "must be in (0, 1], got %v", m.Threshold)
	}
	if m.LambdaU == 0 {
		m.LambdaU = DefaultLambdaU
	}
	if !(m.LambdaU > 0) || math.IsInf(m.LambdaU, 0) {
		return bad("semi.lambda_u", "must be positive, got %v", m.LambdaU)
	}
	if m.Ratio == 0 {
		m.Ratio = DefaultRatio
	}
	if m.Ratio < 1 || m.Ratio > 1000 {
		return bad("semi.ratio", "must be in [1, 1000], got %d", m.Ratio)
	}
	if err := oneOf("semi.pseudo_labels", &m.PseudoLabels, PseudoOnline, PseudoStatic); err != nil {
		return err
	}
	if p := s.Privacy; p != nil && p.Mode == Record {
		return bad("semi", "record-level DP (DP-SGD in each agent) is not supported with pseudo-labels; use privacy mode %q", Central)
	}
	f := &m.FineTune
	if m.Mode == LabelsAtAgents {
		if m.Labelled != "" || m.WarmupEpochs != 0 || *f != (FineTune{}) {
			return bad("semi.labelled", "labelled, warmup_epochs and finetune belong to mode %s", LabelsAtCoordinator)
		}
		return nil
	}
	if m.Labelled == "" {
		return bad("semi.labelled", "required for %s: the name of the coordinator's labelled dataset (fedq coordinator run --data NAME=PATH)", LabelsAtCoordinator)
	}
	switch {
	case m.WarmupEpochs < 0:
		return bad("semi.warmup_epochs", "must not be negative, got %d", m.WarmupEpochs)
	case m.WarmupEpochs == 0:
		m.WarmupEpochs = DefaultWarmupEpochs
	}
	if f.Epochs == 0 {
		f.Epochs = DefaultFineTune
	}
	if f.Batch == 0 {
		f.Batch = s.Train.Batch
	}
	if f.LR == 0 {
		f.LR = DefaultFineTuneLR
	}
	if err := oneOf("semi.finetune.augment", &f.Augment, AugmentWeak, AugmentNone); err != nil {
		return err
	}
	switch {
	case f.Epochs < 0 || f.Epochs > 1000:
		return bad("semi.finetune.epochs", "must be in [0, 1000], got %d", f.Epochs)
	case f.Batch < 1:
		return bad("semi.finetune.batch", "must be at least 1, got %d", f.Batch)
	case !(f.LR > 0) || math.IsInf(f.LR, 0):
		return bad("semi.finetune.lr", "must be positive, got %v", f.LR)
	case f.Momentum < 0 || f.Momentum >= 1:
		return bad("semi.finetune.momentum", "must be in [0, 1), got %v", f.Momentum)
	}
	return nil
}
