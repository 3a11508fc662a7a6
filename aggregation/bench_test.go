package aggregation

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// heapPeak samples the heap in use and keeps its maximum.
type heapPeak struct {
	ms  runtime.MemStats
	max uint64
}

// sample reads the heap in use now.
func (p *heapPeak) sample() {
	runtime.ReadMemStats(&p.ms)
	p.max = max(p.max, p.ms.HeapInuse)
}

// report adds the peak to the benchmark's results, in MB.
func (p *heapPeak) report(b *testing.B) {
	b.ReportMetric(float64(p.max)/1e6, "peak-MB")
}

// benchValues returns n normally distributed values from a fixed seed.
func benchValues(n int) []float32 {
	r := rand.New(rand.NewPCG(11, 12))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// fedAvgRound is the FedAvg strategy's aggregator for a model of size parameters.
func fedAvgRound(b *testing.B, size int) Aggregator {
	s, err := New("fedavg", nil, Options{})
	if err != nil {
		b.Fatal(err)
	}
	return s.NewRound(size)
}

// BenchmarkCopy40MB is the machine's plain-copy memory bandwidth, for scale.
func BenchmarkCopy40MB(b *testing.B) {
	const size = 10_000_000
	src := benchValues(size)
	dst := make([]float32, size)
	copy(dst, src) // fault dst's pages in before timing
	b.SetBytes(size * 4)
	for b.Loop() {
		copy(dst, src)
	}
}

// BenchmarkFedAvg100x10M folds updates of a 10M-parameter model into FedAvg's one
// accumulator, reusing one staging buffer as the coordinator does. MB/s is of updates
// folded; peak-MB, the heap in use, is the same for 10 and for 100 updates.
func BenchmarkFedAvg100x10M(b *testing.B) {
	const size = 10_000_000
	for _, updates := range []int{10, 100} {
		b.Run(fmt.Sprintf("updates=%d", updates), func(b *testing.B) {
			update := benchValues(size)
			accum := make([]float32, size)
			agg := fedAvgRound(b, size)
			var peak heapPeak
			runtime.GC()
			b.SetBytes(int64(updates) * size * 4)
			b.ResetTimer()
			for range b.N {
				agg.Reset(accum)
				for range updates {
					if err := agg.Add(update, 100); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := agg.Finish(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				peak.sample()
				b.StartTimer()
			}
			peak.report(b)
		})
	}
}

// benchRobust times rounds of agg over n updates of size values: the Adds (which copy
// or spill each update) and Finish. The updates are windows of one random slab shifted
// by one value each, so that every coordinate sees n distinct values without n
// model-sized inputs in memory. peak-MB is the heap in use, sampled after every Add
// (the input slab and the output included).
func benchRobust(b *testing.B, n, size int, newAgg func(size int, b Buffering) Aggregator) {
	slab := benchValues(size + n)
	for _, bc := range []struct {
		name string
		buf  Buffering
	}{
		{"memory", Buffering{}},
		{"spill", Buffering{MemoryBytes: int64(n*size*4) / 4, Dir: b.TempDir()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			agg := newAgg(size, bc.buf)
			out := make([]float32, size)
			var peak heapPeak
			runtime.GC()
			b.SetBytes(int64(n) * int64(size) * 4)
			b.ResetTimer()
			for range b.N {
				agg.Reset(out)
				for i := range n {
					if err := agg.Add(slab[i:i+size], uint64(1+i)); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					peak.sample()
					b.StartTimer()
				}
				if _, err := agg.Finish(); err != nil {
					b.Fatal(err)
				}
				// Rounds are far apart in a coordinator: collect the round's rows
				// before the next, so that peak-MB is one round's.
				b.StopTimer()
				runtime.GC()
				b.StartTimer()
			}
			peak.report(b)
		})
	}
}

// BenchmarkMedian100x1M is the coordinate-wise median of 100 updates of 1M parameters,
// all in memory and with three quarters of them spilled to a file.
func BenchmarkMedian100x1M(b *testing.B) {
	benchRobust(b, 100, 1_000_000, newMedian)
}

// BenchmarkTrimmedMean100x1M is the coordinate-wise 10%-trimmed mean of 100 updates of
// 1M parameters, in memory and spilling.
func BenchmarkTrimmedMean100x1M(b *testing.B) {
	benchRobust(b, 100, 1_000_000, func(size int, buf Buffering) Aggregator {
		return newTrimmedMean(size, 0.1, buf)
	})
}

// BenchmarkKrum20x1M is Krum (f = 4) over 20 updates of 1M parameters, in memory and
// spilling; its cost is dominated by the 190 pairwise distances.
func BenchmarkKrum20x1M(b *testing.B) {
	benchRobust(b, 20, 1_000_000, func(size int, buf Buffering) Aggregator {
		return newKrum(size, 4, 1, buf)
	})
}

// BenchmarkCheckUpdate10M checks a 10M-value update, as the coordinator does for each
// upload before folding it.
func BenchmarkCheckUpdate10M(b *testing.B) {
	u := make([]float32, 10_000_000)
	for i := range u {
		u[i] = float32(i%1000) * 1e-3
	}
	b.SetBytes(int64(4 * len(u)))
	for b.Loop() {
		if err := CheckUpdate(u, len(u)); err != nil {
			b.Fatal(err)
		}
	}
}
