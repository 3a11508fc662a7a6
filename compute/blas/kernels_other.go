//go:build !amd64 || purego

package gemm

// availableKernels lists the micro-kernels this CPU can run: only the portable one.
func availableKernels() []microKernel { return []microKernel{goKernel} }
