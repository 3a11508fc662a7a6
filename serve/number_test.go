package serve

import (
	"math"
	"math/big"
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
		"0.003921568859368563", "0.0039215687", "1.0000000596046448", "1.000000059604644775390625",
		"1.0000001788139343", "1.000000178813934326171875", "12345678901234567890123", "1234567890123456789e-40",
		"1e22", "1e23", "1e-22", "1e-23", "1.17549435e-38", "1.1754942e-38", "3.40282346638528859811704183484516925440e+38",
		"3.4028235677973366e38", "3.4028235677973367e38", "-0.000000000000000000000000001",
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
		// As Python and numpy clients write a float32: the shortest form of its float64.
		checkFP32(t, strconv.FormatFloat(float64(math.Float32frombits(r.Uint32())), 'g', -1, 64))
		checkFP32(t, strconv.FormatFloat(float64(float32(r.Float64())), 'g', -1, 64))
		// Up to 25 significant digits, past the 19 parseFP32 keeps.
		checkFP32(t, strconv.FormatFloat(r.Float64()*math.Pow(10, float64(r.IntN(12)-6)), 'e', 10+r.IntN(15), 64))
	}
}

func TestParseFP32Pixels(t *testing.T) {
	for b := range 256 {
		v := float32(b) / 255
		checkFP32(t, strconv.FormatFloat(float64(v), 'g', -1, 32))
		checkFP32(t, strconv.FormatFloat(float64(v), 'g', -1, 64))
		checkFP32(t, strconv.FormatFloat(float64(b)/255, 'g', -1, 64))
	}
}

// TestParseFP32Midpoints checks numbers at, just above and just below the points halfway
// between two neighbouring float32s, where a float64 estimate must not decide: written
// exactly (the tie, rounded to even) and off by one part in 2^90, in 60 digits.
func TestParseFP32Midpoints(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20_000 {
		v := math.Float32frombits(r.Uint32() &^ (1 << 31))
		if math.IsInf(float64(v), 0) || math.IsNaN(float64(v)) || v == math.MaxFloat32 {
			continue
		}
		mid := new(big.Float).SetPrec(200).SetFloat64(float64(v))
		mid.Add(mid, new(big.Float).SetFloat64(float64(math.Nextafter32(v, math.MaxFloat32))))
		mid.Quo(mid, big.NewFloat(2))
		eps := new(big.Float).SetPrec(200).Mul(mid, new(big.Float).SetMantExp(big.NewFloat(1), -90))
		for _, x := range []*big.Float{mid, new(big.Float).SetPrec(200).Add(mid, eps), new(big.Float).SetPrec(200).Sub(mid, eps)} {
			checkFP32(t, x.Text('e', 60))
			checkFP32(t, "-"+x.Text('e', 60))
		}
	}
}

// FuzzParseFP32 checks parseFP32 against strconv on arbitrary text.
func FuzzParseFP32(f *testing.F) {
	for _, s := range []string{"0", "-0.5", "0.1234567", "1e10", "3.4028236e38", "1e-46", "12345678", "0.00000000001",
		"0.003921568859368563", "1.00000005960464477539062500000001", "12345678901234567890123e-20"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkFP32(t, s) })
}

// BenchmarkParseFP32 is the cost of one number as clients write pixel values: a short
// decimal, float32's shortest form of byte/255 (7–9 digits), and the shortest form of
// the float64 that float32 widens to (16–17 digits, as Python and numpy write it); each
// against strconv.ParseFloat(s, 32).
func BenchmarkParseFP32(b *testing.B) {
	short := []string{"0", "0.537", "0.91", "-0.0625", "0.123456"}
	var f32, f64 []string
	for _, p := range []int{1, 37, 128, 200, 254} {
		f32 = append(f32, strconv.FormatFloat(float64(float32(p)/255), 'g', -1, 32))
		f64 = append(f64, strconv.FormatFloat(float64(float32(p)/255), 'g', -1, 64))
	}
	for _, c := range []struct {
		name string
		vals []string
	}{{"short", short}, {"float32", f32}, {"float64", f64}} {
		vals := make([][]byte, len(c.vals))
		for i, v := range c.vals {
			vals[i] = []byte(v)
		}
		b.Run(c.name+"/parseFP32", func(b *testing.B) {
			for b.Loop() {
				for _, v := range vals {
					if _, err := parseFP32(v); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(c.name+"/strconv", func(b *testing.B) {
			for b.Loop() {
				for _, v := range vals {
					if _, err := strconv.ParseFloat(string(v), 32); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
