package coordinator

import (
	"context"
	"fmt"

	"github.com/fedq/fedq/coordinator/dashboard"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/coordinator/task"
)

// Dashboard returns what the coordinator's HTTP dashboard shows (package dashboard). It
// reads the store and the metrics' in-memory history, never the round driver's loop,
// so it answers while a round of many agents keeps the loop busy; it works until Serve
// returns (which closes the store).
func (s *Server) Dashboard() dashboard.Source { return dashSource{s} }

// dashSource is the coordinator as a dashboard.Source.
type dashSource struct{ s *Server }

// Overview implements dashboard.Source.
func (d dashSource) Overview(context.Context) (dashboard.Overview, error) {
	recs, err := d.s.store.Tasks()
	if err != nil {
		return dashboard.Overview{}, fmt.Errorf("tasks: %w", err)
	}
	agents, err := d.s.store.Agents()
	if err != nil {
		return dashboard.Overview{}, fmt.Errorf("agents: %w", err)
	}
	out := dashboard.Overview{Online: d.s.Online(), Since: d.s.started, Tasks: make([]dashboard.TaskSummary, 0, len(recs))}
	for _, a := range agents {
		if !a.Revoked() {
			out.Enrolled++
		}
	}
	for _, rec := range recs {
		sum, _, err := d.summary(rec)
		if err != nil {
			return dashboard.Overview{}, err
		}
		out.Tasks = append(out.Tasks, sum)
	}
	return out, nil
}

// summary describes a task from its record, its latest version and the driver's
// latest progress.
func (d dashSource) summary(rec store.TaskRecord) (dashboard.TaskSummary, *task.Spec, error) {
	sum := dashboard.TaskSummary{Name: rec.Name, Status: rec.Status, Version: rec.Latest, RoundsLeft: rec.RoundsLeft}
	if rec.Round > 0 {
		sum.Round = rec.Round - 1 // rec.Round is the next round
	}
	spec, err := task.Parse(rec.Spec)
	if err != nil {
		return sum, nil, fmt.Errorf("task %s: %w", rec.Name, err)
	}
	sum.Dataset, sum.Strategy = spec.Dataset, spec.Strategy.Name
	sum.Model = "custom"
	if ms, err := spec.ModelSpec(); err == nil && ms.Name != "" {
		sum.Model = ms.Name
	}
	v, ok, err := d.s.store.Version(rec.Latest)
	if err != nil {
		return sum, nil, fmt.Errorf("task %s: version %d: %w", rec.Name, rec.Latest, err)
	}
	if ok {
		sum.Metrics = v.Metrics
		if v.Privacy != nil {
			eps := v.Privacy.Epsilon
			sum.Epsilon = &eps
		}
	}
	if p := spec.Privacy; p != nil {
		b := p.Epsilon
		sum.Budget = &b
		if sum.Epsilon == nil {
			zero := 0.0
			sum.Epsilon = &zero
		}
	}
	if view, ok := d.s.metrics.view(rec.Name); ok {
		p := view.progress
		if p.Status != "" {
			sum.Status, sum.RoundsLeft = string(p.Status), p.RoundsLeft
		}
		sum.Phase = string(p.Phase)
	}
	return sum, spec, nil
}

// Task implements dashboard.Source.
func (d dashSource) Task(_ context.Context, name string) (dashboard.Task, error) {
	rec, ok, err := d.s.store.Task(name)
	if err != nil {
		return dashboard.Task{}, fmt.Errorf("task %s: %w", name, err)
	}
	if !ok {
		return dashboard.Task{}, fmt.Errorf("no task %q on this coordinator: %w", name, dashboard.ErrNotFound)
	}
	sum, spec, err := d.summary(rec)
	if err != nil {
		return dashboard.Task{}, err
	}
	out := dashboard.Task{TaskSummary: sum, Versions: []dashboard.VersionPoint{}, Rounds: []dashboard.RoundSpan{}, Participation: []int{}}
	vs, err := d.s.store.Versions(name)
	if err != nil {
		return dashboard.Task{}, fmt.Errorf("task %s: versions: %w", name, err)
	}
	for _, v := range vs {
		vp := dashboard.VersionPoint{Number: v.Number, Round: v.Round, Created: v.Created, Metrics: v.Metrics}
		if v.Privacy != nil {
			eps := v.Privacy.Epsilon
			vp.Epsilon = &eps
		}
		out.Versions = append(out.Versions, vp)
	}
	if p := spec.Privacy; p != nil {
		out.Privacy = &dashboard.Privacy{Mode: p.Mode, Budget: p.Epsilon, Delta: p.Delta, MaxRounds: p.MaxRounds()}
	}
	recs, err := d.s.store.Rounds(name)
	if err != nil {
		return dashboard.Task{}, fmt.Errorf("task %s: rounds: %w", name, err)
	}
	view, _ := d.s.metrics.view(name)
	out.Online = view.online
	if out.Online == nil {
		out.Online = []dashboard.Sample{}
	}
	if view.participation != nil {
		out.Participation = view.participation
	}
	// Round attempts come from the store (every attempt that ended, across restarts);
	// their phases, and the times they are measured with, from memory, for those run
	// since this start.
	seen := map[string]dashboard.RoundSpan{}
	for _, sp := range view.recent {
		seen[sp.TaskID] = sp
	}
	if len(recs) > dashboard.MaxRounds {
		recs = recs[len(recs)-dashboard.MaxRounds:]
	}
	stored := map[string]bool{}
	for _, r := range recs {
		stored[r.TaskID] = true
		sp := dashboard.RoundSpan{Round: r.Round, Attempt: r.Attempt, TaskID: r.TaskID, Outcome: r.Result,
			Reason: r.Reason, Started: r.Started, Ended: r.Ended, Selected: r.Selected, Updates: r.Updates}
		if m, ok := seen[r.TaskID]; ok {
			sp.Started, sp.Ended, sp.Phases = m.Started, m.Ended, m.Phases // the phases' own clock
		}
		out.Rounds = append(out.Rounds, sp)
	}
	if sp := view.running; sp != nil && !stored[sp.TaskID] {
		out.Rounds = append(out.Rounds, *sp)
		out.Running = &dashboard.Running{Round: sp.Round, Attempt: sp.Attempt, Phase: string(view.phase), PhaseSince: view.phaseSince,
			Selected: sp.Selected, Delivered: view.progress.Delivered}
	}
	return out, nil
}
