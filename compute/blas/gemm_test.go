package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s
}

func widen(s []float32) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = float64(v)
	}
	return d
}

type shape struct {
	transA, transB bool
	m, n, k        int
	pad            int // extra leading-dimension padding
	alpha, beta    float32
}

func shapes() []shape {
	var out []shape
	dims := [][3]int{
		{1, 1, 1}, {1, 10, 784}, {10, 200, 784}, {13, 33, 7}, {12, 32, 256}, {12, 32, 257},
		{25, 70, 300}, {64, 196, 800}, {200, 784, 10}, {149, 3100, 3}, {3, 5, 0}, {47, 48, 129},
	}
	for i, d := range dims {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				s := shape{tA, tB, d[0], d[1], d[2], i % 3, 1, 0}
				switch i % 4 {
				case 1:
					s.alpha, s.beta = -0.5, 1
				case 2:
					s.alpha, s.beta = 2, 0.25
				case 3:
					s.alpha, s.beta = 0, 0.5
				}
				out = append(out, s)
			}
		}
	}
	return out
}

func (s shape) String() string {
	t := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s_%dx%dx%d_pad%d_a%g_b%g", t(s.transA), t(s.transB), s.m, s.n, s.k, s.pad, s.alpha, s.beta)
}

// TestGemmMatchesReference checks every micro-kernel, with one and two threads, against the
// float64 reference on random inputs, including tiles at every edge, K beyond one block,
// strided leading dimensions and beta = 0 over a C full of NaNs.
func TestGemmMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, kern := range allKernelNames() {
		for _, threads := range []int{1, 2} {
			ctx, err := New(WithKernel(kern), WithThreads(threads))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range shapes() {
				t.Run(fmt.Sprintf("%s/t%d/%s", kern, threads, s), func(t *testing.T) {
					ar, ac := s.m, s.k
					if s.transA {
						ar, ac = s.k, s.m
					}
					br, bc := s.k, s.n
					if s.transB {
						br, bc = s.n, s.k
					}
					lda, ldb, ldc := ac+s.pad, bc+s.pad, s.n+s.pad
					a := randSlice(r, max(ar*lda, 1))
					b := randSlice(r, max(br*ldb, 1))
					c := randSlice(r, s.m*ldc)
					if s.beta == 0 {
						for i := range c {
							c[i] = float32(math.NaN())
						}
					}
					want := widen(c)
					Ref(s.transA, s.transB, s.m, s.n, s.k, float64(s.alpha), widen(a), lda, widen(b), ldb, float64(s.beta), want, ldc)
					ctx.Gemm(s.transA, s.transB, s.m, s.n, s.k, s.alpha, a, lda, b, ldb, s.beta, c, ldc)
					tol := 1e-6 * float64(s.k+2) * 4
					for i := range s.m {
						for j := range s.n {
							g, w := float64(c[i*ldc+j]), want[i*ldc+j]
							if math.IsNaN(g) || math.Abs(g-w) > tol*(1+math.Abs(w)) {
								t.Fatalf("C[%d][%d] = %g, want %g", i, j, g, w)
							}
						}
						for j := s.n; j < ldc; j++ { // padding untouched
							if g, w := float64(c[i*ldc+j]), want[i*ldc+j]; g != w && !(math.IsNaN(g) && math.IsNaN(w)) {
								t.Fatalf("padding C[%d][%d] changed to %g", i, j, g)
							}
						}
					}
				})
			}
		}
	}
}

func TestGemmArgumentChecks(t *testing.T) {
	ctx, err := New()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		call func()
	}{
		{"short A", func() {
			ctx.Gemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		}},
		{"small lda", func() {
			ctx.Gemm(false, false, 2, 2, 2, 1, make([]float32, 4), 1, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		}},
		{"short C", func() {
			ctx.Gemm(false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
		}},
		{"negative", func() { ctx.Gemm(false, false, -1, 2, 2, 1, nil, 2, nil, 2, 0, nil, 2) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tc.call()
		})
	}
}

func TestUnknownKernel(t *testing.T) {
	if _, err := New(WithKernel("nope")); err == nil {
		t.Fatal("want error for unknown kernel")
	}
	if _, err := New(WithThreads(0)); err == nil {
		t.Fatal("want error for zero threads")
	}
}

func TestGemmAllocatesNothing(t *testing.T) {
	ctx, _ := New()
	r := rand.New(rand.NewPCG(3, 4))
	a, b, c := randSlice(r, 64*800), randSlice(r, 800*196), make([]float32, 64*196)
	ctx.Gemm(false, false, 64, 196, 800, 1, a, 800, b, 196, 0, c, 196)
	if n := testing.AllocsPerRun(10, func() {
		ctx.Gemm(false, false, 64, 196, 800, 1, a, 800, b, 196, 0, c, 196)
		ctx.Gemm(true, false, 800, 196, 64, 1, a, 800, c, 196, 0, b, 196)
	}); n != 0 {
		t.Fatalf("Gemm allocated %v times per run", n)
	}
}

// allKernelNames lists every kernel set and every single kernel this CPU can run.
func allKernelNames() []string {
	var names []string
	for _, set := range kernelTable {
		names = append(names, set.name)
		if len(set.kerns) > 1 {
			for _, k := range set.kerns {
				names = append(names, k.name)
			}
		}
	}
	return names
}

// TestKernelsAgreeBitwise checks that the kernels of a set give the same bits for the same
// product, whichever the planner picks and in whichever orientation: each sums over k in
// order with fused multiply-adds, then applies alpha and beta the same way. Models rely on
// it: an answer does not depend on the batch it was computed in.
func TestKernelsAgreeBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, set := range kernelTable {
		if len(set.kerns) < 2 {
			continue
		}
		for _, s := range []struct{ m, n, k int }{{1, 200, 784}, {2, 10, 200}, {5, 70, 37}, {13, 33, 300}, {64, 200, 784}} {
			for _, transB := range []bool{false, true} {
				a := randSlice(r, s.m*s.k)
				b := randSlice(r, s.k*s.n)
				c0 := randSlice(r, s.m*s.n)
				ldb := s.n
				if transB {
					ldb = s.k
				}
				var first []float32
				for _, kern := range set.kerns {
					ctx, err := New(WithKernel(kern.name))
					if err != nil {
						t.Fatal(err)
					}
					c := append([]float32(nil), c0...)
					ctx.Gemm(false, transB, s.m, s.n, s.k, 1, a, s.k, b, ldb, 1, c, s.n)
					if first == nil {
						first = c
						continue
					}
					for i := range c {
						if math.Float32bits(c[i]) != math.Float32bits(first[i]) {
							t.Fatalf("%s, %dx%dx%d transB=%v: C[%d] = %v, %s gave %v", kern.name, s.m, s.n, s.k, transB, i, c[i], set.kerns[0].name, first[i])
						}
					}
				}
			}
		}
	}
}
