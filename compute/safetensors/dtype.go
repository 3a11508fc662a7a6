// Package safetensors reads and writes files in the safetensors format
// (https://github.com/huggingface/safetensors).
//
// A safetensors file is laid out as:
//
//	[8 bytes]  N, a little-endian uint64: the size of the JSON header
//	[N bytes]  a UTF-8 JSON object describing the tensors
//	[rest]     the data buffer holding every tensor's raw little-endian bytes
//
// The JSON header maps each tensor name to an object
// {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, where the
// offsets are relative to the start of the data buffer. An optional
// "__metadata__" entry holds a string-to-string map of free-form metadata.
//
// Reading validates the header the way the reference implementation does
// (size limit, known dtypes, byte counts that match shapes, tensors that cover
// the data buffer exactly with no overlaps or holes) and additionally rejects
// duplicate keys, which encoding/json would silently merge. No allocation is
// ever sized from a claimed length before that length has been checked
// against the real size of the input.
//
// Writing is streaming and deterministic: tensors are laid out in the order
// given, the header is padded with spaces to a multiple of 8 bytes, and
// float32 values are encoded bit-for-bit (NaN payloads included).
package safetensors

// DType names the element type of a tensor, spelled as in the safetensors
// header ("F32", "BF16", "I64", ...).
type DType string

// Element types understood by this package. Sub-byte types of the reference
// implementation (F4, F6_E2M3, F6_E3M2) are not supported and are rejected as
// unknown when reading.
const (
	// Bool is a boolean stored as one byte.
	Bool DType = "BOOL"
	// U8 is an unsigned 8-bit integer.
	U8 DType = "U8"
	// I8 is a signed 8-bit integer.
	I8 DType = "I8"
	// F8E5M2 is an 8-bit float with 5 exponent and 2 mantissa bits.
	F8E5M2 DType = "F8_E5M2"
	// F8E4M3 is an 8-bit float with 4 exponent and 3 mantissa bits.
	F8E4M3 DType = "F8_E4M3"
	// F8E8M0 is an 8-bit exponent-only float (a power-of-two scale).
	F8E8M0 DType = "F8_E8M0"
	// I16 is a signed 16-bit integer.
	I16 DType = "I16"
	// U16 is an unsigned 16-bit integer.
	U16 DType = "U16"
	// F16 is an IEEE 754 half-precision float.
	F16 DType = "F16"
	// BF16 is a bfloat16 (the upper 16 bits of a float32).
	BF16 DType = "BF16"
	// I32 is a signed 32-bit integer.
	I32 DType = "I32"
	// U32 is an unsigned 32-bit integer.
	U32 DType = "U32"
	// F32 is an IEEE 754 single-precision float.
	F32 DType = "F32"
	// C64 is a complex number made of two float32 values.
	C64 DType = "C64"
	// F64 is an IEEE 754 double-precision float.
	F64 DType = "F64"
	// I64 is a signed 64-bit integer.
	I64 DType = "I64"
	// U64 is an unsigned 64-bit integer.
	U64 DType = "U64"
)

// Size returns the number of bytes per element of d, or 0 if d is not a
// dtype this package understands.
func (d DType) Size() int {
	switch d {
	case Bool, U8, I8, F8E5M2, F8E4M3, F8E8M0:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case C64, F64, I64, U64:
		return 8
	}
	return 0
}

// Valid reports whether d is a dtype this package understands.
func (d DType) Valid() bool { return d.Size() > 0 }

// String returns the dtype as spelled in a safetensors header.
func (d DType) String() string { return string(d) }
