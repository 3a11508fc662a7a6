package aggregation

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestFedAvgMatchesFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const size, n = 1000, 7
	agg := newFedAvg(size)
	agg.Reset(make([]float32, size))
	want := make([]float64, size)
	var total float64
	for range n {
		u := make([]float32, size)
		for i := range u {
			u[i] = r.Float32()*2 - 1
		}
		ex := uint64(1 + r.IntN(600))
		if err := CheckUpdate(u, size); err != nil {
			t.Fatal(err)
		}
		if err := agg.Add(u, ex); err != nil {
			t.Fatal(err)
		}
		for i, v := range u {
			want[i] += float64(ex) * float64(v)
		}
		total += float64(ex)
	}
	dst, err := agg.Finish()
	if err != nil {
		t.Fatal(err)
	}
	for i := range dst {
		w := want[i] / total
		if math.Abs(float64(dst[i])-w) > 1e-5 {
			t.Fatalf("dst[%d] = %v, want %v", i, dst[i], w)
		}
	}
	if agg.Count() != n || float64(agg.Examples()) != total {
		t.Fatalf("count %d examples %d", agg.Count(), agg.Examples())
	}
	// A reset aggregator starts over in the buffer it is given.
	buf := make([]float32, size)
	buf[0] = 42
	agg.Reset(buf)
	if agg.Count() != 0 || buf[0] != 0 {
		t.Fatal("Reset did not start over")
	}
	u := make([]float32, size)
	u[0] = 1
	if err := agg.Add(u, 1); err != nil {
		t.Fatal(err)
	}
	next, err := agg.Finish()
	if err != nil || &next[0] != &buf[0] || next[0] != 1 {
		t.Fatalf("after Reset: %v %v", next[0], err)
	}
}

func TestCheckUpdate(t *testing.T) {
	for _, tc := range []struct {
		u    []float32
		size int
		ok   bool
	}{
		{[]float32{1, 2}, 2, true},
		{[]float32{1}, 2, false},
		{[]float32{1, float32(math.NaN())}, 2, false},
		{[]float32{float32(math.Inf(-1)), 0}, 2, false},
	} {
		if err := CheckUpdate(tc.u, tc.size); (err == nil) != tc.ok {
			t.Errorf("CheckUpdate(%v, %d) = %v", tc.u, tc.size, err)
		}
	}
	// A non-finite value anywhere — in the unrolled body or the tail — among finite
	// values as large as float32 goes.
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		for i := range 37 {
			u := make([]float32, 37)
			for j := range u {
				u[j] = math.MaxFloat32 * float32(1-2*(j%2))
			}
			if err := CheckUpdate(u, len(u)); err != nil {
				t.Fatalf("finite values refused: %v", err)
			}
			u[i] = bad
			if err := CheckUpdate(u, len(u)); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("value %d ", i)) {
				t.Errorf("%v at %d: %v", bad, i, err)
			}
		}
	}
	agg := newFedAvg(2)
	if err := agg.Add([]float32{1, 2}, 1); err == nil {
		t.Fatal("Add before Reset accepted")
	}
	agg.Reset(make([]float32, 2))
	if _, err := agg.Finish(); err != ErrNoUpdates {
		t.Fatalf("Finish without updates = %v", err)
	}
	if err := agg.Add([]float32{1, 2}, 0); err == nil {
		t.Fatal("zero examples accepted")
	}
	if _, err := New("krum9", nil, Options{}); err == nil {
		t.Fatal("unknown strategy accepted")
	}
}

// newFedAvg is FedAvg's aggregator for a model of size parameters.
func newFedAvg(size int) Aggregator {
	s, err := New("fedavg", nil, Options{})
	if err != nil {
		panic(err)
	}
	return s.NewRound(size)
}
