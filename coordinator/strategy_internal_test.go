package coordinator

import (
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/fedq/fedq/coordinator/engine"
	"github.com/fedq/fedq/coordinator/task"
)

// TestStrategyStateAcrossRestart drives rounds of stateful strategies through the
// driver with fixed updates, once straight through and once with the coordinator
// restarted from its directory between rounds and a commit that fails on a damaged base
// in the middle: the final weights must be bit for bit the same, so the strategy's state
// (server momentum, adaptive moments) is stored with each version, restored at start,
// and not advanced by a failed commit.
func TestStrategyStateAcrossRestart(t *testing.T) {
	for _, strategy := range []string{"fedavgm", "fedadam", "fedyogi", "fedavg", "median"} {
		t.Run(strategy, func(t *testing.T) {
			const rounds = 4
			straight := runStrategyRounds(t, strategy, rounds, -1, -1)
			restarted := runStrategyRounds(t, strategy, rounds, 2, 4)
			if !slices.Equal(straight, restarted) {
				t.Fatal("the weights differ after a restart")
			}
		})
	}
}

// runStrategyRounds runs rounds of a one-layer task with strategy and seeded updates,
// restarting the coordinator after round restartAfter and failing round failAt's first
// commit, and returns the last version's weights.
func runStrategyRounds(t *testing.T, strategy string, rounds, restartAfter, failAt int) []float32 {
	t.Helper()
	dir := testDir(t)
	listen := func() *Server { return listenOn(t, dir) }
	srv := listen()
	defer func() { srv.release() }()
	spec, err := task.Parse([]byte(`{"name":"t","dataset":"d","model":{"input":[5],"classes":3,"layers":[{"type":"dense","out":3}]},
	  "train":{"epochs":1,"batch":1,"lr":0.1},"agents_per_round":3,"strategy":{"name":"` + strategy + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.rounds.submit(spec); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := uint64(1); round <= uint64(rounds); round++ {
		r := srv.rounds
		tm := r.tasks["t"]
		updates := make([][]float32, 3)
		for i := range updates {
			updates[i] = make([]float32, tm.size)
			for j := range updates[i] {
				updates[i][j] = float32(rng.NormFloat64() * 0.1)
			}
		}
		commit := func(attempt uint32) engine.Event {
			taskID := engine.TaskID("t", round, attempt, "x")
			r.do(engine.StartRound{Task: "t", Round: round, Attempt: attempt, TaskID: taskID,
				Base: engine.Version{Number: tm.version.Number, Hash: tm.version.Hash}})
			for i, u := range updates {
				if err := tm.agg.Add(slices.Clone(u), uint64(1+i)); err != nil {
					t.Fatal(err)
				}
			}
			return r.commit(engine.CommitRound{Task: "t", Round: round, Attempt: attempt, TaskID: taskID, Updates: 3, Examples: 6})
		}
		if int(round) == failAt {
			// A commit on a damaged base fails after the strategy has stepped: its state
			// must go back to the base's.
			path := srv.blobs.Path(tm.version.Hash)
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			bad := slices.Clone(good)
			bad[len(bad)-1] ^= 0x40
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if ev, ok := commit(1).(engine.CommitFailed); !ok {
				t.Fatalf("commit on a damaged base: %+v", ev)
			}
			r.do(engine.FailRound{Task: "t", Round: round, Attempt: 1, TaskID: engine.TaskID("t", round, 1, "x"), Reason: "test"})
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if ev, ok := commit(2).(engine.Committed); !ok {
			t.Fatalf("round %d: %+v", round, ev)
		}
		if v := tm.version; (strategy == "fedavgm" || strategy == "fedadam" || strategy == "fedyogi") && (v.StrategyState.IsZero() || v.StrategyStateValues == 0) {
			t.Fatalf("round %d: version %d stores no strategy state", round, v.Number)
		}
		if int(round) == restartAfter {
			srv.release()
			srv = listen()
		}
	}
	tm := srv.rounds.tasks["t"]
	out := make([]float32, tm.size)
	if err := srv.blobs.Get(tm.version.Hash, out); err != nil {
		t.Fatal(err)
	}
	rep, err := srv.store.Check(srv.blobs)
	if err != nil || rep.OrphansRemoved != 0 {
		t.Fatalf("check: %+v %v", rep, err)
	}
	return out
}
