package coordinator

import (
	"testing"

	"github.com/fedq/fedq/coordinator/engine"
	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/protocol"
)

// TestReplacedSessionLeavesRound drives the driver's session bookkeeping in the order a
// loaded coordinator can see it: an agent in a round reconnects, and its new session
// begins (agentUp) before its old one's end is handled (agentDown, then ignored, as it
// must not take the new session down). The agent, whose tasks ended with the old
// session, must be out of the round, and free and online for the next one — the round
// must not wait for it until its train deadline.
func TestReplacedSessionLeavesRound(t *testing.T) {
	srv := listenOn(t, testDir(t))
	defer srv.release()
	r := srv.rounds
	drain := func() { drainLoop(r) }
	spec, err := task.Parse([]byte(`{"name":"t","dataset":"d","model":{"input":[3],"classes":2,"layers":[{"type":"dense","out":2}]},
	  "train":{"epochs":1,"batch":1,"lr":0.1},"agents_per_round":3,"quorum":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.submit(spec); err != nil {
		t.Fatal(err)
	}
	caps := protocol.Capabilities{Datasets: []protocol.DatasetInfo{{Name: "d", Examples: 10}}}
	for _, a := range []string{"a", "b", "c"} {
		r.agentUp(a, a+"1", caps, nil)
	}
	drain()
	if _, err := r.requestRoundsNow("t", 1); err != nil {
		t.Fatal(err)
	}
	round := func() *engine.RoundStatus { return r.eng.Tasks()[0].Round }
	if rs := round(); rs == nil || rs.Selected != 3 {
		t.Fatalf("round: %+v", rs)
	}
	taskID := round().TaskID
	for _, a := range []string{"a", "b", "c"} {
		r.control(a, &protocol.TaskAccept{TaskID: taskID, Round: 1})
	}
	drain()
	if rs := round(); rs.Phase != engine.PhaseTrain || rs.Accepted != 3 {
		t.Fatalf("round before the reconnect: %+v", rs)
	}
	r.agentUp("c", "c2", caps, nil) // the new session first,
	r.agentDown("c", "c1")          // then the old one's end
	drain()
	if rs := round(); rs.Accepted != 2 {
		t.Fatalf("the round still counts the reconnected agent: %+v", rs)
	}
	if n := r.eng.Online(); n != 3 || r.online["c"] != "c2" {
		t.Fatalf("online %d, c's session %q: the old session's end took the new one down", n, r.online["c"])
	}
	// The other two deliver: the round commits at once, without c.
	tm := r.tasks["t"]
	before := tm.version.Number
	for _, a := range []string{"a", "b"} {
		if err := r.eng.Admit(a, taskID, 1, engine.Version{Number: tm.version.Number, Hash: tm.version.Hash}); err != nil {
			t.Fatal(err)
		}
		if err := tm.agg.Add(make([]float32, tm.size), 1); err != nil {
			t.Fatal(err)
		}
		r.step(engine.UpdateReceived{Agent: a, TaskID: taskID, Examples: 1})
	}
	if tm.version.Number == before || tm.version.Round != 1 {
		t.Fatalf("round 1 not committed: version %+v, round %+v", tm.version, round())
	}
	// c is free: the next round selects it.
	if _, err := r.requestRoundsNow("t", 1); err != nil {
		t.Fatal(err)
	}
	if rs := round(); rs == nil || rs.Round != 2 || rs.Selected != 3 {
		t.Fatalf("round 2: %+v", rs)
	}
}

// TestSessionUpAfterItsDown: when the loop's queue is full, post delivers late, and a
// session's start can reach the loop after its own end. The agent is gone: it must not
// come back online (the engine would offer it tasks no session can carry), while a
// later session of the same agent counts as usual.
func TestSessionUpAfterItsDown(t *testing.T) {
	srv := listenOn(t, testDir(t))
	defer srv.release()
	r := srv.rounds
	drain := func() { drainLoop(r) }
	caps := protocol.Capabilities{Datasets: []protocol.DatasetInfo{{Name: "d", Examples: 10}}}
	r.agentDown("a", "a1") // the end first,
	r.agentUp("a", "a1", caps, nil)
	drain()
	if n := r.eng.Online(); n != 0 || r.online["a"] != "" {
		t.Fatalf("online %d, a's session %q: a session that had ended came back", n, r.online["a"])
	}
	r.agentUp("a", "a2", caps, nil)
	drain()
	if n := r.eng.Online(); n != 1 || r.online["a"] != "a2" {
		t.Fatalf("online %d, a's session %q: the next session did not count", n, r.online["a"])
	}
	r.agentDown("a", "a2")
	drain()
	if n := r.eng.Online(); n != 0 {
		t.Fatalf("online %d after the last session ended", n)
	}
}

// drainLoop runs what is queued for the driver's loop, on the test's goroutine.
func drainLoop(r *rounds) {
	for {
		select {
		case fn := <-r.in:
			fn()
		default:
			return
		}
	}
}
