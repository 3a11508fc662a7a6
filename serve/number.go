package serve

import (
	"math"
	"strconv"
)

// float64Pow10 are the powers of ten that float64 holds exactly.
var float64Pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// midpointMargin is how close, in units in the last place of a float64, an estimate may
// come to a point halfway between two float32s before parseFP32 asks strconv instead.
// The estimate's error is at most about 2.1 such units (see parseFP32); the margin is
// far above it.
const midpointMargin = 16

// parseFP32 converts a JSON number (its grammar already checked: -?int frac? exp?) to
// the nearest float32, exactly as strconv.ParseFloat(s, 32) does, without strconv's
// general parsing for the numbers clients send: pixel values and logits, written as
// float32's shortest form (up to 9 digits) or as the float64 a float32 widens to (up to
// 17, as Python and numpy write them).
//
// It reads up to 19 significant digits into an integer m (later digits are dropped) and
// a decimal exponent k, and estimates x = m × 10^k as the float64 r = float64(m) × or ÷
// 10^|k|, for |k| ≤ 22 (10^|k| exact in float64). r's relative error is at most 2^-53
// from rounding float64(m), 2^-53 from the product or quotient and under 10^-18 from the
// dropped digits: under 2^-51.9, which is under 2.1 units in r's last place (a unit is
// at least 2^-53 of r). The only values where rounding to float32 decides are the midpoints
// between neighbouring float32s; in r's binade those are the float64s whose 29 low
// fraction bits are 1 followed by 28 zeros. Unless r is within midpointMargin units of
// one, x and r lie on the same side of every midpoint and round to the same float32,
// so float32(r) is the correctly rounded answer. Anything else — near a midpoint, a
// float32 subnormal or overflow, |k| > 22, or text that is not a plain number — goes to
// strconv.
func parseFP32(s []byte) (float32, error) {
	i, neg := 0, false
	if i < len(s) && s[i] == '-' {
		neg, i = true, i+1
	}
	var mant uint64
	digits, exp, start := 0, 0, i
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		switch {
		case digits < 19:
			if mant != 0 || s[i] != '0' {
				digits++
			}
			mant = mant*10 + uint64(s[i]-'0')
		default:
			exp++ // a dropped digit of the integer part
		}
	}
	mantDigits := i - start
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			mantDigits++
			if digits < 19 {
				if mant != 0 || s[i] != '0' {
					digits++
				}
				mant = mant*10 + uint64(s[i]-'0')
				exp--
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
			if e > 1000 {
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
	if mant == 0 {
		if neg {
			return float32(math.Copysign(0, -1)), nil
		}
		return 0, nil
	}
	if exp < -len(float64Pow10)+1 || exp > len(float64Pow10)-1 {
		return slowFP32(s)
	}
	r := float64(mant)
	if exp >= 0 {
		r *= float64Pow10[exp]
	} else {
		r /= float64Pow10[-exp]
	}
	if r < 0x1p-126 || r >= math.MaxFloat32 {
		return slowFP32(s) // a float32 subnormal, or near overflow
	}
	const low = 1<<29 - 1 // float64 fraction bits below float32's
	if d := int64(math.Float64bits(r)&low) - 1<<28; -midpointMargin <= d && d <= midpointMargin {
		return slowFP32(s) // too near a midpoint to know which way x rounds
	}
	f := float32(r)
	if neg {
		f = -f
	}
	return f, nil
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
