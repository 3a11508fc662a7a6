package dp

import (
	crand "crypto/rand"
	"fmt"
	"math"
	"math/rand/v2"
)

// ClipL2 scales v in place so that its L2 norm is at most bound, and returns the norm it
// had. The norm is accumulated in float64.
func ClipL2(v []float32, bound float64) float64 {
	norm := l2(v)
	if norm > bound {
		s := float32(bound / norm)
		for i := range v {
			v[i] *= s
		}
	}
	return norm
}

// ClipL2PerLayer clips each of v's consecutive segments (of the given sizes, which must
// sum to len(v)) to its own L2 bound; the whole vector's norm is then at most the norm of
// the bounds. It returns the segments' norms before clipping.
func ClipL2PerLayer(v []float32, sizes []int, bounds []float64) ([]float64, error) {
	if len(sizes) != len(bounds) {
		return nil, fmt.Errorf("dp: %d layer sizes for %d bounds", len(sizes), len(bounds))
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	if total != len(v) {
		return nil, fmt.Errorf("dp: layer sizes add up to %d, the update has %d values", total, len(v))
	}
	norms := make([]float64, len(sizes))
	off := 0
	for i, n := range sizes {
		norms[i] = ClipL2(v[off:off+n], bounds[i])
		off += n
	}
	return norms, nil
}

// l2 is v's Euclidean norm, accumulated in float64.
func l2(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// Noise draws Gaussian noise from a ChaCha8 stream keyed from the operating system's
// cryptographically secure generator (crypto/rand), so that the noise cannot be
// predicted or replayed by anyone who sees the code, a seed or earlier noise. Not safe
// for concurrent use.
type Noise struct {
	r *rand.Rand
}

// NewNoise returns a Noise keyed from crypto/rand.
func NewNoise() *Noise { return &Noise{r: SecureRand()} }

// SecureRand returns a generator whose stream is ChaCha8 keyed from crypto/rand: for
// whatever privacy draws — noise, and the samples of records or agents. Not safe for
// concurrent use.
func SecureRand() *rand.Rand {
	var key [32]byte
	crand.Read(key[:]) // never fails: crypto/rand panics rather than return weak bytes
	return rand.New(rand.NewChaCha8(key))
}

// NewSeededNoise returns a Noise from a fixed key: for tests only, never for privacy.
func NewSeededNoise(key [32]byte) *Noise {
	return &Noise{r: rand.New(rand.NewChaCha8(key))}
}

// AddGaussian adds independent N(0, std²) noise to every value of v.
func (n *Noise) AddGaussian(v []float32, std float64) {
	if std == 0 {
		return
	}
	for i := range v {
		v[i] += float32(n.r.NormFloat64() * std)
	}
}
