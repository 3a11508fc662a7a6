package blas

import (
	"fmt"
	"sync"
)

// Blocking parameters (elements). KC rows of a B micro-panel (KC×NR floats, 32 KiB for the
// AVX-512 kernel) stay in L1 while the MC×KC block of A (144 KiB) streams from L2.
const (
	blockK = 256
	blockM = 144 // a multiple of every kernel's MR (12, 6, 4)
	blockN = 3072
)

// EdgeRoom is how many floats after a matrix's last row let Gemm read the ragged right
// edge of an unpacked B in place instead of copying it (the widest kernel's NR): a
// matrix multiplied many times, such as a frozen model's weights, is worth allocating
// with that room.
const EdgeRoom = 64

// packBMinRows is the number of rows of C from which a non-transposed B is packed: below
// it, each B panel is read so few times that copying it costs more than it saves.
// packAMinCols plays the same role for A.
const (
	packBMinRows = 48
	packAMinCols = 128
)

// microKernel describes a register-blocked micro-kernel: it computes an mr×nr tile of
// C = alpha·A·B + beta·C from A(i,p) at a+i·rsA+p·csA (byte strides) and B(p,j) at
// b+p·rsB+4j, and writes C(i,j) at c+i·rsC+4j, reading C only when beta ≠ 0.
type microKernel struct {
	name          string
	mr, nr        int
	lanesPerCycle int  // multiply-adds per cycle the kernel can sustain; used by the planner
	masked        bool // stores only rows < rows and the columns set in mask
	fn            func(k int, a *float32, rsA, csA uintptr, b *float32, rsB uintptr, c *float32, rsC uintptr, alpha, beta float32, rows int, mask uint64)
	// transpose16, when not nil, reads n ≤ 16 rows of 16 floats at src+r·srcStride and
	// writes their transpose as 16 rows of n floats at dst+c·dstStride (strides in bytes).
	transpose16 func(src *float32, srcStride uintptr, dst *float32, dstStride uintptr, n int)
	// transposeMerge16, when not nil, transposes like transpose16 but writes only the
	// first m output rows, as dst = alpha·row + beta·dst: a tile stored into a C whose
	// rows are contiguous in memory the other way (C.rs == 1).
	transposeMerge16 func(src *float32, srcStride uintptr, dst *float32, dstStride uintptr, n, m int, alpha, beta float32)
}

// kernelSet is a family of micro-kernels for one instruction set; the planner picks one
// per product. The set's helpers (transposes) are shared by its kernels.
type kernelSet struct {
	name  string
	kerns []microKernel
}

// Kernels returns the names of the kernel sets this CPU can run, best first; the last is
// always the portable Go kernel. Each set's member kernels can be named too (see
// WithKernel).
func Kernels() []string {
	names := make([]string, len(kernelTable))
	for i, k := range kernelTable {
		names[i] = k.name
	}
	return names
}

// Context multiplies matrices with one kernel set and owns the scratch buffers that
// packing needs. The zero value is not usable; call New.
type Context struct {
	set     kernelSet
	threads int

	packA, packB []float32 // packed blocks of A (MC×KC) and B (KC×NC)
	edgeA, edgeB []float32 // a partial micro-panel of A (MR×KC) or B (KC×NR), zero-padded
	tile         []float32 // an MR×NR tile for partial or strided C

	workers []*Context // per-thread contexts when threads > 1
}

// Option configures a Context.
type Option func(*Context) error

// WithKernel selects a kernel set (see Kernels), or a single kernel of one by its name
// (e.g. "avx512-12x32"); it fails if this CPU cannot run it.
func WithKernel(name string) Option {
	return func(c *Context) error {
		for _, set := range kernelTable {
			if set.name == name {
				c.set = set
				return nil
			}
			for _, k := range set.kerns {
				if k.name == name {
					c.set = kernelSet{name: k.name, kerns: []microKernel{k}}
					return nil
				}
			}
		}
		return fmt.Errorf("blas kernel %q is not available on this CPU (have %v)", name, Kernels())
	}
}

// WithThreads sets how many goroutines one product may use (default 1). Products too small
// to split run on one.
func WithThreads(n int) Option {
	return func(c *Context) error {
		if n < 1 {
			return fmt.Errorf("blas threads must be at least 1, got %d", n)
		}
		c.threads = n
		return nil
	}
}

// New returns a Context using the best kernel set of this CPU unless an option says otherwise.
func New(opts ...Option) (*Context, error) {
	c := &Context{set: kernelTable[0], threads: 1}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.threads > 1 {
		c.workers = make([]*Context, c.threads)
		for i := range c.workers {
			c.workers[i] = &Context{set: c.set, threads: 1}
		}
	}
	return c, nil
}

// Kernel returns the name of the kernel set c uses.
func (c *Context) Kernel() string { return c.set.name }

// Threads returns how many goroutines one product may use.
func (c *Context) Threads() int { return c.threads }

// view is a strided matrix: element (i, j) is data[off + i·rs + j·cs].
type view struct {
	data       []float32
	off        int
	rs, cs     int
	rows, cols int
}

func (v view) at(i, j int) int { return v.off + i*v.rs + j*v.cs }
func (v view) t() view         { return view{v.data, v.off, v.cs, v.rs, v.cols, v.rows} }
func (v view) sub(i, j, rows, cols int) view {
	return view{v.data, v.at(i, j), v.rs, v.cs, rows, cols}
}

func matView(data []float32, trans bool, rows, cols, ld int) view {
	if trans {
		return view{data, 0, 1, ld, rows, cols}
	}
	return view{data, 0, ld, 1, rows, cols}
}

// plan is how one product runs: which kernel, and whether as Cᵀ = Bᵀ·Aᵀ.
type plan struct {
	kern    *microKernel
	swapped bool
	cost    float64
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C where op(A) is m×k, op(B) is k×n and C is
// m×n, all row-major with leading dimensions lda, ldb, ldc; op(X) is Xᵀ when transX.
// When beta is zero C is only written. Dimensions that do not fit the buffers panic, as
// in BLAS: they are programming errors.
func (c *Context) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cm []float32, ldc int) {
	checkArgs(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(cm), ldc)
	if m == 0 || n == 0 {
		return
	}
	C := view{cm, 0, ldc, 1, m, n}
	if k == 0 || alpha == 0 {
		scale(C, beta)
		return
	}
	A := matView(a, transA, m, k, lda)
	B := matView(b, transB, k, n, ldb)
	p := c.plan(A, B, C)
	if p.swapped {
		// Cᵀ = op(B)ᵀ·op(A)ᵀ.
		A, B, C = B.t(), A.t(), C.t()
	}
	if c.threads > 1 {
		c.parallel(p.kern, alpha, A, B, beta, C)
		return
	}
	c.run(p.kern, alpha, A, B, beta, C)
}

// plan picks the kernel and orientation of least estimated cost.
func (c *Context) plan(A, B, C view) plan {
	best := plan{cost: -1}
	for i := range c.set.kerns {
		k := &c.set.kerns[i]
		for _, swapped := range [2]bool{false, true} {
			a, b, cc := A, B, C
			if swapped {
				a, b, cc = B.t(), A.t(), C.t()
			}
			if cost := k.cost(a, b, cc); best.cost < 0 || cost < best.cost {
				best = plan{kern: k, swapped: swapped, cost: cost}
			}
		}
	}
	return best
}

// cost estimates the cycles of C = A·B with kernel k: kernel cycles over padded tiles,
// plus packing and merging. The per-element prices were measured on Zen 5 with the
// AVX-512 kernels; only their ratios matter.
func (k *microKernel) cost(A, B, C view) float64 {
	m, n, kk := A.rows, B.cols, A.cols
	mp, np := roundUp(m, k.mr), roundUp(n, k.nr)
	cycles := float64(mp) * float64(np) * float64(kk) / float64(k.lanesPerCycle)
	if k.packsB(A, B) {
		cycles += k.packPrice(B) * float64(kk) * float64(n)
	}
	if k.packsA(A, B) {
		cycles += k.packPrice(A.t()) * float64(kk) * float64(m)
	}
	if C.cs != 1 {
		// Every tile goes through the tile buffer and a transposing (or scalar) merge.
		price := 4.0
		if C.rs == 1 && k.transposeMerge16 != nil {
			price = 0.5
		}
		cycles += price * float64(m) * float64(n)
	} else if !k.masked {
		// Only the ragged right and bottom edges do.
		cycles += 1.5 * float64(m*(np-n)+n*(mp-m))
	}
	return cycles
}

// packPrice is the cost per element of packing src into panels.
func (k *microKernel) packPrice(src view) float64 {
	switch {
	case src.cs == 1:
		return 0.25 // row copies
	case src.rs == 1 && k.transpose16 != nil:
		return 0.9 // 16×16 register transposes (measured, gathers included)
	default:
		return 2.5 // scalar gather
	}
}

func (k *microKernel) packsB(A, B view) bool { return B.cs != 1 || A.rows >= packBMinRows }

// packsA: a single row of A (one sample's activations) is never packed — it is read in
// place, and packing it would cost more than the product saves.
func (k *microKernel) packsA(A, B view) bool { return B.cols >= packAMinCols && A.rows > 1 }

// parallel splits C into column (or row) stripes, one per worker.
func (c *Context) parallel(kern *microKernel, alpha float32, A, B view, beta float32, C view) {
	m, n := C.rows, C.cols
	nr, mr := kern.nr, kern.mr
	var wg sync.WaitGroup
	splitCols := n >= m
	units := (n + nr - 1) / nr
	if !splitCols {
		units = (m + mr - 1) / mr
	}
	t := min(c.threads, units)
	for w := range t {
		lo, hi := units*w/t, units*(w+1)/t
		if lo == hi {
			continue
		}
		wk := c.workers[w]
		wg.Go(func() {
			if splitCols {
				j0, j1 := lo*nr, min(hi*nr, n)
				wk.run(kern, alpha, A, B.sub(0, j0, B.rows, j1-j0), beta, C.sub(0, j0, m, j1-j0))
			} else {
				i0, i1 := lo*mr, min(hi*mr, m)
				wk.run(kern, alpha, A.sub(i0, 0, i1-i0, A.cols), B, beta, C.sub(i0, 0, i1-i0, n))
			}
		})
	}
	wg.Wait()
}

func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// run computes C = alpha·A·B + beta·C on the calling goroutine with kernel kern.
func (c *Context) run(kern *microKernel, alpha float32, A, B view, beta float32, C view) {
	m, n, k := C.rows, C.cols, A.cols
	mr, nr := kern.mr, kern.nr
	packB, packA := kern.packsB(A, B), kern.packsA(A, B)
	kc := min(blockK, k)
	if packB {
		c.packB = grow(c.packB, kc*roundUp(min(blockN, n), nr))
	}
	if packA {
		c.packA = grow(c.packA, kc*roundUp(min(blockM, m), mr))
	}
	c.edgeA = grow(c.edgeA, kc*mr)
	c.edgeB = grow(c.edgeB, kc*nr)
	c.tile = grow(c.tile, mr*nr)
	direct := C.cs == 1
	fn := kern.fn

	for jc := 0; jc < n; jc += blockN {
		nb := min(blockN, n-jc)
		for pc := 0; pc < k; pc += blockK {
			kb := min(blockK, k-pc)
			betaEff := beta
			if pc > 0 {
				betaEff = 1
			}
			Bblk := B.sub(pc, jc, kb, nb)
			nFull := nb / nr * nr
			// The ragged right edge of an unpacked B is read in place when a kernel's
			// full-width read of its last row stays inside B's slice: the lanes past the
			// edge hold whatever follows (the next row, padding), and the values they
			// produce are never stored. Otherwise it is copied into a panel.
			edgeInPlace := !packB && nFull < nb && Bblk.at(kb-1, nFull)+nr <= len(B.data)
			if packB {
				kern.packPanels(c.packB, Bblk, nr)
			} else if nFull < nb && !edgeInPlace {
				kern.packPanels(c.edgeB, Bblk.sub(0, nFull, kb, nb-nFull), nr)
			}
			for ic := 0; ic < m; ic += blockM {
				mb := min(blockM, m-ic)
				Ablk := A.sub(ic, pc, mb, kb)
				mFull := mb / mr * mr
				// A single ragged row of an unpacked A is read in place with a row
				// stride of 0: the kernel's other rows repeat it and are not stored.
				oneRow := !packA && mb-mFull == 1
				if packA {
					kern.packPanels(c.packA, Ablk.t(), mr)
				} else if mFull < mb && !oneRow {
					kern.packPanels(c.edgeA, Ablk.sub(mFull, 0, mb-mFull, kb).t(), mr)
				}
				for jr := 0; jr < nb; jr += nr {
					nrr := min(nr, nb-jr)
					var bp *float32
					var rsB uintptr
					switch {
					case packB:
						bp, rsB = &c.packB[jr*kb], uintptr(nr*4)
					case nrr == nr || edgeInPlace:
						bp, rsB = &B.data[Bblk.at(0, jr)], uintptr(B.rs*4)
					default:
						bp, rsB = &c.edgeB[0], uintptr(nr*4)
					}
					for ir := 0; ir < mb; ir += mr {
						mrr := min(mr, mb-ir)
						var ap *float32
						var rsA, csA uintptr
						switch {
						case packA:
							ap, rsA, csA = &c.packA[ir*kb], 4, uintptr(mr*4)
						case mrr == mr:
							ap, rsA, csA = &A.data[Ablk.at(ir, 0)], uintptr(A.rs*4), uintptr(A.cs*4)
						case oneRow:
							ap, rsA, csA = &A.data[Ablk.at(ir, 0)], 0, uintptr(A.cs*4)
						default:
							ap, rsA, csA = &c.edgeA[0], 4, uintptr(mr*4)
						}
						if direct && (kern.masked || mrr == mr && nrr == nr) {
							fn(kb, ap, rsA, csA, bp, rsB, &C.data[C.at(ic+ir, jc+jr)], uintptr(C.rs*4), alpha, betaEff, mrr, 1<<nrr-1)
							continue
						}
						fn(kb, ap, rsA, csA, bp, rsB, &c.tile[0], uintptr(nr*4), 1, 0, mr, 1<<nr-1)
						kern.mergeTile(c.tile, nr, C.sub(ic+ir, jc+jr, mrr, nrr), alpha, betaEff)
					}
				}
			}
		}
	}
}

// packPanels copies the rows×cols matrix src into dst as panels of w columns: panel q holds
// columns [q·w, q·w+w) as src.rows consecutive runs of w floats, zero-padded past src.cols.
// This is the layout the kernels read B in; A is packed as the panels of its transpose.
func (k *microKernel) packPanels(dst []float32, src view, w int) {
	rows, cols := src.rows, src.cols
	for q := 0; q*w < cols; q++ {
		j0 := q * w
		jw := min(w, cols-j0)
		panel := dst[q*w*rows : (q+1)*w*rows]
		if src.cs == 1 {
			for p := range rows {
				s := src.at(p, j0)
				d := panel[p*w : p*w+w]
				copy(d, src.data[s:s+jw])
				clear(d[jw:])
			}
			continue
		}
		if jw < w {
			clear(panel)
		}
		// Gather column-wise in blocks of 16 rows, so the destination block stays in L1
		// while each source column is read in runs.
		const pb = 16
		p0 := 0
		if tr := k.transpose16; tr != nil && src.rs == 1 {
			for ; p0+pb <= rows; p0 += pb {
				for jj := 0; jj < jw; jj += 16 {
					tr(&src.data[src.at(p0, j0+jj)], uintptr(src.cs*4), &panel[p0*w+jj], uintptr(w*4), min(16, jw-jj))
				}
			}
		}
		for ; p0 < rows; p0 += pb {
			p1 := min(p0+pb, rows)
			for j := range jw {
				s := src.at(p0, j0+j)
				for p := p0; p < p1; p++ {
					panel[p*w+j] = src.data[s]
					s += src.rs
				}
			}
		}
	}
}

// mergeTile writes C = alpha·tile + beta·C for the valid part of a tile.
func (k *microKernel) mergeTile(tile []float32, ld int, C view, alpha, beta float32) {
	if tm := k.transposeMerge16; tm != nil && C.rs == 1 {
		for i := 0; i < C.rows; i += 16 {
			for j := 0; j < C.cols; j += 16 {
				tm(&tile[i*ld+j], uintptr(ld*4), &C.data[C.at(i, j)], uintptr(C.cs*4), min(16, C.rows-i), min(16, C.cols-j), alpha, beta)
			}
		}
		return
	}
	for i := range C.rows {
		t := tile[i*ld : i*ld+C.cols]
		o := C.at(i, 0)
		for _, v := range t {
			v *= alpha
			if beta != 0 {
				v += beta * C.data[o]
			}
			C.data[o] = v
			o += C.cs
		}
	}
}

// scale sets C = beta·C (C = 0 when beta is zero, whatever C held).
func scale(C view, beta float32) {
	for i := range C.rows {
		o := C.at(i, 0)
		for range C.cols {
			if beta == 0 {
				C.data[o] = 0
			} else {
				C.data[o] *= beta
			}
			o += C.cs
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// kernelTable lists the kernel sets this CPU can run, best first. It is set once at
// start from the CPU's features and never changes.
var kernelTable = detectKernelSets()

// Explain describes how c would compute a product of these shapes — kernel,
// orientation, packing and the planner's estimate — for tuning and benchmarks.
func (c *Context) Explain(transA, transB bool, m, n, k int) string {
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	A := matView(nil, transA, m, k, lda)
	B := matView(nil, transB, k, n, ldb)
	C := view{nil, 0, n, 1, m, n}
	p := c.plan(A, B, C)
	orient := "C"
	if p.swapped {
		A, B, C = B.t(), A.t(), C.t()
		orient = "Cᵀ"
	}
	return fmt.Sprintf("%s %s: m=%d n=%d k=%d packA=%v packB=%v transposedC=%v cost=%.0f",
		p.kern.name, orient, A.rows, B.cols, A.cols, p.kern.packsA(A, B), p.kern.packsB(A, B), C.cs != 1, p.cost)
}
