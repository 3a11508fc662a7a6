package engine

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fedq/fedq/coordinator/task"
)

func secureSpec(t *testing.T, agents int) *task.Spec {
	t.Helper()
	s := &task.Spec{Name: "sec", Model: json.RawMessage(`"2nn"`), Dataset: "mnist",
		Train: task.Train{Epochs: 1, Batch: 10, LR: 0.1}, AgentsPerRound: agents, Quorum: 3, OverSelect: 1, Seed: 7,
		Deadlines:         task.Deadlines{Configure: task.Duration(5 * time.Second), Train: task.Duration(time.Minute)},
		SecureAggregation: true, SecAgg: &task.SecAgg{Deadline: task.Duration(10 * time.Second)}}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	return s
}

func find[T Action](acts []Action) []T {
	var out []T
	for _, a := range acts {
		if x, ok := a.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// TestSecureRoundPhases walks a secure round through its phases, with an agent lost at
// each: one never answers its offer, one accepts but advertises no keys, one survivor
// reveals nothing.
func TestSecureRoundPhases(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	e := New("boot")
	e.Step(Tick{Now: now})
	var ids []string
	for i := range 6 {
		id := fmt.Sprintf("a%d", i)
		ids = append(ids, id)
		e.Step(AgentUp{ID: id, Datasets: []string{"mnist"}})
	}
	e.Step(TaskAdded{State: TaskState{Spec: secureSpec(t, 6), Status: Idle, Round: 1}})
	acts := e.Step(RoundsRequested{Task: "sec", N: 1})
	starts := find[StartRound](acts)
	if len(starts) != 1 || len(starts[0].Selected) != 6 {
		t.Fatalf("start: %+v", acts)
	}
	tid := starts[0].TaskID
	phase := func() Phase { return e.Tasks()[0].Round.Phase }
	// a5 never answers; the rest accept; a4 then advertises nothing.
	for _, a := range ids[:5] {
		e.Step(Accepted{Agent: a, TaskID: tid})
	}
	for _, a := range ids[:4] {
		e.Step(SecAggSent{Agent: a, TaskID: tid, Phase: PhaseAdvertise})
	}
	if err := e.Admit(ids[0], tid, 1, Version{}); err == nil {
		t.Fatal("a masked update admitted before the keys were shared")
	}
	acts = e.Step(Tick{Now: now.Add(6 * time.Second)}) // configure deadline: on to advertise
	if phase() != PhaseAdvertise || len(find[CloseSecAgg](acts)) != 0 {
		t.Fatalf("phase %s, actions %+v", phase(), acts)
	}
	acts = e.Step(Tick{Now: now.Add(17 * time.Second)}) // the advertise deadline
	if c := find[CloseSecAgg](acts); len(c) != 1 || c[0].Phase != PhaseAdvertise {
		t.Fatalf("advertise not closed: %+v", acts)
	}
	if acts = e.Step(Tick{Now: now.Add(18 * time.Second)}); len(acts) != 0 {
		t.Fatalf("closed twice: %+v", acts)
	}
	in := ids[:4]
	acts = e.Step(SecAggClosed{TaskID: tid, Phase: PhaseAdvertise, In: in})
	cancels := find[CancelOffer](acts)
	if len(cancels) != 2 || phase() != PhaseShare {
		t.Fatalf("after advertise: phase %s, cancels %+v", phase(), cancels)
	}
	for _, a := range in {
		acts = e.Step(SecAggSent{Agent: a, TaskID: tid, Phase: PhaseShare})
	}
	if c := find[CloseSecAgg](acts); len(c) != 1 || c[0].Phase != PhaseShare {
		t.Fatalf("share not closed once all answered: %+v", acts)
	}
	e.Step(SecAggClosed{TaskID: tid, Phase: PhaseShare, In: in})
	if phase() != PhaseTrain {
		t.Fatalf("phase %s after share", phase())
	}
	for _, a := range in {
		if err := e.Admit(a, tid, 1, Version{}); err != nil {
			t.Fatal(err)
		}
		acts = e.Step(UpdateReceived{Agent: a, TaskID: tid})
	}
	if c := find[CloseSecAgg](acts); len(c) != 1 || c[0].Phase != PhaseTrain || len(find[CommitRound](acts)) != 0 {
		t.Fatalf("train: %+v", acts)
	}
	e.Step(SecAggClosed{TaskID: tid, Phase: PhaseTrain, In: in})
	if phase() != PhaseUnmask {
		t.Fatalf("phase %s after train", phase())
	}
	e.Step(SecAggSent{Agent: in[0], TaskID: tid, Phase: PhaseUnmask})
	e.Step(SecAggSent{Agent: in[1], TaskID: tid, Phase: PhaseUnmask})
	acts = e.Step(SecAggSent{Agent: in[2], TaskID: tid, Phase: PhaseUnmask})
	if len(acts) != 0 {
		t.Fatalf("committed before every survivor answered or left: %+v", acts)
	}
	acts = e.Step(Declined{Agent: in[3], TaskID: tid, Reason: "gone"})
	c := find[CommitRound](acts)
	if len(c) != 1 || !slices.Equal(c[0].Participants, in) || c[0].Updates != 4 {
		t.Fatalf("commit: %+v", acts)
	}
}

// TestSecureRoundFails: a failure reported by the driver ends the attempt; the next
// one starts afresh.
func TestSecureRoundFails(t *testing.T) {
	e := New("boot")
	e.Step(Tick{Now: time.Unix(1_700_000_000, 0)})
	for i := range 4 {
		e.Step(AgentUp{ID: fmt.Sprintf("a%d", i), Datasets: []string{"mnist"}})
	}
	e.Step(TaskAdded{State: TaskState{Spec: secureSpec(t, 4), Status: Idle, Round: 1}})
	tid := find[StartRound](e.Step(RoundsRequested{Task: "sec", N: 1}))[0].TaskID
	acts := e.Step(SecAggFailed{TaskID: tid, Reason: "below the threshold"})
	f := find[FailRound](acts)
	if len(f) != 1 || f[0].Reason != "secure aggregation: below the threshold" {
		t.Fatalf("fail: %+v", acts)
	}
	if s := find[StartRound](acts); len(s) != 1 || s[0].Attempt != 2 {
		t.Fatalf("no new attempt: %+v", acts)
	}
}

// TestSecureRoundNeedsThree: a secure round never starts with fewer than three agents.
func TestSecureRoundNeedsThree(t *testing.T) {
	e := New("boot")
	for i := range 2 {
		e.Step(AgentUp{ID: fmt.Sprintf("a%d", i), Datasets: []string{"mnist"}})
	}
	s := secureSpec(t, 3)
	s.Quorum = 0
	s.AgentsPerRound, s.Fraction = 0, 1
	e.Step(TaskAdded{State: TaskState{Spec: s, Status: Idle, Round: 1}})
	if acts := e.Step(RoundsRequested{Task: "sec", N: 1}); len(find[StartRound](acts)) != 0 {
		t.Fatalf("a secure round of 2 started: %+v", acts)
	}
	e.Step(AgentUp{ID: "a2", Datasets: []string{"mnist"}})
	if acts := e.Step(Tick{Now: time.Unix(1_700_000_001, 0)}); len(find[StartRound](acts)) != 1 {
		t.Fatalf("no round with 3 agents: %+v", acts)
	}
}
