package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/protocol"
)

const secureTask = `{"name": "blobs", "dataset": "blobs",
  "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 8}, {"type": "relu"}, {"type": "dense", "out": 2}]},
  "train": {"epochs": 1, "batch": 8, "lr": 0.1}, "agents_per_round": 5, "quorum": 3, "over_select": 1,
  "deadlines": {"configure": "5s", "train": "20s"}, "seed": 3,
  "secure_aggregation": true, "secagg": {"deadline": "5s"}}`

// secureAgent starts an agent that records its plain updates and may drop out.
func secureAgent(t *testing.T, c *cluster, name string, data *dataset.Dataset, record func(round uint64, u []float32), drop func(taskID, phase string) bool) {
	t.Helper()
	trainingAgentWith(t, c, name, data, func(cfg *agent.Config) { cfg.BeforeUpload, cfg.DropOut = record, drop })
}

// TestSecureRounds runs secure rounds over QUIC with an agent dropping out at a
// different phase each round. The coordinator is instrumented: it must never receive a
// plain update, every masked vector it holds must look nothing like the update it hides,
// and each version must move by the weighted mean of the survivors' updates.
func TestSecureRounds(t *testing.T) {
	var mu sync.Mutex
	plain := 0
	masked := map[string][]uint32{} // agent/round → masked vector as received
	observe := func(a string, hdr *protocol.UpdateHeader, p []float32, m []uint32) {
		mu.Lock()
		defer mu.Unlock()
		if p != nil {
			plain++
		}
		if m != nil {
			masked[fmt.Sprintf("%s/%d", a, hdr.Round)] = append([]uint32(nil), m...)
		}
	}
	c := newClusterWith(t, func(c *cluster) { c.observe = observe })
	updates := map[string][]float32{} // agent/round → plain update, as the agent made it
	dropPhase := map[uint64]string{1: agent.DropUpload, 2: agent.DropShare, 3: agent.DropUnmask}
	for i := range 5 {
		name := fmt.Sprintf("site-%d", i)
		record := func(round uint64, u []float32) {
			mu.Lock()
			defer mu.Unlock()
			updates[fmt.Sprintf("%s/%d", name, round)] = append([]float32(nil), u...)
		}
		drop := func(taskID, phase string) bool {
			// site-4 drops out of every round, at the round's phase.
			var r uint64
			fmt.Sscanf(taskID[strings.Index(taskID, ".r")+2:], "%d", &r)
			return name == "site-4" && dropPhase[r] == phase
		}
		secureAgent(t, c, name, blobs(200+40*i, uint64(i)), record, drop)
	}
	ctx := context.Background()
	adm := c.admin()
	if _, err := adm.SubmitTask(ctx, json.RawMessage(secureTask)); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.StartRounds(ctx, "blobs", 3); err != nil {
		t.Fatal(err)
	}
	waitForWithin(t, 2*time.Minute, func() bool {
		ts, err := adm.Tasks(ctx)
		return err == nil && len(ts) == 1 && ts[0].Status == "done"
	}, "three secure rounds")
	vs := blobsVersions(t, adm, 4)
	mu.Lock()
	defer mu.Unlock()
	if plain != 0 {
		t.Fatalf("the coordinator received %d plain updates in secure rounds", plain)
	}
	for round := uint64(1); round <= 3; round++ {
		// Survivors: those whose masked vectors arrived (site-4 dropped at upload in
		// round 1; in rounds 2 and 3 it dropped before its input or after it).
		var surv []string
		for i := range 5 {
			if _, ok := masked[fmt.Sprintf("site-%d/%d", i, round)]; ok {
				surv = append(surv, fmt.Sprintf("site-%d", i))
			}
		}
		want := 4
		if round == 3 {
			want = 5 // its masked input is in the sum; its masks come off without it
		}
		if len(surv) != want {
			t.Fatalf("round %d: survivors %v", round, surv)
		}
		if got := int(vs[round].Metrics["updates"]); got != want {
			t.Fatalf("round %d: %d updates in the version's metrics, want %d", round, got, want)
		}
		// The version's step is the example-weighted mean of the survivors' updates.
		base, next := fetch(t, adm, vs[round-1]), fetch(t, adm, vs[round])
		mean := make([]float64, len(base))
		total := 0.0
		for _, a := range surv {
			u := updates[fmt.Sprintf("%s/%d", a, round)]
			var w float64
			fmt.Sscanf(a, "site-%f", &w)
			w = 200 + 40*w
			total += w
			for j, v := range u {
				mean[j] += w * float64(v)
			}
			// What the coordinator held of this agent: not its update, nor anything near.
			m := masked[fmt.Sprintf("%s/%d", a, round)]
			near := 0
			for j, v := range u {
				// Its quantized value (max weight: the largest dataset, 360 examples).
				q := (float64(v)*w/360 + 8) / 16 * float64(uint32(math.MaxUint32/5))
				if math.Abs(float64(m[j])-q) < 1e7 {
					near++
				}
			}
			if near > len(u)/10 {
				t.Fatalf("round %d: %d of %d masked values of %s lie near its quantized update", round, near, len(u), a)
			}
		}
		for j := range mean {
			if d := float64(next[j]-base[j]) - mean[j]/total; math.Abs(d) > 1e-4 {
				t.Fatalf("round %d: parameter %d moved by %g, the weighted mean update is %g", round, j, next[j]-base[j], mean[j]/total)
			}
		}
	}
}

// fetch pulls a version's weights.
func fetch(t *testing.T, adm *coordinator.AdminClient, v store.Version) []float32 {
	t.Helper()
	var out []float32
	err := adm.FetchModel(context.Background(), v.Number, v.Hash, func(tr *protocol.TensorReader) (err error) {
		out, err = readWeights(tr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSecureRoundSurvivesRestart stops the coordinator in the middle of a secure round —
// keys shared, some masked inputs in — and starts it again: the interrupted attempt is
// abandoned (its key material lived only in memory), a new attempt runs with fresh keys,
// and the versions stay contiguous.
func TestSecureRoundSurvivesRestart(t *testing.T) {
	c := newCluster(t)
	hold := make(chan struct{})
	var once sync.Once
	paused := make(chan struct{})
	for i := range 4 {
		name := fmt.Sprintf("site-%d", i)
		drop := func(taskID, phase string) bool {
			if name == "site-0" && phase == agent.DropUpload && strings.Contains(taskID, ".r1.a1.") {
				once.Do(func() { close(paused) })
				<-hold // the first attempt's upload waits for the restart
			}
			return false
		}
		secureAgent(t, c, name, blobs(200, uint64(i)), nil, drop)
	}
	ctx := context.Background()
	adm := c.admin()
	spec := strings.Replace(secureTask, `"agents_per_round": 5`, `"agents_per_round": 4`, 1)
	if _, err := adm.SubmitTask(ctx, json.RawMessage(spec)); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.StartRounds(ctx, "blobs", 2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-paused:
	case <-time.After(time.Minute):
		t.Fatal("the secure round never reached the uploads")
	}
	adm.Close()
	c.stop()
	c.start()
	close(hold)
	adm = c.admin()
	waitForWithin(t, 2*time.Minute, func() bool {
		ts, err := adm.Tasks(ctx)
		return err == nil && len(ts) == 1 && ts[0].Status == "done"
	}, "two secure rounds after the restart")
	vs := blobsVersions(t, adm, 3)
	for i, v := range vs[1:] {
		// A round may start as soon as a quorum (3) of agents is back.
		if v.Round != uint64(i+1) || v.Parent != vs[i].Number || v.Metrics["updates"] < 3 {
			t.Fatalf("version %+v", v)
		}
	}
}

// TestDistributedDPRounds runs distributed DP over QUIC: every agent clips, encodes and
// noises its update under secure aggregation (Poisson sampling at rate 1, so all five
// take part). The coordinator receives no plain update, records the privacy spent, and
// moves the model by the mean of the clipped updates plus noise of the planned size.
func TestDistributedDPRounds(t *testing.T) {
	var mu sync.Mutex
	plain, masked := 0, 0
	observe := func(_ string, _ *protocol.UpdateHeader, p []float32, m []uint32) {
		mu.Lock()
		defer mu.Unlock()
		if p != nil {
			plain++
		}
		if m != nil {
			masked++
		}
	}
	c := newClusterWith(t, func(c *cluster) { c.observe = observe })
	updates := map[string][]float32{}
	for i := range 5 {
		name := fmt.Sprintf("site-%d", i)
		record := func(round uint64, u []float32) {
			mu.Lock()
			defer mu.Unlock()
			updates[fmt.Sprintf("%s/%d", name, round)] = append([]float32(nil), u...)
		}
		secureAgent(t, c, name, blobs(200, uint64(i)), record, nil)
	}
	spec := `{"name": "blobs", "dataset": "blobs",
	  "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 8}, {"type": "relu"}, {"type": "dense", "out": 2}]},
	  "train": {"epochs": 1, "batch": 8, "lr": 0.1}, "fraction": 1, "rounds": 2,
	  "deadlines": {"configure": "5s", "train": "20s"}, "seed": 3,
	  "secure_aggregation": true, "secagg": {"deadline": "5s"},
	  "privacy": {"mode": "distributed", "clip": 0.5, "noise_multiplier": 0.05, "epsilon": 10000, "delta": 1e-5, "min_agents": 4}}`
	ctx := context.Background()
	adm := runTaskDone(t, c, spec, "a distributed-DP round")
	vs, err := adm.Versions(ctx, "blobs")
	if err != nil || len(vs) != 2 {
		t.Fatalf("versions %v, %v", vs, err)
	}
	v := vs[1]
	if v.Privacy == nil || v.Privacy.Mode != "distributed" || !(v.Privacy.Epsilon > 0) {
		t.Fatalf("privacy of the version: %+v", v.Privacy)
	}
	if _, ok := v.Metrics["train_loss"]; ok {
		t.Fatalf("a distributed-DP version reports an un-noised loss: %v", v.Metrics)
	}
	mu.Lock()
	defer mu.Unlock()
	if plain != 0 || masked != 5 {
		t.Fatalf("the coordinator received %d plain and %d masked updates", plain, masked)
	}
	base, next := fetch(t, adm, vs[0]), fetch(t, adm, v)
	mean := make([]float64, len(base))
	for i := range 5 {
		u := updates[fmt.Sprintf("site-%d/1", i)]
		norm := 0.0
		for _, x := range u {
			norm += float64(x) * float64(x)
		}
		s := math.Min(1, 0.5/math.Sqrt(norm))
		for j, x := range u {
			mean[j] += float64(x) * s / 5
		}
	}
	// The noise: z·clip on the sum, over 5 expected agents, per rotated coordinate.
	sd := 0.05 * 0.5 / 5
	worst := 0.0
	for j := range mean {
		worst = math.Max(worst, math.Abs(float64(next[j]-base[j])-mean[j]))
	}
	if worst > 6*sd {
		t.Fatalf("the step is off the clipped mean by %g; the noise's standard deviation is %g", worst, sd)
	}
}

// TestDistributedDPNoUnmaskBelowPlan: a distributed-DP round plans its noise for the
// agents it sampled less a dropout margin (8 sampled, 1% expected dropout: 7). When two
// agents drop before uploading, six masked updates — enough for the quorum (min_agents
// 4) but fewer than planned — would unmask to a sum with too little noise: the round
// must fail before any agent is asked to reveal its shares, and the next attempt, with
// everyone, commits.
func TestDistributedDPNoUnmaskBelowPlan(t *testing.T) {
	c := newCluster(t)
	var mu sync.Mutex
	asked := map[string]bool{} // taskID/phase → some agent was asked at that phase
	for i := range 8 {
		name := fmt.Sprintf("site-%d", i)
		drop := func(taskID, phase string) bool {
			mu.Lock()
			defer mu.Unlock()
			asked[taskID+"/"+phase] = true
			return i < 2 && phase == agent.DropUpload && strings.Contains(taskID, ".a1.")
		}
		secureAgent(t, c, name, blobs(100, uint64(i)), nil, drop)
	}
	spec := `{"name": "blobs", "dataset": "blobs",
	  "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 2}]},
	  "train": {"epochs": 1, "batch": 8, "lr": 0.1}, "fraction": 1, "rounds": 1,
	  "deadlines": {"configure": "5s", "train": "20s"}, "seed": 3,
	  "secure_aggregation": true, "secagg": {"deadline": "5s", "dropout": 0.01},
	  "privacy": {"mode": "distributed", "clip": 0.5, "noise_multiplier": 0.05, "epsilon": 10000, "delta": 1e-5, "min_agents": 4}}`
	runTaskDone(t, c, spec, "the distributed-DP round, retried")
	mu.Lock()
	defer mu.Unlock()
	var first, second bool
	for k := range asked {
		switch {
		case strings.Contains(k, ".a1.") && strings.HasSuffix(k, "/"+agent.DropUpload):
			first = true
		case strings.Contains(k, ".a1.") && strings.HasSuffix(k, "/"+agent.DropUnmask):
			t.Errorf("an agent was asked to unmask the first attempt (%s), whose sum held 6 of the 7 planned noise shares", k)
		case strings.Contains(k, ".a2.") && strings.HasSuffix(k, "/"+agent.DropUnmask):
			second = true
		}
	}
	if !first || !second {
		t.Fatalf("attempts seen: first uploaded %v, second unmasked %v (%v)", first, second, asked)
	}
}

// runTaskDone submits spec (task "blobs"), starts one round and waits up to two minutes
// for the task to be done; it returns the admin client.
func runTaskDone(t *testing.T, c *cluster, spec, what string) *coordinator.AdminClient {
	t.Helper()
	ctx := context.Background()
	adm := c.admin()
	if _, err := adm.SubmitTask(ctx, json.RawMessage(spec)); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.StartRounds(ctx, "blobs", 1); err != nil {
		t.Fatal(err)
	}
	waitForWithin(t, 2*time.Minute, func() bool {
		ts, err := adm.Tasks(ctx)
		return err == nil && len(ts) == 1 && ts[0].Status == "done"
	}, what)
	return adm
}
