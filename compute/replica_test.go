package compute

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// TestReplica checks that replicas of a model, frozen or not, answer bit-for-bit what the
// model answers while all of them run at once (run with -race), that they share its
// parameters, and that a trainable model has none.
func TestReplica(t *testing.T) {
	for _, name := range []string{"2nn", "cnn"} {
		for _, freeze := range []bool{false, true} {
			spec, _ := BuiltinSpec(name)
			m, err := New[float32](spec, Options{Seed: 11, Inference: true})
			if err != nil {
				t.Fatal(err)
			}
			if freeze {
				if err := m.Freeze(); err != nil {
					t.Fatal(err)
				}
			}
			const workers, n = 3, 5
			r := rand.New(rand.NewPCG(1, 2))
			xs := make([][]float32, workers+1)
			want := make([][]float32, workers+1)
			for i := range xs {
				xs[i] = make([]float32, n*m.InputSize())
				for j := range xs[i] {
					xs[i][j] = r.Float32()
				}
				want[i] = slices.Clone(m.Forward(xs[i], n, false))
			}
			nets := []*Model[float32]{m}
			for range workers {
				rep, err := m.Replica()
				if err != nil {
					t.Fatal(err)
				}
				if &rep.Values()[0] != &m.Values()[0] {
					t.Fatal("a replica has its own copy of the parameters")
				}
				nets = append(nets, rep)
			}
			var wg sync.WaitGroup
			errs := make([]string, len(nets))
			for i, net := range nets {
				wg.Go(func() {
					for range 4 {
						got := net.Forward(xs[i], n, false)
						for k := range want[i] {
							if math.Float32bits(got[k]) != math.Float32bits(want[i][k]) {
								errs[i] = "logits differ from the model's"
								return
							}
						}
					}
				})
			}
			wg.Wait()
			for i, e := range errs {
				if e != "" {
					t.Fatalf("%s (frozen %v), net %d: %s", name, freeze, i, e)
				}
			}
			// New weights in the model reach its replicas (frozen copies included).
			v := slices.Clone(m.Values())
			for i := range v {
				v[i] *= -0.5
			}
			if err := m.SetValues(v); err != nil {
				t.Fatal(err)
			}
			got, ref := nets[1].Forward(xs[0], n, false), slices.Clone(m.Forward(xs[0], n, false))
			if !slices.Equal(got, ref) {
				t.Fatalf("%s (frozen %v): a replica does not follow SetValues", name, freeze)
			}
		}
	}
	spec, _ := BuiltinSpec("2nn")
	trainable, _ := New[float32](spec, Options{Seed: 1})
	if _, err := trainable.Replica(); err == nil {
		t.Fatal("a trainable model made a replica")
	}
}
