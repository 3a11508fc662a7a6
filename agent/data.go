package agent

import (
	"encoding/csv"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/protocol"
)

// LocalData is a dataset an agent offers under a name.
type LocalData struct {
	Name string
	// Source is where it came from, as given on the command line.
	Source string
	Data   *dataset.Dataset
}

// ParseDataFlag reads a --data flag, NAME=SOURCE, and loads the dataset. SOURCE is:
//
//	mnist          the MNIST training split (60,000 images), found as `fedq train` finds it
//	mnist-test     the MNIST test split
//	DIR            a folder holding MNIST-format IDX files (its training split)
//	FILE.csv       numeric features, label in the last column (empty label: unlabelled);
//	               a first row of names is recognised as a header
//
// SOURCE,unlabelled drops every label of the source: the dataset is offered as
// unlabelled, for semi-supervised tasks (a site whose labels must not be used, or a
// rehearsal of one). Partly labelled CSV files need no flag: empty labels are missing.
func ParseDataFlag(flag string) (*LocalData, error) {
	name, src, ok := strings.Cut(flag, "=")
	src, drop := strings.CutSuffix(src, UnlabelledSuffix)
	if !ok || name == "" || src == "" {
		return nil, fmt.Errorf("--data %q: want NAME=SOURCE, e.g. mnist=mnist or sales=/data/sales.csv", flag)
	}
	if len(name) > protocol.MaxNameLen {
		return nil, fmt.Errorf("--data %q: name longer than %d bytes", flag, protocol.MaxNameLen)
	}
	d, err := loadSource(src)
	if err != nil {
		return nil, fmt.Errorf("--data %s: %w", flag, err)
	}
	d.Name = name
	if drop {
		for i := range d.Y {
			d.Y[i] = dataset.Unlabelled
		}
	}
	return &LocalData{Name: name, Source: src, Data: d}, nil
}

// UnlabelledSuffix, after a --data SOURCE, drops the source's labels.
const UnlabelledSuffix = ",unlabelled"

func loadSource(src string) (*dataset.Dataset, error) {
	switch {
	case src == "mnist" || src == "mnist-test":
		dir, err := dataset.MNISTDir()
		if err != nil {
			return nil, err
		}
		train, test, err := dataset.LoadMNIST(dir)
		if err != nil {
			return nil, err
		}
		if src == "mnist-test" {
			return test, nil
		}
		return train, nil
	case strings.HasSuffix(strings.ToLower(src), ".csv"):
		header, err := csvHasHeader(src)
		if err != nil {
			return nil, err
		}
		return dataset.LoadCSV(src, dataset.CSVOptions{AllowMissingLabels: true, Header: header})
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("%w (want mnist, mnist-test, a folder of IDX files, or a .csv file)", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: want mnist, mnist-test, a folder of IDX files, or a .csv file", src)
	}
	train, _, err := dataset.LoadMNIST(src)
	return train, err
}

// csvHasHeader reports whether a CSV file's first row holds names rather than numbers:
// an agent's --data takes either, with the label in the last column.
func csvHasHeader(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	row, err := csv.NewReader(f).Read()
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	for _, cell := range row {
		if _, err := strconv.ParseFloat(strings.TrimSpace(cell), 64); err != nil && strings.TrimSpace(cell) != "" {
			return true, nil
		}
	}
	return false, nil
}

// Describe summarises local datasets for Hello's capabilities.
func Describe(data []*LocalData) []protocol.DatasetInfo {
	out := make([]protocol.DatasetInfo, 0, len(data))
	for _, ld := range data {
		var labelled uint64
		for _, y := range ld.Data.Y {
			if y != dataset.Unlabelled {
				labelled++
			}
		}
		n := uint64(ld.Data.Len())
		out = append(out, protocol.DatasetInfo{Name: ld.Name, Examples: n, Labelled: labelled, Unlabelled: n - labelled,
			Classes: uint32(ld.Data.NumClasses)})
	}
	return out
}
