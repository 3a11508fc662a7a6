package sim

import (
	"context"
	"strings"
	"testing"
	"time"

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

// TestByzantineAgentsAndRobustStrategy runs a small federation where an agent sends
// scaled updates, aggregated by the coordinate-wise median, and checks the attack's
// bookkeeping and that the median still learns (TestByzantineTamper checks each attack).
func TestByzantineAgentsAndRobustStrategy(t *testing.T) {
	if _, err := dataset.MNISTDir(); err != nil {
		t.Skip(err)
	}
	for _, attack := range []string{"scale"} {
		res, err := Run(context.Background(), Config{Agents: 5, Model: "2nn", Partition: "iid", Fraction: 1, Epochs: 1, Batch: 50,
			LR: 0.1, Rounds: 2, Seed: 3, Strategy: "median", Byzantine: 0.2, Attack: attack})
		if err != nil {
			t.Fatal(err)
		}
		if res.Byzantine != 1 || res.Attack != attack || res.Strategy != "median" {
			t.Fatalf("%s: result %+v", attack, res)
		}
		if res.FinalAccuracy < 0.8 {
			t.Fatalf("%s: the median reached only %.3f", attack, res.FinalAccuracy)
		}
	}
}

func TestByzantineTamper(t *testing.T) {
	u := []float32{1, -2}
	byzantineAgent("signflip", 4, nil, 1)(1, u)
	if u[0] != -4 || u[1] != 8 {
		t.Fatalf("signflip: %v", u)
	}
	byzantineAgent("scale", 10, nil, 1)(1, u)
	if u[0] != -40 || u[1] != 80 {
		t.Fatalf("scale: %v", u)
	}
	a, b := []float32{0, 0}, []float32{0, 0}
	byzantineAgent("noise", 1, nil, 7)(3, a)
	byzantineAgent("noise", 1, nil, 7)(3, b)
	if a[0] == 0 || a[0] != b[0] || a[1] != b[1] {
		t.Fatalf("noise is not seeded: %v %v", a, b)
	}
	d := &dataset.Dataset{Y: []int32{0, 9, 3, dataset.Unlabelled}, NumClasses: 10}
	if byzantineAgent("labelflip", 0, d, 1) != nil || d.Y[0] != 9 || d.Y[1] != 0 || d.Y[2] != 6 || d.Y[3] != dataset.Unlabelled {
		t.Fatalf("labelflip: %v", d.Y)
	}
}

func TestConfigErrors(t *testing.T) {
	base := Config{Agents: 5, Model: "2nn", Fraction: 1, Epochs: 1, Batch: 10, LR: 0.1, Rounds: 1}
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Strategy = "fedadam:beta1=3" }, "beta1"},
		{func(c *Config) { c.Byzantine = 1 }, "Byzantine share"},
		{func(c *Config) { c.Byzantine = 0.2; c.Attack = "bribe" }, `attack "bribe"`},
		{func(c *Config) { c.Attack = "scale" }, "needs Byzantine agents"},
		{func(c *Config) { c.Byzantine = 0.2; c.Attack = "scale"; c.AttackScale = -1 }, "attack scale"},
		{func(c *Config) { c.TrainDeadline = -time.Second }, "train deadline"},
		{func(c *Config) { c.Fraction = 1.5 }, "fraction in (0, 1]"},
		{func(c *Config) { c.Partition = "dirichlet:0" }, `partition "dirichlet:0"`},
		{func(c *Config) { c.Partition = "random" }, `partition "random"`},
		{func(c *Config) { c.Semi = "labels-at-server:600" }, `semi "labels-at-server:600"`},
		{func(c *Config) { c.SemiBaseline = true }, "baseline needs a semi-supervised setting"},
		{func(c *Config) { c.Model = "resnet" }, `model "resnet"`},
	} {
		cfg := base
		tc.change(&cfg)
		// Validate refuses it before any data is loaded, and Run refuses it too.
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v): %v, want an error about %q", cfg, err, tc.want)
		}
		if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v): %v, want an error about %q", cfg, err, tc.want)
		}
	}
	if err := base.Validate(); err != nil {
		t.Errorf("Validate(%+v): %v", base, err)
	}
}
