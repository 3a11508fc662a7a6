package dataset

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadCSV(t *testing.T) {
	tests := []struct {
		name    string
		content string
		opt     CSVOptions
		wantX   []float32
		wantY   []int32
		classes int
		wantErr string // substring; "" = success
	}{
		{
			name:    "no header, label last",
			content: "1,2,0\n3.5,-4e1,2\n",
			wantX:   []float32{1, 2, 3.5, -40}, wantY: []int32{0, 2}, classes: 3,
		},
		{
			name:    "header, named label in the middle, spaces, CRLF, BOM",
			content: "\ufeffa, y ,b\r\n 1 , 1 ,2\r\n3,0,4\r\n",
			opt:     CSVOptions{Header: true, LabelColumn: "y"},
			wantX:   []float32{1, 2, 3, 4}, wantY: []int32{1, 0}, classes: 2,
		},
		{
			name:    "header, default label column, explicit classes",
			content: "x1,x2,label\n0.5,0.25,1\n",
			opt:     CSVOptions{Header: true, NumClasses: 10},
			wantX:   []float32{0.5, 0.25}, wantY: []int32{1}, classes: 10,
		},
		{
			name:    "missing labels allowed",
			content: "1,\n2,1\n",
			opt:     CSVOptions{AllowMissingLabels: true},
			wantX:   []float32{1, 2}, wantY: []int32{Unlabelled, 1}, classes: 2,
		},
		{
			name:    "quoted cells",
			content: "\"1\",\"2\"\n",
			wantX:   []float32{1}, wantY: []int32{2}, classes: 3,
		},
		{name: "empty file", content: "", wantErr: "data.csv: empty file"},
		{name: "header only", content: "a,b\n", opt: CSVOptions{Header: true}, wantErr: "no data rows"},
		{name: "one column", content: "1\n2\n", wantErr: "data.csv:1: 1 column"},
		{name: "not a number", content: "x1,x3,y\n1,2,0\n1,abc,0\n", opt: CSVOptions{Header: true}, wantErr: `data.csv:3: column "x3": "abc" is not a number`},
		{name: "not a number without header", content: "1,2,0\n1,abc,0\n", wantErr: `data.csv:2: column "column 2": "abc" is not a number`},
		{name: "empty feature", content: "1,,0\n", wantErr: `"" is empty`},
		{name: "NaN feature", content: "NaN,1\n", wantErr: `"NaN" is not finite`},
		{name: "Inf feature", content: "1,2\n-inf,1\n", wantErr: `data.csv:2: column "column 1": "-inf" is not finite`},
		{name: "float32 overflow", content: "1e39,1\n", wantErr: "out of float32 range"},
		{name: "ragged", content: "1,2,0\n1,0\n", wantErr: "data.csv:2: 2 columns, want 3"},
		{name: "bad label", content: "1,2.5\n", wantErr: `column "column 2": label "2.5" is not an integer`},
		{name: "negative label", content: "1,-1\n", wantErr: "negative"},
		{name: "label over NumClasses", content: "1,3\n", opt: CSVOptions{NumClasses: 3}, wantErr: "not below CSVOptions.NumClasses = 3"},
		{name: "missing label not allowed", content: "1,\n", wantErr: "AllowMissingLabels"},
		{name: "unknown label column", content: "a,b\n1,2\n", opt: CSVOptions{Header: true, LabelColumn: "y"}, wantErr: `no column named "y"`},
		{name: "duplicate label column", content: "y,y\n1,2\n", opt: CSVOptions{Header: true, LabelColumn: "y"}, wantErr: "appears twice"},
		{name: "label column without header", content: "1,2\n", opt: CSVOptions{LabelColumn: "y"}, wantErr: "needs Header"},
		{name: "negative NumClasses", content: "1,2\n", opt: CSVOptions{NumClasses: -1}, wantErr: "negative"},
		{name: "bad quoting", content: "1,2\n1,\"2\n", wantErr: "data.csv:2"},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub := filepath.Join(dir, string(rune('a'+i)))
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(sub, "data.csv")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := LoadCSV(path, tc.opt)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadCSV = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadCSV: %v", err)
			}
			if !slices.Equal(d.X, tc.wantX) || !slices.Equal(d.Y, tc.wantY) || d.NumClasses != tc.classes {
				t.Fatalf("got X %v Y %v classes %d, want %v %v %d", d.X, d.Y, d.NumClasses, tc.wantX, tc.wantY, tc.classes)
			}
			if !slices.Equal(d.Shape, []int{len(tc.wantX) / len(tc.wantY)}) || d.Name != "data" {
				t.Fatalf("Shape %v Name %q", d.Shape, d.Name)
			}
			if err := d.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestLoadCSVMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.csv")
	if _, err := LoadCSV(path, CSVOptions{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want an error naming %s", err, path)
	}
}
