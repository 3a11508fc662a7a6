package aggregation

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestParseAndValidate(t *testing.T) {
	for _, tc := range []struct {
		in     string
		name   string
		params map[string]float64
		err    string
	}{
		{in: "", name: "fedavg", params: map[string]float64{}},
		{in: "FedAvg", name: "fedavg", params: map[string]float64{}},
		{in: "fedadam", name: "fedadam", params: map[string]float64{"eta": 0.01, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3}},
		{in: "fedyogi:eta=0.03, tau=0.01", name: "fedyogi", params: map[string]float64{"eta": 0.03, "beta1": 0.9, "beta2": 0.99, "tau": 0.01}},
		{in: "fedavgm:momentum=0.5", name: "fedavgm", params: map[string]float64{"lr": 1, "momentum": 0.5}},
		{in: "fedprox:mu=0.1", name: "fedprox", params: map[string]float64{"mu": 0.1}},
		{in: "trimmed-mean:beta=0.2", name: "trimmed_mean", params: map[string]float64{"beta": 0.2}},
		{in: "multikrum:f=2,m=3", name: "multikrum", params: map[string]float64{"f": 2, "m": 3}},
		{in: "fedsgd", err: `unknown strategy "fedsgd"`},
		{in: "fedadam:beta1=1", err: "beta1 = 1 must be in [0, 1)"},
		{in: "fedadam:beta2=-0.1", err: "beta2 = -0.1 must be in [0, 1)"},
		{in: "fedadam:eta=0", err: "eta = 0 must be positive"},
		{in: "fedadam:tau=NaN", err: "tau = NaN must be positive"},
		{in: "fedadam:lr=0.1", err: `unknown parameter "lr" (have: beta1, beta2, eta, tau)`},
		{in: "trimmed_mean:beta=0.5", err: "beta = 0.5 must be in [0, 0.5)"},
		{in: "krum:f=1.5", err: "f = 1.5 must be a whole number"},
		{in: "krum:f=-1", err: "f = -1 must be ≥ 0"},
		{in: "median:beta=0.1", err: "median: takes no parameters"},
		{in: "fedprox:mu", err: "want NAME or NAME:key=value"},
		{in: "fedprox:mu=x", err: `mu: "x" is not a number`},
	} {
		name, params, err := Parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || len(params) != len(tc.params) {
			t.Errorf("Parse(%q) = %q %v %v, want %q %v", tc.in, name, params, err, tc.name, tc.params)
			continue
		}
		for k, v := range tc.params {
			if params[k] != v {
				t.Errorf("Parse(%q): %s = %v, want %v", tc.in, k, params[k], v)
			}
		}
		if _, err := New(name, params, Options{}); err != nil {
			t.Errorf("New(%q): %v", name, err)
		}
	}
}

// serverStep is the float64 reference of each server optimizer: it advances the state
// (m, v) and returns the step for Δ.
func serverStep(name string, p map[string]float64, m, v, delta []float64) []float64 {
	step := make([]float64, len(delta))
	for i, d := range delta {
		switch name {
		case "fedavg", "fedprox":
			step[i] = d
		case "fedavgm":
			v[i] = p["momentum"]*v[i] + d
			step[i] = p["lr"] * v[i]
		default:
			m[i] = p["beta1"]*m[i] + (1-p["beta1"])*d
			switch name {
			case "fedadagrad":
				v[i] += d * d
			case "fedadam":
				v[i] = p["beta2"]*v[i] + (1-p["beta2"])*d*d
			case "fedyogi":
				s := 0.0
				if v[i] > d*d {
					s = 1
				} else if v[i] < d*d {
					s = -1
				}
				v[i] -= (1 - p["beta2"]) * d * d * s
			}
			step[i] = p["eta"] * m[i] / (math.Sqrt(v[i]) + p["tau"])
		}
	}
	return step
}

// TestServerOptimizersMatchFloat64 runs each linear strategy for several rounds on random
// updates and checks its steps against the float64 reference; and checks that saving the
// state after round 3 and restoring it in a new strategy (a coordinator restart) gives
// bit for bit the steps of no restart.
func TestServerOptimizersMatchFloat64(t *testing.T) {
	const size, rounds, restartAfter = 257, 6, 3
	for _, spec := range []string{"fedavg", "fedprox:mu=0.1", "fedavgm:lr=0.7,momentum=0.9", "fedadagrad:eta=0.1",
		"fedadam:eta=0.03,tau=0.001", "fedyogi:eta=0.02,beta2=0.9,tau=0.01"} {
		t.Run(spec, func(t *testing.T) {
			name, params, err := Parse(spec)
			if err != nil {
				t.Fatal(err)
			}
			straight, _ := New(name, params, Options{})
			restarted, _ := New(name, params, Options{})
			r := rand.New(rand.NewPCG(7, uint64(len(spec))))
			m, v := make([]float64, size), make([]float64, size)
			for round := 1; round <= rounds; round++ {
				// The round's updates and their weighted mean, through the aggregator.
				agg := straight.NewRound(size)
				agg2 := restarted.NewRound(size)
				agg.Reset(make([]float32, size))
				agg2.Reset(make([]float32, size))
				mean := make([]float64, size)
				var total float64
				for range 4 {
					u := make([]float32, size)
					for i := range u {
						u[i] = float32(r.NormFloat64() * 0.1)
					}
					ex := uint64(1 + r.IntN(100))
					if err := agg.Add(u, ex); err != nil {
						t.Fatal(err)
					}
					if err := agg2.Add(u, ex); err != nil {
						t.Fatal(err)
					}
					for i, x := range u {
						mean[i] += float64(ex) * float64(x)
					}
					total += float64(ex)
				}
				delta := make([]float64, size)
				for i := range mean {
					delta[i] = float64(float32(mean[i] / total))
				}
				a, err := agg.Finish()
				if err != nil {
					t.Fatal(err)
				}
				b, _ := agg2.Finish()
				want := serverStep(name, params, m, v, delta)
				if err := straight.Apply(a); err != nil {
					t.Fatal(err)
				}
				if err := restarted.Apply(b); err != nil {
					t.Fatal(err)
				}
				for i, w := range want {
					if d := math.Abs(float64(a[i]) - w); d > 1e-5*(1+math.Abs(w)) {
						t.Fatalf("round %d: step[%d] = %v, want %v", round, i, a[i], w)
					}
				}
				if !slices.Equal(a, b) {
					t.Fatalf("round %d: the restarted strategy differs", round)
				}
				if round == restartAfter {
					saved := slices.Clone(restarted.State())
					restarted, _ = New(name, params, Options{})
					if err := restarted.SetState(saved); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := straight.ConfigureTrain(1).ProxMu; got != params["mu"] {
				t.Fatalf("ConfigureTrain: μ = %v, want %v", got, params["mu"])
			}
		})
	}
}

func TestSetStateRejectsWrongShapes(t *testing.T) {
	adam, _ := New("fedadam", nil, Options{})
	if err := adam.SetState(make([]float32, 3)); err == nil {
		t.Fatal("fedadam accepted an odd state")
	}
	if err := adam.SetState(make([]float32, 4)); err != nil {
		t.Fatal(err)
	}
	if err := adam.Apply(make([]float32, 3)); err == nil {
		t.Fatal("fedadam applied a state of 2 × 2 to 3 parameters")
	}
	avg, _ := New("fedavg", nil, Options{})
	if err := avg.SetState([]float32{1}); err == nil {
		t.Fatal("fedavg accepted state")
	}
}

func TestWeightedMean(t *testing.T) {
	got := WeightedMean([]Result{
		{Examples: 1, Metrics: map[string]float64{"loss": 1, "accuracy": 0.5}},
		{Examples: 3, Metrics: map[string]float64{"loss": 2, "accuracy": math.NaN()}},
		{Examples: 0, Metrics: map[string]float64{"loss": 100}},
	})
	if got["loss"] != 1.75 || got["accuracy"] != 0.5 || len(got) != 2 {
		t.Fatalf("WeightedMean = %v", got)
	}
}

func TestDescribeListsEveryStrategy(t *testing.T) {
	lines := Describe()
	if len(lines) != len(Names()) {
		t.Fatalf("%d lines for %d strategies", len(lines), len(Names()))
	}
	for _, want := range []string{"fedavg", "fedavgm", "fedprox", "fedadagrad", "fedadam", "fedyogi", "median", "trimmed_mean", "krum", "multikrum"} {
		if !slices.Contains(Names(), want) {
			t.Errorf("%s is missing", want)
		}
	}
}
