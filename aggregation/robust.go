package aggregation

// Robust aggregators: coordinate-wise median, coordinate-wise trimmed mean and
// (Multi-)Krum. Unlike FedAvg they need every update of a round at once, so they keep
// the updates as rows of a rowStore: in memory up to Buffering's budget, then in an
// unlinked spill file that Finish memory-maps (or, where mmap is unavailable, reads
// back). Finish works in blocks of coordinates on GOMAXPROCS goroutines, each with its
// own scratch, and its result depends only on the updates and their order — not on the
// number of goroutines nor on which rows were spilled.

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// newMedian returns an aggregator of the coordinate-wise median (Yin et al. 2018):
// unweighted; for an even number of updates, the mean of the two middle values.
func newMedian(size int, b Buffering) Aggregator {
	return &orderStatAgg{rowKeeper: newRowKeeper(size, b), median: true}
}

// newTrimmedMean returns an aggregator of the coordinate-wise β-trimmed mean (Yin et al.
// 2018): per coordinate, the k = ⌊β·n⌋ smallest and the k largest of the n values are
// dropped and the rest averaged, unweighted. The caller validates beta ∈ [0, 0.5);
// Finish still refuses a beta that would leave no value.
func newTrimmedMean(size int, beta float64, b Buffering) Aggregator {
	return &orderStatAgg{rowKeeper: newRowKeeper(size, b), beta: beta}
}

// newKrum returns a Krum aggregator (Blanchard et al. 2017) tolerating f Byzantine
// updates. Each update is scored by the sum of its squared L2 distances to its n−f−2
// nearest other updates; with m == 1 (Krum) the lowest-scoring update is the result,
// with m > 1 (Multi-Krum) the example-weighted mean of the m lowest-scoring ones, and
// m == 0 means m = n − f. It needs n > 2f+2 updates.
func newKrum(size, f, m int, b Buffering) Aggregator {
	return &krumAgg{rowKeeper: newRowKeeper(size, b), f: f, m: m}
}

// The robust aggregators are Aggregators.
var (
	_ Aggregator = (*orderStatAgg)(nil)
	_ Aggregator = (*krumAgg)(nil)
)

// rowKeeper is what the robust aggregators share: the round's output buffer, its
// updates (rows) with their example counts, and the Aggregator bookkeeping.
type rowKeeper struct {
	size     int
	out      []float32 // the buffer Reset gave; valid while active
	active   bool      // Reset was called and Finish has not succeeded since
	rows     rowStore
	weights  []uint64 // example count of each row, in the order added
	examples uint64
}

// newRowKeeper returns a rowKeeper for updates of size values under budget b. It needs
// Reset before Add.
func newRowKeeper(size int, b Buffering) rowKeeper {
	return rowKeeper{size: size, rows: rowStore{size: size, budget: b.budget(), dir: b.Dir}}
}

// Add keeps a copy of the update: the caller may reuse its buffer at once.
func (a *rowKeeper) Add(u []float32, examples uint64) error {
	if !a.active {
		return errors.New("aggregation: Add without an accumulator (call Reset first)")
	}
	if len(u) != a.size {
		return fmt.Errorf("aggregation: update has %d values, want %d", len(u), a.size)
	}
	if examples == 0 {
		return errors.New("aggregation: an update trained on no examples")
	}
	if err := a.rows.add(u); err != nil {
		return err
	}
	a.weights = append(a.weights, examples)
	a.examples += examples
	return nil
}

// Count is how many updates were added since Reset.
func (a *rowKeeper) Count() int { return len(a.weights) }

// Examples is the sum of their example counts.
func (a *rowKeeper) Examples() uint64 { return a.examples }

// Reset starts a new round with buf (len(buf) = size) as the output, which it zeroes. It
// releases the previous round's rows and spill file, whether or not that round finished.
func (a *rowKeeper) Reset(buf []float32) {
	if len(buf) != a.size {
		panic(fmt.Sprintf("aggregation: Reset with %d values for a model of %d", len(buf), a.size))
	}
	a.rows.release()
	clear(buf)
	a.out, a.active = buf, true
	a.weights, a.examples = a.weights[:0], 0
}

// begin checks that Finish may run. A failed Finish leaves the round as it was: more
// updates may be added and Finish retried, or Reset starts over.
func (a *rowKeeper) begin() error {
	if a.Count() == 0 {
		return ErrNoUpdates
	}
	if !a.active {
		return errors.New("aggregation: Finish without an accumulator (call Reset first)")
	}
	return nil
}

// done ends a successful Finish: it drops the rows and hands over the output buffer.
func (a *rowKeeper) done() []float32 {
	a.rows.release()
	out := a.out
	a.out, a.active = nil, false
	return out
}

// rowStore holds a round's updates as rows of size values: in memory while their total
// stays within budget bytes, the following ones appended to a spill file.
type rowStore struct {
	size   int
	budget int64
	dir    string
	mem    [][]float32 // the rows in memory, first in order
	file   *os.File    // the spill file, nil until a row spills
	name   string      // the spill file's name where it could not be unlinked while open
	nfile  int         // rows in the spill file, which follow mem's
}

// len is the number of rows.
func (s *rowStore) len() int { return len(s.mem) + s.nfile }

// add appends a copy of u.
func (s *rowStore) add(u []float32) error {
	rowBytes := int64(s.size) * 4
	if s.nfile == 0 && int64(len(s.mem)+1)*rowBytes <= s.budget {
		row := make([]float32, s.size)
		copy(row, u)
		s.mem = append(s.mem, row)
		return nil
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.dir, "fedq-updates-*")
		if err != nil {
			return fmt.Errorf("aggregation: creating a spill file: %w", err)
		}
		// Unlinked at once: the data lives as long as the descriptor, and a crash
		// leaves nothing behind. Systems that cannot unlink an open file remove it on
		// release.
		if err := os.Remove(f.Name()); err != nil {
			s.name = f.Name()
		}
		s.file = f
	}
	// WriteAt at the row's own offset: after a failed (partial) write, the next
	// row overwrites the debris.
	if _, err := s.file.WriteAt(float32Bytes(u), int64(s.nfile)*rowBytes); err != nil {
		return fmt.Errorf("aggregation: spilling an update: %w", err)
	}
	s.nfile++
	return nil
}

// view returns every row, in order, those in the spill file mapped (or read back) from
// it, and a function that releases the mapping; the rows are invalid after it.
func (s *rowStore) view() ([][]float32, func(), error) {
	rows := make([][]float32, 0, s.len())
	rows = append(rows, s.mem...)
	if s.nfile == 0 {
		return rows, func() {}, nil
	}
	if int64(s.nfile)*int64(s.size) > math.MaxInt/4 {
		return nil, nil, fmt.Errorf("aggregation: %d spilled updates of %d values exceed the address space", s.nfile, s.size)
	}
	data, unmap, err := mapSpill(s.file, s.nfile*s.size)
	if err != nil {
		return nil, nil, err
	}
	for i := range s.nfile {
		rows = append(rows, data[i*s.size:(i+1)*s.size:(i+1)*s.size])
	}
	return rows, unmap, nil
}

// release drops every row: the memory ones to the garbage collector, the spill file
// closed (and so freed).
func (s *rowStore) release() {
	s.mem = nil
	if s.file != nil {
		s.file.Close()
		if s.name != "" {
			os.Remove(s.name)
		}
	}
	s.file, s.name, s.nfile = nil, "", 0
}

// float32Bytes views v's memory as bytes, in the machine's byte order (a spill file is
// read back by the process that wrote it).
func float32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*4)
}

// orderStatAgg is the coordinate-wise median (median) or β-trimmed mean (beta).
type orderStatAgg struct {
	rowKeeper
	median bool
	beta   float64
}

// trimCount is the number k of values dropped at each end of n ≥ 1 for the trimmed mean
// (β ≥ 0), and whether n − 2k ≥ 1 values are left. β·n gets a little slack so that e.g.
// β = 0.29, n = 100 trims 29 although 0.29·100 < 29 in binary.
func trimCount(beta float64, n int) (int, bool) {
	k := math.Floor(beta*float64(n) + 1e-9)
	if !(2*k <= float64(n-1)) {
		return 0, false
	}
	return int(k), true
}

// Finish computes the median or trimmed mean of every coordinate into the Reset buffer.
func (a *orderStatAgg) Finish() ([]float32, error) {
	if err := a.begin(); err != nil {
		return nil, err
	}
	n := a.Count()
	var reduce func(v []float32) float32
	if a.median {
		reduce = medianOf
	} else {
		if !(a.beta >= 0) {
			return nil, fmt.Errorf("aggregation: trimmed mean: β = %v is not in [0, 0.5)", a.beta)
		}
		k, ok := trimCount(a.beta, n)
		if !ok {
			return nil, fmt.Errorf("aggregation: trimmed mean: trimming ⌊β·n⌋ = ⌊%v·%d⌋ updates at each end leaves none (β must be < 0.5)", a.beta, n)
		}
		reduce = func(v []float32) float32 { return trimmedMeanOf(v, k) }
	}
	rows, release, err := a.rows.view()
	if err != nil {
		return nil, err
	}
	defer release()
	out, size := a.out, a.size
	blk := orderStatBlock(n)
	nb := (size + blk - 1) / blk
	runParallel(nb, func() func(int) {
		scratch := make([]float32, n*blk)
		return func(b int) {
			c0, c1 := b*blk, min(b*blk+blk, size)
			gatherColumns(scratch, rows, c0, c1)
			dst := out[c0:c1]
			for j := range dst {
				dst[j] = reduce(scratch[j*n : (j+1)*n : (j+1)*n])
			}
		}
	})
	return a.done(), nil
}

// orderStatBlock is how many coordinates a worker gathers at a time for n updates: about
// 1 MiB of scratch, 256 to 4096 coordinates, a multiple of 16.
func orderStatBlock(n int) int {
	return min(max((1<<18)/max(n, 1), 256), 4096) &^ 15
}

// gatherColumns copies rows[i][c0:c1] into dst transposed: coordinate c0+j's values are
// dst[j·n : (j+1)·n], n = len(rows), in row order.
func gatherColumns(dst []float32, rows [][]float32, c0, c1 int) {
	n, w := len(rows), c1-c0
	i := 0
	for ; i+4 <= n; i += 4 {
		r0 := rows[i][c0:c1]
		r1 := rows[i+1][c0:c1][:len(r0)]
		r2 := rows[i+2][c0:c1][:len(r0)]
		r3 := rows[i+3][c0:c1][:len(r0)]
		for j, v := range r0 {
			d := dst[j*n+i : j*n+i+4 : j*n+i+4]
			d[0], d[1], d[2], d[3] = v, r1[j], r2[j], r3[j]
		}
	}
	for ; i < n; i++ {
		r := rows[i][c0 : c0+w]
		for j, v := range r {
			dst[j*n+i] = v
		}
	}
}

// medianOf returns the median of v, reordering it: the middle value, or for an even
// count the mean of the two middle values.
func medianOf(v []float32) float32 {
	n := len(v)
	k := n / 2
	selectRank(v, k)
	if n%2 == 1 {
		return v[k]
	}
	// v[:k] ≤ v[k]: the other middle value is the largest of v[:k], found with four
	// independent running maxima (the builtin max has no branch to mispredict).
	lo := v[:k]
	m0, m1, m2, m3 := lo[0], lo[0], lo[0], lo[0]
	for len(lo) >= 4 {
		m0 = max(m0, lo[0])
		m1 = max(m1, lo[1])
		m2 = max(m2, lo[2])
		m3 = max(m3, lo[3])
		lo = lo[4:]
	}
	for _, x := range lo {
		m0 = max(m0, x)
	}
	return float32((float64(max(m0, m1, m2, m3)) + float64(v[k])) / 2)
}

// trimmedMeanOf returns the mean of v without its k smallest and k largest values
// (len(v) > 2k), reordering it. The sum is in float64.
func trimmedMeanOf(v []float32, k int) float32 {
	n := len(v)
	if k > 0 {
		selectRank(v, k) // v[:k] ≤ v[k] ≤ v[k+1:]
		if n-2*k >= 2 {
			selectRank(v[k+1:], n-2*k-2) // then v[k+1 : n−k] ≤ v[n−k−1] ≤ v[n−k:]
		}
	}
	// Four independent partial sums: the adds' latency, not their number, bounds a
	// single chain.
	mid := v[k : n-k]
	var s0, s1, s2, s3 float64
	for len(mid) >= 4 {
		s0 += float64(mid[0])
		s1 += float64(mid[1])
		s2 += float64(mid[2])
		s3 += float64(mid[3])
		mid = mid[4:]
	}
	for _, x := range mid {
		s0 += float64(x)
	}
	return float32(((s0 + s1) + (s2 + s3)) / float64(n-2*k))
}

// selectRank reorders v so that v[k] is its value of rank k (0-based) with
// v[:k] ≤ v[k] ≤ v[k+1:]. It is a quickselect with median-of-three pivots and
// branch-free partitions (values smaller than the pivot, then equal to it, so that
// repeated values cost nothing), falling back to sorting after 2·log₂n levels, which
// bounds it by O(n log n) whatever the values (adversarial updates included).
func selectRank(v []float32, k int) {
	lo, hi := 0, len(v)
	depth := 2*bits.Len(uint(len(v))) + 2
	for hi-lo > 8 {
		if depth == 0 {
			slices.Sort(v[lo:hi])
			return
		}
		depth--
		var p float32
		if n := hi - lo; n >= 64 {
			s := n / 8
			a, b, c := lo+s, lo+n/2, hi-1-s
			p = median3f(median3f(v[a-s], v[a], v[a+s]), median3f(v[b-s], v[b], v[b+s]), median3f(v[c-s], v[c], v[c+s]))
		} else {
			p = median3f(v[lo], v[lo+(hi-lo)/2], v[hi-1])
		}
		w := v[lo:hi]
		// [< p | ≥ p]
		j := 0
		for i, x := range w {
			w[i] = w[j]
			w[j] = x
			inc := 0 // not j++ under the if: this form compiles to SETcc, without a branch
			if x < p {
				inc = 1
			}
			j += inc
		}
		if k < lo+j {
			hi = lo + j
			continue
		}
		// [≥ p] → [= p | > p]; p itself lands in the first part, so both steps shrink
		// the range.
		m := j
		for i := m; i < len(w); i++ {
			x := w[i]
			w[i] = w[j]
			w[j] = x
			inc := 0
			if p >= x {
				inc = 1
			}
			j += inc
		}
		if k < lo+j {
			return // v[k] = p, with smaller values before and larger after
		}
		lo += j
	}
	insertionSortF32(v[lo:hi])
}

// median3f is the median of three values.
func median3f(a, b, c float32) float32 {
	return max(min(a, b), min(max(a, b), c))
}

// insertionSortF32 sorts a short slice.
func insertionSortF32(v []float32) {
	for i := 1; i < len(v); i++ {
		x, j := v[i], i
		for ; j > 0 && x < v[j-1]; j-- {
			v[j] = v[j-1]
		}
		v[j] = x
	}
}

// krumAgg is Krum (m == 1) or Multi-Krum (m > 1; m == 0 means n − f) tolerating f
// Byzantine updates.
type krumAgg struct {
	rowKeeper
	f, m int
}

// Finish selects the update(s) of lowest Krum score and writes the result into the
// Reset buffer.
func (a *krumAgg) Finish() ([]float32, error) {
	if err := a.begin(); err != nil {
		return nil, err
	}
	n, f := a.Count(), a.f
	if f < 0 || a.m < 0 {
		return nil, fmt.Errorf("aggregation: krum: f = %d and m = %d must be ≥ 0", f, a.m)
	}
	if n <= 2*f+2 {
		return nil, fmt.Errorf("aggregation: krum: %d updates cannot tolerate f=%d Byzantine agents: Krum needs more than 2f+2 = %d", n, f, 2*f+2)
	}
	m := a.m
	if m == 0 {
		m = n - f
	}
	if m > n {
		return nil, fmt.Errorf("aggregation: krum: cannot select m=%d of %d updates", m, n)
	}
	rows, release, err := a.rows.view()
	if err != nil {
		return nil, err
	}
	defer release()
	chosen := krumSelect(pairDistances(rows, a.size), n, n-f-2, m)
	out := a.out
	if m == 1 {
		copy(out, rows[chosen[0]])
		return a.done(), nil
	}
	// The example-weighted mean of the chosen rows, in float64, the rows in index order.
	slices.Sort(chosen)
	var total float64
	for _, i := range chosen {
		total += float64(a.weights[i])
	}
	const blk = 4096
	size := a.size
	runParallel((size+blk-1)/blk, func() func(int) {
		acc := make([]float64, blk)
		return func(b int) {
			c0, c1 := b*blk, min(b*blk+blk, size)
			acc := acc[:c1-c0]
			clear(acc)
			for _, i := range chosen {
				w := float64(a.weights[i])
				for j, x := range rows[i][c0:c1][:len(acc)] {
					acc[j] += w * float64(x)
				}
			}
			dst := out[c0:c1][:len(acc)]
			for j, s := range acc {
				dst[j] = float32(s / total)
			}
		}
	})
	return a.done(), nil
}

// krumSelect returns the indices of the m updates with the lowest Krum scores, lowest
// score first (ties: lowest index); d is the n×n matrix of squared distances and an
// update's score is the sum of its distances to its `neighbours` nearest other updates.
func krumSelect(d []float64, n, neighbours, m int) []int {
	scores := make([]float64, n)
	near := make([]float64, 0, n-1)
	for i := range n {
		near = near[:0]
		for j := range n {
			if j != i {
				near = append(near, d[i*n+j])
			}
		}
		slices.Sort(near)
		var s float64
		for _, x := range near[:neighbours] {
			s += x
		}
		scores[i] = s
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		switch {
		case scores[i] < scores[j]:
			return -1
		case scores[i] > scores[j]:
			return 1
		}
		return 0
	})
	return order[:m]
}

// krumBlock is how many coordinates of every row a worker takes at a time when measuring
// distances: about 512 KiB of rows, 256 to 8192 coordinates.
func krumBlock(n int) int {
	return min(max((1<<17)/max(n, 1), 256), 8192) &^ 15
}

// pairDistances returns the n×n matrix of squared L2 distances between the rows,
// accumulated in float64. The coordinates are cut into blocks dealt round-robin to a
// number of lanes that depends only on n and the size (not on GOMAXPROCS), each with its
// own matrix, summed in lane order at the end: the result is the same on any machine.
func pairDistances(rows [][]float32, size int) []float64 {
	n := len(rows)
	blk := krumBlock(n)
	nb := (size + blk - 1) / blk
	lanes := max(1, min(32, nb, (8<<20)/max(n*n, 1)))
	accs := make([]float64, lanes*n*n)
	runParallel(lanes, func() func(int) {
		return func(l int) {
			acc := accs[l*n*n : (l+1)*n*n]
			for b := l; b < nb; b += lanes {
				c0, c1 := b*blk, min(b*blk+blk, size)
				for i := range n {
					ri := rows[i][c0:c1]
					for j := i + 1; j < n; j++ {
						acc[i*n+j] += sqDist(ri, rows[j][c0:c1])
					}
				}
			}
		}
	})
	d := accs[:n*n]
	for l := 1; l < lanes; l++ {
		for p, x := range accs[l*n*n : (l+1)*n*n] {
			d[p] += x
		}
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			d[j*n+i] = d[i*n+j]
		}
	}
	return d
}

// sqDist is ‖a − b‖² in float64 (len(b) ≥ len(a)).
func sqDist(a, b []float32) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0 := float64(a[i]) - float64(b[i])
		d1 := float64(a[i+1]) - float64(b[i+1])
		d2 := float64(a[i+2]) - float64(b[i+2])
		d3 := float64(a[i+3]) - float64(b[i+3])
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		d := float64(a[i]) - float64(b[i])
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

// runParallel runs every task in [0, tasks) on up to GOMAXPROCS goroutines. Each
// goroutine calls setup once for its own task function (and so its own scratch), then
// takes tasks in turn until none is left.
func runParallel(tasks int, setup func() func(task int)) {
	if tasks <= 0 {
		return
	}
	workers := min(runtime.GOMAXPROCS(0), tasks)
	if workers == 1 {
		run := setup()
		for t := range tasks {
			run(t)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			run := setup()
			for {
				t := int(next.Add(1) - 1)
				if t >= tasks {
					return
				}
				run(t)
			}
		})
	}
	wg.Wait()
}
