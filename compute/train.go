package compute

import (
	"context"
	"fmt"
	"time"

	"github.com/fedq/fedq/compute/dataset"
)

// TrainConfig configures local training of a float32 model on a dataset.
type TrainConfig struct {
	Epochs int
	Batch  int
	// Seed orders the batches (epoch e's order depends only on Seed and e).
	Seed uint64
	// MaxSteps, when positive, stops training after that many mini-batches, whatever
	// the epochs (federated "local steps").
	MaxSteps int
	// Progress, when not nil, is called after every batch with the running figures.
	Progress func(TrainProgress)
	// DP, when set, trains with DP-SGD (see DPSGD): Poisson-sampled batches of expected
	// size Batch, per-record clipping and noise.
	DP *DPSGD
}

// TrainProgress reports training as it goes.
type TrainProgress struct {
	Epoch, Epochs    int
	Step, Steps      int // batches done in this epoch, and per epoch
	Samples          int // samples done in all epochs so far
	Loss             float64
	Elapsed          time.Duration
	SamplesPerSecond float64
}

// TrainResult summarises a training run.
type TrainResult struct {
	Samples          int
	Steps            int
	Elapsed          time.Duration
	SamplesPerSecond float64
	// Loss is the mean training loss of the last epoch; Accuracy the share of its samples
	// classified correctly before each step's update.
	Loss, Accuracy float64
}

// Train runs cfg.Epochs epochs of mini-batch training of m on d with opt. It stops early,
// returning ctx's error, when ctx is done.
func Train(ctx context.Context, m *Model[float32], opt Optimizer[float32], d *dataset.Dataset, cfg TrainConfig) (TrainResult, error) {
	if !m.Trainable() {
		return TrainResult{}, fmt.Errorf("train: %w", errInference)
	}
	if err := m.checkData(d); err != nil {
		return TrainResult{}, err
	}
	if cfg.Epochs < 1 || cfg.Batch < 1 {
		return TrainResult{}, fmt.Errorf("train: epochs and batch must be at least 1, got %d and %d", cfg.Epochs, cfg.Batch)
	}
	if cfg.DP != nil {
		return trainDP(ctx, m, opt, d, cfg)
	}
	b, err := dataset.NewBatcher(d, cfg.Batch, cfg.Seed, false)
	if err != nil {
		return TrainResult{}, fmt.Errorf("train: %w", err)
	}
	x := make([]float32, cfg.Batch*m.inSize)
	y := make([]int32, cfg.Batch)
	var res TrainResult
	start := time.Now()
	steps := b.BatchesPerEpoch()
	for e := range cfg.Epochs {
		var lossSum float64
		var correct, seen, labelled int
		for s := 0; ; s++ {
			if cfg.MaxSteps > 0 && res.Steps >= cfg.MaxSteps {
				break
			}
			n, ok := b.Next(x, y)
			if !ok {
				break
			}
			if err := ctx.Err(); err != nil {
				return res, err
			}
			l, c := m.TrainStep(opt, x, y, n)
			for _, v := range y[:n] {
				if v >= 0 {
					labelled++
				}
			}
			lossSum += l * float64(n)
			correct += c
			seen += n
			res.Samples += n
			res.Steps++
			if cfg.Progress != nil {
				el := time.Since(start)
				cfg.Progress(TrainProgress{Epoch: e + 1, Epochs: cfg.Epochs, Step: s + 1, Steps: steps, Samples: res.Samples,
					Loss: lossSum / float64(seen), Elapsed: el, SamplesPerSecond: float64(res.Samples) / el.Seconds()})
			}
		}
		if seen > 0 {
			res.Loss = lossSum / float64(seen)
			res.Accuracy = float64(correct) / float64(max(labelled, 1))
		}
		if cfg.MaxSteps > 0 && res.Steps >= cfg.MaxSteps {
			break
		}
	}
	res.Elapsed = time.Since(start)
	res.SamplesPerSecond = float64(res.Samples) / res.Elapsed.Seconds()
	return res, nil
}

// TrainStep runs forward, loss, backward and one optimizer step on a batch of n samples
// and returns the batch's mean loss and how many samples were classified correctly.
//
// When the optimizer is plain SGD (no momentum, no weight decay), the update is fused
// into the backward pass: each layer adds −lr·gradient straight into its weights in the
// product that computes the gradient, after its input gradient has used the old
// weights. The result is the same update without writing and re-reading a gradient
// vector as large as the model; Grads is then left as it was.
func (m *Model[T]) TrainStep(opt Optimizer[T], x []T, y []int32, n int) (loss float64, correct int) {
	m.Forward(x, n, true)
	loss, correct = m.Loss(y[:n])
	if f, ok := opt.(fusedSGD); ok {
		if lr, ok := f.fusedLR(); ok {
			m.backward(T(lr))
			return loss, correct
		}
	}
	m.Backward()
	opt.Step(m.values, m.grads)
	return loss, correct
}

// Evaluate returns m's accuracy and mean loss on the labelled samples of d, in batches.
func Evaluate(m *Model[float32], d *dataset.Dataset, batch int) (accuracy, loss float64, err error) {
	if err := m.checkData(d); err != nil {
		return 0, 0, err
	}
	if batch < 1 {
		return 0, 0, fmt.Errorf("evaluate: batch must be at least 1, got %d", batch)
	}
	ss := m.inSize
	var correct, labelled int
	for i := 0; i < d.Len(); i += batch {
		n := min(batch, d.Len()-i)
		m.Forward(d.X[i*ss:(i+n)*ss], n, false)
		l, c := m.Loss(d.Y[i : i+n])
		lab := 0
		for _, v := range d.Y[i : i+n] {
			if v >= 0 {
				lab++
			}
		}
		loss += l * float64(lab)
		correct += c
		labelled += lab
	}
	if labelled == 0 {
		return 0, 0, fmt.Errorf("evaluate: dataset %q has no labelled samples", d.Name)
	}
	return float64(correct) / float64(labelled), loss / float64(labelled), nil
}

// checkData reports whether d fits the model's input and classes.
func (m *Model[T]) checkData(d *dataset.Dataset) error {
	if d == nil || d.Len() == 0 {
		return fmt.Errorf("dataset is empty")
	}
	if d.SampleSize() != m.inSize {
		return fmt.Errorf("dataset %q has samples of shape %v (%d values), model %q expects %v", d.Name, d.Shape, d.SampleSize(), m.spec.Name, m.spec.Input)
	}
	if d.NumClasses > m.spec.Classes {
		return fmt.Errorf("dataset %q has %d classes, model %q outputs %d", d.Name, d.NumClasses, m.spec.Name, m.spec.Classes)
	}
	return nil
}

// Predict returns the most likely class of each of the n samples in x, in batches.
func Predict(m *Model[float32], x []float32, n, batch int) []int {
	out := make([]int, 0, n)
	k := m.spec.Classes
	for i := 0; i < n; i += batch {
		b := min(batch, n-i)
		z := m.Forward(x[i*m.inSize:(i+b)*m.inSize], b, false)
		for s := range b {
			row := z[s*k : (s+1)*k]
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			out = append(out, best)
		}
	}
	return out
}
