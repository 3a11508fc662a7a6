package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Augmentation is how strongly an Augmenter distorts a sample.
type Augmentation int

// Augmentations, as FixMatch (Sohn et al. 2020) uses them: a weak view to pseudo-label
// from, a strong view to train against.
const (
	// AugmentNone leaves samples as they are.
	AugmentNone Augmentation = iota
	// AugmentWeak: images get a small random affine warp — a shift of up to WeakShift
	// pixels and a rotation of up to WeakRotate degrees. Other samples are unchanged.
	AugmentWeak
	// AugmentStrong: images get a larger random affine warp (rotation, scale, shear,
	// shift), a random contrast and brightness change, Gaussian noise and a cutout square
	// set to 0. Other samples (feature vectors) get Gaussian noise and a random tenth of
	// their features set to 0.
	AugmentStrong
)

// String names the augmentation as flags and specs write it.
func (a Augmentation) String() string {
	switch a {
	case AugmentNone:
		return "none"
	case AugmentWeak:
		return "weak"
	case AugmentStrong:
		return "strong"
	}
	return fmt.Sprintf("augmentation(%d)", int(a))
}

// The augmentations' ranges. Pixel values are assumed to lie in [0, 1] with 0 the
// background (MNIST as fedq loads it); warped images are filled with 0 outside the
// source and every augmented value is clamped to [0, 1].
const (
	WeakShift      = 2.0  // pixels
	WeakRotate     = 10.0 // degrees
	StrongShift    = 4.0  // pixels
	StrongRotate   = 30.0 // degrees
	StrongScale    = 0.2  // scale in [1-s, 1+s]
	StrongShear    = 0.3  // shear factor in [-s, s]
	StrongNoise    = 0.1  // standard deviation of the added Gaussian noise
	StrongCutout   = 0.4  // largest cutout side, as a share of the image side
	StrongContrast = 0.5  // contrast factor in [1-s, 1+s]
)

// Augmenter makes random views of samples of one shape. A view depends only on the
// sample, the augmentation and the two seed words it is given, so a run is reproduced
// exactly whatever the batch order or the number of threads. An Augmenter keeps scratch
// buffers: it is not safe for concurrent use, and after construction it does not
// allocate.
type Augmenter struct {
	c, h, w int // image shape; h == 0 for feature vectors
	size    int
	src     *rand.PCG
	rng     *rand.Rand
}

// NewAugmenter returns an Augmenter for samples of shape (without the batch dimension):
// [C, H, W] images are warped; any other shape is treated as a feature vector.
func NewAugmenter(shape []int) (*Augmenter, error) {
	size := 1
	for _, s := range shape {
		if s <= 0 {
			return nil, fmt.Errorf("augment: shape %v has a non-positive dimension", shape)
		}
		size *= s
	}
	if len(shape) == 0 {
		return nil, fmt.Errorf("augment: empty sample shape")
	}
	a := &Augmenter{size: size}
	if len(shape) == 3 && shape[1] > 1 && shape[2] > 1 {
		a.c, a.h, a.w = shape[0], shape[1], shape[2]
	}
	a.src = rand.NewPCG(0, 0)
	a.rng = rand.New(a.src)
	return a, nil
}

// Apply writes into dst (len ≥ the sample size) a view of the sample src of kind k,
// drawn from the seed words (seed, id): typically the task's seed and the sample's
// index and epoch mixed into id.
func (a *Augmenter) Apply(k Augmentation, dst, src []float32, seed, id uint64) {
	dst, src = dst[:a.size], src[:a.size]
	if k == AugmentNone {
		copy(dst, src)
		return
	}
	a.src.Seed(seed, id^0x6a09e667f3bcc909)
	r := a.rng
	if a.h == 0 {
		a.features(k, dst, src, r)
		return
	}
	var rot, scale, shear, tx, ty float64
	switch k {
	case AugmentWeak:
		rot = (2*r.Float64() - 1) * WeakRotate
		scale = 1
		tx, ty = (2*r.Float64()-1)*WeakShift, (2*r.Float64()-1)*WeakShift
	default:
		rot = (2*r.Float64() - 1) * StrongRotate
		scale = 1 + (2*r.Float64()-1)*StrongScale
		shear = (2*r.Float64() - 1) * StrongShear
		tx, ty = (2*r.Float64()-1)*StrongShift, (2*r.Float64()-1)*StrongShift
	}
	a.warp(dst, src, rot*math.Pi/180, scale, shear, tx, ty)
	if k != AugmentStrong {
		return
	}
	// Contrast around the image's mean, and brightness.
	contrast := 1 + (2*r.Float64()-1)*StrongContrast
	bright := (2*r.Float64() - 1) * 0.1
	var mean float64
	for _, v := range dst {
		mean += float64(v)
	}
	mean /= float64(len(dst))
	for i, v := range dst {
		dst[i] = clamp01(float32(mean + (float64(v)-mean)*contrast + bright + r.NormFloat64()*StrongNoise))
	}
	// Cutout: a square of side in [1, StrongCutout·min(H, W)] at a random centre.
	side := 1 + r.IntN(max(1, int(StrongCutout*float64(min(a.h, a.w)))))
	cy, cx := r.IntN(a.h), r.IntN(a.w)
	y0, x0 := max(0, cy-side/2), max(0, cx-side/2)
	y1, x1 := min(a.h, y0+side), min(a.w, x0+side)
	for c := range a.c {
		img := dst[c*a.h*a.w:]
		for y := y0; y < y1; y++ {
			clear(img[y*a.w+x0 : y*a.w+x1])
		}
	}
}

// features augments a feature vector: weak is the identity; strong adds Gaussian noise
// and zeroes a random tenth of the features.
func (a *Augmenter) features(k Augmentation, dst, src []float32, r *rand.Rand) {
	copy(dst, src)
	if k != AugmentStrong {
		return
	}
	for i := range dst {
		if r.IntN(10) == 0 {
			dst[i] = 0
			continue
		}
		dst[i] += float32(r.NormFloat64() * StrongNoise)
	}
}

// warp applies, to every channel, the affine map rotate·shear·scale about the image
// centre followed by a shift of (tx, ty) pixels, sampling the source bilinearly (0
// outside it).
func (a *Augmenter) warp(dst, src []float32, rot, scale, shear, tx, ty float64) {
	// Forward map M = R(rot) · [[1, shear], [0, 1]] · scale; dst(p) = src(M⁻¹(p − c − t) + c).
	cos, sin := math.Cos(rot), math.Sin(rot)
	m00, m01 := cos*scale, (cos*shear-sin)*scale
	m10, m11 := sin*scale, (sin*shear+cos)*scale
	det := m00*m11 - m01*m10
	i00, i01, i10, i11 := m11/det, -m01/det, -m10/det, m00/det
	cx, cy := float64(a.w-1)/2, float64(a.h-1)/2
	hw := a.h * a.w
	for c := range a.c {
		s := src[c*hw : (c+1)*hw]
		d := dst[c*hw : (c+1)*hw]
		for y := range a.h {
			dy := float64(y) - cy - ty
			for x := range a.w {
				dx := float64(x) - cx - tx
				sx := i00*dx + i01*dy + cx
				sy := i10*dx + i11*dy + cy
				d[y*a.w+x] = bilinear(s, a.w, a.h, sx, sy)
			}
		}
	}
}

// bilinear samples img (h×w) at (x, y), with 0 outside.
func bilinear(img []float32, w, h int, x, y float64) float32 {
	if x <= -1 || y <= -1 || x >= float64(w) || y >= float64(h) {
		return 0
	}
	fx, fy := math.Floor(x), math.Floor(y)
	x0, y0 := int(fx), int(fy)
	ax, ay := float32(x-fx), float32(y-fy)
	at := func(xi, yi int) float32 {
		if xi < 0 || yi < 0 || xi >= w || yi >= h {
			return 0
		}
		return img[yi*w+xi]
	}
	top := at(x0, y0)*(1-ax) + at(x0+1, y0)*ax
	bot := at(x0, y0+1)*(1-ax) + at(x0+1, y0+1)*ax
	return clamp01(top*(1-ay) + bot*ay)
}

func clamp01(v float32) float32 {
	return min(1, max(0, v))
}
