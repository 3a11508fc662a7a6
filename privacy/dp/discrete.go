package dp

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
)

// DiscreteGaussian samples the discrete Gaussian N_Z(0, σ²) — P(x) ∝ exp(−x²/(2σ²)) on
// the integers — exactly, by the algorithm of Canonne, Kamath and Steinke ("The Discrete
// Gaussian for Differential Privacy", NeurIPS 2020): rejection sampling from a discrete
// Laplace, with every Bernoulli trial drawn from uniform integers and rational
// parameters, so no floating-point rounding touches the distribution. σ² is held as the
// rational Num/Den. Distributed DP uses it: a sum of agents' discrete Gaussians passes
// through secure aggregation's integer arithmetic unchanged.
type DiscreteGaussian struct {
	num, den uint64 // σ² = num/den
	t        uint64 // the discrete Laplace's scale, ⌊σ⌋ + 1
	r        *rand.Rand
}

// MaxSigma2 is the largest variance the sampler takes.
const MaxSigma2 = 1 << 60

// NewDiscreteGaussian returns a sampler of N_Z(0, σ²) drawing from r (SecureRand in
// production), 0 < σ² ≤ MaxSigma2. σ² is rounded up — which only adds noise — to a
// multiple of 2⁻¹⁶ below 2^40, and to an integer above.
func NewDiscreteGaussian(sigma2 float64, r *rand.Rand) (*DiscreteGaussian, error) {
	if !(sigma2 > 0) || sigma2 > MaxSigma2 {
		return nil, fmt.Errorf("discrete Gaussian: σ² = %g: want 0 < σ² ≤ 2^60", sigma2)
	}
	den := uint64(1 << 16)
	if sigma2 > 1<<40 {
		den = 1
	}
	num := uint64(math.Ceil(sigma2 * float64(den)))
	t := uint64(math.Floor(math.Sqrt(float64(num)/float64(den)))) + 1
	return &DiscreteGaussian{num: num, den: den, t: t, r: r}, nil
}

// Sigma2 is the variance parameter σ² as sampled (after rounding up).
func (g *DiscreteGaussian) Sigma2() float64 { return float64(g.num) / float64(g.den) }

// bernoulli is true with probability n/d (0 ≤ n ≤ d, d > 0).
func (g *DiscreteGaussian) bernoulli(n, d uint64) bool { return g.r.Uint64N(d) < n }

// bernoulliExp01 is true with probability exp(−n/d), for n/d in [0, 1] (CKS20,
// Algorithm 1): with K the first k for which a Bernoulli(n/(d·k)) trial fails, K is odd
// with exactly that probability. (d·k stays far below 2^64: d ≤ 2^31 here, and k
// exceeds 20 with probability below 1/20!.)
func (g *DiscreteGaussian) bernoulliExp01(n, d uint64) bool {
	k := uint64(1)
	for g.bernoulli(n, d*k) {
		k++
	}
	return k%2 == 1
}

// bernoulliBig is true with probability n/d for big integers, 0 ≤ n ≤ d.
func (g *DiscreteGaussian) bernoulliBig(n, d *big.Int) bool {
	if d.IsUint64() {
		return g.bernoulli(n.Uint64(), d.Uint64())
	}
	return g.uniformBig(d).Cmp(n) < 0
}

// uniformBig is uniform in [0, d).
func (g *DiscreteGaussian) uniformBig(d *big.Int) *big.Int {
	bits := d.BitLen()
	buf := make([]byte, (bits+7)/8)
	for {
		for i := range buf {
			buf[i] = byte(g.r.Uint32())
		}
		if extra := len(buf)*8 - bits; extra > 0 {
			buf[0] &= byte(0xff >> extra)
		}
		v := new(big.Int).SetBytes(buf)
		if v.Cmp(d) < 0 {
			return v
		}
	}
}

// bernoulliExpBig is true with probability exp(−n/d) for any n/d ≥ 0 (CKS20,
// Algorithm 1, with the integer part peeled off as exp(−1) trials).
func (g *DiscreteGaussian) bernoulliExpBig(n, d *big.Int) bool {
	q, rem := new(big.Int).QuoRem(n, d, new(big.Int))
	for i := new(big.Int); i.Cmp(q) < 0; i.Add(i, big.NewInt(1)) {
		if !g.bernoulliExp01(1, 1) {
			return false
		}
	}
	k := big.NewInt(1)
	for {
		if !g.bernoulliBig(rem, new(big.Int).Mul(d, k)) {
			break
		}
		k.Add(k, big.NewInt(1))
	}
	return k.Bit(0) == 1
}

// laplace samples the discrete Laplace with scale t: P(x) ∝ exp(−|x|/t) (CKS20,
// Algorithm 2 with s = 1).
func (g *DiscreteGaussian) laplace() int64 {
	for {
		u := g.r.Uint64N(g.t)
		if !g.bernoulliExp01(u, g.t) {
			continue
		}
		v := uint64(0)
		for g.bernoulliExp01(1, 1) {
			v++
		}
		x := u + g.t*v
		if g.r.Uint64()&1 == 1 {
			if x == 0 {
				continue
			}
			return -int64(x)
		}
		return int64(x)
	}
}

// Sample draws one value of N_Z(0, σ²) (CKS20, Algorithm 3): a discrete Laplace Y of
// scale t, kept with probability exp(−(|Y| − σ²/t)²/(2σ²)).
func (g *DiscreteGaussian) Sample() int64 {
	// With σ² = a/b: (|Y| − a/(bt))² / (2a/b) = (|Y|·b·t − a)² / (2·a·b·t²).
	a := new(big.Int).SetUint64(g.num)
	b := new(big.Int).SetUint64(g.den)
	t := new(big.Int).SetUint64(g.t)
	den := new(big.Int).Mul(a, b)
	den.Mul(den, t).Mul(den, t).Lsh(den, 1)
	for {
		y := g.laplace()
		n := new(big.Int).SetInt64(y)
		n.Abs(n).Mul(n, b).Mul(n, t).Sub(n, a)
		n.Mul(n, n)
		if g.bernoulliExpBig(n, den) {
			return y
		}
	}
}

// AddTo adds an independent sample to each element of v, modulo 2^32.
func (g *DiscreteGaussian) AddTo(v []uint32) {
	for i := range v {
		v[i] += uint32(g.Sample())
	}
}
