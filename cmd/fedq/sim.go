package main

import (
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/aggregation"
	"github.com/fedq/fedq/coordinator/sim"
	"github.com/fedq/fedq/coordinator/task"
)

func simCommand() *cli.Command {
	return &cli.Command{
		Name:  "sim",
		Usage: "run a whole federation in one process: a coordinator and N agents over QUIC on 127.0.0.1, on MNIST",
		Description: `Partitions the MNIST training set across the agents, runs rounds of federated
training, and scores every version on the test set (which no agent holds). Example, McMahan
et al. (2017)'s 2NN on IID data:

   fedq sim --agents 100 --model 2nn --partition iid --fraction 0.1 --local-epochs 1 \
            --batch 10 --lr 0.1 --rounds 200 --target-accuracy 0.97`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "agents", Value: 10, Usage: "agents in the federation"},
			&cli.StringFlag{Name: "model", Value: "2nn", Usage: "2nn, cnn, dpcnn, a JSON spec file, or inline JSON"},
			&cli.StringFlag{Name: "partition", Value: "iid", Usage: "iid, dirichlet:ALPHA, or shards[:PER_AGENT] (McMahan's pathological non-IID)"},
			&cli.Float64Flag{Name: "fraction", Value: 1, Usage: "share of agents selected per round (C)"},
			&cli.IntFlag{Name: "local-epochs", Value: 1, Usage: "local epochs per round (E)"},
			&cli.IntFlag{Name: "batch", Value: 10, Usage: "local mini-batch size (B)"},
			&cli.Float64Flag{Name: "lr", Value: 0.1, Usage: "local learning rate"},
			&cli.StringFlag{Name: "lr-schedule", Value: "constant", Usage: "constant, or cosine: the learning rate (and a labels-at-coordinator task's fine-tuning rate) decays over --rounds along half a cosine, towards 0"},
			&cli.Float64Flag{Name: "momentum", Usage: "local SGD momentum, in [0, 1) (0: plain SGD)"},
			&cli.IntFlag{Name: "rounds", Value: 20, Usage: "rounds to run at most"},
			&cli.Float64Flag{Name: "target-accuracy", Usage: "stop once a version reaches this test accuracy (e.g. 0.97)"},
			&cli.StringFlag{Name: "strategy", Value: "fedavg", Usage: "aggregation strategy, NAME or NAME:key=value,... (fedq sim --strategy help lists them)"},
			&cli.Float64Flag{Name: "byzantine", Usage: "share of agents, in [0, 1), that attack (with --attack)"},
			&cli.StringFlag{Name: "attack", Usage: "what Byzantine agents do: signflip, scale, noise or labelflip (--attack help)"},
			&cli.Float64Flag{Name: "attack-scale", Usage: "the attack's strength (default: the attack's own)"},
			&cli.Float64Flag{Name: "dp-clip", Usage: "user-level central DP: clip each update to this L2 norm, noise the sum, sample agents (Poisson, rate --fraction)"},
			&cli.Float64Flag{Name: "dp-noise", Usage: "noise multiplier z (noise std = z × --dp-clip); 0: calibrated so that --rounds spend --dp-epsilon"},
			&cli.Float64Flag{Name: "dp-epsilon", Usage: "privacy budget ε"},
			&cli.Float64Flag{Name: "dp-delta", Value: 1e-5, Usage: "privacy budget δ"},
			&cli.IntFlag{Name: "dp-min-agents", Usage: "distributed DP: the fewest agents whose noise a committed round carries (default: 3 standard deviations below the expected participants)"},
			&cli.BoolFlag{Name: "dp-per-layer", Usage: "central DP: clip each parameter tensor to --dp-clip/√tensors instead of the whole update"},
			&cli.Float64Flag{Name: "dp-adaptive-clip", Usage: "central DP: adapt the clip towards this quantile of the updates' norms (e.g. 0.5); --dp-clip is where it starts"},
			&cli.StringFlag{Name: "dp-sampling", Value: "poisson", Usage: "user-level DP's agent sampling: poisson (each agent with probability --fraction) or fixed (round(--fraction × --agents) agents without replacement, accounted under replace-one adjacency)"},
			&cli.StringFlag{Name: "dp-mode", Value: "central", Usage: "central (user-level DP-FedAvg), distributed (the same with the noise added by the agents under secure aggregation: discrete Gaussian) or record (record-level DP-SGD in each agent; --dp-clip bounds each record's gradient)"},
			&cli.BoolFlag{Name: "secagg", Usage: "secure aggregation (SecAgg+): the coordinator sees only the sum of the updates"},
			&cli.Float64Flag{Name: "dropout", Usage: "probability that a selected agent drops out of a round, at a random phase (with --secagg: of the key exchange too)"},
			&cli.StringFlag{Name: "semi", Usage: "semi-supervised: labels-at-coordinator:N (the coordinator holds N labels, agents none) or labels-at-agents:K (K labels per class per agent)"},
			&cli.Float64Flag{Name: "threshold", Value: 0.95, Usage: "semi-supervised: confidence τ a pseudo-label needs"},
			&cli.StringFlag{Name: "pseudo-labels", Value: "online", Usage: "semi-supervised: online (FixMatch: at every local step, with the model being trained) or static (SemiFL: once a round, with the round's base model)"},
			&cli.IntFlag{Name: "semi-warmup", Usage: "labels-at-coordinator: epochs on the labelled set before round 1 (0: the default, 30)"},
			&cli.IntFlag{Name: "semi-finetune", Usage: "labels-at-coordinator: epochs on the labelled set after each aggregation (0: the default, 5)"},
			&cli.Float64Flag{Name: "semi-finetune-lr", Usage: "labels-at-coordinator: learning rate of that training (0: the default, 0.05)"},
			&cli.StringFlag{Name: "semi-finetune-augment", Value: "weak", Usage: "labels-at-coordinator: views of the labelled images in that training (and the warm-up): weak (small random shifts and rotations) or none (the images as they are)"},
			&cli.BoolFlag{Name: "semi-baseline", Usage: "run what --semi is compared with: the model trained on the coordinator's labels alone, or FedAvg on the agents' labelled examples alone"},
			&cli.DurationFlag{Name: "train-deadline", Value: sim.DefaultTrainDeadline, Usage: "how long a round waits for its agents' updates; then it commits with those it has (at least its quorum) or fails and is tried again"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the partition, the initial model and agent selection"},
			&cli.StringFlag{Name: "mnist-dir", Usage: "folder with the MNIST IDX files"},
			&cli.StringFlag{Name: "plot", Usage: "write the test accuracy and loss curves to this PNG file"},
			&cli.StringFlag{Name: "dashboard", Usage: "serve the live dashboard on this TCP address (e.g. 127.0.0.1:8080); its URL, with a fresh token, goes to stderr"},
			&cli.BoolFlag{Name: "dashboard-hold", Usage: "with --dashboard: keep the federation and its dashboard up after the last round, until interrupted"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object at the end; the line per round goes to stderr"},
			&cli.BoolFlag{Name: "verbose", Usage: "show the coordinator's and agents' logs"},
		},
		Action: runSim,
	}
}

func runSim(c *cli.Context) error {
	cfg := sim.Config{Agents: c.Int("agents"), Model: c.String("model"), Partition: c.String("partition"), Fraction: c.Float64("fraction"),
		Epochs: c.Int("local-epochs"), Batch: c.Int("batch"), LR: c.Float64("lr"), Momentum: c.Float64("momentum"), LRSchedule: c.String("lr-schedule"), Rounds: c.Int("rounds"),
		Target: c.Float64("target-accuracy"), Seed: c.Uint64("seed"), MNISTDir: c.String("mnist-dir"),
		Strategy: c.String("strategy"), Byzantine: c.Float64("byzantine"), Attack: c.String("attack"), AttackScale: c.Float64("attack-scale"),
		DPClip: c.Float64("dp-clip"), DPNoise: c.Float64("dp-noise"), DPEpsilon: c.Float64("dp-epsilon"), DPDelta: c.Float64("dp-delta"), DPMode: c.String("dp-mode"), DPSampling: c.String("dp-sampling"),
		DPPerLayer: c.Bool("dp-per-layer"), DPMinAgents: c.Int("dp-min-agents"), DPAdaptiveQuantile: c.Float64("dp-adaptive-clip"),
		SecAgg: c.Bool("secagg"), Dropout: c.Float64("dropout"),
		Semi: c.String("semi"), Threshold: c.Float64("threshold"), PseudoLabels: c.String("pseudo-labels"), WarmupEpochs: c.Int("semi-warmup"), FineTuneEpochs: c.Int("semi-finetune"),
		FineTuneLR: c.Float64("semi-finetune-lr"), FineTuneAugment: c.String("semi-finetune-augment"), SemiBaseline: c.Bool("semi-baseline"), TrainDeadline: c.Duration("train-deadline")}
	if cfg.Strategy == "help" {
		fmt.Fprintln(c.App.Writer, "strategies (NAME:defaults — what it is):")
		for _, l := range aggregation.Describe() {
			fmt.Fprintln(c.App.Writer, "  "+l)
		}
		return nil
	}
	if cfg.Attack == "help" {
		fmt.Fprintln(c.App.Writer, "attacks of Byzantine agents (s: --attack-scale):")
		for _, l := range sim.Attacks() {
			fmt.Fprintln(c.App.Writer, "  "+l)
		}
		return nil
	}
	if _, _, err := aggregation.Parse(cfg.Strategy); err != nil {
		return usageError("--strategy: %v", err)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"agents", cfg.Agents}, {"rounds", cfg.Rounds}, {"local-epochs", cfg.Epochs}, {"batch", cfg.Batch}} {
		if f.v < 1 {
			return usageError("--%s %d: want at least 1", f.name, f.v)
		}
	}
	if !(cfg.LR > 0) {
		return usageError("--lr %g: want a positive learning rate (e.g. 0.1)", cfg.LR)
	}
	if !(cfg.Fraction > 0 && cfg.Fraction <= 1) {
		return usageError("--fraction %g: want the share of agents selected each round, in (0, 1]", cfg.Fraction)
	}
	if s := cfg.LRSchedule; s != task.ScheduleConstant && s != task.ScheduleCosine {
		return usageError("--lr-schedule %q: want %s or %s", s, task.ScheduleConstant, task.ScheduleCosine)
	}
	if s := cfg.PseudoLabels; s != task.PseudoOnline && s != task.PseudoStatic {
		return usageError("--pseudo-labels %q: want %s or %s", s, task.PseudoOnline, task.PseudoStatic)
	}
	if s := cfg.DPSampling; s != "poisson" && s != "fixed" {
		return usageError("--dp-sampling %q: want poisson or fixed", s)
	}
	if cfg.TrainDeadline <= 0 {
		return usageError("--train-deadline %v: want a positive duration (e.g. 10m)", cfg.TrainDeadline)
	}
	if !(cfg.Dropout >= 0 && cfg.Dropout < 1) {
		return usageError("--dropout %g: want a probability in [0, 1)", cfg.Dropout)
	}
	if err := cfg.Validate(); err != nil {
		return usageError("%v", err)
	}
	if c.Bool("verbose") {
		cfg.Logger = slog.Default()
	}
	if addr := c.String("dashboard"); addr != "" {
		cfg.Serving, cfg.Linger = simDashboard(c, addr), c.Bool("dashboard-hold")
	}
	w := c.App.Writer
	if !c.Bool("json") {
		fmt.Fprintf(w, "federation of %d agents, %s, %s partition, C=%g E=%d B=%d lr=%g, strategy %s\n", cfg.Agents, cfg.Model, cfg.Partition,
			cfg.Fraction, cfg.Epochs, cfg.Batch, cfg.LR, cfg.Strategy)
		if cfg.Byzantine > 0 {
			fmt.Fprintf(w, "%.0f%% of the agents are Byzantine: %s\n", 100*cfg.Byzantine, cfg.Attack)
		}
		if cfg.Semi != "" {
			fmt.Fprintf(w, "semi-supervised: %s, τ = %g%s\n", cfg.Semi, cfg.Threshold, map[bool]string{true: " — baseline: labelled examples alone"}[cfg.SemiBaseline])
		}
		if cfg.DPClip > 0 {
			fmt.Fprintf(w, "%s DP: clip %g, budget ε = %g, δ = %g, %s sampling\n", cfg.DPMode, cfg.DPClip, cfg.DPEpsilon, cfg.DPDelta, cfg.DPSampling)
		}
		if cfg.SecAgg {
			fmt.Fprintf(w, "secure aggregation (SecAgg+)")
			if cfg.Dropout > 0 {
				fmt.Fprintf(w, ", %.0f%% dropout", 100*cfg.Dropout)
			}
			fmt.Fprintln(w)
		}
	}
	// A line per round: on stdout, or with --json (stdout is the one JSON object) on
	// stderr, so a long run shows where it is.
	progress := w
	if c.Bool("json") {
		progress = c.App.ErrWriter
	}
	cfg.Progress = func(r sim.Round) {
		fmt.Fprintf(progress, "round %4d  accuracy %6.2f%%  loss %.4f  %6.2fs\n", r.Round, 100*r.Accuracy, r.Loss, r.Seconds)
	}
	res, err := sim.Run(c.Context, cfg)
	if err != nil {
		return err
	}
	if p := c.String("plot"); p != "" {
		if err := plotSim(p, res, cfg); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
	}
	if c.Bool("json") {
		return printJSON(w, res)
	}
	if cfg.Target > 0 {
		if res.RoundsToTarget > 0 {
			fmt.Fprintf(w, "reached %.2f%% in %d rounds (%.1fs)\n", 100*cfg.Target, res.RoundsToTarget, res.Seconds)
		} else {
			fmt.Fprintf(w, "did not reach %.2f%% in %d rounds: final accuracy %.2f%% (%.1fs)\n", 100*cfg.Target, len(res.Rounds), 100*res.FinalAccuracy, res.Seconds)
		}
	} else {
		fmt.Fprintf(w, "final accuracy %.2f%% after %d rounds (%.1fs)\n", 100*res.FinalAccuracy, len(res.Rounds), res.Seconds)
	}
	if n := len(res.Rounds); n > 0 && res.Rounds[n-1].PseudoCoverage != nil {
		r := res.Rounds[n-1]
		fmt.Fprintf(w, "pseudo-labels in the last round: %.1f%% kept at τ = %g", 100**r.PseudoCoverage, cfg.Threshold)
		if r.PseudoAccuracy != nil {
			fmt.Fprintf(w, ", %.2f%% of them right", 100**r.PseudoAccuracy)
		}
		fmt.Fprintln(w)
	}
	if cfg.DPClip > 0 {
		fmt.Fprintf(w, "privacy spent: ε = %.4g at δ = %g (noise multiplier %.4g)\n", res.Epsilon, res.Delta, res.NoiseMultiplier)
	}
	return nil
}
