package compute

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fedq/fedq/compute/dataset"
)

// blobData is a small separable problem: two Gaussian blobs in 4 dimensions.
func blobData(n int, seed uint64) *dataset.Dataset {
	r := rand.New(rand.NewPCG(seed, 1))
	d := &dataset.Dataset{Name: "blobs", X: make([]float32, 4*n), Y: make([]int32, n), Shape: []int{4}, NumClasses: 2}
	for i := range n {
		c := int32(i % 2)
		d.Y[i] = c
		for j := range 4 {
			d.X[4*i+j] = float32(r.NormFloat64()*0.5 + float64(2*c-1))
		}
	}
	return d
}

func blobModel(t *testing.T) *Model[float32] {
	t.Helper()
	spec, err := ParseSpec([]byte(`{"input":[4],"classes":2,"layers":[{"type":"dense","out":8},{"type":"relu"},{"type":"dense","out":2}]}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New[float32](spec, Options{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDPSGDWithoutNoiseIsFullBatchGD checks DP-SGD's per-record path against ordinary
// training: with every record sampled (Batch ≥ N), no noise and a clip no gradient
// reaches, one step is one full-batch gradient step.
func TestDPSGDWithoutNoiseIsFullBatchGD(t *testing.T) {
	d := blobData(16, 3)
	a, b := blobModel(t), blobModel(t)
	sa, _ := NewSGD(a, 0.1, 0, 0, false)
	cfg := TrainConfig{Epochs: 1, Batch: 16, DP: &DPSGD{Clip: 1e9, Rand: rand.New(rand.NewPCG(1, 1))}}
	if _, err := Train(context.Background(), a, sa, d, cfg); err != nil {
		t.Fatal(err)
	}
	sb, _ := NewSGD(b, 0.1, 0, 0, false)
	b.Forward(d.X, 16, true)
	b.Loss(d.Y)
	b.Backward()
	sb.Step(b.values, b.grads)
	for i, v := range a.Values() {
		if math.Abs(float64(v-b.Values()[i])) > 1e-5 {
			t.Fatalf("parameter %d: DP-SGD %v, full batch %v", i, v, b.Values()[i])
		}
	}
}

// TestDPSGDClipsEveryRecord checks that a step moves the weights by at most
// lr × clip × sampled / expected (each record's gradient clipped), and that with noise
// the model still learns the easy problem.
func TestDPSGDClipsEveryRecord(t *testing.T) {
	d := blobData(200, 4)
	m := blobModel(t)
	before := m.CloneValues()
	opt, _ := NewSGD(m, 1, 0, 0, false)
	const clip = 1e-3
	res, err := Train(context.Background(), m, opt, d, TrainConfig{Epochs: 1, Batch: 20, MaxSteps: 1,
		DP: &DPSGD{Clip: clip, Rand: rand.New(rand.NewPCG(2, 2))}})
	if err != nil {
		t.Fatal(err)
	}
	var sq float64
	for i, v := range m.Values() {
		sq += float64(v-before[i]) * float64(v-before[i])
	}
	if bound := 1 * clip * float64(res.Samples) / 20; math.Sqrt(sq) > bound*(1+1e-4) {
		t.Fatalf("a step moved the weights by %v > %v", math.Sqrt(sq), bound)
	}
	m = blobModel(t)
	opt, _ = NewSGD(m, 0.5, 0, 0, false)
	if _, err := Train(context.Background(), m, opt, d, TrainConfig{Epochs: 10, Batch: 20,
		DP: &DPSGD{Clip: 1, NoiseMultiplier: 1, Rand: rand.New(rand.NewPCG(3, 3))}}); err != nil {
		t.Fatal(err)
	}
	if acc, _, _ := Evaluate(m, d, 50); acc < 0.9 {
		t.Fatalf("accuracy %v after DP-SGD on separable blobs", acc)
	}
	if _, err := Train(context.Background(), m, opt, d, TrainConfig{Epochs: 1, Batch: 20, DP: &DPSGD{Clip: 0, Rand: rand.New(rand.NewPCG(3, 3))}}); err == nil {
		t.Fatal("clip 0 accepted")
	}
}
