package aggregation

import (
	"fmt"
	"math"
)

// fedAvgM is FedAvg with server momentum (Hsu et al. 2019): v ← β·v + Δ, and the server
// steps lr·v. Its state is v.
type fedAvgM struct {
	base
	lr, momentum float64
	v            []float32
}

func (s *fedAvgM) Apply(delta []float32) error {
	if s.v == nil {
		s.v = make([]float32, len(delta))
	}
	if len(s.v) != len(delta) {
		return fmt.Errorf("%s: state has %d values, the model %d", s.name, len(s.v), len(delta))
	}
	beta, lr := float32(s.momentum), float32(s.lr)
	for i, d := range delta {
		v := beta*s.v[i] + d
		s.v[i] = v
		delta[i] = lr * v
	}
	return nil
}

func (s *fedAvgM) State() []float32 { return s.v }

func (s *fedAvgM) SetState(state []float32) error {
	s.v = append(s.v[:0], state...)
	if len(state) == 0 {
		s.v = nil
	}
	return nil
}

// adaptiveRule is the second-moment update of an adaptive server optimizer.
type adaptiveRule string

const (
	ruleAdagrad adaptiveRule = "fedadagrad" // v ← v + Δ²
	ruleAdam    adaptiveRule = "fedadam"    // v ← β₂·v + (1−β₂)·Δ²
	ruleYogi    adaptiveRule = "fedyogi"    // v ← v − (1−β₂)·Δ²·sign(v − Δ²)
)

// fedOpt is an adaptive server optimizer of Reddi et al. 2021 (Algorithm 2): the mean
// update Δ is a pseudo-gradient; m ← β₁·m + (1−β₁)·Δ, v by the rule, and the server
// steps η·m / (√v + τ). m and v start at 0, without bias correction, as in the paper and
// in Flower. Its state is m followed by v.
type fedOpt struct {
	base
	rule                   adaptiveRule
	eta, beta1, beta2, tau float64
	state                  []float32 // m, then v
}

func (s *fedOpt) Apply(delta []float32) error {
	n := len(delta)
	if s.state == nil {
		s.state = make([]float32, 2*n)
	}
	if len(s.state) != 2*n {
		return fmt.Errorf("%s: state has %d values, want 2 × %d", s.name, len(s.state), n)
	}
	m, v := s.state[:n], s.state[n:]
	b1, b2 := float32(s.beta1), float32(s.beta2)
	eta, tau := float32(s.eta), float32(s.tau)
	for i, d := range delta {
		mi := b1*m[i] + (1-b1)*d
		d2 := d * d
		vi := v[i]
		switch s.rule {
		case ruleAdagrad:
			vi += d2
		case ruleAdam:
			vi = b2*vi + (1-b2)*d2
		case ruleYogi:
			switch {
			case vi > d2:
				vi -= (1 - b2) * d2
			case vi < d2:
				vi += (1 - b2) * d2
			}
		}
		m[i], v[i] = mi, vi
		delta[i] = eta * mi / (float32(math.Sqrt(float64(vi))) + tau)
	}
	return nil
}

func (s *fedOpt) State() []float32 { return s.state }

func (s *fedOpt) SetState(state []float32) error {
	if len(state)%2 != 0 {
		return fmt.Errorf("%s: state of %d values is not two moment vectors", s.name, len(state))
	}
	s.state = append(s.state[:0], state...)
	if len(state) == 0 {
		s.state = nil
	}
	return nil
}
