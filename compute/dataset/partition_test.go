package dataset

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

// balancedLabels returns perClass labels of each of classes classes in a
// seeded random order.
func balancedLabels(classes, perClass int, seed uint64) []int32 {
	labels := make([]int32, 0, classes*perClass)
	for c := range classes {
		for range perClass {
			labels = append(labels, int32(c))
		}
	}
	newRand(seed).Shuffle(len(labels), func(i, j int) { labels[i], labels[j] = labels[j], labels[i] })
	return labels
}

// checkPartition asserts that parts are sorted, in range and disjoint, and
// returns how many indices they cover.
func checkPartition(t *testing.T, parts [][]int, clients, n int) int {
	t.Helper()
	if len(parts) != clients {
		t.Fatalf("%d parts, want %d", len(parts), clients)
	}
	seen := make([]bool, n)
	covered := 0
	for c, p := range parts {
		if !slices.IsSorted(p) {
			t.Fatalf("client %d indices not sorted", c)
		}
		for _, i := range p {
			if i < 0 || i >= n {
				t.Fatalf("client %d has index %d out of [0, %d)", c, i, n)
			}
			if seen[i] {
				t.Fatalf("index %d assigned twice", i)
			}
			seen[i] = true
			covered++
		}
	}
	return covered
}

// distinctLabels returns the number of different labels in part.
func distinctLabels(labels []int32, part []int) int {
	seen := make(map[int32]bool)
	for _, i := range part {
		seen[labels[i]] = true
	}
	return len(seen)
}

func TestPartitionIID(t *testing.T) {
	tests := []struct {
		n, clients int
	}{{1, 1}, {10, 3}, {100, 100}, {1001, 10}, {60000, 100}}
	for _, tc := range tests {
		parts, err := PartitionIID(tc.n, tc.clients, 5)
		if err != nil {
			t.Fatal(err)
		}
		if got := checkPartition(t, parts, tc.clients, tc.n); got != tc.n {
			t.Fatalf("n=%d clients=%d: covered %d", tc.n, tc.clients, got)
		}
		lo, hi := tc.n, 0
		for _, p := range parts {
			lo, hi = min(lo, len(p)), max(hi, len(p))
		}
		if hi-lo > 1 {
			t.Fatalf("n=%d clients=%d: sizes from %d to %d", tc.n, tc.clients, lo, hi)
		}
	}
	a, _ := PartitionIID(1000, 10, 1)
	b, _ := PartitionIID(1000, 10, 1)
	c, _ := PartitionIID(1000, 10, 2)
	if !slices.EqualFunc(a, b, slices.Equal) {
		t.Fatal("same seed, different partitions")
	}
	if slices.EqualFunc(a, c, slices.Equal) {
		t.Fatal("different seeds, same partition")
	}
	// Appending to one client's part must not touch another's.
	a[0] = append(a[0], -1)
	if a[1][0] == -1 {
		t.Fatal("parts share backing memory")
	}
}

func TestPartitionShards(t *testing.T) {
	tests := []struct {
		name                string
		labels              []int32
		clients, shards     int
		wantCovered, maxLab int
	}{
		{"MNIST-like 100x2", balancedLabels(10, 6000, 1), 100, 2, 60000, 2},
		{"one shard each", balancedLabels(10, 100, 2), 10, 1, 1000, 1},
		{"remainder dropped", balancedLabels(3, 11, 3), 4, 2, 32, 2},
		{"as many shards as examples", []int32{3, 1, 2, 0}, 2, 2, 4, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parts, err := PartitionShards(tc.labels, tc.clients, tc.shards, 9)
			if err != nil {
				t.Fatal(err)
			}
			n := len(tc.labels)
			if got := checkPartition(t, parts, tc.clients, n); got != tc.wantCovered {
				t.Fatalf("covered %d, want %d", got, tc.wantCovered)
			}
			size := n / (tc.clients * tc.shards)
			for c, p := range parts {
				if len(p) != tc.shards*size {
					t.Fatalf("client %d has %d examples, want %d", c, len(p), tc.shards*size)
				}
				if k := distinctLabels(tc.labels, p); k > tc.maxLab {
					t.Fatalf("client %d has %d labels, want <= %d", c, k, tc.maxLab)
				}
			}
			again, _ := PartitionShards(tc.labels, tc.clients, tc.shards, 9)
			if !slices.EqualFunc(parts, again, slices.Equal) {
				t.Fatal("same seed, different partitions")
			}
		})
	}
	a, _ := PartitionShards(balancedLabels(10, 100, 1), 10, 2, 1)
	b, _ := PartitionShards(balancedLabels(10, 100, 1), 10, 2, 2)
	if slices.EqualFunc(a, b, slices.Equal) {
		t.Fatal("different seeds, same partition")
	}
}

func TestPartitionDirichlet(t *testing.T) {
	const classes, clients = 10, 20
	labels := balancedLabels(classes, 100, 4)
	// stats returns the average number of distinct labels per client and
	// the average share of a client's examples in its commonest label.
	stats := func(alpha float64, seed uint64) (distinct, majority float64) {
		parts, err := PartitionDirichlet(labels, classes, clients, alpha, seed)
		if err != nil {
			t.Fatal(err)
		}
		if got := checkPartition(t, parts, clients, len(labels)); got != len(labels) {
			t.Fatalf("alpha %v: covered %d of %d", alpha, got, len(labels))
		}
		for c, p := range parts {
			if len(p) == 0 {
				t.Fatalf("alpha %v: client %d is empty", alpha, c)
			}
			distinct += float64(distinctLabels(labels, p))
			var counts [classes]int
			for _, i := range p {
				counts[labels[i]]++
			}
			majority += float64(slices.Max(counts[:])) / float64(len(p))
		}
		return distinct / clients, majority / clients
	}
	for _, seed := range []uint64{1, 2, 3} {
		skewD, skewM := stats(0.1, seed)
		iidD, iidM := stats(100, seed)
		if iidD < 9.5 || skewD > 0.6*iidD {
			t.Errorf("seed %d: average labels per client: alpha 0.1 gives %.2f, alpha 100 gives %.2f; want the first far smaller", seed, skewD, iidD)
		}
		if skewM < 0.5 || iidM > 0.3 {
			t.Errorf("seed %d: average majority-label share: alpha 0.1 gives %.2f (want > 0.5), alpha 100 gives %.2f (want < 0.3)", seed, skewM, iidM)
		}
	}
	// A generous numClasses costs nothing: buckets follow the labels present.
	if _, err := PartitionDirichlet(labels, 1<<30, clients, 1, 1); err != nil {
		t.Fatalf("numClasses 1<<30: %v", err)
	}
	for _, alpha := range []float64{0.3, 1} {
		a, errA := PartitionDirichlet(labels, classes, clients, alpha, 3)
		b, errB := PartitionDirichlet(labels, classes, clients, alpha, 3)
		c, errC := PartitionDirichlet(labels, classes, clients, alpha, 4)
		if err := errors.Join(errA, errB, errC); err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(a, b, slices.Equal) {
			t.Fatalf("alpha %v: same seed, different partitions", alpha)
		}
		if slices.EqualFunc(a, c, slices.Equal) {
			t.Fatalf("alpha %v: different seeds, same partition", alpha)
		}
	}
}

func TestPartitionErrors(t *testing.T) {
	labels := balancedLabels(2, 5, 1)
	iid := func(n, clients int) func() error {
		return func() error { _, err := PartitionIID(n, clients, 1); return err }
	}
	dir := func(labels []int32, classes, clients int, alpha float64) func() error {
		return func() error { _, err := PartitionDirichlet(labels, classes, clients, alpha, 1); return err }
	}
	shards := func(labels []int32, clients, per int) func() error {
		return func() error { _, err := PartitionShards(labels, clients, per, 1); return err }
	}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"IID no examples", iid(0, 1), "no examples"},
		{"IID zero clients", iid(5, 0), "0 clients"},
		{"IID too many clients", iid(5, 6), "6 clients but only 5 examples"},
		{"Dirichlet zero alpha", dir(labels, 2, 2, 0), "alpha = 0"},
		{"Dirichlet NaN alpha", dir(labels, 2, 2, math.NaN()), "alpha = NaN"},
		{"Dirichlet Inf alpha", dir(labels, 2, 2, math.Inf(1)), "alpha = +Inf"},
		{"Dirichlet no classes", dir(labels, 0, 2, 1), "numClasses = 0"},
		{"Dirichlet label too big", dir(labels, 1, 2, 1), "label 1, want 0..0"},
		{"Dirichlet unlabelled", dir([]int32{0, Unlabelled}, 1, 1, 1), "Unlabelled"},
		{"Dirichlet too many clients", dir(labels, 2, 11, 1), "11 clients"},
		{"Dirichlet cannot fill clients", dir(labels, 2, 10, 0.001), "no example in each of 100 draws"},
		{"shards zero per client", shards(labels, 2, 0), "0 shards per client"},
		{"shards too many", shards(labels, 4, 3), "4 clients x 3 shards exceed the 10 examples"},
		{"shards unlabelled", shards([]int32{0, Unlabelled}, 1, 1), "Unlabelled"},
		{"shards no clients", shards(labels, 0, 1), "0 clients"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

// TestGammaMoments checks the Gamma sampler against the mean and variance of
// Gamma(a, 1), both equal to a, with a deterministic seed.
func TestGammaMoments(t *testing.T) {
	tests := []float64{0.05, 0.3, 1, 2.5, 40}
	const draws = 100000
	rng := newRand(2024)
	for _, a := range tests {
		var sum, sumSq float64
		for range draws {
			g := math.Exp(logGamma(rng, a))
			sum += g
			sumSq += g * g
		}
		mean := sum / draws
		variance := sumSq/draws - mean*mean
		// The standard error of the mean is sqrt(a/draws); allow 5 of them.
		if tol := 5 * math.Sqrt(a/draws); math.Abs(mean-a) > tol {
			t.Errorf("Gamma(%v): mean %v, want %v ± %v", a, mean, a, tol)
		}
		if math.Abs(variance-a) > 0.1*a {
			t.Errorf("Gamma(%v): variance %v, want %v ± 10%%", a, variance, a)
		}
	}
}

func TestDirichletSumsToOne(t *testing.T) {
	rng := newRand(7)
	for _, alpha := range []float64{1e-4, 0.1, 1, 1000} {
		p, logs := make([]float64, 50), make([]float64, 50)
		dirichlet(rng, alpha, p, logs)
		sum := 0.0
		for _, v := range p {
			if v < 0 || math.IsNaN(v) {
				t.Fatalf("alpha %v: component %v", alpha, v)
			}
			sum += v
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Fatalf("alpha %v: components sum to %v", alpha, sum)
		}
	}
}
