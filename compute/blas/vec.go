package blas

// Axpy computes y += alpha·x. x and y must have the same length.
func Axpy(alpha float32, x, y []float32) {
	if len(x) != len(y) {
		panic("blas: Axpy lengths differ")
	}
	done := axpyAsm(alpha, x, y)
	x, y = x[done:], y[done:]
	for i, v := range x {
		y[i] += alpha * v
	}
}
