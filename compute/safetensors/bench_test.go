package safetensors

import (
	"bytes"
	"io"
	"testing"
)

// benchElems is the size of the benchmark tensor, about a small CNN's
// parameter count.
const benchElems = 1_600_000

func BenchmarkWriteFloat32(b *testing.B) {
	tensors := []WriteTensor{{Name: "w", Shape: []int{1600, 1000}, F32: seq(benchElems, 0)}}
	b.SetBytes(4 * benchElems)
	b.ReportAllocs()
	for b.Loop() {
		if err := Write(io.Discard, tensors, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadFloat32(b *testing.B) {
	data := mustWrite(b, []WriteTensor{{Name: "w", Shape: []int{1600, 1000}, F32: seq(benchElems, 0)}}, nil)
	dst := make([]float32, benchElems)
	b.SetBytes(4 * benchElems)
	b.ReportAllocs()
	for b.Loop() {
		f, err := NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			b.Fatal(err)
		}
		if err := f.ReadFloat32("w", dst); err != nil {
			b.Fatal(err)
		}
	}
}
