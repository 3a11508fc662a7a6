package dataset

import (
	"errors"
	"fmt"
	"math"
)

// Unlabelled is the label of a sample whose label is missing.
const Unlabelled int32 = -1

// Dataset is an in-memory labelled (or partly labelled) dataset of float32 samples.
type Dataset struct {
	// Name identifies the dataset in logs and errors, e.g. "mnist-train".
	Name string
	// X holds N*SampleSize values, sample-major: sample i is
	// X[i*SampleSize() : (i+1)*SampleSize()].
	X []float32
	// Y holds N labels; Unlabelled (-1) where a label is missing. Its length
	// defines the number of samples.
	Y []int32
	// Shape is the shape of one sample, e.g. [1,28,28] (NCHW without N) or
	// [F] for tables.
	Shape []int
	// NumClasses is the number of classes; labels lie in [0, NumClasses).
	NumClasses int
}

// Len returns the number of samples, len(d.Y).
func (d *Dataset) Len() int { return len(d.Y) }

// SampleSize returns the number of float32 values in one sample, the product
// of Shape. It is 0 if Shape is empty or has a non-positive dimension.
func (d *Dataset) SampleSize() int {
	if len(d.Shape) == 0 {
		return 0
	}
	n := 1
	for _, s := range d.Shape {
		if s <= 0 {
			return 0
		}
		n *= s
	}
	return n
}

// Subset returns a new dataset holding copies of the samples at idx, in that
// order (an index may repeat). Name, Shape and NumClasses are carried over.
//
// Every index must lie in [0, d.Len()): indices come from the program (for
// example from a partitioner), not from input files, so an out-of-range index
// is a bug and panics like slice indexing, with a message that names it.
func (d *Dataset) Subset(idx []int) *Dataset {
	ss := d.SampleSize()
	out := &Dataset{
		Name:       d.Name,
		X:          make([]float32, len(idx)*ss),
		Y:          make([]int32, len(idx)),
		Shape:      append([]int(nil), d.Shape...),
		NumClasses: d.NumClasses,
	}
	n := d.Len()
	for j, i := range idx {
		if i < 0 || i >= n {
			panic(fmt.Sprintf("dataset: Subset of %q: index %d (position %d) out of range [0, %d)", d.Name, i, j, n))
		}
		out.Y[j] = d.Y[i]
		copy(out.X[j*ss:(j+1)*ss], d.X[i*ss:(i+1)*ss])
	}
	return out
}

// Validate checks that the dataset is internally consistent: Shape is
// non-empty with positive dimensions, len(X) == Len()*SampleSize(), every
// label is Unlabelled or lies in [0, NumClasses), and X holds no NaN or
// infinity.
func (d *Dataset) Validate() error {
	if d == nil {
		return errors.New("dataset: nil dataset")
	}
	if len(d.Shape) == 0 {
		return fmt.Errorf("dataset %q: empty Shape; set the shape of one sample, e.g. [F] for a table", d.Name)
	}
	for i, s := range d.Shape {
		if s <= 0 {
			return fmt.Errorf("dataset %q: Shape %v has non-positive dimension %d at position %d", d.Name, d.Shape, s, i)
		}
	}
	ss := d.SampleSize()
	if len(d.X) != len(d.Y)*ss {
		return fmt.Errorf("dataset %q: len(X) = %d, want len(Y)*SampleSize = %d*%d = %d", d.Name, len(d.X), len(d.Y), ss, len(d.Y)*ss)
	}
	if d.NumClasses < 0 {
		return fmt.Errorf("dataset %q: NumClasses = %d is negative", d.Name, d.NumClasses)
	}
	for i, y := range d.Y {
		if y != Unlabelled && (y < 0 || int(y) >= d.NumClasses) {
			return fmt.Errorf("dataset %q: sample %d has label %d, want 0..%d or Unlabelled (%d)", d.Name, i, y, d.NumClasses-1, Unlabelled)
		}
	}
	for i, v := range d.X {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("dataset %q: sample %d value %d is %v; clean the data before training", d.Name, i/ss, i%ss, v)
		}
	}
	return nil
}
