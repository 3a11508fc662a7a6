package task

import (
	"encoding/json"
	"github.com/fedq/fedq/privacy/dp"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.json")
	if len(files) == 0 {
		t.Fatal("no example task specs")
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	s, err := Parse([]byte(`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1},"fraction":0.1}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.OverSelect != DefaultOverSelect || time.Duration(s.Deadlines.Train) != DefaultTrain || s.Train.Optimizer != "sgd" || s.Strategy.Name != "fedavg" {
		t.Fatalf("defaults not filled: %+v", s)
	}
	if aim, sel := s.Aim(100); aim != 10 || sel != 13 {
		t.Fatalf("Aim(100) = %d, %d; want 10, 13", aim, sel)
	}
	if aim, sel := s.Aim(3); aim != 1 || sel != 2 {
		t.Fatalf("Aim(3) = %d, %d", aim, sel)
	}
	if q := s.MinUpdates(10); q != 5 {
		t.Fatalf("MinUpdates(10) = %d", q)
	}
}

// TestLRSchedule checks the learning rate round by round: constant by default; cosine
// from lr in round 1 down to lr_final just after the last round, and held there.
func TestLRSchedule(t *testing.T) {
	constant := Train{LR: 0.1, LRSchedule: ScheduleConstant}
	cosine := Train{LR: 0.1, LRSchedule: ScheduleCosine}
	toFinal := Train{LR: 0.1, LRSchedule: ScheduleCosine, LRFinal: 0.02}
	for _, tc := range []struct {
		name  string
		t     Train
		round uint64
		want  float64
	}{
		{"constant, round 1", constant, 1, 0.1},
		{"constant, after the last", constant, 50, 0.1},
		{"cosine, round 1", cosine, 1, 0.1},
		{"cosine, round 2", cosine, 2, 0.1 * (1 + math.Cos(math.Pi/10)) / 2},
		{"cosine, halfway", cosine, 6, 0.05},
		{"cosine, last round", cosine, 10, 0.1 * (1 + math.Cos(math.Pi*9/10)) / 2},
		{"cosine, after the last", cosine, 11, 0},
		{"cosine, long after", cosine, 1000, 0},
		{"to lr_final, halfway", toFinal, 6, 0.06},
		{"to lr_final, after the last", toFinal, 12, 0.02},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.t.LRAt(tc.round, 10); math.Abs(got-tc.want) > 1e-15 {
				t.Fatalf("LRAt(%d, 10) = %v, want %v", tc.round, got, tc.want)
			}
			// The fine-tuning's rate follows the same curve, scaled.
			if got, want := tc.t.ScaleLR(0.05, tc.round, 10), 0.05*tc.want/0.1; math.Abs(got-want) > 1e-15 {
				t.Fatalf("ScaleLR(0.05, %d, 10) = %v, want %v", tc.round, got, want)
			}
		})
	}
	s, err := Parse([]byte(`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1,"lr_schedule":"cosine"},"fraction":0.1,"rounds":20}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Train.LRAt(11, s.Rounds); math.Abs(got-0.05) > 1e-15 {
		t.Fatalf("a parsed spec's round 11 of 20: lr %v, want 0.05", got)
	}
}

// TestStrategyDefaults checks that a spec's strategy is stored canonical, with its
// parameters' defaults, and that Krum raises the quorum to what it needs.
func TestStrategyDefaults(t *testing.T) {
	base := `"model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1},"agents_per_round":10`
	s, err := Parse([]byte(`{"name":"a",` + base + `,"strategy":{"name":"FedAdam","params":{"eta":0.003}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Strategy.Name != "fedadam" || s.Strategy.Params["eta"] != 0.003 || s.Strategy.Params["beta2"] != 0.99 {
		t.Fatalf("strategy %+v", s.Strategy)
	}
	k, err := Parse([]byte(`{"name":"a",` + base + `,"strategy":{"name":"krum","params":{"f":2}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if k.Quorum != 7 {
		t.Fatalf("krum f=2: quorum %d, want 7", k.Quorum)
	}
}

func TestParseErrors(t *testing.T) {
	base := `"model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1},"agents_per_round":5`
	dpBase := `"model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1},"fraction":0.1,"rounds":10`
	cases := []struct{ spec, field string }{
		{`{"name":"bad name!",` + base + `}`, "name"},
		{`{"name":"a","model":"resnet","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1},"agents_per_round":5}`, "model"},
		{`{"name":"a","model":{"input":[4],"classes":2,"layers":[{"type":"conv9"}]},"dataset":"d","train":{"epochs":1,"batch":1,"lr":0.1},"agents_per_round":1}`, "model"},
		{`{"name":"a","model":"2nn","train":{"epochs":1,"batch":10,"lr":0.1},"agents_per_round":5}`, "dataset"},
		{`{"name":"a","model":"2nn","dataset":"mnist","train":{"batch":10,"lr":0.1},"agents_per_round":5}`, "train.epochs"},
		{`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":0,"lr":0.1},"agents_per_round":5}`, "train.batch"},
		{`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":-1},"agents_per_round":5}`, "train.lr"},
		{`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1,"optimizer":"lbfgs"},"agents_per_round":5}`, "train.optimizer"},
		{`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1}}`, "agents_per_round"},
		{`{"name":"a",` + base + `,"fraction":0.5}`, "fraction"},
		{`{"name":"a",` + base + `,"quorum":6}`, "quorum"},
		{`{"name":"a",` + base + `,"over_select":0.5}`, "over_select"},
		{`{"name":"a",` + base + `,"strategy":{"name":"krum9"}}`, `unknown strategy "krum9"`},
		{`{"name":"a",` + base + `,"strategy":{"name":"fedadam","params":{"beta1":1.5}}}`, "beta1 = 1.5 must be in [0, 1)"},
		{`{"name":"a",` + base + `,"strategy":{"name":"trimmed_mean","params":{"beta":0.5}}}`, "beta = 0.5 must be in [0, 0.5)"},
		{`{"name":"a",` + base + `,"strategy":{"name":"krum","params":{"f":2}}}`, "agents_per_round: krum with f=2 needs more than 2f+2 = 6 updates per round, got 5"},
		{`{"name":"a",` + base + `,"strategy":{"name":"krum"},"quorum":4}`, "quorum: krum with f=1 needs more than 2f+2 = 4"},
		{`{"name":"a",` + base + `,"strategy":{"name":"multikrum","params":{"f":1,"m":5}}}`, "m=5 is more than the n−f = 4"},
		{`{"name":"a",` + base + `,"deadlines":{"configure":"1m","train":"10s"}}`, "deadlines.train"},
		{`{"name":"a",` + base + `,"deadlines":{"train":"soon"}}`, "duration"},
		{`{"name":"a",` + base + `,"epochz":1}`, "unknown field"},
		{`{"name":"a",` + base + `,"secure_aggregation":true,"strategy":{"name":"median"}}`, "strategy: median needs each agent's update"},
		{`{"name":"a",` + base + `,"secure_aggregation":true,"strategy":{"name":"krum","params":{"f":0}}}`, "strategy: krum needs each agent's update"},
		{`{"name":"a",` + base + `,"secure_aggregation":true,"privacy":{"mode":"central","clip":1,"epsilon":1,"delta":1e-5,"noise_multiplier":1}}`, "privacy.mode: central DP clips each update"},
		{`{"name":"a",` + base + `,"secagg":{"dropout":0.1}}`, "secagg: parameters given but secure_aggregation is not true"},
		{`{"name":"a",` + base + `,"secure_aggregation":true,"secagg":{"dropout":1.5}}`, "secagg.dropout"},
		{`{"name":"a",` + base + `,"secure_aggregation":true,"secagg":{"graph":"star"}}`, "secagg.graph"},
		{`{"name":"a",` + base + `,"secure_aggregation":true,"secagg":{"clip":0.5}}`, "secagg.clip"},
		{`{"name":"a",` + base + `,"secure_aggregation":true,"quorum":2}`, "quorum: secure aggregation needs a quorum of at least 3"},
		{`{"name":"a",` + dpBase + `,"privacy":{"mode":"distributed","clip":1,"epsilon":4,"delta":1e-5,"min_agents":5}}`, "privacy.mode: distributed DP adds the noise in the agents and needs secure aggregation"},
		{`{"name":"a",` + dpBase + `,"secure_aggregation":true,"privacy":{"mode":"distributed","clip":1,"epsilon":4,"delta":1e-5}}`, "privacy.min_agents: required"},
		{`{"name":"a",` + dpBase + `,"secure_aggregation":true,"quorum":3,"privacy":{"mode":"distributed","clip":1,"epsilon":4,"delta":1e-5,"min_agents":5}}`, "quorum: 3 is below privacy.min_agents 5"},
		{`{"name":"a",` + dpBase + `,"secure_aggregation":true,"privacy":{"mode":"distributed","clip":1,"epsilon":4,"delta":1e-5,"min_agents":5,"bits":40}}`, "privacy.bits"},
		{`{"name":"a",` + dpBase + `,"privacy":{"mode":"central","clip":1,"epsilon":4,"delta":1e-5,"min_agents":5}}`, "are for mode \"distributed\""},
		{`{"name":"a",` + base + `,"rounds":"many"}`, "rounds"},
		{`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1,"lr_schedule":"step"},"agents_per_round":5,"rounds":10}`, "train.lr_schedule"},
		{`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1,"lr_schedule":"cosine"},"agents_per_round":5}`, "rounds: lr_schedule \"cosine\""},
		{`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1,"lr_final":0.01},"agents_per_round":5,"rounds":10}`, "train.lr_final: belongs to"},
		{`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1,"lr_schedule":"cosine","lr_final":0.2},"agents_per_round":5,"rounds":10}`, "train.lr_final: must be in [0, lr"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.spec))
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("Parse(%s) = %v, want an error about %q", c.spec, err, c.field)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil || !os.IsNotExist(err) {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestPrivacySpec(t *testing.T) {
	base := `"name":"p","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1}`
	s, err := Parse([]byte(`{` + base + `,"fraction":0.1,"rounds":50,"privacy":{"mode":"central","clip":1,"epsilon":4,"delta":1e-5}}`))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Privacy
	if p.NoiseMultiplier <= 0 || s.OverSelect != 1 || p.MaxRounds() < 50 {
		t.Fatalf("calibration: %+v, over_select %v, max rounds %d", p, s.OverSelect, p.MaxRounds())
	}
	if e, _ := s.Spent(50); e > 4 || e < 3.99 {
		t.Fatalf("50 calibrated rounds spend ε = %v, want just under 4", e)
	}
	// A stored spec (calibrated, over_select 1) parses to the same thing.
	b, _ := json.Marshal(s)
	again, err := Parse(b)
	if err != nil || again.Privacy.NoiseMultiplier != p.NoiseMultiplier || again.Privacy.MaxRounds() != p.MaxRounds() {
		t.Fatalf("reparse: %+v %v", again.Privacy, err)
	}
	for _, tc := range []struct{ extra, want string }{
		{`"fraction":0.1,"privacy":{"mode":"local","clip":1,"noise_multiplier":1,"epsilon":4,"delta":1e-5}`, `privacy.mode: "local"`},
		{`"fraction":0.1,"privacy":{"mode":"central","clip":0,"noise_multiplier":1,"epsilon":4,"delta":1e-5}`, "privacy.clip"},
		{`"fraction":0.1,"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":4,"delta":1}`, "privacy.delta"},
		{`"fraction":0.1,"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":-1,"delta":1e-5}`, "privacy.epsilon"},
		{`"agents_per_round":10,"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":4,"delta":1e-5}`, "set fraction"},
		{`"fraction":0.1,"over_select":1.3,"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":4,"delta":1e-5}`, "over-selection"},
		{`"fraction":0.1,"strategy":{"name":"median"},"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":4,"delta":1e-5}`, "median needs individual updates"},
		{`"fraction":0.1,"privacy":{"mode":"central","clip":1,"epsilon":4,"delta":1e-5}`, "give rounds to calibrate"},
		{`"fraction":0.1,"rounds":100000,"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":4,"delta":1e-5}`, "100000 rounds would spend more than ε = 4"},
		{`"fraction":0.9,"privacy":{"mode":"central","clip":1,"noise_multiplier":0.1,"epsilon":0.01,"delta":1e-5}`, "not one round fits"},
		{`"agents_per_round":10,"privacy":{"mode":"record","clip":1,"noise_multiplier":1,"min_records":600,"epsilon":3,"delta":1e-5}`, "train.local_steps"},
		{`"fraction":0.1,"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"min_records":600,"epsilon":3,"delta":1e-5}`, "privacy.min_records: is for mode"},
		{`"fraction":0.1,"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":3,"delta":1e-5,"adaptive_clip":{}}`, "count_noise: required"},
		{`"fraction":0.1,"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":3,"delta":1e-5,"adaptive_clip":{"count_noise":0.4}}`, "too small for noise multiplier 1"},
		{`"fraction":0.1,"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":3,"delta":1e-5,"adaptive_clip":{"count_noise":5,"quantile":1}}`, "quantile: must be in (0, 1)"},
	} {
		_, err := Parse([]byte(`{` + base + `,` + tc.extra + `}`))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.extra, err, tc.want)
		}
	}
}

// TestRecordLevelPrivacySpec checks record-level DP's accounting: rate batch/min_records,
// local_steps steps per round, any agent selection and strategy.
func TestRecordLevelPrivacySpec(t *testing.T) {
	s, err := Parse([]byte(`{"name":"r","model":"2nn","dataset":"mnist","train":{"local_steps":100,"batch":60,"lr":0.1},
	  "agents_per_round":10,"strategy":{"name":"median"},"rounds":20,
	  "privacy":{"mode":"record","clip":1,"min_records":6000,"epsilon":3,"delta":1e-5}}`))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Privacy
	if p.SampleRate() != 0.01 || p.MaxRounds() < 20 || s.OverSelect != DefaultOverSelect {
		t.Fatalf("rate %v, max rounds %d, over_select %v", p.SampleRate(), p.MaxRounds(), s.OverSelect)
	}
	e, _ := s.Spent(20)
	want, _, _ := dp.SampledGaussianEpsilon(0.01, p.NoiseMultiplier, 2000, 1e-5, nil)
	if e != want || e > 3 {
		t.Fatalf("20 rounds of 100 steps: ε = %v, the accountant says %v", e, want)
	}
	if _, err := Parse([]byte(`{"name":"r","model":"2nn","dataset":"mnist","train":{"local_steps":100,"batch":60,"lr":0.1},
	  "agents_per_round":10,"privacy":{"mode":"record","clip":1,"noise_multiplier":1,"epsilon":3,"delta":1e-5}}`)); err == nil ||
		!strings.Contains(err.Error(), "privacy.min_records") {
		t.Fatalf("record mode without min_records: %v", err)
	}
}

// TestAdaptiveClipNoiseSplit checks the noise left for the update when the count of
// unclipped updates takes its share: z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2) (Andrew et al. 2021).
func TestAdaptiveClipNoiseSplit(t *testing.T) {
	s, err := Parse([]byte(`{"name":"a","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1},"fraction":0.1,
	  "privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":8,"delta":1e-5,"adaptive_clip":{"count_noise":5}}}`))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Privacy
	if got, want := p.UpdateNoiseMultiplier(), 1/math.Sqrt(1-1.0/100); math.Abs(got-want) > 1e-12 || p.AdaptiveClip.Quantile != 0.5 || p.AdaptiveClip.LR != 0.2 {
		t.Fatalf("update noise multiplier %v (want %v), %+v", got, want, p.AdaptiveClip)
	}
}

// TestPlannedAgents checks distributed DP's per-round noise plan: the sampled agents less
// the expected dropouts and three standard deviations, within [min_agents, max_agents].
func TestPlannedAgents(t *testing.T) {
	p := Privacy{Mode: Distributed, MinAgents: 70, MaxAgents: 1120}
	for _, c := range []struct {
		sampled int
		dropout float64
		want    int
	}{
		{100, 0.01, 96},  // 1 expected + 3·0.995 → a margin of 4
		{100, 0.1, 81},   // 10 + 3·3 = 19
		{112, 0.01, 107}, // 1.12 + 3·1.05 = 4.27: a margin of 5
		{72, 0.01, 70},   // the margin would go below min_agents
		{2000, 0.01, 1120},
	} {
		if got := p.PlannedAgents(c.sampled, c.dropout); got != c.want {
			t.Errorf("PlannedAgents(%d, %v) = %d, want %d", c.sampled, c.dropout, got, c.want)
		}
	}
}

// TestFixedSizeSamplingSpec checks fixed-size sampling: m = round(fraction × population)
// agents a round, accounted without replacement at γ = m/population with the clipped
// sum's replace-one sensitivity (noise calibrated by that accountant), the noised sum
// divided by m; and that bad settings are refused naming the field.
func TestFixedSizeSamplingSpec(t *testing.T) {
	base := `"name":"p","model":"2nn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.1}`
	s, err := Parse([]byte(`{` + base + `,"fraction":0.1,"rounds":50,"privacy":{"mode":"central","sampling":"fixed","population":1000,"clip":0.5,"epsilon":4,"delta":1e-5}}`))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Privacy
	if !p.FixedSize() || p.SampleSize() != 100 || p.SampleRate() != 0.1 || p.Denominator(5000) != 100 {
		t.Fatalf("fixed: size %d, rate %v, denominator %v", p.SampleSize(), p.SampleRate(), p.Denominator(5000))
	}
	z, err := dp.ClippedSumNoiseMultiplier(dp.Fixed, 4, 0.1, 50, 1e-5, nil)
	if err != nil || p.NoiseMultiplier != z {
		t.Fatalf("calibrated noise multiplier %v, the without-replacement accountant's %v (%v)", p.NoiseMultiplier, z, err)
	}
	poisson, _ := dp.NoiseMultiplier(4, 0.1, 50, 1e-5, nil)
	if !(z > poisson) {
		t.Fatalf("fixed-size noise %v not above Poisson's %v: replace-one doubles the sensitivity", z, poisson)
	}
	e, _ := s.Spent(50)
	want, _, _ := dp.ClippedSumEpsilon(dp.Fixed, 0.1, z, 50, 1e-5, nil)
	if e != want || e > 4 || e < 3.99 || p.MaxRounds() != 50 {
		t.Fatalf("50 rounds spend ε = %v (accountant %v), max rounds %d", e, want, p.MaxRounds())
	}
	b, _ := json.Marshal(s)
	again, err := Parse(b)
	if err != nil || again.Privacy.NoiseMultiplier != z || again.Privacy.SampleSize() != 100 || again.Privacy.MaxRounds() != 50 {
		t.Fatalf("reparse: %+v %v", again.Privacy, err)
	}
	// Poisson divides by the expected participants.
	s, err = Parse([]byte(`{` + base + `,"fraction":0.1,"privacy":{"mode":"central","sampling":"poisson","clip":1,"noise_multiplier":1,"epsilon":4,"delta":1e-5}}`))
	if err != nil || s.Privacy.FixedSize() || s.Privacy.Denominator(500) != 50 {
		t.Fatalf("poisson: %v", err)
	}
	// Distributed DP samples the same way.
	s, err = Parse([]byte(`{` + base + `,"fraction":0.1,"secure_aggregation":true,"privacy":{"mode":"distributed","sampling":"fixed","population":200,"clip":1,"noise_multiplier":1,"epsilon":8,"delta":1e-5,"min_agents":10}}`))
	if err != nil || !s.Privacy.FixedSize() || s.Privacy.Denominator(300) != 20 {
		t.Fatalf("distributed: %v", err)
	}

	central := func(extra string) string {
		return `"fraction":0.1,"privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":4,"delta":1e-5` + extra + `}`
	}
	for _, tc := range []struct{ extra, want string }{
		{central(`,"sampling":"fixed"`), "privacy.population: required with sampling \"fixed\""},
		{central(`,"sampling":"fixed","population":-3`), "privacy.population: required"},
		{central(`,"population":100`), "privacy.population: is for sampling \"fixed\""},
		{central(`,"sampling":"uniform"`), `privacy.sampling: "uniform": want "poisson"`},
		{`"fraction":0.001,"privacy":{"mode":"central","sampling":"fixed","population":100,"clip":1,"noise_multiplier":1,"epsilon":4,"delta":1e-5}`, "fraction: 0.001 of privacy.population 100 samples no agent"},
		{`"fraction":0.02,"secure_aggregation":true,"privacy":{"mode":"distributed","sampling":"fixed","population":100,"clip":1,"noise_multiplier":1,"epsilon":4,"delta":1e-5,"min_agents":3}`, "fewer than secure aggregation's"},
		{`"fraction":0.1,"secure_aggregation":true,"privacy":{"mode":"distributed","sampling":"fixed","population":100,"clip":1,"noise_multiplier":1,"epsilon":4,"delta":1e-5,"min_agents":20}`, "privacy.min_agents: 20 is more than the 10 agents a round samples"},
		{`"agents_per_round":10,"train":{"local_steps":10,"batch":10,"lr":0.1},"privacy":{"mode":"record","sampling":"fixed","clip":1,"noise_multiplier":1,"min_records":600,"epsilon":3,"delta":1e-5}`, "privacy.sampling: \"fixed\" is for the user-level modes"},
		{`"agents_per_round":10,"train":{"local_steps":10,"batch":10,"lr":0.1},"privacy":{"mode":"record","population":100,"clip":1,"noise_multiplier":1,"min_records":600,"epsilon":3,"delta":1e-5}`, "privacy.population: is for sampling"},
	} {
		_, err := Parse([]byte(`{` + base + `,` + tc.extra + `}`))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.extra, err, tc.want)
		}
	}
}
