package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/privacy/dp"
)

func dpCommand() *cli.Command {
	common := func() []cli.Flag {
		return []cli.Flag{
			&cli.Float64Flag{Name: "sample-rate", Required: true, Usage: "probability q that a record (or agent) is in a step's Poisson sample"},
			&cli.IntFlag{Name: "steps", Required: true, Usage: "steps (or rounds) composed"},
			&cli.Float64Flag{Name: "delta", Value: 1e-5, Usage: "δ of the (ε, δ) guarantee"},
			&cli.StringFlag{Name: "orders", Usage: "RDP orders, comma-separated (default: 1.1, 1.2, …, 10.9, 12, …, 63)"},
			jsonFlag(),
		}
	}
	return &cli.Command{
		Name:  "dp",
		Usage: "differential privacy: the RDP accountant of the subsampled Gaussian mechanism",
		Subcommands: []*cli.Command{{
			Name:  "epsilon",
			Usage: "ε spent by steps of the Gaussian mechanism with a noise multiplier on Poisson samples",
			Description: `Prints ε and the RDP order that gives it (--json: {"epsilon": E, "order": A}).
Example, DP-SGD on MNIST: fedq dp epsilon --sample-rate 0.0025 --noise-multiplier 1.3 --steps 6000`,
			Flags: append(common(), &cli.Float64Flag{Name: "noise-multiplier", Required: true, Usage: "noise standard deviation over the L2 sensitivity (z)"}),
			Action: func(c *cli.Context) error {
				orders, err := parseOrders(c.String("orders"))
				if err != nil {
					return err
				}
				eps, order, err := dp.SampledGaussianEpsilon(c.Float64("sample-rate"), c.Float64("noise-multiplier"), c.Int("steps"), c.Float64("delta"), orders)
				if err != nil {
					return usageError("%v", err)
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]float64{"epsilon": eps, "order": order})
				}
				fmt.Fprintf(c.App.Writer, "ε = %.6g at δ = %g (RDP order %g)\n", eps, c.Float64("delta"), order)
				return nil
			},
		}, {
			Name:  "noise",
			Usage: "the smallest noise multiplier that keeps ε within a target",
			Description: `Prints the noise multiplier z (--json: {"noise_multiplier": Z, "epsilon": E}).
Example: fedq dp noise --target-epsilon 3 --sample-rate 0.0025 --steps 6000`,
			Flags: append(common(), &cli.Float64Flag{Name: "target-epsilon", Required: true, Usage: "the ε not to exceed"}),
			Action: func(c *cli.Context) error {
				orders, err := parseOrders(c.String("orders"))
				if err != nil {
					return err
				}
				q, steps, delta := c.Float64("sample-rate"), c.Int("steps"), c.Float64("delta")
				z, err := dp.NoiseMultiplier(c.Float64("target-epsilon"), q, steps, delta, orders)
				if err != nil {
					return usageError("%v", err)
				}
				eps, _, err := dp.SampledGaussianEpsilon(q, z, steps, delta, orders)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]float64{"noise_multiplier": z, "epsilon": eps})
				}
				fmt.Fprintf(c.App.Writer, "noise multiplier %.6g (ε = %.6g at δ = %g)\n", z, eps, delta)
				return nil
			},
		}},
	}
}

// parseOrders reads --orders: comma-separated numbers > 1 (empty: the defaults).
func parseOrders(s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		a, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(a > 1) {
			return nil, usageError("--orders: %q is not an order > 1", f)
		}
		out = append(out, a)
	}
	return out, nil
}
