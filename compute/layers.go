package compute

import (
	"math"
	"math/rand/v2"

	"github.com/fedq/fedq/compute/blas"
)

// layer is one step of a model. Buffers are owned by the layer, sized for the largest
// batch seen so far, so steady-state training allocates nothing. forward keeps a
// reference to its input for backward; the caller must not change it in between.
type layer[T Float] interface {
	params() []*Param[T]
	// forward computes the output of a batch of n samples.
	forward(x []T, n int, train bool) []T
	// backward takes the gradient of the loss with respect to the last output, sets the
	// gradients of the layer's parameters and, when needDX, returns the gradient with
	// respect to the input. With lr ≠ 0 it applies plain SGD instead of setting the
	// gradients: value −= lr·gradient, fused into the products that compute the
	// gradient (after the input gradient has used the old values).
	backward(dy []T, n int, needDX bool, lr T) []T
}

// Param is a named parameter tensor of a model. Value and Grad are views into the
// model's flat parameter and gradient vectors, in PyTorch's layout: a dense weight is
// [out, in], a convolution weight [out, in, kh, kw].
type Param[T Float] struct {
	Name  string
	Shape []int
	Value []T
	Grad  []T
	// Offset is where Value starts in the model's flat parameter vector.
	Offset int
	fanIn  int
}

// dense is a fully connected layer y = x·Wᵀ + b.
type dense[T Float] struct {
	e       *engine[T]
	in, out int
	w, b    *Param[T]
	// wT is W transposed ([in, out]) in a frozen model (see Model.Freeze): the product
	// then reads it row by row, without repacking W on every call.
	wT    []T
	x     []T
	y, dx []T
}

func (l *dense[T]) params() []*Param[T] { return []*Param[T]{l.w, l.b} }

// freeze makes wT from the current weights, with room after it for the product to read
// its ragged right edge in place (blas.EdgeRoom).
func (l *dense[T]) freeze() {
	l.wT = grow(l.wT, l.in*l.out+blas.EdgeRoom)
	l.e.transpose(l.out, l.in, 1, l.w.Value, l.in, 0, l.wT, l.out)
}

func (l *dense[T]) forward(x []T, n int, _ bool) []T {
	l.x = x
	l.y = grow(l.y, n*l.out)
	for i := range n {
		copy(l.y[i*l.out:(i+1)*l.out], l.b.Value)
	}
	if l.wT != nil {
		// The same sums in the same order as with W: the results are bit-for-bit equal.
		l.e.gemm(false, false, n, l.out, l.in, 1, x, l.in, l.wT, l.out, 1, l.y, l.out)
		return l.y
	}
	l.e.gemm(false, true, n, l.out, l.in, 1, x, l.in, l.w.Value, l.in, 1, l.y, l.out)
	return l.y
}

func (l *dense[T]) backward(dy []T, n int, needDX bool, lr T) []T {
	var dx []T
	if needDX {
		l.dx = grow(l.dx, n*l.in)
		l.e.gemm(false, false, n, l.in, l.out, 1, dy, l.out, l.w.Value, l.in, 0, l.dx, l.in)
		dx = l.dx
	}
	if lr != 0 {
		l.e.gemm(true, false, l.out, l.in, n, -lr, dy, l.out, l.x, l.in, 1, l.w.Value, l.in)
		for i := range n {
			l.e.axpy(-lr, dy[i*l.out:(i+1)*l.out], l.b.Value)
		}
		return dx
	}
	l.e.gemm(true, false, l.out, l.in, n, 1, dy, l.out, l.x, l.in, 0, l.w.Grad, l.in)
	db := l.b.Grad
	copy(db, dy[:l.out])
	for i := 1; i < n; i++ {
		l.e.axpy(1, dy[i*l.out:(i+1)*l.out], db)
	}
	return dx
}

// relu is the rectifier y = max(x, 0).
type relu[T Float] struct {
	e     *engine[T]
	size  int
	y, dx []T
}

func (l *relu[T]) params() []*Param[T] { return nil }

func (l *relu[T]) forward(x []T, n int, _ bool) []T {
	l.y = grow(l.y, n*l.size)
	l.e.relu(x[:n*l.size], l.y)
	return l.y
}

func (l *relu[T]) backward(dy []T, n int, _ bool, _ T) []T {
	l.dx = grow(l.dx, n*l.size)
	l.e.reluGrad(l.y[:n*l.size], dy[:n*l.size], l.dx)
	return l.dx
}

// tanh is the hyperbolic tangent y = tanh(x). A bounded activation keeps activations,
// and so per-example gradient norms, from growing as training goes on, which is why
// DP-SGD loses less to clipping with it (Papernot et al. 2021, "Tempered sigmoid
// activations for deep learning with differential privacy").
type tanh[T Float] struct {
	size  int
	y, dx []T
}

func (l *tanh[T]) params() []*Param[T] { return nil }

func (l *tanh[T]) forward(x []T, n int, _ bool) []T {
	m := n * l.size
	l.y = grow(l.y, m)
	for i, v := range x[:m] {
		l.y[i] = T(math.Tanh(float64(v)))
	}
	return l.y
}

func (l *tanh[T]) backward(dy []T, n int, _ bool, _ T) []T {
	m := n * l.size
	l.dx = grow(l.dx, m)
	for i, y := range l.y[:m] {
		l.dx[i] = dy[i] * (1 - y*y)
	}
	return l.dx
}

// flatten reshapes [C,H,W] to [C·H·W]; the data is already in that order.
type flatten[T Float] struct{}

func (flatten[T]) params() []*Param[T]              { return nil }
func (flatten[T]) forward(x []T, _ int, _ bool) []T { return x }
func (flatten[T]) backward(dy []T, _ int, _ bool, _ T) []T {
	return dy
}

// dropout zeroes each activation with probability p while training and scales the
// survivors by 1/(1-p); at evaluation it is the identity.
type dropout[T Float] struct {
	size  int
	p     float64
	rng   *rand.Rand
	mask  []T
	y, dx []T
	train bool
}

func (l *dropout[T]) params() []*Param[T] { return nil }

func (l *dropout[T]) forward(x []T, n int, train bool) []T {
	l.train = train && l.p > 0
	if !l.train {
		return x
	}
	m := n * l.size
	l.mask = grow(l.mask, m)
	l.y = grow(l.y, m)
	keep := T(1 / (1 - l.p))
	for i := range m {
		if l.rng.Float64() < l.p {
			l.mask[i] = 0
		} else {
			l.mask[i] = keep
		}
		l.y[i] = x[i] * l.mask[i]
	}
	return l.y
}

func (l *dropout[T]) backward(dy []T, n int, _ bool, _ T) []T {
	if !l.train {
		return dy
	}
	m := n * l.size
	l.dx = grow(l.dx, m)
	for i := range m {
		l.dx[i] = dy[i] * l.mask[i]
	}
	return l.dx
}

// maxPool takes the maximum over kernel×kernel windows with the given stride, per
// channel. Ties go to the first maximum in row-major order and NaNs propagate, as in
// PyTorch. With relu set it computes max(0, window maximum), which equals a ReLU followed
// by the pool (the two commute), in one pass: New fuses "relu, maxpool2d" into it.
type maxPool[T Float] struct {
	e               *engine[T]
	c, h, w, oh, ow int
	k, stride       int
	relu            bool
	// arg holds, for each output, the index in the batch's input of its maximum, or
	// len(input) when ReLU zeroed it: backward then adds into a spare slot instead of
	// branching.
	arg   []int32
	y, dx []T
}

func (l *maxPool[T]) params() []*Param[T] { return nil }

func (l *maxPool[T]) forward(x []T, n int, _ bool) []T {
	planes := n * l.c
	in, out := l.h*l.w, l.oh*l.ow
	l.y = grow(l.y, planes*out)
	l.arg = grow(l.arg, planes*out)
	sentinel := int32(planes * in)
	for p := range planes {
		xp := x[p*in : (p+1)*in]
		yp := l.y[p*out : (p+1)*out]
		ap := l.arg[p*out : (p+1)*out]
		base := int32(p * in)
		if l.k == 2 && l.stride == 2 {
			l.e.maxPool2x2(xp, l.w, yp, ap, l.oh, l.ow, base, sentinel, l.relu)
			continue
		}
		for oy := range l.oh {
			for ox := range l.ow {
				y0, x0 := oy*l.stride, ox*l.stride
				best := int32(y0*l.w + x0)
				bv := xp[best]
				for ky := range l.k {
					row := (y0+ky)*l.w + x0
					for kx := range l.k {
						if v := xp[row+kx]; v > bv || (v != v && bv == bv) {
							bv, best = v, int32(row+kx)
						}
					}
				}
				best += base
				if l.relu && !(bv > 0) && bv == bv {
					bv, best = 0, sentinel
				}
				yp[oy*l.ow+ox] = bv
				ap[oy*l.ow+ox] = best
			}
		}
	}
	return l.y
}

func (l *maxPool[T]) backward(dy []T, n int, _ bool, _ T) []T {
	m := n * l.c * l.h * l.w
	l.dx = grow(l.dx, m+1)
	if l.k == 2 && l.stride == 2 {
		in, out := l.h*l.w, l.oh*l.ow
		for p := range n * l.c {
			l.e.maxPool2x2Back(dy[p*out:(p+1)*out], l.arg[p*out:(p+1)*out], l.dx[p*in:(p+1)*in], l.w, l.oh, l.ow, int32(p*in))
		}
		return l.dx[:m]
	}
	clear(l.dx)
	for i, a := range l.arg[:n*l.c*l.oh*l.ow] {
		l.dx[a] += dy[i]
	}
	return l.dx[:m]
}
