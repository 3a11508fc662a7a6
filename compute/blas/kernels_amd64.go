//go:build amd64 && !purego

package blas

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/asmgen -out kernels_amd64.s

// Kernels in kernels_amd64.s; internal/asmgen documents their contracts.

//go:noescape
func kern12x32avx512(k int, a *float32, rsA, csA uintptr, b *float32, rsB uintptr, c *float32, rsC uintptr, alpha, beta float32, rows int, mask uint64)

//go:noescape
func kern24x16avx512(k int, a *float32, rsA, csA uintptr, b *float32, rsB uintptr, c *float32, rsC uintptr, alpha, beta float32, rows int, mask uint64)

//go:noescape
func kern6x16avx2(k int, a *float32, rsA, csA uintptr, b *float32, rsB uintptr, c *float32, rsC uintptr, alpha, beta float32, rows int, mask uint64)

//go:noescape
func kern2x64avx512(k int, a *float32, rsA, csA uintptr, b *float32, rsB uintptr, c *float32, rsC uintptr, alpha, beta float32, rows int, mask uint64)

//go:noescape
func transpose16avx512(src *float32, srcStride uintptr, dst *float32, dstStride uintptr, n int)

//go:noescape
func transposeMerge16avx512(src *float32, srcStride uintptr, dst *float32, dstStride uintptr, n, m int, alpha, beta float32)

// The assembly kernel sets.
var (
	avx512Set = kernelSet{name: "avx512", kerns: []microKernel{
		{name: "avx512-12x32", mr: 12, nr: 32, lanesPerCycle: 32, masked: true, fn: kern12x32avx512,
			transpose16: transpose16avx512, transposeMerge16: transposeMerge16avx512},
		{name: "avx512-24x16", mr: 24, nr: 16, lanesPerCycle: 32, masked: true, fn: kern24x16avx512,
			transpose16: transpose16avx512, transposeMerge16: transposeMerge16avx512},
		// Six loads feed its eight multiply-adds a step: priced below the others so that
		// the planner takes it only where their tiles would be mostly padding (m ≤ 6).
		{name: "avx512-2x64", mr: 2, nr: 64, lanesPerCycle: 24, masked: true, fn: kern2x64avx512,
			transpose16: transpose16avx512, transposeMerge16: transposeMerge16avx512},
	}}
	avx2Set = kernelSet{name: "avx2", kerns: []microKernel{
		{name: "avx2-6x16", mr: 6, nr: 16, lanesPerCycle: 16, fn: kern6x16avx2},
	}}
)

// detectKernelSets lists the kernel sets this CPU can run, best first.
func detectKernelSets() []kernelSet {
	var ks []kernelSet
	if hasAVX512 {
		ks = append(ks, avx512Set)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2Set)
	}
	return append(ks, goSet)
}

//go:noescape
func axpyavx512(n int, alpha float32, x, y *float32)

// axpyAsm runs the AVX-512 axpy over the largest multiple of 64 elements and returns how
// many it did.
func axpyAsm(alpha float32, x, y []float32) int {
	if !cpu.X86.HasAVX512F {
		return 0
	}
	n := len(x) &^ 63
	if n > 0 {
		axpyavx512(n, alpha, &x[0], &y[0])
	}
	return n
}

//go:noescape
func peakavx512(n int)

//go:noescape
func peakavx2(n int)

// peakLoop returns the register-only FMA loop of the widest vector unit and the
// floating-point operations one iteration does.
func peakLoop() (func(n int), float64) {
	switch {
	case cpu.X86.HasAVX512F:
		return peakavx512, 24 * 16 * 2
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		return peakavx2, 12 * 8 * 2
	}
	return nil, 0
}

//go:noescape
func copyRowsavx512(dst *float32, ldd uintptr, src *float32, lds uintptr, rows, lead, width, rowLen int)

//go:noescape
func addRowsavx512(dst *float32, ldd uintptr, src *float32, lds uintptr, rows, width int)

//go:noescape
func maxPool2x2avx512(x *float32, w int, y *float32, arg *int32, oh, ow int, base, sentinel int32, relu int)

var hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ

func copyRowsAsm(dst []float32, ldd int, src []float32, lds int, rows, lead, width, rowLen int) bool {
	if !hasAVX512 {
		return false
	}
	copyRowsavx512(&dst[0], uintptr(ldd*4), &src[0], uintptr(lds*4), rows, lead, width, rowLen)
	return true
}

func addRowsAsm(dst []float32, ldd int, src []float32, lds int, rows, width int) bool {
	if !hasAVX512 {
		return false
	}
	addRowsavx512(&dst[0], uintptr(ldd*4), &src[0], uintptr(lds*4), rows, width)
	return true
}

func maxPool2x2Asm(x []float32, w int, y []float32, arg []int32, oh, ow int, base, sentinel int32, relu bool) bool {
	if !hasAVX512 {
		return false
	}
	r := 0
	if relu {
		r = 1
	}
	maxPool2x2avx512(&x[0], w, &y[0], &arg[0], oh, ow, base, sentinel, r)
	return true
}

//go:noescape
func im2colavx512(x, col *float32, c, plane, p, ow4, w4 int, tab *int64, ntab int)

func im2colAsm(x, col []float32, c, plane, p, ow, w int, tab []int64) bool {
	if !hasAVX512 {
		return false
	}
	im2colavx512(&x[0], &col[0], c, plane, p, ow*4, w*4, &tab[0], len(tab)/4)
	return true
}

//go:noescape
func reluavx512(n int, x, y *float32)

//go:noescape
func reluGradavx512(n int, y, dy, dx *float32)

func reluAsm(x, y []float32) bool {
	if !hasAVX512 {
		return false
	}
	reluavx512(len(x), &x[0], &y[0])
	return true
}

func reluGradAsm(y, dy, dx []float32) bool {
	if !hasAVX512 {
		return false
	}
	reluGradavx512(len(y), &y[0], &dy[0], &dx[0])
	return true
}

//go:noescape
func maxPool2x2Backavx512(dy *float32, arg *int32, dx *float32, w int, oh, ow int, base int32)

func maxPool2x2BackAsm(dy []float32, arg []int32, dx []float32, w, oh, ow int, base int32) bool {
	if !hasAVX512 {
		return false
	}
	maxPool2x2Backavx512(&dy[0], &arg[0], &dx[0], w, oh, ow, base)
	return true
}
