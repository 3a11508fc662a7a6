package dashboard

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is what a Source returns (wrapped) for a task it does not have; the
// dashboard answers 404 with the error's message.
var ErrNotFound = errors.New("not found")

// Source is what the dashboard shows: the coordinator satisfies it
// (coordinator.Server.Dashboard), and tests use a fake. Its methods are called from
// HTTP handlers, concurrently, and must not wait on a busy round.
type Source interface {
	// Overview is the federation at a glance: agents and every task.
	Overview(ctx context.Context) (Overview, error)
	// Task is one task's history, for the charts; an unknown task is ErrNotFound.
	Task(ctx context.Context, name string) (Task, error)
}

// Overview is the body of GET /api/tasks.
type Overview struct {
	Online   int           `json:"online"`
	Enrolled int           `json:"enrolled"`
	Since    time.Time     `json:"since"`
	Tasks    []TaskSummary `json:"tasks"`
}

// TaskSummary is a task in the task list.
type TaskSummary struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Dataset  string `json:"dataset"`
	Model    string `json:"model"`
	Strategy string `json:"strategy"`
	// Version is the latest version's number and Round the rounds committed.
	Version    uint64 `json:"version"`
	Round      uint64 `json:"round"`
	RoundsLeft int    `json:"rounds_left"`
	// Phase is the running round's phase, "" when none runs.
	Phase string `json:"phase,omitempty"`
	// Metrics are the latest version's (accuracy, test_loss, train_loss, …).
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Epsilon is the privacy spent by a private task; Budget its budget.
	Epsilon *float64 `json:"epsilon,omitempty"`
	Budget  *float64 `json:"budget_epsilon,omitempty"`
}

// Task is the body of GET /api/tasks/{name}: a summary and the series the charts draw.
type Task struct {
	TaskSummary
	// Running is the round in progress, if any.
	Running *Running `json:"running,omitempty"`
	// Versions are every version of the task, oldest first.
	Versions []VersionPoint `json:"versions"`
	// Rounds are the latest round attempts (at most MaxRounds), oldest first; phases
	// are known for the attempts run since the coordinator started.
	Rounds []RoundSpan `json:"rounds"`
	// Online samples the number of connected agents over time.
	Online []Sample `json:"online"`
	// Participation[k] is how many agents delivered updates to exactly k committed
	// rounds of the task since the coordinator started (k ≥ 1; index 0 is unused).
	Participation []int `json:"participation"`
	// Privacy is a private task's budget; the spending is in Versions.
	Privacy *Privacy `json:"privacy,omitempty"`
}

// MaxRounds bounds Task.Rounds.
const MaxRounds = 200

// Running is a round in progress.
type Running struct {
	Round      uint64    `json:"round"`
	Attempt    uint32    `json:"attempt"`
	Phase      string    `json:"phase"`
	PhaseSince time.Time `json:"phase_since"`
	Selected   int       `json:"selected"`
	Delivered  int       `json:"delivered"`
}

// VersionPoint is one version on the charts.
type VersionPoint struct {
	Number  uint64             `json:"number"`
	Round   uint64             `json:"round"`
	Created time.Time          `json:"created"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Epsilon is the privacy a private task had spent at this version.
	Epsilon *float64 `json:"epsilon,omitempty"`
}

// RoundSpan is one attempt of a round on the timeline.
type RoundSpan struct {
	Round   uint64    `json:"round"`
	Attempt uint32    `json:"attempt"`
	TaskID  string    `json:"task_id"`
	Outcome string    `json:"outcome"` // running, committed or failed
	Reason  string    `json:"reason,omitempty"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	// Selected agents were offered the round; Updates of them delivered.
	Selected int         `json:"selected"`
	Updates  int         `json:"updates"`
	Phases   []PhaseSpan `json:"phases,omitempty"`
}

// PhaseSpan is the time a round spent in one phase.
type PhaseSpan struct {
	Phase string    `json:"phase"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Sample is a value at a time.
type Sample struct {
	Time  time.Time `json:"t"`
	Value float64   `json:"v"`
}

// Privacy is a private task's budget.
type Privacy struct {
	Mode      string  `json:"mode"`
	Budget    float64 `json:"budget_epsilon"`
	Delta     float64 `json:"delta"`
	MaxRounds uint64  `json:"max_rounds"`
}
