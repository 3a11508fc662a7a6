package secagg

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// ids is a CA in miniature: each member's Ed25519 key, its public half as credential.
type ids struct {
	keys map[string]ed25519.PrivateKey
}

type signer ed25519.PrivateKey

func (s signer) Sign(msg []byte) ([]byte, error) {
	return ed25519.Sign(ed25519.PrivateKey(s), msg), nil
}

func (d *ids) Verify(member string, cred, msg, sig []byte) error {
	k, ok := d.keys[member]
	if !ok {
		return fmt.Errorf("unknown member %s", member)
	}
	pub := k.Public().(ed25519.PublicKey)
	if !bytes.Equal(cred, pub) {
		return errors.New("credential is not the member's")
	}
	if !ed25519.Verify(pub, msg, sig) {
		return errors.New("bad signature")
	}
	return nil
}

func newIDs(members []string, seed uint64) *ids {
	d := &ids{keys: map[string]ed25519.PrivateKey{}}
	r := rand.New(rand.NewPCG(seed, 99))
	for _, m := range members {
		var s [32]byte
		for i := range s {
			s[i] = byte(r.Uint32())
		}
		d.keys[m] = ed25519.NewKeyFromSeed(s[:])
	}
	return d
}

func (d *ids) cred(m string) []byte { return d.keys[m].Public().(ed25519.PublicKey) }

// detRand is a deterministic io.Reader for tests.
type detRand struct{ r *rand.ChaCha8 }

func newDetRand(seed uint64) *detRand {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return &detRand{rand.NewChaCha8(s)}
}

func (d *detRand) Read(p []byte) (int, error) { return d.r.Read(p) }

func members(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("agent-%04d", i)
	}
	slices.Sort(out)
	return out
}

func config(n, k, t, dim int) Config {
	var seed [32]byte
	seed[0] = byte(n)
	return Config{Round: "task.r1.a1.boot", Members: members(n), Neighbours: k, Threshold: t, GraphSeed: seed, Dim: dim,
		Clip: DefaultClip, MaxWeight: 1000}
}

// phase at which a member drops: before doing it.
type dropAt int

const (
	stay dropAt = iota
	dropAdvertise
	dropShare
	dropReceive // shares sent, gone before receiving its own
	dropMasked
	dropUnmask
)

// round is a whole secure round in memory.
type round struct {
	cfg     Config
	ids     *ids
	updates map[string][]float32
	weights map[string]float64
	drops   map[string]dropAt
	// tamper, if set, may change messages on the way through the coordinator.
	tamperRoster func(to string, r []Keys)
	tamperShares func(to string, m map[string][]byte)
	// prepare expands the masks before the input is ready (PrepareMasks).
	prepare bool
}

func newRound(cfg Config, seed uint64) *round {
	r := &round{cfg: cfg, ids: newIDs(cfg.Members, seed), updates: map[string][]float32{}, weights: map[string]float64{}, drops: map[string]dropAt{}}
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, m := range cfg.Members {
		u := make([]float32, cfg.Dim-1)
		for i := range u {
			u[i] = float32(rng.NormFloat64() * 0.5)
		}
		r.updates[m] = u
		r.weights[m] = float64(1 + rng.IntN(1000))
	}
	return r
}

// quantRNG is the member's stochastic-rounding source, the same for the plain sum.
func quantRNG(m string) *rand.Rand {
	h := uint64(0)
	for _, c := range m {
		h = h*131 + uint64(c)
	}
	return rand.New(rand.NewPCG(h, 7))
}

// plainSum is the sum of the given members' quantized vectors.
func (r *round) plainSum(t *testing.T, ms []string) []uint32 {
	t.Helper()
	cfg := r.cfg
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sum := make([]uint32, cfg.Dim)
	q := make([]uint32, cfg.Dim)
	for _, m := range ms {
		if err := cfg.Quantize(q, r.updates[m], r.weights[m], quantRNG(m)); err != nil {
			t.Fatal(err)
		}
		for i, v := range q {
			sum[i] += v
		}
	}
	return sum
}

// run plays the round; it returns the unmasked sum and the survivors, or the error
// that failed it.
func (r *round) run(t *testing.T) ([]uint32, []string, error) {
	t.Helper()
	srv, err := NewServer(r.cfg, r.ids)
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*Client{}
	for i, m := range r.cfg.Members {
		c, err := NewClient(r.cfg, m, signer(r.ids.keys[m]), r.ids, newDetRand(uint64(i)+1000))
		if err != nil {
			t.Fatal(err)
		}
		clients[m] = c
	}
	alive := func(m string, p dropAt) bool { d := r.drops[m]; return d == stay || d > p }
	for _, m := range r.cfg.Members {
		if !alive(m, dropAdvertise) {
			continue
		}
		k, err := clients[m].Advertise(r.ids.cred(m))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddKeys(k); err != nil {
			t.Fatal(err)
		}
	}
	rosters, err := srv.CloseAdvertise()
	if err != nil {
		return nil, nil, err
	}
	for _, m := range slices.Sorted(maps.Keys(rosters)) {
		if !alive(m, dropShare) {
			continue
		}
		if r.tamperRoster != nil {
			r.tamperRoster(m, rosters[m])
		}
		cts, err := clients[m].ShareKeys(rosters[m])
		if err != nil {
			return nil, nil, fmt.Errorf("client %s: %w", m, err)
		}
		if err := srv.AddShares(m, cts); err != nil {
			t.Fatal(err)
		}
	}
	fwd, err := srv.CloseShares()
	if err != nil {
		return nil, nil, err
	}
	for _, m := range slices.Sorted(maps.Keys(fwd)) {
		if !alive(m, dropReceive) {
			continue
		}
		if r.tamperShares != nil {
			r.tamperShares(m, fwd[m])
		}
		if err := clients[m].ReceiveShares(fwd[m]); err != nil {
			return nil, nil, fmt.Errorf("client %s: %w", m, err)
		}
		if !alive(m, dropMasked) {
			continue
		}
		if r.prepare {
			if err := clients[m].PrepareMasks(); err != nil {
				t.Fatal(err)
			}
		}
		y, err := clients[m].MaskedInput(r.updates[m], r.weights[m], quantRNG(m))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddMasked(m, y); err != nil {
			t.Fatal(err)
		}
	}
	survivors, err := srv.CloseMasked()
	if err != nil {
		return nil, nil, err
	}
	for _, m := range survivors {
		if !alive(m, dropUnmask) {
			continue
		}
		rv, err := clients[m].Unmask(survivors)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddReveals(m, rv); err != nil {
			t.Fatal(err)
		}
	}
	sum, n, err := srv.Finish()
	if err != nil {
		return nil, nil, err
	}
	if n != len(survivors) {
		t.Fatalf("Finish counts %d, survivors %d", n, len(survivors))
	}
	return sum, survivors, nil
}

// shareKeys takes every member of cfg through advertise and share keys (client i draws
// from newDetRand(i)) and returns the server, the clients and the shares the server
// forwards to each.
func shareKeys(t testing.TB, cfg Config, d *ids) (*Server, map[string]*Client, map[string]map[string][]byte) {
	t.Helper()
	srv, err := NewServer(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	cs := make(map[string]*Client, len(cfg.Members))
	for i, m := range cfg.Members {
		if cs[m], err = NewClient(cfg, m, signer(d.keys[m]), d, newDetRand(uint64(i))); err != nil {
			t.Fatal(err)
		}
		k, err := cs[m].Advertise(d.cred(m))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddKeys(k); err != nil {
			t.Fatal(err)
		}
	}
	ro, err := srv.CloseAdvertise()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cfg.Members {
		cts, err := cs[m].ShareKeys(ro[m])
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddShares(m, cts); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := srv.CloseShares()
	if err != nil {
		t.Fatal(err)
	}
	return srv, cs, fw
}

func TestSumBitExact(t *testing.T) {
	tests := []struct {
		n, dim int
		k, t   int // 0: ChooseGraph
	}{
		{n: 3, dim: 5, k: 2, t: 2},
		{n: 10, dim: 1001, k: 9, t: 6},
		{n: 40, dim: 257},
		{n: 120, dim: 64},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("n=%d", tc.n), func(t *testing.T) {
			k, th := tc.k, tc.t
			if k == 0 {
				ch, err := ChooseGraph(tc.n, DefaultDropout, DefaultFailureProbability)
				if err != nil {
					t.Fatal(err)
				}
				k, th = ch.Neighbours, ch.Threshold
			}
			r := newRound(config(tc.n, k, th, tc.dim), uint64(tc.n))
			r.prepare = tc.n%20 == 0 // half the cases with the masks prepared ahead
			sum, survivors, err := r.run(t)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(survivors, r.cfg.Members) {
				t.Fatalf("survivors %v", survivors)
			}
			if want := r.plainSum(t, survivors); !slices.Equal(sum, want) {
				t.Fatalf("unmasked sum differs from the plain sum of the quantized updates")
			}
		})
	}
}

// TestWeightedMean checks that the dequantized sum is the weighted mean of the updates.
func TestWeightedMean(t *testing.T) {
	r := newRound(config(10, 9, 6, 2001), 5)
	sum, survivors, err := r.run(t)
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.cfg
	_ = cfg.Validate()
	got := make([]float32, cfg.Dim-1)
	total, err := cfg.Dequantize(got, sum, len(survivors))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, cfg.Dim-1)
	wsum := 0.0
	for _, m := range survivors {
		w := r.weights[m]
		wsum += w
		for i, v := range r.updates[m] {
			want[i] += w * float64(v)
		}
	}
	if d := math.Abs(total - wsum/cfg.MaxWeight); d > 1e-6 {
		t.Fatalf("total weight %g, want %g", total, wsum/cfg.MaxWeight)
	}
	worst := 0.0
	for i := range want {
		worst = math.Max(worst, math.Abs(float64(got[i])-want[i]/wsum))
	}
	// Each member's rounding is at most one step, 2·Clip/Levels, over a total weight of
	// a few units: far below 1e-5.
	if worst > 1e-5 {
		t.Fatalf("weighted mean off by %g", worst)
	}
}

// TestDropoutsProperty drops random members at random phases: every round either
// returns exactly the sum of its survivors' quantized updates, or fails below the
// threshold.
func TestDropoutsProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 11))
	trials := 40
	if testing.Short() {
		trials = 15
	}
	succeeded, failed := 0, 0
	for trial := range trials {
		n := 3 + rng.IntN(28)
		var k, th int
		if rng.IntN(3) == 0 || n < 8 {
			k = n - 1
			th = (k+1)/2 + 1 + rng.IntN(k+1-((k+1)/2+1)+1)
		} else {
			ch, err := ChooseGraph(n, 0.2, 1e-3)
			if err != nil {
				t.Fatal(err)
			}
			k, th = ch.Neighbours, ch.Threshold
		}
		r := newRound(config(n, k, th, 17), uint64(trial))
		r.prepare = trial%2 == 0
		p := rng.Float64() * 0.5
		for _, m := range r.cfg.Members {
			if rng.Float64() < p {
				r.drops[m] = dropAt(1 + rng.IntN(int(dropUnmask)))
			}
		}
		sum, survivors, err := r.run(t)
		if err != nil {
			if !errors.Is(err, ErrBelowThreshold) {
				t.Fatalf("trial %d (n=%d k=%d t=%d): failed for another reason: %v", trial, n, k, th, err)
			}
			failed++
			continue
		}
		succeeded++
		for _, m := range survivors {
			if d := r.drops[m]; d != stay && d <= dropMasked {
				t.Fatalf("trial %d: %s dropped at %d but counted as a survivor", trial, m, d)
			}
		}
		if want := r.plainSum(t, survivors); !slices.Equal(sum, want) {
			t.Fatalf("trial %d (n=%d k=%d t=%d): wrong sum", trial, n, k, th)
		}
	}
	t.Logf("%d rounds succeeded, %d failed below the threshold", succeeded, failed)
	if succeeded == 0 || failed == 0 {
		t.Fatalf("the trials should see both outcomes: %d succeeded, %d failed", succeeded, failed)
	}
}

// TestThresholdBoundary: with exactly Threshold members through every phase the round
// succeeds; with one fewer it fails, at whichever phase the others drop.
func TestThresholdBoundary(t *testing.T) {
	for _, phase := range []dropAt{dropAdvertise, dropShare, dropReceive, dropMasked} {
		for _, extra := range []int{0, -1} {
			n, k, th := 7, 6, 4
			r := newRound(config(n, k, th, 9), 3)
			keep := th + extra
			for i, m := range r.cfg.Members {
				if i >= keep {
					r.drops[m] = phase
				}
			}
			sum, survivors, err := r.run(t)
			if extra == 0 {
				if err != nil {
					t.Fatalf("drop at %d, %d left: %v", phase, keep, err)
				}
				if want := r.plainSum(t, survivors); !slices.Equal(sum, want) || len(survivors) != th {
					t.Fatalf("drop at %d: wrong sum or survivors %v", phase, survivors)
				}
			} else if !errors.Is(err, ErrBelowThreshold) {
				t.Fatalf("drop at %d, %d left: want a failure below the threshold, got %v", phase, keep, err)
			}
		}
	}
	// Dropping in the unmask phase: the survivors' masks need Threshold reveals.
	r := newRound(config(7, 6, 4, 9), 4)
	for i, m := range r.cfg.Members {
		if i >= 3 {
			r.drops[m] = dropUnmask
		}
	}
	if _, _, err := r.run(t); !errors.Is(err, ErrBelowThreshold) {
		t.Fatalf("3 of 7 revealing, threshold 4: %v", err)
	}
}

func TestSubstitutedKeysRefused(t *testing.T) {
	r := newRound(config(5, 4, 3, 9), 8)
	r.tamperRoster = func(to string, ks []Keys) {
		ks[0].MaskPub[3] ^= 1 // the coordinator swaps in a key of its own
	}
	_, _, err := r.run(t)
	if err == nil || !strings.Contains(err.Error(), "bad signature") {
		t.Fatalf("a substituted key was not refused: %v", err)
	}
	// And the coordinator's own check refuses keys signed by someone else.
	cfg := config(5, 4, 3, 9)
	d := newIDs(cfg.Members, 9)
	srv, _ := NewServer(cfg, d)
	c, _ := NewClient(cfg, cfg.Members[0], signer(d.keys[cfg.Members[1]]), d, newDetRand(1))
	k, _ := c.Advertise(d.cred(cfg.Members[0]))
	if err := srv.AddKeys(k); err == nil {
		t.Fatal("keys signed by another member were accepted")
	}
}

func TestTamperedSharesRefused(t *testing.T) {
	r := newRound(config(5, 4, 3, 9), 8)
	r.tamperShares = func(to string, m map[string][]byte) {
		for k, ct := range m {
			ct = slices.Clone(ct)
			ct[len(ct)-1] ^= 1
			m[k] = ct
			return
		}
	}
	if _, _, err := r.run(t); err == nil || !strings.Contains(err.Error(), "do not open") {
		t.Fatalf("a tampered share was not refused: %v", err)
	}
	// A share moved to another recipient does not open either (bound to sender and
	// recipient).
	r = newRound(config(5, 4, 3, 9), 8)
	r.tamperShares = func(to string, m map[string][]byte) {
		keys := slices.Sorted(maps.Keys(m))
		m[keys[0]], m[keys[1]] = m[keys[1]], m[keys[0]]
	}
	if _, _, err := r.run(t); err == nil || !strings.Contains(err.Error(), "do not open") {
		t.Fatalf("swapped shares were not refused: %v", err)
	}
}

// TestOtherRoundRefused replays keys and shares of one round into another with the
// same members.
func TestOtherRoundRefused(t *testing.T) {
	a := config(5, 4, 3, 9)
	b := a
	b.Round = "task.r2.a1.boot"
	d := newIDs(a.Members, 1)
	ca := map[string]*Client{}
	cb := map[string]*Client{}
	for i, m := range a.Members {
		ca[m], _ = NewClient(a, m, signer(d.keys[m]), d, newDetRand(uint64(i)))
		cb[m], _ = NewClient(b, m, signer(d.keys[m]), d, newDetRand(uint64(i+50)))
	}
	sa, _ := NewServer(a, d)
	sb, _ := NewServer(b, d)
	for _, m := range a.Members {
		k, _ := ca[m].Advertise(d.cred(m))
		if err := sa.AddKeys(k); err != nil {
			t.Fatal(err)
		}
		if err := sb.AddKeys(k); err == nil {
			t.Fatal("keys of round 1 accepted in round 2")
		}
		kb, _ := cb[m].Advertise(d.cred(m))
		if err := sb.AddKeys(kb); err != nil {
			t.Fatal(err)
		}
	}
	ra, _ := sa.CloseAdvertise()
	rb, _ := sb.CloseAdvertise()
	for _, m := range a.Members {
		cts, err := ca[m].ShareKeys(ra[m])
		if err != nil {
			t.Fatal(err)
		}
		_ = sa.AddShares(m, cts)
		ctb, err := cb[m].ShareKeys(rb[m])
		if err != nil {
			t.Fatal(err)
		}
		_ = sb.AddShares(m, ctb)
	}
	fa, _ := sa.CloseShares()
	m := a.Members[0]
	if err := cb[m].ReceiveShares(fa[m]); err == nil || !strings.Contains(err.Error(), "do not open") {
		t.Fatalf("shares of round 1 opened in round 2: %v", err)
	}
}

// TestNeverBoth: a client reveals once, and only for a survivor list that includes it.
func TestNeverBoth(t *testing.T) {
	cfg := config(5, 4, 3, 9)
	d := newIDs(cfg.Members, 1)
	_, cs, fw := shareKeys(t, cfg, d)
	for _, m := range cfg.Members {
		if err := cs[m].ReceiveShares(fw[m]); err != nil {
			t.Fatal(err)
		}
		if _, err := cs[m].MaskedInput(make([]float32, 8), 1, quantRNG(m)); err != nil {
			t.Fatal(err)
		}
	}
	c := cs[cfg.Members[0]]
	all := cfg.Members
	if _, err := c.Unmask(all[1:]); err == nil {
		t.Fatal("unmasked for a survivor list without itself")
	}
	c = cs[cfg.Members[1]]
	first, err := c.Unmask(all)
	if err != nil {
		t.Fatal(err)
	}
	for m, b := range first {
		if b[0] != revealSelf {
			t.Fatalf("survivor %s: revealed kind %d", m, b[0])
		}
	}
	// A second request claiming member 4 dropped would get its mask-key share too.
	if _, err := c.Unmask(all[:4]); err == nil {
		t.Fatal("a second unmask request was answered: both shares of one member could leak")
	}
	// Too few survivors among its holders: refused.
	c = cs[cfg.Members[2]]
	if _, err := c.Unmask(all[1:3]); err == nil {
		t.Fatal("unmasked with fewer surviving holders than the threshold")
	}
}

// TestServerRefusesBadReveals: wrong kind, a share not held, twice.
func TestServerRefusesBadReveals(t *testing.T) {
	cfg := config(6, 5, 4, 9)
	d := newIDs(cfg.Members, 1)
	srv, cs, fw := shareKeys(t, cfg, d)
	for _, m := range cfg.Members[:5] { // the last drops before its masked input
		_ = cs[m].ReceiveShares(fw[m])
		y, _ := cs[m].MaskedInput(make([]float32, 8), 1, quantRNG(m))
		if err := srv.AddMasked(m, y); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.AddMasked(cfg.Members[0], make([]uint32, 9)); err == nil {
		t.Fatal("a second masked input was added")
	}
	surv, err := srv.CloseMasked()
	if err != nil {
		t.Fatal(err)
	}
	m := surv[0]
	rv, err := cs[m].Unmask(surv)
	if err != nil {
		t.Fatal(err)
	}
	dropped := cfg.Members[5]
	bad := map[string][]byte{}
	for k, v := range rv {
		bad[k] = slices.Clone(v)
	}
	bad[dropped][0] = revealSelf // the self-mask share of a dropped member: refused
	if err := srv.AddReveals(m, bad); err == nil {
		t.Fatal("a self-mask share of a dropped member was taken")
	}
	bad = map[string][]byte{}
	for k, v := range rv {
		bad[k] = v
	}
	bad["agent-x"] = rv[m]
	if err := srv.AddReveals(m, bad); err == nil {
		t.Fatal("a share of a non-member was taken")
	}
	if err := srv.AddReveals(m, rv); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddReveals(m, rv); err == nil {
		t.Fatal("reveals taken twice")
	}
}

func TestChooseGraph(t *testing.T) {
	tests := []struct {
		n        int
		complete bool
	}{{3, true}, {10, true}, {100, false}, {500, false}, {1000, false}, {10000, false}}
	for _, tc := range tests {
		ch, err := ChooseGraph(tc.n, DefaultDropout, DefaultFailureProbability)
		if err != nil {
			t.Fatal(err)
		}
		if (ch.Neighbours == tc.n-1) != tc.complete {
			t.Errorf("n=%d: k=%d, complete graph expected: %v", tc.n, ch.Neighbours, tc.complete)
		}
		if !tc.complete && ch.Failure > DefaultFailureProbability {
			t.Errorf("n=%d: failure bound %g above the target", tc.n, ch.Failure)
		}
		cfg := config(tc.n, ch.Neighbours, ch.Threshold, 2)
		if err := cfg.Validate(); err != nil {
			t.Errorf("n=%d: the chosen parameters do not validate: %v", tc.n, err)
		}
		t.Logf("n=%d: k=%d t=%d failure ≤ %.3g", tc.n, ch.Neighbours, ch.Threshold, ch.Failure)
	}
	if _, err := ChooseGraph(2, 0.1, 1e-6); err == nil {
		t.Error("2 members accepted")
	}
}

func TestGraphRegular(t *testing.T) {
	for _, tc := range []struct{ n, k int }{{10, 4}, {101, 14}, {500, 24}, {7, 6}} {
		var seed [32]byte
		seed[1] = byte(tc.k)
		g := NewGraph(tc.n, tc.k, seed)
		for u, nb := range g {
			if len(nb) != tc.k {
				t.Fatalf("n=%d k=%d: member %d has %d neighbours", tc.n, tc.k, u, len(nb))
			}
			for _, v := range nb {
				if v == u || !slices.Contains(g[v], u) {
					t.Fatalf("n=%d k=%d: edge %d–%d is not symmetric", tc.n, tc.k, u, v)
				}
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := config(10, 4, 3, 5)
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"odd k", func(c *Config) { c.Neighbours = 5 }, "neighbours"},
		{"low threshold", func(c *Config) { c.Threshold = 2 }, "threshold"},
		{"high threshold", func(c *Config) { c.Threshold = 6 }, "threshold"},
		{"unsorted", func(c *Config) { c.Members[0], c.Members[1] = c.Members[1], c.Members[0] }, "sorted"},
		{"clip", func(c *Config) { c.Clip = 0.5 }, "clip"},
		{"levels", func(c *Config) { c.Levels = math.MaxUint32 }, "levels"},
		{"two", func(c *Config) { c.Members = c.Members[:2]; c.Neighbours = 1; c.Threshold = 1 }, "at least 3"},
		{"weight", func(c *Config) { c.MaxWeight = math.NaN() }, "weight"},
	}
	for _, tc := range tests {
		c := good
		c.Members = slices.Clone(good.Members)
		tc.mod(&c)
		err := c.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error about %q", tc.name, err, tc.want)
		}
	}
}

func TestQuantizeRefusesNaN(t *testing.T) {
	c := config(3, 2, 2, 3)
	_ = c.Validate()
	if err := c.Quantize(make([]uint32, 3), []float32{1, float32(math.NaN())}, 1, quantRNG("x")); err == nil {
		t.Fatal("NaN quantized")
	}
}

// TestMaskedLooksUniform: what the coordinator receives from one member is not its
// quantized update: the high bits of masked minus quantized are uniform.
func TestMaskedLooksUniform(t *testing.T) {
	r := newRound(config(5, 4, 3, 40001), 12)
	cfg := r.cfg
	_ = cfg.Validate()
	_, cs, fw := shareKeys(t, cfg, r.ids)
	m := cfg.Members[2]
	_ = cs[m].ReceiveShares(fw[m])
	y, err := cs[m].MaskedInput(r.updates[m], r.weights[m], quantRNG(m))
	if err != nil {
		t.Fatal(err)
	}
	// The quantized update concentrates near Levels/2; the masked input must not.
	var buckets [16]int
	for _, v := range y {
		buckets[v>>28]++
	}
	exp := float64(len(y)) / 16
	chi := 0.0
	for _, b := range buckets {
		chi += (float64(b) - exp) * (float64(b) - exp) / exp
	}
	// χ² with 15 degrees of freedom: 37.7 is its 0.999 quantile.
	if chi > 37.7 {
		t.Fatalf("masked input is not uniform: χ² = %.1f, buckets %v", chi, buckets)
	}
}

// TestMaskedVectorSums: vectors masked as given (no quantization) unmask to their exact
// sum modulo 2^32.
func TestMaskedVectorSums(t *testing.T) {
	cfg := config(6, 5, 4, 33)
	d := newIDs(cfg.Members, 2)
	srv, cs, fw := shareKeys(t, cfg, d)
	want := make([]uint32, 33)
	r := rand.New(rand.NewPCG(1, 1))
	for _, m := range cfg.Members {
		if err := cs[m].ReceiveShares(fw[m]); err != nil {
			t.Fatal(err)
		}
		v := make([]uint32, 33)
		for i := range v {
			v[i] = r.Uint32()
			want[i] += v[i]
		}
		y, err := cs[m].MaskedVector(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddMasked(m, y); err != nil {
			t.Fatal(err)
		}
	}
	surv, _ := srv.CloseMasked()
	for _, m := range surv {
		rv, _ := cs[m].Unmask(surv)
		_ = srv.AddReveals(m, rv)
	}
	sum, _, err := srv.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum, want) {
		t.Fatal("the unmasked sum is not the sum of the vectors")
	}
}
