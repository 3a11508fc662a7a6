package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/compute/dataset"
)

// computeFlags select and tune the compute backend.
func computeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "threads", Value: 1, Usage: "goroutines per matrix product (one core gains little from more)", EnvVars: []string{"FEDQ_THREADS"}},
		&cli.StringFlag{Name: "kernel", Usage: "force a GEMM micro-kernel (see `fedq info`)", EnvVars: []string{"FEDQ_KERNEL"}},
		&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed for initialisation, shuffling and dropout"},
	}
}

func computeOptions(c *cli.Context) (compute.Options, error) {
	if c.Int("threads") < 1 {
		return compute.Options{}, usageError("--threads must be at least 1, got %d", c.Int("threads"))
	}
	return compute.Options{Seed: c.Uint64("seed"), Threads: c.Int("threads"), Kernel: c.String("kernel")}, nil
}

// dataFlags say where data comes from.
func dataFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dataset", Value: "mnist", Usage: "mnist, or a CSV file (numeric features, label in the last column or --label-column)"},
		&cli.StringFlag{Name: "mnist-dir", Usage: "folder with the MNIST IDX files (default: $FEDQ_MNIST_DIR, ./data/mnist, then the Go module cache)"},
		&cli.StringFlag{Name: "label-column", Usage: "CSV: name of the label column (needs a header row)"},
		&cli.StringFlag{Name: "test", Usage: "CSV: a held-out file to report test accuracy on"},
	}
}

// loadData returns the training and test sets the flags name.
func loadData(c *cli.Context) (train, test *dataset.Dataset, err error) {
	name := c.String("dataset")
	if name == "mnist" {
		dir := c.String("mnist-dir")
		if dir == "" {
			if dir, err = dataset.MNISTDir(); err != nil {
				return nil, nil, err
			}
		}
		return dataset.LoadMNIST(dir)
	}
	if !strings.HasSuffix(strings.ToLower(name), ".csv") {
		return nil, nil, usageError("--dataset %q: want mnist or a .csv file", name)
	}
	opt := dataset.CSVOptions{LabelColumn: c.String("label-column"), Header: c.String("label-column") != ""}
	if train, err = dataset.LoadCSV(name, opt); err != nil {
		return nil, nil, err
	}
	if t := c.String("test"); t != "" {
		opt.NumClasses = train.NumClasses
		if test, err = dataset.LoadCSV(t, opt); err != nil {
			return nil, nil, err
		}
	}
	return train, test, nil
}

// usageError is a bad flag or argument: exit code 2, as flag parsing errors.
func usageError(format string, a ...any) error {
	return cli.Exit(fmt.Sprintf(format, a...), 2)
}
