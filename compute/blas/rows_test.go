package blas

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestCopyAndAddRows(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct{ rows, lead, width, rowLen int }{
		{1, 0, 1, 1}, {14, 2, 12, 14}, {14, 0, 14, 14}, {28, 2, 26, 28}, {3, 5, 33, 40}, {4, 0, 16, 16}, {2, 1, 0, 3},
	} {
		ldd, lds := c.rowLen+3, c.width+5
		src := randSlice(r, c.rows*lds)
		dst := randSlice(r, c.rows*ldd)
		want := slices.Clone(dst)
		for i := range c.rows {
			for j := range c.rowLen {
				want[i*ldd+j] = 0
				if j >= c.lead && j < c.lead+c.width {
					want[i*ldd+j] = src[i*lds+j-c.lead]
				}
			}
		}
		dstGo := slices.Clone(dst)
		CopyRows(dst, ldd, src, lds, c.rows, c.lead, c.width, c.rowLen)
		CopyRowsRef(dstGo, ldd, src, lds, c.rows, c.lead, c.width, c.rowLen)
		if !slices.Equal(dst, want) || !slices.Equal(dstGo, want) {
			t.Errorf("CopyRows %+v: got %v and %v (Go), want %v", c, dst, dstGo, want)
		}
		for i := range c.rows {
			for j := range c.width {
				want[i*ldd+j] += src[i*lds+j]
			}
		}
		dstGo = slices.Clone(dst)
		AddRows(dst, ldd, src, lds, c.rows, c.width)
		AddRowsRef(dstGo, ldd, src, lds, c.rows, c.width)
		if !slices.Equal(dst, want) || !slices.Equal(dstGo, want) {
			t.Errorf("AddRows %+v: got %v and %v (Go), want %v", c, dst, dstGo, want)
		}
	}
}

// maxPoolRef is the obvious definition MaxPool2x2 is checked against.
func maxPoolRef(x []float32, w int, oh, ow int, base, sentinel int32, relu bool) ([]float32, []int32) {
	y := make([]float32, oh*ow)
	arg := make([]int32, oh*ow)
	for oy := range oh {
		for ox := range ow {
			var bv float32
			var best int32 = -1
			for _, d := range [4][2]int{{0, 0}, {0, 1}, {1, 0}, {1, 1}} {
				i := (2*oy+d[0])*w + 2*ox + d[1]
				v := x[i]
				if best < 0 || v > bv || (math.IsNaN(float64(v)) && !math.IsNaN(float64(bv))) {
					bv, best = v, int32(i)
				}
			}
			best += base
			if relu && !(bv > 0) && !math.IsNaN(float64(bv)) {
				bv, best = 0, sentinel
			}
			y[oy*ow+ox], arg[oy*ow+ox] = bv, best
		}
	}
	return y, arg
}

func TestMaxPool2x2(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, c := range []struct{ h, w int }{{28, 28}, {14, 14}, {2, 2}, {6, 70}, {5, 9}, {4, 33}} {
		for _, relu := range []bool{false, true} {
			x := randSlice(r, c.h*c.w)
			x[3] = float32(math.NaN())
			x[len(x)-1] = x[len(x)-2] // a tie
			oh, ow := c.h/2, c.w/2
			y := make([]float32, oh*ow)
			arg := make([]int32, oh*ow)
			MaxPool2x2(x, c.w, y, arg, oh, ow, 100, -7, relu)
			yGo := make([]float32, oh*ow)
			argGo := make([]int32, oh*ow)
			MaxPool2x2Ref(x, c.w, yGo, argGo, oh, ow, 100, -7, relu)
			wy, warg := maxPoolRef(x, c.w, oh, ow, 100, -7, relu)
			for i := range wy {
				if same := yGo[i] == wy[i] || math.IsNaN(float64(yGo[i])) && math.IsNaN(float64(wy[i])); !same || argGo[i] != warg[i] {
					t.Fatalf("Go %dx%d relu=%v: output %d = (%v, %d), want (%v, %d)", c.h, c.w, relu, i, yGo[i], argGo[i], wy[i], warg[i])
				}
				same := y[i] == wy[i] || math.IsNaN(float64(y[i])) && math.IsNaN(float64(wy[i]))
				if !same || arg[i] != warg[i] {
					t.Fatalf("%dx%d relu=%v: output %d = (%v, %d), want (%v, %d)", c.h, c.w, relu, i, y[i], arg[i], wy[i], warg[i])
				}
			}
		}
	}
}

func TestIm2col(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	for _, g := range []struct{ c, h, w, k, pad int }{{1, 28, 28, 5, 2}, {32, 14, 14, 5, 2}, {64, 14, 14, 5, 4}, {3, 7, 9, 3, 0}, {2, 20, 40, 3, 1}, {2, 4, 4, 5, 4}, {1, 3, 3, 3, 2}} {
		oh, ow := g.h+2*g.pad-g.k+1, g.w+2*g.pad-g.k+1
		x := randSlice(r, g.c*g.h*g.w)
		col := randSlice(r, g.c*g.k*g.k*oh*ow)
		if !Im2col(x, col, g.c, g.h, g.w, g.k, g.pad) {
			if hasAVX512 {
				t.Fatalf("%+v: no fast path", g)
			}
			continue
		}
		for ci := range g.c {
			for ky := range g.k {
				for kx := range g.k {
					for oy := range oh {
						for ox := range ow {
							iy, ix := oy-g.pad+ky, ox-g.pad+kx
							var want float32
							if iy >= 0 && iy < g.h && ix >= 0 && ix < g.w {
								want = x[(ci*g.h+iy)*g.w+ix]
							}
							got := col[(((ci*g.k+ky)*g.k+kx)*oh+oy)*ow+ox]
							if got != want {
								t.Fatalf("%+v: col[%d,%d,%d][%d,%d] = %v, want %v", g, ci, ky, kx, oy, ox, got, want)
							}
						}
					}
				}
			}
		}
	}
}

func TestMaxPool2x2Back(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, c := range []struct{ h, w int }{{28, 28}, {14, 14}, {2, 2}, {6, 70}, {5, 9}, {4, 33}, {3, 2}} {
		for _, relu := range []bool{false, true} {
			x := randSlice(r, c.h*c.w)
			oh, ow := c.h/2, c.w/2
			y := make([]float32, oh*ow)
			arg := make([]int32, oh*ow)
			const base, sentinel = 1000, -5
			MaxPool2x2(x, c.w, y, arg, oh, ow, base, sentinel, relu)
			dy := randSlice(r, oh*ow)
			dx := randSlice(r, c.h*c.w) // garbage that must be overwritten
			want := make([]float32, c.h*c.w)
			for i, a := range arg {
				if a != sentinel {
					want[a-base] += dy[i]
				}
			}
			MaxPool2x2Back(dy, arg, dx, c.w, oh, ow, base)
			ref := randSlice(r, c.h*c.w)
			MaxPool2x2BackRef(dy, arg, ref, c.w, oh, ow, base)
			for i := range want {
				if dx[i] != want[i] || ref[i] != want[i] {
					t.Fatalf("%dx%d relu=%v: dx[%d] = %v (ref %v), want %v", c.h, c.w, relu, i, dx[i], ref[i], want[i])
				}
			}
		}
	}
}
