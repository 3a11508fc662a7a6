package safetensors

import (
	"encoding/binary"
	"math"
)

// DecodeFloat32LE decodes little-endian IEEE 754 float32 values from src
// into dst, bit-for-bit (NaN payloads are preserved). It decodes
// min(len(dst), len(src)/4) values and returns that count; trailing bytes of
// src that do not form a whole value are ignored.
func DecodeFloat32LE(dst []float32, src []byte) int {
	n := min(len(dst), len(src)/4)
	dst, src = dst[:n], src[:4*n]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i : 4*i+4]))
	}
	return n
}

// EncodeFloat32LE encodes float32 values from src into dst as little-endian
// IEEE 754 bits (math.Float32bits, so NaN payloads are preserved). It
// encodes min(len(src), len(dst)/4) values and returns that count.
func EncodeFloat32LE(dst []byte, src []float32) int {
	n := min(len(src), len(dst)/4)
	dst, src = dst[:4*n], src[:n]
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:4*i+4], math.Float32bits(v))
	}
	return n
}

// Float16ToFloat32 converts IEEE 754 half-precision bits to a float32. The
// conversion is exact: subnormals become normal float32 values, infinities
// stay infinite and NaN payloads are kept in the top mantissa bits.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0 && mant == 0: // ±0
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalize
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// BFloat16ToFloat32 converts bfloat16 bits to a float32. The conversion is
// exact: bfloat16 is the upper half of a float32.
func BFloat16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// decodeFloat16LE decodes little-endian F16 values into float32, with
// DecodeFloat32LE's length semantics.
func decodeFloat16LE(dst []float32, src []byte) int {
	n := min(len(dst), len(src)/2)
	for i := range n {
		dst[i] = Float16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
	return n
}

// decodeBFloat16LE decodes little-endian BF16 values into float32, with
// DecodeFloat32LE's length semantics.
func decodeBFloat16LE(dst []float32, src []byte) int {
	n := min(len(dst), len(src)/2)
	for i := range n {
		dst[i] = BFloat16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
	return n
}

// decodeFloat64LE decodes little-endian F64 values, rounding each to the
// nearest float32, with DecodeFloat32LE's length semantics.
func decodeFloat64LE(dst []float32, src []byte) int {
	n := min(len(dst), len(src)/8)
	for i := range n {
		dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
	}
	return n
}
