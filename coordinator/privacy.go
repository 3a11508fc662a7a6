package coordinator

import (
	"errors"
	"math"

	"github.com/fedq/fedq/aggregation"
	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/privacy/dp"
)

// centralDP wraps a round's aggregator with user-level DP-FedAvg (McMahan et al. 2018):
// each update is clipped to L2 norm Clip as it is folded in, with unit weight (an
// agent's influence must not depend on what it claims about its data); Finish turns the
// mean into the sum, adds Gaussian noise of standard deviation NoiseMultiplier·Clip, and
// divides by the expected number of participants, or with fixed-size sampling by the
// number sampled (the fixed-denominator estimator, whose sensitivity does not depend on
// how many agents took part).
//
// With adaptive clipping the clip moves between rounds: clip is the running round's, and
// Finish computes next from the noised count of unclipped updates; the driver adopts it
// once the round is committed (a failed commit leaves the clip as it was).
type centralDP struct {
	inner     aggregation.Aggregator
	p         *task.Privacy
	noise     *dp.Noise
	denom     float64   // the running round's task.Privacy.Denominator
	sizes     []int     // with PerLayer: the parameter tensors' sizes
	bounds    []float64 // and their bounds, clip/√len(sizes) each
	clip      float64   // the running round's clip
	next      float64   // the next round's, after Finish
	unclipped int       // updates within the clip this round
}

// newCentralDP wraps inner for a task's privacy settings; sizes are the model's
// parameter tensors' sizes, in order (used with PerLayer).
func newCentralDP(inner aggregation.Aggregator, p *task.Privacy, sizes []int) *centralDP {
	a := &centralDP{inner: inner, p: p, noise: dp.NewNoise()}
	if p.PerLayer && len(sizes) > 0 {
		a.sizes = sizes
		a.bounds = make([]float64, len(sizes))
	}
	a.setClip(p.Clip)
	return a
}

// setClip sets the clip of the rounds to come.
func (a *centralDP) setClip(c float64) {
	a.clip, a.next = c, c
	for i := range a.bounds {
		a.bounds[i] = c / math.Sqrt(float64(len(a.sizes)))
	}
}

// startRound sets the round's denominator: the expected participants (Poisson
// sampling) or the sample size (fixed), task.Privacy.Denominator.
func (a *centralDP) startRound(denom float64) {
	a.denom = denom
	a.unclipped = 0
}

func (a *centralDP) Add(u []float32, _ uint64) error {
	within := true
	if a.sizes != nil {
		norms, err := dp.ClipL2PerLayer(u, a.sizes, a.bounds)
		if err != nil {
			return err
		}
		for i, n := range norms {
			within = within && n <= a.bounds[i]
		}
	} else {
		within = dp.ClipL2(u, a.clip) <= a.clip
	}
	if err := a.inner.Add(u, 1); err != nil {
		return err
	}
	if within {
		a.unclipped++
	}
	return nil
}

func (a *centralDP) Count() int          { return a.inner.Count() }
func (a *centralDP) Examples() uint64    { return a.inner.Examples() }
func (a *centralDP) Reset(buf []float32) { a.inner.Reset(buf) }

func (a *centralDP) Finish() ([]float32, error) {
	n := a.inner.Count()
	if !(a.denom > 0) {
		return nil, errors.New("central DP: no expected participants (round not started)")
	}
	mean, err := a.inner.Finish()
	if err != nil {
		return nil, err
	}
	// mean·n is the sum of the clipped updates; noise it, then divide by q·N (or m).
	sum := mean
	for i := range sum {
		sum[i] *= float32(n)
	}
	a.noise.AddGaussian(sum, a.p.UpdateNoiseMultiplier()*a.clip)
	if ac := a.p.AdaptiveClip; ac != nil {
		// The noised share of unclipped updates moves the clip geometrically.
		count := []float32{float32(a.unclipped)}
		a.noise.AddGaussian(count, ac.CountNoise)
		share := float64(count[0]) / a.denom
		a.next = a.clip * math.Exp(-ac.LR*(share-ac.Quantile))
	}
	inv := float32(1 / a.denom)
	for i := range sum {
		sum[i] *= inv
	}
	return sum, nil
}
