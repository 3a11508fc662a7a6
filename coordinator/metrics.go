package coordinator

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/coordinator/dashboard"
	"github.com/fedq/fedq/coordinator/engine"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/protocol"
)

// Metrics, in short (README "Metrics and dashboard" lists them): every name has the
// fedq_ prefix and base units; labels are the task's name (as few as the tasks), the
// phase, the outcome and the protocol's error code — never an agent, so a federation of
// 10,000 agents has as many series as one of 10. The engine stays pure: everything is
// observed by the driver, after each step of the engine, from the events it fed in,
// the actions it got back and the engine's constant-time Progress.

// onlineSampleEvery is how often the dashboard's agents-online series takes a sample,
// and maxOnlineSamples how many it keeps (an hour).
const (
	onlineSampleEvery = 2 * time.Second
	maxOnlineSamples  = 1800
)

// metrics are one coordinator's Prometheus collectors, in a registry of its own, and the
// recent history the dashboard draws. The driver writes; HTTP handlers read.
type metrics struct {
	reg             *prometheus.Registry
	roundsStarted   *prometheus.CounterVec   // task
	roundsCommitted *prometheus.CounterVec   // task
	roundsFailed    *prometheus.CounterVec   // task
	phaseSeconds    *prometheus.HistogramVec // task, phase
	roundSeconds    *prometheus.HistogramVec // task, outcome
	selected        *prometheus.CounterVec   // task
	dropped         *prometheus.CounterVec   // task
	accepted        *prometheus.CounterVec   // task
	rejected        *prometheus.CounterVec   // reason
	version         *prometheus.GaugeVec     // task
	accuracy        *prometheus.GaugeVec     // task
	loss            *prometheus.GaugeVec     // task
	trainLoss       *prometheus.GaugeVec     // task
	epsilon         *prometheus.GaugeVec     // task
	budget          *prometheus.GaugeVec     // task

	// Agents' connections: the bytes of those that ended, and those still open.
	connMu       sync.Mutex
	conns        map[*quic.Conn]struct{}
	closedSent   uint64
	closedRecv   uint64
	sentDesc     *prometheus.Desc
	receivedDesc *prometheus.Desc

	mu         sync.Mutex
	tasks      map[string]*taskHistory
	online     []dashboard.Sample
	lastSample time.Time
}

// taskHistory is what the dashboard keeps of a task in memory: the running attempt
// with its phases so far, the phases of recent attempts, and participation.
type taskHistory struct {
	progress   engine.Progress
	span       *dashboard.RoundSpan // the attempt being watched
	phase      engine.Phase         // its current phase, "" when none
	phaseSince time.Time
	pending    []string              // the participants of a round being committed
	recent     []dashboard.RoundSpan // recent attempts, oldest first
	delivered  map[string]int        // agent → committed rounds it delivered to
}

func newMetrics(online func() float64) *metrics {
	task := []string{"task"}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, task)
	}
	m := &metrics{
		reg:             prometheus.NewRegistry(),
		roundsStarted:   counter("fedq_rounds_started_total", "Round attempts started, by task.", task),
		roundsCommitted: counter("fedq_rounds_committed_total", "Rounds committed as a new version, by task.", task),
		roundsFailed:    counter("fedq_rounds_failed_total", "Round attempts that ended without a version (below quorum, storage failure), by task.", task),
		phaseSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedq_round_phase_duration_seconds", Help: "Time a round attempt spent in a phase, by task and phase.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12), // 1 ms … 70 min
		}, []string{"task", "phase"}),
		roundSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedq_round_duration_seconds", Help: "Time from a round attempt's start to its end, by task and outcome (committed, failed).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}, []string{"task", "outcome"}),
		selected: counter("fedq_round_agents_selected_total", "Agents selected for round attempts, by task.", task),
		dropped: counter("fedq_round_agents_dropped_total",
			"Selected agents that delivered no update to their attempt (declined, disconnected, failed, or too late), by task.", task),
		accepted: counter("fedq_updates_accepted_total", "Updates received whole, checked and folded into a round's aggregate, by task.", task),
		rejected: counter("fedq_updates_rejected_total", "Update uploads refused or broken, by reason (the protocol's error code).", []string{"reason"}),
		version:  gauge("fedq_task_version", "Number of the task's latest version."),
		accuracy: gauge("fedq_task_accuracy", "Accuracy (0-1) of the task's latest evaluated version, where the coordinator evaluates."),
		loss:     gauge("fedq_task_loss", "Loss of the task's latest version: the test loss where the coordinator evaluates, else the agents' training loss."),
		trainLoss: gauge("fedq_task_train_loss",
			"The agents' example-weighted mean training loss in the round of the task's latest version."),
		epsilon:      gauge("fedq_task_privacy_epsilon_spent", "Differential privacy ε a private task has spent, as of its latest version."),
		budget:       gauge("fedq_task_privacy_epsilon_budget", "Differential privacy ε budget of a private task."),
		conns:        map[*quic.Conn]struct{}{},
		sentDesc:     prometheus.NewDesc("fedq_network_sent_bytes_total", "Bytes sent to agents over QUIC (packets' payload, with QUIC's overhead).", nil, nil),
		receivedDesc: prometheus.NewDesc("fedq_network_received_bytes_total", "Bytes received from agents over QUIC (packets' payload, with QUIC's overhead).", nil, nil),
		tasks:        map[string]*taskHistory{},
	}
	m.reg.MustRegister(m.roundsStarted, m.roundsCommitted, m.roundsFailed, m.phaseSeconds, m.roundSeconds, m.selected, m.dropped,
		m.accepted, m.rejected, m.version, m.accuracy, m.loss, m.trainLoss, m.epsilon, m.budget, (*netCollector)(m),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fedq_agents_online", Help: "Agents with a session now."}, online),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Metrics serves the coordinator's metrics in Prometheus's exposition formats; mount it
// on an HTTP server (fedq coordinator run --http does, at /metrics).
func (s *Server) Metrics() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{Registry: s.metrics.reg})
}

// Registry returns the registry of the coordinator's metrics, for callers that gather
// them some other way.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// netCollector reports the bytes of agents' QUIC connections, read from quic-go's
// connection statistics when scraped: the closed connections' totals plus the open
// ones', under one lock, so the counters never go back.
type netCollector metrics

// Describe implements prometheus.Collector.
func (c *netCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.sentDesc; ch <- c.receivedDesc }

// Collect implements prometheus.Collector.
func (c *netCollector) Collect(ch chan<- prometheus.Metric) {
	c.connMu.Lock()
	sent, recv := c.closedSent, c.closedRecv
	for conn := range c.conns {
		st := conn.ConnectionStats()
		sent, recv = sent+st.BytesSent, recv+st.BytesReceived
	}
	c.connMu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.sentDesc, prometheus.CounterValue, float64(sent))
	ch <- prometheus.MustNewConstMetric(c.receivedDesc, prometheus.CounterValue, float64(recv))
}

// track counts an agent's connection's bytes until untrack.
func (m *metrics) track(conn *quic.Conn) {
	m.connMu.Lock()
	m.conns[conn] = struct{}{}
	m.connMu.Unlock()
}

// untrack adds an ended connection's bytes to the totals.
func (m *metrics) untrack(conn *quic.Conn) {
	st := conn.ConnectionStats()
	m.connMu.Lock()
	if _, ok := m.conns[conn]; ok {
		delete(m.conns, conn)
		m.closedSent += st.BytesSent
		m.closedRecv += st.BytesReceived
	}
	m.connMu.Unlock()
}

// reject counts a refused or broken upload by its error code. A code this build does
// not define (a peer can reset a stream with any number) counts as "other", so that
// peers cannot grow the label's values.
func (m *metrics) reject(err error) {
	reason := protocol.CodeOf(err).String()
	if strings.HasPrefix(reason, "code-") {
		reason = "other"
	}
	m.rejected.WithLabelValues(reason).Inc()
}

// setVersion sets the gauges of a task's latest version.
func (m *metrics) setVersion(name string, v store.Version, spent *float64) {
	m.version.WithLabelValues(name).Set(float64(v.Number))
	if acc, ok := v.Metrics["accuracy"]; ok {
		m.accuracy.WithLabelValues(name).Set(acc)
	} else {
		m.accuracy.DeleteLabelValues(name) // not evaluated: no stale figure
	}
	if l, ok := v.Metrics["test_loss"]; ok {
		m.loss.WithLabelValues(name).Set(l)
	} else if l, ok := v.Metrics["train_loss"]; ok {
		m.loss.WithLabelValues(name).Set(l)
	}
	if l, ok := v.Metrics["train_loss"]; ok {
		m.trainLoss.WithLabelValues(name).Set(l)
	}
	if spent != nil {
		m.epsilon.WithLabelValues(name).Set(*spent)
	}
}

// history returns a task's history, made on first use; call with m.mu held.
func (m *metrics) history(name string) *taskHistory {
	h := m.tasks[name]
	if h == nil {
		h = &taskHistory{delivered: map[string]int{}}
		m.tasks[name] = h
	}
	return h
}

// observe records one step of the engine: the event fed in and the actions it
// returned, at now; progress reports each task's state after the step. It runs on the
// driver's loop.
func (m *metrics) observe(ev engine.Event, acts []engine.Action, now time.Time, progress func(string) (engine.Progress, bool), online int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev := ev.(type) {
	case engine.Tick:
		if now.Sub(m.lastSample) >= onlineSampleEvery {
			m.lastSample = now
			m.online = append(m.online, dashboard.Sample{Time: now, Value: float64(online)})
			if len(m.online) > maxOnlineSamples {
				m.online = slices.Delete(m.online, 0, len(m.online)-maxOnlineSamples)
			}
		}
	case engine.TaskAdded:
		m.history(ev.State.Spec.Name)
	case engine.UpdateReceived:
		for name, h := range m.tasks {
			if h.span != nil && h.span.TaskID == ev.TaskID {
				m.accepted.WithLabelValues(name).Inc()
			}
		}
	case engine.Committed:
		for name, h := range m.tasks {
			if h.span == nil || h.span.TaskID != ev.TaskID {
				continue
			}
			h.span.Outcome = "committed"
			m.roundsCommitted.WithLabelValues(name).Inc()
			m.dropped.WithLabelValues(name).Add(float64(h.span.Selected - h.span.Updates))
			for _, a := range h.pending {
				h.delivered[a]++
			}
			h.pending = nil
		}
	}
	for _, a := range acts {
		switch a := a.(type) {
		case engine.StartRound:
			h := m.history(a.Task)
			m.finish(a.Task, h, now) // a failed attempt retried at once
			h.span = &dashboard.RoundSpan{Round: a.Round, Attempt: a.Attempt, TaskID: a.TaskID, Outcome: "running",
				Started: now, Selected: len(a.Selected)}
			m.roundsStarted.WithLabelValues(a.Task).Inc()
			m.selected.WithLabelValues(a.Task).Add(float64(len(a.Selected)))
		case engine.CommitRound:
			if h := m.tasks[a.Task]; h != nil && h.span != nil && h.span.TaskID == a.TaskID {
				h.span.Updates = a.Updates
				h.pending = a.Participants
			}
		case engine.FailRound:
			if h := m.tasks[a.Task]; h != nil && h.span != nil && h.span.TaskID == a.TaskID {
				h.span.Outcome, h.span.Reason = "failed", a.Reason
				if h.span.Updates == 0 {
					h.span.Updates = h.progress.Delivered
				}
				h.pending = nil
				m.roundsFailed.WithLabelValues(a.Task).Inc()
				m.dropped.WithLabelValues(a.Task).Add(float64(h.span.Selected - h.span.Updates))
			}
		}
	}
	for name, h := range m.tasks {
		p, ok := progress(name)
		if !ok {
			continue
		}
		h.progress = p
		if h.span != nil && h.span.TaskID != p.TaskID {
			m.finish(name, h, now)
		}
		if h.span != nil && p.Phase != h.phase {
			m.closePhase(name, h, now)
			h.phase, h.phaseSince = p.Phase, now
		}
	}
}

// closePhase ends the watched attempt's current phase at now.
func (m *metrics) closePhase(name string, h *taskHistory, now time.Time) {
	if h.phase == "" {
		return
	}
	ps := dashboard.PhaseSpan{Phase: string(h.phase), Start: h.phaseSince, End: now}
	h.span.Phases = append(h.span.Phases, ps)
	m.phaseSeconds.WithLabelValues(name, ps.Phase).Observe(now.Sub(ps.Start).Seconds())
	h.phase = ""
}

// finish ends the watched attempt, if any, at now and keeps it among the recent ones.
func (m *metrics) finish(name string, h *taskHistory, now time.Time) {
	if h.span == nil {
		return
	}
	m.closePhase(name, h, now)
	sp := *h.span
	sp.Ended = now
	if sp.Outcome == "running" {
		sp.Outcome = "failed" // the engine dropped it without FailRound: not expected
	}
	m.roundSeconds.WithLabelValues(name, sp.Outcome).Observe(now.Sub(sp.Started).Seconds())
	h.recent = append(h.recent, sp)
	if len(h.recent) > dashboard.MaxRounds {
		h.recent = slices.Delete(h.recent, 0, 1)
	}
	h.span, h.pending = nil, nil
}

// taskView is a copy of what the dashboard needs of a task's history.
type taskView struct {
	progress      engine.Progress
	running       *dashboard.RoundSpan
	phase         engine.Phase
	phaseSince    time.Time
	recent        []dashboard.RoundSpan
	online        []dashboard.Sample
	participation []int
}

// view copies a task's history, and the agents-online series.
func (m *metrics) view(name string) (taskView, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.tasks[name]
	v := taskView{online: slices.Clone(m.online)}
	if h == nil {
		return v, false
	}
	v.progress, v.phase, v.phaseSince = h.progress, h.phase, h.phaseSince
	v.recent = slices.Clone(h.recent)
	if h.span != nil {
		sp := *h.span
		sp.Phases = slices.Clone(sp.Phases)
		if h.phase != "" {
			sp.Phases = append(sp.Phases, dashboard.PhaseSpan{Phase: string(h.phase), Start: h.phaseSince})
		}
		v.running = &sp
	}
	most := 0
	for _, k := range h.delivered {
		most = max(most, k)
	}
	if most > 0 {
		v.participation = make([]int, most+1)
		for _, k := range h.delivered {
			v.participation[k]++
		}
	}
	return v, true
}

// observe records a step of the engine in the metrics (see metrics.observe), and sets
// the gauges of a task's latest version when it is added or a round commits.
func (r *rounds) observe(ev engine.Event, acts []engine.Action) {
	r.srv.metrics.observe(ev, acts, r.srv.cfg.Now(), r.eng.Progress, len(r.online))
	var tm *taskModel
	switch ev := ev.(type) {
	case engine.TaskAdded:
		tm = r.tasks[ev.State.Spec.Name]
	case engine.Committed:
		for _, t := range r.tasks {
			if t.version.Number == ev.Version.Number {
				tm = t
			}
		}
	}
	if tm == nil {
		return
	}
	var spent *float64
	if p := tm.spec.Privacy; p != nil {
		r.srv.metrics.budget.WithLabelValues(tm.spec.Name).Set(p.Epsilon)
		eps := 0.0
		if tm.version.Privacy != nil {
			eps = tm.version.Privacy.Epsilon
		}
		spent = &eps
	}
	r.srv.metrics.setVersion(tm.spec.Name, tm.version, spent)
}
