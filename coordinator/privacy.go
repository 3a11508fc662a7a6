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
// divides by the expected number of participants (the fixed-denominator estimator, whose
// sensitivity does not depend on how many agents took part).
type centralDP struct {
	inner  aggregation.Aggregator
	p      *task.Privacy
	noise  *dp.Noise
	denom  float64   // sample rate × eligible agents of the running round
	sizes  []int     // with PerLayer: the parameter tensors' sizes
	bounds []float64 // and their bounds, Clip/√len(sizes) each
}

// newCentralDP wraps inner for a task's privacy settings; sizes are the model's
// parameter tensors' sizes, in order (used with PerLayer).
func newCentralDP(inner aggregation.Aggregator, p *task.Privacy, sizes []int) *centralDP {
	a := &centralDP{inner: inner, p: p, noise: dp.NewNoise()}
	if p.PerLayer && len(sizes) > 0 {
		a.sizes = sizes
		a.bounds = make([]float64, len(sizes))
		for i := range a.bounds {
			a.bounds[i] = p.Clip / math.Sqrt(float64(len(sizes)))
		}
	}
	return a
}

// startRound sets the round's expected participants.
func (a *centralDP) startRound(sampleRate float64, eligible int) {
	a.denom = sampleRate * float64(eligible)
}

func (a *centralDP) Add(u []float32, _ uint64) error {
	if a.sizes != nil {
		if _, err := dp.ClipL2PerLayer(u, a.sizes, a.bounds); err != nil {
			return err
		}
	} else {
		dp.ClipL2(u, a.p.Clip)
	}
	return a.inner.Add(u, 1)
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
	// mean·n is the sum of the clipped updates; noise it, then divide by q·N.
	sum := mean
	for i := range sum {
		sum[i] *= float32(n)
	}
	a.noise.AddGaussian(sum, a.p.NoiseMultiplier*a.p.Clip)
	inv := float32(1 / a.denom)
	for i := range sum {
		sum[i] *= inv
	}
	return sum, nil
}
