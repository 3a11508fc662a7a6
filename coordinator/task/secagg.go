package task

import (
	"math"
	"time"

	"github.com/fedq/fedq/privacy/secagg"
)

// SecAgg are the parameters of a task's secure aggregation (SecAgg+, see the
// privacy/secagg package). Every field has a default; `"secure_aggregation": true` alone
// enables it.
//
// Each round's neighbour graph and threshold are chosen from the number of agents
// selected, Dropout and FailureProbability (secagg.ChooseGraph): for 10% dropout and a
// 1e-6 failure bound, 100 agents get 34 neighbours and a threshold of 18, 1,000 agents 38
// and 20, and fewer than about 40 agents the complete graph (classic SecAgg).
type SecAgg struct {
	// Graph is "auto" (SecAgg+'s sparse graph when it is smaller) or "complete"
	// (classic SecAgg: every agent masks with every other).
	Graph string `json:"graph,omitempty"`
	// Dropout is the share of agents expected to drop out during a round, which the
	// graph and threshold are chosen to survive; default 0.1.
	Dropout float64 `json:"dropout,omitempty"`
	// FailureProbability bounds the chance that dropouts at the planned rate leave some
	// agent's secret below the threshold (the round then fails); default 1e-6.
	FailureProbability float64 `json:"failure_probability,omitempty"`
	// Clip bounds each weighted update value to [-Clip, Clip] before quantization;
	// default 8.
	Clip float64 `json:"clip,omitempty"`
	// MaxWeight is the update weight (examples trained on) that scales to 1; larger
	// weights are capped. Zero: the largest dataset among the round's agents times the
	// local epochs (or local_steps × batch).
	MaxWeight float64 `json:"max_weight,omitempty"`
	// Deadline bounds each key-exchange phase (advertise, share, unmask); default 30s.
	Deadline Duration `json:"deadline,omitzero"`
}

// DefaultSecAggDeadline bounds each key-exchange phase of a secure round.
const DefaultSecAggDeadline = 30 * time.Second

// secureStrategies are the strategies that need only the (weighted) sum of updates.
var secureStrategies = map[string]bool{"fedavg": true, "fedavgm": true, "fedprox": true, "fedadagrad": true, "fedadam": true, "fedyogi": true}

// normalizeSecAgg checks secure aggregation against the rest of the spec.
func (s *Spec) normalizeSecAgg() error {
	if !s.SecureAggregation {
		if s.SecAgg != nil {
			return bad("secagg", "parameters given but secure_aggregation is not true")
		}
		return nil
	}
	if s.SecAgg == nil {
		s.SecAgg = &SecAgg{}
	}
	a := s.SecAgg
	if !secureStrategies[s.Strategy.Name] {
		return bad("strategy", "%s needs each agent's update, which secure aggregation hides: use fedavg, fedavgm, fedprox, fedadagrad, fedadam or fedyogi", s.Strategy.Name)
	}
	if p := s.Privacy; p != nil && p.Mode == Central {
		return bad("privacy.mode", "central DP clips each update at the coordinator, which secure aggregation hides: use mode record (DP-SGD in each agent)")
	}
	if err := oneOf("secagg.graph", &a.Graph, "auto", "complete"); err != nil {
		return err
	}
	if a.Dropout == 0 {
		a.Dropout = secagg.DefaultDropout
	}
	if !(a.Dropout > 0 && a.Dropout < 1) {
		return bad("secagg.dropout", "must be in (0, 1), got %v", a.Dropout)
	}
	if a.FailureProbability == 0 {
		a.FailureProbability = secagg.DefaultFailureProbability
	}
	if !(a.FailureProbability > 0 && a.FailureProbability < 1) {
		return bad("secagg.failure_probability", "must be in (0, 1), got %v", a.FailureProbability)
	}
	if a.Clip == 0 {
		a.Clip = secagg.DefaultClip
	}
	if !(a.Clip >= 1) || math.IsInf(a.Clip, 0) {
		return bad("secagg.clip", "must be finite and at least 1 (the weight, in [0, 1], is quantized in the same range), got %v", a.Clip)
	}
	if a.MaxWeight < 0 || math.IsInf(a.MaxWeight, 0) || math.IsNaN(a.MaxWeight) {
		return bad("secagg.max_weight", "must be positive, or 0 for the largest dataset of the round's agents, got %v", a.MaxWeight)
	}
	if a.Deadline == 0 {
		a.Deadline = Duration(DefaultSecAggDeadline)
	}
	if a.Deadline < 0 {
		return bad("secagg.deadline", "must be positive")
	}
	if s.AgentsPerRound > 0 && s.AgentsPerRound < secagg.MinMembers {
		return bad("agents_per_round", "secure aggregation needs at least %d agents per round, got %d", secagg.MinMembers, s.AgentsPerRound)
	}
	if s.Quorum > 0 && s.Quorum < secagg.MinMembers {
		return bad("quorum", "secure aggregation needs a quorum of at least %d, got %d", secagg.MinMembers, s.Quorum)
	}
	return nil
}

// Choose picks a round's neighbour degree and threshold for n selected agents.
func (a *SecAgg) Choose(n int) (secagg.GraphChoice, error) {
	if a.Graph == "complete" {
		k := n - 1
		return secagg.GraphChoice{Neighbours: k, Threshold: (k+1)/2 + 1}, nil
	}
	return secagg.ChooseGraph(n, a.Dropout, a.FailureProbability)
}

// MinSecureAgents is the fewest agents a secure round selects.
const MinSecureAgents = secagg.MinMembers
