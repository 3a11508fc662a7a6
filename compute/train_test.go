package compute

import (
	"context"
	"testing"

	"github.com/fedq/fedq/compute/dataset"
)

func loadMNIST(t testing.TB) (train, test *dataset.Dataset) {
	t.Helper()
	dir, err := dataset.MNISTDir()
	if err != nil {
		t.Skip(err)
	}
	train, test, err = dataset.LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	return train, test
}

// TestTrain2NNOnMNIST trains the 2NN for a fraction of an epoch and checks that it learns
// (the full one-epoch ≥ 96% check is `fedq train`, recorded in BENCHMARKS.md).
func TestTrain2NNOnMNIST(t *testing.T) {
	train, test := loadMNIST(t)
	spec, _ := BuiltinSpec("2nn")
	m, err := New[float32](spec, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	opt, err := NewSGD(m, 0.1, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	sub := train.Subset(dataset.Shuffle(train.Len(), 7)[:6000])
	if _, err := Train(context.Background(), m, opt, sub, TrainConfig{Epochs: 1, Batch: 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	acc, loss, err := Evaluate(m, test.Subset(dataset.Shuffle(test.Len(), 3)[:2000]), 100)
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.85 {
		t.Fatalf("accuracy after 6000 samples = %.3f (loss %.3f), want ≥ 0.85", acc, loss)
	}
}

func TestTrainStepAllocatesNothing(t *testing.T) {
	for _, name := range BuiltinNames() {
		spec, _ := BuiltinSpec(name)
		m, err := New[float32](spec, Options{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		opt, _ := NewSGD(m, 0.01, 0.9, 1e-4, true)
		const n = 10
		x := make([]float32, n*m.InputSize())
		for i := range x {
			x[i] = float32(i%255) / 255
		}
		y := make([]int32, n)
		m.TrainStep(opt, x, y, n)
		if a := testing.AllocsPerRun(3, func() { m.TrainStep(opt, x, y, n) }); a != 0 {
			t.Errorf("%s: TrainStep allocated %v times", name, a)
		}
	}
}
