package dp

import (
	"fmt"
	"math"
)

// Sampling is how each step of a mechanism picks its participants, which decides both
// the neighbouring relation and the accountant.
type Sampling string

// The samplings.
const (
	// Poisson: each record (or agent) is in a step's sample independently with
	// probability q. Neighbours differ by adding or removing one record, so a sum of
	// updates clipped to L2 norm C has sensitivity C. Accounted by RDP (Mironov, Talwar
	// and Zhang 2019).
	Poisson Sampling = "poisson"
	// Fixed: each step samples exactly m of n records uniformly without replacement,
	// γ = m/n. Neighbours have the same size n and differ by replacing one record
	// (n is public), so a sum of updates clipped to L2 norm C has sensitivity 2C.
	// Accounted by RDPWithoutReplacement (Wang, Balle and Kasiviswanathan 2019).
	Fixed Sampling = "fixed"
)

// woRMaxExact is the largest order for which the without-replacement bound uses the
// forward differences of Theorem 27; above it only the other arm of each term's
// minimum is used (a valid, looser bound, in O(α)), as TensorFlow Privacy does.
const woRMaxExact = 256

// RDPWithoutReplacement returns the Rényi DP, at each of orders, of steps compositions
// of the Gaussian mechanism with noise multiplier sigma (noise standard deviation over
// the mechanism's replace-one L2 sensitivity) on a uniformly random subset of fixed size
// m = gamma·n drawn without replacement, n public, under replace-one adjacency.
//
// It is the bound of Wang, Balle and Kasiviswanathan (2019), "Subsampled Rényi
// Differential Privacy and Analytical Moments Accountant" (AISTATS; Theorem 9, in its
// strengthened form Theorem 27 of arXiv 1808.00087v2) for the Gaussian mechanism, whose
// RDP is ε(α) = α/(2σ²), as TensorFlow Privacy's compute_rdp_sample_without_replacement
// computes it: for integer α,
//
//	A_α = 1 + γ² C(α,2) min{4(e^ε(2) − 1), 2e^ε(2)}
//	        + Σ_{j=3..α} γʲ C(α,j) min{4·√(B(2⌊j/2⌋)·B(2⌈j/2⌉)), 2e^((j−1)ε(j))},
//
// B(l) the l-th forward difference at 0 of i ↦ e^((i−1)ε(i)), and RDP log(A_α)/(α−1);
// for fractional α the cumulant (α−1)·RDP is interpolated linearly between ⌊α⌋ and ⌈α⌉
// (their Corollary 10: it is convex). Above order 256 the B terms are dropped from the
// minima (as TensorFlow Privacy does). Everything is in log space, and each B(l) is
// bounded above (logForwardDiffs): from its two sums of like-signed terms with a bound on
// the rounding error added, or, where that difference cancels badly in floating point,
// by a series with no cancellation — so the result stays an upper bound where TensorFlow
// Privacy's float64 differences lose digits (at σ = 2.5 and order 256 its published
// value is 0.017% below the bound; see TestWORPublishedValues).
//
// For a sum of updates clipped to L2 norm C with noise of standard deviation z·C, the
// replace-one sensitivity is 2C and sigma is z/2: see ClippedSumRDP.
func RDPWithoutReplacement(gamma, sigma float64, steps int, orders []float64) ([]float64, error) {
	if !(gamma >= 0 && gamma <= 1) {
		return nil, fmt.Errorf("dp: sampling fraction %v must be in [0, 1]", gamma)
	}
	if !(sigma >= 0) || math.IsInf(sigma, 0) {
		return nil, fmt.Errorf("dp: noise multiplier %v must be ≥ 0", sigma)
	}
	if steps < 0 {
		return nil, fmt.Errorf("dp: steps %d must be ≥ 0", steps)
	}
	maxOrder := 0.0
	for _, a := range orders {
		if !(a > 1) {
			return nil, fmt.Errorf("dp: RDP order %v must be > 1", a)
		}
		if !math.IsInf(a, 1) {
			maxOrder = math.Max(maxOrder, a)
		}
	}
	var b []float64 // log B(l), l = 0 … the largest even order needed
	if gamma > 0 && gamma < 1 && sigma > 0 {
		b = logForwardDiffs(sigma, int(math.Min(math.Ceil(maxOrder), woRMaxExact))+1)
	}
	out := make([]float64, len(orders))
	for i, a := range orders {
		var r float64
		switch {
		case gamma == 0:
			r = 0
		case math.IsInf(a, 1) || sigma == 0:
			r = math.Inf(1)
		case gamma == 1:
			r = a / (2 * sigma * sigma)
		case a == math.Trunc(a):
			r = worLogA(gamma, sigma, int(a), b) / (a - 1)
		default:
			lo, hi := math.Floor(a), math.Ceil(a)
			t := a - lo
			r = ((1-t)*worLogA(gamma, sigma, int(lo), b) + t*worLogA(gamma, sigma, int(hi), b)) / (a - 1)
		}
		if math.IsNaN(r) || r < 0 {
			return nil, fmt.Errorf("dp: without-replacement RDP %v at order %v (fraction %v, noise multiplier %v)", r, a, gamma, sigma)
		}
		out[i] = r * float64(steps)
	}
	return out, nil
}

// worLogA is log(A_α) of RDPWithoutReplacement for integer α ≥ 1, 0 < γ < 1, σ > 0; b
// holds log B(l) for l ≤ α+1 when α ≤ woRMaxExact.
func worLogA(gamma, sigma float64, alpha int, b []float64) float64 {
	if alpha == 1 {
		return 0
	}
	s2 := 2 * sigma * sigma
	cgf := func(x float64) float64 { return x * (x + 1) / s2 } // (x)·ε(x+1)
	lg := math.Log(gamma)
	eps2 := 2 / s2 // ε(2)
	// j = 2: min{4(e^ε(2) − 1), 2e^ε(2)}.
	logF2m1 := eps2 + math.Log1p(-math.Exp(-eps2))
	logA := 0.0 // log 1
	logC := math.Log(float64(alpha))
	// log C(α, j), built up term by term.
	logC += math.Log(float64(alpha-1)) - math.Log(2)
	logA = logAdd(logA, 2*lg+logC+math.Min(math.Log(4)+logF2m1, eps2+math.Ln2))
	exact := alpha <= woRMaxExact && len(b) > alpha+1
	for j := 3; j <= alpha; j++ {
		logC += math.Log(float64(alpha-j+1)) - math.Log(float64(j))
		s := math.Ln2 + cgf(float64(j-1))
		if exact {
			lo, hi := b[2*(j/2)], b[2*((j+1)/2)]
			s = math.Min(s, math.Log(4)+0.5*(lo+hi))
		}
		logA = logAdd(logA, float64(j)*lg+logC+s)
	}
	return logA
}

// logForwardDiffs returns log B(l) for l = 0 … n, B(l) the l-th forward difference at 0
// of f(i) = e^(c·i(i−1)), c = 1/(2σ²), rounded up: the smaller of two upper bounds.
//
// The first is the definition, B(l) = Σᵢ (−1)^(l−i) C(l,i) f(i), evaluated as P − N, the
// sums of its positive and negative terms in log space, plus a bound on the rounding
// error of P and N. It is accurate where f grows fast (large c); where it does not, the
// difference cancels, and what is left is the error bound.
//
// The second, used where the first loses more than 1e-9 of a B(l) to its error bound
// and c is small enough for it to converge fast, has no cancellation
// at all: e^(c·(i)₂) = Σₙ cⁿ(i)₂ⁿ/n!, and (i)₂ⁿ = Σⱼ aₙⱼ (i)ⱼ in falling factorials with
// aₙⱼ ≥ 0, (i)ⱼ(i)₂ = (i)ⱼ₊₂ + 2j(i)ⱼ₊₁ + j(j−1)(i)ⱼ, and Δˡ(i)ⱼ at 0 is l! if j = l, else
// 0; so B(l) = l!·Σₙ bₙₗ with bₙⱼ = cⁿaₙⱼ/n! ≥ 0 and
//
//	bₙ₊₁,ⱼ = c/(n+1)·(bₙ,ⱼ₋₂ + 2(j−1)·bₙ,ⱼ₋₁ + j(j−1)·bₙ,ⱼ).
//
// Once n+1 > 2c(n_max+1)², bₙ₊₁,ⱼ < ½·maxᵢ≤ⱼ bₙᵢ, so the tail after term n is below
// maxᵢ≤ₗ bₙᵢ, which is added. (B(l) ≥ 0 exactly, by the same expansion.)
func logForwardDiffs(sigma float64, n int) []float64 {
	c := 1 / (2 * sigma * sigma)
	out := make([]float64, n+1)
	worst := math.Inf(-1) // the largest log(error bound / value)
	for l := 0; l <= n; l++ {
		pos, neg := math.Inf(-1), math.Inf(-1)
		logC, maxAbs := 0.0, 0.0 // log C(l, i)
		for i := 0; i <= l; i++ {
			if i > 0 {
				logC += math.Log(float64(l-i+1)) - math.Log(float64(i))
			}
			v := logC + c*float64(i)*float64(i-1)
			maxAbs = math.Max(maxAbs, math.Abs(v))
			if (l-i)%2 == 0 {
				pos = logAdd(pos, v)
			} else {
				neg = logAdd(neg, v)
			}
		}
		// Each term's log carries an absolute error of a few ulps of its magnitude, and
		// each of the l additions a relative one: 16ε(l + 2 + max|v|) bounds the relative
		// error of P and of N generously.
		kappa := 16 * 0x1p-52 * (float64(l) + 2 + maxAbs)
		errBound := logAdd(pos, neg) + math.Log(kappa)
		d := math.Inf(-1)
		if pos > neg {
			d, _ = logSub(pos, neg)
			d += math.Log1p(kappa)
		}
		if l == 1 {
			out[l] = math.Inf(-1) // B(1) = f(1) − f(0) = 0 exactly
			continue
		}
		out[l] = logAdd(d, errBound)
		worst = math.Max(worst, errBound-d)
	}
	if worst < math.Log(1e-9) {
		return out // the differences are good to 1e-9: no need for the series
	}
	if series, ok := logForwardDiffsSeries(c, n); ok {
		for l := range out {
			out[l] = math.Min(out[l], series[l])
		}
	}
	return out
}

// woRSeriesTerms caps the terms of logForwardDiffsSeries.
const woRSeriesTerms = 4096

// logForwardDiffsSeries is the series bound of logForwardDiffs, or false where it would
// take more than woRSeriesTerms terms.
func logForwardDiffsSeries(c float64, n int) ([]float64, bool) {
	decay := 2 * c * float64(n+1) * float64(n+1) // past this many terms, they halve
	if !(decay < woRSeriesTerms) {
		return nil, false
	}
	b := make([]float64, n+1)   // log bₙⱼ for the current term
	sum := make([]float64, n+1) // log Σ bₙⱼ so far
	next := make([]float64, n+1)
	for j := range b {
		b[j], sum[j] = math.Inf(-1), math.Inf(-1)
	}
	b[0], sum[0] = 0, 0 // n = 0: (i)₂⁰ = (i)₀
	logJJ := make([]float64, n+1)
	for j := range logJJ {
		logJJ[j] = math.Log(float64(j) * float64(j-1)) // −Inf for j < 2
	}
	for t := 0; t < woRSeriesTerms; t++ {
		lc := math.Log(c / float64(t+1))
		for j := 0; j <= n; j++ {
			v := logJJ[j] + b[j]
			if j >= 1 {
				v = logAdd(v, math.Log(float64(2*(j-1)))+b[j-1])
			}
			if j >= 2 {
				v = logAdd(v, b[j-2])
			}
			next[j] = lc + v
			sum[j] = logAdd(sum[j], next[j])
		}
		b, next = next, b
		if float64(t+2) <= decay {
			continue
		}
		// Terms now halve: the tail after this one is below maxᵢ≤ₗ bᵢ.
		done, tail := true, math.Inf(-1)
		for l := 0; l <= n && done; l++ {
			tail = math.Max(tail, b[l])
			done = math.IsInf(tail, -1) || tail < sum[l]-40
		}
		if !done {
			continue
		}
		out := make([]float64, n+1)
		tail = math.Inf(-1)
		logFact := 0.0
		for l := range out {
			if l > 0 {
				logFact += math.Log(float64(l))
			}
			tail = math.Max(tail, b[l])
			out[l] = logFact + logAdd(sum[l], tail) + 1e-12 // and a little for rounding
		}
		return out, true
	}
	return nil, false
}

// ClippedSumRDP returns the RDP, at each of orders, of steps rounds of the Gaussian
// mechanism on a sum of updates each clipped to L2 norm C, with noise of standard
// deviation z·C, on samples drawn as sampling says at rate (Poisson: the probability q;
// Fixed: the fraction γ = m/n). With Poisson sampling (add/remove one) the sensitivity
// is C and this is RDP(rate, z, …); with Fixed (replace one) replacing one agent's
// update moves the sum by up to 2C, so this is RDPWithoutReplacement(rate, z/2, …).
func ClippedSumRDP(sampling Sampling, rate, z float64, steps int, orders []float64) ([]float64, error) {
	switch sampling {
	case Poisson, "":
		return RDP(rate, z, steps, orders)
	case Fixed:
		return RDPWithoutReplacement(rate, z/2, steps, orders)
	}
	return nil, fmt.Errorf("dp: sampling %q: want %q or %q", sampling, Poisson, Fixed)
}

// ClippedSumEpsilon is the ε at δ after steps rounds of ClippedSumRDP, over orders (nil:
// DefaultOrders), and the order that gives it.
func ClippedSumEpsilon(sampling Sampling, rate, z float64, steps int, delta float64, orders []float64) (eps, order float64, err error) {
	if orders == nil {
		orders = DefaultOrders()
	}
	rdp, err := ClippedSumRDP(sampling, rate, z, steps, orders)
	if err != nil {
		return 0, 0, err
	}
	return Epsilon(orders, rdp, delta)
}

// ClippedSumNoiseMultiplier is the smallest noise multiplier z, relative to the clip
// (to 1e-6 relative), whose ε after steps rounds of ClippedSumRDP stays within
// targetEps at δ. For Poisson it equals NoiseMultiplier.
func ClippedSumNoiseMultiplier(sampling Sampling, targetEps, rate float64, steps int, delta float64, orders []float64) (float64, error) {
	return calibrate(targetEps, func(z float64) (float64, error) {
		e, _, err := ClippedSumEpsilon(sampling, rate, z, steps, delta, orders)
		return e, err
	})
}
