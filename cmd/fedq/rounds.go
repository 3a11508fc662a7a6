package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/engine"
	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/protocol"
)

// withAdmin dials the coordinator for an admin command.
func withAdmin(c *cli.Context, fn func(*coordinator.AdminClient) error) error {
	cl, err := coordinator.DialAdmin(c.Context, c.String("dir"), c.String("addr"))
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(cl)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print JSON"} }

func taskCommand() *cli.Command {
	return &cli.Command{
		Name:  "task",
		Usage: "training tasks (admin)",
		Subcommands: []*cli.Command{{
			Name:      "submit",
			Usage:     "submit a task spec (JSON): the coordinator checks it and stores its initial model as a version",
			ArgsUsage: "FILE",
			Description: `A task spec is a JSON object (see examples/ in the repository):

   name              1-64 letters, digits, '.', '-', '_'
   model             "2nn", "cnn", or a model spec object {"input": [...], "classes": N, "layers": [...]}
   dataset           the name agents give their data (fedq agent run --data NAME=SOURCE)
   train             {"epochs" | "local_steps", "batch", "lr", "optimizer": sgd|adam, "momentum", "weight_decay",
                     "lr_schedule": constant|cosine (lr decays over "rounds" towards "lr_final", 0)}
   strategy          {"name": "fedavg"} (default), or e.g. {"name": "fedadam", "params": {"eta": 0.003}}:
                     fedavg, fedavgm, fedprox, fedadagrad, fedadam, fedyogi, median,
                     trimmed_mean, krum, multikrum (fedq sim --strategy help: parameters)
   rounds            rounds to run when fedq round start gives no --rounds
   agents_per_round  updates a round aims for — or fraction: the share of eligible agents (C)
   over_select       select this many times the aim, to absorb stragglers (default 1.3)
   quorum            fewest updates a round commits with (default half the aim; 2f+3 for Krum)
   deadlines         {"configure": "10s", "train": "10m"} (defaults)
   seed              initial model and agent selection
   semi              semi-supervised (FixMatch in the agents): {"mode": "labels-at-agents"} or
                     {"mode": "labels-at-coordinator", "labelled": NAME} (a set given to
                     fedq coordinator run --data NAME=SOURCE), with "threshold" (τ, 0.95),
                     "lambda_u" (1), "ratio" (7), "pseudo_labels": online|static (once a round,
                     with the base model: SemiFL), and for labels at the coordinator
                     "warmup_epochs" (30) and "finetune": {"epochs": 5, "batch", "lr": 0.05, "momentum",
                     "augment": weak|none}
   privacy           differential privacy: {"mode": "central"|"distributed"|"record", "clip", "epsilon",
                     "delta", "noise_multiplier", "per_layer", "adaptive_clip", "min_records",
                     and for distributed (with secure_aggregation) "min_agents", "max_agents",
                     "bits" (32), "mod_clip" (1e-6)}
   secure_aggregation  true: SecAgg+ — the coordinator sees only the weighted mean of each
                     round's updates (FedAvg-family strategies); tuned by
   secagg            {"graph": "auto"|"complete", "dropout": 0.1, "failure_probability": 1e-6,
                     "clip": 8, "max_weight": 0 (the round's largest dataset × epochs),
                     "deadline": "30s" (each key-exchange phase)} (fedq secagg graph --agents N)

Unknown fields are refused; every error names the field.`,
			Flags: append(adminFlags(), jsonFlag()),
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usageError("task submit takes one spec file")
				}
				spec, err := task.Load(c.Args().First())
				if err != nil {
					return usageError("%v", err)
				}
				body, err := json.Marshal(spec)
				if err != nil {
					return err
				}
				return withAdmin(c, func(cl *coordinator.AdminClient) error {
					v, err := cl.SubmitTask(c.Context, body)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, v)
					}
					fmt.Fprintf(c.App.Writer, "task %s submitted: version %d (%d parameters, sha256 %s); next: fedq round start --task %s --rounds N\n",
						spec.Name, v.Number, v.Params, v.Hash.String()[:16], spec.Name)
					return nil
				})
			},
		}, {
			Name:  "list",
			Usage: "list the tasks",
			Flags: append(adminFlags(), jsonFlag()),
			Action: func(c *cli.Context) error {
				return withAdmin(c, func(cl *coordinator.AdminClient) error {
					ts, err := cl.Tasks(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, ts)
					}
					printTasks(c.App.Writer, ts)
					return nil
				})
			},
		}},
	}
}

func printTasks(w io.Writer, ts []coordinator.TaskInfo) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tSTATUS\tMODEL\tDATASET\tNEXT ROUND\tLEFT\tVERSION\tACCURACY\tε SPENT\tPHASE")
	for _, t := range ts {
		acc := "-"
		if a, ok := t.Metrics["accuracy"]; ok {
			acc = fmt.Sprintf("%.2f%%", 100*a)
		}
		phase := "-"
		if rs := roundOf(t); rs != nil {
			phase = fmt.Sprintf("%s %d/%d", rs.Phase, rs.Delivered, rs.Aim)
		} else if t.Waiting {
			phase = "waiting for agents"
		}
		eps := "-"
		if p := t.Privacy; p != nil {
			eps = fmt.Sprintf("%.3g of %g (δ %g)", p.Epsilon, p.Budget, p.Delta)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", t.Name, t.Status, t.Model, t.Dataset, t.NextRound, t.RoundsLeft, t.Version, acc, eps, phase)
	}
	tw.Flush()
}

// roundOf decodes a task's running round, if any.
func roundOf(t coordinator.TaskInfo) *engine.RoundStatus {
	if t.Round == nil {
		return nil
	}
	b, err := json.Marshal(t.Round)
	if err != nil {
		return nil
	}
	var rs engine.RoundStatus
	if json.Unmarshal(b, &rs) != nil {
		return nil
	}
	return &rs
}

func roundCommand() *cli.Command {
	return &cli.Command{
		Name:  "round",
		Usage: "rounds of training (admin)",
		Subcommands: []*cli.Command{{
			Name:  "start",
			Usage: "run N more rounds of a task; --watch follows them",
			Flags: append(adminFlags(),
				&cli.StringFlag{Name: "task", Required: true, Usage: "task name"},
				&cli.IntFlag{Name: "rounds", Usage: "rounds to run (default: the task spec's rounds)"},
				&cli.BoolFlag{Name: "watch", Usage: "show progress until the rounds are done"},
				jsonFlag()),
			Action: func(c *cli.Context) error {
				return withAdmin(c, func(cl *coordinator.AdminClient) error {
					ti, err := cl.StartRounds(c.Context, c.String("task"), c.Int("rounds"))
					if err != nil {
						return err
					}
					if !c.Bool("watch") {
						if c.Bool("json") {
							return printJSON(c.App.Writer, ti)
						}
						fmt.Fprintf(c.App.Writer, "task %s: %d rounds to go from round %d\n", ti.Name, ti.RoundsLeft, ti.NextRound)
						return nil
					}
					return watch(c, cl, ti)
				})
			},
		}},
	}
}

// watch follows a task until its requested rounds are done, with a live progress line.
func watch(c *cli.Context, cl *coordinator.AdminClient, start coordinator.TaskInfo) error {
	total := start.RoundsLeft
	first := start.NextRound
	began := time.Now()
	tty := isTerminal(c.App.ErrWriter)
	var last coordinator.TaskInfo
	for {
		ts, err := cl.Tasks(c.Context)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.Name == start.Name {
				last = t
			}
		}
		done := int(last.NextRound - first)
		line := fmt.Sprintf("task %s: round %d/%d", last.Name, min(done+1, total), total)
		if rs := roundOf(last); rs != nil {
			line += fmt.Sprintf(", %s, %d/%d agents done of %d selected", rs.Phase, rs.Delivered, rs.Aim, rs.Selected)
		} else if last.Waiting {
			line += ", waiting for agents"
		}
		if done > 0 {
			eta := time.Duration(float64(time.Since(began)) / float64(done) * float64(total-done)).Round(time.Second)
			line += fmt.Sprintf(", ETA %v", eta)
		}
		if a, ok := last.Metrics["accuracy"]; ok {
			line += fmt.Sprintf(", accuracy %.2f%%", 100*a)
		}
		if tty {
			fmt.Fprintf(c.App.ErrWriter, "\r\033[K%s", line)
		}
		if last.Status == string(engine.Done) || last.RoundsLeft == 0 {
			if tty {
				fmt.Fprintln(c.App.ErrWriter)
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, last)
			}
			fmt.Fprintf(c.App.Writer, "task %s: %d rounds done in %v; version %d\n", last.Name, total, time.Since(began).Round(time.Millisecond), last.Version)
			return nil
		}
		select {
		case <-c.Context.Done():
			return c.Context.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "the coordinator's state: agents online, tasks and their rounds (admin)",
		Flags: append(adminFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			return withAdmin(c, func(cl *coordinator.AdminClient) error {
				st, err := cl.Status(c.Context)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, st)
				}
				fmt.Fprintf(c.App.Writer, "coordinator %s, up since %s: %d of %d agents online\n", st.Addr, st.Since.Local().Format(time.DateTime), st.Online, st.Enrolled)
				if len(st.Tasks) > 0 {
					printTasks(c.App.Writer, st.Tasks)
				}
				return nil
			})
		},
	}
}

func versionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "versions",
		Usage: "list model versions (admin)",
		Flags: append(adminFlags(), &cli.StringFlag{Name: "task", Usage: "only this task's"}, jsonFlag()),
		Action: func(c *cli.Context) error {
			return withAdmin(c, func(cl *coordinator.AdminClient) error {
				vs, err := cl.Versions(c.Context, c.String("task"))
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, vs)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tPARENT\tTASK\tROUND\tUPDATES\tTRAIN LOSS\tACCURACY\tε SPENT\tSHA256\tCREATED")
				for _, v := range vs {
					acc := "-"
					if a, ok := v.Metrics["accuracy"]; ok {
						acc = fmt.Sprintf("%.2f%%", 100*a)
					}
					eps := "-"
					if p := v.Privacy; p != nil {
						eps = fmt.Sprintf("%.4g (δ %g)", p.Epsilon, p.Delta)
					}
					fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%.0f\t%.4f\t%s\t%s\t%s\t%s\n", v.Number, v.Parent, v.Task, v.Round,
						v.Metrics["updates"], v.Metrics["train_loss"], acc, eps, v.Hash.String()[:16], v.Created.Local().Format(time.DateTime))
				}
				return tw.Flush()
			})
		},
	}
}

func modelCommand() *cli.Command {
	return &cli.Command{
		Name:  "model",
		Usage: "global models",
		Subcommands: []*cli.Command{{
			Name:  "pull",
			Usage: "download a version, verify its signature and hash, and save it as safetensors (PyTorch layout)",
			Flags: append(adminFlags(),
				&cli.StringFlag{Name: "version", Value: "latest", Usage: "version number, or latest"},
				&cli.StringFlag{Name: "task", Usage: "task (for latest, when there are several)"},
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "safetensors file to write"},
				jsonFlag()),
			Action: pullModel,
		}},
	}
}

func pullModel(c *cli.Context) error {
	req := coordinator.VersionRequest{Task: c.String("task")}
	if v := c.String("version"); v == "latest" {
		req.Latest = true
	} else {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return usageError("--version %q: want a version number or latest", v)
		}
		req.Number = n
	}
	return withAdmin(c, func(cl *coordinator.AdminClient) error {
		if cl.SigningKey == nil {
			return fmt.Errorf("%s has no signing.pub: cannot verify models (make admin credentials with `fedq admin cert`)", c.String("dir"))
		}
		v, err := cl.Version(c.Context, req)
		if err != nil {
			return err
		}
		tasks, err := cl.Tasks(c.Context)
		if err != nil {
			return err
		}
		var spec *task.Spec
		for _, t := range tasks {
			if t.Name == v.Task {
				if spec, err = task.Parse(t.Spec); err != nil {
					return err
				}
			}
		}
		if spec == nil {
			return fmt.Errorf("version %d belongs to task %q, which the coordinator does not list", v.Number, v.Task)
		}
		ms, err := spec.ModelSpec()
		if err != nil {
			return err
		}
		m, err := compute.New[float32](ms, compute.Options{Inference: true})
		if err != nil {
			return err
		}
		layout := make([]protocol.TensorInfo, 0, len(m.Params()))
		for _, p := range m.Params() {
			layout = append(layout, protocol.TensorInfo{Name: p.Name, DType: protocol.DTypeF32, Shape: p.Shape})
		}
		var signed protocol.VersionHeader
		var meta map[string]string
		err = cl.FetchModel(c.Context, v.Number, v.Hash, func(tr *protocol.TensorReader) error {
			if signed, err = protocol.VerifyVersion(cl.SigningKey, tr.Header().Meta); err != nil {
				return err
			}
			if signed.Number != v.Number || signed.Hash != v.Hash {
				return protocol.NewError(protocol.CodeHashMismatch, "the signed model is version %d (%s), asked for %d (%s)", signed.Number, signed.Hash, v.Number, v.Hash)
			}
			meta = tr.Header().Meta
			return protocol.ReadParams(tr, layout, m.Values())
		})
		if err != nil {
			return fmt.Errorf("pull version %d: %w", v.Number, err)
		}
		extra := map[string]string{"fedq.task": v.Task, "fedq.version.number": strconv.FormatUint(v.Number, 10),
			protocol.MetaVersion: meta[protocol.MetaVersion], protocol.MetaSignature: meta[protocol.MetaSignature]}
		if a, ok := v.Metrics["accuracy"]; ok {
			extra["fedq.accuracy"] = strconv.FormatFloat(a, 'f', -1, 64)
		}
		if err := compute.SaveFile(c.String("out"), m, extra); err != nil {
			return err
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, map[string]any{"version": v.Number, "task": v.Task, "sha256": v.Hash.String(), "out": c.String("out"), "params": v.Params})
		}
		fmt.Fprintf(c.App.Writer, "version %d of %s (sha256 %s, signature verified) saved to %s\n", v.Number, v.Task, v.Hash.String()[:16], c.String("out"))
		return nil
	})
}
