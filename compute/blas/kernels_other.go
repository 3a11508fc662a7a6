//go:build !amd64 || purego

package blas

// availableKernels lists the micro-kernels this CPU can run: only the portable one.
func availableKernels() []microKernel { return []microKernel{goKernel} }

// axpyAsm does nothing on CPUs without assembly kernels.
func axpyAsm(alpha float32, x, y []float32) int { return 0 }

// peakLoop reports that there is no assembly peak loop here.
func peakLoop() (func(n int), float64) { return nil, 0 }
