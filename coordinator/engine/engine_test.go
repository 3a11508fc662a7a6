package engine

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedq/fedq/coordinator/task"
)

func spec(t testing.TB, agents int, fraction float64) *task.Spec {
	t.Helper()
	s := &task.Spec{Name: "mnist", Model: json.RawMessage(`"2nn"`), Dataset: "mnist",
		Train: task.Train{Epochs: 1, Batch: 10, LR: 0.1}, AgentsPerRound: agents, Fraction: fraction, Seed: 7,
		Deadlines: task.Deadlines{Configure: task.Duration(5 * time.Second), Train: task.Duration(time.Minute)}}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	return s
}

// behaviour of a simulated agent.
type behaviour struct {
	decline, dropConfigure, dropTrain, straggle, badUpload float64
	// reconnect is the share of accepted agents whose connection breaks while they
	// train and who come back in a new session before the old one's end is noticed:
	// the driver then reports only AgentUp (it ignores the end of a replaced session),
	// and the agent's task died with the old session.
	reconnect float64
}

// simEvent is an event due at a time.
type simEvent struct {
	at  time.Time
	seq int
	ev  Event
}

type eventQueue []simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// sim is a driver with simulated agents, a durable store and optional crashes.
type sim struct {
	t        *testing.T
	rng      *rand.Rand
	now      time.Time
	eng      *Engine
	spec     *task.Spec
	beh      behaviour
	online   map[string]bool
	q        eventQueue
	seq      int
	actions  int
	crashAt  map[int]bool // crash after these action counts
	crashes  int
	taskIDs  map[string]bool // every task ID ever started
	durable  TaskState
	versions []Version // versions[i].Number == i
	commits  map[uint64]int
	failures int
	stopped  string // why the task stopped early
}

func newSim(t *testing.T, n int, s *task.Spec, beh behaviour, seed uint64) *sim {
	sm := &sim{t: t, rng: rand.New(rand.NewPCG(seed, 99)), now: time.Unix(1e9, 0), spec: s, beh: beh, online: map[string]bool{},
		crashAt: map[int]bool{}, commits: map[uint64]int{}, taskIDs: map[string]bool{}}
	sm.versions = []Version{{Number: 0, Hash: [32]byte{1}}}
	sm.durable = TaskState{Spec: s, Status: Idle, Round: 1, Base: sm.versions[0]}
	for i := range n {
		sm.online[fmt.Sprintf("agent-%05d", i)] = true
	}
	sm.boot()
	return sm
}

// boot builds a fresh engine from the durable state and the online agents, as a
// restarted coordinator does.
func (sm *sim) boot() {
	sm.eng = New(fmt.Sprintf("boot%d", sm.crashes))
	sm.apply(Tick{Now: sm.now})
	sm.apply(TaskAdded{State: sm.durable})
	ids := make([]string, 0, len(sm.online))
	for id := range sm.online {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		sm.apply(AgentUp{ID: id, Datasets: []string{"mnist"}})
	}
}

func (sm *sim) later(d time.Duration, ev Event) {
	sm.seq++
	heap.Push(&sm.q, simEvent{at: sm.now.Add(d), seq: sm.seq, ev: ev})
}

func (sm *sim) apply(ev Event) {
	for _, a := range sm.eng.Step(ev) {
		sm.do(a)
		sm.actions++
		if sm.crashAt[sm.actions] {
			sm.crashes++
			sm.boot() // everything in memory is lost; pending agent events stay in flight
			return
		}
	}
}

func (sm *sim) jitter(max time.Duration) time.Duration {
	return time.Duration(sm.rng.Int64N(int64(max)))
}

func (sm *sim) do(a Action) {
	switch a := a.(type) {
	case StartRound:
		if a.Round != sm.durable.Round || a.Base != sm.durable.Base {
			sm.t.Fatalf("round %d from %v started, durable state is round %d at %v", a.Round, a.Base, sm.durable.Round, sm.durable.Base)
		}
		if sm.taskIDs[a.TaskID] {
			sm.t.Fatalf("task ID %s reused", a.TaskID)
		}
		sm.taskIDs[a.TaskID] = true
	case SendOffer:
		switch r := sm.rng.Float64(); {
		case r < sm.beh.decline:
			sm.later(sm.jitter(time.Second), Declined{Agent: a.Agent, TaskID: a.TaskID, Reason: "busy"})
		case r < sm.beh.decline+sm.beh.dropConfigure:
			sm.later(sm.jitter(time.Second), agentGone{a.Agent})
		default:
			sm.later(sm.jitter(time.Second), Accepted{Agent: a.Agent, TaskID: a.TaskID})
			switch r2 := sm.rng.Float64(); {
			case r2 < sm.beh.dropTrain:
				sm.later(time.Second+sm.jitter(20*time.Second), agentGone{a.Agent})
			case r2 < sm.beh.dropTrain+sm.beh.straggle:
				// never delivers
			case r2 < sm.beh.dropTrain+sm.beh.straggle+sm.beh.reconnect:
				sm.later(time.Second+sm.jitter(20*time.Second), agentBack{a.Agent})
			default:
				sm.later(time.Second+sm.jitter(30*time.Second), upload{agent: a.Agent, taskID: a.TaskID, round: a.Round, base: a.Base,
					bad: sm.rng.Float64() < sm.beh.badUpload})
			}
		}
	case CommitRound:
		if a.Updates < sm.spec.MinUpdates(1) || a.Base != sm.durable.Base || a.Round != sm.durable.Round {
			sm.t.Fatalf("bad commit %+v (durable %+v)", a, sm.durable)
		}
		v := Version{Number: uint64(len(sm.versions)), Hash: [32]byte{byte(len(sm.versions)), 2}}
		sm.versions = append(sm.versions, v)
		sm.commits[a.Round]++
		sm.durable.Base, sm.durable.Round = v, a.Round+1
		sm.durable.RoundsLeft--
		if sm.durable.RoundsLeft == 0 {
			sm.durable.Status = Done
		}
		sm.later(10*time.Millisecond, Committed{TaskID: a.TaskID, Version: v})
	case FailRound:
		sm.failures++
	case TaskFinished:
		if a.Reason != "" {
			sm.durable.Status, sm.durable.RoundsLeft = Exhausted, 0
			sm.stopped = a.Reason
		}
	case CancelOffer:
	}
}

// Driver-side pseudo-events.
type agentGone struct{ id string }
type upload struct {
	agent, taskID string
	round         uint64
	base          Version
	bad           bool
}

func (agentGone) event() {}
func (upload) event()    {}

// run processes events until the task is done or the clock passes limit.
func (sm *sim) run(limit time.Duration) {
	end := sm.now.Add(limit)
	sm.later(0, Tick{})
	for sm.durable.Status != Done && sm.durable.Status != Exhausted && sm.now.Before(end) {
		if sm.q.Len() == 0 || sm.q[0].at.After(sm.now.Add(100*time.Millisecond)) {
			sm.now = sm.now.Add(100 * time.Millisecond)
			sm.apply(Tick{Now: sm.now})
			continue
		}
		se := heap.Pop(&sm.q).(simEvent)
		if se.at.After(sm.now) {
			sm.now = se.at
		}
		switch ev := se.ev.(type) {
		case agentGone:
			if sm.online[ev.id] {
				delete(sm.online, ev.id)
				sm.apply(AgentDown{ID: ev.id})
				// It comes back a little later, as reconnecting agents do.
				sm.later(5*time.Second, agentBack(ev))
			}
		case agentBack:
			sm.online[ev.id] = true
			sm.apply(AgentUp{ID: ev.id, Datasets: []string{"mnist"}})
		case upload:
			if !sm.online[ev.agent] {
				continue
			}
			if err := sm.eng.Admit(ev.agent, ev.taskID, ev.round, ev.base); err != nil {
				continue // refused: an old attempt, a closed round, a duplicate
			}
			if ev.bad {
				sm.apply(UpdateFailed{Agent: ev.agent, TaskID: ev.taskID})
			} else {
				sm.apply(UpdateReceived{Agent: ev.agent, TaskID: ev.taskID, Examples: 600, Loss: 0.5})
			}
		case Tick:
			sm.apply(Tick{Now: sm.now})
		default:
			sm.apply(ev)
		}
	}
}

type agentBack struct{ id string }

func (agentBack) event() {}

// check verifies the durable invariants: contiguous versions, each round committed once.
func (sm *sim) check(rounds int) {
	sm.t.Helper()
	if sm.durable.Status != Done {
		sm.t.Fatalf("task not done: %+v after %d actions, %d failures", sm.durable, sm.actions, sm.failures)
	}
	if len(sm.versions) != rounds+1 {
		sm.t.Fatalf("%d versions for %d rounds", len(sm.versions), rounds)
	}
	for i, v := range sm.versions {
		if v.Number != uint64(i) {
			sm.t.Fatalf("version %d numbered %d", i, v.Number)
		}
	}
	for r := uint64(1); r <= uint64(rounds); r++ {
		if sm.commits[r] != 1 {
			sm.t.Fatalf("round %d committed %d times", r, sm.commits[r])
		}
	}
}

func TestRoundsHappyPath(t *testing.T) {
	sm := newSim(t, 100, spec(t, 10, 0), behaviour{}, 1)
	sm.durable.Status, sm.durable.RoundsLeft = Running, 20
	sm.apply(RoundsRequested{Task: "mnist", N: 20})
	sm.run(time.Hour)
	sm.check(20)
	if sm.failures != 0 {
		t.Fatalf("%d failed rounds with perfect agents", sm.failures)
	}
}

func TestTenThousandAgentsThirtyPercentDropout(t *testing.T) {
	for _, beh := range []behaviour{
		{dropConfigure: 0.3},
		{dropTrain: 0.3},
		{decline: 0.1, dropConfigure: 0.1, dropTrain: 0.1, straggle: 0.1, badUpload: 0.05},
	} {
		t.Run(fmt.Sprintf("%+v", beh), func(t *testing.T) {
			sm := newSim(t, 10000, spec(t, 0, 0.01), beh, 2)
			sm.durable.Status, sm.durable.RoundsLeft = Running, 10
			sm.apply(RoundsRequested{Task: "mnist", N: 10})
			sm.run(24 * time.Hour)
			sm.check(10)
		})
	}
}

// TestCrashAfterEveryAction replays a federation many times, crashing the engine after
// the k-th action for every k up to the run's length: the durable state must always end
// with the requested rounds committed once each and contiguous versions.
func TestCrashAfterEveryAction(t *testing.T) {
	base := newSim(t, 30, spec(t, 5, 0), behaviour{dropTrain: 0.2, straggle: 0.1}, 3)
	base.durable.Status, base.durable.RoundsLeft = Running, 5
	base.apply(RoundsRequested{Task: "mnist", N: 5})
	base.run(24 * time.Hour)
	base.check(5)
	total := base.actions
	if total < 50 {
		t.Fatalf("only %d actions: the scenario is too small to test much", total)
	}
	for k := 1; k <= total; k++ {
		sm := newSim(t, 30, spec(t, 5, 0), behaviour{dropTrain: 0.2, straggle: 0.1}, 3)
		sm.crashAt[k] = true
		sm.durable.Status, sm.durable.RoundsLeft = Running, 5
		sm.apply(RoundsRequested{Task: "mnist", N: 5})
		sm.run(24 * time.Hour)
		sm.check(5)
		if sm.crashes != 1 {
			t.Fatalf("crash at action %d did not happen", k)
		}
	}
}

// TestReconnectedAgentLeavesItsRound: an agent whose connection broke while it trained
// comes back in a new session before its old session's end is noticed (the driver then
// reports AgentUp only). Its task died with the old session, so the round must not wait
// for it until the train deadline (here an hour): it goes on with the others.
func TestReconnectedAgentLeavesItsRound(t *testing.T) {
	s := spec(t, 10, 0)
	s.Deadlines.Train = task.Duration(time.Hour)
	sm := newSim(t, 100, s, behaviour{reconnect: 0.3}, 6)
	sm.durable.Status, sm.durable.RoundsLeft = Running, 5
	sm.apply(RoundsRequested{Task: "mnist", N: 5})
	start := sm.now
	sm.run(30 * time.Minute)
	sm.check(5)
	if took := sm.now.Sub(start); took > 5*time.Minute {
		t.Fatalf("5 rounds took %v: rounds waited for agents that had reconnected", took)
	}
}

func TestBelowQuorumRoundFailsAndVersionStays(t *testing.T) {
	s := spec(t, 10, 0)
	s.Quorum = 8
	sm := newSim(t, 12, s, behaviour{straggle: 0.6}, 4)
	sm.durable.Status, sm.durable.RoundsLeft = Running, 1
	sm.apply(RoundsRequested{Task: "mnist", N: 1})
	sm.run(10 * time.Minute)
	if sm.failures == 0 {
		t.Fatal("no round failed though most agents straggle")
	}
	if len(sm.versions) > 2 {
		t.Fatalf("versions moved too far: %d", len(sm.versions))
	}
}

func TestAdmitRefusals(t *testing.T) {
	e := New("b")
	e.Step(Tick{Now: time.Unix(1e9, 0)})
	s := spec(t, 2, 0)
	base := Version{Number: 3, Hash: [32]byte{3}}
	e.Step(TaskAdded{State: TaskState{Spec: s, Status: Idle, Round: 4, Base: base}})
	for _, id := range []string{"a", "b", "c"} {
		e.Step(AgentUp{ID: id, Datasets: []string{"mnist"}})
	}
	acts := e.Step(RoundsRequested{Task: "mnist", N: 1})
	var sr StartRound
	for _, a := range acts {
		if a, ok := a.(StartRound); ok {
			sr = a
		}
	}
	if sr.TaskID == "" || len(sr.Selected) != 3 {
		t.Fatalf("no round started: %+v", acts)
	}
	in, out := sr.Selected[0], "zz"
	cases := []struct {
		agent, taskID string
		round         uint64
		base          Version
		want          string
	}{
		{in, "mnist.r3.a1.b", 3, base, "not running"},
		{in, sr.TaskID, 3, base, "round 3"},
		{in, sr.TaskID, 4, Version{Number: 2}, "trained from version 2"},
		{out, sr.TaskID, 4, base, "not selected"},
	}
	for _, c := range cases {
		if err := e.Admit(c.agent, c.taskID, c.round, c.base); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Admit(%+v) = %v, want %q", c, err, c.want)
		}
	}
	if err := e.Admit(in, sr.TaskID, 4, base); err != nil {
		t.Fatal(err)
	}
	if err := e.Admit(in, sr.TaskID, 4, base); err == nil || !strings.Contains(err.Error(), "already sent") {
		t.Fatalf("duplicate admitted: %v", err)
	}
}

// privateSpec is a task with central DP whose budget allows a few rounds.
func privateSpec(t testing.TB, fraction float64) *task.Spec {
	t.Helper()
	s := &task.Spec{Name: "mnist", Model: json.RawMessage(`"2nn"`), Dataset: "mnist",
		Train: task.Train{Epochs: 1, Batch: 10, LR: 0.1}, Fraction: fraction, Seed: 7,
		Deadlines: task.Deadlines{Configure: task.Duration(5 * time.Second), Train: task.Duration(time.Minute)},
		Privacy:   &task.Privacy{Mode: task.Central, Clip: 1, NoiseMultiplier: 1, Epsilon: 6, Delta: 1e-5}}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPrivacyBudgetStopsRounds asks for more rounds than a private task's budget allows,
// with a crash at every action of the run: the engine commits exactly the rounds that
// fit, refuses the next, and says why — also after the restarts.
func TestPrivacyBudgetStopsRounds(t *testing.T) {
	s := privateSpec(t, 0.2)
	allowed := int(s.Privacy.MaxRounds())
	if allowed < 2 || allowed > 30 {
		t.Fatalf("the test wants a budget of a few rounds, got %d", allowed)
	}
	run := func(crashAt int) *sim {
		sm := newSim(t, 50, s, behaviour{}, 5)
		if crashAt > 0 {
			sm.crashAt[crashAt] = true
		}
		sm.durable.Status, sm.durable.RoundsLeft = Running, allowed+5
		sm.apply(RoundsRequested{Task: "mnist", N: allowed + 5})
		sm.run(24 * time.Hour)
		if sm.durable.Status != Exhausted || len(sm.versions) != allowed+1 || !strings.Contains(sm.stopped, "privacy budget exhausted") {
			t.Fatalf("crash at %d: status %s, %d versions (budget: %d rounds), stopped %q", crashAt, sm.durable.Status, len(sm.versions)-1, allowed, sm.stopped)
		}
		return sm
	}
	total := run(0).actions
	for k := 1; k <= total; k += 7 {
		run(k)
	}
	// Spent ε: within the budget after the last round, beyond it one round later.
	if e, _ := s.Spent(uint64(allowed)); e > s.Privacy.Epsilon {
		t.Fatalf("ε after %d rounds = %v > %v", allowed, e, s.Privacy.Epsilon)
	}
	if e, _ := s.Spent(uint64(allowed + 1)); e <= s.Privacy.Epsilon {
		t.Fatalf("ε after %d rounds = %v fits %v", allowed+1, e, s.Privacy.Epsilon)
	}
}

// TestPoissonSampling checks that a private task samples each agent independently with
// probability fraction: the number selected per round has the binomial's mean and
// spread, and every agent is selected about as often.
func TestPoissonSampling(t *testing.T) {
	const agents, q, rounds = 400, 0.1, 300
	s := privateSpec(t, q)
	e := New("b")
	e.Step(Tick{Now: time.Unix(1e9, 0)})
	e.Step(TaskAdded{State: TaskState{Spec: s, Status: Idle, Round: 1}})
	for i := range agents {
		e.Step(AgentUp{ID: fmt.Sprintf("a%03d", i), Datasets: []string{"mnist"}})
	}
	counts := map[string]int{}
	var sizes []float64
	for r := range rounds {
		task := e.tasks["mnist"]
		task.Round = uint64(1 + r%int(s.Privacy.MaxRounds()))
		for _, a := range e.start(task) {
			if sr, ok := a.(StartRound); ok {
				sizes = append(sizes, float64(len(sr.Selected)))
				if sr.Eligible != agents {
					t.Fatalf("eligible %d", sr.Eligible)
				}
				for _, id := range sr.Selected {
					counts[id]++
				}
			}
		}
		// Give the agents back, as a finished round does.
		for id := range e.agents {
			e.agents[id].busy = ""
		}
		delete(e.byID, task.cur.taskID)
		task.cur = nil
	}
	var mean, sq float64
	for _, n := range sizes {
		mean += n
	}
	mean /= float64(len(sizes))
	for _, n := range sizes {
		sq += (n - mean) * (n - mean)
	}
	sd := math.Sqrt(sq / float64(len(sizes)-1))
	wantMean, wantSD := agents*q, math.Sqrt(agents*q*(1-q))
	if math.Abs(mean-wantMean) > 4*wantSD/math.Sqrt(rounds) || math.Abs(sd-wantSD) > 0.25*wantSD {
		t.Fatalf("sample sizes: mean %.2f sd %.2f, want %.2f and %.2f", mean, sd, wantMean, wantSD)
	}
	for id, c := range counts {
		if math.Abs(float64(c)-rounds*q) > 6*math.Sqrt(rounds*q*(1-q)) {
			t.Fatalf("agent %s selected %d times in %d rounds", id, c, rounds)
		}
	}
}

// TestFixedSizeSampling checks fixed-size sampling: with more agents eligible than the
// task's population, every round selects exactly m = round(fraction × population)
// distinct agents out of all the eligible ones, each agent about m/eligible of the time;
// and no round starts while fewer than population agents are eligible.
func TestFixedSizeSampling(t *testing.T) {
	const agents, population, q, rounds = 400, 300, 0.1, 300
	const m = 30 // round(q × population)
	s := privateSpec(t, q)
	s.Privacy.Sampling, s.Privacy.Population, s.Privacy.NoiseMultiplier = "fixed", population, 2
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	if s.Privacy.SampleSize() != m {
		t.Fatalf("sample size %d, want %d", s.Privacy.SampleSize(), m)
	}
	e := New("b")
	e.secure = rand.New(rand.NewChaCha8([32]byte{7})) // deterministic, for the test
	e.Step(Tick{Now: time.Unix(1e9, 0)})
	e.Step(TaskAdded{State: TaskState{Spec: s, Status: Idle, Round: 1}})
	task := e.tasks["mnist"]
	task.Status, task.RoundsLeft = Running, 1
	// Below the population the round waits, however many a round would sample.
	for i := range population - 1 {
		if acts := e.Step(AgentUp{ID: fmt.Sprintf("a%03d", i), Datasets: []string{"mnist"}}); len(acts) != 0 {
			t.Fatalf("%d agents eligible, population %d: %v", i+1, population, acts)
		}
	}
	if task.cur != nil || !task.waiting {
		t.Fatalf("round started below the population")
	}
	acts := e.Step(AgentUp{ID: fmt.Sprintf("a%03d", population-1), Datasets: []string{"mnist"}})
	if len(acts) == 0 || task.cur == nil || len(task.cur.order) != m || task.cur.aim != m {
		t.Fatalf("at the population: %d actions, round %+v", len(acts), task.cur)
	}
	task.Status, task.RoundsLeft = Idle, 0
	for id := range e.agents {
		e.agents[id].busy = ""
	}
	delete(e.byID, task.cur.taskID)
	task.cur = nil
	for i := population; i < agents; i++ {
		e.Step(AgentUp{ID: fmt.Sprintf("a%03d", i), Datasets: []string{"mnist"}})
	}

	counts := map[string]int{}
	for r := range rounds {
		task.Round = uint64(1 + r%int(s.Privacy.MaxRounds()))
		started := false
		for _, a := range e.start(task) {
			sr, ok := a.(StartRound)
			if !ok {
				continue
			}
			started = true
			if sr.Eligible != agents || len(sr.Selected) != m {
				t.Fatalf("round %d: %d selected of %d eligible, want %d of %d", r, len(sr.Selected), sr.Eligible, m, agents)
			}
			seen := map[string]bool{}
			for _, id := range sr.Selected {
				if seen[id] {
					t.Fatalf("round %d: %s selected twice", r, id)
				}
				seen[id] = true
				counts[id]++
			}
		}
		if !started {
			t.Fatalf("round %d did not start", r)
		}
		for id := range e.agents {
			e.agents[id].busy = ""
		}
		delete(e.byID, task.cur.taskID)
		task.cur = nil
	}
	// Each agent is in a round's sample with probability m/agents, independently across
	// rounds: its count is Binomial(rounds, m/agents); 6 standard deviations bound all 400.
	p := float64(m) / agents
	if len(counts) < agents*9/10 {
		t.Fatalf("only %d of %d agents ever selected", len(counts), agents)
	}
	for i := range agents {
		id := fmt.Sprintf("a%03d", i)
		if c := counts[id]; math.Abs(float64(c)-rounds*p) > 6*math.Sqrt(rounds*p*(1-p)) {
			t.Fatalf("agent %s selected %d times in %d rounds, expected %.1f", id, c, rounds, rounds*p)
		}
	}
}
