package blas

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestTranspose(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, c := range []struct{ rows, cols int }{{1, 1}, {16, 16}, {800, 64}, {17, 33}, {5, 100}, {64, 15}} {
		for _, ab := range [][2]float32{{1, 0}, {-0.1, 1}, {2, 0.5}} {
			lds, ldd := c.cols+1, c.rows+2
			src := randSlice(r, c.rows*lds)
			dst := randSlice(r, c.cols*ldd)
			want := make([]float32, len(dst))
			copy(want, dst)
			for i := range c.rows {
				for j := range c.cols {
					want[j*ldd+i] = ab[0]*src[i*lds+j] + ab[1]*dst[j*ldd+i]
				}
			}
			ref := make([]float32, len(dst))
			copy(ref, dst)
			Transpose(c.rows, c.cols, ab[0], src, lds, ab[1], dst, ldd)
			TransposeRef(c.rows, c.cols, ab[0], src, lds, ab[1], ref, ldd)
			for i := range want {
				if math.Abs(float64(dst[i]-want[i])) > 1e-6 || math.Abs(float64(ref[i]-want[i])) > 1e-6 {
					t.Fatalf("%+v alpha,beta=%v: element %d = %v (ref %v), want %v", c, ab, i, dst[i], ref[i], want[i])
				}
			}
		}
	}
}
