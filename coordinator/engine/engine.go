// Package engine is the coordinator's round engine: a pure state machine in the style
// of etcd's raft. The driver feeds it events — agents coming and going, their replies,
// the results of its own actions, and the clock's ticks — and carries out the actions it
// returns: send an offer, start, commit or fail a round. The engine does no I/O and
// reads no clock (its one source of randomness not seeded by the task is the private
// tasks' sampling), so a test can run ten thousand agents, drop any of them in any phase,
// and replay a crash after any action, deterministically, in milliseconds.
//
// A round of a task goes:
//
//	select    eligible agents (online, with the task's dataset, not busy elsewhere);
//	          the round starts once at least its quorum is eligible, and selects
//	          over_select × its aim of them, in a seeded random order — or, for a
//	          task with central differential privacy, each eligible agent independently with
//	          probability fraction (Poisson sampling, from a secure source), or with
//	          fixed-size sampling exactly round(fraction × population) of them, uniformly
//	          without replacement (once at least privacy.population are eligible), and
//	          only while the task's privacy budget allows one more round
//	configure offers out; accept or decline until every offer is answered or the
//	          configure deadline passes; below quorum accepted, the round fails
//	train     updates arrive; the round ends as soon as its aim has arrived (the
//	          other agents are cancelled: stragglers), every accepted agent is
//	          done, or the train deadline passes
//	commit    with at least quorum updates, the driver aggregates, stores the new
//	          version and reports Committed; with fewer, the round fails
//
// A task with secure aggregation adds key-exchange phases, each closed by the driver
// (CloseSecAgg), which runs the protocol and reports who is still in (SecAggClosed) or
// that the round cannot go on (SecAggFailed):
//
//	configure, then advertise keys   accepted agents advertise their keys
//	share keys                       agents still in send their encrypted shares
//	train                            masked updates arrive, as above
//	unmask                           the survivors reveal shares; then commit
//
// Each key-exchange phase ends when every agent still in has answered or the task's
// secure-aggregation deadline passes; agents that did not answer are out of the round.
//
// A failed round leaves the task's version where it was and is tried again with a new
// attempt number. Round numbers only advance on commit, so versions stay contiguous. A
// task ID names (task, round, attempt, boot), where boot is unique to each start of the
// coordinator, so an update from an earlier attempt — a replay, or an agent that did not
// notice a coordinator restart — is refused, without writing every attempt to disk.
package engine

import (
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/protocol"
)

// Version identifies a committed model version.
type Version struct {
	Number uint64
	Hash   protocol.Hash
}

// Status of a task.
type Status string

// Task statuses.
const (
	// Idle: no rounds requested.
	Idle Status = "idle"
	// Running: rounds requested and not all done.
	Running Status = "running"
	// Done: the requested rounds committed.
	Done Status = "done"
	// Exhausted: the task's privacy budget allows no further round.
	Exhausted Status = "budget_exhausted"
)

// TaskState is a task's durable state, from which the engine (re)starts it.
type TaskState struct {
	Spec *task.Spec
	// Status says whether rounds are wanted.
	Status Status
	// Round is the next round to run: committed rounds + 1.
	Round uint64
	// RoundsLeft is how many more rounds to commit.
	RoundsLeft int
	// Base is the task's latest version, which the next round trains from.
	Base Version
}

// Phase of a round.
type Phase string

// Phases.
const (
	PhaseConfigure Phase = "configure"
	PhaseAdvertise Phase = "advertise_keys"
	PhaseShare     Phase = "share_keys"
	PhaseTrain     Phase = "train"
	PhaseUnmask    Phase = "unmask"
	PhaseCommit    Phase = "commit"

	phaseQuit Phase = "quit" // an agent's answer to no phase: it left the round
)

// Events.
type (
	// Event is an input of the engine.
	Event interface{ event() }
	// Tick advances the engine's clock; deadlines are checked on ticks.
	Tick struct{ Now time.Time }
	// AgentUp: an agent connected, offering these datasets. For an agent the engine
	// knows, it is a new session, which ends the agent's part in its round.
	AgentUp struct {
		ID       string
		Datasets []string
	}
	// AgentDown: an agent's session ended.
	AgentDown struct{ ID string }
	// TaskAdded: a task exists (submitted now, or restored from the store).
	TaskAdded struct{ State TaskState }
	// RoundsRequested: run n more rounds of a task.
	RoundsRequested struct {
		Task string
		N    int
	}
	// Accepted: an agent accepted its offer.
	Accepted struct{ Agent, TaskID string }
	// Declined: an agent declined its offer.
	Declined struct {
		Agent, TaskID string
		Reason        string
	}
	// UpdateReceived: an agent's update arrived whole, checked, and was folded in.
	UpdateReceived struct {
		Agent, TaskID string
		Examples      uint64
		Loss          float64
	}
	// UpdateFailed: an admitted upload failed (broken stream, bad values).
	UpdateFailed struct {
		Agent, TaskID string
		Err           error
	}
	// Committed: the driver stored the version of a round.
	Committed struct {
		TaskID  string
		Version Version
	}
	// CommitFailed: the driver could not store the round's version.
	CommitFailed struct {
		TaskID string
		Err    error
	}
	// SecAggSent: an agent's message of a secure-aggregation phase was taken.
	SecAggSent struct {
		Agent, TaskID string
		Phase         Phase
	}
	// SecAggClosed: the driver closed a secure-aggregation phase (see CloseSecAgg); In
	// are the agents still in the round.
	SecAggClosed struct {
		TaskID string
		Phase  Phase
		In     []string
	}
	// SecAggFailed: secure aggregation cannot complete the round (too few agents left,
	// or a secret that does not reconstruct).
	SecAggFailed struct {
		TaskID, Reason string
	}
)

func (Tick) event()            {}
func (AgentUp) event()         {}
func (AgentDown) event()       {}
func (TaskAdded) event()       {}
func (RoundsRequested) event() {}
func (Accepted) event()        {}
func (Declined) event()        {}
func (UpdateReceived) event()  {}
func (UpdateFailed) event()    {}
func (Committed) event()       {}
func (CommitFailed) event()    {}
func (SecAggSent) event()      {}
func (SecAggClosed) event()    {}
func (SecAggFailed) event()    {}

// Actions.
type (
	// Action is an output of the engine, for the driver to carry out in order.
	Action interface{ action() }
	// StartRound: a round attempt begins. The driver prepares an aggregator; the offers
	// follow.
	StartRound struct {
		Task     string
		Round    uint64
		Attempt  uint32
		TaskID   string
		Base     Version
		Deadline time.Time
		Selected []string
		// Eligible is how many agents could have been selected (the population that a
		// Poisson sample was drawn from).
		Eligible int
	}
	// SendOffer: offer an agent the round's task.
	SendOffer struct {
		Agent    string
		Task     string
		TaskID   string
		Round    uint64
		Base     Version
		Deadline time.Time
	}
	// CancelOffer: tell an agent its task is off (the round ended without it).
	CancelOffer struct {
		Agent, TaskID string
		Reason        string
	}
	// CommitRound: aggregate the round's updates into a new version and store it, then
	// report Committed or CommitFailed.
	CommitRound struct {
		Task         string
		Round        uint64
		Attempt      uint32
		TaskID       string
		Base         Version
		Updates      int
		Examples     uint64
		Loss         float64 // example-weighted mean training loss
		Participants []string
	}
	// FailRound: the attempt ended without a version; record why and discard its
	// aggregator.
	FailRound struct {
		Task    string
		Round   uint64
		Attempt uint32
		TaskID  string
		Reason  string
	}
	// TaskFinished: the task's requested rounds are all committed, or (Reason) it
	// cannot run more.
	TaskFinished struct{ Task, Reason string }
	// CloseSecAgg: a phase of a secure round is over (Phase: advertise_keys,
	// share_keys, or train for the masked inputs). The driver closes it in the
	// protocol, sends the next phase's messages, and reports SecAggClosed or
	// SecAggFailed.
	CloseSecAgg struct {
		Task, TaskID string
		Phase        Phase
	}
)

func (StartRound) action()   {}
func (SendOffer) action()    {}
func (CancelOffer) action()  {}
func (CommitRound) action()  {}
func (FailRound) action()    {}
func (TaskFinished) action() {}
func (CloseSecAgg) action()  {}

// part is an agent's state in a round.
type part int

const (
	offered part = iota
	accepted
	uploading
	delivered
	declined
	failed
	dropped
	cancelled
)

func (p part) final() bool { return p >= delivered }

// round is a running attempt.
type round struct {
	round    uint64
	attempt  uint32
	taskID   string
	base     Version
	aim      int
	quorum   int
	phase    Phase
	start    time.Time
	configBy time.Time
	trainBy  time.Time
	parts    map[string]part
	order    []string // selected agents, in offer order
	updates  int
	examples uint64
	lossSum  float64
	// Secure aggregation.
	secure   bool
	saBy     time.Time        // the running key-exchange phase's deadline
	sent     map[string]Phase // the last key-exchange phase each agent answered
	closing  bool             // CloseSecAgg is out, SecAggClosed not yet in
	saPeriod time.Duration
}

type taskRun struct {
	TaskState
	attempt uint32 // attempts of Round started in this boot
	cur     *round
	waiting bool // last check found too few eligible agents
}

type agentInfo struct {
	datasets []string
	busy     string // task ID of the round it is in, or ""
}

// Engine is the round engine. It is not safe for concurrent use: the driver calls it
// from one goroutine.
type Engine struct {
	boot   string
	now    time.Time
	agents map[string]*agentInfo
	tasks  map[string]*taskRun
	order  []string // task names in submission order
	byID   map[string]string
	secure *rand.Rand // agent sampling of private tasks (Poisson or fixed-size)
}

// New returns an engine with no agents and no tasks; start it with Tick and TaskAdded.
// boot must differ between starts of the coordinator (a random string); it makes task
// IDs unique across restarts.
func New(boot string) *Engine {
	var key [32]byte
	crand.Read(key[:])
	return &Engine{boot: boot, agents: map[string]*agentInfo{}, tasks: map[string]*taskRun{}, byID: map[string]string{},
		secure: rand.New(rand.NewChaCha8(key))}
}

// TaskID names an attempt of a round of a task, in one start of the coordinator.
func TaskID(taskName string, round uint64, attempt uint32, boot string) string {
	return fmt.Sprintf("%s.r%d.a%d.%s", taskName, round, attempt, boot)
}

// Step applies one event and returns the actions it calls for.
func (e *Engine) Step(ev Event) []Action {
	var out []Action
	switch ev := ev.(type) {
	case Tick:
		if ev.Now.After(e.now) {
			e.now = ev.Now
		}
	case AgentUp:
		if a := e.agents[ev.ID]; a != nil {
			// A new session of a known agent: the earlier one ended, and with it the
			// agent's part in its round. The driver may see the new session begin
			// before the old one's end, whose AgentDown then never comes (it would
			// take the new session down): without this, the round would wait for the
			// agent until its train deadline.
			if r := e.drop(ev.ID, a); r != nil {
				out = append(out, CancelOffer{Agent: ev.ID, TaskID: r.taskID, Reason: "the agent's session ended"})
			}
			a.datasets = slices.Clone(ev.Datasets)
		} else {
			e.agents[ev.ID] = &agentInfo{datasets: slices.Clone(ev.Datasets)}
		}
	case AgentDown:
		a := e.agents[ev.ID]
		if a == nil {
			return nil
		}
		e.drop(ev.ID, a)
		delete(e.agents, ev.ID)
	case TaskAdded:
		st := ev.State
		if st.Round == 0 {
			st.Round = 1
		}
		if _, ok := e.tasks[st.Spec.Name]; !ok {
			e.order = append(e.order, st.Spec.Name)
		}
		e.tasks[st.Spec.Name] = &taskRun{TaskState: st}
	case RoundsRequested:
		t := e.tasks[ev.Task]
		if t == nil || ev.N <= 0 {
			return nil
		}
		t.RoundsLeft += ev.N
		t.Status = Running
	case Accepted:
		if r := e.partOf(ev.Agent, ev.TaskID); r != nil && r.parts[ev.Agent] == offered {
			r.parts[ev.Agent] = accepted
		}
	case Declined:
		if r := e.partOf(ev.Agent, ev.TaskID); r != nil && !r.parts[ev.Agent].final() {
			r.parts[ev.Agent] = declined
			e.release(ev.Agent, ev.TaskID)
		} else if r != nil && r.secure && r.phase == PhaseUnmask && r.parts[ev.Agent] == delivered {
			r.sent[ev.Agent] = phaseQuit // a survivor that will not reveal: wait no more for it
		}
	case UpdateReceived:
		if r := e.partOf(ev.Agent, ev.TaskID); r != nil && r.parts[ev.Agent] == uploading {
			r.parts[ev.Agent] = delivered
			r.updates++
			r.examples += ev.Examples
			r.lossSum += ev.Loss * float64(ev.Examples)
			e.release(ev.Agent, ev.TaskID)
		}
	case UpdateFailed:
		if r := e.partOf(ev.Agent, ev.TaskID); r != nil && r.parts[ev.Agent] == uploading {
			r.parts[ev.Agent] = failed
			e.release(ev.Agent, ev.TaskID)
		}
	case Committed:
		t, r := e.roundOf(ev.TaskID)
		if r == nil || r.phase != PhaseCommit {
			return nil
		}
		t.Base = ev.Version
		t.Round++
		t.attempt = 0
		t.cur = nil
		delete(e.byID, ev.TaskID)
		if t.RoundsLeft > 0 {
			t.RoundsLeft--
		}
		if t.RoundsLeft == 0 {
			t.Status = Done
			out = append(out, TaskFinished{Task: t.Spec.Name})
		}
	case CommitFailed:
		t, r := e.roundOf(ev.TaskID)
		if r == nil || r.phase != PhaseCommit {
			return nil
		}
		out = append(out, e.fail(t, "storing the version failed: "+ev.Err.Error())...)
	case SecAggSent:
		if r := e.partOf(ev.Agent, ev.TaskID); r != nil && r.secure {
			if p := r.parts[ev.Agent]; !p.final() || (p == delivered && ev.Phase == PhaseUnmask) {
				r.sent[ev.Agent] = ev.Phase
			}
		}
	case SecAggClosed:
		t, r := e.roundOf(ev.TaskID)
		if r == nil || !r.secure || !r.closing || ev.Phase != r.phase {
			return nil
		}
		out = append(out, e.secAggClosed(t, r, ev.In)...)
	case SecAggFailed:
		t, r := e.roundOf(ev.TaskID)
		if r == nil || !r.secure {
			return nil
		}
		out = append(out, e.fail(t, "secure aggregation: "+ev.Reason)...)
	}
	return append(out, e.advance()...)
}

// Admit decides whether an upload may begin: the agent must be in the round's train
// phase with an accepted (or still outstanding) offer, against the round's base, and not
// have delivered already. On success the agent is marked as uploading.
func (e *Engine) Admit(agent, taskID string, round uint64, base Version) error {
	t, r := e.roundOf(taskID)
	if r == nil {
		return protocol.NewError(protocol.CodeNotFound, "task %s is not running (an earlier round or attempt?)", taskID)
	}
	if round != r.round {
		return protocol.NewError(protocol.CodeStaleBase, "update for round %d, the task is at round %d", round, r.round)
	}
	if base.Number != r.base.Number || base.Hash != r.base.Hash {
		return protocol.NewError(protocol.CodeStaleBase, "update trained from version %d, round %d of %s trains from version %d",
			base.Number, r.round, t.Spec.Name, r.base.Number)
	}
	p, ok := r.parts[agent]
	switch {
	case !ok:
		return protocol.NewError(protocol.CodePermissionDenied, "agent %s was not selected for %s", agent, taskID)
	case r.phase == PhaseCommit || (r.secure && r.phase == PhaseUnmask):
		return protocol.NewError(protocol.CodeDeadlineExceeded, "round %d of %s is already closed", r.round, t.Spec.Name)
	case r.secure && r.phase != PhaseTrain:
		return protocol.NewError(protocol.CodeInvalid, "a masked update before the keys of %s were shared", taskID)
	case p == delivered || p == uploading:
		return protocol.NewError(protocol.CodeInvalid, "agent %s already sent its update for %s", agent, taskID)
	case p != offered && p != accepted:
		return protocol.NewError(protocol.CodeDeadlineExceeded, "agent %s is no longer part of %s", agent, taskID)
	}
	r.parts[agent] = uploading
	return nil
}

// partOf returns the round in which agent holds a part for taskID.
func (e *Engine) partOf(agent, taskID string) *round {
	_, r := e.roundOf(taskID)
	if r == nil {
		return nil
	}
	if _, ok := r.parts[agent]; !ok {
		return nil
	}
	return r
}

func (e *Engine) roundOf(taskID string) (*taskRun, *round) {
	name, ok := e.byID[taskID]
	if !ok {
		return nil, nil
	}
	t := e.tasks[name]
	if t == nil || t.cur == nil || t.cur.taskID != taskID {
		return nil, nil
	}
	return t, t.cur
}

// drop takes an agent whose session ended out of the round it is in, if it has not
// begun its upload there: an offered or accepted part becomes dropped and the agent is
// free again; it returns that round, or nil. An upload under way ends in UpdateReceived
// or UpdateFailed, which the driver always reports (the update may already be in the
// aggregate); a delivered part stays (a secure round's survivor still reveals its
// shares from a new session).
func (e *Engine) drop(agent string, a *agentInfo) *round {
	_, r := e.roundOf(a.busy)
	if r == nil {
		a.busy = ""
		return nil
	}
	p, ok := r.parts[agent]
	if !ok {
		a.busy = ""
		return nil
	}
	if p != offered && p != accepted {
		return nil
	}
	r.parts[agent] = dropped
	a.busy = ""
	return r
}

// release frees an agent that is done with taskID.
func (e *Engine) release(agent, taskID string) {
	if a := e.agents[agent]; a != nil && a.busy == taskID {
		a.busy = ""
	}
}

// advance moves every task as far as the state allows.
func (e *Engine) advance() []Action {
	var out []Action
	for _, name := range e.order {
		t := e.tasks[name]
		for {
			acts, moved := e.advanceTask(t)
			out = append(out, acts...)
			if !moved {
				break
			}
		}
	}
	return out
}

// advanceTask takes one step of a task; moved says whether to look again.
func (e *Engine) advanceTask(t *taskRun) ([]Action, bool) {
	if t.cur == nil {
		if t.Status != Running || t.RoundsLeft == 0 {
			return nil, false
		}
		if p := t.Spec.Privacy; p != nil && t.Round > p.MaxRounds() {
			// The round would take the task past its privacy budget: refuse it.
			t.Status, t.RoundsLeft = Exhausted, 0
			return []Action{TaskFinished{Task: t.Spec.Name, Reason: fmt.Sprintf(
				"privacy budget exhausted: round %d would spend more than ε = %g (δ = %g)", t.Round, p.Epsilon, p.Delta)}}, false
		}
		return e.start(t), t.cur != nil
	}
	r := t.cur
	switch r.phase {
	case PhaseConfigure:
		answered, acc := 0, 0
		for _, p := range r.parts {
			if p != offered {
				answered++
			}
			if p == accepted || p == uploading || p == delivered {
				acc++
			}
		}
		if answered < len(r.parts) && e.now.Before(r.configBy) {
			return nil, false
		}
		if acc < r.quorum {
			return e.fail(t, fmt.Sprintf("%d of %d selected agents accepted, quorum is %d", acc, len(r.parts), r.quorum)), true
		}
		if r.secure {
			r.phase, r.saBy = PhaseAdvertise, e.now.Add(r.saPeriod)
			return nil, true
		}
		r.phase = PhaseTrain
		return nil, true
	case PhaseAdvertise, PhaseShare, PhaseUnmask:
		if r.closing {
			return nil, false
		}
		waiting := 0
		for a, p := range r.parts {
			if (p == offered || p == accepted || p == delivered) && r.sent[a] != r.phase && r.sent[a] != phaseQuit {
				waiting++
			}
		}
		if waiting > 0 && e.now.Before(r.saBy) {
			return nil, false
		}
		if r.phase == PhaseUnmask {
			return e.commit(t, r), false
		}
		r.closing = true
		return []Action{CloseSecAgg{Task: t.Spec.Name, TaskID: r.taskID, Phase: r.phase}}, false
	case PhaseTrain:
		busy := 0
		for _, p := range r.parts {
			if p == offered || p == accepted || p == uploading {
				busy++
			}
		}
		if r.updates < r.aim && busy > 0 && e.now.Before(r.trainBy) {
			return nil, false
		}
		if r.updates < r.quorum {
			return e.fail(t, fmt.Sprintf("%d updates by the deadline, quorum is %d", r.updates, r.quorum)), true
		}
		var out []Action
		for _, a := range r.order {
			switch r.parts[a] {
			case offered, accepted, uploading:
				r.parts[a] = cancelled
				e.release(a, r.taskID)
				out = append(out, CancelOffer{Agent: a, TaskID: r.taskID, Reason: "round closed: enough updates, or the deadline passed"})
			}
		}
		if r.secure {
			// The survivors' masks come off in the unmask phase, which the driver opens.
			r.closing = true
			return append(out, CloseSecAgg{Task: t.Spec.Name, TaskID: r.taskID, Phase: PhaseTrain}), false
		}
		return append(out, e.commit(t, r)...), false
	}
	return nil, false
}

// commit moves a round to its commit phase.
func (e *Engine) commit(t *taskRun, r *round) []Action {
	var parts []string
	for _, a := range r.order {
		if r.parts[a] == delivered {
			parts = append(parts, a)
		}
	}
	r.phase = PhaseCommit
	loss := 0.0
	if r.examples > 0 {
		loss = r.lossSum / float64(r.examples)
	}
	return []Action{CommitRound{Task: t.Spec.Name, Round: r.round, Attempt: r.attempt, TaskID: r.taskID, Base: r.base,
		Updates: r.updates, Examples: r.examples, Loss: loss, Participants: parts}}
}

// secAggClosed moves a secure round on once the driver has closed a phase: agents not
// in are out of the round.
func (e *Engine) secAggClosed(t *taskRun, r *round, in []string) []Action {
	r.closing = false
	keep := make(map[string]bool, len(in))
	for _, a := range in {
		keep[a] = true
	}
	var out []Action
	for _, a := range r.order {
		if p := r.parts[a]; !keep[a] && (p == offered || p == accepted || p == uploading) {
			r.parts[a] = dropped
			e.release(a, r.taskID)
			out = append(out, CancelOffer{Agent: a, TaskID: r.taskID, Reason: fmt.Sprintf("out of the secure round after %s", r.phase)})
		}
	}
	switch r.phase {
	case PhaseAdvertise:
		r.phase, r.saBy = PhaseShare, e.now.Add(r.saPeriod)
	case PhaseShare:
		r.phase = PhaseTrain
	case PhaseTrain:
		r.phase, r.saBy = PhaseUnmask, e.now.Add(r.saPeriod)
	}
	return out
}

// start begins a new attempt of the task's next round if enough agents are eligible.
func (e *Engine) start(t *taskRun) []Action {
	var eligible []string
	for id, a := range e.agents {
		if a.busy == "" && slices.Contains(a.datasets, t.Spec.Dataset) {
			eligible = append(eligible, id)
		}
	}
	if p := t.Spec.Privacy; p != nil && p.FixedSize() && len(eligible) < p.Population {
		// Fixed-size sampling is accounted as m of privacy.population agents: sampling
		// from fewer would amplify privacy less than the accountant counts on.
		t.waiting = true
		return nil
	}
	aim, sel := t.Spec.Aim(len(eligible))
	quorum := t.Spec.MinUpdates(aim)
	if len(eligible) < quorum || sel == 0 {
		t.waiting = true
		return nil
	}
	t.waiting = false
	slices.Sort(eligible)
	t.attempt++
	rng := rand.New(rand.NewPCG(t.Spec.Seed^t.Round, uint64(t.attempt)))
	var chosen []string
	if p := t.Spec.Privacy; p != nil && p.FixedSize() {
		// Fixed-size sampling, which the privacy accountant assumes: m of all the eligible
		// agents, uniformly without replacement (a partial Fisher–Yates shuffle), from
		// the secure source.
		m := p.SampleSize()
		pool := slices.Clone(eligible)
		for i := range m {
			j := i + e.secure.IntN(len(pool)-i)
			pool[i], pool[j] = pool[j], pool[i]
		}
		chosen = pool[:m]
		slices.Sort(chosen)
		aim = m // wait for every sampled agent, up to the deadline
		quorum = t.Spec.MinUpdates(aim)
	} else if p != nil && p.UserLevel() {
		// Poisson sampling, which the privacy accountant assumes: each eligible agent
		// independently with probability fraction. The selection is the mechanism's, so
		// it comes from a secure source, not from the task's seed.
		for _, id := range eligible {
			if e.secure.Float64() < t.Spec.Fraction {
				chosen = append(chosen, id)
			}
		}
		if len(chosen) == 0 {
			t.attempt--
			t.waiting = true // try again at the next tick
			return nil
		}
		aim = len(chosen) // wait for every sampled agent, up to the deadline
	} else {
		rng.Shuffle(len(eligible), func(i, j int) { eligible[i], eligible[j] = eligible[j], eligible[i] })
		chosen = eligible[:sel]
		slices.Sort(chosen)
	}
	if t.Spec.SecureAggregation && len(chosen) < task.MinSecureAgents {
		t.attempt--
		t.waiting = true // secure aggregation of fewer would reveal each update
		return nil
	}
	sel = len(chosen)
	r := &round{round: t.Round, attempt: t.attempt, taskID: TaskID(t.Spec.Name, t.Round, t.attempt, e.boot), base: t.Base,
		aim: aim, quorum: quorum, phase: PhaseConfigure, start: e.now,
		configBy: e.now.Add(time.Duration(t.Spec.Deadlines.Configure)), trainBy: e.now.Add(time.Duration(t.Spec.Deadlines.Train)),
		parts: make(map[string]part, sel), order: chosen}
	if t.Spec.SecureAggregation {
		r.secure, r.sent, r.saPeriod = true, map[string]Phase{}, time.Duration(t.Spec.SecAgg.Deadline)
	}
	t.cur = r
	e.byID[r.taskID] = t.Spec.Name
	out := []Action{StartRound{Task: t.Spec.Name, Round: r.round, Attempt: r.attempt, TaskID: r.taskID, Base: r.base,
		Deadline: r.trainBy, Selected: slices.Clone(chosen), Eligible: len(eligible)}}
	for _, a := range chosen {
		r.parts[a] = offered
		e.agents[a].busy = r.taskID
		out = append(out, SendOffer{Agent: a, Task: t.Spec.Name, TaskID: r.taskID, Round: r.round, Base: r.base, Deadline: r.trainBy})
	}
	return out
}

// fail ends the task's current attempt without a version.
func (e *Engine) fail(t *taskRun, reason string) []Action {
	r := t.cur
	var out []Action
	for _, a := range r.order {
		if p := r.parts[a]; !p.final() {
			r.parts[a] = cancelled
			out = append(out, CancelOffer{Agent: a, TaskID: r.taskID, Reason: "round failed: " + reason})
		}
		e.release(a, r.taskID)
	}
	delete(e.byID, r.taskID)
	t.cur = nil
	return append(out, FailRound{Task: t.Spec.Name, Round: r.round, Attempt: r.attempt, TaskID: r.taskID, Reason: reason})
}

// RoundStatus describes a task's running round.
type RoundStatus struct {
	Round     uint64    `json:"round"`
	Attempt   uint32    `json:"attempt"`
	TaskID    string    `json:"task_id"`
	Phase     Phase     `json:"phase"`
	Aim       int       `json:"aim"`
	Quorum    int       `json:"quorum"`
	Selected  int       `json:"selected"`
	Accepted  int       `json:"accepted"`
	Delivered int       `json:"delivered"`
	Started   time.Time `json:"started"`
	Deadline  time.Time `json:"deadline"`
}

// TaskStatus describes a task.
type TaskStatus struct {
	Name       string       `json:"name"`
	Status     Status       `json:"status"`
	NextRound  uint64       `json:"next_round"`
	RoundsLeft int          `json:"rounds_left"`
	Base       uint64       `json:"version"`
	Waiting    bool         `json:"waiting_for_agents,omitempty"`
	Round      *RoundStatus `json:"round,omitempty"`
}

// Tasks describes every task, in submission order.
func (e *Engine) Tasks() []TaskStatus {
	out := make([]TaskStatus, 0, len(e.order))
	for _, name := range e.order {
		t := e.tasks[name]
		ts := TaskStatus{Name: name, Status: t.Status, NextRound: t.Round, RoundsLeft: t.RoundsLeft, Base: t.Base.Number, Waiting: t.waiting}
		if r := t.cur; r != nil {
			rs := &RoundStatus{Round: r.round, Attempt: r.attempt, TaskID: r.taskID, Phase: r.phase, Aim: r.aim, Quorum: r.quorum,
				Selected: len(r.parts), Delivered: r.updates, Started: r.start, Deadline: r.trainBy}
			for _, p := range r.parts {
				if p == accepted || p == uploading || p == delivered {
					rs.Accepted++
				}
			}
			ts.Round = rs
		}
		out = append(out, ts)
	}
	return out
}

// Online is the number of agents the engine knows to be connected.
func (e *Engine) Online() int { return len(e.agents) }

// Progress is a cheap snapshot of one task, for observers that look after every step
// (the driver's metrics): no per-agent work.
type Progress struct {
	Status     Status
	NextRound  uint64
	RoundsLeft int
	Waiting    bool
	// TaskID and Phase are those of the running round; TaskID is "" when none runs.
	TaskID    string
	Round     uint64
	Attempt   uint32
	Phase     Phase
	Selected  int
	Delivered int
}

// Progress reports a task's progress in constant time; ok is false for an unknown task.
func (e *Engine) Progress(name string) (p Progress, ok bool) {
	t := e.tasks[name]
	if t == nil {
		return Progress{}, false
	}
	p = Progress{Status: t.Status, NextRound: t.Round, RoundsLeft: t.RoundsLeft, Waiting: t.waiting}
	if r := t.cur; r != nil {
		p.TaskID, p.Round, p.Attempt, p.Phase, p.Selected, p.Delivered = r.taskID, r.round, r.attempt, r.phase, len(r.parts), r.updates
	}
	return p, true
}
