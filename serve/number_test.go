package serve

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// wantFP32 is strconv's answer for s: the float32 and whether it is finite.
func wantFP32(s string) (float32, bool) {
	v, err := strconv.ParseFloat(s, 32)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return float32(v), true
}

// checkFP32 fails t unless parseFP32 agrees with strconv.ParseFloat(s, 32) to the bit.
func checkFP32(t *testing.T, s string) {
	t.Helper()
	got, err := parseFP32([]byte(s))
	want, ok := wantFP32(s)
	if ok != (err == nil) {
		t.Fatalf("parseFP32(%q): error %v, strconv finite %v", s, err, ok)
	}
	if ok && math.Float32bits(got) != math.Float32bits(want) {
		t.Fatalf("parseFP32(%q) = %v (%#x), strconv %v (%#x)", s, got, math.Float32bits(got), want, math.Float32bits(want))
	}
}

func TestParseFP32(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "0.0", "-0.000", "1", "-1", "0.5", "0.123", "0.1234567", "0.12345678", "9999999",
		"99999999", "16777216", "16777217", "0.1", "0.2", "0.3", "1e10", "9999999e10", "1e11",
		"1e-10", "1.5e-3", "1E+2", "3.4028235e38", "3.4028236e38", "1e39", "-1e39", "1e-45",
		"1e-46", "7e-46", "0.0000000001", "0.00000000001", "123456.7", "1.000000000000000000001",
		"1e100", "1e-100", "1e999", "0.9999999", "8388607", "8388609.5", "", "-", "1.", ".5",
		"1e", "1e+", "--1", "1x",
	} {
		t.Run(s, func(t *testing.T) { checkFP32(t, s) })
	}
	// Random short decimals, as pixels and logits are written, and random float32
	// values in their shortest form.
	r := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		checkFP32(t, strconv.FormatFloat(r.Float64()*2-1, 'f', r.IntN(9), 64))
		checkFP32(t, strconv.FormatFloat(float64(math.Float32frombits(r.Uint32())), 'g', -1, 32))
		checkFP32(t, strconv.FormatFloat(r.NormFloat64()*math.Pow(10, float64(r.IntN(30)-15)), 'e', r.IntN(9), 64))
	}
}

// FuzzParseFP32 checks parseFP32 against strconv on arbitrary text.
func FuzzParseFP32(f *testing.F) {
	for _, s := range []string{"0", "-0.5", "0.1234567", "1e10", "3.4028236e38", "1e-46", "12345678", "0.00000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkFP32(t, s) })
}

// BenchmarkParseFP32 is the cost of one pixel value: a short decimal.
func BenchmarkParseFP32(b *testing.B) {
	vals := [][]byte{[]byte("0"), []byte("0.537"), []byte("0.91"), []byte("-0.0625"), []byte("0.123456")}
	b.Run("parseFP32", func(b *testing.B) {
		for b.Loop() {
			for _, v := range vals {
				if _, err := parseFP32(v); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("strconv", func(b *testing.B) {
		for b.Loop() {
			for _, v := range vals {
				if _, err := strconv.ParseFloat(string(v), 32); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
