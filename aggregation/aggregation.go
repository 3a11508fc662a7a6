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

// Strategy is how updates are combined. Strategies with state across rounds (server
// momentum, adaptive moments) expose it so that it can be stored with each version.
type Strategy interface {
	// Name identifies the strategy, e.g. "fedavg".
	Name() string
	// NewRound returns an aggregator for the updates of a model with size parameters.
	// It holds no accumulator until Reset gives it one: the caller owns the buffers, so
	// that it can cycle a fixed set of them.
	NewRound(size int) Aggregator
}

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
	// comparison per value, and a branch that is never taken on good data.
	var acc float32
	for _, v := range update {
		acc += v - v
	}
	if acc == 0 {
		return nil
	}
	for i, v := range update {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("update value %d is %v: the agent's training diverged", i, v)
		}
	}
	return nil
}

// ErrNoUpdates is returned by Finish when no update was added.
var ErrNoUpdates = errors.New("aggregation: no updates to aggregate")

// FedAvg is federated averaging (McMahan et al. 2017): the base plus the average of the
// updates weighted by example count.
type FedAvg struct{}

// Name implements Strategy.
func (FedAvg) Name() string { return "fedavg" }

// NewRound implements Strategy.
func (FedAvg) NewRound(size int) Aggregator { return &weightedSum{size: size} }

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

// New returns the strategy called name.
func New(name string) (Strategy, error) {
	switch name {
	case "", "fedavg":
		return FedAvg{}, nil
	}
	return nil, fmt.Errorf("unknown strategy %q (have: fedavg)", name)
}
