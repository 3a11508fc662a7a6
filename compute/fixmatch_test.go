package compute

import (
	"context"
	"math"
	"slices"
	"sort"
	"testing"

	"github.com/fedq/fedq/compute/dataset"
)

func TestAugmentDeterministic(t *testing.T) {
	train, _ := loadMNIST(t)
	img := train.X[:784]
	for _, tc := range []struct {
		name  string
		shape []int
		kind  Augmentation
	}{
		{"weak image", []int{1, 28, 28}, AugmentWeak},
		{"strong image", []int{1, 28, 28}, AugmentStrong},
		{"strong features", []int{784}, AugmentStrong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAugmenter(tc.shape)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := NewAugmenter(tc.shape)
			v1, v2, v3 := make([]float32, 784), make([]float32, 784), make([]float32, 784)
			a.Apply(tc.kind, v1, img, 7, 42)
			a.Apply(tc.kind, v3, img, 7, 43) // another draw in between
			b.Apply(tc.kind, v2, img, 7, 42)
			if !slices.Equal(v1, v2) {
				t.Fatal("the same seed words gave different views")
			}
			if slices.Equal(v1, v3) {
				t.Fatal("different seed words gave the same view")
			}
			if slices.Equal(v1, img) {
				t.Fatal("the view is the original")
			}
			for i, v := range v1 {
				if tc.shape[0] == 1 && (v < 0 || v > 1) {
					t.Fatalf("value %d = %v outside [0, 1]", i, v)
				}
			}
		})
	}
	a, _ := NewAugmenter([]int{1, 28, 28})
	none := make([]float32, 784)
	a.Apply(AugmentNone, none, img, 1, 1)
	if !slices.Equal(none, img) {
		t.Fatal("AugmentNone changed the sample")
	}
	if _, err := NewAugmenter([]int{1, 0, 28}); err == nil {
		t.Fatal("a zero dimension was accepted")
	}
}

// TestAugmentWeakKeepsTheDigit checks that weak views stay recognisable and strong ones
// are harder: a model trained on clean digits classifies weak views almost as well as
// the originals, strong views clearly worse but far above chance.
func TestAugmentWeakKeepsTheDigit(t *testing.T) {
	train, test := loadMNIST(t)
	m := trained2NN(t, train)
	sub := test.Subset(dataset.Shuffle(test.Len(), 5)[:1000])
	a, _ := NewAugmenter(sub.Shape)
	acc := map[Augmentation]float64{}
	for _, k := range []Augmentation{AugmentNone, AugmentWeak, AugmentStrong} {
		v := &dataset.Dataset{Name: k.String(), X: make([]float32, len(sub.X)), Y: sub.Y, Shape: sub.Shape, NumClasses: 10}
		for i := range sub.Len() {
			a.Apply(k, v.X[i*784:], sub.X[i*784:], 3, uint64(i))
		}
		acc[k], _, _ = Evaluate(m, v, 100)
	}
	t.Logf("2nn accuracy: clean %.3f, weak %.3f, strong %.3f", acc[AugmentNone], acc[AugmentWeak], acc[AugmentStrong])
	// The 2NN sees raw pixels, so shifts cost it much more than they cost the CNN.
	if acc[AugmentWeak] < acc[AugmentNone]-0.3 || acc[AugmentStrong] > acc[AugmentWeak]-0.05 || acc[AugmentStrong] < 0.15 {
		t.Fatalf("accuracy clean %.3f, weak %.3f, strong %.3f: want weak within 30 points of clean, strong ≥ 5 below weak and ≥ 15%%",
			acc[AugmentNone], acc[AugmentWeak], acc[AugmentStrong])
	}
}

func trained2NN(t *testing.T, train *dataset.Dataset) *Model[float32] {
	t.Helper()
	spec, _ := BuiltinSpec("2nn")
	m, err := New[float32](spec, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	opt, _ := NewSGD(m, 0.1, 0, 0, false)
	sub := train.Subset(dataset.Shuffle(train.Len(), 7)[:6000])
	if _, err := Train(context.Background(), m, opt, sub, TrainConfig{Epochs: 1, Batch: 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	return m
}

// unlabelled returns a copy of d with every label hidden, and the labels.
func unlabelled(d *dataset.Dataset) (*dataset.Dataset, []int32) {
	u := d.Subset(dataset.Shuffle(d.Len(), 1)[:d.Len()])
	truth := slices.Clone(u.Y)
	for i := range u.Y {
		u.Y[i] = dataset.Unlabelled
	}
	return u, truth
}

// TestFixMatchThreshold runs one step over a whole unlabelled set, so every pseudo-label
// comes from the same model, and checks what is kept against an independent count: the
// weak views whose top probability is ≥ τ.
func TestFixMatchThreshold(t *testing.T) {
	train, _ := loadMNIST(t)
	m := trained2NN(t, train)
	base := m.CloneValues()
	u, truth := unlabelled(train.Subset(dataset.Shuffle(train.Len(), 11)[:300]))
	const seed = 9
	// The top probabilities of the weak views the step will draw (step 0: tag 0).
	a, _ := NewAugmenter(u.Shape)
	views := make([]float32, len(u.X))
	for i := range u.Len() {
		a.Apply(AugmentWeak, views[i*784:], u.X[i*784:], seed, uint64(i))
	}
	z := m.Forward(views, u.Len(), false)
	probs := make([]float64, u.Len())
	right := make([]bool, u.Len())
	for i := range probs {
		var c int
		probs[i], c = topProb(z[i*10 : (i+1)*10])
		right[i] = int32(c) == truth[i]
	}
	sorted := slices.Clone(probs)
	sort.Float64s(sorted)
	median := sorted[len(sorted)/2]
	for _, tc := range []struct {
		name string
		tau  float64
	}{
		{"tiny τ keeps all", 1e-9},
		{"median τ keeps half", median},
		{"default τ", DefaultThreshold},
		{"τ = 1 keeps none", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := m.SetValues(base); err != nil {
				t.Fatal(err)
			}
			var want, wantRight int
			for i, p := range probs {
				if p >= tc.tau {
					want++
					if right[i] {
						wantRight++
					}
				}
			}
			opt, _ := NewSGD(m, 0.05, 0, 0, false)
			res, err := TrainSemi(context.Background(), m, opt, u,
				TrainConfig{Epochs: 1, Batch: u.Len(), Seed: seed, MaxSteps: 1},
				Semi{Threshold: tc.tau, LambdaU: 1, Ratio: 7, Truth: truth})
			if err != nil {
				t.Fatal(err)
			}
			if res.Unlabelled != u.Len() || res.Kept != want || res.Correct != wantRight {
				t.Fatalf("pseudo-labelled %d, kept %d, correct %d; want %d, %d, %d", res.Unlabelled, res.Kept, res.Correct, u.Len(), want, wantRight)
			}
			// Every example looked at counts, kept or not: an agent none of whose
			// pseudo-labels pass τ still sends a (zero) update with its weight.
			if res.Samples != u.Len() {
				t.Fatalf("samples %d, want %d", res.Samples, u.Len())
			}
			moved := !slices.Equal(base, m.Values())
			if moved != (want > 0) {
				t.Fatalf("kept %d, weights moved: %v", want, moved)
			}
			if want > 0 && math.Abs(res.Coverage()-float64(want)/float64(u.Len())) > 1e-12 {
				t.Fatalf("coverage %v, want %v", res.Coverage(), float64(want)/float64(u.Len()))
			}
		})
	}
	if median <= 0.2 || median >= 1 {
		t.Fatalf("median top probability %v: the model is not confident enough for the test to mean anything", median)
	}
}

// TestFixMatchStatic checks SemiFL's static pseudo-labels: every unlabelled sample is
// labelled once, from the unaugmented image with the model as it came in (so the count
// over two epochs is that model's, computed independently here), training visits only
// the samples kept, and with none kept and no labels the model is left as it came,
// with the samples looked at still counted.
func TestFixMatchStatic(t *testing.T) {
	train, _ := loadMNIST(t)
	m := trained2NN(t, train)
	base := m.CloneValues()
	u, truth := unlabelled(train.Subset(dataset.Shuffle(train.Len(), 17)[:300]))
	z := slices.Clone(m.Forward(u.X, u.Len(), false))
	var want, wantRight int
	for i := range u.Len() {
		p, c := topProb(z[i*10 : (i+1)*10])
		if p >= DefaultThreshold {
			want++
			if int32(c) == truth[i] {
				wantRight++
			}
		}
	}
	if want < 30 || want == u.Len() {
		t.Fatalf("the model keeps %d of %d: the test needs some kept and some not", want, u.Len())
	}
	opt, _ := NewSGD(m, 0.05, 0, 0, false)
	res, err := TrainSemi(context.Background(), m, opt, u, TrainConfig{Epochs: 2, Batch: 10, Seed: 3},
		Semi{Threshold: DefaultThreshold, LambdaU: 1, Ratio: 7, Static: true, Truth: truth})
	if err != nil {
		t.Fatal(err)
	}
	steps := 2 * ((want + 9) / 10)
	if res.Unlabelled != u.Len() || res.Kept != want || res.Correct != wantRight || res.Steps != steps || res.Samples != 2*u.Len() {
		t.Fatalf("pseudo-labelled %d, kept %d, right %d, steps %d, samples %d; want %d, %d, %d, %d, %d",
			res.Unlabelled, res.Kept, res.Correct, res.Steps, res.Samples, u.Len(), want, wantRight, steps, 2*u.Len())
	}
	if slices.Equal(base, m.Values()) {
		t.Fatal("the weights did not move")
	}
	if err := m.SetValues(base); err != nil {
		t.Fatal(err)
	}
	res, err = TrainSemi(context.Background(), m, opt, u, TrainConfig{Epochs: 1, Batch: 10, Seed: 3},
		Semi{Threshold: 1, LambdaU: 1, Ratio: 7, Static: true})
	if err != nil || res.Kept != 0 || res.Steps != 0 || res.Samples != u.Len() {
		t.Fatalf("τ = 1: err %v, kept %d, steps %d, samples %d; want none kept, no step, %d samples", err, res.Kept, res.Steps, res.Samples, u.Len())
	}
	if !slices.Equal(base, m.Values()) {
		t.Fatal("with nothing to train on, the weights moved")
	}
}

// TestWeightedLossMatchesLoss: with equal weights 1/n the weighted loss is the mean loss.
func TestWeightedLossMatchesLoss(t *testing.T) {
	spec, _ := BuiltinSpec("2nn")
	m, _ := New[float32](spec, Options{Seed: 3})
	train, _ := loadMNIST(t)
	n := 16
	m.Forward(train.X[:n*784], n, false)
	loss, correct := m.Loss(train.Y[:n])
	g := slices.Clone(m.dlogits)
	w := make([]float32, n)
	for i := range w {
		w[i] = 1 / float32(n)
	}
	wl, wc := m.weightedLoss(train.Y[:n], w, n)
	if math.Abs(wl-loss) > 1e-5 || wc != correct {
		t.Fatalf("weighted loss %v (%d correct), loss %v (%d)", wl, wc, loss, correct)
	}
	for i := range g {
		if math.Abs(float64(g[i]-m.dlogits[i])) > 1e-6 {
			t.Fatalf("gradient %d: %v, want %v", i, m.dlogits[i], g[i])
		}
	}
}

// TestFixMatchMixed trains on a partly labelled set: steps hold Batch labelled and
// Ratio·Batch unlabelled samples, an epoch is a pass over the unlabelled ones, and
// pseudo-labels from a trained model are mostly right.
func TestFixMatchMixed(t *testing.T) {
	train, _ := loadMNIST(t)
	m := trained2NN(t, train)
	d := train.Subset(dataset.Shuffle(train.Len(), 13)[:1000])
	truth := slices.Clone(d.Y)
	for i := 100; i < d.Len(); i++ {
		d.Y[i] = dataset.Unlabelled
	}
	opt, _ := NewSGD(m, 0.02, 0.9, 0, false)
	res, err := TrainSemi(context.Background(), m, opt, d, TrainConfig{Epochs: 2, Batch: 10, Seed: 1},
		Semi{Threshold: 0.9, LambdaU: 1, Ratio: 3, Truth: truth})
	if err != nil {
		t.Fatal(err)
	}
	steps := 2 * 30 // ⌈900 / (3·10)⌉ per epoch
	if res.Steps != steps || res.Unlabelled != 2*900 || res.Samples != steps*40 {
		t.Fatalf("steps %d, unlabelled %d, samples %d; want %d, %d, %d", res.Steps, res.Unlabelled, res.Samples, steps, 1800, steps*40)
	}
	if res.Coverage() < 0.1 || res.PseudoAccuracy() < 0.9 {
		t.Fatalf("coverage %.3f, pseudo-label accuracy %.3f: want ≥ 0.1 and ≥ 0.9", res.Coverage(), res.PseudoAccuracy())
	}
	if _, err := TrainSemi(context.Background(), m, opt, d, TrainConfig{Epochs: 1, Batch: 10},
		Semi{Threshold: 0, LambdaU: 1, Ratio: 1}); err == nil {
		t.Fatal("τ = 0 was accepted")
	}
}

func BenchmarkAugment(b *testing.B) {
	img := make([]float32, 784)
	for i := range img {
		img[i] = float32(i%17) / 17
	}
	a, _ := NewAugmenter([]int{1, 28, 28})
	dst := make([]float32, 784)
	for _, k := range []Augmentation{AugmentWeak, AugmentStrong} {
		b.Run(k.String(), func(b *testing.B) {
			for i := range b.N {
				a.Apply(k, dst, img, 1, uint64(i))
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkTrainStepPerSample is the CNN's and the 2NN's training step, per sample, at
// batch 10: what augmentation is measured against.
func BenchmarkTrainStepPerSample(b *testing.B) {
	for _, name := range BuiltinNames() {
		b.Run(name, func(b *testing.B) {
			spec, _ := BuiltinSpec(name)
			m, _ := New[float32](spec, Options{Seed: 1})
			opt, _ := NewSGD(m, 0.01, 0, 0, false)
			const n = 10
			x := make([]float32, n*784)
			y := make([]int32, n)
			for i := range x {
				x[i] = float32(i%13) / 13
			}
			for i := range y {
				y[i] = int32(i)
			}
			b.ResetTimer()
			for range b.N {
				m.TrainStep(opt, x, y, n)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// TestFixMatchPlain: with Plain, labelled samples are trained on as they are — a
// full-batch epoch is exactly supervised training's step — and without it on weak views.
func TestFixMatchPlain(t *testing.T) {
	train, _ := loadMNIST(t)
	d := train.Subset(dataset.Shuffle(train.Len(), 5)[:20])
	spec, _ := BuiltinSpec("2nn")
	run := func(semi *Semi) []float32 {
		t.Helper()
		m, _ := New[float32](spec, Options{Seed: 9})
		opt, _ := NewSGD(m, 0.1, 0, 0, false)
		cfg := TrainConfig{Epochs: 1, Batch: d.Len(), Seed: 4}
		var err error
		if semi == nil {
			_, err = Train(context.Background(), m, opt, d, cfg)
		} else {
			_, err = TrainSemi(context.Background(), m, opt, d, cfg, *semi)
		}
		if err != nil {
			t.Fatal(err)
		}
		return slices.Clone(m.Values())
	}
	maxDiff := func(a, b []float32) (d float64) {
		for i := range a {
			d = max(d, math.Abs(float64(a[i]-b[i])))
		}
		return d
	}
	supervised := run(nil)
	plain := run(&Semi{Threshold: 0.95, LambdaU: 1, Ratio: 7, Plain: true})
	weak := run(&Semi{Threshold: 0.95, LambdaU: 1, Ratio: 7})
	if d := maxDiff(plain, supervised); d > 1e-5 {
		t.Fatalf("plain FixMatch step differs from the supervised one by %g", d)
	}
	if d := maxDiff(weak, supervised); d < 1e-4 {
		t.Fatalf("weak views train like the plain images (largest difference %g)", d)
	}
}
