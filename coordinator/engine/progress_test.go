package engine

import (
	"fmt"
	"testing"
	"time"
)

// TestProgressFollowsTheRound checks Progress against a round driven by hand: it must
// report each phase as the engine enters it, and no round once it commits.
func TestProgressFollowsTheRound(t *testing.T) {
	s := spec(t, 3, 0)
	s.Quorum = 3
	e := New("boot")
	now := time.Unix(1000, 0)
	e.Step(Tick{Now: now})
	if _, ok := e.Progress("mnist"); ok {
		t.Fatal("Progress of an unknown task: ok")
	}
	e.Step(TaskAdded{State: TaskState{Spec: s, Status: Idle, Round: 1, Base: Version{Number: 1}}})
	for i := range 3 {
		e.Step(AgentUp{ID: fmt.Sprintf("a%d", i), Datasets: []string{"mnist"}})
	}
	if p, _ := e.Progress("mnist"); p.Status != Idle || p.TaskID != "" {
		t.Fatalf("before rounds: %+v", p)
	}
	var start StartRound
	for _, a := range e.Step(RoundsRequested{Task: "mnist", N: 1}) {
		if sr, ok := a.(StartRound); ok {
			start = sr
		}
	}
	steps := []struct {
		ev        Event
		phase     Phase
		delivered int
	}{
		{nil, PhaseConfigure, 0},
		{Accepted{Agent: "a0", TaskID: start.TaskID}, PhaseConfigure, 0},
		{Accepted{Agent: "a1", TaskID: start.TaskID}, PhaseConfigure, 0},
		{Accepted{Agent: "a2", TaskID: start.TaskID}, PhaseTrain, 0},
		{UpdateReceived{Agent: "a0", TaskID: start.TaskID, Examples: 1}, PhaseTrain, 1},
		{UpdateReceived{Agent: "a1", TaskID: start.TaskID, Examples: 1}, PhaseTrain, 2},
		{UpdateReceived{Agent: "a2", TaskID: start.TaskID, Examples: 1}, PhaseCommit, 3},
		{Committed{TaskID: start.TaskID, Version: Version{Number: 2}}, "", 0},
	}
	for i, st := range steps {
		if st.ev != nil {
			if up, ok := st.ev.(UpdateReceived); ok {
				if err := e.Admit(up.Agent, up.TaskID, 1, Version{Number: 1}); err != nil {
					t.Fatalf("step %d: admit: %v", i, err)
				}
			}
			e.Step(st.ev)
		}
		p, ok := e.Progress("mnist")
		if !ok || p.Phase != st.phase || p.Delivered != st.delivered {
			t.Fatalf("step %d (%T): progress %+v, want phase %q with %d delivered", i, st.ev, p, st.phase, st.delivered)
		}
		if st.phase != "" && (p.TaskID != start.TaskID || p.Selected != 3 || p.Round != 1) {
			t.Fatalf("step %d: progress %+v, want task ID %s, 3 selected, round 1", i, p, start.TaskID)
		}
	}
	if p, _ := e.Progress("mnist"); p.Status != Done || p.NextRound != 2 || p.TaskID != "" {
		t.Fatalf("after commit: %+v", p)
	}
}
