package compute

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkLayers times the non-GEMM layer passes of the CNN at batch 10.
func BenchmarkLayers(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	e, err := newEngine[float32](1, "")
	if err != nil {
		b.Fatal(err)
	}
	const n = 10
	x := make([]float32, n*32*28*28)
	for i := range x {
		x[i] = r.Float32() - 0.5
	}
	pool := &maxPool[float32]{e: e, c: 32, h: 28, w: 28, oh: 14, ow: 14, k: 2, stride: 2, relu: true}
	b.Run("maxpool2x2-relu-fwd", func(b *testing.B) {
		for b.Loop() {
			pool.forward(x, n, true)
		}
	})
	dy := make([]float32, n*32*14*14)
	b.Run("maxpool2x2-relu-bwd", func(b *testing.B) {
		for b.Loop() {
			pool.backward(dy, n, true, 0)
		}
	})
	col := make([]float32, 800*196)
	in := x[:32*14*14]
	b.Run("im2col-conv2", func(b *testing.B) {
		for b.Loop() {
			e.im2col(in, col, 32, 14, 14, 5, 1, 2, 14, 14)
		}
	})
	dx := make([]float32, 32*14*14)
	b.Run("col2im-conv2", func(b *testing.B) {
		for b.Loop() {
			e.col2im(col, dx, 32, 14, 14, 5, 1, 2, 14, 14)
		}
	})
	col1 := make([]float32, 25*784)
	b.Run("im2col-conv1", func(b *testing.B) {
		for b.Loop() {
			e.im2col(x[:784], col1, 1, 28, 28, 5, 1, 2, 28, 28)
		}
	})
}
