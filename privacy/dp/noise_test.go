package dp

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestClipL2BoundsEveryContribution(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		scale, bound float64
	}{{0.01, 1}, {1, 1}, {10, 1}, {1000, 0.5}, {3, 100}} {
		v := make([]float32, 1000)
		for i := range v {
			v[i] = float32(r.NormFloat64() * tc.scale)
		}
		orig := slices.Clone(v)
		before := ClipL2(v, tc.bound)
		after := l2(v)
		if after > tc.bound*(1+1e-6) {
			t.Errorf("scale %v bound %v: norm %v after clipping", tc.scale, tc.bound, after)
		}
		if before <= tc.bound && !slices.Equal(v, orig) {
			t.Errorf("scale %v bound %v: an update within the bound was changed", tc.scale, tc.bound)
		}
		if before > tc.bound {
			// Clipping scales: the direction is kept.
			for i := range v {
				if want := float64(orig[i]) * tc.bound / before; math.Abs(float64(v[i])-want) > 1e-6*math.Abs(want)+1e-12 {
					t.Fatalf("value %d: %v, want %v", i, v[i], want)
				}
			}
		}
	}
}

func TestClipL2PerLayer(t *testing.T) {
	v := []float32{3, 4, 0, 0, 6, 8}
	norms, err := ClipL2PerLayer(v, []int{2, 4}, []float64{1, 20})
	if err != nil {
		t.Fatal(err)
	}
	if norms[0] != 5 || norms[1] != 10 || math.Abs(l2(v[:2])-1) > 1e-6 || v[4] != 6 {
		t.Fatalf("norms %v, v %v", norms, v)
	}
	if _, err := ClipL2PerLayer(v, []int{2, 3}, []float64{1, 1}); err == nil {
		t.Fatal("sizes that do not cover the update were accepted")
	}
}

// TestGaussianNoiseDistribution checks the noise with a fixed key: mean, variance, and a
// Kolmogorov–Smirnov test against N(0, σ²) at the 1% level.
func TestGaussianNoiseDistribution(t *testing.T) {
	const n, std = 200000, 2.5
	v := make([]float32, n)
	NewSeededNoise([32]byte{7}).AddGaussian(v, std)
	var sum, sq float64
	for _, x := range v {
		sum += float64(x)
		sq += float64(x) * float64(x)
	}
	mean := sum / n
	variance := sq/n - mean*mean
	if math.Abs(mean) > 4*std/math.Sqrt(n) {
		t.Errorf("mean %v", mean)
	}
	// The sample variance's standard error is σ²·√(2/n).
	if math.Abs(variance-std*std) > 4*std*std*math.Sqrt(2.0/n) {
		t.Errorf("variance %v, want %v", variance, std*std)
	}
	xs := make([]float64, n)
	for i, x := range v {
		xs[i] = float64(x)
	}
	slices.Sort(xs)
	var d float64
	for i, x := range xs {
		c := 0.5 * math.Erfc(-x/(std*math.Sqrt2))
		d = math.Max(d, math.Max(math.Abs(c-float64(i)/n), math.Abs(c-float64(i+1)/n)))
	}
	if crit := 1.628 / math.Sqrt(n); d > crit {
		t.Errorf("Kolmogorov–Smirnov D = %v > %v", d, crit)
	}
}

func TestNoiseIsKeyedFromTheSystem(t *testing.T) {
	a, b := make([]float32, 8), make([]float32, 8)
	NewNoise().AddGaussian(a, 1)
	NewNoise().AddGaussian(b, 1)
	if slices.Equal(a, b) {
		t.Fatal("two Noise streams gave the same values")
	}
}
