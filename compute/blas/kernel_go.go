package blas

import "unsafe"

// goSet is the portable micro-kernel: the same contract as the assembly kernels, in Go.
var goSet = kernelSet{name: "go", kerns: []microKernel{{name: "go-4x8", mr: 4, nr: 8, lanesPerCycle: 2, masked: true, fn: kern4x8go}}}

// kern4x8go computes a 4×8 tile: C = alpha·Σ_p A(:,p)·B(p,:) + beta·C, with the byte
// strides, row count and column mask of the assembly kernels (internal/asmgen).
func kern4x8go(k int, a *float32, rsA, csA uintptr, b *float32, rsB uintptr, c *float32, rsC uintptr, alpha, beta float32, rows int, mask uint64) {
	var acc [4][8]float32
	ap := unsafe.Pointer(a)
	bp := unsafe.Pointer(b)
	// Pointers are formed only to elements that exist (the race detector's checkptr
	// rejects even transient out-of-allocation arithmetic).
	for p := range uintptr(k) {
		bv := (*[8]float32)(unsafe.Add(bp, p*rsB))
		for i := range uintptr(4) {
			av := *(*float32)(unsafe.Add(ap, i*rsA+p*csA))
			r := &acc[i]
			r[0] += av * bv[0]
			r[1] += av * bv[1]
			r[2] += av * bv[2]
			r[3] += av * bv[3]
			r[4] += av * bv[4]
			r[5] += av * bv[5]
			r[6] += av * bv[6]
			r[7] += av * bv[7]
		}
	}
	cp := unsafe.Pointer(c)
	for i := range min(rows, 4) {
		for j := range 8 {
			if mask&(1<<j) == 0 {
				continue
			}
			e := (*float32)(unsafe.Add(cp, uintptr(i)*rsC+uintptr(j)*4))
			v := alpha * acc[i][j]
			if beta != 0 {
				v += beta * *e
			}
			*e = v
		}
	}
}
