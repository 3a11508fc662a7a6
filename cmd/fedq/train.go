package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/compute"
)

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:  "train",
		Usage: "train a model locally on a dataset and report its test accuracy",
		Description: `Trains with mini-batch SGD (or Adam) on one machine, as an agent does in a round, then
evaluates on the test split. Example:

   fedq train --model 2nn --dataset mnist --epochs 1 --batch 10 --lr 0.1 --out 2nn.safetensors`,
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "model", Value: "2nn", Usage: "2nn, cnn, dpcnn, a JSON spec file, or inline JSON"},
			&cli.IntFlag{Name: "epochs", Value: 1, Usage: "passes over the training set"},
			&cli.IntFlag{Name: "batch", Value: 10, Usage: "mini-batch size"},
			&cli.Float64Flag{Name: "lr", Value: 0.1, Usage: "learning rate"},
			&cli.StringFlag{Name: "optimizer", Value: "sgd", Usage: "sgd or adam"},
			&cli.Float64Flag{Name: "momentum", Usage: "SGD momentum"},
			&cli.BoolFlag{Name: "nesterov", Usage: "SGD: Nesterov momentum"},
			&cli.Float64Flag{Name: "weight-decay", Usage: "L2 weight decay"},
			&cli.StringFlag{Name: "out", Usage: "save the trained model to this safetensors file"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object with the results instead of text"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		}, computeFlags()...), dataFlags()...),
		Action: runTrain,
	}
}

// trainReport is what `fedq train --json` prints.
type trainReport struct {
	Model         string  `json:"model"`
	Params        int     `json:"params"`
	Dataset       string  `json:"dataset"`
	Epochs        int     `json:"epochs"`
	Batch         int     `json:"batch"`
	LR            float64 `json:"lr"`
	Optimizer     string  `json:"optimizer"`
	Backend       string  `json:"backend"`
	Samples       int     `json:"samples"`
	Seconds       float64 `json:"seconds"`
	SamplesPerSec float64 `json:"samples_per_sec"`
	TrainLoss     float64 `json:"train_loss"`
	TrainAccuracy float64 `json:"train_accuracy"`
	TestAccuracy  float64 `json:"test_accuracy"`
	TestLoss      float64 `json:"test_loss"`
	TestSamples   int     `json:"test_samples"`
	Out           string  `json:"out,omitempty"`
}

func newOptimizer(c *cli.Context, m *compute.Model[float32]) (compute.Optimizer[float32], error) {
	var (
		opt compute.Optimizer[float32]
		err error
	)
	switch c.String("optimizer") {
	case "sgd":
		opt, err = compute.NewSGD(m, c.Float64("lr"), c.Float64("momentum"), c.Float64("weight-decay"), c.Bool("nesterov"))
	case "adam":
		opt, err = compute.NewAdam(m, c.Float64("lr"), 0, 0, 0, c.Float64("weight-decay"))
	default:
		return nil, usageError("--optimizer %q: want sgd or adam", c.String("optimizer"))
	}
	if err != nil {
		return nil, usageError("%v", err)
	}
	return opt, nil
}

func runTrain(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("train takes no arguments, got %q (flags go before arguments)", c.Args().Slice())
	}
	spec, err := compute.ResolveSpec(c.String("model"))
	if err != nil {
		return usageError("--model: %v", err)
	}
	if c.Int("epochs") < 1 || c.Int("batch") < 1 {
		return usageError("--epochs and --batch must be at least 1")
	}
	copts, err := computeOptions(c)
	if err != nil {
		return err
	}
	m, err := compute.New[float32](spec, copts)
	if err != nil {
		return err
	}
	opt, err := newOptimizer(c, m)
	if err != nil {
		return err
	}
	train, test, err := loadData(c)
	if err != nil {
		return err
	}
	slog.Debug("training", "model", spec.Name, "params", m.NumParams(), "backend", m.Backend(), "samples", train.Len())

	cfg := compute.TrainConfig{Epochs: c.Int("epochs"), Batch: c.Int("batch"), Seed: copts.Seed}
	if !c.Bool("quiet") && !c.Bool("json") {
		bar := progressbar.NewOptions64(int64(cfg.Epochs*train.Len()),
			progressbar.OptionSetWriter(c.App.ErrWriter),
			progressbar.OptionSetItsString("samples"),
			progressbar.OptionShowIts(),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		var last time.Time
		cfg.Progress = func(p compute.TrainProgress) {
			if now := time.Now(); now.Sub(last) > 100*time.Millisecond || p.Samples == cfg.Epochs*train.Len() {
				last = now
				bar.Describe(fmt.Sprintf("epoch %d/%d loss %.4f", p.Epoch, p.Epochs, p.Loss))
				_ = bar.Set64(int64(p.Samples))
			}
		}
		defer bar.Close()
	}
	res, err := compute.Train(c.Context, m, opt, train, cfg)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	rep := trainReport{
		Model: spec.Name, Params: m.NumParams(), Dataset: c.String("dataset"), Epochs: cfg.Epochs, Batch: cfg.Batch,
		LR: c.Float64("lr"), Optimizer: c.String("optimizer"), Backend: m.Backend(),
		Samples: res.Samples, Seconds: res.Elapsed.Seconds(), SamplesPerSec: res.SamplesPerSecond,
		TrainLoss: res.Loss, TrainAccuracy: res.Accuracy,
	}
	if test != nil {
		rep.TestSamples = test.Len()
		if rep.TestAccuracy, rep.TestLoss, err = compute.Evaluate(m, test, 500); err != nil {
			return err
		}
	}
	if out := c.String("out"); out != "" {
		if err := compute.SaveFile(out, m, map[string]string{"fedq.test_accuracy": fmt.Sprint(rep.TestAccuracy)}); err != nil {
			return err
		}
		rep.Out = out
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		return enc.Encode(rep)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "trained %s (%d parameters) on %s: %d samples in %.1fs, %.0f samples/s (%s)\n",
		rep.Model, rep.Params, rep.Dataset, rep.Samples, rep.Seconds, rep.SamplesPerSec, rep.Backend)
	fmt.Fprintf(w, "train loss %.4f, train accuracy %.2f%%\n", rep.TrainLoss, 100*rep.TrainAccuracy)
	if test != nil {
		fmt.Fprintf(w, "test accuracy %.2f%% (loss %.4f, %d samples)\n", 100*rep.TestAccuracy, rep.TestLoss, rep.TestSamples)
	}
	if rep.Out != "" {
		fmt.Fprintf(w, "saved %s\n", rep.Out)
	}
	return nil
}
