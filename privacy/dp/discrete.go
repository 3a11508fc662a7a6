package dp

import (
	"encoding/binary"
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

	// The acceptance test's constants and scratch, reused between samples (a sampler is
	// not safe for concurrent use).
	a, b, bt, accDen    *big.Int // num, den, den·t, 2·num·den·t²
	n, q, rem, dk, k, u *big.Int
	buf                 []byte
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
	g := &DiscreteGaussian{num: num, den: den, t: t, r: r,
		a: new(big.Int).SetUint64(num), b: new(big.Int).SetUint64(den),
		n: new(big.Int), q: new(big.Int), rem: new(big.Int), dk: new(big.Int), k: new(big.Int), u: new(big.Int)}
	tt := new(big.Int).SetUint64(t)
	g.bt = new(big.Int).Mul(g.b, tt)
	g.accDen = new(big.Int).Mul(g.a, g.b)
	g.accDen.Mul(g.accDen, tt).Mul(g.accDen, tt).Lsh(g.accDen, 1)
	return g, nil
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

// uniformBig is uniform in [0, d), by rejection of uniform bit strings.
func (g *DiscreteGaussian) uniformBig(d *big.Int) *big.Int {
	bits := d.BitLen()
	n := (bits + 7) / 8
	if cap(g.buf) < n+8 {
		g.buf = make([]byte, n+8)
	}
	buf := g.buf[:n]
	for {
		for i := 0; i < n; i += 8 {
			binary.LittleEndian.PutUint64(g.buf[i:], g.r.Uint64())
		}
		if extra := n*8 - bits; extra > 0 {
			buf[0] &= byte(0xff >> extra)
		}
		g.u.SetBytes(buf)
		if g.u.Cmp(d) < 0 {
			return g.u
		}
	}
}

// bernoulliExpBig is true with probability exp(−n/d) for any n/d ≥ 0 (CKS20,
// Algorithm 1, with the integer part peeled off as exp(−1) trials).
func (g *DiscreteGaussian) bernoulliExpBig(n, d *big.Int) bool {
	g.q.QuoRem(n, d, g.rem)
	if !g.q.IsUint64() {
		return false // exp(−2^64) is 0 to any precision a trial could show
	}
	for range g.q.Uint64() {
		if !g.bernoulliExp01(1, 1) {
			return false
		}
	}
	k := uint64(1)
	for {
		g.dk.Mul(d, g.k.SetUint64(k))
		if !g.bernoulliBig(g.rem, g.dk) {
			break
		}
		k++
	}
	return k%2 == 1
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
	for {
		y := g.laplace()
		n := g.n.SetInt64(y)
		n.Abs(n).Mul(n, g.bt).Sub(n, g.a)
		n.Mul(n, n)
		if g.bernoulliExpBig(n, g.accDen) {
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
