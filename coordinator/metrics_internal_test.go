package coordinator

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedq/fedq/coordinator/engine"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/protocol"
)

// TestObserveFailedAttemptRetriedAtOnce feeds the observer a script of engine steps: an
// attempt that fails in its train phase and is retried in the same step, then a commit.
// Counters, phase histograms and the dashboard's history must tell the two apart.
func TestObserveFailedAttemptRetriedAtOnce(t *testing.T) {
	m := newMetrics(func() float64 { return 3 })
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	var prog engine.Progress
	progress := func(name string) (engine.Progress, bool) { return prog, name == "t" }
	a1, a2 := "t.r1.a1.boot", "t.r1.a2.boot"
	steps := []struct {
		at   float64
		ev   engine.Event
		acts []engine.Action
		prog engine.Progress
	}{
		{0, engine.TaskAdded{State: engine.TaskState{Spec: &task.Spec{Name: "t"}}}, nil, engine.Progress{Status: engine.Idle}},
		{0, engine.Tick{Now: at(0)}, nil, engine.Progress{Status: engine.Idle}},
		{0, engine.RoundsRequested{Task: "t", N: 1},
			[]engine.Action{engine.StartRound{Task: "t", Round: 1, Attempt: 1, TaskID: a1, Selected: []string{"a", "b", "c"}}},
			engine.Progress{Status: engine.Running, TaskID: a1, Phase: engine.PhaseConfigure, Selected: 3}},
		{1, engine.Accepted{Agent: "a", TaskID: a1}, nil, engine.Progress{Status: engine.Running, TaskID: a1, Phase: engine.PhaseTrain, Selected: 3}},
		{2, engine.UpdateReceived{Agent: "a", TaskID: a1}, nil,
			engine.Progress{Status: engine.Running, TaskID: a1, Phase: engine.PhaseTrain, Selected: 3, Delivered: 1}},
		{3, engine.Tick{Now: at(3)}, []engine.Action{
			engine.FailRound{Task: "t", Round: 1, Attempt: 1, TaskID: a1, Reason: "1 updates by the deadline, quorum is 2"},
			engine.StartRound{Task: "t", Round: 1, Attempt: 2, TaskID: a2, Selected: []string{"a", "b"}}},
			engine.Progress{Status: engine.Running, TaskID: a2, Phase: engine.PhaseConfigure, Selected: 2}},
		{4, engine.Accepted{Agent: "b", TaskID: a2}, nil, engine.Progress{Status: engine.Running, TaskID: a2, Phase: engine.PhaseTrain, Selected: 2}},
		{5, engine.UpdateReceived{Agent: "b", TaskID: a2},
			[]engine.Action{engine.CommitRound{Task: "t", Round: 1, Attempt: 2, TaskID: a2, Updates: 2, Participants: []string{"a", "b"}}},
			engine.Progress{Status: engine.Running, TaskID: a2, Phase: engine.PhaseCommit, Selected: 2, Delivered: 2}},
		{6, engine.Committed{TaskID: a2}, []engine.Action{engine.TaskFinished{Task: "t"}}, engine.Progress{Status: engine.Done, NextRound: 2}},
	}
	for _, st := range steps {
		prog = st.prog
		m.observe(st.ev, st.acts, at(st.at), progress, 3)
	}
	counters := []struct {
		name string
		got  float64
		want float64
	}{
		{"started", testutil.ToFloat64(m.roundsStarted.WithLabelValues("t")), 2},
		{"failed", testutil.ToFloat64(m.roundsFailed.WithLabelValues("t")), 1},
		{"committed", testutil.ToFloat64(m.roundsCommitted.WithLabelValues("t")), 1},
		{"selected", testutil.ToFloat64(m.selected.WithLabelValues("t")), 5},
		{"dropped", testutil.ToFloat64(m.dropped.WithLabelValues("t")), 2}, // b and c of the failed attempt
		{"accepted", testutil.ToFloat64(m.accepted.WithLabelValues("t")), 2},
		{"phases", float64(testutil.CollectAndCount(m.phaseSeconds)), 3}, // configure, train, commit
	}
	for _, c := range counters {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	v, ok := m.view("t")
	if !ok || v.running != nil || len(v.recent) != 2 {
		t.Fatalf("view: ok %v, running %+v, %d recent attempts, want 2", ok, v.running, len(v.recent))
	}
	type phase struct {
		name       string
		start, end float64
	}
	wantPhases := [][]phase{
		{{"configure", 0, 1}, {"train", 1, 3}},
		{{"configure", 3, 4}, {"train", 4, 5}, {"commit", 5, 6}},
	}
	for i, sp := range v.recent {
		var got []phase
		for _, p := range sp.Phases {
			got = append(got, phase{p.Phase, p.Start.Sub(t0).Seconds(), p.End.Sub(t0).Seconds()})
		}
		if !slices.Equal(got, wantPhases[i]) {
			t.Errorf("attempt %d phases %v, want %v", i+1, got, wantPhases[i])
		}
	}
	if f := v.recent[0]; f.Outcome != "failed" || f.Updates != 1 || f.Reason == "" || !f.Ended.Equal(at(3)) {
		t.Errorf("failed attempt %+v", f)
	}
	if c := v.recent[1]; c.Outcome != "committed" || c.Updates != 2 || c.Selected != 2 || !c.Ended.Equal(at(6)) {
		t.Errorf("committed attempt %+v", c)
	}
	if !slices.Equal(v.participation, []int{0, 2}) {
		t.Errorf("participation %v, want two agents in one round", v.participation)
	}
	if len(v.online) != 2 || v.online[0].Value != 3 || !v.online[1].Time.Equal(at(3)) {
		t.Errorf("online samples %v, want 3 at 0 s and at 3 s (ticks ≥ 2 s apart)", v.online)
	}
}

// TestRejectReasonsAreBounded checks that upload rejections are labelled by the
// protocol's named codes, and that a number a peer made up becomes "other".
func TestRejectReasonsAreBounded(t *testing.T) {
	m := newMetrics(func() float64 { return 0 })
	for _, err := range []error{
		protocol.NewError(protocol.CodeStaleBase, "old"),
		protocol.NewError(protocol.CodeInvalid, "NaN"),
		protocol.NewError(protocol.ErrorCode(60001), "made up"),
		protocol.NewError(protocol.ErrorCode(60002), "made up too"),
		errors.New("plain"),
	} {
		m.reject(err)
	}
	want := map[string]float64{"stale-base": 1, "invalid": 1, "other": 2, "internal": 1}
	if n := testutil.CollectAndCount(m.rejected); n != len(want) {
		t.Errorf("%d reasons, want %d", n, len(want))
	}
	for reason, n := range want {
		if got := testutil.ToFloat64(m.rejected.WithLabelValues(reason)); got != n {
			t.Errorf("rejected{reason=%q} = %v, want %v", reason, got, n)
		}
	}
}

// TestVersionGauges checks the gauges of a private task's latest version, set when the
// task is added (or restored) and when a round commits.
func TestVersionGauges(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfg: Config{Now: time.Now}}
	s.metrics = newMetrics(func() float64 { return 0 })
	r := newRounds(s)
	spec := &task.Spec{Name: "p", Privacy: &task.Privacy{Mode: task.Central, Epsilon: 4, Delta: 1e-5}}
	tm := &taskModel{spec: spec, version: store.Version{Number: 7, Metrics: map[string]float64{"accuracy": 0.9, "test_loss": 0.3, "train_loss": 0.4},
		Privacy: &store.PrivacySpent{Epsilon: 1.5}}}
	r.tasks["p"] = tm
	r.observe(engine.TaskAdded{State: engine.TaskState{Spec: spec}}, nil)
	gauges := func() []float64 {
		return []float64{testutil.ToFloat64(s.metrics.version.WithLabelValues("p")), testutil.ToFloat64(s.metrics.accuracy.WithLabelValues("p")),
			testutil.ToFloat64(s.metrics.loss.WithLabelValues("p")), testutil.ToFloat64(s.metrics.trainLoss.WithLabelValues("p")),
			testutil.ToFloat64(s.metrics.epsilon.WithLabelValues("p")), testutil.ToFloat64(s.metrics.budget.WithLabelValues("p"))}
	}
	if got, want := gauges(), []float64{7, 0.9, 0.3, 0.4, 1.5, 4}; !slices.Equal(got, want) {
		t.Errorf("after TaskAdded: version, accuracy, loss, train loss, ε, budget = %v, want %v", got, want)
	}
	// A version without a test loss (no central evaluation): the loss is the training loss.
	tm.version = store.Version{Number: 8, Metrics: map[string]float64{"train_loss": 0.2}, Privacy: &store.PrivacySpent{Epsilon: 2}}
	r.observe(engine.Committed{TaskID: "p.r2.a1.x", Version: engine.Version{Number: 8}}, nil)
	if n := testutil.CollectAndCount(s.metrics.accuracy); n != 0 {
		t.Errorf("after a version without accuracy: %d accuracy series, want none (no stale figure)", n)
	}
	if got, want := gauges(), []float64{8, 0, 0.2, 0.2, 2, 4}; !slices.Equal(got, want) {
		t.Errorf("after Committed: %v, want %v", got, want)
	}
}
