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

// Relu sets y = max(x, 0), keeping NaNs (as PyTorch's relu). x and y have the same length
// and may be the same slice.
func Relu(x, y []float32) {
	if len(x) != len(y) {
		panic("blas: Relu lengths differ")
	}
	if len(x) == 0 || reluAsm(x, y) {
		return
	}
	ReluRef(x, y)
}

// ReluRef is Relu in plain Go for any float type.
func ReluRef[T Float](x, y []T) {
	for i, v := range x {
		if v < 0 {
			v = 0
		}
		y[i] = v
	}
}

// ReluGrad sets dx = dy where y > 0 and 0 elsewhere: the gradient through y = relu(x).
// The assembly version has no data-dependent branch.
func ReluGrad(y, dy, dx []float32) {
	if len(y) != len(dy) || len(y) != len(dx) {
		panic("blas: ReluGrad lengths differ")
	}
	if len(y) == 0 || reluGradAsm(y, dy, dx) {
		return
	}
	ReluGradRef(y, dy, dx)
}

// ReluGradRef is ReluGrad in plain Go for any float type.
func ReluGradRef[T Float](y, dy, dx []T) {
	for i, v := range dy {
		if y[i] > 0 {
			dx[i] = v
		} else {
			dx[i] = 0
		}
	}
}
