package blas

// The kernels below serve convolution and pooling layers: they live here so that one
// assembly generator and one CPU feature check serve every vectorised kernel.

// CopyRows writes rows rows of rowLen floats into dst (row stride ldd): zeros, with
// src[r·lds : r·lds+width] copied to offset lead. It is im2col's inner loop for stride-1
// convolutions, where each row of the patch matrix is a shifted, zero-padded image row.
func CopyRows(dst []float32, ldd int, src []float32, lds int, rows, lead, width, rowLen int) {
	if rows <= 0 || rowLen <= 0 {
		return
	}
	if lead < 0 || width < 0 || lead+width > rowLen || len(dst) < (rows-1)*ldd+rowLen || width > 0 && len(src) < (rows-1)*lds+width {
		panic("blas: CopyRows arguments out of range")
	}
	if width > 0 && copyRowsAsm(dst, ldd, src, lds, rows, lead, width, rowLen) {
		return
	}
	CopyRowsRef(dst, ldd, src, lds, rows, lead, width, rowLen)
}

// CopyRowsRef is CopyRows in plain Go for any float type, without argument checks.
func CopyRowsRef[T Float](dst []T, ldd int, src []T, lds int, rows, lead, width, rowLen int) {
	for r := range rows {
		d := dst[r*ldd : r*ldd+rowLen]
		clear(d[:lead])
		copy(d[lead:lead+width], src[r*lds:r*lds+width])
		clear(d[lead+width:])
	}
}

// AddRows adds src[r·lds : r·lds+width] into dst[r·ldd : r·ldd+width] for each of rows
// rows: col2im's inner loop for stride-1 convolutions.
func AddRows(dst []float32, ldd int, src []float32, lds int, rows, width int) {
	if rows <= 0 || width <= 0 {
		return
	}
	if len(dst) < (rows-1)*ldd+width || len(src) < (rows-1)*lds+width {
		panic("blas: AddRows arguments out of range")
	}
	if addRowsAsm(dst, ldd, src, lds, rows, width) {
		return
	}
	AddRowsRef(dst, ldd, src, lds, rows, width)
}

// AddRowsRef is AddRows in plain Go for any float type, without argument checks.
func AddRowsRef[T Float](dst []T, ldd int, src []T, lds int, rows, width int) {
	for r := range rows {
		d := dst[r*ldd : r*ldd+width]
		for i, v := range src[r*lds : r*lds+width] {
			d[i] += v
		}
	}
}

// MaxPool2x2 pools an (2·oh)×w plane x with 2×2 windows and stride 2 into the oh×ow plane
// y (ow ≤ w/2), and writes into arg the index of each window's maximum as base + its
// offset in x — the first maximum in row-major order, NaN winning, as PyTorch does. With
// relu, outputs that are not > 0 (NaN excepted) become 0 with arg = sentinel: ReLU and
// pooling fused. The assembly version has no data-dependent branches, which matters:
// random activations make a branchy maximum mispredict about half the time.
func MaxPool2x2(x []float32, w int, y []float32, arg []int32, oh, ow int, base, sentinel int32, relu bool) {
	if oh <= 0 || ow <= 0 {
		return
	}
	if 2*ow > w || len(x) < 2*oh*w || len(y) < oh*ow || len(arg) < oh*ow {
		panic("blas: MaxPool2x2 arguments out of range")
	}
	if maxPool2x2Asm(x, w, y, arg, oh, ow, base, sentinel, relu) {
		return
	}
	MaxPool2x2Ref(x, w, y, arg, oh, ow, base, sentinel, relu)
}

// MaxPool2x2Ref is MaxPool2x2 in plain Go for any float type, without argument checks.
func MaxPool2x2Ref[T Float](x []T, w int, y []T, arg []int32, oh, ow int, base, sentinel int32, relu bool) {
	for oy := range oh {
		r0 := x[2*oy*w : 2*oy*w+w]
		r1 := x[(2*oy+1)*w : (2*oy+1)*w+w]
		pos := base + int32(2*oy*w)
		for ox := range ow {
			i := 2 * ox
			bv, best := r0[i], pos+int32(i)
			for _, c := range [3]struct {
				v   T
				off int32
			}{{r0[i+1], 1}, {r1[i], int32(w)}, {r1[i+1], int32(w + 1)}} {
				if c.v > bv || (c.v != c.v && bv == bv) {
					bv, best = c.v, pos+int32(i)+c.off
				}
			}
			if relu && !(bv > 0) && bv == bv {
				bv, best = 0, sentinel
			}
			y[oy*ow+ox] = bv
			arg[oy*ow+ox] = best
		}
	}
}

// maxIm2colKernel bounds the kernel size of Im2col's on-stack table.
const maxIm2colKernel = 11

// Im2col lays out the patches of a stride-1 convolution as columns: for c channels of
// h×w (x), kernel k and zero padding pad, it writes col[(ci·k+ky)·k+kx][oy·ow+ox] =
// x[ci][oy−pad+ky][ox−pad+kx], or 0 in the padding, where oh = h+2·pad−k+1 and
// ow = w+2·pad−k+1. It returns false, having done nothing, when it has no fast path
// for these arguments (no AVX-512, or k > 11); the caller then uses its own loops.
func Im2col(x, col []float32, c, h, w, k, pad int) bool {
	oh, ow := h+2*pad-k+1, w+2*pad-k+1
	if c <= 0 || k <= 0 || k > maxIm2colKernel || pad < 0 || oh <= 0 || ow <= 0 {
		return false
	}
	if len(x) < c*h*w || len(col) < c*k*k*oh*ow {
		panic("blas: Im2col buffers too short")
	}
	var tab [maxIm2colKernel * maxIm2colKernel * 4]int64
	n := 0
	for ky := range k {
		ylo, yhi := max(0, pad-ky), min(oh, h+pad-ky)
		for kx := range k {
			xlo, xhi := max(0, pad-kx), min(ow, w+pad-kx)
			e := tab[4*n : 4*n+4]
			if ylo < yhi && xlo < xhi {
				e[0] = int64(ylo*ow + xlo)
				e[1] = int64((ylo-pad+ky)*w + xlo - pad + kx)
				e[2] = int64(yhi - ylo)
				e[3] = int64(xhi - xlo)
			} else {
				e[0], e[1], e[2], e[3] = 0, 0, 0, 0
			}
			n++
		}
	}
	return im2colAsm(x, col, c, h*w, oh*ow, ow, w, tab[:4*n])
}

// MaxPool2x2Back writes the gradient of MaxPool2x2 for one (2·oh)×w input plane: dx gets
// dy[o] at the argmax of window o (arg[o] − base) and 0 at the window's other inputs.
// Inputs in no window (an odd last row or column) are zeroed too. With the assembly
// version each element of dx is written once, with no branch and no prior clear.
func MaxPool2x2Back(dy []float32, arg []int32, dx []float32, w, oh, ow int, base int32) {
	if oh <= 0 || ow <= 0 {
		return
	}
	h := len(dx) / w
	if 2*ow > w || len(dy) < oh*ow || len(arg) < oh*ow || len(dx) < 2*oh*w {
		panic("blas: MaxPool2x2Back arguments out of range")
	}
	if !maxPool2x2BackAsm(dy, arg, dx, w, oh, ow, base) {
		MaxPool2x2BackRef(dy, arg, dx, w, oh, ow, base)
		return
	}
	if 2*ow < w {
		for y := range 2 * oh {
			clear(dx[y*w+2*ow : (y+1)*w])
		}
	}
	clear(dx[2*oh*w : h*w])
}

// MaxPool2x2BackRef is MaxPool2x2Back in plain Go for any float type.
func MaxPool2x2BackRef[T Float](dy []T, arg []int32, dx []T, w, oh, ow int, base int32) {
	clear(dx)
	for i, a := range arg[:oh*ow] {
		if j := int(a - base); j >= 0 && j < len(dx) {
			dx[j] = dy[i]
		}
	}
}
