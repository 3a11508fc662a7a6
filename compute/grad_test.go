package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// gradSpecs are small networks that together put every layer type at a position where
// both its parameter gradients and its input gradient are exercised.
var gradSpecs = []Spec{
	{Name: "dense", Input: []int{7}, Classes: 3, Layers: []LayerSpec{
		{Type: LayerDense, Out: 5}, {Type: LayerReLU}, {Type: LayerDense, Out: 3}}},
	{Name: "conv-pool", Input: []int{2, 9, 8}, Classes: 4, Layers: []LayerSpec{
		{Type: LayerConv2D, Out: 3, Kernel: 3, Pad: 1}, {Type: LayerReLU},
		{Type: LayerConv2D, Out: 4, Kernel: 3, Stride: 2, Pad: 2},
		{Type: LayerMaxPool, Kernel: 2},
		{Type: LayerFlatten}, {Type: LayerDense, Out: 6}, {Type: LayerDropout, P: 0.3}, {Type: LayerDense, Out: 4}}},
	{Name: "strided-pool", Input: []int{1, 11, 11}, Classes: 2, Layers: []LayerSpec{
		{Type: LayerConv2D, Out: 2, Kernel: 5, Stride: 3}, {Type: LayerMaxPool, Kernel: 2, Stride: 1},
		{Type: LayerConv2D, Out: 3, Kernel: 1}, {Type: LayerDense, Out: 2}}},
	{Name: "relu-pool3", Input: []int{2, 9, 9}, Classes: 3, Layers: []LayerSpec{
		{Type: LayerConv2D, Out: 3, Kernel: 3, Pad: 1}, {Type: LayerReLU}, {Type: LayerMaxPool, Kernel: 3, Stride: 2},
		{Type: LayerDense, Out: 3}}},
	{Name: "tanh-cnn", Input: []int{1, 10, 10}, Classes: 3, Layers: []LayerSpec{
		{Type: LayerConv2D, Out: 3, Kernel: 4, Stride: 2, Pad: 1}, {Type: LayerTanh}, {Type: LayerMaxPool, Kernel: 2, Stride: 1},
		{Type: LayerFlatten}, {Type: LayerDense, Out: 5}, {Type: LayerTanh}, {Type: LayerDense, Out: 3}}},
	{Name: "mini-cnn", Input: []int{1, 12, 12}, Classes: 10, Layers: []LayerSpec{
		{Type: LayerConv2D, Out: 4, Kernel: 5, Pad: 2}, {Type: LayerReLU}, {Type: LayerMaxPool, Kernel: 2},
		{Type: LayerConv2D, Out: 6, Kernel: 5, Pad: 2}, {Type: LayerReLU}, {Type: LayerMaxPool, Kernel: 2},
		{Type: LayerFlatten}, {Type: LayerDense, Out: 16}, {Type: LayerReLU}, {Type: LayerDense, Out: 10}}},
}

func randInput(r *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	return x
}

// reseedDropout makes every forward draw the same dropout masks, so the loss is a
// deterministic function of the parameters.
func reseedDropout(m *Model[float64]) {
	for i, l := range m.layers {
		if d, ok := l.(*dropout[float64]); ok {
			d.rng = rand.New(rand.NewPCG(99, uint64(i)))
		}
	}
}

func lossOf(m *Model[float64], x []float64, y []int32, n int) float64 {
	reseedDropout(m)
	m.Forward(x, n, true)
	l, _ := m.Loss(y)
	return l
}

// TestGradientsMatchFiniteDifferences checks every layer's backward pass, in float64,
// against central differences of the loss: the gradient of every parameter element and
// of the input.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	const eps, tol = 1e-6, 1e-6
	for si, spec := range gradSpecs {
		t.Run(spec.Name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(si), 42))
			m, err := New[float64](spec, Options{Seed: uint64(si)})
			if err != nil {
				t.Fatal(err)
			}
			const n = 3
			x := randInput(r, n*m.InputSize())
			y := make([]int32, n)
			for i := range y {
				y[i] = int32(r.IntN(spec.Classes))
			}
			y[1] = -1 // an unlabelled sample contributes nothing
			lossOf(m, x, y, n)
			m.Backward()
			grads := append([]float64(nil), m.Grads()...)
			check := func(what string, v []float64, i int, analytic float64) {
				orig := v[i]
				v[i] = orig + eps
				lp := lossOf(m, x, y, n)
				v[i] = orig - eps
				lm := lossOf(m, x, y, n)
				v[i] = orig
				num := (lp - lm) / (2 * eps)
				if d := math.Abs(num - analytic); d > tol*(1+math.Abs(num)) {
					t.Errorf("%s: analytic %.9g, numeric %.9g", what, analytic, num)
				}
			}
			for _, p := range m.Params() {
				for i := range p.Value {
					check(fmt.Sprintf("%s[%d]", p.Name, i), p.Value, i, grads[p.Offset+i])
				}
			}
			// Input gradient through the first layer.
			lossOf(m, x, y, n)
			g := m.dlogits
			for i := len(m.layers) - 1; i >= 0; i-- {
				g = m.layers[i].backward(g, n, true, 0)
			}
			dx := append([]float64(nil), g...)
			for i := range x {
				check(fmt.Sprintf("input[%d]", i), x, i, dx[i])
			}
		})
	}
}

// TestFloat32MatchesFloat64 runs the float32 model (assembly kernels) and the float64
// model (reference loops) from the same parameters and compares logits and gradients.
func TestFloat32MatchesFloat64(t *testing.T) {
	for _, name := range BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			spec, _ := BuiltinSpec(name)
			m32, err := New[float32](spec, Options{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			m64, err := New[float64](spec, Options{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range m32.Values() {
				m64.Values()[i] = float64(v)
			}
			r := rand.New(rand.NewPCG(3, 3))
			const n = 13
			x64 := make([]float64, n*m32.InputSize())
			x32 := make([]float32, len(x64))
			for i := range x64 {
				x32[i] = r.Float32()
				x64[i] = float64(x32[i])
			}
			y := make([]int32, n)
			for i := range y {
				y[i] = int32(r.IntN(10))
			}
			z32 := m32.Forward(x32, n, true)
			z64 := m64.Forward(x64, n, true)
			for i := range z64 {
				if d := math.Abs(float64(z32[i]) - z64[i]); d > 1e-4*(1+math.Abs(z64[i])) {
					t.Fatalf("logit %d: float32 %g, float64 %g", i, z32[i], z64[i])
				}
			}
			l32, _ := m32.Loss(y)
			l64, _ := m64.Loss(y)
			if math.Abs(l32-l64) > 1e-4 {
				t.Fatalf("loss: float32 %g, float64 %g", l32, l64)
			}
			m32.Backward()
			m64.Backward()
			var maxAbs float64
			for _, g := range m64.Grads() {
				maxAbs = max(maxAbs, math.Abs(g))
			}
			for i, g := range m64.Grads() {
				if d := math.Abs(float64(m32.Grads()[i]) - g); d > 1e-4*maxAbs {
					t.Fatalf("grad %d: float32 %g, float64 %g (max |g| %g)", i, m32.Grads()[i], g, maxAbs)
				}
			}
		})
	}
}
