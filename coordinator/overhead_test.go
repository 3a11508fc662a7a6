package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator"
)

// BenchmarkRoundOverhead times rounds of N in-process agents with trivial training (one
// step on one sample of a ~1k-parameter model): the framework's own cost per round.
// `fedq bench rounds` measures the same with the coordinator in its own process.
func BenchmarkRoundOverhead(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			c := newClusterHB(b, 10*time.Second)
			data := &dataset.Dataset{Name: "blobs", X: make([]float32, 31), Y: []int32{0}, Shape: []int{31}, NumClasses: 32}
			for i := range n {
				trainingAgentData(b, c, fmt.Sprintf("a%03d", i), data, 31)
			}
			ctx := context.Background()
			adm := c.admin()
			spec := fmt.Sprintf(`{"name": "bench", "dataset": "blobs", "seed": 1,
			  "model": {"input": [31], "classes": 32, "layers": [{"type": "dense", "out": 32}]},
			  "train": {"local_steps": 1, "batch": 1, "lr": 0.01}, "agents_per_round": %d, "quorum": %d, "over_select": 1}`, n, n)
			runBenchRounds(ctx, b, adm, spec, 2*time.Millisecond)
		})
	}
}

// BenchmarkRound10M times rounds of 10 in-process agents on a ~10M-parameter model
// (one dense layer, one training step): the cost of moving and folding big updates.
func BenchmarkRound10M(b *testing.B) {
	c := newClusterHB(b, 10*time.Second)
	const in, out = 3161, 3162
	data := &dataset.Dataset{Name: "blobs", X: make([]float32, in), Y: []int32{0}, Shape: []int{in}, NumClasses: out}
	for i := range 10 {
		trainingAgentData(b, c, fmt.Sprintf("a%03d", i), data, in)
	}
	ctx := context.Background()
	adm := c.admin()
	spec := fmt.Sprintf(`{"name": "bench", "dataset": "blobs", "seed": 1,
	  "model": {"input": [%d], "classes": %d, "layers": [{"type": "dense", "out": %d}]},
	  "train": {"local_steps": 1, "batch": 1, "lr": 0.01}, "agents_per_round": 10, "quorum": 10, "over_select": 1}`, in, out, out)
	runBenchRounds(ctx, b, adm, spec, 10*time.Millisecond)
}

// runBenchRounds submits the task "bench" from spec, then times b.N rounds of it,
// polling its status every poll until they are done.
func runBenchRounds(ctx context.Context, b *testing.B, adm *coordinator.AdminClient, spec string, poll time.Duration) {
	b.Helper()
	if _, err := adm.SubmitTask(ctx, json.RawMessage(spec)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if _, err := adm.StartRounds(ctx, "bench", b.N); err != nil {
		b.Fatal(err)
	}
	for {
		ts, err := adm.Tasks(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if ts[0].Status == "done" {
			return
		}
		time.Sleep(poll)
	}
}
