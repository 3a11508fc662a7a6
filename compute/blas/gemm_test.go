package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
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
	slack          int // floats after A's and B's last row (NaN, like their padding)
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
				s := shape{tA, tB, d[0], d[1], d[2], i % 3, 1, 0, 64 * (i % 2)}
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
	return fmt.Sprintf("%s%s_%dx%dx%d_pad%d_a%g_b%g_slack%d", t(s.transA), t(s.transB), s.m, s.n, s.k, s.pad, s.alpha, s.beta, s.slack)
}

// nanPadded sets the padding columns of the rows×cols matrix m (leading dimension ld) to
// NaN and appends slack NaNs.
func nanPadded(m []float32, rows, cols, ld, slack int) []float32 {
	nan := float32(math.NaN())
	for i := range rows {
		for j := cols; j < ld; j++ {
			m[i*ld+j] = nan
		}
	}
	for range slack {
		m = append(m, nan)
	}
	return m
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
					// Padding and slack are NaN: Gemm may read them (a ragged edge in
					// place) but must never let them into C.
					a := nanPadded(randSlice(r, max(ar*lda, 1)), ar, ac, lda, s.slack)
					b := nanPadded(randSlice(r, max(br*ldb, 1)), br, bc, ldb, s.slack)
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

// TestRaggedEdgesReadInPlace: with room after B's last row, the ragged right edge of an
// unpacked B is read where it is, not copied into the edge panel, and so is a single
// ragged row of A; without that room the edge is copied (a full-width read would leave
// the slice). The products are checked against the reference in both cases.
func TestRaggedEdgesReadInPlace(t *testing.T) {
	const m, n, k = 1, 107, 37 // 107 leaves a ragged edge for every kernel width, and A unpacked
	r := rand.New(rand.NewPCG(5, 6))
	for _, name := range allKernelNames() {
		for _, slack := range []int{0, 64} {
			t.Run(fmt.Sprintf("%s/slack%d", name, slack), func(t *testing.T) {
				c, err := New(WithKernel(name))
				if err != nil {
					t.Fatal(err)
				}
				kern := &c.set.kerns[0]
				if kern.packsA(matView(nil, false, m, k, k), matView(nil, false, k, n, n)) {
					t.Skip("this kernel packs A at this width")
				}
				a := randSlice(r, m*k)
				b := nanPadded(randSlice(r, k*n), k, n, n, slack)
				got := make([]float32, m*n)
				const sentinel = 12345
				c.edgeA, c.edgeB = slices.Repeat([]float32{sentinel}, k*kern.mr), slices.Repeat([]float32{sentinel}, k*kern.nr)
				c.run(kern, 1, matView(a, false, m, k, k), matView(b, false, k, n, n), 0, view{got, 0, n, 1, m, n})
				want := make([]float64, m*n)
				Ref(false, false, m, n, k, 1, widen(a), k, widen(b[:k*n]), n, 0, want, n)
				for j := range n {
					if g := float64(got[j]); math.IsNaN(g) || math.Abs(g-want[j]) > 1e-4 {
						t.Fatalf("C[0][%d] = %g, want %g", j, g, want[j])
					}
				}
				untouched := func(s []float32) bool {
					return !slices.ContainsFunc(s, func(v float32) bool { return v != sentinel })
				}
				if kern.mr > 1 && !untouched(c.edgeA) {
					t.Error("A's single ragged row was copied into the edge panel")
				}
				if inPlace := slack >= kern.nr; untouched(c.edgeB) != inPlace {
					t.Errorf("edge panel of B untouched = %v with %d floats of room, want %v", untouched(c.edgeB), slack, inPlace)
				}
			})
		}
	}
}

// TestEdgeRoomCoversEveryKernel: EdgeRoom is at least every kernel's width, or some
// frozen weights would still have their edge copied.
func TestEdgeRoomCoversEveryKernel(t *testing.T) {
	for _, set := range kernelTable {
		for _, k := range set.kerns {
			if k.nr > EdgeRoom {
				t.Errorf("kernel %s is %d wide, over EdgeRoom = %d", k.name, k.nr, EdgeRoom)
			}
		}
	}
}
