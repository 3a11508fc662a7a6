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
			&cli.Float64Flag{Name: "sample-rate", Required: true, Usage: "probability q that a record (or agent) is in a step's Poisson sample; with --sampling fixed, the fraction γ = m/n of a fixed-size sample"},
			&cli.StringFlag{Name: "sampling", Value: string(dp.Poisson), Usage: "poisson (add/remove one: sensitivity = the clip) or fixed (m of n without replacement, replace one: a replaced update moves a clipped sum by twice the clip, so the accountant uses z/2)"},
			&cli.IntFlag{Name: "steps", Required: true, Usage: "steps (or rounds) composed"},
			&cli.Float64Flag{Name: "delta", Value: 1e-5, Usage: "δ of the (ε, δ) guarantee"},
			&cli.StringFlag{Name: "orders", Usage: "RDP orders, comma-separated (default: 1.1, 1.2, …, 10.9, 12, …, 63)"},
			jsonFlag(),
		}
	}
	return &cli.Command{
		Name:  "dp",
		Usage: "differential privacy: the RDP accountant of the subsampled Gaussian mechanism (Poisson or fixed-size sampling)",
		Subcommands: []*cli.Command{{
			Name:  "epsilon",
			Usage: "ε spent by steps of the Gaussian mechanism with a noise multiplier on Poisson (or fixed-size) samples",
			Description: `Prints ε and the RDP order that gives it (--json: {"epsilon": E, "order": A}).
Example, DP-SGD on MNIST: fedq dp epsilon --sample-rate 0.0025 --noise-multiplier 1.3 --steps 6000
With --sampling fixed, steps sample exactly m of n (γ = --sample-rate = m/n) and the noise
multiplier is the noise's standard deviation over the clip of a clipped sum: replacing one
update moves the sum by up to twice the clip, so the accountant (Wang, Balle and
Kasiviswanathan 2019) runs at z/2.
Example, DP-FedAvg sampling 100 of 1000 agents: fedq dp epsilon --sampling fixed --sample-rate 0.1 --noise-multiplier 1.5 --steps 50`,
			Flags: append(common(), &cli.Float64Flag{Name: "noise-multiplier", Required: true, Usage: "noise standard deviation over the L2 sensitivity (z); with --sampling fixed, over the clip (the sensitivity is twice it)"}),
			Action: func(c *cli.Context) error {
				orders, err := parseOrders(c.String("orders"))
				if err != nil {
					return err
				}
				sampling, err := samplingFlag(c)
				if err != nil {
					return err
				}
				eps, order, err := dp.ClippedSumEpsilon(sampling, c.Float64("sample-rate"), c.Float64("noise-multiplier"), c.Int("steps"), c.Float64("delta"), orders)
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
Example: fedq dp noise --target-epsilon 3 --sample-rate 0.0025 --steps 6000
With --sampling fixed the multiplier is over the clip of a clipped sum (see fedq dp epsilon --help).`,
			Flags: append(common(), &cli.Float64Flag{Name: "target-epsilon", Required: true, Usage: "the ε not to exceed"}),
			Action: func(c *cli.Context) error {
				orders, err := parseOrders(c.String("orders"))
				if err != nil {
					return err
				}
				sampling, err := samplingFlag(c)
				if err != nil {
					return err
				}
				q, steps, delta := c.Float64("sample-rate"), c.Int("steps"), c.Float64("delta")
				z, err := dp.ClippedSumNoiseMultiplier(sampling, c.Float64("target-epsilon"), q, steps, delta, orders)
				if err != nil {
					return usageError("%v", err)
				}
				eps, _, err := dp.ClippedSumEpsilon(sampling, q, z, steps, delta, orders)
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

// samplingFlag reads --sampling.
func samplingFlag(c *cli.Context) (dp.Sampling, error) {
	switch s := dp.Sampling(c.String("sampling")); s {
	case dp.Poisson, dp.Fixed:
		return s, nil
	default:
		return "", usageError("--sampling %q: want %s or %s", s, dp.Poisson, dp.Fixed)
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
