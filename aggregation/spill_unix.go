//go:build unix

package aggregation

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// mapSpill maps the first n float32 values of the spill file f read-only into memory
// (the operating system's page cache, outside the heap) and returns them with the
// function that unmaps them.
func mapSpill(f *os.File, n int) ([]float32, func(), error) {
	conn, err := f.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("aggregation: mapping the spill file: %w", err)
	}
	var data []byte
	var mapErr error
	if err := conn.Control(func(fd uintptr) {
		data, mapErr = syscall.Mmap(int(fd), 0, n*4, syscall.PROT_READ, syscall.MAP_SHARED)
	}); err != nil {
		return nil, nil, fmt.Errorf("aggregation: mapping the spill file: %w", err)
	}
	if mapErr != nil {
		return nil, nil, fmt.Errorf("aggregation: mapping the spill file: %w", mapErr)
	}
	v := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(data))), n)
	return v, func() { syscall.Munmap(data) }, nil
}
