package aggregation

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// robustCase names one robust aggregator and how to build it.
type robustCase struct {
	name string
	make func(size int, b Buffering) Aggregator
	// want is the float64 reference for the rows and their example counts.
	want func(rows [][]float32, examples []uint64) []float64
	tol  float64 // relative tolerance against want; 0: exact
}

// robustCases are the aggregators under test with their references.
func robustCases() []robustCase {
	trimmed := func(beta float64) robustCase {
		return robustCase{
			name: fmt.Sprintf("trimmed_mean(%v)", beta),
			make: func(size int, b Buffering) Aggregator { return newTrimmedMean(size, beta, b) },
			want: func(rows [][]float32, _ []uint64) []float64 { return refTrimmedMean(rows, beta) },
			tol:  1e-6,
		}
	}
	krum := func(f, m int) robustCase {
		return robustCase{
			name: fmt.Sprintf("krum(f=%d,m=%d)", f, m),
			make: func(size int, b Buffering) Aggregator { return newKrum(size, f, m, b) },
			want: func(rows [][]float32, ex []uint64) []float64 { return refKrum(rows, ex, f, m) },
			tol:  1e-6,
		}
	}
	return []robustCase{
		{name: "median", make: newMedian, want: func(rows [][]float32, _ []uint64) []float64 { return refMedian(rows) }},
		trimmed(0), trimmed(0.1), trimmed(0.25), trimmed(0.45),
		krum(0, 1), krum(1, 1), krum(1, 3), krum(1, 0), krum(2, 0),
	}
}

// refMedian is the coordinate-wise median by sorting.
func refMedian(rows [][]float32) []float64 {
	n := len(rows)
	out := make([]float64, len(rows[0]))
	col := make([]float64, n)
	for c := range out {
		for i, r := range rows {
			col[i] = float64(r[c])
		}
		slices.Sort(col)
		if n%2 == 1 {
			out[c] = col[n/2]
		} else {
			out[c] = float64(float32((col[n/2-1] + col[n/2]) / 2))
		}
	}
	return out
}

// refTrimmedMean is the coordinate-wise β-trimmed mean by sorting.
func refTrimmedMean(rows [][]float32, beta float64) []float64 {
	n := len(rows)
	k := int(math.Floor(beta*float64(n) + 1e-9))
	out := make([]float64, len(rows[0]))
	col := make([]float64, n)
	for c := range out {
		for i, r := range rows {
			col[i] = float64(r[c])
		}
		slices.Sort(col)
		var s float64
		for _, v := range col[k : n-k] {
			s += v
		}
		out[c] = s / float64(n-2*k)
	}
	return out
}

// refKrum is (Multi-)Krum computed directly, or nil when n is too small for f.
func refKrum(rows [][]float32, examples []uint64, f, m int) []float64 {
	n := len(rows)
	if n <= 2*f+2 {
		return nil
	}
	if m == 0 {
		m = n - f
	}
	type scored struct {
		i     int
		score float64
	}
	scores := make([]scored, n)
	for i := range rows {
		var d []float64
		for j := range rows {
			if j == i {
				continue
			}
			var s float64
			for c := range rows[i] {
				x := float64(rows[i][c]) - float64(rows[j][c])
				s += x * x
			}
			d = append(d, s)
		}
		slices.Sort(d)
		var s float64
		for _, x := range d[:n-f-2] {
			s += x
		}
		scores[i] = scored{i, s}
	}
	slices.SortStableFunc(scores, func(a, b scored) int {
		if a.score < b.score {
			return -1
		} else if a.score > b.score {
			return 1
		}
		return 0
	})
	out := make([]float64, len(rows[0]))
	var total float64
	for _, s := range scores[:m] {
		w := float64(examples[s.i])
		if m == 1 {
			w = 1
		}
		total += w
		for c, v := range rows[s.i] {
			out[c] += w * float64(v)
		}
	}
	for c := range out {
		out[c] /= total
	}
	return out
}

// randomRows returns n updates of size values and their example counts; quantized
// values repeat a lot (as in sparse or frozen parameters).
func randomRows(r *rand.Rand, n, size int, quantized bool) ([][]float32, []uint64) {
	rows := make([][]float32, n)
	examples := make([]uint64, n)
	for i := range rows {
		rows[i] = make([]float32, size)
		for c := range rows[i] {
			if quantized {
				rows[i][c] = float32(r.IntN(3)) - 1
			} else {
				rows[i][c] = float32(r.NormFloat64())
			}
		}
		examples[i] = uint64(1 + r.IntN(500))
	}
	return rows, examples
}

// aggregate runs one round of agg over rows (reusing one staging buffer, as the
// coordinator does) into a fresh buffer.
func aggregate(t *testing.T, agg Aggregator, rows [][]float32, examples []uint64) ([]float32, error) {
	t.Helper()
	size := len(rows[0])
	buf := make([]float32, size)
	agg.Reset(buf)
	staging := make([]float32, size)
	for i, row := range rows {
		copy(staging, row)
		if err := agg.Add(staging, examples[i]); err != nil {
			t.Fatal(err)
		}
		for c := range staging {
			staging[c] = float32(math.NaN()) // the aggregator must have copied it
		}
	}
	if agg.Count() != len(rows) {
		t.Fatalf("Count = %d, want %d", agg.Count(), len(rows))
	}
	out, err := agg.Finish()
	if err == nil && size > 0 && &out[0] != &buf[0] {
		t.Fatal("Finish did not return the Reset buffer")
	}
	return out, err
}

// TestRobustMatchesFloat64 checks every robust aggregator against a direct float64
// computation, for odd, even and single updates and sizes across block boundaries.
func TestRobustMatchesFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range robustCases() {
		for _, n := range []int{1, 2, 3, 4, 7, 10, 33} {
			for _, size := range []int{1, 17, 5000} {
				for _, quantized := range []bool{false, true} {
					name := fmt.Sprintf("%s/n=%d/size=%d/quantized=%v", tc.name, n, size, quantized)
					rows, examples := randomRows(r, n, size, quantized)
					want := tc.want(rows, examples)
					got, err := aggregate(t, tc.make(size, Buffering{}), rows, examples)
					if want == nil {
						if err == nil {
							t.Errorf("%s: no error for too few updates", name)
						}
						continue
					}
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					for c := range got {
						if d := math.Abs(float64(got[c]) - want[c]); d > tc.tol*math.Max(1, math.Abs(want[c])) {
							t.Fatalf("%s: value %d = %v, want %v", name, c, got[c], want[c])
						}
					}
				}
			}
		}
	}
}

// spilledRows is how many rows of agg are in its spill file.
func spilledRows(agg Aggregator) int {
	switch a := agg.(type) {
	case *orderStatAgg:
		return a.rows.nfile
	case *krumAgg:
		return a.rows.nfile
	}
	panic("not a robust aggregator")
}

// TestRobustSpillIsIdentical checks that spilling some or all updates to a file, and the
// number of goroutines, change nothing in the result, and that the file is unlinked.
func TestRobustSpillIsIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n, size = 11, 9000 // several blocks, none full at the end
	rows, examples := randomRows(r, n, size, false)
	rowBytes := int64(size * 4)
	for _, tc := range robustCases() {
		inMemory, err := aggregate(t, tc.make(size, Buffering{}), rows, examples)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, bc := range []struct {
			memory  int64
			spilled int
		}{{1, n}, {-1, n}, {3*rowBytes + 5, n - 3}, {int64(n) * rowBytes, 0}} {
			dir := t.TempDir()
			agg := tc.make(size, Buffering{MemoryBytes: bc.memory, Dir: dir})
			agg.Reset(make([]float32, size))
			for i, row := range rows {
				if err := agg.Add(row, examples[i]); err != nil {
					t.Fatal(err)
				}
			}
			if got := spilledRows(agg); got != bc.spilled {
				t.Fatalf("%s: budget %d spilled %d rows, want %d", tc.name, bc.memory, got, bc.spilled)
			}
			if runtime.GOOS != "windows" {
				if entries, _ := os.ReadDir(dir); len(entries) != 0 {
					t.Fatalf("%s: spill file left in %s: %v", tc.name, dir, entries)
				}
			}
			got, err := agg.Finish()
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if !slices.Equal(got, inMemory) {
				t.Fatalf("%s: budget %d gives a different result than in memory", tc.name, bc.memory)
			}
			if spilledRows(agg) != 0 {
				t.Fatalf("%s: Finish kept the spill file", tc.name)
			}
		}
		// And the same whatever the number of goroutines.
		prev := runtime.GOMAXPROCS(1)
		single, err := aggregate(t, tc.make(size, Buffering{MemoryBytes: 2 * rowBytes, Dir: t.TempDir()}), rows, examples)
		runtime.GOMAXPROCS(7)
		seven, err2 := aggregate(t, tc.make(size, Buffering{}), rows, examples)
		runtime.GOMAXPROCS(prev)
		if err != nil || err2 != nil {
			t.Fatal(err, err2)
		}
		if !slices.Equal(single, inMemory) || !slices.Equal(seven, inMemory) {
			t.Fatalf("%s: the result depends on GOMAXPROCS", tc.name)
		}
	}
}

// TestKrumPicksHonest plants an honest update at the centre of the honest ones and f
// colluding outliers far away: Krum picks the planted one, Multi-Krum averages the honest.
func TestKrumPicksHonest(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const honest, f, size = 10, 3, 200
	center := make([]float32, size)
	for c := range center {
		center[c] = float32(r.NormFloat64())
	}
	var rows [][]float32
	var examples []uint64
	for i := range honest {
		u := slices.Clone(center)
		if i != 4 { // the planted update sits at the centre of the honest ones
			for c := range u {
				u[c] += float32(0.1 * r.NormFloat64())
			}
		}
		rows = append(rows, u)
		examples = append(examples, uint64(10+i))
	}
	// Colluding Byzantine updates: identical, far away.
	evil := make([]float32, size)
	for c := range evil {
		evil[c] = center[c] + 50
	}
	for range f {
		rows = append(rows, slices.Clone(evil))
		examples = append(examples, 1000)
	}
	// Shuffle deterministically, remembering where the planted one went.
	perm := r.Perm(len(rows))
	shuffled := make([][]float32, len(rows))
	shufEx := make([]uint64, len(rows))
	planted := -1
	for i, p := range perm {
		shuffled[i], shufEx[i] = rows[p], examples[p]
		if p == 4 {
			planted = i
		}
	}
	for _, b := range []Buffering{{}, {MemoryBytes: -1, Dir: t.TempDir()}} {
		got, err := aggregate(t, newKrum(size, f, 1, b), shuffled, shufEx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, shuffled[planted]) {
			t.Fatal("Krum did not pick the planted honest update")
		}
		// Multi-Krum with m = n − f keeps exactly the honest updates.
		got, err = aggregate(t, newKrum(size, f, 0, b), shuffled, shufEx)
		if err != nil {
			t.Fatal(err)
		}
		var total float64
		want := make([]float64, size)
		for i := range honest {
			total += float64(examples[i])
			for c, v := range rows[i] {
				want[c] += float64(examples[i]) * float64(v)
			}
		}
		for c := range want {
			if w := want[c] / total; math.Abs(float64(got[c])-w) > 1e-6*math.Max(1, math.Abs(w)) {
				t.Fatalf("Multi-Krum value %d = %v, want the honest mean %v", c, got[c], w)
			}
		}
	}
}

// TestKrumNeedsEnoughUpdates checks Krum's errors: n ≤ 2f+2, m > n and f < 0.
func TestKrumNeedsEnoughUpdates(t *testing.T) {
	const size = 3
	agg := newKrum(size, 2, 1, Buffering{})
	agg.Reset(make([]float32, size))
	u := []float32{1, 2, 3}
	for range 6 {
		if err := agg.Add(u, 1); err != nil {
			t.Fatal(err)
		}
	}
	_, err := agg.Finish()
	if err == nil || !strings.Contains(err.Error(), "6 updates cannot tolerate f=2 Byzantine agents: Krum needs more than 2f+2 = 6") {
		t.Fatalf("Finish with n = 2f+2: %v", err)
	}
	// The round goes on: one more update makes it enough.
	if err := agg.Add(u, 1); err != nil {
		t.Fatal(err)
	}
	if got, err := agg.Finish(); err != nil || !slices.Equal(got, u) {
		t.Fatalf("Finish with n = 2f+3: %v %v", got, err)
	}

	agg = newKrum(size, 1, 6, Buffering{})
	agg.Reset(make([]float32, size))
	for range 5 {
		if err := agg.Add(u, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := agg.Finish(); err == nil || !strings.Contains(err.Error(), "m=6 of 5") {
		t.Fatalf("Finish with m > n: %v", err)
	}
	agg = newKrum(size, -1, 1, Buffering{})
	agg.Reset(make([]float32, size))
	agg.Add(u, 1)
	if _, err := agg.Finish(); err == nil {
		t.Fatal("Finish with f < 0 accepted")
	}
}

// TestTrimmedMeanNeedsValuesLeft checks that a trimmed mean trimming every value fails.
func TestTrimmedMeanNeedsValuesLeft(t *testing.T) {
	for _, tc := range []struct {
		beta float64
		n    int
		ok   bool
	}{{0.45, 1, true}, {0.45, 2, true}, {0.5, 3, true}, {0.5, 4, false}, {0.6, 5, false}, {1e300, 3, false}, {-0.1, 3, false}, {math.NaN(), 3, false}} {
		agg := newTrimmedMean(1, tc.beta, Buffering{})
		agg.Reset(make([]float32, 1))
		for i := range tc.n {
			agg.Add([]float32{float32(i)}, 1)
		}
		got, err := agg.Finish()
		if (err == nil) != tc.ok {
			t.Errorf("β = %v, n = %d: %v %v", tc.beta, tc.n, got, err)
		}
	}
}

// TestRobustContract checks the Aggregator contract: Add needs Reset, a model-sized
// update and examples; Finish without updates is ErrNoUpdates and writes into the Reset
// buffer; Reset after an unfinished round releases its rows and spill file.
func TestRobustContract(t *testing.T) {
	const size = 4
	for _, tc := range robustCases() {
		agg := tc.make(size, Buffering{MemoryBytes: 2 * size * 4, Dir: t.TempDir()})
		if err := agg.Add(make([]float32, size), 1); err == nil {
			t.Fatalf("%s: Add before Reset accepted", tc.name)
		}
		if _, err := agg.Finish(); !errors.Is(err, ErrNoUpdates) {
			t.Fatalf("%s: Finish before Reset = %v", tc.name, err)
		}
		buf := []float32{1, 2, 3, 4}
		agg.Reset(buf)
		if !slices.Equal(buf, make([]float32, size)) {
			t.Fatalf("%s: Reset did not zero its buffer", tc.name)
		}
		if _, err := agg.Finish(); !errors.Is(err, ErrNoUpdates) {
			t.Fatalf("%s: Finish without updates = %v", tc.name, err)
		}
		if err := agg.Add(make([]float32, size+1), 1); err == nil {
			t.Fatalf("%s: wrong size accepted", tc.name)
		}
		if err := agg.Add(make([]float32, size), 0); err == nil {
			t.Fatalf("%s: zero examples accepted", tc.name)
		}
		if agg.Count() != 0 || agg.Examples() != 0 {
			t.Fatalf("%s: refused updates counted", tc.name)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("%s: Reset with a wrong size did not panic", tc.name)
				}
			}()
			agg.Reset(make([]float32, size-1))
		}()

		// A round that never finishes (three rows, one spilled), then Reset.
		for i := range 3 {
			if err := agg.Add([]float32{100, 100, 100, float32(i)}, 7); err != nil {
				t.Fatal(err)
			}
		}
		if spilledRows(agg) != 1 {
			t.Fatalf("%s: %d rows spilled, want 1", tc.name, spilledRows(agg))
		}
		var file *os.File
		switch a := agg.(type) {
		case *orderStatAgg:
			file = a.rows.file
		case *krumAgg:
			file = a.rows.file
		}
		agg.Reset(buf)
		if agg.Count() != 0 || agg.Examples() != 0 || spilledRows(agg) != 0 {
			t.Fatalf("%s: Reset did not start over", tc.name)
		}
		if _, err := file.Stat(); err == nil {
			t.Fatalf("%s: Reset left the previous spill file open", tc.name)
		}
		rows := [][]float32{{1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 5}, {1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}}
		examples := make([]uint64, len(rows))
		for i, row := range rows {
			examples[i] = 2
			if err := agg.Add(row, 2); err != nil {
				t.Fatal(err)
			}
		}
		if agg.Count() != 7 || agg.Examples() != 14 {
			t.Fatalf("%s: Count %d Examples %d", tc.name, agg.Count(), agg.Examples())
		}
		got, err := agg.Finish()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if &got[0] != &buf[0] {
			t.Fatalf("%s: Finish did not return the Reset buffer", tc.name)
		}
		want := tc.want(rows, examples)
		for c := range got {
			if math.Abs(float64(got[c])-want[c]) > 1e-6*math.Abs(want[c]) {
				t.Fatalf("%s: got %v, want %v", tc.name, got, want)
			}
		}
		if err := agg.Add(buf, 1); err == nil {
			t.Fatalf("%s: Add after Finish accepted", tc.name)
		}
	}
}

// TestSelectRank checks the quickselect on random, repeated, sorted and organ-pipe
// values, and that NaN does not hang it.
func TestSelectRank(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	gens := map[string]func(i, n int) float32{
		"random":   func(int, int) float32 { return float32(r.NormFloat64()) },
		"few":      func(int, int) float32 { return float32(r.IntN(4)) },
		"equal":    func(int, int) float32 { return 1 },
		"sorted":   func(i, _ int) float32 { return float32(i) },
		"reversed": func(i, n int) float32 { return float32(n - i) },
		"organ":    func(i, n int) float32 { return float32(min(i, n-i)) },
	}
	for name, gen := range gens {
		for _, n := range []int{1, 2, 5, 16, 17, 31, 100, 1000} {
			v := make([]float32, n)
			for i := range v {
				v[i] = gen(i, n)
			}
			sorted := slices.Clone(v)
			slices.Sort(sorted)
			for _, k := range []int{0, n / 3, n / 2, n - 1} {
				w := slices.Clone(v)
				selectRank(w, k)
				if w[k] != sorted[k] {
					t.Fatalf("%s n=%d k=%d: %v, want %v", name, n, k, w[k], sorted[k])
				}
				for i, x := range w {
					if (i < k && x > w[k]) || (i > k && x < w[k]) {
						t.Fatalf("%s n=%d k=%d: not partitioned at %d", name, n, k, i)
					}
				}
			}
		}
	}
	// NaN (never in checked updates) must not hang it.
	v := make([]float32, 200)
	for i := range v {
		v[i] = float32(r.NormFloat64())
		if i%3 == 0 {
			v[i] = float32(math.NaN())
		}
	}
	selectRank(v, 100)
}
