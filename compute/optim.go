package compute

import (
	"fmt"
	"math"
)

// Optimizer updates a flat parameter vector from its gradient, in place.
type Optimizer[T Float] interface {
	// Step applies one update. values and grads are aligned; grads may be modified.
	Step(values, grads []T)
	// Reset forgets accumulated state (momentum, moments), e.g. when a new global model
	// arrives at the start of a federated round.
	Reset()
}

// SGD is stochastic gradient descent with PyTorch's semantics (torch.optim.SGD):
//
//	g ← g + wd·w;  b ← μ·b + (1−dampening)·g (b ← g on the first step);
//	g ← g + μ·b (Nesterov) or g ← b;  w ← w − lr·g
type SGD[T Float] struct {
	LR, Momentum, Dampening, WeightDecay float64
	Nesterov                             bool

	eng *engine[T]
	buf []T
}

// NewSGD returns an SGD optimizer for m's parameters, checking the hyper-parameters.
func NewSGD[T Float](m *Model[T], lr, momentum, weightDecay float64, nesterov bool) (*SGD[T], error) {
	if !m.Trainable() {
		return nil, fmt.Errorf("sgd: %w", errInference)
	}
	if !(lr > 0) || math.IsInf(lr, 0) {
		return nil, fmt.Errorf("sgd: learning rate must be positive, got %v", lr)
	}
	if momentum < 0 || weightDecay < 0 {
		return nil, fmt.Errorf("sgd: momentum and weight decay must be ≥ 0, got %v and %v", momentum, weightDecay)
	}
	if nesterov && momentum == 0 {
		return nil, fmt.Errorf("sgd: Nesterov momentum needs momentum > 0")
	}
	return &SGD[T]{LR: lr, Momentum: momentum, WeightDecay: weightDecay, Nesterov: nesterov, eng: m.eng}, nil
}

// Step implements Optimizer.
func (o *SGD[T]) Step(w, g []T) {
	if o.WeightDecay != 0 {
		o.eng.axpy(T(o.WeightDecay), w, g)
	}
	if o.Momentum != 0 {
		mu, damp := T(o.Momentum), T(1-o.Dampening)
		if o.buf == nil {
			o.buf = make([]T, len(g))
			copy(o.buf, g)
		} else {
			for i, v := range g {
				o.buf[i] = mu*o.buf[i] + damp*v
			}
		}
		if o.Nesterov {
			o.eng.axpy(mu, o.buf, g)
		} else {
			g = o.buf
		}
	}
	o.eng.axpy(T(-o.LR), g, w)
}

// Reset implements Optimizer.
func (o *SGD[T]) Reset() { o.buf = nil }

// fusedSGD is implemented by optimizers that can be applied inside the backward pass:
// fusedLR reports the learning rate when the update is exactly w ← w − lr·g.
type fusedSGD interface{ fusedLR() (float64, bool) }

func (o *SGD[T]) fusedLR() (float64, bool) { return o.LR, o.Momentum == 0 && o.WeightDecay == 0 }

// Adam is the Adam optimizer with PyTorch's semantics (torch.optim.Adam, L2 weight decay
// added to the gradient, bias-corrected moments).
type Adam[T Float] struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64

	eng  *engine[T]
	m, v []T
	t    int
}

// NewAdam returns an Adam optimizer for m's parameters; zero betas and eps take PyTorch's
// defaults (0.9, 0.999, 1e-8).
func NewAdam[T Float](m *Model[T], lr, beta1, beta2, eps, weightDecay float64) (*Adam[T], error) {
	if !m.Trainable() {
		return nil, fmt.Errorf("adam: %w", errInference)
	}
	if beta1 == 0 {
		beta1 = 0.9
	}
	if beta2 == 0 {
		beta2 = 0.999
	}
	if eps == 0 {
		eps = 1e-8
	}
	if !(lr > 0) || beta1 < 0 || beta1 >= 1 || beta2 < 0 || beta2 >= 1 || eps <= 0 || weightDecay < 0 {
		return nil, fmt.Errorf("adam: need lr > 0, 0 ≤ β1, β2 < 1, ε > 0, wd ≥ 0; got lr %v β1 %v β2 %v ε %v wd %v", lr, beta1, beta2, eps, weightDecay)
	}
	return &Adam[T]{LR: lr, Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay, eng: m.eng}, nil
}

// Step implements Optimizer.
func (o *Adam[T]) Step(w, g []T) {
	if o.m == nil {
		o.m, o.v = make([]T, len(w)), make([]T, len(w))
	}
	o.t++
	b1, b2 := T(o.Beta1), T(o.Beta2)
	c1 := 1 - math.Pow(o.Beta1, float64(o.t))
	c2 := 1 - math.Pow(o.Beta2, float64(o.t))
	step := T(o.LR / c1)
	sc2 := 1 / math.Sqrt(c2)
	wd := T(o.WeightDecay)
	eps := o.Eps
	for i := range w {
		gi := g[i] + wd*w[i]
		o.m[i] = b1*o.m[i] + (1-b1)*gi
		o.v[i] = b2*o.v[i] + (1-b2)*gi*gi
		den := T(math.Sqrt(float64(o.v[i]))*sc2 + eps)
		w[i] -= step * o.m[i] / den
	}
}

// Reset implements Optimizer.
func (o *Adam[T]) Reset() { o.m, o.v, o.t = nil, nil, 0 }

// Proximal adds FedProx's proximal term (Li et al. 2020) to another optimizer: the local
// loss gains (μ/2)‖w − Center‖², so each step's gradient gains μ·(w − Center), which
// keeps local training near the global model Center.
type Proximal[T Float] struct {
	Optimizer[T]
	Mu     float64
	Center []T
}

// NewProximal wraps opt with the proximal term around center (aligned with the model's
// values), checking μ.
func NewProximal[T Float](opt Optimizer[T], mu float64, center []T) (*Proximal[T], error) {
	if !(mu >= 0) || math.IsInf(mu, 0) {
		return nil, fmt.Errorf("proximal term: μ must be ≥ 0, got %v", mu)
	}
	return &Proximal[T]{Optimizer: opt, Mu: mu, Center: center}, nil
}

// Step implements Optimizer.
func (p *Proximal[T]) Step(w, g []T) {
	mu := T(p.Mu)
	c := p.Center[:len(w)]
	g = g[:len(w)]
	for i, wi := range w {
		g[i] += mu * (wi - c[i])
	}
	p.Optimizer.Step(w, g)
}
