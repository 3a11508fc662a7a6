package dataset

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// indexed returns an n-sample dataset with sample size ss where every value
// of sample i is float32(i) and its label is i.
func indexed(n, ss int) *Dataset {
	d := &Dataset{Name: "indexed", Shape: []int{ss}, NumClasses: n, X: make([]float32, n*ss), Y: make([]int32, n)}
	for i := range n {
		d.Y[i] = int32(i)
		for j := range ss {
			d.X[i*ss+j] = float32(i)
		}
	}
	return d
}

// epochOrders runs b for epochs epochs and returns the sample order of each,
// checking on the way that X matches Y and batch sizes are as expected.
func epochOrders(t *testing.T, b *Batcher, ss, epochs int) [][]int {
	t.Helper()
	x := make([]float32, b.BatchSize()*ss)
	y := make([]int32, b.BatchSize())
	var orders [][]int
	for e := range epochs {
		if b.Epoch() != e {
			t.Fatalf("Epoch() = %d, want %d", b.Epoch(), e)
		}
		var order []int
		batches := 0
		for {
			n, ok := b.Next(x, y)
			if !ok {
				if n != 0 {
					t.Fatalf("end of epoch returned n = %d", n)
				}
				break
			}
			batches++
			if n < 1 || n > b.BatchSize() {
				t.Fatalf("batch of %d with batch size %d", n, b.BatchSize())
			}
			for j := range n {
				for k := range ss {
					if x[j*ss+k] != float32(y[j]) {
						t.Fatalf("sample with label %d carries value %v", y[j], x[j*ss+k])
					}
				}
				order = append(order, int(y[j]))
			}
		}
		if batches != b.BatchesPerEpoch() {
			t.Fatalf("epoch %d served %d batches, BatchesPerEpoch() = %d", e, batches, b.BatchesPerEpoch())
		}
		orders = append(orders, order)
	}
	return orders
}

func TestBatcherEpochs(t *testing.T) {
	tests := []struct {
		name          string
		n, ss, batch  int
		dropLast      bool
		wantBatches   int
		wantPerEpoch  int // samples served per epoch
		wantLastBatch int
	}{
		{"exact", 12, 3, 4, false, 3, 12, 4},
		{"partial kept", 10, 2, 4, false, 3, 10, 2},
		{"partial dropped", 10, 2, 4, true, 2, 8, 4},
		{"batch of one", 5, 1, 1, true, 5, 5, 1},
		{"batch bigger than data", 3, 2, 8, false, 1, 3, 3},
		{"batch equals data, dropLast", 6, 2, 6, true, 1, 6, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBatcher(indexed(tc.n, tc.ss), tc.batch, 42, tc.dropLast)
			if err != nil {
				t.Fatal(err)
			}
			if b.BatchesPerEpoch() != tc.wantBatches {
				t.Fatalf("BatchesPerEpoch = %d, want %d", b.BatchesPerEpoch(), tc.wantBatches)
			}
			orders := epochOrders(t, b, tc.ss, 3)
			for e, order := range orders {
				if len(order) != tc.wantPerEpoch {
					t.Fatalf("epoch %d served %d samples, want %d", e, len(order), tc.wantPerEpoch)
				}
				seen := make(map[int]bool)
				for _, i := range order {
					if seen[i] {
						t.Fatalf("epoch %d served sample %d twice", e, i)
					}
					seen[i] = true
				}
				// The served samples are a prefix of that epoch's order.
				want := make([]int, tc.n)
				src := rand.NewPCG(0, 0)
				epochOrder(want, src, rand.New(src), 42, e)
				if !slices.Equal(order, want[:len(order)]) {
					t.Fatalf("epoch %d order %v, want prefix of %v", e, order, want)
				}
			}
		})
	}
}

func TestBatcherDeterminism(t *testing.T) {
	const n, ss, batch = 50, 3, 8
	run := func(seed uint64) [][]int {
		b, err := NewBatcher(indexed(n, ss), batch, seed, false)
		if err != nil {
			t.Fatal(err)
		}
		return epochOrders(t, b, ss, 4)
	}
	a, again, other := run(7), run(7), run(8)
	for e := range a {
		if !slices.Equal(a[e], again[e]) {
			t.Fatalf("epoch %d: same seed gave different orders", e)
		}
		if slices.Equal(a[e], other[e]) {
			t.Fatalf("epoch %d: seeds 7 and 8 gave the same order", e)
		}
		if e > 0 && slices.Equal(a[e], a[e-1]) {
			t.Fatalf("epochs %d and %d have the same order", e-1, e)
		}
	}
}

func TestNewBatcherErrors(t *testing.T) {
	tests := []struct {
		name     string
		d        *Dataset
		batch    int
		dropLast bool
		want     string
	}{
		{"nil", nil, 1, false, "nil dataset"},
		{"zero batch", indexed(4, 1), 0, false, "batch size 0"},
		{"empty", indexed(0, 1), 1, false, "empty"},
		{"no shape", &Dataset{Y: []int32{0}, X: []float32{1}}, 1, false, "Shape"},
		{"inconsistent", &Dataset{Shape: []int{2}, Y: []int32{0}, X: []float32{1}}, 1, false, "len(X) = 1"},
		{"no full batch", indexed(3, 1), 4, true, "no full batch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewBatcher(tc.d, tc.batch, 1, tc.dropLast)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewBatcher = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestBatcherNextSmallBufferPanics(t *testing.T) {
	b, err := NewBatcher(indexed(10, 2), 4, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if msg, _ := recover().(string); !strings.Contains(msg, "want at least 8 and 4") {
			t.Fatalf("recovered %q, want a message with the needed sizes", msg)
		}
	}()
	b.Next(make([]float32, 7), make([]int32, 4))
}

func TestBatcherNextDoesNotAllocate(t *testing.T) {
	const ss, batch = 16, 4
	b, err := NewBatcher(indexed(10, ss), batch, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	x, y := make([]float32, batch*ss), make([]int32, batch)
	// 100 calls cross many epoch boundaries (4 calls per epoch).
	if allocs := testing.AllocsPerRun(100, func() { b.Next(x, y) }); allocs != 0 {
		t.Fatalf("Next allocates %v times per call", allocs)
	}
	if b.Epoch() < 20 {
		t.Fatalf("only %d epochs passed; the test should cross epoch boundaries", b.Epoch())
	}
}

func TestShuffle(t *testing.T) {
	tests := []struct {
		n    int
		seed uint64
	}{{0, 1}, {-3, 1}, {1, 1}, {10, 1}, {1000, 99}}
	for _, tc := range tests {
		p := Shuffle(tc.n, tc.seed)
		want := max(tc.n, 0)
		if len(p) != want {
			t.Fatalf("Shuffle(%d) has length %d", tc.n, len(p))
		}
		sorted := slices.Sorted(slices.Values(p))
		for i, v := range sorted {
			if v != i {
				t.Fatalf("Shuffle(%d) is not a permutation", tc.n)
			}
		}
		if !slices.Equal(p, Shuffle(tc.n, tc.seed)) {
			t.Fatalf("Shuffle(%d, %d) is not deterministic", tc.n, tc.seed)
		}
	}
	if slices.Equal(Shuffle(100, 1), Shuffle(100, 2)) {
		t.Fatal("different seeds gave the same permutation")
	}
}

func BenchmarkBatcherNext(b *testing.B) {
	const n, ss, batch = 10000, 784, 64 // MNIST-sized samples
	bt, err := NewBatcher(indexed(n, ss), batch, 1, false)
	if err != nil {
		b.Fatal(err)
	}
	x, y := make([]float32, batch*ss), make([]int32, batch)
	b.SetBytes(batch * ss * 4)
	b.ReportAllocs()
	for b.Loop() {
		bt.Next(x, y)
	}
}
