package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/compute/blas"
	"github.com/fedq/fedq/compute/dataset"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure fedq's speed",
		Subcommands: []*cli.Command{benchAgentsCommand(), benchRoundsCommand(), {
			Name:  "train",
			Usage: "time training steps on MNIST and print the median samples/s",
			Description: `Runs plain-SGD training steps (batch gathering, forward, loss, backward, update) on
MNIST, after a warm-up, in repetitions of --secs seconds, and prints the median
samples per second: the same work as ../shared/bench/torch_mnist.py measures for PyTorch.`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "model", Value: "2nn", Usage: "2nn, cnn, dpcnn, a JSON spec file, or inline JSON"},
				&cli.IntFlag{Name: "batch", Value: 10, Usage: "mini-batch size"},
				&cli.Float64Flag{Name: "secs", Value: 3, Usage: "seconds per repetition"},
				&cli.IntFlag{Name: "reps", Value: 5, Usage: "repetitions (the median is reported)"},
				&cli.Float64Flag{Name: "lr", Value: 0, Usage: "learning rate (default 0.1 for 2nn, 0.05 otherwise, as torch_mnist.py)"},
				&cli.StringFlag{Name: "mnist-dir", Usage: "folder with the MNIST IDX files"},
				&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
				&cli.StringFlag{Name: "cpuprofile", Usage: "write a pprof CPU profile of the timed repetitions to this file"},
			}, computeFlags()...),
			Action: runBenchTrain,
		}, {
			Name:  "peak",
			Usage: "measure one core's floating-point ceiling (register-only fused multiply-adds)",
			Flags: []cli.Flag{
				&cli.DurationFlag{Name: "duration", Value: 300 * time.Millisecond, Usage: "length of one run"},
				&cli.IntFlag{Name: "reps", Value: 5, Usage: "runs (the best is reported)"},
				&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			},
			Action: func(c *cli.Context) error {
				g := blas.PeakGFLOPS(c.Duration("duration"), c.Int("reps"))
				if c.Bool("json") {
					return json.NewEncoder(c.App.Writer).Encode(map[string]any{"gflops": g, "kernel": blas.Kernels()[0]})
				}
				fmt.Fprintf(c.App.Writer, "peak %.1f GFLOP/s float32 on one core (%s)\n", g, blas.Kernels()[0])
				return nil
			},
		}},
	}
}

// benchReport is what `fedq bench train --json` prints.
type benchReport struct {
	Model         string    `json:"model"`
	Batch         int       `json:"batch"`
	Threads       int       `json:"threads"`
	Backend       string    `json:"backend"`
	SamplesPerSec float64   `json:"samples_per_sec"`
	All           []float64 `json:"all"`
	Loss          float64   `json:"loss"`
	// GFLOPS is the rate of useful floating-point work (forward and backward) the median
	// reached, counting 2 per multiply-add of the layers' products.
	GFLOPS float64 `json:"gflops"`
}

func runBenchTrain(c *cli.Context) error {
	spec, err := compute.ResolveSpec(c.String("model"))
	if err != nil {
		return usageError("--model: %v", err)
	}
	batch, secs, reps := c.Int("batch"), c.Float64("secs"), c.Int("reps")
	if batch < 1 || !(secs > 0) || reps < 1 {
		return usageError("--batch, --secs and --reps must be positive")
	}
	copts, err := computeOptions(c)
	if err != nil {
		return err
	}
	dir := c.String("mnist-dir")
	if dir == "" {
		if dir, err = dataset.MNISTDir(); err != nil {
			return err
		}
	}
	train, _, err := dataset.LoadMNIST(dir)
	if err != nil {
		return err
	}
	m, err := compute.New[float32](spec, copts)
	if err != nil {
		return err
	}
	lr := c.Float64("lr")
	if lr == 0 {
		lr = 0.05
		if spec.Name == "2nn" {
			lr = 0.1
		}
	}
	opt, err := compute.NewSGD(m, lr, 0, 0, false)
	if err != nil {
		return usageError("%v", err)
	}
	b, err := dataset.NewBatcher(train, batch, copts.Seed, true)
	if err != nil {
		return err
	}
	x := make([]float32, batch*m.InputSize())
	y := make([]int32, batch)
	var loss float64
	step := func() {
		n, ok := b.Next(x, y)
		if !ok {
			n, _ = b.Next(x, y)
		}
		loss, _ = m.TrainStep(opt, x, y, n)
	}
	for range 30 {
		step()
	}
	if path := c.String("cpuprofile"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	rates := make([]float64, reps)
	for r := range reps {
		if err := c.Context.Err(); err != nil {
			return err
		}
		n := 0
		start := time.Now()
		for time.Since(start).Seconds() < secs {
			step()
			n++
		}
		rates[r] = float64(n*batch) / time.Since(start).Seconds()
	}
	sorted := slices.Clone(rates)
	slices.Sort(sorted)
	rep := benchReport{Model: spec.Name, Batch: batch, Threads: copts.Threads, Backend: m.Backend(),
		SamplesPerSec: sorted[reps/2], All: rates, Loss: loss}
	rep.GFLOPS = rep.SamplesPerSec * m.TrainFLOPs() / 1e9
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(rep)
	}
	all := make([]string, len(rates))
	for i, r := range rates {
		all[i] = fmt.Sprintf("%.0f", r)
	}
	fmt.Fprintf(c.App.Writer, "fedq model=%s threads=%d batch=%d samples/s median=%.0f all=%v loss=%.3f gflops=%.1f (%s)\n",
		rep.Model, rep.Threads, batch, rep.SamplesPerSec, all, loss, rep.GFLOPS, rep.Backend)
	return nil
}
