package blas

// Float is the set of element types the reference routines accept.
type Float interface{ ~float32 | ~float64 }

// Ref computes C = alpha·op(A)·op(B) + beta·C with plain loops, in the precision of T.
// op(A) is m×k, op(B) is k×n, C is m×n; all matrices are row-major with leading
// dimensions lda, ldb and ldc. When beta is zero, C is not read (NaNs in it vanish).
// Ref is the portable path for float64 and the oracle the fast kernels are tested against.
func Ref[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	checkArgs(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
		} else if beta != 1 {
			for j := range row {
				row[j] *= beta
			}
		}
		for p := range k {
			var av T
			if transA {
				av = a[p*lda+i]
			} else {
				av = a[i*lda+p]
			}
			av *= alpha
			if av == 0 {
				continue
			}
			if transB {
				for j := range row {
					row[j] += av * b[j*ldb+p]
				}
			} else {
				brow := b[p*ldb : p*ldb+n]
				for j, bv := range brow {
					row[j] += av * bv
				}
			}
		}
	}
}

// checkArgs panics when the dimensions or buffers cannot describe the product: these are
// programming errors, as in BLAS, not data errors.
func checkArgs(transA, transB bool, m, n, k, lenA, lda, lenB, ldb, lenC, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic("blas: negative dimension")
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	check := func(name string, rows, cols, ld, length int) {
		if rows == 0 || cols == 0 {
			return
		}
		if ld < max(cols, 1) {
			panic("blas: leading dimension of " + name + " is smaller than its row length")
		}
		if length < (rows-1)*ld+cols {
			panic("blas: buffer " + name + " is too short for its dimensions")
		}
	}
	check("A", ar, ac, lda, lenA)
	check("B", br, bc, ldb, lenB)
	check("C", m, n, ldc, lenC)
}
