package sim

import (
	"context"
	"testing"

	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator/task"
)

func TestParseSemi(t *testing.T) {
	for _, tc := range []struct {
		in   string
		mode string
		n    int
	}{
		{"", "", 0},
		{"labels-at-coordinator:600", task.LabelsAtCoordinator, 600},
		{"labels-at-agents:10", task.LabelsAtAgents, 10},
	} {
		s, err := parseSemi(tc.in)
		if err != nil || (s == nil) != (tc.mode == "") || (s != nil && (s.mode != tc.mode || s.n != tc.n)) {
			t.Errorf("parseSemi(%q) = %+v, %v", tc.in, s, err)
		}
	}
	for _, bad := range []string{"labels-at-coordinator", "labels-at-coordinator:", "labels-at-coordinator:0", "labels-at-agents:-1",
		"labels-at-agents:x", "labels-somewhere:5", "600"} {
		if _, err := parseSemi(bad); err == nil {
			t.Errorf("parseSemi(%q) accepted", bad)
		}
	}
}

func TestSemiSplits(t *testing.T) {
	d := &dataset.Dataset{Y: make([]int32, 1000), NumClasses: 10, Shape: []int{1}, X: make([]float32, 1000)}
	for i := range d.Y {
		d.Y[i] = int32(i % 10)
		if i%10 == 9 && i > 300 {
			d.Y[i] = 0 // class 9 has only 30 examples
		}
	}
	picked, rest, err := balanced(d, 600, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(picked) != 600 || len(rest) != 400 {
		t.Fatalf("picked %d, rest %d", len(picked), len(rest))
	}
	count := map[int32]int{}
	seen := map[int]bool{}
	for _, i := range append(picked, rest...) {
		if seen[i] {
			t.Fatalf("index %d twice", i)
		}
		seen[i] = true
	}
	for _, i := range picked {
		count[d.Y[i]]++
	}
	if count[9] != 30 || count[1] != 60 {
		t.Fatalf("per class %v: want 60 of each class that has them, all 30 of class 9", count)
	}
	if _, _, err := balanced(d, 1001, 1); err == nil {
		t.Fatal("more labels than examples accepted")
	}
	local := d.Subset(rest)
	truth := hideLabels(local, 3, 2)
	kept := map[int32]int{}
	for i, y := range local.Y {
		if y >= 0 {
			kept[y]++
			if y != truth[i] {
				t.Fatalf("kept label %d changed", i)
			}
		}
	}
	for c := range int32(9) {
		if kept[c] != 3 {
			t.Fatalf("kept per class %v, want 3 of each", kept)
		}
	}
	if l := labelledOnly(local); l.Len() != 27 {
		t.Fatalf("labelled only: %d examples", l.Len())
	}
}

// TestSimSemi runs a small federation in each semi-supervised setting and its baseline,
// and checks the pseudo-label figures that come back (their quality is the compute
// package's tests' and the benchmarks' business: a 2NN self-training for hundreds of
// local steps drifts).
func TestSimSemi(t *testing.T) {
	if _, err := dataset.MNISTDir(); err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		semi     string
		baseline bool
		pseudo   bool // rounds carry pseudo-label figures
	}{
		{"labels-at-coordinator:300", false, true},
		{"labels-at-coordinator:300", true, false},
		{"labels-at-agents:5", false, true},
		{"labels-at-agents:5", true, false},
	} {
		res, err := Run(context.Background(), Config{Agents: 10, Model: "2nn", Partition: "iid", Fraction: 0.4, Epochs: 1, Batch: 20,
			LR: 0.1, Rounds: 2, Seed: 3, Semi: tc.semi, SemiBaseline: tc.baseline, Threshold: 0.5, WarmupEpochs: 20, FineTuneEpochs: 1})
		if err != nil {
			t.Fatalf("%s (baseline %v): %v", tc.semi, tc.baseline, err)
		}
		if len(res.Rounds) != 2 || res.FinalAccuracy < 0.15 { // chance is 0.1; two rounds of a few steps
			t.Fatalf("%s (baseline %v): %+v", tc.semi, tc.baseline, res)
		}
		r := res.Rounds[1]
		if (r.PseudoCoverage != nil) != tc.pseudo || (!tc.pseudo && r.PseudoAccuracy != nil) {
			t.Fatalf("%s (baseline %v): round 2 pseudo-label figures %v, %v", tc.semi, tc.baseline, r.PseudoCoverage, r.PseudoAccuracy)
		}
		if !tc.pseudo {
			continue
		}
		// Accuracy is undefined (absent) when no pseudo-label was kept.
		cov := *r.PseudoCoverage
		if cov < 0 || cov > 1 || (cov > 0) != (r.PseudoAccuracy != nil) || (r.PseudoAccuracy != nil && (*r.PseudoAccuracy < 0 || *r.PseudoAccuracy > 1)) {
			t.Fatalf("%s: coverage %v, pseudo-label accuracy %v", tc.semi, cov, r.PseudoAccuracy)
		}
	}
	if _, err := Run(context.Background(), Config{Agents: 4, Model: "2nn", Fraction: 1, Epochs: 1, Batch: 20, LR: 0.02, Rounds: 1,
		Semi: "labels-at-coordinator:70000"}); err == nil {
		t.Fatal("more labels than the training set accepted")
	}
}
