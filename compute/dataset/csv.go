package dataset

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CSVOptions tells LoadCSV how to read a table.
type CSVOptions struct {
	// LabelColumn is the header name of the label column; empty means the
	// last column. A name requires Header.
	LabelColumn string
	// Header says the first row holds column names. It is never guessed.
	Header bool
	// NumClasses is the number of classes; labels must be below it. Zero
	// means the largest label plus one.
	NumClasses int
	// AllowMissingLabels turns an empty label cell into Unlabelled instead
	// of an error.
	AllowMissingLabels bool
}

// LoadCSV reads a comma-separated table whose columns are all numeric
// features except one integer label column, and returns it as a Dataset with
// Shape [F] (F = number of feature columns), named after the file.
//
// Cells are trimmed of surrounding spaces. Features must parse as float32 and
// be finite; labels must be integers >= 0 (below opt.NumClasses when it is
// set). Empty files, header-only files, rows of differing length and
// non-numeric cells are errors that name the file, line, column and value,
// e.g. `data.csv:17: column "x3": "abc" is not a number`.
func LoadCSV(path string, opt CSVOptions) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load CSV: %w", err)
	}
	defer f.Close()
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	d, err := readCSV(f, path, name, opt)
	if err != nil {
		return nil, fmt.Errorf("load CSV: %w", err)
	}
	return d, nil
}

// readCSV does the work of LoadCSV on r; path is used in messages only.
func readCSV(r io.Reader, path, name string, opt CSVOptions) (*Dataset, error) {
	if opt.NumClasses < 0 {
		return nil, fmt.Errorf("%s: CSVOptions.NumClasses = %d is negative; use 0 to infer it", path, opt.NumClasses)
	}
	if opt.LabelColumn != "" && !opt.Header {
		return nil, fmt.Errorf("%s: CSVOptions.LabelColumn %q needs Header: true (without a header the label is the last column)", path, opt.LabelColumn)
	}
	br := bufio.NewReader(r)
	if bom, err := br.Peek(3); err == nil && string(bom) == "\xef\xbb\xbf" {
		_, _ = br.Discard(3) // a UTF-8 byte order mark is not part of the first cell
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1 // checked below, with a better message
	cr.ReuseRecord = true

	var (
		names    []string // column names, from the header or "column N"
		labelCol = -1
		width    = -1
		x        []float32
		y        []int32
		maxLabel = int32(-1)
	)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%s:%d: %w (fix the quoting on that line)", path, pe.Line, pe.Err)
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		line, _ := cr.FieldPos(0)
		if width < 0 {
			width = len(rec)
			if width < 2 {
				return nil, fmt.Errorf("%s:%d: %d column, want at least one feature and one label column (is the separator a comma?)", path, line, width)
			}
			names = make([]string, width)
			for i := range names {
				names[i] = fmt.Sprintf("column %d", i+1)
			}
			labelCol = width - 1
			if opt.Header {
				for i, c := range rec {
					names[i] = strings.TrimSpace(c)
				}
				if opt.LabelColumn != "" {
					labelCol = -1
					for i, c := range names {
						if c != opt.LabelColumn {
							continue
						}
						if labelCol >= 0 {
							return nil, fmt.Errorf("%s:%d: label column %q appears twice (columns %d and %d); rename one", path, line, opt.LabelColumn, labelCol+1, i+1)
						}
						labelCol = i
					}
					if labelCol < 0 {
						return nil, fmt.Errorf("%s:%d: no column named %q in header %q; set CSVOptions.LabelColumn to one of them", path, line, opt.LabelColumn, names)
					}
				}
				continue
			}
		}
		if len(rec) != width {
			return nil, fmt.Errorf("%s:%d: %d columns, want %d like the first row (ragged rows are not allowed)", path, line, len(rec), width)
		}
		for i, cell := range rec {
			v := strings.TrimSpace(cell)
			if i == labelCol {
				lab, err := parseLabel(v, opt)
				if err != nil {
					return nil, fmt.Errorf("%s:%d: column %q: %w", path, fieldLine(cr, i), names[i], err)
				}
				y = append(y, lab)
				maxLabel = max(maxLabel, lab)
				continue
			}
			f, err := strconv.ParseFloat(v, 32)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				what := "is not a number"
				switch {
				case v == "":
					what = "is empty, want a number"
				case err == nil:
					what = "is not finite; NaN and infinity are not allowed in features"
				case errors.Is(err, strconv.ErrRange):
					what = "is out of float32 range"
				}
				return nil, fmt.Errorf("%s:%d: column %q: %q %s", path, fieldLine(cr, i), names[i], v, what)
			}
			x = append(x, float32(f))
		}
	}
	if width < 0 {
		return nil, fmt.Errorf("%s: empty file, want a table of numeric features and a label column", path)
	}
	if len(y) == 0 {
		return nil, fmt.Errorf("%s: header but no data rows", path)
	}
	numClasses := opt.NumClasses
	if numClasses == 0 {
		numClasses = int(maxLabel) + 1
	}
	return &Dataset{
		Name:       name,
		X:          x,
		Y:          y,
		Shape:      []int{width - 1},
		NumClasses: numClasses,
	}, nil
}

// fieldLine returns the line on which field i of the last record starts.
func fieldLine(cr *csv.Reader, i int) int {
	line, _ := cr.FieldPos(i)
	return line
}

// parseLabel parses one label cell.
func parseLabel(v string, opt CSVOptions) (int32, error) {
	if v == "" {
		if opt.AllowMissingLabels {
			return Unlabelled, nil
		}
		return 0, errors.New("empty label; set CSVOptions.AllowMissingLabels to accept unlabelled rows")
	}
	lab, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("label %q is not an integer", v)
	}
	if lab < 0 {
		return 0, fmt.Errorf("label %q is negative, want a class index >= 0", v)
	}
	if opt.NumClasses > 0 && lab >= int64(opt.NumClasses) {
		return 0, fmt.Errorf("label %q is not below CSVOptions.NumClasses = %d", v, opt.NumClasses)
	}
	return int32(lab), nil
}
