package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/compute/cuda"
	"github.com/fedq/fedq/compute/dataset"
)

// computeFlags select and tune the compute backend.
func computeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "threads", Value: 1, Usage: "goroutines per matrix product (one core gains little from more)", EnvVars: []string{"FEDQ_THREADS"}},
		&cli.StringFlag{Name: "kernel", Usage: "force a GEMM micro-kernel (see fedq info)", EnvVars: []string{"FEDQ_KERNEL"}},
		&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed for initialisation, shuffling and dropout"},
		deviceFlag(),
	}
}

// deviceFlag is --device: where to train.
func deviceFlag() cli.Flag {
	return &cli.StringFlag{Name: "device", Value: "auto", EnvVars: []string{"FEDQ_DEVICE"},
		Usage: "auto (a GPU when one is usable, else the CPU), cpu, or cuda[:N] (fails when no GPU can be used)"}
}

// selectDevice resolves --device: the CPU, or an error for cuda without a usable GPU.
// With auto it logs once why training is on the CPU. It returns the GPUs found.
func selectDevice(c *cli.Context) ([]cuda.Device, error) {
	choice, err := cuda.ParseChoice(c.String("device"))
	if err != nil {
		return nil, usageError("--device: %v", err)
	}
	var rep cuda.Report
	probe := func() cuda.Report { rep = cuda.Probe(os.Getenv("FEDQ_CUDA_LIBRARY")); return rep }
	_, note, err := cuda.Select(choice, probe)
	if err != nil {
		return nil, cli.Exit(err.Error(), 2)
	}
	if note != "" {
		slog.Info(note)
	}
	return rep.Devices, nil
}

func computeOptions(c *cli.Context) (compute.Options, error) {
	if c.Int("threads") < 1 {
		return compute.Options{}, usageError("--threads must be at least 1, got %d", c.Int("threads"))
	}
	if _, err := selectDevice(c); err != nil {
		return compute.Options{}, err
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
