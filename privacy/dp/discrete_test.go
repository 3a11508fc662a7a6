package dp

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestDiscreteGaussianDistribution compares samples with the exact probabilities of
// N_Z(0, σ²), by a χ² test over the values within ±4σ (fixed seeds).
func TestDiscreteGaussianDistribution(t *testing.T) {
	for _, sigma := range []float64{0.8, 1.5, 4, 25} {
		g, err := NewDiscreteGaussian(sigma*sigma, rand.New(rand.NewPCG(uint64(sigma*100), 3)))
		if err != nil {
			t.Fatal(err)
		}
		s2 := g.Sigma2()
		lim := int64(math.Ceil(4 * sigma))
		// Exact probabilities.
		norm := 0.0
		for x := -10 * lim; x <= 10*lim; x++ {
			norm += math.Exp(-float64(x*x) / (2 * s2))
		}
		const n = 200_000
		counts := map[int64]int{}
		sum, sumSq := 0.0, 0.0
		for range n {
			x := g.Sample()
			sum += float64(x)
			sumSq += float64(x * x)
			if x < -lim {
				x = -lim - 1
			} else if x > lim {
				x = lim + 1
			}
			counts[x]++
		}
		// Bins: each value in [−lim, lim], and the two tails.
		chi, bins := 0.0, 0
		tail := 1.0
		for x := -lim; x <= lim; x++ {
			p := math.Exp(-float64(x*x)/(2*s2)) / norm
			tail -= p
			e := p * n
			if e < 5 {
				continue
			}
			chi += (float64(counts[x]) - e) * (float64(counts[x]) - e) / e
			bins++
		}
		df := float64(bins - 1)
		// The 0.9999 quantile of χ²(df) is below df + 3.72·√(2df) + 12 (a loose
		// Wilson–Hilferty bound for the df here).
		if chi > df+3.72*math.Sqrt(2*df)+12 {
			t.Errorf("σ = %g: χ² = %.1f over %d bins: not the discrete Gaussian", sigma, chi, bins)
		}
		mean, variance := sum/n, sumSq/n-(sum/n)*(sum/n)
		// For σ ≥ 1 the discrete Gaussian's variance is σ² to within 1e-7 relative.
		if math.Abs(mean) > 5*sigma/math.Sqrt(n) || (sigma >= 1 && math.Abs(variance/s2-1) > 0.02) {
			t.Errorf("σ = %g: mean %.4f, variance %.3f (σ² = %.3f)", sigma, mean, variance, s2)
		}
		t.Logf("σ = %g: χ² = %.1f over %d bins, mean %.4f, variance %.3f", sigma, chi, bins, mean, variance)
	}
}

func TestDiscreteGaussianRefuses(t *testing.T) {
	for _, s2 := range []float64{0, -1, math.NaN(), math.Inf(1), 1 << 61} {
		if _, err := NewDiscreteGaussian(s2, SecureRand()); err == nil {
			t.Errorf("σ² = %g accepted", s2)
		}
	}
}

func TestDiscreteGaussianLarge(t *testing.T) {
	// σ in the thousands, as distributed DP uses it: still exact, mean 0, variance σ².
	g, _ := NewDiscreteGaussian(3000*3000, rand.New(rand.NewPCG(9, 9)))
	const n = 50_000
	sum, sumSq := 0.0, 0.0
	for range n {
		x := float64(g.Sample())
		sum += x
		sumSq += x * x
	}
	mean, sd := sum/n, math.Sqrt(sumSq/n-(sum/n)*(sum/n))
	if math.Abs(mean) > 5*3000/math.Sqrt(n) || math.Abs(sd/3000-1) > 0.02 {
		t.Fatalf("mean %.1f, sd %.1f, want 0 and 3000", mean, sd)
	}
}

func BenchmarkDiscreteGaussian(b *testing.B) {
	for _, sigma := range []float64{10, 1e4, 5e7} { // 5e7: distributed DP's agents at 32 bits
		g, _ := NewDiscreteGaussian(sigma*sigma, SecureRand())
		b.Run(fmtFloat(sigma), func(b *testing.B) {
			for b.Loop() {
				g.Sample()
			}
		})
	}
}

func fmtFloat(f float64) string { return "sigma=" + strconv.FormatFloat(f, 'g', -1, 64) }
