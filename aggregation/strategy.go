package aggregation

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Strategy is how a task's updates become its next global model. Like Flower's, it is
// consulted at four points of a round, in this order:
//
//  1. configure training: ConfigureTrain says what the selected agents' local training
//     adds to the task's settings (FedProx's proximal term);
//  2. aggregate training: NewRound's Aggregator folds the updates into the aggregate
//     update Δ, then Apply turns Δ into the server's step (server momentum, adaptive
//     moments), in place, and advances the strategy's state;
//  3. configure evaluation: ConfigureEvaluate says whether the new version is scored;
//  4. aggregate evaluation: AggregateEvaluate combines per-agent metrics.
//
// A strategy with state across rounds exposes it (State, SetState) so that it is stored
// with each version and a restarted coordinator continues exactly.
type Strategy interface {
	// Name identifies the strategy, e.g. "fedavg".
	Name() string
	// Params are its parameters, defaults included.
	Params() map[string]float64
	// ConfigureTrain returns what round's local training must add to the task's.
	ConfigureTrain(round uint64) TrainSettings
	// NewRound returns an aggregator for the updates of a model of size parameters. It
	// holds no accumulator until Reset gives it one: the caller owns the buffers.
	NewRound(size int) Aggregator
	// Apply turns the round's aggregate update Δ into the step the server takes —
	// next = base + step — in place, and advances the strategy's state.
	Apply(delta []float32) error
	// State is the strategy's state after the last Apply (nil for a stateless strategy,
	// or before the first round): a view, valid until the next Apply or SetState.
	State() []float32
	// SetState restores a State saved after a round.
	SetState(state []float32) error
	// ConfigureEvaluate reports whether the version made by round is scored.
	ConfigureEvaluate(round uint64) bool
	// AggregateEvaluate combines metrics reported by agents into the round's.
	AggregateEvaluate(results []Result) map[string]float64
}

// TrainSettings is what a strategy adds to the agents' local training.
type TrainSettings struct {
	// ProxMu is FedProx's μ: the local loss gains (μ/2)‖w − w_global‖².
	ProxMu float64
}

// Result is one agent's metrics, over Examples examples.
type Result struct {
	Examples uint64
	Metrics  map[string]float64
}

// Options are settings of the coordinator, not of a task.
type Options struct {
	// Buffering bounds the memory of strategies that keep every update.
	Buffering Buffering
}

// param describes one strategy parameter.
type param struct {
	def      float64
	check    func(v float64) error
	integral bool
}

// kind is one strategy known by name.
type kind struct {
	doc    string
	params map[string]param
	build  func(p map[string]float64, opts Options) Strategy
}

func positive(v float64) error {
	if !(v > 0) || math.IsInf(v, 0) {
		return fmt.Errorf("must be positive")
	}
	return nil
}

func nonNegative(v float64) error {
	if !(v >= 0) || math.IsInf(v, 0) {
		return fmt.Errorf("must be ≥ 0")
	}
	return nil
}

func unitInterval(v float64) error {
	if !(v >= 0 && v < 1) {
		return fmt.Errorf("must be in [0, 1)")
	}
	return nil
}

func belowHalf(v float64) error {
	if !(v >= 0 && v < 0.5) {
		return fmt.Errorf("must be in [0, 0.5)")
	}
	return nil
}

func adaptiveParams() map[string]param {
	return map[string]param{
		"eta":   {def: 0.01, check: positive},
		"beta1": {def: 0.9, check: unitInterval},
		"beta2": {def: 0.99, check: unitInterval},
		"tau":   {def: 1e-3, check: positive},
	}
}

// kinds lists the strategies. A function, not a variable: no global mutable state.
func kinds() map[string]kind {
	adaptive := func(rule adaptiveRule) func(p map[string]float64, _ Options) Strategy {
		return func(p map[string]float64, _ Options) Strategy {
			return &fedOpt{base: base{name: string(rule), params: p}, rule: rule,
				eta: p["eta"], beta1: p["beta1"], beta2: p["beta2"], tau: p["tau"]}
		}
	}
	return map[string]kind{
		"fedavg": {doc: "federated averaging, weighted by examples (McMahan et al. 2017)",
			build: func(p map[string]float64, _ Options) Strategy { return &base{name: "fedavg", params: p} }},
		"fedavgm": {doc: "FedAvg with server momentum: v ← β·v + Δ, step lr·v (Hsu et al. 2019)",
			params: map[string]param{"lr": {def: 1, check: positive}, "momentum": {def: 0.9, check: unitInterval}},
			build: func(p map[string]float64, _ Options) Strategy {
				return &fedAvgM{base: base{name: "fedavgm", params: p}, lr: p["lr"], momentum: p["momentum"]}
			}},
		"fedprox": {doc: "FedAvg with the proximal term (μ/2)‖w − w_global‖² in local training (Li et al. 2020)",
			params: map[string]param{"mu": {def: 0.01, check: nonNegative}},
			build: func(p map[string]float64, _ Options) Strategy {
				return &base{name: "fedprox", params: p, train: TrainSettings{ProxMu: p["mu"]}}
			}},
		"fedadagrad": {doc: "server Adagrad on the mean update (Reddi et al. 2021)",
			params: adaptiveParams(), build: adaptive(ruleAdagrad)},
		"fedadam": {doc: "server Adam on the mean update (Reddi et al. 2021)",
			params: adaptiveParams(), build: adaptive(ruleAdam)},
		"fedyogi": {doc: "server Yogi on the mean update (Reddi et al. 2021)",
			params: adaptiveParams(), build: adaptive(ruleYogi)},
		"median": {doc: "coordinate-wise median (Yin et al. 2018)",
			build: func(p map[string]float64, opts Options) Strategy {
				return &buffered{base: base{name: "median", params: p},
					newAgg: func(size int) Aggregator { return newMedian(size, opts.Buffering) }}
			}},
		"trimmed_mean": {doc: "coordinate-wise β-trimmed mean (Yin et al. 2018)",
			params: map[string]param{"beta": {def: 0.1, check: belowHalf}},
			build: func(p map[string]float64, opts Options) Strategy {
				return &buffered{base: base{name: "trimmed_mean", params: p},
					newAgg: func(size int) Aggregator { return newTrimmedMean(size, p["beta"], opts.Buffering) }}
			}},
		"krum": {doc: "Krum: the update closest to its n−f−2 nearest neighbours (Blanchard et al. 2017)",
			params: map[string]param{"f": {def: 1, check: nonNegative, integral: true}},
			build: func(p map[string]float64, opts Options) Strategy {
				return &buffered{base: base{name: "krum", params: p},
					newAgg: func(size int) Aggregator { return newKrum(size, int(p["f"]), 1, opts.Buffering) }}
			}},
		"multikrum": {doc: "Multi-Krum: the mean of the m best updates by Krum's score (m = 0: n − f)",
			params: map[string]param{"f": {def: 1, check: nonNegative, integral: true}, "m": {def: 0, check: nonNegative, integral: true}},
			build: func(p map[string]float64, opts Options) Strategy {
				return &buffered{base: base{name: "multikrum", params: p},
					newAgg: func(size int) Aggregator { return newKrum(size, int(p["f"]), int(p["m"]), opts.Buffering) }}
			}},
	}
}

// Names lists the strategies, sorted.
func Names() []string { return slices.Sorted(maps.Keys(kinds())) }

// Describe returns a line per strategy: its name, parameters with defaults, and what it is.
func Describe() []string {
	var out []string
	ks := kinds()
	for _, name := range Names() {
		k := ks[name]
		var ps []string
		for _, pn := range slices.Sorted(maps.Keys(k.params)) {
			ps = append(ps, fmt.Sprintf("%s=%g", pn, k.params[pn].def))
		}
		line := name
		if len(ps) > 0 {
			line += ":" + strings.Join(ps, ",")
		}
		out = append(out, line+" — "+k.doc)
	}
	return out
}

// Canonical returns the strategy's name as fedq spells it (aliases resolved), or an
// error naming the known strategies.
func Canonical(name string) (string, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	switch n { // other spellings
	case "":
		n = "fedavg"
	case "trimmedmean", "trimmed-mean":
		n = "trimmed_mean"
	case "multi-krum":
		n = "multikrum"
	}
	if _, ok := kinds()[n]; !ok {
		return "", fmt.Errorf("unknown strategy %q (have: %s)", name, strings.Join(Names(), ", "))
	}
	return n, nil
}

// Resolve checks a strategy's parameters and returns them with defaults filled in.
func Resolve(name string, params map[string]float64) (string, map[string]float64, error) {
	n, err := Canonical(name)
	if err != nil {
		return "", nil, err
	}
	k := kinds()[n]
	out := make(map[string]float64, len(k.params))
	for pn, p := range k.params {
		out[pn] = p.def
	}
	for pn, v := range params {
		p, ok := k.params[pn]
		if !ok {
			known := slices.Sorted(maps.Keys(k.params))
			if len(known) == 0 {
				return "", nil, fmt.Errorf("%s: takes no parameters, got %q", n, pn)
			}
			return "", nil, fmt.Errorf("%s: unknown parameter %q (have: %s)", n, pn, strings.Join(known, ", "))
		}
		if err := p.check(v); err != nil {
			return "", nil, fmt.Errorf("%s: %s = %v %v", n, pn, v, err)
		}
		if p.integral && v != math.Trunc(v) {
			return "", nil, fmt.Errorf("%s: %s = %v must be a whole number", n, pn, v)
		}
		out[pn] = v
	}
	return n, out, nil
}

// New returns the strategy called name with params (missing ones take their defaults).
func New(name string, params map[string]float64, opts Options) (Strategy, error) {
	n, p, err := Resolve(name, params)
	if err != nil {
		return nil, err
	}
	return kinds()[n].build(p, opts), nil
}

// Parse reads a strategy as written on a command line: NAME or NAME:k=v,k=v.
func Parse(s string) (string, map[string]float64, error) {
	name, rest, _ := strings.Cut(s, ":")
	params := map[string]float64{}
	if strings.TrimSpace(rest) != "" {
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, ok := strings.Cut(kv, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return "", nil, fmt.Errorf("strategy %q: want NAME or NAME:key=value,key=value", s)
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return "", nil, fmt.Errorf("strategy %q: %s: %q is not a number", s, k, v)
			}
			params[k] = f
		}
	}
	n, p, err := Resolve(name, params)
	if err != nil {
		return "", nil, err
	}
	return n, p, nil
}

// base is a stateless strategy that averages: FedAvg, and FedProx (which differs only in
// its local training). Other strategies embed it for the seams they do not change.
type base struct {
	name   string
	params map[string]float64
	train  TrainSettings
}

func (s *base) Name() string                                     { return s.name }
func (s *base) Params() map[string]float64                       { return maps.Clone(s.params) }
func (s *base) ConfigureTrain(uint64) TrainSettings              { return s.train }
func (s *base) NewRound(size int) Aggregator                     { return &weightedSum{size: size} }
func (s *base) Apply([]float32) error                            { return nil }
func (s *base) State() []float32                                 { return nil }
func (s *base) ConfigureEvaluate(uint64) bool                    { return true }
func (s *base) AggregateEvaluate(rs []Result) map[string]float64 { return WeightedMean(rs) }

func (s *base) SetState(state []float32) error {
	if len(state) != 0 {
		return fmt.Errorf("%s keeps no state, got %d values", s.name, len(state))
	}
	return nil
}

// buffered is a strategy whose aggregator keeps every update (median, trimmed mean, Krum).
type buffered struct {
	base
	newAgg func(size int) Aggregator
}

func (s *buffered) NewRound(size int) Aggregator { return s.newAgg(size) }

// WeightedMean is each metric's mean over the results that report it, weighted by their
// examples; non-finite values are ignored.
func WeightedMean(rs []Result) map[string]float64 {
	sum, weight := map[string]float64{}, map[string]float64{}
	for _, r := range rs {
		for k, v := range r.Metrics {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			sum[k] += float64(r.Examples) * v
			weight[k] += float64(r.Examples)
		}
	}
	out := make(map[string]float64, len(sum))
	for k, s := range sum {
		if weight[k] > 0 {
			out[k] = s / weight[k]
		}
	}
	return out
}
