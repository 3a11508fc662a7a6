package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
)

// buildFile assembles a safetensors file from a raw JSON header (padded to
// a multiple of 8 with spaces) followed by data.
func buildFile(header string, data []byte) []byte {
	for len(header)%8 != 0 {
		header += " "
	}
	var b bytes.Buffer
	var prefix [8]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(len(header)))
	b.Write(prefix[:])
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

// prefixOnly returns an 8-byte header length prefix claiming n bytes,
// followed by extra.
func prefixOnly(n uint64, extra []byte) []byte {
	var prefix [8]byte
	binary.LittleEndian.PutUint64(prefix[:], n)
	return append(prefix[:], extra...)
}

// f32Bytes encodes values little-endian.
func f32Bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	EncodeFloat32LE(b, v)
	return b
}

// mustWrite writes tensors to memory, failing the test on error.
func mustWrite(tb testing.TB, tensors []WriteTensor, metadata map[string]string) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, tensors, metadata); err != nil {
		tb.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// mustRead parses b, failing the test on error.
func mustRead(tb testing.TB, b []byte) *File {
	tb.Helper()
	f, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		tb.Fatalf("NewReader: %v", err)
	}
	return f
}

// sameBits reports whether a and b are equal bit-for-bit.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// seq returns n float32 values start, start+1, ...
func seq(n int, start float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = start + float32(i)
	}
	return v
}
