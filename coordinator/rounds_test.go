package coordinator_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/protocol"
)

// blobs is a small separable dataset: two Gaussian blobs in 4 dimensions.
func blobs(n int, seed uint64) *dataset.Dataset {
	r := rand.New(rand.NewPCG(seed, 5))
	d := &dataset.Dataset{Name: "blobs", Shape: []int{4}, NumClasses: 2}
	for range n {
		y := r.IntN(2)
		c := float32(2*y - 1)
		d.X = append(d.X, c+float32(r.NormFloat64())*0.5, -c+float32(r.NormFloat64())*0.5, float32(r.NormFloat64()), c)
		d.Y = append(d.Y, int32(y))
	}
	return d
}

func trainingAgent(t testing.TB, c *cluster, name string, data *dataset.Dataset) *runningAgent {
	t.Helper()
	return trainingAgentData(t, c, name, data, 0)
}

// trainingAgentData starts an agent offering data under the name "blobs".
func trainingAgentData(t testing.TB, c *cluster, name string, data *dataset.Dataset, _ int) *runningAgent {
	t.Helper()
	return trainingAgentWith(t, c, name, data, nil)
}

// trainingAgentWith is trainingAgentData with set, if not nil, applied to the agent's
// configuration (hooks such as BeforeUpload or DropOut).
func trainingAgentWith(t testing.TB, c *cluster, name string, data *dataset.Dataset, set func(*agent.Config)) *runningAgent {
	t.Helper()
	id := c.enroll(name)
	ra := &runningAgent{events: make(chan agent.Event, 64), done: make(chan error, 1)}
	cfg := agent.Config{Identity: id, Logger: quietLogger(), Data: map[string]*dataset.Dataset{"blobs": data},
		Capabilities: protocol.Capabilities{Backend: "cpu", Datasets: agent.Describe([]*agent.LocalData{{Name: "blobs", Data: data}})},
		Backoff:      agent.Backoff{Min: 50 * time.Millisecond, Max: 400 * time.Millisecond},
		OnEvent: func(e agent.Event) {
			select {
			case ra.events <- e:
			default:
			}
		}}
	if set != nil {
		set(&cfg)
	}
	d, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra.d, ra.cancel = d, cancel
	go func() { ra.done <- d.Run(ctx) }()
	t.Cleanup(func() { ra.cancel(); <-ra.done })
	ra.wait(t, agent.Connected, 10*time.Second)
	return ra
}

const blobsTask = `{"name": "blobs", "dataset": "blobs",
  "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 8}, {"type": "relu"}, {"type": "dense", "out": 2}]},
  "train": {"epochs": 1, "batch": 8, "lr": 0.1}, "agents_per_round": 3, "quorum": 2,
  "deadlines": {"configure": "5s", "train": "20s"}, "seed": 3}`

func TestRoundsEndToEnd(t *testing.T) {
	c := newCluster(t)
	for i := range 4 {
		trainingAgent(t, c, fmt.Sprintf("site-%d", i), blobs(200, uint64(i)))
	}
	ctx := context.Background()
	adm := c.admin()
	v0, err := adm.SubmitTask(ctx, json.RawMessage(blobsTask))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.SubmitTask(ctx, json.RawMessage(blobsTask)); protocol.CodeOf(err) != protocol.CodeInvalid {
		t.Fatalf("duplicate task: %v", err)
	}
	if _, err := adm.StartRounds(ctx, "blobs", 3); err != nil {
		t.Fatal(err)
	}
	waitForWithin(t, time.Minute, func() bool {
		ts, err := adm.Tasks(ctx)
		return err == nil && len(ts) == 1 && ts[0].Status == "done"
	}, "three rounds")
	vs := blobsVersions(t, adm, 4)
	for i, v := range vs {
		if v.Number != v0.Number+uint64(i) || (i > 0 && (v.Parent != vs[i-1].Number || v.Round != uint64(i))) {
			t.Fatalf("version %d: %+v", i, v)
		}
		if i > 0 && (v.Metrics["updates"] < 2 || v.Metrics["train_loss"] <= 0) {
			t.Fatalf("version %d metrics %v", i, v.Metrics)
		}
	}
	// Pull the latest and check its signature and hash.
	latest, err := adm.Version(ctx, coordinatorVersionRequest(true))
	if err != nil || latest.Number != vs[3].Number {
		t.Fatalf("latest = %+v, %v", latest, err)
	}
	auth := c.srv.Authority()
	var weights []float32
	err = adm.FetchModel(ctx, latest.Number, latest.Hash, func(tr *protocol.TensorReader) error {
		h, err := protocol.VerifyVersion(auth.SigningKey.Public().(ed25519.PublicKey), tr.Header().Meta)
		if err != nil {
			return err
		}
		if h.Number != latest.Number {
			return fmt.Errorf("signed header names version %d", h.Number)
		}
		weights, err = readWeights(tr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(weights) != latest.Params {
		t.Fatalf("pulled %d weights, want %d", len(weights), latest.Params)
	}
}

func coordinatorVersionRequest(latest bool) coordinator.VersionRequest {
	return coordinator.VersionRequest{Latest: latest, Task: "blobs"}
}

// readWeights reads every tensor of a model stream into one flat vector.
func readWeights(tr *protocol.TensorReader) ([]float32, error) {
	var out []float32
	for {
		info, ok := tr.Next()
		if !ok {
			return out, nil
		}
		buf := make([]float32, info.NumElements())
		if err := tr.ReadInto(buf); err != nil {
			return nil, err
		}
		out = append(out, buf...)
	}
}
