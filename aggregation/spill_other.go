//go:build !unix

package aggregation

import (
	"fmt"
	"os"
)

// mapSpill reads the first n float32 values of the spill file f back into memory, where
// there is no mmap: the spilled rows then count against the heap while Finish runs.
func mapSpill(f *os.File, n int) ([]float32, func(), error) {
	v := make([]float32, n)
	if _, err := f.ReadAt(float32Bytes(v), 0); err != nil {
		return nil, nil, fmt.Errorf("aggregation: reading the spill file back: %w", err)
	}
	return v, func() {}, nil
}
