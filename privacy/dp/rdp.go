// Package dp is fedq's differential privacy: the Rényi-DP accountant of the subsampled
// Gaussian mechanism, noise calibration, clipping and Gaussian noise from a
// cryptographically secure source.
//
// The accountant follows Mironov, Talwar and Zhang (2019), "Rényi Differential Privacy of
// the Sampled Gaussian Mechanism": the RDP of one step at order α is log(A_α)/(α−1),
// with A_α computed exactly for integer α (binomial expansion) and by the convergent
// series of their Section 3.3 for fractional α, all in log space. RDP composes by
// addition over steps and mechanisms; (ε, δ) comes from the improved conversion of
// Canonne, Kamath and Steinke (2020, Proposition 12), ε = RDP(α) + log1p(−1/α) −
// log(δα)/(α−1), minimised over the orders. It is the accountant of TensorFlow Privacy
// and Opacus, and reproduces their published test values (see the tests).
package dp

import (
	"errors"
	"fmt"
	"math"
)

// DefaultOrders are the RDP orders used when none are given: 1.1, 1.2, …, 10.9 and
// 12, …, 63 (Opacus' defaults).
func DefaultOrders() []float64 {
	out := make([]float64, 0, 99+52)
	for x := 1; x < 100; x++ {
		out = append(out, 1+float64(x)/10)
	}
	for a := 12; a < 64; a++ {
		out = append(out, float64(a))
	}
	return out
}

// RDP returns the Rényi DP, at each of orders, of steps compositions of the Gaussian
// mechanism with noise multiplier sigma (noise standard deviation over sensitivity) on
// a Poisson sample of rate q.
func RDP(q, sigma float64, steps int, orders []float64) ([]float64, error) {
	if !(q >= 0 && q <= 1) {
		return nil, fmt.Errorf("dp: sample rate %v must be in [0, 1]", q)
	}
	if !(sigma >= 0) || math.IsInf(sigma, 0) {
		return nil, fmt.Errorf("dp: noise multiplier %v must be ≥ 0", sigma)
	}
	if steps < 0 {
		return nil, fmt.Errorf("dp: steps %d must be ≥ 0", steps)
	}
	out := make([]float64, len(orders))
	for i, a := range orders {
		if !(a > 1) {
			return nil, fmt.Errorf("dp: RDP order %v must be > 1", a)
		}
		r, err := rdpStep(q, sigma, a)
		if err != nil {
			return nil, err
		}
		out[i] = r * float64(steps)
	}
	return out, nil
}

// rdpStep is the RDP of one step at order a.
func rdpStep(q, sigma, a float64) (float64, error) {
	switch {
	case math.IsInf(a, 1) || sigma == 0:
		return math.Inf(1), nil
	case q == 0:
		return 0, nil
	case q == 1:
		return a / (2 * sigma * sigma), nil
	}
	var logA float64
	var err error
	if a == math.Trunc(a) && a < 1<<20 {
		logA = logAInt(q, sigma, int(a))
	} else {
		logA, err = logAFrac(q, sigma, a)
	}
	if err != nil {
		return 0, err
	}
	return logA / (a - 1), nil
}

// logAInt is log(A_α) for integer α: log Σᵢ C(α,i) qⁱ (1−q)^(α−i) exp((i²−i)/(2σ²)).
func logAInt(q, sigma float64, alpha int) float64 {
	logA := math.Inf(-1)
	lq, l1q := math.Log(q), math.Log1p(-q)
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		s := logBinom(float64(alpha), fi) + fi*lq + float64(alpha-i)*l1q + (fi*fi-fi)/(2*sigma*sigma)
		logA = logAdd(logA, s)
	}
	return logA
}

// logAFrac is log(A_α) for fractional α, as the sum of the series of its two integrals,
// over (−∞, z₀] and [z₀, ∞), until the terms fall below e^−30.
func logAFrac(q, sigma, alpha float64) (float64, error) {
	logA0, logA1 := math.Inf(-1), math.Inf(-1)
	z0 := sigma*sigma*math.Log(1/q-1) + 0.5
	lq, l1q := math.Log(q), math.Log1p(-q)
	var err error
	for i := 0; ; i++ {
		fi := float64(i)
		logCoef, sign := logAbsBinom(alpha, fi)
		j := alpha - fi
		logT0 := logCoef + fi*lq + j*l1q
		logT1 := logCoef + j*lq + fi*l1q
		logE0 := math.Log(0.5) + logErfc((fi-z0)/(math.Sqrt2*sigma))
		logE1 := math.Log(0.5) + logErfc((z0-j)/(math.Sqrt2*sigma))
		logS0 := logT0 + (fi*fi-fi)/(2*sigma*sigma) + logE0
		logS1 := logT1 + (j*j-j)/(2*sigma*sigma) + logE1
		if sign > 0 {
			logA0, logA1 = logAdd(logA0, logS0), logAdd(logA1, logS1)
		} else {
			if logA0, err = logSub(logA0, logS0); err != nil {
				return 0, err
			}
			if logA1, err = logSub(logA1, logS1); err != nil {
				return 0, err
			}
		}
		if math.Max(logS0, logS1) < -30 {
			break
		}
		if i > 1e6 {
			return 0, errors.New("dp: the RDP series did not converge")
		}
	}
	return logAdd(logA0, logA1), nil
}

// logBinom is log C(n, k) for 0 ≤ k ≤ n, n integral.
func logBinom(n, k float64) float64 {
	l, _ := logAbsBinom(n, k)
	return l
}

// logAbsBinom is log |C(a, k)| for real a and integer k ≥ 0, and the sign of C(a, k).
func logAbsBinom(a, k float64) (float64, int) {
	if a == math.Trunc(a) && a >= 0 && k <= a {
		// Integral: the product formula, exact to rounding.
		k = math.Min(k, a-k)
		l := 0.0
		for i := 1.0; i <= k; i++ {
			l += math.Log((a - k + i) / i)
		}
		return l, 1
	}
	// C(a, k) = Γ(a+1) / (Γ(k+1) Γ(a−k+1)).
	la, sa := math.Lgamma(a + 1)
	lk, _ := math.Lgamma(k + 1)
	lak, sak := math.Lgamma(a - k + 1)
	return la - lk - lak, sa * sak
}

// logErfc is log(erfc(x)), accurate where erfc underflows.
func logErfc(x float64) float64 {
	if x < 25 {
		return math.Log(math.Erfc(x))
	}
	// erfc(x) = e^(−x²)/(x√π) · (1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶) + …)
	x2 := x * x
	return -x2 - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log1p(-1/(2*x2)+3/(4*x2*x2)-15/(8*x2*x2*x2))
}

// logAdd is log(eˣ + eʸ).
func logAdd(x, y float64) float64 {
	a, b := math.Min(x, y), math.Max(x, y)
	if math.IsInf(a, -1) {
		return b
	}
	return math.Log1p(math.Exp(a-b)) + b
}

// logSub is log(eˣ − eʸ), for x ≥ y.
func logSub(x, y float64) (float64, error) {
	switch {
	case math.IsInf(y, -1):
		return x, nil
	case x == y:
		return math.Inf(-1), nil
	case x < y:
		return 0, errors.New("dp: log of a negative number in the RDP series")
	}
	return math.Log(math.Expm1(x-y)) + y, nil
}

// Epsilon converts RDP values at orders into (ε, δ)-DP: the smallest ε over the orders,
// and the order that gives it.
func Epsilon(orders, rdp []float64, delta float64) (eps, order float64, err error) {
	if len(orders) != len(rdp) || len(orders) == 0 {
		return 0, 0, fmt.Errorf("dp: %d orders for %d RDP values", len(orders), len(rdp))
	}
	if !(delta > 0 && delta < 1) {
		return 0, 0, fmt.Errorf("dp: δ %v must be in (0, 1)", delta)
	}
	eps, order = math.Inf(1), math.NaN()
	for i, a := range orders {
		r := rdp[i]
		if !(a > 1) || r < 0 || math.IsNaN(r) {
			return 0, 0, fmt.Errorf("dp: RDP %v at order %v", r, a)
		}
		var e float64
		switch {
		case delta*delta+math.Expm1(-r) > 0:
			e = 0 // δ ≥ √(1 − e^−KL): no ε needed at all
		case a > 1.01:
			e = r + math.Log1p(-1/a) - math.Log(delta*a)/(a-1)
		default:
			e = math.Inf(1) // the bound is unstable as α → 1
		}
		if e < eps {
			eps, order = e, a
		}
	}
	return math.Max(0, eps), order, nil
}

// SampledGaussianEpsilon is the ε after steps of the Gaussian mechanism with noise
// multiplier sigma on Poisson samples of rate q, at δ, over orders (nil: DefaultOrders).
func SampledGaussianEpsilon(q, sigma float64, steps int, delta float64, orders []float64) (eps, order float64, err error) {
	if orders == nil {
		orders = DefaultOrders()
	}
	rdp, err := RDP(q, sigma, steps, orders)
	if err != nil {
		return 0, 0, err
	}
	return Epsilon(orders, rdp, delta)
}

// NoiseMultiplier is the smallest noise multiplier (to 1e-6 relative) whose ε after
// steps at sample rate q stays within targetEps at δ.
func NoiseMultiplier(targetEps, q float64, steps int, delta float64, orders []float64) (float64, error) {
	return calibrate(targetEps, func(sigma float64) (float64, error) {
		e, _, err := SampledGaussianEpsilon(q, sigma, steps, delta, orders)
		return e, err
	})
}

// calibrate is the smallest noise multiplier (to 1e-6 relative) whose ε, by epsAt,
// stays within targetEps: doubling from 1, then bisection.
func calibrate(targetEps float64, epsAt func(sigma float64) (float64, error)) (float64, error) {
	if !(targetEps > 0) || math.IsInf(targetEps, 0) {
		return 0, fmt.Errorf("dp: target ε %v must be positive", targetEps)
	}
	lo, hi := 0.0, 1.0
	for {
		e, err := epsAt(hi)
		if err != nil {
			return 0, err
		}
		if e <= targetEps {
			break
		}
		lo, hi = hi, 2*hi
		if hi > 1e6 {
			return 0, fmt.Errorf("dp: no noise multiplier up to 1e6 reaches ε = %v", targetEps)
		}
	}
	for hi-lo > 1e-6*hi {
		mid := (lo + hi) / 2
		e, err := epsAt(mid)
		if err != nil {
			return 0, err
		}
		if e <= targetEps {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}
