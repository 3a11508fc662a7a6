// Package blas holds the CPU backend's dense linear algebra: a fast float32 matrix product
// C = alpha·op(A)·op(B) + beta·C (row-major, op(X) = X or Xᵀ, as BLAS's SGEMM) and the
// vector kernels a training step needs (axpy and friends).
//
// The design follows BLIS (Van Zee and van de Geijn, 2015): the product is cut into blocks
// that fit the caches (KC rows of B in L1 per micro-panel, MC×KC of A in L2) and each
// MR×NR tile of C is computed by a register-blocked micro-kernel written in Go assembly:
// 12×32 with AVX-512 (24 zmm accumulators) or 6×16 with AVX2+FMA (12 ymm accumulators),
// chosen once at start from the CPU's features (golang.org/x/sys/cpu). A portable Go
// micro-kernel serves other CPUs, and Ref is a plain triple loop used as the test oracle.
//
// Two decisions make small products — the ones federated training is made of (a batch of
// 10 against a 784×200 layer) — fast:
//
//   - Operands are packed only when the packing pays for itself. The kernel reads A by
//     broadcasting single elements at arbitrary row and column strides, and reads B as
//     rows of NR contiguous floats at any row stride, so a non-transposed B and any A are
//     used in place. Packing B costs K·N moves against M·N·K multiply-adds, so it is done
//     only when M is large (the panel is reused from L1 many times) or B is transposed.
//   - The product may be computed as Cᵀ = op(B)ᵀ·op(A)ᵀ when that needs less packing or
//     wastes fewer vector lanes. The decision is a small cost model in plan.
//
// A Context holds the packing buffers, so a steady stream of products of the same
// shapes allocates nothing. A Context is not safe for concurrent use; give each
// goroutine its own.
package blas
