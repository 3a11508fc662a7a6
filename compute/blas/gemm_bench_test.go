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
	{"cnn-conv1-fwd", true, false, 32, 784, 25},
	{"cnn-conv1-dWt", false, true, 25, 32, 784},
	{"cnn-conv2-fwd", true, false, 64, 196, 800},
	{"cnn-conv2-dWt", false, true, 800, 64, 196},
	{"cnn-conv2-dX", true, false, 32, 196, 1600},
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
