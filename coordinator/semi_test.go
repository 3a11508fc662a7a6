package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/protocol"
)

// hidden returns d with every label removed.
func hidden(d *dataset.Dataset) *dataset.Dataset {
	for i := range d.Y {
		d.Y[i] = dataset.Unlabelled
	}
	return d
}

// semiTask is blobsTask made semi-supervised.
func semiTask(semi string) string {
	return `{"name": "blobs", "dataset": "blobs",
  "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 8}, {"type": "relu"}, {"type": "dense", "out": 2}]},
  "train": {"epochs": 1, "batch": 8, "lr": 0.1}, "agents_per_round": 4, "quorum": 4,
  "deadlines": {"configure": "5s", "train": "20s"}, "seed": 3, "semi": ` + semi + `}`
}

// labelsAtCoordinator is a cluster whose coordinator holds the labelled set
// blobs-labelled, with four agents holding only unlabelled blobs.
func labelsAtCoordinator(t *testing.T) *cluster {
	t.Helper()
	c := newClusterWith(t, func(c *cluster) { c.labelled = map[string]*dataset.Dataset{"blobs-labelled": blobs(64, 99)} })
	for i := range 4 {
		trainingAgent(t, c, fmt.Sprintf("site-%d", i), hidden(blobs(200, uint64(i))))
	}
	return c
}

// runRounds starts n rounds of the task blobs and waits for them.
func runRounds(t *testing.T, c *cluster, n int) {
	t.Helper()
	ctx := context.Background()
	adm := c.admin()
	if _, err := adm.StartRounds(ctx, "blobs", n); err != nil {
		t.Fatal(err)
	}
	waitForWithin(t, time.Minute, func() bool {
		ts, err := adm.Tasks(ctx)
		return err == nil && len(ts) == 1 && ts[0].Status == "done"
	}, fmt.Sprintf("%d rounds", n))
}

// TestSemiMixedRound runs rounds in which two agents hold labelled data and two only
// unlabelled data: every round takes all four updates, and the version's metrics carry
// the unlabelled agents' pseudo-label coverage.
func TestSemiMixedRound(t *testing.T) {
	c := newCluster(t)
	for i := range 4 {
		d := blobs(200, uint64(i))
		if i >= 2 {
			d = hidden(d)
		}
		trainingAgent(t, c, fmt.Sprintf("site-%d", i), d)
	}
	ctx := context.Background()
	adm := c.admin()
	if _, err := adm.SubmitTask(ctx, json.RawMessage(semiTask(`{"mode": "labels-at-agents", "threshold": 0.6, "ratio": 2}`))); err != nil {
		t.Fatal(err)
	}
	runRounds(t, c, 2)
	vs := blobsVersions(t, adm, 3)
	for _, v := range vs[1:] {
		cov, ok := v.Metrics["train_pseudo_coverage"]
		if v.Metrics["updates"] != 4 || !ok || !(cov > 0 && cov <= 1) {
			t.Fatalf("round %d metrics %v: want 4 updates and a pseudo-label coverage in (0, 1]", v.Round, v.Metrics)
		}
		if _, ok := v.Metrics["finetune_loss"]; ok {
			t.Fatalf("round %d was fine-tuned at the coordinator, which holds no labels for it", v.Round)
		}
	}
}

// TestSemiLabelsAtCoordinator: agents hold no labels; the coordinator trains the
// initial model on its labelled set and fine-tunes every aggregate on it. A task naming
// a labelled set the coordinator does not hold is refused when submitted.
func TestSemiLabelsAtCoordinator(t *testing.T) {
	c := labelsAtCoordinator(t)
	ctx := context.Background()
	adm := c.admin()
	_, err := adm.SubmitTask(ctx, json.RawMessage(semiTask(`{"mode": "labels-at-coordinator", "labelled": "elsewhere"}`)))
	if protocol.CodeOf(err) != protocol.CodeInvalid || !strings.Contains(err.Error(), `no labelled dataset "elsewhere"`) {
		t.Fatalf("task naming a missing labelled set: %v", err)
	}
	v1, err := adm.SubmitTask(ctx, json.RawMessage(semiTask(`{"mode": "labels-at-coordinator", "labelled": "blobs-labelled",
		"threshold": 0.8, "warmup_epochs": 20, "finetune": {"epochs": 2, "lr": 0.2}}`)))
	if err != nil {
		t.Fatal(err)
	}
	runRounds(t, c, 2)
	vs, err := adm.Versions(ctx, "blobs")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 || vs[0].Number != v1.Number {
		t.Fatalf("versions %+v", vs)
	}
	for _, v := range vs[1:] {
		m := v.Metrics
		// The warmed-up model separates the blobs: its pseudo-labels are confident, and
		// fine-tuning on the labels fits them.
		if m["updates"] != 4 || !(m["train_pseudo_coverage"] > 0.5) || !(m["finetune_accuracy"] > 0.9) {
			t.Fatalf("round %d metrics %v: want 4 updates, pseudo-label coverage > 0.5, fine-tuning accuracy > 0.9", v.Round, m)
		}
	}
}

// TestSemiStaticCosine runs labels-at-coordinator with SemiFL's static pseudo-labels and
// a cosine learning rate over the task's 3 rounds: every round's agents pseudo-label
// with the base model and train, and each version records the rate its agents were
// given and the fine-tuning's, both on the schedule.
func TestSemiStaticCosine(t *testing.T) {
	c := labelsAtCoordinator(t)
	ctx := context.Background()
	adm := c.admin()
	spec := strings.Replace(semiTask(`{"mode": "labels-at-coordinator", "labelled": "blobs-labelled", "pseudo_labels": "static",
		"threshold": 0.8, "warmup_epochs": 20, "finetune": {"epochs": 2, "lr": 0.2}}`),
		`"lr": 0.1}`, `"lr": 0.1, "lr_schedule": "cosine"}, "rounds": 3`, 1)
	if _, err := adm.SubmitTask(ctx, json.RawMessage(spec)); err != nil {
		t.Fatal(err)
	}
	runRounds(t, c, 3)
	vs := blobsVersions(t, adm, 4)
	for _, v := range vs[1:] {
		m := v.Metrics
		factor := (1 + math.Cos(math.Pi*float64(v.Round-1)/3)) / 2
		if math.Abs(m["train_lr"]-0.1*factor) > 1e-12 || math.Abs(m["finetune_lr"]-0.2*factor) > 1e-12 {
			t.Fatalf("round %d: train_lr %v, finetune_lr %v; want %v and %v", v.Round, m["train_lr"], m["finetune_lr"], 0.1*factor, 0.2*factor)
		}
		if m["updates"] != 4 || !(m["train_pseudo_coverage"] > 0.5) || !(m["finetune_accuracy"] > 0.9) {
			t.Fatalf("round %d metrics %v: want 4 updates, pseudo-label coverage > 0.5, fine-tuning accuracy > 0.9", v.Round, m)
		}
	}
}
