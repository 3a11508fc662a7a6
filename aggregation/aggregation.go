// Package aggregation combines agents' updates into the next global model.
//
// An update is what one agent's local training changed: the flat vector
// local − base in the model's parameter order (compute.Model's Values), with the number
// of examples it trained on. A Strategy makes one Aggregator per round; the coordinator
// folds each update in once it has been received whole and checked (see CheckUpdate),
// so a truncated, non-finite or otherwise bad upload never touches the aggregate; then
// Finish yields the round's aggregate update Δ, and the next weights are base + Δ.
//
// Memory: a linear strategy's Aggregator holds one model-sized sum whatever the number
// of updates; the coordinator stages at most a bounded number of uploads at a time.
package aggregation

import (
	"errors"
	"fmt"
	"math"

	"github.com/fedq/fedq/compute/blas"
)

// Aggregator folds a round's updates.
//
// It accumulates into one model-sized buffer that Reset gives it. Finish turns the
// accumulator, in place, into the round's aggregate update Δ, and hands it over: the
// next global weights are base + Δ, which the caller computes (a coordinator adds the
// stored base from disk, so it never holds the base in memory). The caller then Resets
// the aggregator with a buffer for the next round — usually the same one — so a
// coordinator holds a fixed set of buffers and allocates nothing per round.
type Aggregator interface {
	// Add folds in one checked update of len(size) values, weighted by examples.
	Add(update []float32, examples uint64) error
	// Count is how many updates were added.
	Count() int
	// Examples is the sum of their example counts.
	Examples() uint64
	// Finish returns the round's aggregate update, computed in place of the
	// accumulator. The aggregator then needs Reset.
	Finish() ([]float32, error)
	// Reset starts a new round accumulating into buf (len(buf) = size), which it zeroes.
	Reset(buf []float32)
}

// CheckUpdate verifies that an update has the model's size and only finite values.
func CheckUpdate(update []float32, size int) error {
	if len(update) != size {
		return fmt.Errorf("update has %d values, the model %d", len(update), size)
	}
	// v−v is 0 for every finite v and NaN for ±Inf and NaN: one subtraction and one
	// addition per value, and a branch that is never taken on good data. Eight
	// accumulators, so that the additions do not wait for each other.
	var a [8]float32
	i := 0
	for ; i+8 <= len(update); i += 8 {
		u := update[i : i+8 : i+8]
		a[0] += u[0] - u[0]
		a[1] += u[1] - u[1]
		a[2] += u[2] - u[2]
		a[3] += u[3] - u[3]
		a[4] += u[4] - u[4]
		a[5] += u[5] - u[5]
		a[6] += u[6] - u[6]
		a[7] += u[7] - u[7]
	}
	for _, v := range update[i:] {
		a[0] += v - v
	}
	if (a[0]+a[1])+(a[2]+a[3])+(a[4]+a[5])+(a[6]+a[7]) == 0 {
		return nil
	}
	for i, v := range update {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("update value %d is %v: the agent's training diverged", i, v)
		}
	}
	return nil
}

// Buffering bounds the memory of the aggregators that must keep every update of a round
// (median, trimmed mean, Krum): updates beyond MemoryBytes go to a memory-mapped file.
type Buffering struct {
	// MemoryBytes is how many bytes of updates stay in memory (default 1 GiB; < 0: none).
	MemoryBytes int64
	// Dir is where spill files go (default os.TempDir()). They are unlinked at once, so
	// nothing is left behind by a crash.
	Dir string
}

// DefaultMemoryBytes is Buffering's default memory budget.
const DefaultMemoryBytes = 1 << 30

func (b Buffering) budget() int64 {
	switch {
	case b.MemoryBytes == 0:
		return DefaultMemoryBytes
	case b.MemoryBytes < 0:
		return 0
	}
	return b.MemoryBytes
}

// ErrNoUpdates is returned by Finish when no update was added.
var ErrNoUpdates = errors.New("aggregation: no updates to aggregate")

// weightedSum accumulates Σ nᵢ·uᵢ and Σ nᵢ in one model-sized buffer.
type weightedSum struct {
	size     int
	sum      []float32 // nil before Reset and after Finish
	count    int
	examples uint64
}

func (a *weightedSum) Add(u []float32, examples uint64) error {
	if a.sum == nil {
		return errors.New("aggregation: Add without an accumulator (call Reset first)")
	}
	if len(u) != len(a.sum) {
		return fmt.Errorf("aggregation: update has %d values, want %d", len(u), len(a.sum))
	}
	if examples == 0 {
		return errors.New("aggregation: an update trained on no examples")
	}
	blas.Axpy(float32(examples), u, a.sum)
	a.count++
	a.examples += examples
	return nil
}

func (a *weightedSum) Count() int       { return a.count }
func (a *weightedSum) Examples() uint64 { return a.examples }

func (a *weightedSum) Finish() ([]float32, error) {
	if a.count == 0 {
		return nil, ErrNoUpdates
	}
	if a.sum == nil {
		return nil, errors.New("aggregation: Finish without an accumulator (call Reset first)")
	}
	// Δ = Σ nᵢ·uᵢ / Σ nᵢ, in place of the sum.
	out := a.sum
	scale := float32(1 / float64(a.examples))
	for i := range out {
		out[i] *= scale
	}
	a.sum = nil
	return out, nil
}

func (a *weightedSum) Reset(buf []float32) {
	if len(buf) != a.size {
		panic(fmt.Sprintf("aggregation: Reset with %d values for a model of %d", len(buf), a.size))
	}
	clear(buf)
	a.sum, a.count, a.examples = buf, 0, 0
}
