package dataset

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// tiny returns a 4-sample dataset of 2x3 samples where every value of sample
// i equals i (plus its position / 100), labels 0, 1, 2, Unlabelled.
func tiny() *Dataset {
	d := &Dataset{Name: "tiny", Shape: []int{2, 3}, NumClasses: 3, Y: []int32{0, 1, 2, Unlabelled}}
	for i := range 4 {
		for j := range 6 {
			d.X = append(d.X, float32(i)+float32(j)/100)
		}
	}
	return d
}

func TestDatasetLenSampleSize(t *testing.T) {
	tests := []struct {
		name     string
		d        *Dataset
		len, ssz int
	}{
		{"tiny", tiny(), 4, 6},
		{"table", &Dataset{Shape: []int{5}, Y: make([]int32, 3), X: make([]float32, 15)}, 3, 5},
		{"empty shape", &Dataset{}, 0, 0},
		{"bad shape", &Dataset{Shape: []int{3, 0}}, 0, 0},
	}
	for _, tc := range tests {
		if tc.d.Len() != tc.len || tc.d.SampleSize() != tc.ssz {
			t.Errorf("%s: Len %d SampleSize %d, want %d %d", tc.name, tc.d.Len(), tc.d.SampleSize(), tc.len, tc.ssz)
		}
	}
}

func TestSubset(t *testing.T) {
	d := tiny()
	tests := []struct {
		idx []int
	}{{nil}, {[]int{2}}, {[]int{3, 0, 3}}, {[]int{0, 1, 2, 3}}}
	for _, tc := range tests {
		s := d.Subset(tc.idx)
		if s.Len() != len(tc.idx) || !slices.Equal(s.Shape, d.Shape) || s.NumClasses != d.NumClasses || s.Name != d.Name {
			t.Fatalf("Subset(%v) = %+v", tc.idx, s)
		}
		for j, i := range tc.idx {
			if s.Y[j] != d.Y[i] || !slices.Equal(s.X[j*6:(j+1)*6], d.X[i*6:(i+1)*6]) {
				t.Fatalf("Subset(%v): sample %d differs from source %d", tc.idx, j, i)
			}
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Subset(%v).Validate: %v", tc.idx, err)
		}
	}
	// The subset is a copy.
	s := d.Subset([]int{1})
	s.X[0], s.Y[0], s.Shape[0] = -5, 0, 9
	if d.X[6] != 1 || d.Y[1] != 1 || d.Shape[0] != 2 {
		t.Fatal("Subset shares memory with its source")
	}
}

func TestSubsetOutOfRangePanicsWithMessage(t *testing.T) {
	defer func() {
		r := recover()
		if msg, _ := r.(string); !strings.Contains(msg, "index 4") {
			t.Fatalf("recovered %v, want a message naming index 4", r)
		}
	}()
	tiny().Subset([]int{0, 4})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(d *Dataset)
		want   string // "" = valid
	}{
		{"ok", func(*Dataset) {}, ""},
		{"empty dataset ok", func(d *Dataset) { d.X, d.Y = nil, nil }, ""},
		{"no shape", func(d *Dataset) { d.Shape = nil }, "empty Shape"},
		{"zero dim", func(d *Dataset) { d.Shape = []int{0, 6} }, "non-positive"},
		{"short X", func(d *Dataset) { d.X = d.X[:23] }, "len(X) = 23"},
		{"long Y", func(d *Dataset) { d.Y = append(d.Y, 0) }, "len(X) = 24"},
		{"label too big", func(d *Dataset) { d.Y[1] = 3 }, "sample 1 has label 3"},
		{"label -2", func(d *Dataset) { d.Y[0] = -2 }, "label -2"},
		{"negative classes", func(d *Dataset) { d.NumClasses = -1 }, "negative"},
		{"NaN", func(d *Dataset) { d.X[7] = float32(math.NaN()) }, "sample 1 value 1 is NaN"},
		{"Inf", func(d *Dataset) { d.X[23] = float32(math.Inf(-1)) }, "-Inf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tiny()
			tc.modify(d)
			err := d.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want error containing %q", err, tc.want)
			}
		})
	}
	var nilDS *Dataset
	if nilDS.Validate() == nil {
		t.Fatal("nil dataset validated")
	}
}
