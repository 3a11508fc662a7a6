package compute

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/fedq/fedq/compute/dataset"
)

// Semi configures semi-supervised local training with FixMatch (Sohn et al. 2020): each
// unlabelled sample (label dataset.Unlabelled) is pseudo-labelled with the current model
// from a weakly augmented view, kept if its top probability is at least Threshold, and
// trained on a strongly augmented view against that pseudo-label; labelled samples are
// trained on weakly augmented views. A step's loss is
//
//	(1/nl) Σ_labelled CE + LambdaU · (1/nu) Σ_unlabelled 1[max p ≥ τ] · CE(strong, pseudo)
//
// with nl labelled and nu unlabelled samples in the step (FixMatch's normalisation: a
// low coverage gives a small unlabelled gradient).
//
// Decisions: pseudo-labels are made per step with the model as it is at that step
// (online, as FixMatch), with dropout off; an epoch is one pass over the unlabelled
// samples (labelled ones are drawn in turn, reshuffled when used up), or over the
// labelled ones when there are no unlabelled; with no labelled samples, a step takes
// TrainConfig.Batch unlabelled ones, otherwise Batch labelled and Ratio·Batch unlabelled.
// A dataset with no unlabelled samples is plain supervised training on weak views.
type Semi struct {
	// Threshold is τ, in (0, 1] (FixMatch: 0.95).
	Threshold float64
	// LambdaU weighs the unlabelled loss (FixMatch: 1).
	LambdaU float64
	// Ratio is μ, unlabelled per labelled sample in a step (FixMatch: 7); ≥ 1.
	Ratio int
	// Static pseudo-labels every unlabelled sample once, before training, with the
	// model as it comes in (on the unaugmented sample), as SemiFL (Diao et al. 2022)
	// does, instead of at every step with the model being trained. Training then only
	// visits the samples kept, so a model that drifts during local training cannot
	// confirm its own mistakes within the round. With none kept and no labelled sample
	// there is nothing to train on, and the model is left as it came (a zero update).
	Static bool
	// Plain trains on labelled samples as they are, instead of on weakly augmented
	// views (a plain supervised baseline).
	Plain bool
	// Truth, when set, holds the true labels of the dataset's samples (len = its length):
	// in simulation it scores the pseudo-labels. Training never reads it otherwise.
	Truth []int32
}

// Semi defaults (FixMatch's).
const (
	DefaultThreshold = 0.95
	DefaultLambdaU   = 1.0
	DefaultRatio     = 7
)

// Check validates the settings.
func (s *Semi) Check() error {
	switch {
	case !(s.Threshold > 0 && s.Threshold <= 1):
		return fmt.Errorf("semi: threshold τ must be in (0, 1], got %v", s.Threshold)
	case !(s.LambdaU >= 0) || math.IsInf(s.LambdaU, 0):
		return fmt.Errorf("semi: λu must be ≥ 0, got %v", s.LambdaU)
	case s.Ratio < 1:
		return fmt.Errorf("semi: the unlabelled:labelled ratio must be at least 1, got %d", s.Ratio)
	}
	return nil
}

// SemiResult summarises semi-supervised training.
type SemiResult struct {
	TrainResult
	// Unlabelled counts the unlabelled samples pseudo-labelled (in all epochs; once
	// with Semi.Static); Kept those at or above the threshold; Correct those kept
	// whose pseudo-label equals Semi.Truth (0 without it).
	Unlabelled, Kept, Correct int
}

// Coverage is the share of pseudo-labelled samples kept (NaN when there were none).
func (r SemiResult) Coverage() float64 {
	if r.Unlabelled == 0 {
		return math.NaN()
	}
	return float64(r.Kept) / float64(r.Unlabelled)
}

// PseudoAccuracy is the share of kept pseudo-labels that were right (NaN when none
// were kept).
func (r SemiResult) PseudoAccuracy() float64 {
	if r.Kept == 0 {
		return math.NaN()
	}
	return float64(r.Correct) / float64(r.Kept)
}

// cycler hands out indices of a set in shuffled passes, reshuffling after each.
type cycler struct {
	idx []int
	pos int
	rng *rand.Rand
}

func newCycler(idx []int, seed uint64) *cycler {
	c := &cycler{idx: append([]int(nil), idx...), rng: rand.New(rand.NewPCG(seed, 0x5e31))}
	c.shuffle()
	return c
}

func (c *cycler) shuffle() {
	c.rng.Shuffle(len(c.idx), func(i, j int) { c.idx[i], c.idx[j] = c.idx[j], c.idx[i] })
	c.pos = 0
}

// take appends the next n indices (wrapping into a new pass) to dst.
func (c *cycler) take(dst []int, n int) []int {
	for range n {
		if c.pos == len(c.idx) {
			c.shuffle()
		}
		dst = append(dst, c.idx[c.pos])
		c.pos++
	}
	return dst
}

// TrainSemi trains m on the partly labelled (or unlabelled) dataset d with FixMatch (see
// Semi). cfg's Epochs, Batch, Seed and MaxSteps mean what they mean for Train; DP-SGD
// (cfg.DP) is not supported here and is refused. The result's Samples counts the samples
// every epoch looked at, labelled and unlabelled, kept or not (an agent's FedAvg weight
// is the data it looked at): those of every step or, with static pseudo-labels, the
// labelled ones of its steps and every unlabelled sample.
func TrainSemi(ctx context.Context, m *Model[float32], opt Optimizer[float32], d *dataset.Dataset, cfg TrainConfig, s Semi) (SemiResult, error) {
	if !m.Trainable() {
		return SemiResult{}, fmt.Errorf("train semi: %w", errInference)
	}
	if err := m.checkData(d); err != nil {
		return SemiResult{}, err
	}
	if err := s.Check(); err != nil {
		return SemiResult{}, err
	}
	if cfg.Epochs < 1 || cfg.Batch < 1 {
		return SemiResult{}, fmt.Errorf("train semi: epochs and batch must be at least 1, got %d and %d", cfg.Epochs, cfg.Batch)
	}
	if cfg.DP != nil {
		return SemiResult{}, fmt.Errorf("train semi: DP-SGD with pseudo-labels is not supported; use central DP")
	}
	if s.Truth != nil && len(s.Truth) != d.Len() {
		return SemiResult{}, fmt.Errorf("train semi: %d true labels for %d samples", len(s.Truth), d.Len())
	}
	aug, err := NewAugmenter(d.Shape)
	if err != nil {
		return SemiResult{}, err
	}
	var lab, unl []int
	for i, y := range d.Y {
		if y >= 0 {
			lab = append(lab, i)
		} else {
			unl = append(unl, i)
		}
	}
	var res SemiResult
	var pseudo []int32 // Static: the pseudo-label of each sample kept
	if s.Static && len(unl) > 0 {
		if unl, pseudo, err = pseudoLabel(ctx, m, d, unl, s, &res); err != nil {
			return res, err
		}
	}
	nl, nu := cfg.Batch, 0
	steps := (len(lab) + cfg.Batch - 1) / cfg.Batch
	switch {
	case len(unl) > 0 && len(lab) == 0:
		nl, nu = 0, cfg.Batch
		steps = (len(unl) + nu - 1) / nu
	case len(unl) > 0:
		nu = cfg.Batch * s.Ratio
		steps = (len(unl) + nu - 1) / nu
	}
	labC, unlC := newCycler(lab, cfg.Seed), newCycler(unl, cfg.Seed^0x9e3779b97f4a7c15)
	ss, k := m.inSize, m.spec.Classes
	x := make([]float32, (nl+nu)*ss)
	xw := make([]float32, nu*ss)
	y := make([]int32, nl+nu)
	w := make([]float32, nl+nu)
	var li, ui []int
	labView := AugmentWeak
	if s.Plain {
		labView = AugmentNone
	}
	start := time.Now()
	for e := range cfg.Epochs {
		if pseudo != nil {
			res.Samples += res.Unlabelled // each epoch looks at all of them, kept or not
		}
		var lossSum float64
		var correct, labelled, lossSteps int
		for step := range steps {
			if cfg.MaxSteps > 0 && res.Steps >= cfg.MaxSteps {
				break
			}
			if err := ctx.Err(); err != nil {
				return res, err
			}
			// Each view is drawn from (seed, step, sample), whatever the batch it lands in.
			tag := uint64(e*steps+step) << 32
			li, ui = labC.take(li[:0], nl), unlC.take(ui[:0], nu)
			n := len(li)
			for j, i := range li {
				aug.Apply(labView, x[j*ss:], d.X[i*ss:], cfg.Seed, tag|uint64(i))
				y[j], w[j] = d.Y[i], 1/float32(len(li))
			}
			kept := 0
			if pseudo != nil {
				for _, i := range ui {
					aug.Apply(AugmentStrong, x[n*ss:], d.X[i*ss:], cfg.Seed^0xd1b54a32d192ed03, tag|uint64(i))
					y[n], w[n] = pseudo[i], float32(s.LambdaU/float64(len(ui)))
					n++
				}
			} else if len(ui) > 0 {
				for j, i := range ui {
					aug.Apply(AugmentWeak, xw[j*ss:], d.X[i*ss:], cfg.Seed, tag|uint64(i))
				}
				z := m.Forward(xw, len(ui), false)
				for j, i := range ui {
					c, ok := res.judge(z[j*k:(j+1)*k], i, s)
					if !ok {
						continue
					}
					aug.Apply(AugmentStrong, x[n*ss:], d.X[i*ss:], cfg.Seed^0xd1b54a32d192ed03, tag|uint64(i))
					y[n], w[n] = int32(c), float32(s.LambdaU/float64(len(ui)))
					n++
					kept++
				}
			}
			res.Steps++
			res.Samples += len(li)
			if pseudo == nil {
				res.Samples += len(ui) // looked at, whether or not any was kept
			}
			if n == 0 || (len(li) == 0 && s.LambdaU == 0) {
				continue // nothing to learn from in this step
			}
			m.Forward(x[:n*ss], n, true)
			l, c := m.weightedLoss(y[:n], w[:n], len(li))
			if f, ok := opt.(fusedSGD); ok {
				if lr, ok := f.fusedLR(); ok {
					m.backward(float32(lr))
				} else {
					m.Backward()
					opt.Step(m.values, m.grads)
				}
			} else {
				m.Backward()
				opt.Step(m.values, m.grads)
			}
			lossSum += l
			lossSteps++
			correct += c
			labelled += len(li)
			if cfg.Progress != nil {
				el := time.Since(start)
				cfg.Progress(TrainProgress{Epoch: e + 1, Epochs: cfg.Epochs, Step: step + 1, Steps: steps, Samples: res.Samples,
					Loss: lossSum / float64(lossSteps), Elapsed: el, SamplesPerSecond: float64(res.Samples) / el.Seconds()})
			}
		}
		if lossSteps > 0 {
			res.Loss = lossSum / float64(lossSteps)
		}
		res.Accuracy = math.NaN()
		if labelled > 0 {
			res.Accuracy = float64(correct) / float64(labelled)
		}
		if cfg.MaxSteps > 0 && res.Steps >= cfg.MaxSteps {
			break
		}
	}
	res.Elapsed = time.Since(start)
	res.SamplesPerSecond = float64(res.Samples) / res.Elapsed.Seconds()
	return res, nil
}

// pseudoLabel labels the samples idx of d with m as it is (no augmentation, dropout
// off), in batches, and returns those at or above s.Threshold with their labels (indexed
// by sample), counting them in res.
func pseudoLabel(ctx context.Context, m *Model[float32], d *dataset.Dataset, idx []int, s Semi, res *SemiResult) ([]int, []int32, error) {
	const chunk = 64
	ss, k := m.inSize, m.spec.Classes
	labels := make([]int32, d.Len())
	x := make([]float32, chunk*ss)
	var kept []int
	for lo := 0; lo < len(idx); lo += chunk {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		part := idx[lo:min(lo+chunk, len(idx))]
		for j, i := range part {
			copy(x[j*ss:(j+1)*ss], d.X[i*ss:(i+1)*ss])
		}
		z := m.Forward(x[:len(part)*ss], len(part), false)
		for j, i := range part {
			if c, ok := res.judge(z[j*k:(j+1)*k], i, s); ok {
				labels[i] = int32(c)
				kept = append(kept, i)
			}
		}
	}
	return kept, labels, nil
}

// judge pseudo-labels sample i from its logits z, counting it in res: it returns the
// class and whether its probability reaches τ.
func (res *SemiResult) judge(z []float32, i int, s Semi) (int, bool) {
	p, c := topProb(z)
	res.Unlabelled++
	if p < s.Threshold {
		return c, false
	}
	res.Kept++
	if s.Truth != nil && s.Truth[i] == int32(c) {
		res.Correct++
	}
	return c, true
}

// topProb returns the largest softmax probability of logits z and its class.
func topProb(z []float32) (float64, int) {
	best := 0
	for j, v := range z {
		if v > z[best] {
			best = j
		}
	}
	var sum float64
	for _, v := range z {
		sum += math.Exp(float64(v - z[best]))
	}
	return 1 / sum, best
}

// weightedLoss is Loss with a weight per sample: the loss Σ wᵢ·CEᵢ and its gradient for
// Backward. It returns how many of the first labelled samples were classified
// correctly.
func (m *Model[T]) weightedLoss(labels []int32, w []float32, labelled int) (loss float64, correct int) {
	n, k := m.batch, m.spec.Classes
	m.dlogits = grow(m.dlogits, n*k)
	for i := range n {
		z := m.logits[i*k : (i+1)*k]
		g := m.dlogits[i*k : (i+1)*k]
		y := int(labels[i])
		if y < 0 || y >= k {
			panic(fmt.Sprintf("compute: label %d out of range [0,%d)", y, k))
		}
		mx, arg := z[0], 0
		for j, v := range z {
			if v > mx {
				mx, arg = v, j
			}
		}
		if arg == y && i < labelled {
			correct++
		}
		var sum float64
		for j, v := range z {
			e := math.Exp(float64(v - mx))
			g[j] = T(e)
			sum += e
		}
		wi := float64(w[i])
		loss += (math.Log(sum) - float64(z[y]-mx)) * wi
		scale := T(wi / sum)
		for j := range g {
			g[j] *= scale
		}
		g[y] -= T(wi)
	}
	return loss, correct
}
