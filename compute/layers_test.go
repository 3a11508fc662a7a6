package compute

import (
	"math"
	"testing"
)

func TestMaxPoolPropagatesNaNAndFusesReLU(t *testing.T) {
	nan := float32(math.NaN())
	x := []float32{
		1, nan, -3, -4,
		2, 0.5, -1, -2,
	}
	e, err := newEngine[float32](1, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, relu := range []bool{false, true} {
		for _, k := range []struct{ k, s int }{{2, 2}, {2, 1}} {
			l := &maxPool[float32]{e: e, c: 1, h: 2, w: 4, oh: 1, ow: (4-k.k)/k.s + 1, k: k.k, stride: k.s, relu: relu}
			y := l.forward(x, 1, true)
			if !math.IsNaN(float64(y[0])) {
				t.Errorf("relu=%v k=%v: first window with a NaN gave %v", relu, k, y[0])
			}
			last := y[len(y)-1]
			if relu && last != 0 {
				t.Errorf("relu=%v k=%v: all-negative window gave %v, want 0", relu, k, last)
			}
			if !relu && last != -1 {
				t.Errorf("relu=%v k=%v: all-negative window gave %v, want -1", relu, k, last)
			}
			dy := make([]float32, len(y))
			for i := range dy {
				dy[i] = 1
			}
			dx := l.backward(dy, 1, true, 0)
			var sum float32
			for _, v := range dx {
				sum += v
			}
			want := float32(len(y))
			if relu {
				want-- // the ReLU'd window passes no gradient
			}
			if sum != want {
				t.Errorf("relu=%v k=%v: gradient mass %v, want %v", relu, k, sum, want)
			}
		}
	}
}

// TestTanhForward checks the tanh layer's values against math.Tanh, saturation and NaN
// included; its gradient is checked by TestGradientsMatchFiniteDifferences.
func TestTanhForward(t *testing.T) {
	m, err := New[float32](Spec{Input: []int{6}, Classes: 6, Layers: []LayerSpec{{Type: LayerTanh}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{0, 0.5, -2, 30, -30, float32(math.NaN())}
	y := m.Forward(x, 1, false)
	for i, v := range x {
		want := float32(math.Tanh(float64(v)))
		if y[i] != want && !(math.IsNaN(float64(want)) && math.IsNaN(float64(y[i]))) {
			t.Errorf("tanh(%v) = %v, want %v", v, y[i], want)
		}
	}
}
