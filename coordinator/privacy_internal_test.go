package coordinator

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fedq/fedq/aggregation"
	"github.com/fedq/fedq/coordinator/engine"
	"github.com/fedq/fedq/coordinator/task"
)

// TestCentralDPAggregate checks DP-FedAvg's aggregate: without noise it is the sum of
// the updates clipped to the bound, over the expected participants, whatever weights
// the agents claim; with noise, the noise has standard deviation z·S/(q·N).
func TestCentralDPAggregate(t *testing.T) {
	const size = 50000
	r := rand.New(rand.NewPCG(5, 6))
	for _, z := range []float64{0, 1.5} {
		p := &task.Privacy{Mode: task.Central, Clip: 2, NoiseMultiplier: z}
		avg, _ := aggregation.New("fedavg", nil, aggregation.Options{})
		a := newCentralDP(avg.NewRound(size), p, nil)
		a.startRound(0.1 * 40) // 4 expected participants
		a.Reset(make([]float32, size))
		want := make([]float64, size)
		for i := range 3 {
			u := make([]float32, size)
			scale := []float64{0.001, 1, 100}[i] // below, around and far above the bound
			var norm float64
			for j := range u {
				u[j] = float32(r.NormFloat64() * scale)
				norm += float64(u[j]) * float64(u[j])
			}
			norm = math.Sqrt(norm)
			c := math.Min(1, p.Clip/norm)
			for j, v := range u {
				want[j] += float64(v) * c
			}
			if err := a.Add(u, uint64(1+1000*i)); err != nil {
				t.Fatal(err)
			}
		}
		out, err := a.Finish()
		if err != nil {
			t.Fatal(err)
		}
		var sq float64
		for j, v := range out {
			d := float64(v) - want[j]/4
			if z == 0 && math.Abs(d) > 1e-6 {
				t.Fatalf("z=0: value %d = %v, want %v", j, v, want[j]/4)
			}
			sq += d * d
		}
		got, wantSD := math.Sqrt(sq/size), z*p.Clip/4
		if z > 0 && math.Abs(got-wantSD) > 0.02*wantSD {
			t.Fatalf("noise standard deviation %v, want %v", got, wantSD)
		}
	}
}

// TestPrivacyBudgetAfterRestart commits every round a private task's budget allows,
// checks the ε stored with each version, restarts the coordinator, and checks that
// another round is refused with a clear error.
func TestPrivacyBudgetAfterRestart(t *testing.T) {
	dir := testDir(t)
	listen := func() *Server { return listenOn(t, dir) }
	srv := listen()
	defer func() { srv.release() }()
	spec, err := task.Parse([]byte(`{"name":"t","dataset":"d","model":{"input":[5],"classes":3,"layers":[{"type":"dense","out":3}]},
	  "train":{"epochs":1,"batch":1,"lr":0.1},"fraction":0.2,
	  "privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":5,"delta":1e-5}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.rounds.submit(spec); err != nil {
		t.Fatal(err)
	}
	allowed := spec.Privacy.MaxRounds()
	if allowed < 2 || allowed > 20 {
		t.Fatalf("budget of %d rounds", allowed)
	}
	if _, err := srv.rounds.requestRoundsNow("t", int(allowed)+3); err != nil {
		t.Fatal(err)
	}
	var last float64
	for round := uint64(1); round <= allowed; round++ {
		r := srv.rounds
		tm := r.tasks["t"]
		taskID := engine.TaskID("t", round, 1, "x")
		r.do(engine.StartRound{Task: "t", Round: round, Attempt: 1, TaskID: taskID, Eligible: 10,
			Base: engine.Version{Number: tm.version.Number, Hash: tm.version.Hash}})
		if err := tm.agg.Add(make([]float32, tm.size), 1); err != nil {
			t.Fatal(err)
		}
		if ev, ok := r.commit(engine.CommitRound{Task: "t", Round: round, Attempt: 1, TaskID: taskID, Updates: 1, Examples: 1}).(engine.Committed); !ok {
			t.Fatalf("round %d: %+v", round, ev)
		}
		p := tm.version.Privacy
		if p == nil || p.Epsilon <= last || p.Epsilon > 5 || p.Rounds != round || p.Delta != 1e-5 {
			t.Fatalf("round %d: privacy %+v (before: ε %v)", round, p, last)
		}
		last = p.Epsilon
	}
	srv.release()
	srv = listen()
	_, err = srv.rounds.requestRoundsNow("t", 1)
	if err == nil || !strings.Contains(err.Error(), "privacy budget exhausted") {
		t.Fatalf("a round past the budget after a restart: %v", err)
	}
}

// TestCentralDPPerLayerClipping checks per-layer clipping: each tensor of an update is
// clipped to Clip/√tensors, so the whole update's norm stays within Clip.
func TestCentralDPPerLayerClipping(t *testing.T) {
	p := &task.Privacy{Mode: task.Central, Clip: 2, PerLayer: true}
	avg, _ := aggregation.New("fedavg", nil, aggregation.Options{})
	a := newCentralDP(avg.NewRound(6), p, []int{2, 4})
	a.startRound(1)
	a.Reset(make([]float32, 6))
	u := []float32{30, 40, 0.1, 0, 0, 0} // layer 1 far over its bound, layer 2 within
	if err := a.Add(u, 1); err != nil {
		t.Fatal(err)
	}
	out, err := a.Finish()
	if err != nil {
		t.Fatal(err)
	}
	b := 2 / math.Sqrt2
	if n := math.Hypot(float64(out[0]), float64(out[1])); math.Abs(n-b) > 1e-5 || math.Abs(float64(out[2])-0.1) > 1e-6 {
		t.Fatalf("per-layer clipping gave %v (layer 1 norm %v, want %v)", out, n, b)
	}
	if _, err := task.Parse([]byte(`{"name":"r","model":"2nn","dataset":"mnist","train":{"local_steps":10,"batch":60,"lr":0.1},
	  "agents_per_round":10,"privacy":{"mode":"record","clip":1,"per_layer":true,"noise_multiplier":1,"min_records":600,"epsilon":3,"delta":1e-5}}`)); err == nil ||
		!strings.Contains(err.Error(), "privacy.per_layer") {
		t.Fatalf("per_layer with record-level DP: %v", err)
	}
}

// TestAdaptiveClipping checks the clip's update (Andrew et al. 2021) without noise: four
// updates all within the clip move it by exp(−η(1 − γ)); and that a committed round
// stores the next clip, which a restarted coordinator continues from, while a failed
// commit leaves it.
func TestAdaptiveClipping(t *testing.T) {
	p := &task.Privacy{Mode: task.Central, Clip: 1, AdaptiveClip: &task.AdaptiveClip{Quantile: 0.5, LR: 0.2, CountNoise: 1e-12}}
	avg, _ := aggregation.New("fedavg", nil, aggregation.Options{})
	a := newCentralDP(avg.NewRound(2), p, nil)
	a.startRound(0.5 * 8)
	a.Reset(make([]float32, 2))
	for range 4 {
		if err := a.Add([]float32{0.3, 0.4}, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Finish(); err != nil {
		t.Fatal(err)
	}
	if want := math.Exp(-0.2 * 0.5); math.Abs(a.next-want) > 1e-6 || a.clip != 1 {
		t.Fatalf("clip %v → %v, want 1 → %v", a.clip, a.next, want)
	}

	dir := testDir(t)
	srv := listenOn(t, dir)
	defer func() { srv.release() }()
	spec, err := task.Parse([]byte(`{"name":"t","dataset":"d","model":{"input":[2],"classes":2,"layers":[{"type":"dense","out":2}]},
	  "train":{"epochs":1,"batch":1,"lr":0.1},"fraction":0.5,
	  "privacy":{"mode":"central","clip":1,"noise_multiplier":1,"epsilon":50,"delta":1e-5,"adaptive_clip":{"count_noise":5}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.rounds.submit(spec); err != nil {
		t.Fatal(err)
	}
	r := srv.rounds
	tm := r.tasks["t"]
	r.do(engine.StartRound{Task: "t", Round: 1, Attempt: 1, TaskID: "t1", Eligible: 8, Base: engine.Version{Number: tm.version.Number, Hash: tm.version.Hash}})
	if err := tm.agg.Add(make([]float32, tm.size), 1); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.commit(engine.CommitRound{Task: "t", Round: 1, Attempt: 1, TaskID: "t1", Updates: 1, Examples: 1}).(engine.Committed); !ok {
		t.Fatal("round 1 not committed")
	}
	pv := tm.version.Privacy
	if pv == nil || pv.Clip != 1 || pv.NextClip <= 0 || pv.NextClip == 1 || tm.dp.clip != pv.NextClip {
		t.Fatalf("version privacy %+v, clip now %v", pv, tm.dp.clip)
	}
	srv.release()
	srv = listenOn(t, dir)
	tm = srv.rounds.tasks["t"]
	srv.rounds.do(engine.StartRound{Task: "t", Round: 2, Attempt: 1, TaskID: "t2", Eligible: 8, Base: engine.Version{Number: tm.version.Number, Hash: tm.version.Hash}})
	if tm.dp.clip != pv.NextClip {
		t.Fatalf("after a restart the clip is %v, want %v", tm.dp.clip, pv.NextClip)
	}
}
