package compute

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestFreezeBitExact checks that a frozen model answers bit-for-bit what the same model
// unfrozen answers, at every batch size, that an answer does not depend on the batch it
// was computed in, and that SetValues reaches a frozen model's copies.
func TestFreezeBitExact(t *testing.T) {
	mlp, err := ParseSpec([]byte(`{"input":[37],"classes":5,"layers":[{"type":"dense","out":70},{"type":"relu"},{"type":"dense","out":5}]}`))
	if err != nil {
		t.Fatal(err)
	}
	specs := []Spec{mlp}
	for _, name := range []string{"2nn", "cnn"} {
		s, _ := BuiltinSpec(name)
		specs = append(specs, s)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, spec := range specs {
		plain, err := New[float32](spec, Options{Seed: 7, Inference: true})
		if err != nil {
			t.Fatal(err)
		}
		frozen, _ := New[float32](spec, Options{Seed: 7, Inference: true})
		if err := frozen.Freeze(); err != nil {
			t.Fatal(err)
		}
		in := plain.InputSize()
		x := make([]float32, 64*in)
		for i := range x {
			x[i] = r.Float32()
		}
		whole := append([]float32(nil), plain.Forward(x, 64, false)...)
		k := spec.Classes
		for _, n := range []int{1, 2, 3, 5, 8, 64} {
			got := frozen.Forward(x[:n*in], n, false)
			want := plain.Forward(x[:n*in], n, false)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(want[i]) != math.Float32bits(whole[i]) {
					t.Fatalf("%s, batch %d, logit %d: frozen %v, unfrozen %v, in a batch of 64 %v", spec.Name, n, i, got[i], want[i], whole[i])
				}
			}
		}
		// New weights through SetValues: the frozen model follows.
		v := append([]float32(nil), plain.Values()...)
		for i := range v {
			v[i] *= -0.5
		}
		if err := plain.SetValues(v); err != nil {
			t.Fatal(err)
		}
		if err := frozen.SetValues(v); err != nil {
			t.Fatal(err)
		}
		got, want := frozen.Forward(x[:in], 1, false), plain.Forward(x[:in], 1, false)
		for i := range k {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s after SetValues, logit %d: frozen %v, unfrozen %v", spec.Name, i, got[i], want[i])
			}
		}
	}
	trainable, _ := New[float32](mlp, Options{Seed: 1})
	if err := trainable.Freeze(); err == nil {
		t.Error("a trainable model was frozen")
	}
}
