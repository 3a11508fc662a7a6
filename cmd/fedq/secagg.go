package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/privacy/secagg"
)

func secaggCommand() *cli.Command {
	return &cli.Command{
		Name:  "secagg",
		Usage: "secure aggregation (SecAgg+): plan a round's neighbour graph",
		Subcommands: []*cli.Command{{
			Name:  "graph",
			Usage: "the neighbour degree and threshold a secure round of N agents gets",
			Description: `Prints the neighbours k each agent masks with, the threshold t of holders that
reconstruct a secret, and the bound on the probability that dropouts at the given rate
fail the round — what a task with "secure_aggregation": true chooses for a round of N
agents (--json: {"agents", "neighbours", "threshold", "failure", "complete"}).
Example: fedq secagg graph --agents 500 --dropout 0.1`,
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "agents", Required: true, Usage: "agents in the round (N ≥ 3)"},
				&cli.Float64Flag{Name: "dropout", Value: secagg.DefaultDropout, Usage: "expected share of agents that drop out"},
				&cli.Float64Flag{Name: "failure", Value: secagg.DefaultFailureProbability, Usage: "target bound on the probability that the round fails"},
				jsonFlag(),
			},
			Action: func(c *cli.Context) error {
				n := c.Int("agents")
				ch, err := secagg.ChooseGraph(n, c.Float64("dropout"), c.Float64("failure"))
				if err != nil {
					return usageError("%v", err)
				}
				complete := ch.Neighbours == n-1
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]any{"agents": n, "neighbours": ch.Neighbours, "threshold": ch.Threshold,
						"failure": ch.Failure, "complete": complete})
				}
				kind := "SecAgg+ graph"
				if complete {
					kind = "complete graph (classic SecAgg)"
				}
				fmt.Fprintf(c.App.Writer, "%d agents: %s, %d neighbours each, threshold %d of %d holders; P(round fails) ≤ %.3g at %g dropout\n",
					n, kind, ch.Neighbours, ch.Threshold, ch.Neighbours+1, ch.Failure, c.Float64("dropout"))
				return nil
			},
		}},
	}
}
