package sim

import (
	"context"
	"testing"

	"github.com/fedq/fedq/compute/dataset"
)

func TestSimLearns(t *testing.T) {
	if _, err := dataset.MNISTDir(); err != nil {
		t.Skip(err)
	}
	var seen []Round
	res, err := Run(context.Background(), Config{Agents: 4, Model: "2nn", Partition: "shards", Fraction: 1, Epochs: 1, Batch: 50,
		LR: 0.1, Rounds: 2, Seed: 3, Progress: func(r Round) { seen = append(seen, r) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rounds) != 2 || len(seen) != 2 || res.Rounds[1].Round != 2 {
		t.Fatalf("rounds %+v", res.Rounds)
	}
	if res.FinalAccuracy < 0.5 || res.Params != 199210 || res.Agents != 4 {
		t.Fatalf("result %+v", res)
	}
}

func TestPartitionFlag(t *testing.T) {
	train := &dataset.Dataset{Y: make([]int32, 100), NumClasses: 10, Shape: []int{1}, X: make([]float32, 100)}
	for i := range train.Y {
		train.Y[i] = int32(i % 10)
	}
	for _, p := range []string{"iid", "dirichlet:0.5", "shards", "shards:1"} {
		parts, err := partition(train, Config{Agents: 5, Partition: p, Seed: 1})
		if err != nil || len(parts) != 5 {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, p := range []string{"dirichlet", "dirichlet:-1", "shards:x", "random"} {
		if _, err := partition(train, Config{Agents: 5, Partition: p}); err == nil {
			t.Errorf("%s accepted", p)
		}
	}
}
