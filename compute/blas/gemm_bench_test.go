package blas

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchShapes are the products of one training step of McMahan et al.'s 2NN and CNN.
var benchShapes = []struct {
	name           string
	transA, transB bool
	m, n, k        int
}{
	{"2nn-fc1-fwd-b10", false, true, 10, 200, 784},
	{"2nn-fc1-dW-b10", true, false, 200, 784, 10},
	{"2nn-fc2-dX-b10", false, false, 10, 200, 200},
	{"2nn-fc1-fwd-b64", false, true, 64, 200, 784},
	{"2nn-fc1-dW-b64", true, false, 200, 784, 64},
	{"cnn-conv1-fwd", true, false, 784, 32, 26},
	{"cnn-conv1-dWt", false, true, 26, 32, 784},
	{"cnn-conv2-fwd", true, false, 196, 64, 801},
	{"cnn-conv2-dWt", false, true, 801, 64, 196},
	{"cnn-conv2-dX", true, false, 196, 32, 1600},
	{"cnn-fc1-fwd-b10", false, true, 10, 512, 3136},
	{"cnn-fc1-dX-b10", false, false, 10, 3136, 512},
	{"cnn-fc1-dW-b10", true, false, 512, 3136, 10},
	{"square-512", false, false, 512, 512, 512},
}

func BenchmarkGemm(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, kern := range Kernels()[:1] {
		ctx, _ := New(WithKernel(kern))
		for _, s := range benchShapes {
			b.Run(fmt.Sprintf("%s/%s", kern, s.name), func(b *testing.B) {
				A := randSlice(r, s.m*s.k)
				B := randSlice(r, s.k*s.n)
				C := make([]float32, s.m*s.n)
				lda, ldb := s.k, s.n
				if s.transA {
					lda = s.m
				}
				if s.transB {
					ldb = s.k
				}
				for b.Loop() {
					ctx.Gemm(s.transA, s.transB, s.m, s.n, s.k, 1, A, lda, B, ldb, 0, C, s.n)
				}
				b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkKernelL1 runs each micro-kernel alone on packed panels that fit in L1: its
// ceiling, to compare with `fedq bench peak`.
func BenchmarkKernelL1(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, set := range kernelTable {
		for _, kern := range set.kerns {
			a := randSlice(r, kern.mr*256)
			bb := randSlice(r, kern.nr*256)
			c := make([]float32, kern.mr*kern.nr)
			b.Run(kern.name, func(b *testing.B) {
				for b.Loop() {
					kern.fn(256, &a[0], 4, uintptr(kern.mr*4), &bb[0], uintptr(kern.nr*4), &c[0], uintptr(kern.nr*4), 1, 0, kern.mr, 1<<kern.nr-1)
				}
				b.ReportMetric(float64(2*kern.mr*kern.nr*256)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
