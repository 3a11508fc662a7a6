package compute

// conv2d is a 2-D convolution (cross-correlation, as torch.nn.Conv2d) with square
// kernels, stride and zero padding, computed per sample as im2col followed by one matrix
// product: y[oc, p] = Σ_q W[oc, q]·col[q, p] + b[oc], where q runs over (c, ky, kx) and
// p over output pixels. backward recomputes col rather than keeping it per sample, which
// costs one more im2col per sample and saves batch×C·K²×OH·OW floats of memory.
type conv2d[T Float] struct {
	e                *engine[T]
	c, h, w          int // input
	oc, oh, ow       int // output
	k, stride, pad   int
	wt, b            *Param[T]
	x                []T
	col, dcol, y, dx []T
}

func (l *conv2d[T]) params() []*Param[T] { return []*Param[T]{l.wt, l.b} }

func (l *conv2d[T]) rows() int { return l.c * l.k * l.k } // rows of col
func (l *conv2d[T]) pix() int  { return l.oh * l.ow }     // columns of col

func (l *conv2d[T]) forward(x []T, n int, _ bool) []T {
	l.x = x
	q, p := l.rows(), l.pix()
	in, out := l.c*l.h*l.w, l.oc*p
	l.col = grow(l.col, q*p)
	l.y = grow(l.y, n*out)
	for s := range n {
		ys := l.y[s*out : (s+1)*out]
		for o := range l.oc {
			row := ys[o*p : (o+1)*p]
			bv := l.b.Value[o]
			for i := range row {
				row[i] = bv
			}
		}
		im2col(x[s*in:(s+1)*in], l.col, l.c, l.h, l.w, l.k, l.stride, l.pad, l.oh, l.ow)
		l.e.gemm(false, false, l.oc, p, q, 1, l.wt.Value, q, l.col, p, 1, ys, p)
	}
	return l.y
}

func (l *conv2d[T]) backward(dy []T, n int, needDX bool) []T {
	q, p := l.rows(), l.pix()
	in, out := l.c*l.h*l.w, l.oc*p
	if needDX {
		l.dcol = grow(l.dcol, q*p)
		l.dx = grow(l.dx, n*in)
	}
	db := l.b.Grad
	clear(db)
	for s := range n {
		dys := dy[s*out : (s+1)*out]
		im2col(l.x[s*in:(s+1)*in], l.col, l.c, l.h, l.w, l.k, l.stride, l.pad, l.oh, l.ow)
		var beta T
		if s > 0 {
			beta = 1
		}
		l.e.gemm(false, true, l.oc, q, p, 1, dys, p, l.col, p, beta, l.wt.Grad, q)
		for o := range l.oc {
			var sum T
			for _, v := range dys[o*p : (o+1)*p] {
				sum += v
			}
			db[o] += sum
		}
		if needDX {
			l.e.gemm(true, false, q, p, l.oc, 1, l.wt.Value, q, dys, p, 0, l.dcol, p)
			col2im(l.dcol, l.dx[s*in:(s+1)*in], l.c, l.h, l.w, l.k, l.stride, l.pad, l.oh, l.ow)
		}
	}
	if !needDX {
		return nil
	}
	return l.dx
}

// validRange returns the output positions o in [0, n) whose input position
// o·stride − pad + k lies in [0, size).
func validRange(n, size, k, stride, pad int) (lo, hi int) {
	// o·stride ≥ pad − k  ⇔  o ≥ ceil((pad − k)/stride)
	lo = 0
	if d := pad - k; d > 0 {
		lo = (d + stride - 1) / stride
	}
	// o·stride − pad + k ≤ size − 1  ⇔  o ≤ floor((size − 1 + pad − k)/stride)
	top := size - 1 + pad - k
	if top < 0 {
		return 0, 0
	}
	hi = min(top/stride+1, n)
	return min(lo, hi), hi
}

// im2col writes col[(c·K+ky)·K+kx][oy·OW+ox] = x[c][oy·s−pad+ky][ox·s−pad+kx], or 0 where
// that falls in the padding.
func im2col[T Float](x, col []T, c, h, w, k, stride, pad, oh, ow int) {
	p := oh * ow
	for ci := range c {
		plane := x[ci*h*w : (ci+1)*h*w]
		for ky := range k {
			ylo, yhi := validRange(oh, h, ky, stride, pad)
			for kx := range k {
				row := col[((ci*k+ky)*k+kx)*p : ((ci*k+ky)*k+kx+1)*p]
				xlo, xhi := validRange(ow, w, kx, stride, pad)
				clear(row[:ylo*ow])
				clear(row[yhi*ow:])
				for oy := ylo; oy < yhi; oy++ {
					dst := row[oy*ow : (oy+1)*ow]
					iy := oy*stride - pad + ky
					src := plane[iy*w:]
					clear(dst[:xlo])
					clear(dst[xhi:])
					ix := xlo*stride - pad + kx
					if stride == 1 {
						copy(dst[xlo:xhi], src[ix:ix+xhi-xlo])
						continue
					}
					for ox := xlo; ox < xhi; ox++ {
						dst[ox] = src[ix]
						ix += stride
					}
				}
			}
		}
	}
}

// col2im is the adjoint of im2col: x = 0, then x[c][iy][ix] += col[…] for every column
// entry that im2col read from there.
func col2im[T Float](col, x []T, c, h, w, k, stride, pad, oh, ow int) {
	clear(x[:c*h*w])
	p := oh * ow
	for ci := range c {
		plane := x[ci*h*w : (ci+1)*h*w]
		for ky := range k {
			ylo, yhi := validRange(oh, h, ky, stride, pad)
			for kx := range k {
				row := col[((ci*k+ky)*k+kx)*p : ((ci*k+ky)*k+kx+1)*p]
				xlo, xhi := validRange(ow, w, kx, stride, pad)
				for oy := ylo; oy < yhi; oy++ {
					src := row[oy*ow+xlo : oy*ow+xhi]
					iy := oy*stride - pad + ky
					ix := xlo*stride - pad + kx
					dst := plane[iy*w:]
					for _, v := range src {
						dst[ix] += v
						ix += stride
					}
				}
			}
		}
	}
}
