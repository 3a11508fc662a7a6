package agent

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/protocol"
)

// TestCheckOfferPrivacy checks which offers with differential privacy an agent takes:
// DP-SGD with local steps and enough records; not other mechanisms, not DP-SGD counted
// in epochs, not a record minimum its data does not meet.
func TestCheckOfferPrivacy(t *testing.T) {
	data := &dataset.Dataset{Name: "d", X: make([]float32, 4*10), Y: []int32{0, 1, 0, 1, 0, 1, 0, 1, -1, -1}, Shape: []int{4}, NumClasses: 2}
	d := &Daemon{cfg: Config{Data: map[string]*dataset.Dataset{"d": data}}}
	spec := []byte(`{"input":[4],"classes":2,"layers":[{"type":"dense","out":2}]}`)
	offer := func(dp *protocol.DPParams, localSteps uint32) *protocol.TaskOffer {
		return &protocol.TaskOffer{TaskID: "t", Kind: protocol.TaskTrain, Dataset: "d", ModelSpec: spec, DP: dp,
			Config: protocol.TrainConfig{Batch: 2, LR: 0.1, LocalSteps: localSteps, Epochs: 1}}
	}
	for _, tc := range []struct {
		dp    *protocol.DPParams
		steps uint32
		want  string
	}{
		{nil, 0, ""},
		{&protocol.DPParams{Mechanism: protocol.MechanismDPSGD, ClipNorm: 1, NoiseMultiplier: 1, MinRecords: 8}, 5, ""},
		{&protocol.DPParams{Mechanism: protocol.MechanismDPSGD, ClipNorm: 1, NoiseMultiplier: 1, MinRecords: 9}, 5, "has 8 labelled records"},
		{&protocol.DPParams{Mechanism: protocol.MechanismDPSGD, ClipNorm: 1, NoiseMultiplier: 1}, 0, "needs a number of local steps"},
		{&protocol.DPParams{Mechanism: "skellam", ClipNorm: 1}, 5, `mechanism "skellam" is not supported`},
	} {
		_, _, err := d.checkOffer(offer(tc.dp, tc.steps))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.dp, err, tc.want)
		}
	}
}

// TestCheckOfferSemi: an agent takes semi-supervised offers (with or without labels of
// its own), but not with record-level DP, which it cannot account for with pseudo-labels.
func TestCheckOfferSemi(t *testing.T) {
	unl := &dataset.Dataset{Name: "u", X: make([]float32, 4*3), Y: []int32{-1, -1, -1}, Shape: []int{4}, NumClasses: 2}
	d := &Daemon{cfg: Config{Data: map[string]*dataset.Dataset{"u": unl}}}
	spec := []byte(`{"input":[4],"classes":2,"layers":[{"type":"dense","out":2}]}`)
	semi := &protocol.SemiParams{Threshold: 0.95, LambdaU: 1, Ratio: 7}
	for _, tc := range []struct {
		name string
		dp   *protocol.DPParams
		want string
	}{
		{"semi", nil, ""},
		{"semi with dp-sgd", &protocol.DPParams{Mechanism: protocol.MechanismDPSGD, ClipNorm: 1, NoiseMultiplier: 1}, "pseudo-labels is not supported"},
	} {
		o := &protocol.TaskOffer{TaskID: "t", Kind: protocol.TaskTrain, Dataset: "u", ModelSpec: spec, DP: tc.dp, Semi: semi,
			Config: protocol.TrainConfig{Batch: 2, LR: 0.1, LocalSteps: 5}}
		_, _, err := d.checkOffer(o)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestSubtractBase checks that the vector kernel gives, bit for bit, delta[i] − base[i],
// over lengths around its vector widths and values of every magnitude.
func TestSubtractBase(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 15, 16, 17, 63, 64, 65, 1000, 4099} {
		delta, base := make([]float32, n), make([]float32, n)
		for i := range delta {
			delta[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(20)-10)))
			base[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(20)-10)))
		}
		want := make([]float32, n)
		for i := range want {
			want[i] = delta[i] - base[i]
		}
		subtractBase(delta, base)
		for i := range want {
			if math.Float32bits(delta[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d: value %d = %v, want %v", n, i, delta[i], want[i])
			}
		}
	}
}

// BenchmarkSubtractBase10M computes a 10M-parameter update from the trained weights, as
// each agent does once per task; "loop" is the plain loop it replaces.
func BenchmarkSubtractBase10M(b *testing.B) {
	delta, base := make([]float32, 10_000_000), make([]float32, 10_000_000)
	for i := range base {
		base[i] = float32(i%1000) * 1e-3
	}
	b.Run("kernel", func(b *testing.B) {
		b.SetBytes(int64(12 * len(base)))
		for b.Loop() {
			subtractBase(delta, base)
		}
	})
	b.Run("loop", func(b *testing.B) {
		b.SetBytes(int64(12 * len(base)))
		for b.Loop() {
			for i, v := range base {
				delta[i] -= v
			}
		}
	})
}

// TestModelsLentOneAtATime checks that a model is never lent to two tasks at once (a
// cancelled task may still be finishing a step when the next one starts): a second
// take before the put gets a model of its own, a take after it the kept one, and a
// take of another spec a new one.
func TestModelsLentOneAtATime(t *testing.T) {
	spec, err := compute.ParseSpec([]byte(`{"input":[4],"classes":2,"layers":[{"type":"dense","out":2}]}`))
	if err != nil {
		t.Fatal(err)
	}
	other, err := compute.ParseSpec([]byte(`{"input":[4],"classes":3,"layers":[{"type":"dense","out":3}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var ms models
	take := func(s compute.Spec) *compute.Model[float32] {
		t.Helper()
		m, err := ms.take(s, 1)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := take(spec)
	b := take(spec)
	if a == b {
		t.Fatal("two tasks were lent the same model")
	}
	ms.put(spec, a)
	if c := take(spec); c != a {
		t.Fatal("a take after the put did not reuse the kept model")
	}
	ms.put(spec, b)
	if c := take(other); c == b || c.NumParams() != 15 {
		t.Fatalf("a take of another spec got %d parameters, want a new model of 15", c.NumParams())
	}
}
