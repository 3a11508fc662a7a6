package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"unsafe"
)

// Quantize writes the fixed-point form of an update of weight w into dst, which must
// have length len(update)+1: each value is multiplied by s = min(w, MaxWeight)/MaxWeight,
// clipped to [-Clip, Clip], mapped affinely onto [0, Levels] and rounded stochastically
// (up with probability equal to the fraction, so the rounding is unbiased); the last
// element is s itself. rng drives the rounding. Non-finite values are refused.
func (c *Config) Quantize(dst []uint32, update []float32, w float64, rng *rand.Rand) error {
	if len(dst) != c.Dim || len(update) != c.Dim-1 {
		return fmt.Errorf("secagg: update of %d values, round expects %d", len(update), c.Dim-1)
	}
	if !(w > 0) || math.IsInf(w, 0) {
		return fmt.Errorf("secagg: weight %g: must be positive and finite", w)
	}
	s := math.Min(w, c.MaxWeight) / c.MaxWeight
	clip, levels := c.Clip, c.Levels
	scale := float64(levels) / (2 * clip)
	// Stochastic rounding: up with probability equal to the fraction, from 32 random
	// bits per value.
	var bits uint64
	for i := range dst {
		x := s
		if i < len(update) {
			v := float64(update[i])
			if v != v || math.IsInf(v, 0) {
				return fmt.Errorf("secagg: value %d of the update is %g", i, v)
			}
			x = v * s
		}
		if x < -clip {
			x = -clip
		} else if x > clip {
			x = clip
		}
		f := (x + clip) * scale // in [0, levels]
		r := uint32(f)
		if i&1 == 0 {
			bits = rng.Uint64()
		} else {
			bits >>= 32
		}
		if float64(uint32(bits)) < (f-float64(r))*(1<<32) && r < levels {
			r++
		}
		dst[i] = r
	}
	return nil
}

// Dequantize turns the unmasked sum of count members' quantized vectors into the
// weighted mean of their updates, written to dst (length Dim-1), and returns the total
// weight in units of MaxWeight.
func (c *Config) Dequantize(dst []float32, sum []uint32, count int) (float64, error) {
	if len(sum) != c.Dim || len(dst) != c.Dim-1 {
		return 0, fmt.Errorf("secagg: sum of %d values, round has %d", len(sum), c.Dim)
	}
	step := 2 * c.Clip / float64(c.Levels)
	off := float64(count) * c.Clip
	value := func(q uint32) float64 { return float64(q)*step - off }
	total := value(sum[c.Dim-1])
	if !(total > 0) {
		return 0, fmt.Errorf("secagg: the summed weight is %g: nothing to average", total)
	}
	for i := range dst {
		dst[i] = float32(value(sum[i]) / total)
	}
	return total, nil
}

// maskKey derives the AES-256 key of a mask from secret material, bound to the round.
func maskKey(digest [32]byte, secret []byte, label string) []byte {
	k, err := hkdf.Key(sha256.New, secret, digest[:], "fedq/secagg/v1/"+label, 32)
	if err != nil {
		panic(err) // only for lengths beyond HKDF's limit
	}
	return k
}

// pairLabel names the pairwise mask of members i < j.
func pairLabel(i, j int) string {
	if i > j {
		i, j = j, i
	}
	return fmt.Sprintf("pair/%d/%d", i, j)
}

// maskChunk is how many words of mask are expanded at a time.
const maskChunk = 16 << 10

// littleEndian reports whether this machine stores words little-endian, as the masks'
// key streams are read.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// applyMask adds (sub = false) or subtracts the mask that key expands to onto v, modulo
// 2^32: AES-256-CTR with a zero IV over zeros, read as little-endian words.
func applyMask(v []uint32, key []byte, sub bool) {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // keys are always 32 bytes
	}
	var iv [aes.BlockSize]byte
	stream := cipher.NewCTR(block, iv[:])
	words := make([]uint32, min(maskChunk, len(v)))
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), 4*len(words))
	for len(v) > 0 {
		n := min(len(v), maskChunk)
		w, b := words[:n], raw[:4*n]
		clear(b)
		stream.XORKeyStream(b, b)
		if !littleEndian {
			for i := range w {
				w[i] = binary.LittleEndian.Uint32(b[4*i:])
			}
		}
		if sub {
			for i, x := range w {
				v[i] -= x
			}
		} else {
			for i, x := range w {
				v[i] += x
			}
		}
		v = v[n:]
	}
}
