package dp

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
)

// Distributed is the distributed discrete Gaussian mechanism (DDGauss: Kairouz, Liu and
// Steinke, ICML 2021): each agent clips its update, rotates it with a randomized
// Hadamard transform shared by the round, scales it to a grid of step Gamma, rounds it
// to integers at random (conditionally, so the rounded vector's norm stays bounded) and
// adds its share of discrete Gaussian noise; secure aggregation sums the integers modulo
// 2^Bits, so the coordinator only ever sees a sum that carries everyone's noise. Decode
// maps the sum back.
//
// Privacy: the sum of n agents' N_Z(0, Sigma2) is close to N_Z(0, n·Sigma2) (within
// Tau, Kairouz et al. Theorem 1); the mechanism is accounted as the Gaussian mechanism
// with noise multiplier √(n_min·Sigma2)/Sensitivity, where n_min is the fewest agents a
// round commits with — fewer agents would mean less noise, so the coordinator refuses
// to commit below it.
type Distributed struct {
	// Dim is the update's length; Padded the power of two it is rotated in.
	Dim, Padded int
	// Clip bounds the update's L2 norm.
	Clip float64
	// Gamma is the value of one integer step.
	Gamma float64
	// Beta is the conditional rounding's bound on rejecting a rounding (default e^−½).
	Beta float64
	// Bits: the sum lives in Z_{2^Bits}, 1 ≤ Bits ≤ 32.
	Bits int
	// Sigma2 is each agent's discrete Gaussian variance, in integer steps.
	Sigma2 float64
	// Seed picks the rotation's random signs; every agent of a round uses the same.
	Seed [32]byte
}

// DefaultBeta is the conditional rounding's default β, as in TensorFlow Federated.
var DefaultBeta = math.Exp(-0.5)

// DistributedPlan is what PlanDistributed needs.
type DistributedPlan struct {
	Dim  int
	Clip float64
	// NoiseMultiplier z: the noise of the sum, over the clip, once Agents agents have
	// added their shares.
	NoiseMultiplier float64
	// MinAgents and MaxAgents bound the agents whose encoded updates a sum holds.
	MinAgents, MaxAgents int
	// Agents is how many agents' shares the noise is planned for, in [MinAgents,
	// MaxAgents]; 0 means MinAgents. A round planned for the agents it sampled (less a
	// margin for dropouts) carries less noise than one planned for the fewest it may
	// commit with, and the grid, sized for MinAgents, still holds the sum.
	Agents int
	// Bits of the modular sum (default 32, the width of fedq's secure aggregation).
	Bits int
	// ModClip is the target probability that a coordinate of the sum wraps around
	// (default 1e-6, summed over the coordinates).
	ModClip float64
	Seed    [32]byte
}

// PlanDistributed chooses the grid step and the agents' noise for a plan: Gamma is the
// smallest step that keeps the sum of MaxAgents agents' rotated updates and noise within
// ±2^(Bits−1) with probability 1 − ModClip (a Gaussian tail bound per coordinate, union
// over the coordinates, updates assumed aligned), and Sigma2 gives the sum the noise
// multiplier asked for once Agents (default MinAgents) agents took part.
func PlanDistributed(p DistributedPlan) (*Distributed, error) {
	if p.Bits == 0 {
		p.Bits = 32
	}
	if p.ModClip == 0 {
		p.ModClip = 1e-6
	}
	switch {
	case p.Dim < 1:
		return nil, fmt.Errorf("distributed DP: dimension %d", p.Dim)
	case !(p.Clip > 0) || math.IsInf(p.Clip, 0):
		return nil, fmt.Errorf("distributed DP: clip %g: must be positive", p.Clip)
	case !(p.NoiseMultiplier > 0) || math.IsInf(p.NoiseMultiplier, 0):
		return nil, fmt.Errorf("distributed DP: noise multiplier %g: must be positive", p.NoiseMultiplier)
	case p.MinAgents < 1 || p.MaxAgents < p.MinAgents:
		return nil, fmt.Errorf("distributed DP: agents %d..%d", p.MinAgents, p.MaxAgents)
	case p.Agents != 0 && (p.Agents < p.MinAgents || p.Agents > p.MaxAgents):
		return nil, fmt.Errorf("distributed DP: noise planned for %d agents, outside %d..%d", p.Agents, p.MinAgents, p.MaxAgents)
	case p.Bits < 8 || p.Bits > 32:
		return nil, fmt.Errorf("distributed DP: %d bits: want 8..32", p.Bits)
	case !(p.ModClip > 0 && p.ModClip < 1):
		return nil, fmt.Errorf("distributed DP: modular clipping probability %g: want (0, 1)", p.ModClip)
	}
	padded := 1 << bits.Len(uint(p.Dim-1))
	d := float64(padded)
	k := math.Sqrt(2 * math.Log(2*d/p.ModClip))
	nMax, nMin := float64(p.MaxAgents), float64(p.MinAgents)
	// Real-valued half-range of a coordinate of the sum: the aligned signal, the noise
	// of up to MaxAgents shares (each z·c/√n_min), and half a step of rounding each.
	half := k * p.Clip * (nMax/math.Sqrt(d) + p.NoiseMultiplier*math.Sqrt(nMax/nMin)*1.1)
	room := math.Exp2(float64(p.Bits-1)) - nMax
	if room <= 0 {
		return nil, fmt.Errorf("distributed DP: %d bits cannot hold the sum of %d agents", p.Bits, p.MaxAgents)
	}
	dd := &Distributed{Dim: p.Dim, Padded: padded, Clip: p.Clip, Gamma: half / room, Beta: DefaultBeta, Bits: p.Bits, Seed: p.Seed}
	agents := float64(p.Agents)
	if p.Agents == 0 {
		agents = nMin
	}
	dd.Sigma2 = math.Pow(p.NoiseMultiplier*dd.Sensitivity(), 2) / agents
	if dd.Sigma2 > MaxSigma2 {
		return nil, fmt.Errorf("distributed DP: each agent's noise variance %g is beyond the sampler's 2^60: use fewer bits", dd.Sigma2)
	}
	return dd, nil
}

// Sensitivity is the L2 bound of an encoded update before noise, in integer steps: the
// clip over the step, grown by conditional rounding (Kairouz et al., Theorem 2).
func (d *Distributed) Sensitivity() float64 {
	c := d.Clip / d.Gamma
	n := float64(d.Padded)
	cond := math.Sqrt(c*c + n/4 + math.Sqrt(2*math.Log(1/d.Beta))*(c+math.Sqrt(n)/2))
	return math.Min(cond, c+math.Sqrt(n))
}

// NoiseMultiplier is the noise multiplier of the equivalent Gaussian mechanism when
// agents agents add their noise: √(agents·Sigma2)/Sensitivity.
func (d *Distributed) NoiseMultiplier(agents int) float64 {
	return math.Sqrt(float64(agents)*d.Sigma2) / d.Sensitivity()
}

// Tau is Kairouz et al.'s τ for a sum of n shares: how far the sum of discrete
// Gaussians is from one discrete Gaussian; the concentrated-DP bound grows by τ√d.
func (d *Distributed) Tau(n int) float64 {
	s := 0.0
	for k := 1; k < n; k++ {
		s += math.Exp(-2 * math.Pi * math.Pi * d.Sigma2 * float64(k) / float64(k+1))
	}
	return 10 * s
}

// rotate applies the round's randomized Hadamard transform to x (length Padded), in
// place: random signs, then the normalized Walsh–Hadamard transform. inverse undoes it.
func (d *Distributed) rotate(x []float64, inverse bool) {
	signs := rand.New(rand.NewChaCha8(d.Seed))
	var word uint64
	flip := func(i int) {
		if i%64 == 0 {
			word = signs.Uint64()
		}
		if word>>(i%64)&1 == 1 {
			x[i] = -x[i]
		}
	}
	if !inverse {
		for i := range x {
			flip(i)
		}
	}
	for h := 1; h < len(x); h *= 2 {
		for i := 0; i < len(x); i += 2 * h {
			for j := i; j < i+h; j++ {
				a, b := x[j], x[j+h]
				x[j], x[j+h] = a+b, a-b
			}
		}
	}
	scale := 1 / math.Sqrt(float64(len(x)))
	for i := range x {
		x[i] *= scale
	}
	if inverse {
		for i := range x {
			flip(i)
		}
	}
}

// maxRoundings bounds conditional rounding's retries; each is accepted with
// probability at least 1 − Beta, so reaching it means a bug.
const maxRoundings = 1000

// Encode writes an agent's share into dst (length Padded): the update x (length Dim)
// clipped, rotated, scaled, rounded conditionally at random (rng) and noised (noise: a
// sampler of N_Z(0, Sigma2); nil for none), modulo 2^Bits.
func (d *Distributed) Encode(dst []uint32, x []float32, rng *rand.Rand, noise *DiscreteGaussian) error {
	if len(x) != d.Dim || len(dst) != d.Padded {
		return fmt.Errorf("distributed DP: an update of %d values into %d, want %d into %d", len(x), len(dst), d.Dim, d.Padded)
	}
	y := make([]float64, d.Padded)
	norm := 0.0
	for i, v := range x {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("distributed DP: value %d of the update is %g", i, v)
		}
		y[i] = f
		norm += f * f
	}
	norm = math.Sqrt(norm)
	scale := 1 / d.Gamma
	if norm > d.Clip {
		scale *= d.Clip / norm
	}
	d.rotate(y, false)
	for i := range y {
		y[i] *= scale
	}
	bound := d.Sensitivity()
	r := make([]int64, d.Padded)
	for try := 0; ; try++ {
		if try == maxRoundings {
			return errors.New("distributed DP: conditional rounding never met its bound")
		}
		sq := 0.0
		for i, v := range y {
			fl := math.Floor(v)
			r[i] = int64(fl)
			if rng.Float64() < v-fl {
				r[i]++
			}
			sq += float64(r[i]) * float64(r[i])
		}
		if math.Sqrt(sq) <= bound {
			break
		}
	}
	mask := uint32(1<<d.Bits - 1)
	if d.Bits == 32 {
		mask = math.MaxUint32
	}
	for i, v := range r {
		if noise != nil {
			v += noise.Sample()
		}
		dst[i] = uint32(v) & mask
	}
	return nil
}

// Decode turns the modular sum of agents' shares (length Padded) into the real-valued
// sum of their clipped updates plus the noise, multiplied by scale (1/expected agents
// gives DP-FedAvg's mean), written to dst (length Dim).
func (d *Distributed) Decode(dst []float32, sum []uint32, scale float64) error {
	if len(sum) != d.Padded || len(dst) != d.Dim {
		return fmt.Errorf("distributed DP: a sum of %d values into %d, want %d into %d", len(sum), len(dst), d.Padded, d.Dim)
	}
	y := make([]float64, d.Padded)
	mod := int64(1) << d.Bits
	mask := uint64(mod - 1)
	for i, s := range sum {
		v := int64(uint64(s) & mask)
		if v >= mod/2 {
			v -= mod
		}
		y[i] = float64(v) * d.Gamma
	}
	d.rotate(y, true)
	for i := range dst {
		dst[i] = float32(y[i] * scale)
	}
	return nil
}
