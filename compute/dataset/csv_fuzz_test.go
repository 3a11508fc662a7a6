package dataset

import (
	"bytes"
	"math"
	"testing"
)

// FuzzReadCSV feeds tables from disk to the CSV reader, with and without a header and
// missing labels. It must never panic; a table it accepts is consistent: as many feature
// values as rows times features, finite, and labels in [0, NumClasses) or Unlabelled
// where that is allowed.
func FuzzReadCSV(f *testing.F) {
	for _, s := range []string{
		"1,2,0\n3,4,1\n",
		"x1,x2,label\n1.5,2,0\n3,-4e3,2\n",
		"\xef\xbb\xbfa,b\n1,0\n",
		"1,2,\n3,4,1\n",
		"1,2,0\n3,4\n",
		"1,NaN,0\n",
		"1,2,99999999999\n",
		"\"1\",\" 2 \",0\n",
	} {
		f.Add([]byte(s), false, false, 0)
		f.Add([]byte(s), true, true, 3)
	}
	f.Fuzz(func(t *testing.T, data []byte, header, missing bool, classes int) {
		opt := CSVOptions{Header: header, AllowMissingLabels: missing, NumClasses: classes % 1000}
		d, err := readCSV(bytes.NewReader(data), "fuzz.csv", "fuzz", opt)
		if err != nil {
			return
		}
		if len(d.Shape) != 1 || d.Shape[0] < 1 {
			t.Fatalf("shape %v", d.Shape)
		}
		if len(d.X) != d.Len()*d.Shape[0] || len(d.Y) != d.Len() || d.Len() == 0 {
			t.Fatalf("%d rows, %d labels, %d values of %v", d.Len(), len(d.Y), len(d.X), d.Shape)
		}
		for _, x := range d.X {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("non-finite feature %v accepted", x)
			}
		}
		for _, y := range d.Y {
			if y == Unlabelled && missing {
				continue
			}
			if y < 0 || int(y) >= d.NumClasses {
				t.Fatalf("label %d outside [0, %d)", y, d.NumClasses)
			}
		}
	})
}
