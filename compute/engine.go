package compute

import (
	"fmt"

	"github.com/fedq/fedq/compute/blas"
)

// Float is the element type of a model: float32 for training and inference, float64 for
// checking gradients against finite differences with the very same layer code.
type Float interface{ float32 | float64 }

// engine holds the numeric kernels a model runs on. For float32 they are the CPU
// backend's assembly kernels (package blas); for float64 the portable reference loops.
type engine[T Float] struct {
	gemm       func(transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int)
	axpy       func(alpha T, x, y []T)
	copyRows   func(dst []T, ldd int, src []T, lds int, rows, lead, width, rowLen int)
	addRows    func(dst []T, ldd int, src []T, lds int, rows, width int)
	maxPool2x2 func(x []T, w int, y []T, arg []int32, oh, ow int, base, sentinel int32, relu bool)
	// maxPool2x2Back writes (not adds) one input plane's gradient.
	maxPool2x2Back func(dy []T, arg []int32, dx []T, w, oh, ow int, base int32)
	transpose      func(rows, cols int, alpha T, src []T, lds int, beta T, dst []T, ldd int)
	// im2colS1 is a whole stride-1 im2col when the backend has a fast one; it reports
	// whether it did the work.
	im2colS1 func(x, col []T, c, h, w, k, pad int) bool
	relu     func(x, y []T)
	reluGrad func(y, dy, dx []T)
	kernel   string
	threads  int
}

func newEngine[T Float](threads int, kernel string) (*engine[T], error) {
	var zero T
	switch any(zero).(type) {
	case float32:
		opts := []blas.Option{blas.WithThreads(max(threads, 1))}
		if kernel != "" {
			opts = append(opts, blas.WithKernel(kernel))
		}
		ctx, err := blas.New(opts...)
		if err != nil {
			return nil, fmt.Errorf("cpu backend: %w", err)
		}
		e := &engine[float32]{gemm: ctx.Gemm, axpy: blas.Axpy, copyRows: blas.CopyRows, addRows: blas.AddRows,
			maxPool2x2: blas.MaxPool2x2, maxPool2x2Back: blas.MaxPool2x2Back, transpose: blas.Transpose, im2colS1: blas.Im2col, relu: blas.Relu, reluGrad: blas.ReluGrad, kernel: ctx.Kernel(), threads: ctx.Threads()}
		return any(e).(*engine[T]), nil
	default:
		return &engine[T]{gemm: blas.Ref[T], axpy: axpyRef[T], copyRows: blas.CopyRowsRef[T], addRows: blas.AddRowsRef[T],
			maxPool2x2: blas.MaxPool2x2Ref[T], maxPool2x2Back: blas.MaxPool2x2BackRef[T], transpose: blas.TransposeRef[T], relu: blas.ReluRef[T], reluGrad: blas.ReluGradRef[T],
			kernel: "reference", threads: 1,
			im2colS1: func(x, col []T, c, h, w, k, pad int) bool { return false }}, nil
	}
}

func axpyRef[T Float](alpha T, x, y []T) {
	for i, v := range x {
		y[i] += alpha * v
	}
}

// grow returns buf resliced to n elements, allocating only when its capacity is short.
func grow[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}
