package blas

import (
	"slices"
	"time"
)

// PeakGFLOPS measures the floating-point ceiling of one core: the rate of a loop of
// independent fused multiply-adds on registers with the widest vector unit, best of
// reps runs of about d each. It returns 0 where there is no assembly kernel. Training
// speeds are quoted as a share of this figure.
func PeakGFLOPS(d time.Duration, reps int) float64 {
	loop, flops := peakLoop()
	if loop == nil {
		return 0
	}
	n := 1 << 16
	for { // calibrate
		start := time.Now()
		loop(n)
		if el := time.Since(start); el > d/8 || n > 1<<40 {
			n = int(float64(n) * float64(d) / float64(el))
			break
		}
		n *= 4
	}
	rates := make([]float64, max(reps, 1))
	for i := range rates {
		start := time.Now()
		loop(n)
		rates[i] = float64(n) * flops / time.Since(start).Seconds() / 1e9
	}
	return slices.Max(rates)
}
