package dp

import (
	"math"
	"math/rand/v2"
	"testing"
)

func plan(t *testing.T, dim, minA, maxA, bits int, z float64) *Distributed {
	t.Helper()
	var seed [32]byte
	seed[0] = 7
	d, err := PlanDistributed(DistributedPlan{Dim: dim, Clip: 1, NoiseMultiplier: z, MinAgents: minA, MaxAgents: maxA, Bits: bits, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func randomUpdates(n, dim int, seed uint64) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([][]float32, n)
	for i := range out {
		out[i] = make([]float32, dim)
		for j := range out[i] {
			out[i][j] = float32(r.NormFloat64() * 0.02)
		}
	}
	return out
}

func TestRotationInverts(t *testing.T) {
	d := plan(t, 1000, 5, 10, 32, 1)
	x := make([]float64, d.Padded)
	r := rand.New(rand.NewPCG(1, 2))
	norm := 0.0
	for i := range 1000 {
		x[i] = r.NormFloat64()
		norm += x[i] * x[i]
	}
	y := append([]float64(nil), x...)
	d.rotate(y, false)
	ny := 0.0
	for _, v := range y {
		ny += v * v
	}
	if math.Abs(ny/norm-1) > 1e-12 {
		t.Fatalf("rotation changed the norm: %g → %g", norm, ny)
	}
	d.rotate(y, true)
	for i := range x {
		if math.Abs(y[i]-x[i]) > 1e-12 {
			t.Fatalf("inverse rotation: %d: %g, want %g", i, y[i], x[i])
		}
	}
}

// TestDistributedSumWithoutNoise: the decoded modular sum is the sum of the clipped
// updates, to within the rounding's grid, also when a narrow modulus wraps.
func TestDistributedSumWithoutNoise(t *testing.T) {
	for _, bits := range []int{32, 20} {
		n, dim := 10, 777
		d := plan(t, dim, n, n, bits, 1)
		ups := randomUpdates(n, dim, 3)
		ups[0][0] = 50 // one update far beyond the clip: it is clipped to norm 1
		sum := make([]uint32, d.Padded)
		enc := make([]uint32, d.Padded)
		rng := rand.New(rand.NewPCG(5, 5))
		want := make([]float64, dim)
		for _, u := range ups {
			if err := d.Encode(enc, u, rng, nil); err != nil {
				t.Fatal(err)
			}
			for i, v := range enc {
				sum[i] += v
			}
			norm := 0.0
			for _, v := range u {
				norm += float64(v) * float64(v)
			}
			s := math.Min(1, d.Clip/math.Sqrt(norm))
			for i, v := range u {
				want[i] += float64(v) * s
			}
		}
		got := make([]float32, dim)
		if err := d.Decode(got, sum, 1); err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range want {
			worst = math.Max(worst, math.Abs(float64(got[i])-want[i]))
		}
		// Rounding adds at most n steps per rotated coordinate, spread by the rotation.
		if worst > float64(n)*d.Gamma*4 {
			t.Fatalf("bits %d: decoded sum off by %g (γ = %g)", bits, worst, d.Gamma)
		}
	}
}

// TestDistributedRoundingBound: every encoded share, before noise, is within the
// sensitivity the accountant uses.
func TestDistributedRoundingBound(t *testing.T) {
	d := plan(t, 300, 3, 3, 16, 0.5)
	enc := make([]uint32, d.Padded)
	rng := rand.New(rand.NewPCG(8, 8))
	for k, u := range randomUpdates(50, 300, 9) {
		for i := range u {
			u[i] *= 100 // all clipped to norm 1
		}
		if err := d.Encode(enc, u, rng, nil); err != nil {
			t.Fatal(err)
		}
		sq := 0.0
		for _, v := range enc {
			x := float64(int64(v))
			if v >= 1<<(d.Bits-1) {
				x -= math.Exp2(float64(d.Bits))
			}
			sq += x * x
		}
		if math.Sqrt(sq) > d.Sensitivity() {
			t.Fatalf("share %d has norm %g, sensitivity %g", k, math.Sqrt(sq), d.Sensitivity())
		}
	}
}

// TestDistributedNoise: with every agent's noise, the decoded sum's error has the
// standard deviation of z × clip (per rotated coordinate), as planned.
func TestDistributedNoise(t *testing.T) {
	n, dim, z := 8, 4096, 1.3
	d := plan(t, dim, n, n, 32, z)
	if got := d.NoiseMultiplier(n); math.Abs(got/z-1) > 1e-3 {
		t.Fatalf("noise multiplier %g, planned %g", got, z)
	}
	if tau := d.Tau(n); tau > 1e-12 {
		t.Fatalf("τ = %g: the sum is not close to a discrete Gaussian", tau)
	}
	g, err := NewDiscreteGaussian(d.Sigma2, rand.New(rand.NewPCG(2, 2)))
	if err != nil {
		t.Fatal(err)
	}
	sum := make([]uint32, d.Padded)
	enc := make([]uint32, d.Padded)
	rng := rand.New(rand.NewPCG(4, 4))
	zero := make([]float32, dim)
	for range n {
		if err := d.Encode(enc, zero, rng, g); err != nil {
			t.Fatal(err)
		}
		for i, v := range enc {
			sum[i] += v
		}
	}
	got := make([]float32, dim)
	_ = d.Decode(got, sum, 1)
	sq := 0.0
	for _, v := range got {
		sq += float64(v) * float64(v)
	}
	sd := math.Sqrt(sq / float64(dim))
	want := z * d.Sensitivity() * d.Gamma // the noise's std in real units
	if math.Abs(sd/want-1) > 0.05 {
		t.Fatalf("noise std %g, want %g (z·Δ·γ)", sd, want)
	}
	if math.Abs(want/(z*d.Clip)-1) > 0.01 {
		t.Fatalf("the noise is %g × the clip, want about z = %g", want/d.Clip, z)
	}
}

func TestPlanDistributedRefuses(t *testing.T) {
	ok := DistributedPlan{Dim: 10, Clip: 1, NoiseMultiplier: 1, MinAgents: 5, MaxAgents: 10}
	for name, mod := range map[string]func(*DistributedPlan){
		"dim":    func(p *DistributedPlan) { p.Dim = 0 },
		"clip":   func(p *DistributedPlan) { p.Clip = math.NaN() },
		"noise":  func(p *DistributedPlan) { p.NoiseMultiplier = 0 },
		"agents": func(p *DistributedPlan) { p.MinAgents = 20 },
		"few":    func(p *DistributedPlan) { p.Agents = 4 },
		"many":   func(p *DistributedPlan) { p.Agents = 11 },
		"bits":   func(p *DistributedPlan) { p.Bits = 40 },
	} {
		p := ok
		mod(&p)
		if _, err := PlanDistributed(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := PlanDistributed(ok); err != nil {
		t.Fatal(err)
	}
}

// TestPlanDistributedForAgents checks that planning the noise for more agents than the
// fewest divides each agent's variance among them — the sum of Agents shares has the
// noise multiplier asked for — and leaves the grid, sized for MinAgents, as it was.
func TestPlanDistributedForAgents(t *testing.T) {
	base := DistributedPlan{Dim: 1000, Clip: 0.5, NoiseMultiplier: 3, MinAgents: 70, MaxAgents: 1120}
	floor, err := PlanDistributed(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, agents := range []int{70, 96, 100, 1120} {
		p := base
		p.Agents = agents
		d, err := PlanDistributed(p)
		if err != nil {
			t.Fatal(err)
		}
		if d.Gamma != floor.Gamma {
			t.Errorf("agents %d: grid step %g, want %g as planned for the fewest", agents, d.Gamma, floor.Gamma)
		}
		if got := d.NoiseMultiplier(agents); math.Abs(got/3-1) > 1e-12 {
			t.Errorf("agents %d: the sum of their shares has noise multiplier %g, want 3", agents, got)
		}
		if want := floor.Sigma2 * 70 / float64(agents); math.Abs(d.Sigma2/want-1) > 1e-12 {
			t.Errorf("agents %d: each share's variance %g, want %g", agents, d.Sigma2, want)
		}
	}
}
