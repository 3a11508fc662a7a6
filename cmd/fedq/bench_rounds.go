package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

func benchRoundsCommand() *cli.Command {
	return &cli.Command{
		Name:  "rounds",
		Usage: "measure the framework's cost per round: N agents, a P-parameter model, trivial local training",
		Description: `Starts this binary's coordinator in a child process, enrolls N agents in this process over
loopback QUIC, submits a task whose model is one dense layer of about P parameters trained
for one step on one sample, and runs R rounds in which every agent takes part. Reports the
median time per round (from the versions' commit times, first round excluded), the
coordinator's peak resident memory against the model's size, and the CPU time per round of
the coordinator's process and of this one (the agents), all rounds included: on a busy host
the CPU time is steadier than the time per round.`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "agents", Value: 10, Usage: "agents, all selected every round"},
			&cli.IntFlag{Name: "params", Value: 1000, Usage: "model parameters (approximately)"},
			&cli.IntFlag{Name: "rounds", Value: 20, Usage: "rounds to run"},
			&cli.IntFlag{Name: "staging", Value: 1, Usage: "uploads the coordinator receives at once"},
			&cli.BoolFlag{Name: "secagg", Usage: "secure aggregation (SecAgg+)"},
			&cli.Float64Flag{Name: "dropout", Usage: "share of the agents that drop out of each round after training (a different set each round)"},
			&cli.StringFlag{Name: "coordinator-profile", Usage: "write the coordinator's CPU and heap profiles to PREFIX.cpu and PREFIX.heap"},
			&cli.StringFlag{Name: "agents-profile", Usage: "write the agents' (this process's) CPU and heap profiles to PREFIX.cpu and PREFIX.heap"},
			&cli.BoolFlag{Name: "dashboard", Usage: "serve the coordinator's dashboard (--http) and time GET /api/tasks/bench and /metrics, idle and during the rounds"},
			&cli.BoolFlag{Name: "verbose", Usage: "log the coordinator and the agents at debug level to stderr (per update: read time, congestion window, RTT)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
		},
		Action: runBenchRounds,
	}
}

func runBenchRounds(c *cli.Context) error {
	n, params, rounds := c.Int("agents"), c.Int("params"), c.Int("rounds")
	if n < 1 || params < 4 || rounds < 2 {
		return usageError("need --agents ≥ 1, --params ≥ 4, --rounds ≥ 2")
	}
	dropout := c.Float64("dropout")
	if !(dropout >= 0 && dropout < 1) {
		return usageError("--dropout %g: want a share in [0, 1)", dropout)
	}
	drops := int(math.Floor(dropout * float64(n)))
	ctx := c.Context
	classes := max(2, int(math.Round(math.Sqrt(float64(params)))))
	inputs := max(1, params/classes-1)
	dir, err := os.MkdirTemp("", "fedq-bench-rounds-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := freeUDPPort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	auth, err := ca.Init(dir, ca.InitOptions{Addr: addr})
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	level := "warn"
	if c.Bool("verbose") {
		level = "debug"
	}
	args := []string{"--log-level", level, "coordinator", "run", "--dir", dir, "--listen", addr,
		"--heartbeat", "10s", "--staging", fmt.Sprint(c.Int("staging"))}
	if p := c.String("coordinator-profile"); p != "" {
		args = append(args, "--cpuprofile", p+".cpu", "--memprofile", p+".heap")
	}
	web := ""
	if c.Bool("dashboard") {
		if web, err = freeTCPAddrNow(); err != nil {
			return err
		}
		args = append(args, "--http", web)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, c.App.ErrWriter
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	adm, err := dialWhenUp(ctx, dir, addr)
	if err != nil {
		return err
	}
	defer adm.Close()

	// One sample per agent: training is one step.
	data := &dataset.Dataset{Name: "bench", X: make([]float32, inputs), Y: []int32{0}, Shape: []int{inputs}, NumClasses: classes}
	caps := protocol.Capabilities{Backend: "cpu", Datasets: agent.Describe([]*agent.LocalData{{Name: "bench", Data: data}})}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if c.Bool("verbose") {
		quiet = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tr, err := transport.NewClientTransport()
	if err != nil {
		return err
	}
	defer transport.CloseTransport(tr)
	actx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	for i := range n {
		name := fmt.Sprintf("bench-%03d", i)
		tok, _, err := auth.CreateToken(name, time.Hour, addr, time.Now())
		if err != nil {
			return err
		}
		id, err := agent.Enroll(ctx, fmt.Sprintf("%s/agents/%s", dir, name), tok, agent.EnrollOptions{Name: name})
		if err != nil {
			return err
		}
		d, err := agent.New(agent.Config{Identity: id, Logger: quiet, Transport: tr, Capabilities: caps,
			Data: map[string]*dataset.Dataset{"bench": data}, DropOut: benchDropout(i, n, drops)})
		if err != nil {
			return err
		}
		wg.Go(func() { _ = d.Run(actx) })
	}
	for {
		st, err := adm.Status(ctx)
		if err != nil {
			return err
		}
		if st.Online == n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	spec := fmt.Sprintf(`{"name": "bench", "dataset": "bench", "seed": 1,
	  "model": {"input": [%d], "classes": %d, "layers": [{"type": "dense", "out": %d}]},
	  "train": {"local_steps": 1, "batch": 1, "lr": 0.01}, "agents_per_round": %d, "quorum": %d, "over_select": 1,
	  "deadlines": {"configure": "1m", "train": "10m"}%s}`, inputs, classes, classes, n, n-drops, secureSpec(c.Bool("secagg"), dropout))
	v0, err := adm.SubmitTask(ctx, json.RawMessage(spec))
	if err != nil {
		return err
	}
	if p := c.String("agents-profile"); p != "" {
		stop, err := profile(p+".cpu", p+".heap")
		if err != nil {
			return err
		}
		defer stop()
	}
	var probe *dashboardProbe
	var idle, busy map[string]map[string]float64
	if web != "" {
		if probe, err = newDashboardProbe(web, dir, "/api/tasks/bench", "/metrics"); err != nil {
			return err
		}
		probe.sample(ctx, 20, 50*time.Millisecond)
		idle = probe.report()
	}
	// CPU time of the coordinator's process and of this one, the agents'.
	cpu := func() (coord, agents float64, err error) {
		if coord, err = cpuSeconds(cmd.Process.Pid); err != nil {
			return 0, 0, err
		}
		agents, err = cpuSeconds(os.Getpid())
		return coord, agents, err
	}
	coordCPU0, agentsCPU0, err := cpu()
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := adm.StartRounds(ctx, "bench", rounds); err != nil {
		return err
	}
	probed := make(chan struct{})
	pctx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	if probe != nil {
		go func() { probe.sample(pctx, 0, 50*time.Millisecond); close(probed) }()
	} else {
		close(probed)
	}
	for {
		ts, err := adm.Tasks(ctx)
		if err != nil {
			return err
		}
		if len(ts) == 1 && ts[0].Status == "done" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	wall := time.Since(start)
	coordCPU, agentsCPU, err := cpu()
	if err != nil {
		return err
	}
	coordCPU, agentsCPU = (coordCPU-coordCPU0)/float64(rounds), (agentsCPU-agentsCPU0)/float64(rounds)
	stopProbe()
	<-probed
	if probe != nil {
		busy = probe.report()
	}
	vs, err := adm.Versions(ctx, "bench")
	if err != nil {
		return err
	}
	var per []float64
	for i := 2; i < len(vs); i++ {
		per = append(per, vs[i].Created.Sub(vs[i-1].Created).Seconds())
	}
	slices.Sort(per)
	rss, peak, err := rssKB(cmd.Process.Pid)
	if err != nil {
		return err
	}
	modelMB := float64(4*v0.Params) / (1 << 20)
	rep := map[string]any{"agents": n, "params": v0.Params, "secagg": c.Bool("secagg"), "dropouts_per_round": drops, "rounds": rounds, "seconds_per_round_median": per[len(per)/2],
		"seconds_per_round_mean": wall.Seconds() / float64(rounds), "coordinator_rss_mb": float64(rss) / 1024,
		"coordinator_rss_peak_mb": float64(peak) / 1024, "model_mb": modelMB, "peak_rss_over_model": float64(peak) / 1024 / modelMB,
		"coordinator_cpu_seconds_per_round": coordCPU, "agents_cpu_seconds_per_round": agentsCPU}
	if probe != nil {
		rep["dashboard_idle"], rep["dashboard_during_rounds"] = idle, busy
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(rep)
	}
	mode := "plain"
	if c.Bool("secagg") {
		mode = "secure aggregation"
	}
	fmt.Fprintf(c.App.Writer, "%s, %d of them dropping out per round; ", mode, drops)
	fmt.Fprintf(c.App.Writer, "%d agents, %d parameters (%.1f MB): %.1f ms per round (median of %d; mean %.1f ms); coordinator peak RSS %.0f MB = %.1f× the model; CPU per round: coordinator %.0f ms, agents %.0f ms\n",
		n, v0.Params, modelMB, 1000*per[len(per)/2], len(per), 1000*wall.Seconds()/float64(rounds), float64(peak)/1024, float64(peak)/1024/modelMB,
		1000*coordCPU, 1000*agentsCPU)
	if probe != nil {
		printDashboardReport(c.App.Writer, "idle", idle)
		printDashboardReport(c.App.Writer, "during rounds", busy)
	}
	return nil
}

// secureSpec is the task-spec fields of secure aggregation, planned for dropout.
func secureSpec(on bool, dropout float64) string {
	if !on {
		return ""
	}
	return fmt.Sprintf(`, "secure_aggregation": true, "secagg": {"dropout": %g, "deadline": "1m"}`, max(dropout, 0.01))
}

// benchDropout makes agent i of n one of the drops agents that drop out of each round
// after training: a window over the agents that moves on each round.
func benchDropout(i, n, drops int) func(taskID, phase string) bool {
	if drops == 0 {
		return nil
	}
	return func(taskID, phase string) bool {
		var round int
		if k := strings.Index(taskID, ".r"); k >= 0 {
			fmt.Sscanf(taskID[k+2:], "%d", &round)
		}
		return phase == agent.DropUpload && (i-round*drops%n+n)%n < drops
	}
}

// dialWhenUp connects to the admin service of a coordinator that is starting (a child
// process of a bench command), retrying until it answers a status call or 30 s pass.
func dialWhenUp(ctx context.Context, dir, addr string) (*coordinator.AdminClient, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		adm, err := coordinator.DialAdmin(ctx, dir, addr)
		if err == nil {
			if _, err = adm.Status(ctx); err == nil {
				return adm, nil
			}
			adm.Close()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the coordinator did not come up: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
