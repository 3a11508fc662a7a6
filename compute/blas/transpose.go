package blas

// Transpose sets dst = alpha·srcᵀ + beta·dst, where src is rows×cols with row stride lds
// and dst is cols×rows with row stride ldd. dst is not read when beta is zero. With
// AVX-512 it works in 16×16 register transposes.
func Transpose(rows, cols int, alpha float32, src []float32, lds int, beta float32, dst []float32, ldd int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	if lds < cols || ldd < rows || len(src) < (rows-1)*lds+cols || len(dst) < (cols-1)*ldd+rows {
		panic("blas: Transpose arguments out of range")
	}
	tm := kernelTable[0].kerns[0].transposeMerge16
	full := cols / 16 * 16
	if tm == nil {
		full = 0
	}
	for j0 := 0; j0 < full; j0 += 16 {
		for i0 := 0; i0 < rows; i0 += 16 {
			tm(&src[i0*lds+j0], uintptr(lds*4), &dst[j0*ldd+i0], uintptr(ldd*4), min(16, rows-i0), 16, alpha, beta)
		}
	}
	if full < cols {
		TransposeRef(rows, cols-full, alpha, src[full:], lds, beta, dst[full*ldd:], ldd)
	}
}

// TransposeRef is Transpose in plain Go for any float type, without argument checks.
func TransposeRef[T Float](rows, cols int, alpha T, src []T, lds int, beta T, dst []T, ldd int) {
	const blk = 16
	for i0 := 0; i0 < rows; i0 += blk {
		for j0 := 0; j0 < cols; j0 += blk {
			for i := i0; i < min(i0+blk, rows); i++ {
				for j := j0; j < min(j0+blk, cols); j++ {
					v := alpha * src[i*lds+j]
					if beta != 0 {
						v += beta * dst[j*ldd+i]
					}
					dst[j*ldd+i] = v
				}
			}
		}
	}
}
