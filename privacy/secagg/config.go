package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Defaults of a [Config].
const (
	// DefaultClip is the range [-Clip, Clip] weighted update values are clipped to
	// before quantization (Flower's SecAgg+ default clipping range).
	DefaultClip = 8.0
	// DefaultFailureProbability is the target probability, given the expected
	// dropout, that some agent's secrets cannot be reconstructed ([ChooseGraph]).
	DefaultFailureProbability = 1e-6
	// DefaultDropout is the dropout rate [ChooseGraph] plans for when none is given.
	DefaultDropout = 0.1
	// MinMembers is the smallest cohort secure aggregation runs with: the sum of
	// two updates tells each of the two the other's.
	MinMembers = 3
)

// Config is a secure round's public parameters; every party must hold the same one.
type Config struct {
	// Round names the round (fedq uses the task ID, unique per attempt and start of
	// the coordinator); it is bound into every signature, ciphertext and mask key.
	Round string
	// Members are the agents selected for the round, sorted and unique; member i has
	// index i+1, which is also its share ID.
	Members []string
	// Neighbours is k, the degree of the neighbour graph: even and at least 2, or
	// len(Members)-1 for the complete graph (classic SecAgg).
	Neighbours int
	// Threshold is how many holders' shares reconstruct a secret; in
	// ((k+1)/2, k+1].
	Threshold int
	// GraphSeed picks the graph's random relabelling.
	GraphSeed [32]byte
	// Dim is the length of a masked vector: the update's values plus one for the
	// weight.
	Dim int
	// Clip bounds each weighted value to [-Clip, Clip]; ≥ 1, so that a weight in
	// [0, 1] is representable.
	Clip float64
	// Levels is the largest quantized value: values map to 0..Levels. Zero means
	// the largest for which the sum of every member's values cannot wrap modulo 2^32.
	Levels uint32
	// MaxWeight is the weight that scales to 1: an update of weight w is multiplied by
	// min(w, MaxWeight)/MaxWeight. The coordinator sets it to the largest weight it
	// expects (for example the largest dataset × epochs among the members).
	MaxWeight float64
}

// Validate checks the parameters and fills in Levels.
func (c *Config) Validate() error {
	n := len(c.Members)
	switch {
	case c.Round == "":
		return errors.New("secagg: the round has no name")
	case n < MinMembers:
		return fmt.Errorf("secagg: %d members; secure aggregation needs at least %d (the sum of two updates reveals each to the other)", n, MinMembers)
	case !slices.IsSorted(c.Members) || len(slices.Compact(slices.Clone(c.Members))) != n:
		return errors.New("secagg: members must be sorted and unique")
	case c.Neighbours != n-1 && (c.Neighbours < 2 || c.Neighbours%2 != 0 || c.Neighbours >= n):
		return fmt.Errorf("secagg: %d neighbours: need an even number in [2, %d), or %d for the complete graph", c.Neighbours, n, n-1)
	case 2*c.Threshold <= c.Neighbours+1 || c.Threshold > c.Neighbours+1:
		return fmt.Errorf("secagg: threshold %d with %d neighbours: need more than half of the %d holders of each secret, and at most all of them",
			c.Threshold, c.Neighbours, c.Neighbours+1)
	case c.Dim < 2:
		return fmt.Errorf("secagg: dimension %d: need at least one value and the weight", c.Dim)
	case !(c.Clip >= 1) || math.IsInf(c.Clip, 0):
		return fmt.Errorf("secagg: clip range %g: must be finite and at least 1", c.Clip)
	case !(c.MaxWeight > 0) || math.IsInf(c.MaxWeight, 0):
		return fmt.Errorf("secagg: max weight %g: must be positive and finite", c.MaxWeight)
	}
	most := uint32(math.MaxUint32 / uint64(n))
	if c.Levels == 0 {
		c.Levels = most
	}
	if c.Levels < 2 || c.Levels > most {
		return fmt.Errorf("secagg: %d quantization levels: need 2..%d so that %d members' sum cannot wrap", c.Levels, most, n)
	}
	return nil
}

// Digest binds every public parameter of the round; signatures and ciphertexts are
// made over it.
func (c *Config) Digest() [32]byte {
	h := sha256.New()
	put := func(b []byte) {
		var l [8]byte
		binary.BigEndian.PutUint64(l[:], uint64(len(b)))
		h.Write(l[:])
		h.Write(b)
	}
	put([]byte("fedq/secagg/v1/config"))
	put([]byte(c.Round))
	for _, m := range c.Members {
		put([]byte(m))
	}
	var b [8 * 6]byte
	binary.BigEndian.PutUint64(b[0:], uint64(c.Neighbours))
	binary.BigEndian.PutUint64(b[8:], uint64(c.Threshold))
	binary.BigEndian.PutUint64(b[16:], uint64(c.Dim))
	binary.BigEndian.PutUint64(b[24:], math.Float64bits(c.Clip))
	binary.BigEndian.PutUint64(b[32:], uint64(c.Levels))
	binary.BigEndian.PutUint64(b[40:], math.Float64bits(c.MaxWeight))
	put(b[:])
	put(c.GraphSeed[:])
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// index returns the member's index (0-based), or -1.
func (c *Config) index(member string) int {
	i, ok := slices.BinarySearch(c.Members, member)
	if !ok {
		return -1
	}
	return i
}

// Graph is the neighbour graph of a round: for each member index, its neighbours'
// indices, sorted.
type Graph [][]int

// NewGraph builds the neighbour graph of n members with degree k: the complete graph
// when k = n-1, otherwise a Harary graph H(k, n) — member at position p is joined to
// the k/2 positions on each side of it on a ring — whose positions are a random
// permutation drawn from seed. It is k-regular and k-connected.
func NewGraph(n, k int, seed [32]byte) Graph {
	g := make(Graph, n)
	if k >= n-1 {
		for i := range g {
			g[i] = make([]int, 0, n-1)
			for j := range n {
				if j != i {
					g[i] = append(g[i], j)
				}
			}
		}
		return g
	}
	perm := rand.New(rand.NewChaCha8(seed)).Perm(n) // position → member
	pos := make([]int, n)
	for p, m := range perm {
		pos[m] = p
	}
	for i := range g {
		g[i] = make([]int, 0, k)
		for d := 1; d <= k/2; d++ {
			g[i] = append(g[i], perm[(pos[i]+d)%n], perm[(pos[i]-d+n)%n])
		}
		slices.Sort(g[i])
	}
	return g
}

// holders returns H(u) = N(u) ∪ {u}, sorted.
func (g Graph) holders(u int) []int {
	h := append(slices.Clone(g[u]), u)
	slices.Sort(h)
	return h
}

// GraphChoice is a neighbour degree and threshold with the failure bound they give.
type GraphChoice struct {
	// Neighbours is k.
	Neighbours int
	// Threshold is the shares needed to reconstruct a secret.
	Threshold int
	// Failure bounds the probability that, with each agent dropping independently at
	// the planned rate, some agent's secret has fewer than Threshold live holders
	// (a union bound over the members).
	Failure float64
}

// ChooseGraph picks the neighbour degree and threshold for n members: the smallest
// even k of at least 2⌈log₂ n⌉ (SecAgg+'s O(log n), so that the honest part of the graph
// stays connected) whose threshold ⌊(k+1)/2⌋+1 is reached with probability at least
// 1 − failure when each agent drops out with probability dropout; the complete graph
// (classic SecAgg) when no k < n−1 does.
func ChooseGraph(n int, dropout, failure float64) (GraphChoice, error) {
	if n < MinMembers {
		return GraphChoice{}, fmt.Errorf("secagg: %d members; need at least %d", n, MinMembers)
	}
	if !(dropout >= 0 && dropout < 1) {
		return GraphChoice{}, fmt.Errorf("secagg: dropout %g: must be in [0, 1)", dropout)
	}
	if !(failure > 0 && failure < 1) {
		return GraphChoice{}, fmt.Errorf("secagg: failure probability %g: must be in (0, 1)", failure)
	}
	bound := func(k int) (int, float64) {
		t := (k+1)/2 + 1
		// A dropped agent's secret is held by its k neighbours alone.
		return t, math.Min(1, float64(n)*binomialCDF(t-1, k, 1-dropout))
	}
	low := 2 * int(math.Ceil(math.Log2(float64(n))))
	for k := max(2, low); k < n-1; k += 2 {
		if t, f := bound(k); f <= failure {
			return GraphChoice{Neighbours: k, Threshold: t, Failure: f}, nil
		}
	}
	t, f := bound(n - 1)
	return GraphChoice{Neighbours: n - 1, Threshold: t, Failure: f}, nil
}

// binomialCDF is P(X ≤ x) for X ~ Binomial(n, p), summed in log space.
func binomialCDF(x, n int, p float64) float64 {
	if x < 0 {
		return 0
	}
	if x >= n {
		return 1
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	sum := 0.0
	for i := 0; i <= x; i++ {
		lc := lgamma(n+1) - lgamma(i+1) - lgamma(n-i+1)
		sum += math.Exp(lc + float64(i)*lp + float64(n-i)*lq)
	}
	return math.Min(1, sum)
}

func lgamma(x int) float64 {
	v, _ := math.Lgamma(float64(x))
	return v
}
