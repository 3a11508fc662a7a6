//go:build !amd64 || purego

package blas

// detectKernelSets lists the kernel sets this CPU can run: only the portable one.
func detectKernelSets() []kernelSet { return []kernelSet{goSet} }

// axpyAsm does nothing on CPUs without assembly kernels.
func axpyAsm(alpha float32, x, y []float32) int { return 0 }

// peakLoop reports that there is no assembly peak loop here.
func peakLoop() (func(n int), float64) { return nil, 0 }

func copyRowsAsm(dst []float32, ldd int, src []float32, lds int, rows, lead, width, rowLen int) bool {
	return false
}

func addRowsAsm(dst []float32, ldd int, src []float32, lds int, rows, width int) bool { return false }

func maxPool2x2Asm(x []float32, w int, y []float32, arg []int32, oh, ow int, base, sentinel int32, relu bool) bool {
	return false
}

func im2colAsm(x, col []float32, c, plane, p, ow, w int, tab []int64) bool { return false }

func reluAsm(x, y []float32) bool { return false }

func reluGradAsm(y, dy, dx []float32) bool { return false }

func maxPool2x2BackAsm(dy []float32, arg []int32, dx []float32, w, oh, ow int, base int32) bool {
	return false
}
