package compute

// conv2d is a 2-D convolution (cross-correlation, as torch.nn.Conv2d) with square
// kernels, stride and zero padding, computed per sample as im2col followed by one matrix
// product.
//
// The products are arranged for the GEMM kernels rather than literally:
//
//   - col gets one extra row of ones, so the bias rides in the products: the forward
//     product takes the bias as an extra row of Wᵀ, and the weight-gradient product
//     yields the bias gradient as an extra row.
//   - Outputs are computed transposed — yᵀ[p, oc] = colᵀ·[Wᵀ; b] — into a scratch
//     buffer and transposed once into NCHW: the pixel count (196, 784) fits 12-row tiles
//     and the channel count (32, 64) whole 32-wide panels, and the kernel stores its tiles
//     directly however many K blocks the product has.
//   - The weight gradient accumulates transposed, dWᵀ[q, oc] += col·dyᵀ, for the same
//     reason, and is transposed once per batch.
//   - For stride 1 the input gradient is itself a convolution — of dy, padded by
//     K−1−pad, with the kernel flipped and its channel axes swapped — so it is an im2col
//     of dy and one product, instead of a product and a col2im scatter-add.
//
// backward recomputes col rather than keeping it per sample: one more im2col per sample,
// batch×C·K²×OH·OW fewer floats held.
type conv2d[T Float] struct {
	e              *engine[T]
	c, h, w        int // input
	oc, oh, ow     int // output
	k, stride, pad int
	wt, b          *Param[T]
	x              []T
	col            []T // im2col of one sample plus a row of ones: [q+1, p]
	y, dx          []T
	wTb            []T // [Wᵀ; bias]: [q+1, oc]
	t              []T // a transposed output or input gradient of one sample
	dwt            []T // [dWᵀ; dbias]: [q+1, oc]
	wflipT         []T // stride 1: flipped kernel, transposed: [oc·K·K, c]
	coly           []T // stride 1: im2col of dy, [oc·K·K, h·w]
	dcol           []T // stride > 1: the gradient of col
}

func (l *conv2d[T]) params() []*Param[T] { return []*Param[T]{l.wt, l.b} }

func (l *conv2d[T]) rows() int { return l.c * l.k * l.k } // rows of col, without the ones
func (l *conv2d[T]) pix() int  { return l.oh * l.ow }     // columns of col

// colFor returns the im2col buffer with its row of ones in place.
func (l *conv2d[T]) colFor(q, p int) []T {
	if len(l.col) != (q+1)*p {
		l.col = grow(l.col, (q+1)*p)
		ones := l.col[q*p:]
		for i := range ones {
			ones[i] = 1
		}
	}
	return l.col
}

func (l *conv2d[T]) forward(x []T, n int, _ bool) []T {
	l.x = x
	q, p := l.rows(), l.pix()
	in, out := l.c*l.h*l.w, l.oc*p
	col := l.colFor(q, p)
	l.y = grow(l.y, n*out)
	l.t = grow(l.t, max(p*l.oc, l.h*l.w*l.c))
	l.wTb = grow(l.wTb, (q+1)*l.oc)
	l.e.transpose(l.oc, q, 1, l.wt.Value, q, 0, l.wTb, l.oc)
	copy(l.wTb[q*l.oc:], l.b.Value)
	for s := range n {
		l.e.im2col(x[s*in:(s+1)*in], col, l.c, l.h, l.w, l.k, l.stride, l.pad, l.oh, l.ow)
		l.e.gemm(true, false, p, l.oc, q+1, 1, col, p, l.wTb, l.oc, 0, l.t, l.oc)
		l.e.transpose(p, l.oc, 1, l.t, l.oc, 0, l.y[s*out:(s+1)*out], p)
	}
	return l.y
}

func (l *conv2d[T]) backward(dy []T, n int, needDX bool, lr T) []T {
	q, p := l.rows(), l.pix()
	in, out := l.c*l.h*l.w, l.oc*p
	kk, hw := l.k*l.k, l.h*l.w
	col := l.colFor(q, p)
	l.dwt = grow(l.dwt, (q+1)*l.oc)
	if needDX {
		l.dx = grow(l.dx, n*in)
		if l.stride == 1 {
			// wflipT[(o·K+ky)·K+kx][c] = W[o][c][K−1−ky][K−1−kx], from the weights before
			// any fused update.
			l.wflipT = grow(l.wflipT, l.c*l.oc*kk)
			l.coly = grow(l.coly, l.oc*kk*hw)
			w := l.wt.Value
			for o := range l.oc {
				for c := range l.c {
					src := w[(o*l.c+c)*kk : (o*l.c+c+1)*kk]
					for i, v := range src {
						l.wflipT[(o*kk+kk-1-i)*l.c+c] = v
					}
				}
			}
		} else {
			l.dcol = grow(l.dcol, q*p)
		}
	}
	for s := range n {
		dys := dy[s*out : (s+1)*out]
		l.e.im2col(l.x[s*in:(s+1)*in], col, l.c, l.h, l.w, l.k, l.stride, l.pad, l.oh, l.ow)
		var beta T
		if s > 0 {
			beta = 1
		}
		l.e.gemm(false, true, q+1, l.oc, p, 1, col, p, dys, p, beta, l.dwt, l.oc)
		if !needDX {
			continue
		}
		dxs := l.dx[s*in : (s+1)*in]
		if l.stride == 1 {
			l.e.im2col(dys, l.coly, l.oc, l.oh, l.ow, l.k, 1, l.k-1-l.pad, l.h, l.w)
			l.e.gemm(true, false, hw, l.c, l.oc*kk, 1, l.coly, hw, l.wflipT, l.c, 0, l.t, l.c)
			l.e.transpose(hw, l.c, 1, l.t, l.c, 0, dxs, hw)
		} else {
			l.e.gemm(true, false, q, p, l.oc, 1, l.wt.Value, q, dys, p, 0, l.dcol, p)
			l.e.col2im(l.dcol, dxs, l.c, l.h, l.w, l.k, l.stride, l.pad, l.oh, l.ow)
		}
	}
	dbias := l.dwt[q*l.oc:]
	if lr != 0 {
		l.e.transpose(q, l.oc, -lr, l.dwt, l.oc, 1, l.wt.Value, q)
		l.e.axpy(-lr, dbias, l.b.Value)
	} else {
		l.e.transpose(q, l.oc, 1, l.dwt, l.oc, 0, l.wt.Grad, q)
		copy(l.b.Grad, dbias)
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
func (e *engine[T]) im2col(x, col []T, c, h, w, k, stride, pad, oh, ow int) {
	p := oh * ow
	if stride == 1 && e.im2colS1(x, col, c, h, w, k, pad) {
		return
	}
	if stride == 1 {
		for ci := range c {
			plane := x[ci*h*w : (ci+1)*h*w]
			for ky := range k {
				ylo, yhi := validRange(oh, h, ky, stride, pad)
				for kx := range k {
					row := col[((ci*k+ky)*k+kx)*p : ((ci*k+ky)*k+kx+1)*p]
					xlo, xhi := validRange(ow, w, kx, stride, pad)
					clear(row[:ylo*ow])
					clear(row[yhi*ow:])
					switch {
					case ylo < yhi && xlo < xhi:
						e.copyRows(row[ylo*ow:], ow, plane[(ylo-pad+ky)*w+xlo-pad+kx:], w, yhi-ylo, xlo, xhi-xlo, ow)
					case ylo < yhi:
						clear(row[ylo*ow : yhi*ow])
					}
				}
			}
		}
		return
	}
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
func (e *engine[T]) col2im(col, x []T, c, h, w, k, stride, pad, oh, ow int) {
	clear(x[:c*h*w])
	p := oh * ow
	if stride == 1 {
		for ci := range c {
			plane := x[ci*h*w : (ci+1)*h*w]
			for ky := range k {
				ylo, yhi := validRange(oh, h, ky, stride, pad)
				for kx := range k {
					row := col[((ci*k+ky)*k+kx)*p : ((ci*k+ky)*k+kx+1)*p]
					xlo, xhi := validRange(ow, w, kx, stride, pad)
					if ylo < yhi && xlo < xhi {
						e.addRows(plane[(ylo-pad+ky)*w+xlo-pad+kx:], w, row[ylo*ow+xlo:], ow, yhi-ylo, xhi-xlo)
					}
				}
			}
		}
		return
	}
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
