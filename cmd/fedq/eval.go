package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/compute"
)

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "evaluate a saved model (safetensors written by fedq) on a dataset's test split",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "safetensors file written by fedq train --out"},
			&cli.StringFlag{Name: "predictions", Usage: "also write the predicted class of every test sample, one per line, to this file"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
		}, dataFlags()...),
		Action: func(c *cli.Context) error {
			m, _, err := compute.LoadFile(c.String("model"), compute.Options{Inference: true})
			if err != nil {
				return err
			}
			_, test, err := loadData(c)
			if err != nil {
				return err
			}
			if test == nil {
				return usageError("no test split: give --test FILE.csv")
			}
			acc, loss, err := compute.Evaluate(m, test, 500)
			if err != nil {
				return err
			}
			if p := c.String("predictions"); p != "" {
				pred := compute.Predict(m, test.X, test.Len(), 500)
				f, err := os.Create(p)
				if err != nil {
					return fmt.Errorf("--predictions: %w", err)
				}
				for _, k := range pred {
					fmt.Fprintln(f, k)
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("--predictions: %w", err)
				}
			}
			if c.Bool("json") {
				return json.NewEncoder(c.App.Writer).Encode(map[string]any{
					"model": m.Spec().Name, "test_accuracy": acc, "test_loss": loss, "test_samples": test.Len()})
			}
			fmt.Fprintf(c.App.Writer, "%s: test accuracy %.2f%% (loss %.4f, %d samples)\n", c.String("model"), 100*acc, loss, test.Len())
			return nil
		},
	}
}
