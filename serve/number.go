package serve

import (
	"math"
	"strconv"
)

// float32Pow10 are the powers of ten that float32 holds exactly.
var float32Pow10 = [...]float32{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10}

// parseFP32 converts a JSON number (its grammar already checked: -?int frac? exp?) to
// the nearest float32, exactly as strconv.ParseFloat(s, 32) does. Pixel values and
// logits are short decimals; for those — at most seven significant digits and a power
// of ten float32 holds exactly — one float32 multiply or divide of exact operands is
// the correctly rounded result (Clinger's fast path, the one strconv takes too). It is
// taken here without strconv's general parsing, which was most of the cost of reading
// a request's pixels; every other number goes to strconv.
func parseFP32(s []byte) (float32, error) {
	i, neg := 0, false
	if i < len(s) && s[i] == '-' {
		neg, i = true, i+1
	}
	var mant uint64
	digits, exp, start := 0, 0, i
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if mant != 0 || s[i] != '0' {
			digits++
		}
		mant = mant*10 + uint64(s[i]-'0')
		if digits > 7 {
			return slowFP32(s)
		}
	}
	mantDigits := i - start
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			mantDigits++
			if mant != 0 || s[i] != '0' {
				digits++
			}
			mant = mant*10 + uint64(s[i]-'0')
			exp--
			if digits > 7 || exp < -10 {
				return slowFP32(s)
			}
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg, i = s[i] == '-', i+1
		}
		e, estart := 0, i
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			e = e*10 + int(s[i]-'0')
			if e > 100 {
				return slowFP32(s)
			}
		}
		if i == estart {
			return slowFP32(s) // an exponent without digits
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(s) || mantDigits == 0 {
		return slowFP32(s) // not a number this parser knows: strconv says why
	}
	f := float32(mant) // exact: mant < 10^7 < 2^24
	if neg {
		f = -f
	}
	switch {
	case mant == 0 || exp == 0:
		return f, nil
	case exp > 0 && exp <= 10:
		return f * float32Pow10[exp], nil // at most 9999999e10: finite
	case exp < 0 && exp >= -10:
		return f / float32Pow10[-exp], nil
	}
	return slowFP32(s)
}

// slowFP32 is parseFP32 through strconv.
func slowFP32(s []byte) (float32, error) {
	v, err := strconv.ParseFloat(string(s), 32)
	if err != nil {
		return 0, err
	}
	return float32(v), finite(float32(v))
}

// finite refuses infinities (a float32 overflow) and NaN.
func finite(f float32) error {
	if math.IsInf(float64(f), 0) || math.IsNaN(float64(f)) {
		return strconv.ErrRange
	}
	return nil
}
