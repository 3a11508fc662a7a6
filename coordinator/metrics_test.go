package coordinator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fedq/fedq/coordinator/dashboard"
	"github.com/fedq/fedq/protocol"
)

const dashToken = "metrics-test-token-0123456789"

// scrape fetches /metrics through the dashboard's handler and parses it with
// Prometheus's text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+dashToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample returns the value of the series of family name with labels (for a histogram,
// its count), and whether it exists.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// getJSON GETs an API path with the token and decodes the answer.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+dashToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %s: %v", url, resp.Status, err)
	}
	return resp.StatusCode
}

// TestMetricsAndDashboard runs a round with three good agents and a rogue whose uploads
// are refused, then checks /metrics (parsed with Prometheus's own parser) and the
// dashboard's API against what happened, before and after a restart.
func TestMetricsAndDashboard(t *testing.T) {
	c := newCluster(t)
	for i := range 3 {
		trainingAgent(t, c, fmt.Sprintf("good-%d", i), blobs(100, uint64(i)))
	}
	r := dialRogue(t, c, c.enroll("rogue"), "blobs")
	adm := c.admin()
	startBlobsRound(t, adm, 4, 3, "20s")
	o := r.offer()
	r.send(&protocol.TaskAccept{TaskID: o.TaskID, Round: o.Round})
	layout := []protocol.TensorInfo{{Name: "fc1.weight", DType: protocol.DTypeF32, Shape: []int{4, 2}}, {Name: "fc1.bias", DType: protocol.DTypeF32, Shape: []int{2}}}
	upd := make([]float32, 10)
	stale := &protocol.UpdateHeader{TaskID: o.TaskID, Round: o.Round, BaseVersion: o.BaseVersion + 5, BaseHash: o.BaseHash, Examples: 10}
	if err := r.upload(stale, protocol.ParamRefs(layout, upd)); protocol.CodeOf(err) != protocol.CodeStaleBase {
		t.Fatalf("stale upload: %v", err)
	}
	wrong := &protocol.UpdateHeader{TaskID: o.TaskID, Round: o.Round, BaseVersion: o.BaseVersion, BaseHash: o.BaseHash, Examples: 10}
	if err := r.upload(wrong, protocol.ParamRefs(layout, upd)); protocol.CodeOf(err) != protocol.CodeInvalid {
		t.Fatalf("wrongly shaped upload: %v", err)
	}
	waitRoundDone(t, adm, "the round to commit without the rogue")

	serve := func() *httptest.Server {
		h, err := dashboard.New(dashboard.Config{Source: c.srv.Dashboard(), Token: dashToken, Metrics: c.srv.Metrics(), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(h)
		t.Cleanup(hs.Close)
		return hs
	}
	hs := serve()
	fams := scrape(t, hs.URL)
	want := []struct {
		name   string
		labels []string
		min    float64
		max    float64
	}{
		{"fedq_rounds_started_total", []string{"task", "blobs"}, 1, 1},
		{"fedq_rounds_committed_total", []string{"task", "blobs"}, 1, 1},
		{"fedq_round_agents_selected_total", []string{"task", "blobs"}, 4, 4},
		{"fedq_round_agents_dropped_total", []string{"task", "blobs"}, 1, 1},
		{"fedq_updates_accepted_total", []string{"task", "blobs"}, 3, 3},
		{"fedq_updates_rejected_total", []string{"reason", "stale-base"}, 1, 1},
		{"fedq_updates_rejected_total", []string{"reason", "invalid"}, 1, 1},
		{"fedq_task_version", []string{"task", "blobs"}, 2, 2},
		{"fedq_agents_online", nil, 4, 4},
		{"fedq_round_phase_duration_seconds", []string{"task", "blobs", "phase", "configure"}, 1, 1},
		{"fedq_round_phase_duration_seconds", []string{"task", "blobs", "phase", "train"}, 1, 1},
		{"fedq_round_phase_duration_seconds", []string{"task", "blobs", "phase", "commit"}, 1, 1},
		{"fedq_round_duration_seconds", []string{"task", "blobs", "outcome", "committed"}, 1, 1},
		{"fedq_task_loss", []string{"task", "blobs"}, 1e-9, 100},
		{"fedq_task_train_loss", []string{"task", "blobs"}, 1e-9, 100},
		{"fedq_network_received_bytes_total", nil, 3 * 40, 1e9}, // three updates of 40 bytes, at least
		{"fedq_network_sent_bytes_total", nil, 3 * 40, 1e9},
		{"go_goroutines", nil, 1, 1e6},
	}
	for _, w := range want {
		v, ok := sample(fams, w.name, w.labels...)
		if !ok || v < w.min || v > w.max {
			t.Errorf("%s%v = %v (present %v), want in [%v, %v]", w.name, w.labels, v, ok, w.min, w.max)
		}
	}
	if _, ok := sample(fams, "fedq_rounds_failed_total", "task", "blobs"); ok {
		t.Error("a failed-rounds series for a task with no failed round")
	}

	var task dashboard.Task
	if code := getJSON(t, hs.URL+"/api/tasks/blobs", &task); code != 200 {
		t.Fatalf("task: %d", code)
	}
	if len(task.Versions) != 2 || task.Versions[1].Metrics["updates"] != 3 {
		t.Errorf("versions %+v, want the initial one and one of 3 updates", task.Versions)
	}
	if len(task.Rounds) != 1 {
		t.Fatalf("rounds %+v, want 1", task.Rounds)
	}
	rd := task.Rounds[0]
	var phases []string
	for _, p := range rd.Phases {
		phases = append(phases, p.Phase)
		if p.End.Before(p.Start) || p.Start.Before(rd.Started) || p.End.After(rd.Ended) {
			t.Errorf("phase %+v outside its round %v … %v", p, rd.Started, rd.Ended)
		}
	}
	if rd.Outcome != "committed" || rd.Selected != 4 || rd.Updates != 3 || !slices.Equal(phases, []string{"configure", "train", "commit"}) {
		t.Errorf("round %+v (phases %v), want committed, 4 selected, 3 updates, configure-train-commit", rd, phases)
	}
	if !slices.Equal(task.Participation, []int{0, 3}) {
		t.Errorf("participation %v, want three agents in one round", task.Participation)
	}
	var ov dashboard.Overview
	if code := getJSON(t, hs.URL+"/api/tasks", &ov); code != 200 || ov.Online != 4 || ov.Enrolled != 4 || len(ov.Tasks) != 1 || ov.Tasks[0].Status != "done" {
		t.Errorf("overview %d %+v", code, ov)
	}
	var apiErr struct{ Error string }
	if code := getJSON(t, hs.URL+"/api/tasks/nope", &apiErr); code != 404 || apiErr.Error != `no task "nope" on this coordinator: not found` {
		t.Errorf("unknown task: %d %q", code, apiErr.Error)
	}

	// After a restart: the latest version's gauges come back from the store, the
	// counters start again, and the round is still on the timeline (without phases).
	r.conn.CloseWithError(0, "")
	c.stop()
	c.start()
	hs = serve()
	fams = scrape(t, hs.URL)
	if v, ok := sample(fams, "fedq_task_version", "task", "blobs"); !ok || v != 2 {
		t.Errorf("after restart: fedq_task_version = %v (present %v), want 2", v, ok)
	}
	if v, ok := sample(fams, "fedq_task_loss", "task", "blobs"); !ok || v <= 0 {
		t.Errorf("after restart: fedq_task_loss = %v (present %v)", v, ok)
	}
	task = dashboard.Task{}
	getJSON(t, hs.URL+"/api/tasks/blobs", &task)
	if len(task.Rounds) != 1 || task.Rounds[0].Outcome != "committed" || len(task.Rounds[0].Phases) != 0 {
		t.Errorf("after restart: rounds %+v, want the committed one without phases", task.Rounds)
	}
}
