package sim

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/task"
)

// semiSetting is a parsed Config.Semi: where the labels are, and how many.
type semiSetting struct {
	mode string // task.LabelsAtCoordinator or task.LabelsAtAgents
	n    int    // labelled examples at the coordinator, or per class per agent
}

// parseSemi reads "labels-at-coordinator:N" or "labels-at-agents:K".
func parseSemi(s string) (*semiSetting, error) {
	if s == "" {
		return nil, nil
	}
	mode, arg, ok := strings.Cut(s, ":")
	n, err := strconv.Atoi(arg)
	if !ok || err != nil || n < 1 || (mode != task.LabelsAtCoordinator && mode != task.LabelsAtAgents) {
		return nil, fmt.Errorf("semi %q: want %s:N (N labelled examples held by the coordinator) or %s:K (K labelled examples of each class per agent), N and K ≥ 1",
			s, task.LabelsAtCoordinator, task.LabelsAtAgents)
	}
	return &semiSetting{mode: mode, n: n}, nil
}

// balanced picks n indices of d, as evenly spread over the classes as d allows (a
// seeded choice), and returns them with the rest.
func balanced(d *dataset.Dataset, n int, seed uint64) (picked, rest []int, err error) {
	if n > d.Len() {
		return nil, nil, fmt.Errorf("semi: %d labelled examples asked of a training set of %d", n, d.Len())
	}
	per := make([]int, d.NumClasses) // quota per class
	for i := range n {
		per[i%d.NumClasses]++
	}
	taken := make([]bool, d.Len())
	order := dataset.Shuffle(d.Len(), seed)
	for _, i := range order {
		if c := d.Y[i]; c >= 0 && per[c] > 0 {
			per[c]--
			taken[i] = true
			picked = append(picked, i)
		}
	}
	for _, i := range order { // classes short of their quota: fill from any class
		if len(picked) == n {
			break
		}
		if !taken[i] {
			taken[i] = true
			picked = append(picked, i)
		}
	}
	for i := range d.Len() {
		if !taken[i] {
			rest = append(rest, i)
		}
	}
	slices.Sort(picked)
	return picked, rest, nil
}

// hideLabels removes the labels of local, except, when keep > 0, the first keep
// examples of each class in a seeded order; it returns the true labels.
func hideLabels(local *dataset.Dataset, keep int, seed uint64) []int32 {
	truth := slices.Clone(local.Y)
	kept := make([]int, local.NumClasses)
	for _, i := range dataset.Shuffle(local.Len(), seed) {
		if c := local.Y[i]; c >= 0 && kept[c] < keep {
			kept[c]++
			continue
		}
		local.Y[i] = dataset.Unlabelled
	}
	return truth
}

// labelledOnly returns the labelled examples of local.
func labelledOnly(local *dataset.Dataset) *dataset.Dataset {
	var idx []int
	for i, y := range local.Y {
		if y >= 0 {
			idx = append(idx, i)
		}
	}
	d := local.Subset(idx)
	d.Name = local.Name
	return d
}

// semiTask fills a task's semi-supervised section.
func semiTask(ts *task.Spec, s *semiSetting, cfg Config) {
	ts.Semi = &task.Semi{Mode: s.mode, Threshold: cfg.Threshold, PseudoLabels: cfg.PseudoLabels}
	if s.mode == task.LabelsAtCoordinator {
		ts.Semi.Labelled = labelledName
		ts.Semi.WarmupEpochs = cfg.WarmupEpochs
		ts.Semi.FineTune = task.FineTune{Epochs: cfg.FineTuneEpochs, LR: cfg.FineTuneLR, Augment: cfg.FineTuneAugment}
	}
}

// labelledName is the coordinator's labelled dataset in a simulation.
const labelledName = "mnist-labelled"

// supervised is the baseline of labels-at-coordinator: the model trained on the
// coordinator's labelled examples alone, with the coordinator's own recipe (warm-up
// epochs, then fine-tuning epochs per "round", the same augmentation, optimizer and
// learning-rate schedule), scored on the test set after each block of epochs as a round
// would be.
func supervised(ctx context.Context, cfg Config, spec compute.Spec, labelled, test *dataset.Dataset, res *Result) error {
	ts := task.Spec{Name: "baseline", Model: []byte(`"2nn"`), Dataset: "x", Train: task.Train{Epochs: 1, Batch: cfg.Batch, LR: cfg.LR, LRSchedule: cfg.LRSchedule},
		Rounds: cfg.Rounds, Fraction: 1}
	semiTask(&ts, &semiSetting{mode: task.LabelsAtCoordinator}, cfg)
	if err := ts.Normalize(); err != nil {
		return err
	}
	s := ts.Semi
	m, err := compute.New[float32](spec, compute.Options{Seed: cfg.Seed})
	if err != nil {
		return err
	}
	res.Params = m.NumParams()
	last := time.Now()
	for round := 0; round <= cfg.Rounds; round++ {
		epochs, seed, lr := s.WarmupEpochs, cfg.Seed, s.FineTune.LR
		if round > 0 {
			epochs, seed = s.FineTune.Epochs, cfg.Seed^uint64(round)<<20
			lr = ts.Train.ScaleLR(lr, uint64(round), ts.Rounds)
		}
		opt, err := compute.NewSGD(m, lr, s.FineTune.Momentum, 0, false) // as the coordinator: anew each time
		if err != nil {
			return err
		}
		if _, err := compute.TrainSemi(ctx, m, opt, labelled, compute.TrainConfig{Epochs: epochs, Batch: s.FineTune.Batch, Seed: seed},
			s.FineTuneSemi()); err != nil {
			return err
		}
		if round == 0 {
			continue
		}
		acc, loss, err := compute.Evaluate(m, test, 1000)
		if err != nil {
			return err
		}
		r := Round{Round: uint64(round), Accuracy: acc, Loss: loss, Seconds: time.Since(last).Seconds()}
		last = time.Now()
		res.Rounds = append(res.Rounds, r)
		res.FinalAccuracy = acc
		if cfg.Progress != nil {
			cfg.Progress(r)
		}
		if cfg.Target > 0 && acc >= cfg.Target && res.RoundsToTarget == 0 {
			res.RoundsToTarget = round
			break
		}
	}
	return nil
}

// versionMetrics reads the pseudo-label figures of the committed versions into res's
// rounds. The last round was scored before its version was committed, so it waits
// (briefly) for that commit.
func versionMetrics(ctx context.Context, adm *coordinator.AdminClient, res *Result, mu *sync.Mutex) error {
	mu.Lock()
	last := uint64(0)
	if n := len(res.Rounds); n > 0 {
		last = res.Rounds[n-1].Round
	}
	mu.Unlock()
	metrics := map[uint64]map[string]float64{}
	for try := 0; ; try++ {
		vs, err := adm.Versions(ctx, "sim")
		if err != nil {
			return err
		}
		for _, v := range vs {
			metrics[v.Round] = v.Metrics
		}
		if _, ok := metrics[last]; ok || try == 100 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	mu.Lock()
	defer mu.Unlock()
	pseudoMetrics(res, metrics)
	return nil
}

// pseudoMetrics copies the pseudo-label figures of the versions' metrics (aggregated
// from the agents' updates) into the rounds.
func pseudoMetrics(res *Result, metrics map[uint64]map[string]float64) {
	for i, r := range res.Rounds {
		m := metrics[r.Round]
		if v, ok := m["train_pseudo_coverage"]; ok && !math.IsNaN(v) {
			res.Rounds[i].PseudoCoverage = &v
		}
		if v, ok := m["train_pseudo_accuracy"]; ok && !math.IsNaN(v) {
			res.Rounds[i].PseudoAccuracy = &v
		}
	}
}
