//go:build !linux && !freebsd

package cuda

import "runtime"

func probe(library string) Report {
	return Report{Library: library, Reason: "fedq looks for CUDA only on Linux, not " + runtime.GOOS}
}
