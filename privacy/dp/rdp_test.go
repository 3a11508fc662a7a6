package dp

import (
	"math"
	"testing"
)

// tfOrders are TensorFlow Privacy's test orders.
func tfOrders() []float64 {
	o := []float64{1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5}
	for a := 5; a < 64; a++ {
		o = append(o, float64(a))
	}
	return append(o, 128, 256, 512)
}

// TestPublishedValues reproduces the accountants' published test values
// (../shared/notes/references.md) to 1e-9 relative error.
func TestPublishedValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		q      float64
		sigma  float64
		steps  int
		delta  float64
		orders []float64
		want   float64
	}{
		{"Opacus", 0.04, 1.5, 2250, 1e-5, DefaultOrders(), 7.32911117143},
		{"TF Privacy, MNIST", 150.0 / 60000, 1.3, 6000, 1e-5, tfOrders(), 0.7242234026109595},
		{"TF Privacy, 1e-7", 100.0 / 100000, 1.0, 30000, 1e-7, tfOrders(), 1.4154988495444842},
	} {
		eps, order, err := SampledGaussianEpsilon(tc.q, tc.sigma, tc.steps, tc.delta, tc.orders)
		if err != nil {
			t.Fatal(err)
		}
		if rel := math.Abs(eps-tc.want) / tc.want; rel > 1e-9 {
			t.Errorf("%s: ε = %.15g at order %v, want %.15g (relative error %.2g)", tc.name, eps, order, tc.want, rel)
		}
	}
}

// TestRDPClosedForms checks the RDP against formulas that hold exactly: without
// sampling the Gaussian mechanism's RDP is α/(2σ²); with q = 0 it is 0; at order 2 the
// sampled Gaussian's A₂ = 1 + q²(e^(1/σ²) − 1) (Mironov et al. 2019, Section 3.3).
func TestRDPClosedForms(t *testing.T) {
	for _, tc := range []struct{ q, sigma, alpha float64 }{
		{1, 1.1, 2}, {1, 0.7, 3.5}, {0.01, 1.5, 2}, {0.3, 0.8, 2}, {0, 1, 5.5},
	} {
		r, err := RDP(tc.q, tc.sigma, 1, []float64{tc.alpha})
		if err != nil {
			t.Fatal(err)
		}
		var want float64
		switch {
		case tc.q == 1:
			want = tc.alpha / (2 * tc.sigma * tc.sigma)
		case tc.q == 0:
			want = 0
		default:
			want = math.Log1p(tc.q * tc.q * math.Expm1(1/(tc.sigma*tc.sigma)))
		}
		if math.Abs(r[0]-want) > 1e-12*math.Max(1, want) {
			t.Errorf("q=%v σ=%v α=%v: RDP %.15g, want %.15g", tc.q, tc.sigma, tc.alpha, r[0], want)
		}
	}
}

// TestFractionalOrdersAgreeWithIntegers checks the fractional series against the
// integer formula at orders where both apply (α = 3 approached from the series' side)
// and that RDP grows with the order.
func TestFractionalOrdersAgreeWithIntegers(t *testing.T) {
	for _, tc := range []struct{ q, sigma float64 }{{0.01, 1.1}, {0.1, 2}, {0.5, 0.9}} {
		for _, a := range []float64{2, 3, 7, 20} {
			frac, err := logAFrac(tc.q, tc.sigma, a)
			if err != nil {
				t.Fatal(err)
			}
			exact := logAInt(tc.q, tc.sigma, int(a))
			if math.Abs(frac-exact) > 1e-9*math.Max(1, math.Abs(exact)) {
				t.Errorf("q=%v σ=%v α=%v: series %.15g, binomial %.15g", tc.q, tc.sigma, a, frac, exact)
			}
		}
		r, _ := RDP(tc.q, tc.sigma, 1, DefaultOrders())
		for i := 1; i < len(r); i++ {
			if r[i] < r[i-1]*(1-1e-12) {
				t.Errorf("q=%v σ=%v: RDP falls from %v to %v between orders", tc.q, tc.sigma, r[i-1], r[i])
			}
		}
	}
}

func TestNoiseMultiplierCalibration(t *testing.T) {
	for _, target := range []float64{0.5, 1, 3, 8} {
		sigma, err := NoiseMultiplier(target, 0.01, 1000, 1e-5, nil)
		if err != nil {
			t.Fatal(err)
		}
		eps, _, _ := SampledGaussianEpsilon(0.01, sigma, 1000, 1e-5, nil)
		below, _, _ := SampledGaussianEpsilon(0.01, sigma*(1-1e-4), 1000, 1e-5, nil)
		if eps > target || below <= target {
			t.Errorf("target %v: σ = %v gives ε %v (and %v just below)", target, sigma, eps, below)
		}
	}
}

func TestAccountantErrors(t *testing.T) {
	if _, _, err := SampledGaussianEpsilon(1.5, 1, 1, 1e-5, nil); err == nil {
		t.Error("q > 1 accepted")
	}
	if _, _, err := SampledGaussianEpsilon(0.1, -1, 1, 1e-5, nil); err == nil {
		t.Error("σ < 0 accepted")
	}
	if _, _, err := SampledGaussianEpsilon(0.1, 1, 1, 0, nil); err == nil {
		t.Error("δ = 0 accepted")
	}
	if _, _, err := SampledGaussianEpsilon(0.1, 1, 1, 1e-5, []float64{0.5}); err == nil {
		t.Error("order 0.5 accepted")
	}
	if eps, _, err := SampledGaussianEpsilon(0.1, 0, 1, 1e-5, nil); err != nil || !math.IsInf(eps, 1) {
		t.Errorf("σ = 0: ε = %v, %v; want +Inf", eps, err)
	}
	if eps, _, err := SampledGaussianEpsilon(0.1, 1, 0, 1e-5, nil); err != nil || eps != 0 {
		t.Errorf("no steps: ε = %v, %v; want 0", eps, err)
	}
}
