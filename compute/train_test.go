package compute

import (
	"context"
	"errors"
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
		momentum, _ := NewSGD(m, 0.01, 0.9, 1e-4, true)
		plain, _ := NewSGD(m, 0.01, 0, 0, false) // fused into backward
		adam, _ := NewAdam(m, 1e-3, 0, 0, 0, 0)
		const n = 10
		x := make([]float32, n*m.InputSize())
		for i := range x {
			x[i] = float32(i%255) / 255
		}
		y := make([]int32, n)
		for _, opt := range []Optimizer[float32]{momentum, plain, adam} {
			m.TrainStep(opt, x, y, n)
			if a := testing.AllocsPerRun(3, func() { m.TrainStep(opt, x, y, n) }); a != 0 {
				t.Errorf("%s with %T: TrainStep allocated %v times", name, opt, a)
			}
		}
	}
}

// TestFusedSGDMatchesSeparateUpdate checks that plain SGD applied inside backward gives
// the same parameters as computing the gradient and then stepping.
func TestFusedSGDMatchesSeparateUpdate(t *testing.T) {
	for _, name := range BuiltinNames() {
		spec, _ := BuiltinSpec(name)
		a, _ := New[float64](spec, Options{Seed: 4})
		b, _ := New[float64](spec, Options{Seed: 4})
		const n = 5
		x := make([]float64, n*a.InputSize())
		for i := range x {
			x[i] = float64(i%97) / 97
		}
		y := []int32{1, 2, 3, 4, 5}
		fused, _ := NewSGD(a, 0.05, 0, 0, false)
		for range 3 {
			a.TrainStep(fused, x, y, n)
			b.Forward(x, n, true)
			b.Loss(y)
			b.Backward()
			for i, g := range b.Grads() {
				b.Values()[i] -= 0.05 * g
			}
		}
		for i, v := range a.Values() {
			if d := v - b.Values()[i]; d > 1e-12 || d < -1e-12 {
				t.Fatalf("%s: parameter %d: fused %v, separate %v", name, i, v, b.Values()[i])
			}
		}
	}
}

// TestInferenceModel checks that a model built for inference predicts as a trainable one
// with the same weights, holds no gradients, and that everything that would train it
// says why it cannot.
func TestInferenceModel(t *testing.T) {
	spec, _ := BuiltinSpec("cnn")
	full, err := New[float32](spec, Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	inf, err := New[float32](spec, Options{Seed: 3, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	if inf.Trainable() || !full.Trainable() {
		t.Fatalf("Trainable: inference %v, full %v", inf.Trainable(), full.Trainable())
	}
	if inf.Grads() != nil || inf.Params()[0].Grad != nil {
		t.Fatal("an inference model holds gradients")
	}
	x := make([]float32, 2*full.InputSize())
	for i := range x {
		x[i] = float32(i%17) / 17
	}
	a, b := full.Forward(x, 2, false), inf.Forward(x, 2, false)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("logit %d: %v (trainable) vs %v (inference)", i, a[i], b[i])
		}
	}
	if _, err := NewSGD(inf, 0.1, 0, 0, false); !errors.Is(err, errInference) {
		t.Errorf("NewSGD: %v", err)
	}
	if _, err := NewAdam(inf, 0.1, 0, 0, 0, 0); !errors.Is(err, errInference) {
		t.Errorf("NewAdam: %v", err)
	}
	d := &dataset.Dataset{}
	if _, err := Train(context.Background(), inf, nil, d, TrainConfig{Epochs: 1, Batch: 1}); !errors.Is(err, errInference) {
		t.Errorf("Train: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Backward on an inference model did not panic")
			}
		}()
		inf.Loss([]int32{1, 2})
		inf.Backward()
	}()
}

// TestProximalMatchesSeparateUpdate checks FedProx's proximal step against a direct
// computation: w ← w − lr·(∇loss + μ·(w − center)).
func TestProximalMatchesSeparateUpdate(t *testing.T) {
	spec, _ := BuiltinSpec("2nn")
	for _, mu := range []float64{0, 0.01, 1} {
		a, _ := New[float64](spec, Options{Seed: 4})
		b, _ := New[float64](spec, Options{Seed: 4})
		center := make([]float64, a.NumParams())
		for i := range center {
			center[i] = float64(i%13)/13 - 0.5
		}
		const n, lr = 5, 0.05
		x := make([]float64, n*a.InputSize())
		for i := range x {
			x[i] = float64(i%89) / 89
		}
		y := []int32{1, 2, 3, 4, 5}
		sgd, _ := NewSGD(a, lr, 0, 0, false)
		prox, err := NewProximal[float64](sgd, mu, center)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			a.TrainStep(prox, x, y, n)
			b.Forward(x, n, true)
			b.Loss(y)
			b.Backward()
			w := b.Values()
			for i, g := range b.Grads() {
				w[i] -= lr * (g + mu*(w[i]-center[i]))
			}
		}
		for i, v := range a.Values() {
			if d := v - b.Values()[i]; d > 1e-12 || d < -1e-12 {
				t.Fatalf("μ=%v: parameter %d: proximal %v, direct %v", mu, i, v, b.Values()[i])
			}
		}
	}
	if _, err := NewProximal[float64](nil, -1, nil); err == nil {
		t.Fatal("a negative μ was accepted")
	}
}
