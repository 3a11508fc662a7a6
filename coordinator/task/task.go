// Package task defines a training task: what model to train on which agents' data, how,
// for how many rounds, with which selection, quorum and deadlines. Tasks are JSON files
// (`fedq task submit FILE`); every field is checked and a bad one is refused with its
// path and the reason.
package task

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fedq/fedq/aggregation"
	"github.com/fedq/fedq/compute"
)

// Spec is a task as submitted.
type Spec struct {
	// Name identifies the task: 1–64 letters, digits, '.', '-', '_'.
	Name string `json:"name"`
	// Model is a builtin model name ("2nn", "cnn") or a model spec object (see compute.Spec).
	Model json.RawMessage `json:"model"`
	// Dataset names the dataset agents train on (agents announce theirs by name).
	Dataset string `json:"dataset"`
	// Train configures each agent's local training.
	Train Train `json:"train"`
	// Strategy combines the updates (default fedavg).
	Strategy Strategy `json:"strategy,omitzero"`
	// Rounds is how many rounds `fedq round start` runs when not told otherwise.
	Rounds int `json:"rounds,omitempty"`
	// AgentsPerRound is how many updates a round aims for. Fraction, instead, asks for a
	// share of the eligible agents online when the round starts (McMahan's C); one of the
	// two is required.
	AgentsPerRound int     `json:"agents_per_round,omitempty"`
	Fraction       float64 `json:"fraction,omitempty"`
	// OverSelect selects this many times the aim, to absorb stragglers (default 1.3).
	OverSelect float64 `json:"over_select,omitempty"`
	// Quorum is the fewest updates a round may commit with (default: half the aim,
	// rounded up); below it the round fails and the model does not move.
	Quorum int `json:"quorum,omitempty"`
	// Deadlines bound each phase.
	Deadlines Deadlines `json:"deadlines,omitzero"`
	// Seed makes the initial model and agent selection reproducible.
	Seed uint64 `json:"seed,omitempty"`
	// Privacy, when set, makes the task differentially private (see Privacy).
	Privacy *Privacy `json:"privacy,omitempty"`
	// SecureAggregation sums the round's updates with SecAgg+: the coordinator sees
	// only their weighted sum. SecAgg tunes it.
	SecureAggregation bool    `json:"secure_aggregation,omitempty"`
	SecAgg            *SecAgg `json:"secagg,omitempty"`
	// Semi, when set, makes the task semi-supervised (see Semi).
	Semi *Semi `json:"semi,omitempty"`
}

// Train is local training's configuration.
type Train struct {
	Epochs      int     `json:"epochs,omitempty"`
	LocalSteps  int     `json:"local_steps,omitempty"`
	Batch       int     `json:"batch"`
	LR          float64 `json:"lr"`
	Optimizer   string  `json:"optimizer,omitempty"` // sgd (default) or adam
	Momentum    float64 `json:"momentum,omitempty"`
	WeightDecay float64 `json:"weight_decay,omitempty"`
	// LRSchedule changes LR from round to round: "constant" (the default) or "cosine",
	// which decays it along half a cosine from LR in round 1 towards LRFinal, reached
	// just after round Spec.Rounds and held after. A labels-at-coordinator task's
	// fine-tuning follows the same curve, scaled to its own rate.
	LRSchedule string `json:"lr_schedule,omitempty"`
	// LRFinal is where the cosine schedule ends (default 0).
	LRFinal float64 `json:"lr_final,omitempty"`
}

// LR schedules.
const (
	ScheduleConstant = "constant"
	ScheduleCosine   = "cosine"
)

// LRAt is the local learning rate of round (numbered from 1) of a task of rounds
// rounds.
func (t Train) LRAt(round uint64, rounds int) float64 {
	return t.LRFinal + (t.LR-t.LRFinal)*t.scheduleFactor(round, rounds)
}

// scheduleFactor is the share of the way from LRFinal to LR a round stands at: 1 for a
// constant schedule, (1+cos(π·(round−1)/rounds))/2 for a cosine one (0 after the last
// round).
func (t Train) scheduleFactor(round uint64, rounds int) float64 {
	if t.LRSchedule != ScheduleCosine || rounds < 1 || round <= 1 {
		return 1
	}
	done := min(round-1, uint64(rounds))
	return (1 + math.Cos(math.Pi*float64(done)/float64(rounds))) / 2
}

// ScaleLR scales a learning rate lr that belongs to round 1 (the fine-tuning's) by the
// schedule: lr·LRAt(round)/LR.
func (t Train) ScaleLR(lr float64, round uint64, rounds int) float64 {
	return lr * t.LRAt(round, rounds) / t.LR
}

// Strategy names an aggregation strategy and its parameters.
type Strategy struct {
	Name   string             `json:"name,omitempty"`
	Params map[string]float64 `json:"params,omitempty"`
}

// Deadlines bound the phases of a round.
type Deadlines struct {
	// Configure bounds the wait for agents to accept their offers (default 10 s).
	Configure Duration `json:"configure,omitzero"`
	// Train bounds the wait for updates, from the offers (default 10 min).
	Train Duration `json:"train,omitzero"`
}

// Duration is a time.Duration written as text ("90s", "5m") in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Defaults.
const (
	DefaultOverSelect = 1.3
	DefaultConfigure  = 10 * time.Second
	DefaultTrain      = 10 * time.Minute
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// FieldError says which field of a spec is wrong and why.
type FieldError struct {
	Field  string
	Reason string
}

// Error says which field is wrong and why, prefixed with "task spec".
func (e *FieldError) Error() string { return fmt.Sprintf("task spec: %s: %s", e.Field, e.Reason) }

func bad(field, format string, a ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// oneOf checks that the field's value *v is one of choices, setting it to the first (the
// default) when empty.
func oneOf(field string, v *string, choices ...string) error {
	switch {
	case *v == "":
		*v = choices[0]
	case !slices.Contains(choices, *v):
		return bad(field, "%q: want %s", *v, strings.Join(choices, " or "))
	}
	return nil
}

// Parse decodes a JSON spec strictly (unknown fields are errors), fills defaults and
// validates it.
func Parse(data []byte) (*Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		var se *json.SyntaxError
		var ue *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("task spec: invalid JSON at byte %d: %v", se.Offset, err)
		case errors.As(err, &ue):
			return nil, bad(ue.Field, "want %s, got JSON %s", ue.Type, ue.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return nil, fmt.Errorf("task spec: %s (see `fedq help task submit`)", strings.TrimPrefix(err.Error(), "json: "))
		}
		return nil, fmt.Errorf("task spec: %w", err)
	}
	if dec.More() {
		return nil, errors.New("task spec: trailing data after the JSON object")
	}
	if err := s.Normalize(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Load reads and parses a spec file; errors name the file.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Normalize fills defaults and checks every field.
func (s *Spec) Normalize() error {
	if !nameRE.MatchString(s.Name) {
		return bad("name", "%q: use 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit", s.Name)
	}
	if _, err := s.ModelSpec(); err != nil {
		return err
	}
	if s.Dataset == "" {
		return bad("dataset", "required: the name agents give their data (fedq agent run --data NAME=...)")
	}
	t := &s.Train
	switch {
	case t.Epochs < 0 || t.LocalSteps < 0:
		return bad("train.epochs", "must not be negative")
	case t.Epochs == 0 && t.LocalSteps == 0:
		return bad("train.epochs", "set epochs (or local_steps) to at least 1")
	case t.Batch < 1:
		return bad("train.batch", "must be at least 1, got %d", t.Batch)
	case !(t.LR > 0) || math.IsInf(t.LR, 0):
		return bad("train.lr", "must be positive, got %v", t.LR)
	case t.Momentum < 0 || t.Momentum >= 1:
		return bad("train.momentum", "must be in [0, 1), got %v", t.Momentum)
	case t.WeightDecay < 0:
		return bad("train.weight_decay", "must not be negative, got %v", t.WeightDecay)
	}
	if err := oneOf("train.lr_schedule", &t.LRSchedule, ScheduleConstant, ScheduleCosine); err != nil {
		return err
	}
	switch {
	case t.LRSchedule == ScheduleConstant && t.LRFinal != 0:
		return bad("train.lr_final", "belongs to lr_schedule %q", ScheduleCosine)
	case !(t.LRFinal >= 0 && t.LRFinal <= t.LR):
		return bad("train.lr_final", "must be in [0, lr = %v], got %v", t.LR, t.LRFinal)
	case t.LRSchedule == ScheduleCosine && s.Rounds < 1:
		return bad("rounds", "lr_schedule %q decays over the task's rounds: set rounds", ScheduleCosine)
	}
	if err := oneOf("train.optimizer", &t.Optimizer, "sgd", "adam"); err != nil {
		return err
	}
	name, params, err := aggregation.Resolve(s.Strategy.Name, s.Strategy.Params)
	if err != nil {
		return bad("strategy", "%v", err)
	}
	s.Strategy.Name, s.Strategy.Params = name, params
	if s.Rounds < 0 {
		return bad("rounds", "must not be negative")
	}
	switch {
	case s.AgentsPerRound < 0:
		return bad("agents_per_round", "must not be negative")
	case s.Fraction < 0 || s.Fraction > 1:
		return bad("fraction", "must be in (0, 1], got %v", s.Fraction)
	case s.AgentsPerRound == 0 && s.Fraction == 0:
		return bad("agents_per_round", "set agents_per_round, or fraction (the share of eligible agents per round)")
	case s.AgentsPerRound > 0 && s.Fraction > 0:
		return bad("fraction", "give agents_per_round or fraction, not both")
	}
	if s.OverSelect == 0 {
		s.OverSelect = DefaultOverSelect
		if s.Privacy != nil && s.Privacy.UserLevel() {
			s.OverSelect = 1 // sampling is the privacy mechanism's: no over-selection
		}
	}
	if s.OverSelect < 1 || s.OverSelect > 10 {
		return bad("over_select", "must be in [1, 10], got %v", s.OverSelect)
	}
	if s.Quorum < 0 {
		return bad("quorum", "must not be negative")
	}
	if s.AgentsPerRound > 0 && s.Quorum > s.AgentsPerRound {
		return bad("quorum", "%d is more than agents_per_round %d", s.Quorum, s.AgentsPerRound)
	}
	if name == "krum" || name == "multikrum" {
		// Krum tolerates f Byzantine updates among n only if n > 2f+2.
		f := int(params["f"])
		need := 2*f + 3
		switch {
		case s.AgentsPerRound > 0 && s.AgentsPerRound < need:
			return bad("agents_per_round", "%s with f=%d needs more than 2f+2 = %d updates per round, got %d", name, f, need-1, s.AgentsPerRound)
		case s.Quorum > 0 && s.Quorum < need:
			return bad("quorum", "%s with f=%d needs more than 2f+2 = %d updates per round, got %d", name, f, need-1, s.Quorum)
		case s.Quorum == 0:
			s.Quorum = need
		}
		if m := int(params["m"]); m > 0 && s.AgentsPerRound > 0 && m > s.AgentsPerRound-f {
			return bad("strategy", "%s: m=%d is more than the n−f = %d updates it may keep", name, m, s.AgentsPerRound-f)
		}
	}
	if s.Deadlines.Configure == 0 {
		s.Deadlines.Configure = Duration(DefaultConfigure)
	}
	if s.Deadlines.Train == 0 {
		s.Deadlines.Train = Duration(DefaultTrain)
	}
	if s.Deadlines.Configure < 0 || s.Deadlines.Train < 0 {
		return bad("deadlines", "must be positive")
	}
	if s.Deadlines.Train < s.Deadlines.Configure {
		return bad("deadlines.train", "must be at least deadlines.configure")
	}
	if err := s.normalizeSecAgg(); err != nil {
		return err
	}
	if s.Semi != nil {
		if err := s.Semi.normalize(s); err != nil {
			return err
		}
	}
	if s.Privacy != nil {
		return s.Privacy.normalize(s)
	}
	return nil
}

// ModelSpec resolves the model field.
func (s *Spec) ModelSpec() (compute.Spec, error) {
	m := bytes.TrimSpace(s.Model)
	if len(m) == 0 {
		return compute.Spec{}, bad("model", "required: a builtin (%s) or a model spec object", strings.Join(compute.BuiltinNames(), ", "))
	}
	if m[0] == '"' {
		var name string
		if err := json.Unmarshal(m, &name); err != nil {
			return compute.Spec{}, bad("model", "%v", err)
		}
		if sp, ok := compute.BuiltinSpec(name); ok {
			return sp, nil
		}
		return compute.Spec{}, bad("model", "%q is not a builtin (%s); give a model spec object instead", name, strings.Join(compute.BuiltinNames(), ", "))
	}
	sp, err := compute.ParseSpec(m)
	if err != nil {
		return compute.Spec{}, bad("model", "%v", err)
	}
	return sp, nil
}

// Aim returns how many updates a round aims for and how many agents it selects, given
// the number of eligible agents online.
func (s *Spec) Aim(eligible int) (aim, selected int) {
	aim = s.AgentsPerRound
	if aim == 0 {
		aim = max(1, int(math.Round(s.Fraction*float64(eligible))))
	}
	selected = min(eligible, int(math.Ceil(s.OverSelect*float64(aim))))
	return aim, selected
}

// MinUpdates is the quorum for a round aiming at aim updates.
func (s *Spec) MinUpdates(aim int) int {
	if s.Quorum > 0 {
		return min(s.Quorum, aim)
	}
	return max(1, (aim+1)/2)
}
