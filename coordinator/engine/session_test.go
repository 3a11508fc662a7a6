package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestNewSessionLeavesRound: an agent whose session ends and that reconnects before the
// driver reports the old session's end — whose AgentDown then never comes — is out of
// its round. Before, the round waited for it until its train deadline (the sim's stall
// under load, with an hour's deadline). An agent that already delivered stays in, to
// reveal its shares from its new session.
func TestNewSessionLeavesRound(t *testing.T) {
	cases := []struct {
		name   string
		secure bool
		// at is the phase the agent reconnects in; delivered says whether it had.
		at        Phase
		delivered bool
	}{
		{"plain, configure", false, PhaseConfigure, false},
		{"plain, train", false, PhaseTrain, false},
		{"secure, advertise", true, PhaseAdvertise, false},
		{"secure, share", true, PhaseShare, false},
		{"secure, train", true, PhaseTrain, false},
		{"secure, unmask", true, PhaseUnmask, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := time.Unix(1_700_000_000, 0)
			e := New("boot")
			e.Step(Tick{Now: now})
			ids := []string{"a0", "a1", "a2", "a3", "a4"}
			for _, id := range ids {
				e.Step(AgentUp{ID: id, Datasets: []string{"mnist"}})
			}
			s := spec(t, len(ids), 0)
			if c.secure {
				s = secureSpec(t, len(ids))
			}
			s.Name = "t"
			s.Quorum = 3
			e.Step(TaskAdded{State: TaskState{Spec: s, Status: Idle, Round: 1}})
			starts := find[StartRound](e.Step(RoundsRequested{Task: "t", N: 1}))
			if len(starts) != 1 || len(starts[0].Selected) != len(ids) {
				t.Fatalf("start: %+v", starts)
			}
			tid := starts[0].TaskID
			phase := func() Phase { return e.Tasks()[0].Round.Phase }
			const gone = "a4"
			var acts []Action
			// in are the agents still in the round: all until gone reconnects, and then
			// gone too only if it had delivered.
			in := slices.Clone(ids)
			secure := func(p Phase) {
				for _, a := range in {
					acts = e.Step(SecAggSent{Agent: a, TaskID: tid, Phase: p})
				}
			}
			reconnect := func() {
				t.Helper()
				if phase() != c.at {
					t.Fatalf("phase %s, want %s", phase(), c.at)
				}
				acts = e.Step(AgentUp{ID: gone, Datasets: []string{"mnist"}})
				if cancels := find[CancelOffer](acts); c.delivered != (len(cancels) == 0) || (!c.delivered && cancels[0].Agent != gone) {
					t.Fatalf("reconnect in %s: %+v", c.at, acts)
				}
				if !c.delivered {
					in = slices.DeleteFunc(in, func(a string) bool { return a == gone })
				}
			}
			for _, a := range ids {
				if c.at != PhaseConfigure || a != gone {
					acts = e.Step(Accepted{Agent: a, TaskID: tid})
				}
			}
			if c.at == PhaseConfigure {
				reconnect()
			}
			if c.secure {
				if c.at == PhaseAdvertise {
					reconnect()
				}
				secure(PhaseAdvertise)
				acts = e.Step(SecAggClosed{TaskID: tid, Phase: PhaseAdvertise, In: in})
				if c.at == PhaseShare {
					reconnect()
				}
				secure(PhaseShare)
				if c := find[CloseSecAgg](acts); len(c) != 1 || c[0].Phase != PhaseShare {
					t.Fatalf("share keys not closed once the others answered: %+v", acts)
				}
				acts = e.Step(SecAggClosed{TaskID: tid, Phase: PhaseShare, In: in})
			}
			if c.at == PhaseTrain {
				reconnect()
			}
			for _, a := range in {
				if err := e.Admit(a, tid, 1, Version{}); err != nil {
					t.Fatal(err)
				}
				acts = e.Step(UpdateReceived{Agent: a, TaskID: tid, Examples: 10})
			}
			if c.secure {
				if c := find[CloseSecAgg](acts); len(c) != 1 || c[0].Phase != PhaseTrain {
					t.Fatalf("train not closed once the others delivered: %+v", acts)
				}
				e.Step(SecAggClosed{TaskID: tid, Phase: PhaseTrain, In: in})
				if c.at == PhaseUnmask {
					reconnect()
				}
				secure(PhaseUnmask)
			}
			commits := find[CommitRound](acts)
			if len(commits) != 1 {
				t.Fatalf("no commit once the others were done (the round waits for %s): %+v", gone, acts)
			}
			if want := len(ids) - 1; c.delivered {
				want++
				if commits[0].Updates != want {
					t.Fatalf("commit of %d updates, want %d", commits[0].Updates, want)
				}
			} else if commits[0].Updates != want || slices.Contains(commits[0].Participants, gone) {
				t.Fatalf("commit %+v, want %d updates without %s", commits[0], want, gone)
			}
			// The reconnected agent is free for the next round.
			e.Step(Committed{TaskID: tid, Version: Version{Number: 1}})
			e.Step(RoundsRequested{Task: "t", N: 1})
			if r := e.Tasks()[0].Round; r == nil || r.Selected != len(ids) {
				t.Fatalf("next round: %+v", r)
			}
		})
	}
}

// TestNewSessionOfIdleAgent: a new session of an agent in no round changes nothing but
// its datasets.
func TestNewSessionOfIdleAgent(t *testing.T) {
	e := New("boot")
	e.Step(AgentUp{ID: "a", Datasets: []string{"mnist"}})
	if acts := e.Step(AgentUp{ID: "a", Datasets: []string{"cifar"}}); len(acts) != 0 {
		t.Fatalf("actions: %+v", acts)
	}
	if got := fmt.Sprint(e.agents["a"].datasets); got != "[cifar]" {
		t.Fatalf("datasets %s", got)
	}
}
