// Package sim runs a whole federation in one process: a coordinator with its store in a
// temporary directory and N agents, talking real QUIC over 127.0.0.1, training on MNIST
// partitioned across the agents (IID, Dirichlet over labels, or McMahan's shards). The
// coordinator scores every new version on the MNIST test set, which no agent holds.
// It is what `fedq sim` runs, and how fedq reproduces McMahan et al. (2017).
package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/aggregation"
	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/privacy/dp"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// Config describes a simulated federation.
type Config struct {
	Agents    int
	Model     string // builtin name, spec file, or inline JSON
	Partition string // iid, dirichlet:ALPHA, or shards[:PER_AGENT]
	Fraction  float64
	Epochs    int
	Batch     int
	LR        float64
	// Momentum is the agents' local SGD momentum (0: plain SGD).
	Momentum float64
	// LRSchedule is the task's learning-rate schedule over its Rounds (see
	// task.Train.LRSchedule; empty: constant).
	LRSchedule string
	Rounds     int
	// Target, when positive, stops the simulation once a version reaches this test
	// accuracy.
	Target float64
	// Strategy is the aggregation strategy, as NAME or NAME:key=value,... (default
	// fedavg; see aggregation.Describe).
	Strategy string
	// Byzantine is the share of agents, in [0, 1), that attack with Attack.
	Byzantine float64
	// Attack is what Byzantine agents do (see Attacks).
	Attack string
	// AttackScale is the attack's strength (0: the attack's default; see Attacks).
	AttackScale float64
	// DPClip, when positive, makes the task user-level DP-FedAvg (central DP): updates
	// clipped to this L2 norm, Gaussian noise of DPNoise × DPClip on their sum, Poisson
	// sampling at Fraction, within the budget (DPEpsilon, DPDelta). DPNoise 0 calibrates
	// the noise so that Rounds rounds spend DPEpsilon.
	DPClip, DPNoise, DPEpsilon, DPDelta float64
	// DPMode is "central" (default: user-level, as above), "distributed" (the same,
	// with the noise added by the agents under secure aggregation: DDGauss) or "record": record-level
	// DP-SGD in every agent's local training (each record's gradient clipped to DPClip,
	// noise DPNoise × DPClip per step), with Epochs × ⌈records/Batch⌉ local steps per
	// round, accounted at rate Batch / (the smallest agent's records).
	DPMode string
	// DPSampling is the user-level modes' agent sampling: "poisson" (default) or
	// "fixed": round(Fraction × Agents) agents a round without replacement, the
	// population being all Agents (task.Privacy.Sampling).
	DPSampling string
	// DPMinAgents is distributed DP's min_agents (default: three standard deviations
	// below the expected participants).
	DPMinAgents int
	// DPPerLayer clips each parameter tensor of an update to DPClip/√tensors (central).
	DPPerLayer bool
	// DPAdaptiveQuantile, when positive, adapts the clip towards this quantile of the
	// updates' norms (central; the count's noise is a twentieth of the expected
	// participants, as in Andrew et al. 2021).
	DPAdaptiveQuantile float64
	// SecAgg sums the updates with secure aggregation (SecAgg+).
	SecAgg bool
	// Dropout is the probability that a selected agent drops out of a round: at a
	// phase drawn uniformly from those it goes through (with SecAgg: advertising keys,
	// sharing keys, uploading, unmasking; without: uploading).
	Dropout float64
	// Semi, when set, makes the task semi-supervised: "labels-at-coordinator:N" (the
	// coordinator holds N labelled training examples, balanced over the classes, and
	// the agents share the rest without labels) or "labels-at-agents:K" (each agent
	// keeps the labels of K of its examples of each class). Agents know the true labels
	// of what they hold only to score their pseudo-labels.
	Semi string
	// Threshold is the pseudo-labels' confidence threshold τ (0: the default, 0.95).
	Threshold float64
	// PseudoLabels is when agents make pseudo-labels (task.Semi.PseudoLabels; empty:
	// online).
	PseudoLabels string
	// WarmupEpochs, FineTuneEpochs, FineTuneLR and FineTuneAugment set the coordinator's
	// training on its labelled set (labels-at-coordinator; zero: the task's defaults).
	WarmupEpochs, FineTuneEpochs int
	FineTuneLR                   float64
	FineTuneAugment              string
	// SemiBaseline runs, instead, what Semi is compared with: for labels-at-coordinator,
	// the model trained on the coordinator's labelled examples alone (no federation);
	// for labels-at-agents, FedAvg on the agents' labelled examples alone.
	SemiBaseline bool
	Seed         uint64
	// TrainDeadline bounds each round's train phase (0: DefaultTrainDeadline). A round
	// whose agents have not all delivered by then ends with the updates it has: it
	// commits with at least its quorum of them, and fails with fewer.
	TrainDeadline time.Duration
	// MNISTDir holds the IDX files (default: dataset.MNISTDir()).
	MNISTDir string
	// Logger receives the coordinator's and agents' logs (default: discarded).
	Logger *slog.Logger
	// Progress, when set, is called after every committed round.
	Progress func(Round)
	// Serving, when set, is called with the coordinator once it serves, before the
	// agents start (fedq sim --dashboard serves its dashboard from there); Run calls the
	// function it returns, if not nil, before it stops the coordinator.
	Serving func(*coordinator.Server) (stop func())
	// Linger keeps the federation up after the last round until ctx is done, and Run
	// then returns the results as usual (to look at the dashboard).
	Linger bool
}

// DefaultTrainDeadline is a round's train phase's deadline unless Config.TrainDeadline
// says otherwise: far beyond what a simulated round takes, even of a thousand agents on a
// loaded host, yet short enough that a round stuck waiting for an agent that will never
// deliver fails within minutes and is tried again.
const DefaultTrainDeadline = 10 * time.Minute

// attack is what Byzantine agents of a simulation can do, with its default scale s.
type attack struct {
	doc   string
	scale float64
}

func attacks() map[string]attack {
	return map[string]attack{
		"signflip":  {"send −s × the honest update (s = 4)", 4},
		"scale":     {"send s × the honest update (s = 10)", 10},
		"noise":     {"send Gaussian noise of standard deviation s instead of an update (s = 1)", 1},
		"labelflip": {"train on labels flipped to (classes − 1 − label)", 0},
	}
}

// Attacks describes the attacks Byzantine agents can play, one line each.
func Attacks() []string {
	var out []string
	as := attacks()
	for _, name := range slices.Sorted(maps.Keys(as)) {
		out = append(out, name+": "+as[name].doc)
	}
	return out
}

// dropout returns agent i's DropOut hook: with probability cfg.Dropout per task, it
// drops out at one phase, drawn from the seed, the agent and the task.
func dropout(cfg Config, i int) func(taskID, phase string) bool {
	if cfg.Dropout <= 0 {
		return nil
	}
	phases := []string{agent.DropUpload}
	if cfg.SecAgg {
		phases = []string{agent.DropAdvertise, agent.DropShare, agent.DropUpload, agent.DropUnmask}
	}
	return func(taskID, phase string) bool {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%d/%s", cfg.Seed, i, taskID)
		r := rand.New(rand.NewPCG(h.Sum64(), 0))
		return r.Float64() < cfg.Dropout && phases[r.IntN(len(phases))] == phase
	}
}

// Round is one committed round's result.
type Round struct {
	Round    uint64  `json:"round"`
	Accuracy float64 `json:"accuracy"`
	Loss     float64 `json:"loss"`
	Seconds  float64 `json:"seconds"` // wall time of the round
	// PseudoCoverage and PseudoAccuracy (semi-supervised tasks) are the share of the
	// agents' pseudo-labels at or above τ and the share of those that were right,
	// averaged over the round's updates, weighted by examples.
	// Both are absent where no update reported them.
	PseudoCoverage *float64 `json:"pseudo_coverage,omitempty"`
	PseudoAccuracy *float64 `json:"pseudo_accuracy,omitempty"`
}

// Result is a simulation's outcome.
type Result struct {
	// RoundsToTarget is the first round whose version reached Target (0: not reached).
	RoundsToTarget int     `json:"rounds_to_target"`
	FinalAccuracy  float64 `json:"final_accuracy"`
	Rounds         []Round `json:"rounds"`
	Seconds        float64 `json:"seconds"`
	Agents         int     `json:"agents"`
	Params         int     `json:"params"`
	// Strategy is the strategy with its parameters; Byzantine the agents that attacked.
	Strategy  string `json:"strategy"`
	Byzantine int    `json:"byzantine,omitempty"`
	Attack    string `json:"attack,omitempty"`
	// Epsilon is the privacy spent by the rounds run, at Delta, with NoiseMultiplier.
	Epsilon         float64 `json:"epsilon,omitempty"`
	Delta           float64 `json:"delta,omitempty"`
	NoiseMultiplier float64 `json:"noise_multiplier,omitempty"`
	// Semi is Config.Semi (with " baseline" for Config.SemiBaseline).
	Semi string `json:"semi,omitempty"`
}

// partitionSpec is a parsed Config.Partition.
type partitionSpec struct {
	kind  string  // iid, dirichlet or shards
	alpha float64 // dirichlet's concentration
	per   int     // shards per agent
}

// parsePartition parses iid, dirichlet:ALPHA, shards or shards:PER_AGENT ("" is iid).
func parsePartition(s string) (partitionSpec, error) {
	kind, arg, _ := strings.Cut(s, ":")
	switch kind {
	case "iid", "":
		return partitionSpec{kind: "iid"}, nil
	case "dirichlet":
		alpha, err := strconv.ParseFloat(arg, 64)
		if err != nil || !(alpha > 0) || math.IsInf(alpha, 0) {
			return partitionSpec{}, fmt.Errorf("partition %q: want dirichlet:ALPHA with ALPHA > 0", s)
		}
		return partitionSpec{kind: kind, alpha: alpha}, nil
	case "shards":
		per := 2
		if arg != "" {
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 {
				return partitionSpec{}, fmt.Errorf("partition %q: want shards or shards:PER_AGENT", s)
			}
			per = n
		}
		return partitionSpec{kind: kind, per: per}, nil
	}
	return partitionSpec{}, fmt.Errorf("partition %q: want iid, dirichlet:ALPHA or shards", s)
}

// partition splits the training set as cfg says.
func partition(train *dataset.Dataset, cfg Config) ([][]int, error) {
	p, err := parsePartition(cfg.Partition)
	if err != nil {
		return nil, err
	}
	switch p.kind {
	case "dirichlet":
		return dataset.PartitionDirichlet(train.Y, train.NumClasses, cfg.Agents, p.alpha, cfg.Seed)
	case "shards":
		return dataset.PartitionShards(train.Y, cfg.Agents, p.per, cfg.Seed)
	}
	return dataset.PartitionIID(train.Len(), cfg.Agents, cfg.Seed)
}

// parsed holds what a valid Config says, in the forms Run uses.
type parsed struct {
	strategy string
	params   map[string]float64
	semi     *semiSetting
	spec     compute.Spec
}

// Validate checks the settings that need no data — the numbers, the strategy, the attack,
// the partition, the semi-supervised setting and the model — so that a caller can refuse a
// bad configuration before it prints or loads anything. Run checks them too.
func (cfg Config) Validate() error {
	_, err := cfg.parse()
	return err
}

// parse is Validate, keeping what it parsed.
func (cfg Config) parse() (parsed, error) {
	var p parsed
	if cfg.Agents < 1 || cfg.Rounds < 1 || cfg.Epochs < 1 || cfg.Batch < 1 || !(cfg.LR > 0) || !(cfg.Fraction > 0 && cfg.Fraction <= 1) {
		return p, fmt.Errorf("sim: need agents, rounds, local epochs, batch ≥ 1, lr > 0 and fraction in (0, 1]")
	}
	if cfg.TrainDeadline < 0 {
		return p, fmt.Errorf("sim: the train deadline must be positive, got %v", cfg.TrainDeadline)
	}
	var err error
	if p.strategy, p.params, err = aggregation.Parse(cfg.Strategy); err != nil {
		return p, err
	}
	if !(cfg.Byzantine >= 0 && cfg.Byzantine < 1) {
		return p, fmt.Errorf("sim: the Byzantine share must be in [0, 1), got %v", cfg.Byzantine)
	}
	byzantine := int(math.Round(cfg.Byzantine * float64(cfg.Agents)))
	_, known := attacks()[cfg.Attack]
	switch {
	case byzantine > 0 && !known:
		return p, fmt.Errorf("sim: attack %q: want one of %s", cfg.Attack, strings.Join(slices.Sorted(maps.Keys(attacks())), ", "))
	case byzantine == 0 && cfg.Attack != "":
		return p, fmt.Errorf("sim: an attack needs Byzantine agents (a share > 0)")
	case cfg.AttackScale < 0 || math.IsNaN(cfg.AttackScale) || math.IsInf(cfg.AttackScale, 0):
		return p, fmt.Errorf("sim: the attack scale must be ≥ 0, got %v", cfg.AttackScale)
	}
	if _, err := parsePartition(cfg.Partition); err != nil {
		return p, err
	}
	if p.semi, err = parseSemi(cfg.Semi); err != nil {
		return p, err
	}
	if cfg.SemiBaseline && p.semi == nil {
		return p, fmt.Errorf("sim: a semi-supervised baseline needs a semi-supervised setting")
	}
	if p.spec, err = compute.ResolveSpec(cfg.Model); err != nil {
		return p, err
	}
	return p, nil
}

// Run runs the simulation until Rounds rounds are committed or Target is reached.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	p, err := cfg.parse()
	if err != nil {
		return nil, err
	}
	strategy, params, semi, spec := p.strategy, p.params, p.semi, p.spec
	if cfg.TrainDeadline == 0 {
		cfg.TrainDeadline = DefaultTrainDeadline
	}
	byzantine := int(math.Round(cfg.Byzantine * float64(cfg.Agents)))
	scale := cfg.AttackScale
	if scale == 0 {
		scale = attacks()[cfg.Attack].scale
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dir := cfg.MNISTDir
	if dir == "" {
		if dir, err = dataset.MNISTDir(); err != nil {
			return nil, err
		}
	}
	train, test, err := dataset.LoadMNIST(dir)
	if err != nil {
		return nil, err
	}
	pool, labelled := train, (*dataset.Dataset)(nil)
	if semi != nil && semi.mode == task.LabelsAtCoordinator {
		picked, rest, err := balanced(train, semi.n, cfg.Seed)
		if err != nil {
			return nil, err
		}
		labelled, pool = train.Subset(picked), train.Subset(rest)
		labelled.Name = labelledName
		if cfg.SemiBaseline {
			res := &Result{Semi: cfg.Semi + " baseline"}
			started := time.Now()
			if err := supervised(ctx, cfg, spec, labelled, test, res); err != nil {
				return nil, err
			}
			res.Seconds = time.Since(started).Seconds()
			return res, nil
		}
	}
	parts, err := partition(pool, cfg)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "fedq-sim-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	coordDir := work + "/coordinator"
	if _, err := ca.Init(coordDir, ca.InitOptions{Addr: "127.0.0.1:4433"}); err != nil {
		return nil, err
	}

	// The coordinator scores each version on the test set.
	res := &Result{Agents: cfg.Agents, Strategy: formatStrategy(strategy, params), Byzantine: byzantine, Semi: cfg.Semi}
	if cfg.SemiBaseline {
		res.Semi += " baseline"
	}
	if byzantine > 0 {
		res.Attack = cfg.Attack
	}
	// The Byzantine agents: a seeded choice.
	bad := map[int]bool{}
	for _, i := range rand.New(rand.NewPCG(cfg.Seed, 0xb12)).Perm(cfg.Agents)[:byzantine] {
		bad[i] = true
	}
	var mu sync.Mutex
	started := time.Now()
	lastCommit := started
	done := make(chan struct{})
	var doneOnce sync.Once
	evalModel, err := compute.New[float32](spec, compute.Options{Inference: true})
	if err != nil {
		return nil, err
	}
	res.Params = evalModel.NumParams()
	evaluate := func(_ string, round uint64, _ compute.Spec, weights []float32) (map[string]float64, error) {
		if err := evalModel.SetValues(weights); err != nil {
			return nil, err
		}
		acc, loss, err := compute.Evaluate(evalModel, test, 1000)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		now := time.Now()
		r := Round{Round: round, Accuracy: acc, Loss: loss, Seconds: now.Sub(lastCommit).Seconds()}
		lastCommit = now
		res.Rounds = append(res.Rounds, r)
		res.FinalAccuracy = acc
		if cfg.Target > 0 && acc >= cfg.Target && res.RoundsToTarget == 0 {
			res.RoundsToTarget = int(round)
			doneOnce.Do(func() { close(done) })
		}
		if int(round) >= cfg.Rounds {
			doneOnce.Do(func() { close(done) })
		}
		mu.Unlock()
		if cfg.Progress != nil {
			cfg.Progress(r)
		}
		return map[string]float64{"accuracy": acc, "test_loss": loss}, nil
	}
	srv, err := coordinator.Listen(coordinator.Config{Dir: coordDir, Listen: "127.0.0.1:0", Heartbeat: 5 * time.Second,
		Logger: log, Evaluate: evaluate, StagingBuffers: 2, Labelled: map[string]*dataset.Dataset{labelledName: labelled}})
	if err != nil {
		return nil, err
	}
	addr := srv.Addr().(*net.UDPAddr).String()
	sctx, stopCoord := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx) }()
	defer func() { stopCoord(); <-served }()
	if cfg.Serving != nil {
		if stop := cfg.Serving(srv); stop != nil {
			defer stop()
		}
	}

	// Enroll and start the agents.
	actx, stopAgents := context.WithCancel(ctx)
	var agents sync.WaitGroup
	defer func() { stopAgents(); agents.Wait() }()
	var trs []*quic.Transport
	defer func() {
		for _, tr := range trs {
			_ = transport.CloseTransport(tr)
		}
	}()
	for i, idx := range parts {
		name := fmt.Sprintf("agent-%03d", i)
		tok, _, err := srv.Authority().CreateToken(name, time.Hour, addr, time.Now())
		if err != nil {
			return nil, err
		}
		id, err := agent.Enroll(ctx, work+"/"+name, tok, agent.EnrollOptions{Name: name})
		if err != nil {
			return nil, fmt.Errorf("enroll %s: %w", name, err)
		}
		if i%100 == 0 {
			tr, err := transport.NewClientTransport()
			if err != nil {
				return nil, err
			}
			trs = append(trs, tr)
		}
		local := pool.Subset(idx)
		local.Name = "mnist"
		var truth []int32
		if semi != nil {
			keep := 0
			if semi.mode == task.LabelsAtAgents {
				keep = semi.n
			}
			truth = hideLabels(local, keep, cfg.Seed^uint64(i)<<8)
			if cfg.SemiBaseline {
				local, truth = labelledOnly(local), nil
			}
		}
		var tamper func(uint64, []float32)
		if bad[i] {
			tamper = byzantineAgent(cfg.Attack, scale, local, cfg.Seed^uint64(i))
		}
		d, err := agent.New(agent.Config{Identity: id, Logger: log, Transport: trs[len(trs)-1],
			Data: map[string]*dataset.Dataset{"mnist": local},
			Capabilities: protocol.Capabilities{Backend: "cpu", Datasets: agent.Describe([]*agent.LocalData{{Name: "mnist", Data: local}}),
				Features: []string{agent.FeatureSemi}},
			TrueLabels:   map[string][]int32{"mnist": truth},
			Backoff:      agent.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2},
			BeforeUpload: tamper, DropOut: dropout(cfg, i)})
		if err != nil {
			return nil, err
		}
		agents.Go(func() { _ = d.Run(actx) })
	}
	for srv.Online() < cfg.Agents {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}

	// The task: McMahan's setting — a fraction C of the agents per round, E local
	// epochs of batch B; over-selection off, since simulated agents do not straggle.
	model, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	ts := task.Spec{Name: "sim", Model: model, Dataset: "mnist", Seed: cfg.Seed,
		Train:    task.Train{Epochs: cfg.Epochs, Batch: cfg.Batch, LR: cfg.LR, Momentum: cfg.Momentum, LRSchedule: cfg.LRSchedule},
		Strategy: task.Strategy{Name: strategy, Params: params},
		Rounds:   cfg.Rounds,
		Fraction: cfg.Fraction, OverSelect: 1,
		Deadlines: task.Deadlines{Configure: task.Duration(time.Minute), Train: task.Duration(cfg.TrainDeadline)}}
	if cfg.DPClip > 0 {
		ts.Privacy = &task.Privacy{Mode: task.Central, Clip: cfg.DPClip, NoiseMultiplier: cfg.DPNoise, Epsilon: cfg.DPEpsilon, Delta: cfg.DPDelta,
			PerLayer: cfg.DPPerLayer}
		switch cfg.DPSampling {
		case "", string(dp.Poisson):
		case string(dp.Fixed):
			ts.Privacy.Sampling, ts.Privacy.Population = string(dp.Fixed), cfg.Agents
		default:
			return nil, fmt.Errorf("sim: DP sampling %q: want poisson or fixed", cfg.DPSampling)
		}
		if cfg.DPAdaptiveQuantile > 0 {
			ts.Privacy.AdaptiveClip = &task.AdaptiveClip{Quantile: cfg.DPAdaptiveQuantile,
				CountNoise: max(1, cfg.Fraction*float64(cfg.Agents)/20)}
		}
		switch cfg.DPMode {
		case "", task.Central:
		case task.Record:
			fewest := len(parts[0])
			for _, p := range parts {
				fewest = min(fewest, len(p))
			}
			ts.Privacy.Mode, ts.Privacy.MinRecords = task.Record, fewest
			ts.Train.LocalSteps = cfg.Epochs * ((fewest + cfg.Batch - 1) / cfg.Batch)
			ts.Train.Epochs = 0
		case task.Distributed:
			// The agents add the noise under secure aggregation; a round commits only
			// with enough of them: three standard deviations below the expected
			// participants of a Poisson sample.
			expected := cfg.Fraction * float64(cfg.Agents)
			ts.Privacy.Mode = task.Distributed
			ts.Privacy.MinAgents = cfg.DPMinAgents
			if ts.Privacy.MinAgents == 0 {
				ts.Privacy.MinAgents = max(task.MinSecureAgents, int(math.Floor(expected-3*math.Sqrt(expected))))
			}
			cfg.SecAgg = true
		default:
			return nil, fmt.Errorf("sim: DP mode %q: want central, record or distributed", cfg.DPMode)
		}
	}
	if cfg.SecAgg {
		ts.SecureAggregation = true
		// Simulated agents answer at once: a key-exchange phase waits for at most a few
		// seconds for those that dropped without a word.
		ts.SecAgg = &task.SecAgg{Dropout: max(cfg.Dropout, 0.01), Deadline: task.Duration(10 * time.Second)}
	}
	if semi != nil && !cfg.SemiBaseline {
		semiTask(&ts, semi, cfg)
	}
	if err := ts.Normalize(); err != nil {
		return nil, err
	}
	if strategy != "krum" && strategy != "multikrum" {
		ts.Quorum = 0
	}
	adm, err := coordinator.DialAdmin(ctx, coordDir, addr)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	body, _ := json.Marshal(ts)
	if _, err := adm.SubmitTask(ctx, body); err != nil {
		return nil, err
	}
	mu.Lock()
	lastCommit = time.Now()
	mu.Unlock()
	if _, err := adm.StartRounds(ctx, "sim", cfg.Rounds); err != nil {
		return nil, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	elapsed := time.Since(started)
	if semi != nil {
		if err := versionMetrics(ctx, adm, res, &mu); err != nil {
			return nil, err
		}
	}
	if cfg.Linger {
		<-ctx.Done()
	}
	mu.Lock()
	defer mu.Unlock()
	res.Seconds = elapsed.Seconds()
	if p := ts.Privacy; p != nil {
		if res.Epsilon, err = ts.Spent(uint64(len(res.Rounds))); err != nil {
			return nil, err
		}
		res.Delta, res.NoiseMultiplier = p.Delta, p.NoiseMultiplier
	}
	return res, nil
}

// byzantineAgent makes an agent play attack: label flipping changes its data now; the
// others return how it changes each update before upload.
func byzantineAgent(attack string, scale float64, local *dataset.Dataset, seed uint64) func(uint64, []float32) {
	switch attack {
	case "labelflip":
		for i, y := range local.Y {
			if y >= 0 {
				local.Y[i] = int32(local.NumClasses) - 1 - y
			}
		}
		return nil
	case "signflip":
		return func(_ uint64, u []float32) {
			for i := range u {
				u[i] *= float32(-scale)
			}
		}
	case "scale":
		return func(_ uint64, u []float32) {
			for i := range u {
				u[i] *= float32(scale)
			}
		}
	case "noise":
		return func(round uint64, u []float32) {
			r := rand.New(rand.NewPCG(seed, round))
			for i := range u {
				u[i] = float32(r.NormFloat64() * scale)
			}
		}
	}
	return nil
}

// formatStrategy writes a strategy as NAME:key=value,... with its parameters sorted.
func formatStrategy(name string, params map[string]float64) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(params)) {
		kv = append(kv, fmt.Sprintf("%s=%g", k, params[k]))
	}
	if len(kv) == 0 {
		return name
	}
	return name + ":" + strings.Join(kv, ",")
}
