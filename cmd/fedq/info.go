package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/compute/blas"
	"github.com/fedq/fedq/compute/cuda"
	"github.com/fedq/fedq/compute/dataset"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "print what this machine offers fedq: compute kernels, CPUs, datasets",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print one JSON object"}},
		Action: func(c *cli.Context) error {
			type info struct {
				Version string   `json:"version"`
				GOOS    string   `json:"goos"`
				GOARCH  string   `json:"goarch"`
				CPUs    int      `json:"cpus"`
				Kernels []string `json:"kernels"`
				Device  string   `json:"device"`
				// CUDA is what the GPU probe found, or why there is no usable GPU.
				CUDA     cuda.Report `json:"cuda"`
				MNISTDir string      `json:"mnist_dir,omitempty"`
				MNISTErr string      `json:"mnist_error,omitempty"`
			}
			in := info{Version: version, GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), Kernels: blas.Kernels(), Device: "cpu",
				CUDA: cuda.Probe(os.Getenv("FEDQ_CUDA_LIBRARY"))}
			if dir, err := dataset.MNISTDir(); err != nil {
				in.MNISTErr = err.Error()
			} else {
				in.MNISTDir = dir
			}
			if c.Bool("json") {
				return json.NewEncoder(c.App.Writer).Encode(in)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "fedq %s %s/%s, %d CPUs\n", in.Version, in.GOOS, in.GOARCH, in.CPUs)
			fmt.Fprintf(w, "device: cpu; GEMM kernels (best first): %s\n", strings.Join(in.Kernels, ", "))
			if in.CUDA.Available() {
				for _, d := range in.CUDA.Devices {
					fmt.Fprintf(w, "GPU %d: %s, %.1f GiB, compute capability %d.%d (driver CUDA %d.%d; %s)\n", d.Index, d.Name,
						float64(d.Memory)/(1<<30), d.Major, d.Minor, in.CUDA.DriverVersion/1000, in.CUDA.DriverVersion%1000/10, cuda.ErrNoBackend)
				}
			} else {
				fmt.Fprintf(w, "GPU: none usable: %s\n", in.CUDA.Reason)
			}
			if in.MNISTDir != "" {
				fmt.Fprintf(w, "MNIST: %s\n", in.MNISTDir)
			} else {
				fmt.Fprintf(w, "MNIST: %s\n", in.MNISTErr)
			}
			return nil
		},
	}
}
