package coordinator

import (
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/fedq/fedq/coordinator/engine"
	"github.com/fedq/fedq/coordinator/task"
)

// TestBufferCycling drives the driver's round bookkeeping directly through commits and a
// failed round, and checks every committed version against base + the weighted mean of
// its updates, computed independently: the reused accumulator must never mix rounds,
// and the base, read back from its blob at each commit, must be the last version.
func TestBufferCycling(t *testing.T) {
	srv := listenOn(t, testDir(t))
	defer srv.release()
	spec, err := task.Parse([]byte(`{"name":"t","dataset":"d","model":{"input":[3],"classes":2,"layers":[{"type":"dense","out":2}]},
	  "train":{"epochs":1,"batch":1,"lr":0.1},"agents_per_round":2}`))
	if err != nil {
		t.Fatal(err)
	}
	r := srv.rounds
	v0, err := r.submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	tm := r.tasks["t"]
	base := make([]float32, tm.size)
	if err := srv.blobs.Get(v0.Hash, base); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	version := v0.Number
	for round := uint64(1); round <= 4; round++ {
		taskID := engine.TaskID("t", round, 1, "x")
		r.do(engine.StartRound{Task: "t", Round: round, Attempt: 1, TaskID: taskID, Base: engine.Version{Number: version, Hash: tm.version.Hash}})
		want := make([]float64, len(base))
		var total float64
		for range 3 {
			u := make([]float32, len(base))
			for i := range u {
				u[i] = rng.Float32() - 0.5
			}
			n := uint64(1 + rng.IntN(9))
			if err := tm.agg.Add(u, n); err != nil {
				t.Fatal(err)
			}
			for i, v := range u {
				want[i] += float64(n) * float64(v)
			}
			total += float64(n)
		}
		if round == 2 { // this attempt fails; the next one starts over from the same base
			r.do(engine.FailRound{Task: "t", Round: round, Attempt: 1, TaskID: taskID, Reason: "test"})
			taskID = engine.TaskID("t", round, 2, "x")
			r.do(engine.StartRound{Task: "t", Round: round, Attempt: 2, TaskID: taskID, Base: engine.Version{Number: version, Hash: tm.version.Hash}})
			want, total = make([]float64, len(base)), 1
			u := make([]float32, len(base))
			u[0] = 1
			if err := tm.agg.Add(u, 1); err != nil {
				t.Fatal(err)
			}
			want[0] = 1
		}
		ev := r.commit(engine.CommitRound{Task: "t", Round: round, Attempt: 1, TaskID: taskID, Updates: 3, Examples: uint64(total)})
		c, ok := ev.(engine.Committed)
		if !ok {
			t.Fatalf("round %d: %+v", round, ev)
		}
		version = c.Version.Number
		got := make([]float32, len(base))
		v, _, _ := srv.store.Version(version)
		if err := srv.blobs.Get(v.Hash, got); err != nil {
			t.Fatal(err)
		}
		for i := range base {
			w := float64(base[i]) + want[i]/total
			if math.Abs(float64(got[i])-w) > 1e-5 {
				t.Fatalf("round %d: weight %d = %v, want %v", round, i, got[i], w)
			}
		}
		copy(base, got)
	}

	// A damaged base blob fails the commit, with a clear error, and stores nothing; the
	// round is retried once the blob is whole again.
	path := srv.blobs.Path(tm.version.Hash)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), good...)
	bad[0] ^= 1
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	for attempt := uint32(1); attempt <= 2; attempt++ {
		taskID := engine.TaskID("t", 5, attempt, "x")
		r.do(engine.StartRound{Task: "t", Round: 5, Attempt: attempt, TaskID: taskID, Base: engine.Version{Number: version, Hash: tm.version.Hash}})
		if err := tm.agg.Add(make([]float32, tm.size), 1); err != nil {
			t.Fatal(err)
		}
		ev := r.commit(engine.CommitRound{Task: "t", Round: 5, Attempt: attempt, TaskID: taskID, Updates: 1, Examples: 1})
		if attempt == 1 {
			f, ok := ev.(engine.CommitFailed)
			if !ok || !strings.Contains(f.Err.Error(), "damaged store") {
				t.Fatalf("commit on a damaged base: %+v", ev)
			}
			if tm.version.Number != version {
				t.Fatalf("a failed commit moved the base to version %d", tm.version.Number)
			}
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
			r.do(engine.FailRound{Task: "t", Round: 5, Attempt: 1, TaskID: taskID, Reason: "commit failed"})
			continue
		}
		if _, ok := ev.(engine.Committed); !ok {
			t.Fatalf("commit after repair: %+v", ev)
		}
	}
}
