package compute

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Options configure a model's backend.
type Options struct {
	// Seed makes parameter initialisation and dropout deterministic.
	Seed uint64
	// Threads is how many goroutines one matrix product may use; 0 means 1. The machines
	// fedq targets gain little from a second thread on one core (see notes/compute.md),
	// and a simulation runs many agents at once, so one is the default.
	Threads int
	// Kernel forces a GEMM micro-kernel by name (see blas.Kernels); empty picks the best.
	Kernel string
	// Inference builds a model that only runs forward passes: no gradient vector is
	// allocated (a saving as large as the model), and optimizers, Backward and training
	// refuse it. The coordinator and serving sites hold models this way.
	Inference bool
}

// Model is a feed-forward network built from a Spec. Its parameters live in one flat
// vector, in a fixed order (layer by layer, weight before bias, as PyTorch's state_dict),
// so the federation can read, write and subtract whole models without copies.
//
// A Model is not safe for concurrent use.
type Model[T Float] struct {
	spec   Spec
	opt    Options
	eng    *engine[T]
	layers []layer[T]
	ps     []*Param[T]
	values []T
	grads  []T
	frozen bool // see Freeze

	inSize  int
	logits  []T // last forward output
	dlogits []T
	batch   int // batch size of the last forward
}

// New builds a model from spec and initialises its parameters as PyTorch does by default
// for Linear and Conv2d: weights and biases uniform in ±1/√fan_in (kaiming_uniform with
// a = √5), drawn from a generator seeded with opt.Seed.
func New[T Float](spec Spec, opt Options) (*Model[T], error) {
	m, err := build[T](spec, opt, nil)
	if err != nil {
		return nil, err
	}
	m.Init(opt.Seed)
	return m, nil
}

// build makes a model's layers over the parameter vector values, or over a new one
// (not initialised) when values is nil.
func build[T Float](spec Spec, opt Options, values []T) (*Model[T], error) {
	plan, err := spec.plan()
	if err != nil {
		return nil, err
	}
	eng, err := newEngine[T](opt.Threads, opt.Kernel)
	if err != nil {
		return nil, err
	}
	m := &Model[T]{spec: spec, opt: opt, eng: eng, inSize: prod(spec.Input)}
	// Lay out the parameters first so the flat vectors are allocated once.
	defs, total := paramDefs(plan)
	m.values = values
	if m.values == nil {
		m.values = make([]T, total)
	}
	if len(m.values) != total {
		return nil, fmt.Errorf("model %s has %d parameters, got a vector of %d", spec.Name, total, len(m.values))
	}
	if !opt.Inference {
		m.grads = make([]T, total)
	}
	off := 0
	for _, d := range defs {
		n := prod(d.shape)
		p := &Param[T]{Name: d.name, Shape: d.shape, Value: m.values[off : off+n : off+n], Offset: off, fanIn: d.fanIn}
		if m.grads != nil {
			p.Grad = m.grads[off : off+n : off+n]
		}
		m.ps = append(m.ps, p)
		off += n
	}
	next := 0
	take := func() *Param[T] { p := m.ps[next]; next++; return p }
	for i, pl := range plan {
		var l layer[T]
		if pl.Type == LayerReLU && i+1 < len(plan) && plan[i+1].Type == LayerMaxPool {
			continue // fused into the pool: max(0, ·) commutes with max
		}
		switch pl.Type {
		case LayerDense:
			l = &dense[T]{e: eng, in: prod(pl.in), out: pl.Out, w: take(), b: take()}
		case LayerConv2D:
			l = &conv2d[T]{e: eng, c: pl.in[0], h: pl.in[1], w: pl.in[2], oc: pl.out[0], oh: pl.out[1], ow: pl.out[2],
				k: pl.Kernel, stride: pl.Stride, pad: pl.Pad, wt: take(), b: take()}
		case LayerMaxPool:
			l = &maxPool[T]{e: eng, c: pl.in[0], h: pl.in[1], w: pl.in[2], oh: pl.out[1], ow: pl.out[2], k: pl.Kernel, stride: pl.Stride,
				relu: i > 0 && plan[i-1].Type == LayerReLU}
		case LayerReLU:
			l = &relu[T]{e: eng, size: prod(pl.in)}
		case LayerTanh:
			l = &tanh[T]{size: prod(pl.in)}
		case LayerDropout:
			l = &dropout[T]{size: prod(pl.in), p: pl.P, rng: rand.New(rand.NewPCG(opt.Seed, uint64(i)+0x5eed))}
		case LayerFlatten:
			l = flatten[T]{}
		}
		m.layers = append(m.layers, l)
	}
	return m, nil
}

// Replica returns a model that runs forward passes beside m, on another goroutine: it
// shares m's parameters and, if m is frozen, its transposed weights — read-only, so
// neither model's parameters may change while the other runs — and has its own
// activations and matrix-product buffers. Serving runs one replica per core. Only an
// inference model (Options.Inference) has replicas: training writes the parameters.
func (m *Model[T]) Replica() (*Model[T], error) {
	if m.grads != nil {
		return nil, errors.New("replica: the model is trainable; build it with Options.Inference")
	}
	r, err := build[T](m.spec, m.opt, m.values)
	if err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	r.frozen = m.frozen
	for i, l := range m.layers {
		if d, ok := l.(*dense[T]); ok {
			r.layers[i].(*dense[T]).wT = d.wT
		}
	}
	return r, nil
}

// Init redraws all parameters from seed, as New does.
func (m *Model[T]) Init(seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x1f2e3d4c5b6a7988))
	for _, p := range m.ps {
		bound := 1 / math.Sqrt(float64(p.fanIn))
		for i := range p.Value {
			p.Value[i] = T((rng.Float64()*2 - 1) * bound)
		}
	}
	m.refreeze()
}

// Spec returns the spec the model was built from.
func (m *Model[T]) Spec() Spec { return m.spec }

// Params returns the named parameters in their fixed order.
func (m *Model[T]) Params() []*Param[T] { return m.ps }

// Param returns the parameter with the given name, or nil.
func (m *Model[T]) Param(name string) *Param[T] {
	for _, p := range m.ps {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Values returns the flat parameter vector (not a copy): writing to it changes the model.
func (m *Model[T]) Values() []T { return m.values }

// Grads returns the flat gradient vector, aligned with Values, as set by Backward; nil for
// a model built with Options.Inference.
func (m *Model[T]) Grads() []T { return m.grads }

// NumParams returns the number of scalar parameters.
func (m *Model[T]) NumParams() int { return len(m.values) }

// SetValues copies a flat parameter vector into the model.
func (m *Model[T]) SetValues(v []T) error {
	if len(v) != len(m.values) {
		return fmt.Errorf("set parameters: got %d values, model %q has %d", len(v), m.spec.Name, len(m.values))
	}
	copy(m.values, v)
	m.refreeze()
	return nil
}

// Freeze prepares an inference model to answer predictions from parameters that no longer
// change: each dense layer keeps its weights transposed, which the matrix product streams
// without repacking them on every call — a forward pass of one image through the 2nn
// takes about half the time, for a second copy of the dense weights in memory.
// Predictions are bit-for-bit those of the model unfrozen.
// SetValues, LoadWeights and Init keep a frozen model's copies current; after writing
// Values or a Param's Value directly, call Freeze again. Only a model built with
// Options.Inference can be frozen: training changes the weights on every step.
func (m *Model[T]) Freeze() error {
	if m.grads != nil {
		return errors.New("freeze: the model is trainable; build it with Options.Inference to freeze it")
	}
	m.frozen = true
	m.refreeze()
	return nil
}

// refreeze re-derives a frozen model's copies of its weights.
func (m *Model[T]) refreeze() {
	if !m.frozen {
		return
	}
	for _, l := range m.layers {
		if d, ok := l.(*dense[T]); ok {
			d.freeze()
		}
	}
}

// paramDef is one parameter tensor of a planned model.
type paramDef struct {
	name  string
	shape []int
	fanIn int
}

// paramDefs lists the parameter tensors of a planned model, in order, and their total
// number of values.
func paramDefs(plan []plannedLayer) ([]paramDef, int) {
	var defs []paramDef
	for _, pl := range plan {
		switch pl.Type {
		case LayerDense:
			in := prod(pl.in)
			defs = append(defs, paramDef{pl.Name + ".weight", []int{pl.Out, in}, in}, paramDef{pl.Name + ".bias", []int{pl.Out}, in})
		case LayerConv2D:
			fan := pl.in[0] * pl.Kernel * pl.Kernel
			defs = append(defs, paramDef{pl.Name + ".weight", []int{pl.Out, pl.in[0], pl.Kernel, pl.Kernel}, fan}, paramDef{pl.Name + ".bias", []int{pl.Out}, fan})
		}
	}
	total := 0
	for _, d := range defs {
		total += prod(d.shape)
	}
	return defs, total
}

// Backend describes the kernels the model runs on, e.g. "cpu avx512-12x32, 1 thread".
func (m *Model[T]) Backend() string {
	return fmt.Sprintf("cpu %s, %d thread(s)", m.eng.kernel, m.eng.threads)
}

// InputSize is the number of values of one input sample.
func (m *Model[T]) InputSize() int { return m.inSize }

// Forward runs a batch of n samples (x holds n·InputSize values, NCHW) and returns the
// logits, n×Classes, in a buffer owned by the model that the next Forward overwrites.
// train enables dropout.
func (m *Model[T]) Forward(x []T, n int, train bool) []T {
	if n < 1 || len(x) < n*m.inSize {
		panic(fmt.Sprintf("compute: Forward of %d samples needs %d inputs, got %d", n, n*m.inSize, len(x)))
	}
	h := x[:n*m.inSize]
	for _, l := range m.layers {
		h = l.forward(h, n, train)
	}
	m.logits = h[:n*m.spec.Classes]
	m.batch = n
	return m.logits
}

// Loss computes the mean softmax cross-entropy of the last Forward's logits against
// labels (one per sample; dataset.Unlabelled entries, -1, are skipped) and stores its
// gradient for Backward. It returns the mean loss over labelled samples and how many
// were classified correctly. A label outside [0, Classes) panics.
func (m *Model[T]) Loss(labels []int32) (loss float64, correct int) {
	n, k := m.batch, m.spec.Classes
	m.dlogits = grow(m.dlogits, n*k)
	labelled := 0
	for _, y := range labels[:n] {
		if y >= 0 {
			labelled++
		}
	}
	if labelled == 0 {
		clear(m.dlogits)
		return 0, 0
	}
	inv := 1 / float64(labelled)
	for i := range n {
		z := m.logits[i*k : (i+1)*k]
		g := m.dlogits[i*k : (i+1)*k]
		y := int(labels[i])
		if y < 0 {
			clear(g)
			continue
		}
		if y >= k {
			panic(fmt.Sprintf("compute: label %d out of range [0,%d)", y, k))
		}
		mx := z[0]
		arg := 0
		for j, v := range z {
			if v > mx {
				mx, arg = v, j
			}
		}
		if arg == y {
			correct++
		}
		var sum float64
		for j, v := range z {
			e := math.Exp(float64(v - mx))
			g[j] = T(e)
			sum += e
		}
		loss += (math.Log(sum) - float64(z[y]-mx)) * inv
		scale := T(inv / sum)
		for j := range g {
			g[j] *= scale
		}
		g[y] -= T(inv)
	}
	return loss, correct
}

// Backward back-propagates the gradient stored by Loss and sets Grads to the gradient of
// the mean loss (it overwrites, it does not accumulate). It panics on a model built with
// Options.Inference.
func (m *Model[T]) Backward() { m.backward(0) }

// Trainable reports whether m holds gradients (it was not built with Options.Inference).
func (m *Model[T]) Trainable() bool { return m.grads != nil || len(m.values) == 0 }

// errInference is returned by whatever would train a model built for inference only.
var errInference = errors.New("the model was built for inference only (Options.Inference): it has no gradients to train with")

// backward back-propagates; with lr ≠ 0 it applies plain SGD on the way instead of
// setting the gradients (see layer.backward).
func (m *Model[T]) backward(lr T) {
	if !m.Trainable() {
		panic(errInference)
	}
	g := m.dlogits
	for i := len(m.layers) - 1; i >= 0; i-- {
		g = m.layers[i].backward(g, m.batch, i > 0, lr)
	}
}

// CloneValues returns a copy of the flat parameter vector.
func (m *Model[T]) CloneValues() []T { return slices.Clone(m.values) }

// TrainFLOPs returns the floating-point operations of one training step per sample in the
// layers' products (2 per multiply-add: forward, input gradient except for the first
// layer, and weight gradient), the figure notes/compute.md quotes (0.88 M for the 2NN,
// 72.4 M for the CNN).
func (m *Model[T]) TrainFLOPs() float64 {
	var f float64
	for i, l := range m.layers {
		var macs float64
		switch l := l.(type) {
		case *dense[T]:
			macs = float64(l.in * l.out)
		case *conv2d[T]:
			macs = float64(l.oc * l.rows() * l.pix())
		default:
			continue
		}
		passes := 3.0
		if i == 0 {
			passes = 2
		}
		f += 2 * macs * passes
	}
	return f
}
