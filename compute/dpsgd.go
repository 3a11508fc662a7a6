package compute

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/fedq/fedq/compute/dataset"
)

// DPSGD makes training record-level differentially private (DP-SGD, Abadi et al. 2016):
// each step draws a Poisson sample of the records (each with probability Batch/N), clips
// every sampled record's gradient to L2 norm Clip, adds Gaussian noise of standard
// deviation NoiseMultiplier·Clip to their sum, and divides by the expected batch size;
// the optimizer then steps with that gradient. Each step is one application of the
// subsampled Gaussian mechanism with rate Batch/N, which is what an RDP accountant
// composes.
type DPSGD struct {
	Clip, NoiseMultiplier float64
	// Rand draws the samples and the noise. For privacy it must be unpredictable: a
	// generator keyed from a cryptographically secure source (privacy/dp.SecureRand).
	Rand *rand.Rand
}

// check validates the settings.
func (p *DPSGD) check() error {
	switch {
	case !(p.Clip > 0) || math.IsInf(p.Clip, 0):
		return fmt.Errorf("dp-sgd: clip must be positive, got %v", p.Clip)
	case !(p.NoiseMultiplier >= 0) || math.IsInf(p.NoiseMultiplier, 0):
		return fmt.Errorf("dp-sgd: noise multiplier must be ≥ 0, got %v", p.NoiseMultiplier)
	case p.Rand == nil:
		return fmt.Errorf("dp-sgd: no random source")
	}
	return nil
}

// trainDP is Train with DP-SGD: cfg.Epochs × ⌈N/Batch⌉ steps (or cfg.MaxSteps), each on a
// Poisson sample, with per-record gradients computed one record at a time.
func trainDP(ctx context.Context, m *Model[float32], opt Optimizer[float32], d *dataset.Dataset, cfg TrainConfig) (TrainResult, error) {
	p := cfg.DP
	if err := p.check(); err != nil {
		return TrainResult{}, err
	}
	var labelled []int
	for i, y := range d.Y {
		if y >= 0 {
			labelled = append(labelled, i)
		}
	}
	if len(labelled) == 0 {
		return TrainResult{}, fmt.Errorf("dp-sgd: %s has no labelled records", d.Name)
	}
	n := len(labelled)
	q := min(1, float64(cfg.Batch)/float64(n))
	stepsPerEpoch := (n + cfg.Batch - 1) / cfg.Batch
	expected := q * float64(n)
	ss := m.inSize
	sum := make([]float32, len(m.values))
	std := p.NoiseMultiplier * p.Clip
	var res TrainResult
	start := time.Now()
	for e := range cfg.Epochs {
		var lossSum float64
		var correct, seen int
		for s := range stepsPerEpoch {
			if cfg.MaxSteps > 0 && res.Steps >= cfg.MaxSteps {
				break
			}
			if err := ctx.Err(); err != nil {
				return res, err
			}
			clear(sum)
			for _, i := range labelled {
				if p.Rand.Float64() >= q {
					continue
				}
				m.Forward(d.X[i*ss:(i+1)*ss], 1, true)
				l, c := m.Loss(d.Y[i : i+1])
				m.Backward()
				clipInto(sum, m.grads, p.Clip)
				lossSum += l
				correct += c
				seen++
				res.Samples++
			}
			for j := range sum {
				sum[j] = float32((float64(sum[j]) + p.Rand.NormFloat64()*std) / expected)
			}
			copy(m.grads, sum)
			opt.Step(m.values, m.grads)
			res.Steps++
			if cfg.Progress != nil && seen > 0 {
				el := time.Since(start)
				cfg.Progress(TrainProgress{Epoch: e + 1, Epochs: cfg.Epochs, Step: s + 1, Steps: stepsPerEpoch, Samples: res.Samples,
					Loss: lossSum / float64(seen), Elapsed: el, SamplesPerSecond: float64(res.Samples) / el.Seconds()})
			}
		}
		if seen > 0 {
			res.Loss = lossSum / float64(seen)
			res.Accuracy = float64(correct) / float64(seen)
		}
		if cfg.MaxSteps > 0 && res.Steps >= cfg.MaxSteps {
			break
		}
	}
	res.Elapsed = time.Since(start)
	res.SamplesPerSecond = float64(res.Samples) / res.Elapsed.Seconds()
	return res, nil
}

// clipInto adds g, scaled to L2 norm at most clip, to sum.
func clipInto(sum, g []float32, clip float64) {
	var sq float64
	for _, v := range g {
		sq += float64(v) * float64(v)
	}
	s := float32(1)
	if norm := math.Sqrt(sq); norm > clip {
		s = float32(clip / norm)
	}
	for j, v := range g {
		sum[j] += s * v
	}
}
