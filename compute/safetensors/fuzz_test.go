package safetensors

import (
	"bytes"
	"math"
	"testing"
)

// FuzzParse feeds arbitrary bytes to NewReader. It must never panic, and
// every file it accepts must be self-consistent: the tensors cover the data
// buffer, every convertible tensor reads without error into a buffer sized
// from the validated header (so allocation is bounded by the input size),
// and writing the tensors back out and re-reading them reproduces the same
// header and bytes.
func FuzzParse(f *testing.F) {
	seeds := [][]byte{
		nil,
		prefixOnly(0, nil),
		buildFile(`{}`, nil),
		buildFile(`{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f32Bytes(1, 2)),
		buildFile(`{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},"b":{"dtype":"BF16","shape":[],"data_offsets":[2,4]}}`, []byte{0, 0x3c, 0x80, 0x3f}),
		buildFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f32Bytes(1, 2)),
		buildFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil),
		prefixOnly(DefaultMaxHeaderSize-1, []byte("{}")),
		mustWrite(f, []WriteTensor{
			{Name: "w", Shape: []int{2, 3}, F32: seq(6, -1)},
			{Name: "s", Shape: []int{}, F32: []float32{float32(math.NaN())}},
			{Name: "e", Shape: []int{0, 5}},
			{Name: "d", Shape: []int{2}, DType: F64, Raw: make([]byte, 16)},
			{Name: "i", Shape: []int{3}, DType: I8, Raw: []byte{1, 2, 3}},
		}, map[string]string{"round": "3", "k\n": "v\""}),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if file != nil {
				t.Fatal("non-nil File with error")
			}
			return
		}
		h := file.Header()
		if h.DataOffset+h.DataSize != int64(len(b)) {
			t.Fatalf("DataOffset %d + DataSize %d != input size %d", h.DataOffset, h.DataSize, len(b))
		}
		var next int64
		rewrite := make([]WriteTensor, 0, len(h.Tensors))
		for _, ti := range h.Tensors {
			if ti.Begin != next || ti.ByteSize() < 0 || ti.ByteSize() != ti.NumElements()*int64(ti.DType.Size()) {
				t.Fatalf("tensor %+v breaks coverage at %d", ti, next)
			}
			next = ti.End
			raw := make([]byte, ti.ByteSize()) // bounded: covered by the input
			if err := file.ReadRaw(ti.Name, raw); err != nil {
				t.Fatalf("ReadRaw(%q): %v", ti.Name, err)
			}
			if !bytes.Equal(raw, b[h.DataOffset+ti.Begin:h.DataOffset+ti.End]) {
				t.Fatalf("ReadRaw(%q) returned the wrong bytes", ti.Name)
			}
			switch ti.DType {
			case F32, F16, BF16, F64:
				vals, err := file.Float32s(ti.Name)
				if err != nil {
					t.Fatalf("Float32s(%q): %v", ti.Name, err)
				}
				if ti.DType == F32 {
					want := make([]float32, len(vals))
					DecodeFloat32LE(want, raw)
					if !sameBits(vals, want) {
						t.Fatalf("Float32s(%q) not bit-exact", ti.Name)
					}
				}
			}
			rewrite = append(rewrite, WriteTensor{Name: ti.Name, Shape: ti.Shape, DType: ti.DType, Raw: raw})
		}
		if next != h.DataSize {
			t.Fatalf("tensors cover %d of %d bytes", next, h.DataSize)
		}

		var out bytes.Buffer
		if err := Write(&out, rewrite, h.Metadata); err != nil {
			t.Fatalf("rewriting an accepted file: %v", err)
		}
		again := mustRead(t, out.Bytes())
		h2 := again.Header()
		if len(h2.Tensors) != len(h.Tensors) || !mapsEqual(h.Metadata, h2.Metadata) || h2.DataSize != h.DataSize {
			t.Fatalf("rewrite changed the header: %+v vs %+v", h, h2)
		}
		for i, ti := range h.Tensors {
			t2 := h2.Tensors[i]
			if t2.Name != ti.Name || t2.DType != ti.DType || t2.Begin != ti.Begin || t2.End != ti.End || len(t2.Shape) != len(ti.Shape) {
				t.Fatalf("rewrite changed tensor %d: %+v vs %+v", i, ti, t2)
			}
		}
		if !bytes.Equal(out.Bytes()[h2.DataOffset:], b[h.DataOffset:]) {
			t.Fatal("rewrite changed the data buffer")
		}
	})
}
