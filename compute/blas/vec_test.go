package blas

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

func TestAxpy(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 63, 64, 65, 1000, 4096} {
		x, y := randSlice(r, n), randSlice(r, n)
		want := make([]float32, n)
		for i := range want {
			want[i] = y[i] + -0.3*x[i]
		}
		Axpy(-0.3, x, y)
		for i := range y {
			if d := y[i] - want[i]; d > 1e-6 || d < -1e-6 {
				t.Fatalf("n=%d: y[%d] = %g, want %g", n, i, y[i], want[i])
			}
		}
	}
}

func BenchmarkAxpy(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{199210, 1663370} {
		x, y := randSlice(r, n), randSlice(r, n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(12 * n))
			for b.Loop() {
				Axpy(1e-9, x, y)
			}
		})
	}
}

func TestPeakGFLOPS(t *testing.T) {
	g := PeakGFLOPS(20*time.Millisecond, 2)
	if _, f := peakLoop(); f > 0 && !(g > 1) {
		t.Fatalf("peak = %v GFLOP/s", g)
	}
}

func TestRelu(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	for _, n := range []int{1, 15, 16, 17, 200, 2000} {
		x := randSlice(r, n)
		x[0] = float32(math.NaN())
		dy := randSlice(r, n)
		y, yRef := make([]float32, n), make([]float32, n)
		Relu(x, y)
		ReluRef(x, yRef)
		dx, dxRef := make([]float32, n), make([]float32, n)
		ReluGrad(y, dy, dx)
		ReluGradRef(yRef, dy, dxRef)
		for i := range x {
			if !(y[i] == yRef[i] || math.IsNaN(float64(y[i])) && math.IsNaN(float64(yRef[i]))) || dx[i] != dxRef[i] {
				t.Fatalf("n=%d i=%d: relu %v/%v grad %v/%v", n, i, y[i], yRef[i], dx[i], dxRef[i])
			}
		}
		if !math.IsNaN(float64(y[0])) {
			t.Fatalf("relu(NaN) = %v, want NaN", y[0])
		}
	}
}
