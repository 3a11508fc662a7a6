package secagg

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"

	"github.com/cloudflare/circl/secretsharing"
)

// ErrBelowThreshold is wrapped by every error that fails a round because too few
// agents remain.
var ErrBelowThreshold = errors.New("secagg: below the threshold")

// serverPhase is how far a Server has gone.
type serverPhase int

const (
	serverAdvertise serverPhase = iota
	serverShares
	serverMasked
	serverUnmask
	serverDone
	serverFailed
)

func (p serverPhase) String() string {
	return [...]string{"advertise keys", "share keys", "masked input", "unmask", "done", "failed"}[p]
}

// Server is the coordinator's side of one secure round. It collects each phase's
// messages (Add…), and when the caller closes the phase (on its deadline, or once every
// agent still in has answered) it says what to send next, or fails the round. It adds
// masked inputs to a running sum as they arrive and holds no individual input. It is
// not safe for concurrent use.
type Server struct {
	cfg    Config
	digest [32]byte
	g      Graph
	verify Verifier
	phase  serverPhase

	keys      map[int]Keys
	in        map[int]bool           // members still in the round (U1, then U2, …)
	shares    map[int]map[int][]byte // sender → recipient → ciphertext
	holds     map[int]map[int]bool   // owner → members holding its shares (forwarded, or itself)
	sum       []uint32
	survivors map[int]bool // U3
	revealed  map[int]bool // members whose reveals were taken
	selfSh    map[int][]secretsharing.Share
	maskSh    map[int][]secretsharing.Share
}

// NewServer starts the coordinator's side of the round cfg describes.
func NewServer(cfg Config, verify Verifier) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, digest: cfg.Digest(), g: NewGraph(len(cfg.Members), cfg.Neighbours, cfg.GraphSeed), verify: verify,
		keys: map[int]Keys{}, shares: map[int]map[int][]byte{}, holds: map[int]map[int]bool{}, revealed: map[int]bool{},
		selfSh: map[int][]secretsharing.Share{}, maskSh: map[int][]secretsharing.Share{}}, nil
}

// Config returns the round's parameters (Levels filled in).
func (s *Server) Config() Config { return s.cfg }

func (s *Server) expect(p serverPhase, what string) error {
	if s.phase != p {
		return fmt.Errorf("secagg: %s arrived in the %s phase of round %s", what, s.phase, s.cfg.Round)
	}
	return nil
}

func (s *Server) member(m string) (int, error) {
	i := s.cfg.index(m)
	if i < 0 {
		return 0, fmt.Errorf("secagg: %q is not a member of round %s", m, s.cfg.Round)
	}
	return i, nil
}

// failf fails the round for too few agents.
func (s *Server) failf(format string, args ...any) error {
	s.phase = serverFailed
	return fmt.Errorf("%w: round %s: %s", ErrBelowThreshold, s.cfg.Round, fmt.Sprintf(format, args...))
}

// AddKeys takes a member's advertised keys, after checking their signature, the
// round they were made for and that they are not low-order points.
func (s *Server) AddKeys(k Keys) error {
	if err := s.expect(serverAdvertise, "keys"); err != nil {
		return err
	}
	i, err := s.member(k.Member)
	if err != nil {
		return err
	}
	if _, dup := s.keys[i]; dup {
		return fmt.Errorf("secagg: %s advertised keys twice", k.Member)
	}
	if err := k.check(s.digest, s.verify); err != nil {
		return err
	}
	s.keys[i] = k
	return nil
}

// prune removes, until none is left, every member of in with fewer than Threshold
// members of in among its holders (as holds(u) counts them); it then fails the round if
// fewer than Threshold remain.
func (s *Server) prune(in map[int]bool, holders func(u int) []int, phase string) error {
	for changed := true; changed; {
		changed = false
		for _, u := range slices.Sorted(maps.Keys(in)) {
			live := 0
			for _, h := range holders(u) {
				if in[h] {
					live++
				}
			}
			if live < s.cfg.Threshold {
				delete(in, u)
				changed = true
			}
		}
	}
	if len(in) < s.cfg.Threshold {
		return s.failf("%d agents left after %s, threshold %d", len(in), phase, s.cfg.Threshold)
	}
	return nil
}

// CloseAdvertise ends the advertise phase. It returns, for each member still in, the
// keys of its neighbours that advertised (its roster); members whose holders fall below
// the threshold are left out. Below the threshold overall the round fails.
func (s *Server) CloseAdvertise() (map[string][]Keys, error) {
	if err := s.expect(serverAdvertise, "close of advertise"); err != nil {
		return nil, err
	}
	s.in = map[int]bool{}
	for i := range s.keys {
		s.in[i] = true
	}
	if err := s.prune(s.in, s.g.holders, "advertising keys"); err != nil {
		return nil, err
	}
	out := make(map[string][]Keys, len(s.in))
	for u := range s.in {
		var r []Keys
		for _, v := range s.g[u] {
			if s.in[v] {
				r = append(r, s.keys[v])
			}
		}
		out[s.cfg.Members[u]] = r
	}
	s.phase = serverShares
	return out, nil
}

// AddShares takes a member's encrypted shares, keyed by recipient; each recipient must
// be a neighbour on its roster.
func (s *Server) AddShares(member string, cts map[string][]byte) error {
	if err := s.expect(serverShares, "shares"); err != nil {
		return err
	}
	u, err := s.member(member)
	if err != nil {
		return err
	}
	if !s.in[u] {
		return fmt.Errorf("secagg: %s is no longer in round %s", member, s.cfg.Round)
	}
	if _, dup := s.shares[u]; dup {
		return fmt.Errorf("secagg: %s sent its shares twice", member)
	}
	m := make(map[int][]byte, len(cts))
	for to, ct := range cts {
		v := s.cfg.index(to)
		if v < 0 || v == u || !s.in[v] || !slices.Contains(s.g[u], v) {
			return fmt.Errorf("secagg: %s sent shares to %q, not on its roster", member, to)
		}
		m[v] = ct
	}
	s.shares[u] = m
	return nil
}

// CloseShares ends the share-keys phase and returns, for each member still in (and only
// for those), the ciphertexts made for it, keyed by sender. Members that sent no shares are out, and so
// is any member that would hold too few of its peers' shares (it would abort).
func (s *Server) CloseShares() (map[string]map[string][]byte, error) {
	if err := s.expect(serverShares, "close of share keys"); err != nil {
		return nil, err
	}
	in := map[int]bool{}
	for u := range s.shares {
		if s.in[u] {
			in[u] = true
		}
	}
	// A member's holders are itself and the members that have its ciphertexts.
	holders := func(u int) []int {
		h := []int{u}
		for v := range s.shares[u] {
			h = append(h, v)
		}
		return h
	}
	// …and it needs Threshold of the shares it receives (its own included) to go on.
	receives := func(v int) []int {
		h := []int{v}
		for u, m := range s.shares {
			if _, ok := m[v]; ok {
				h = append(h, u)
			}
		}
		return h
	}
	for changed := true; changed; {
		changed = false
		for _, u := range slices.Sorted(maps.Keys(in)) {
			if countIn(in, holders(u)) < s.cfg.Threshold || countIn(in, receives(u)) < s.cfg.Threshold {
				delete(in, u)
				changed = true
			}
		}
	}
	if len(in) < s.cfg.Threshold {
		return nil, s.failf("%d agents left after sharing keys, threshold %d", len(in), s.cfg.Threshold)
	}
	s.in = in
	out := make(map[string]map[string][]byte, len(in))
	for v := range in {
		s.holds[v] = map[int]bool{v: true}
		out[s.cfg.Members[v]] = map[string][]byte{}
	}
	for u := range in {
		for v, ct := range s.shares[u] {
			if !in[v] {
				continue
			}
			out[s.cfg.Members[v]][s.cfg.Members[u]] = ct
			s.holds[u][v] = true
		}
	}
	s.shares = nil // delivered; the coordinator keeps no ciphertexts
	s.sum = make([]uint32, s.cfg.Dim)
	s.survivors = map[int]bool{}
	s.phase = serverMasked
	return out, nil
}

func countIn(in map[int]bool, xs []int) int {
	n := 0
	for _, x := range xs {
		if in[x] {
			n++
		}
	}
	return n
}

// AddMasked adds a member's masked input to the running sum; the vector is not kept.
func (s *Server) AddMasked(member string, y []uint32) error {
	if err := s.expect(serverMasked, "a masked input"); err != nil {
		return err
	}
	u, err := s.member(member)
	if err != nil {
		return err
	}
	switch {
	case !s.in[u]:
		return fmt.Errorf("secagg: a masked input from %s, which did not share keys in round %s", member, s.cfg.Round)
	case s.survivors[u]:
		return fmt.Errorf("secagg: %s sent its masked input twice", member)
	case len(y) != s.cfg.Dim:
		return fmt.Errorf("secagg: a masked input of %d values from %s, round has %d", len(y), member, s.cfg.Dim)
	}
	for i, v := range y {
		s.sum[i] += v
	}
	s.survivors[u] = true
	return nil
}

// CloseMasked ends the masked-input phase and returns the survivors, sorted, to be sent
// to each of them. The round fails if a survivor's self mask or a dropped member's
// mask key could not be reconstructed from the survivors.
func (s *Server) CloseMasked() ([]string, error) {
	if err := s.expect(serverMasked, "close of masked input"); err != nil {
		return nil, err
	}
	if len(s.survivors) < s.cfg.Threshold {
		return nil, s.failf("%d masked inputs, threshold %d", len(s.survivors), s.cfg.Threshold)
	}
	for u := range s.in {
		if n := countIn(s.survivors, slices.Collect(maps.Keys(s.holds[u]))); n < s.cfg.Threshold {
			what := "the self mask of survivor"
			if !s.survivors[u] {
				what = "the masks of dropped"
			}
			return nil, s.failf("%s %s are held by %d survivors, threshold %d", what, s.cfg.Members[u], n, s.cfg.Threshold)
		}
	}
	out := make([]string, 0, len(s.survivors))
	for _, u := range slices.Sorted(maps.Keys(s.survivors)) {
		out = append(out, s.cfg.Members[u])
	}
	s.phase = serverUnmask
	return out, nil
}

// AddReveals takes a survivor's reveals. Each must be a share the survivor holds, of
// the kind its owner's fate calls for (self-mask shares of survivors, mask-key shares
// of dropped members); a response with any other is refused whole.
func (s *Server) AddReveals(member string, r map[string][]byte) error {
	if err := s.expect(serverUnmask, "reveals"); err != nil {
		return err
	}
	u, err := s.member(member)
	if err != nil {
		return err
	}
	if !s.survivors[u] {
		return fmt.Errorf("secagg: reveals from %s, which is not a survivor of round %s", member, s.cfg.Round)
	}
	if s.revealed[u] {
		return fmt.Errorf("secagg: %s revealed twice", member)
	}
	type rv struct {
		owner int
		self  bool
		share secretsharing.Share
	}
	var got []rv
	for m, b := range r {
		o := s.cfg.index(m)
		if o < 0 || !s.in[o] || !s.holds[o][u] {
			return fmt.Errorf("secagg: %s revealed a share of %q, which it does not hold", member, m)
		}
		if len(b) != 1+shareLen {
			return fmt.Errorf("secagg: %s revealed %d bytes for %s, want %d", member, len(b), m, 1+shareLen)
		}
		want := revealMask
		if s.survivors[o] {
			want = revealSelf
		}
		if b[0] != want {
			return fmt.Errorf("secagg: %s revealed the wrong kind of share of %s", member, m)
		}
		v, err := scalarFrom(b[1:])
		if err != nil {
			return fmt.Errorf("secagg: reveal of %s from %s: %w", m, member, err)
		}
		got = append(got, rv{owner: o, self: want == revealSelf, share: secretsharing.Share{ID: shareID(u), Value: v}})
	}
	for _, g := range got {
		if g.self {
			s.selfSh[g.owner] = append(s.selfSh[g.owner], g.share)
		} else {
			s.maskSh[g.owner] = append(s.maskSh[g.owner], g.share)
		}
	}
	s.revealed[u] = true
	return nil
}

// Finish ends the round: it reconstructs every survivor's self-mask seed and every
// dropped member's mask key from the reveals, checks each against what the member
// committed to, removes the masks from the sum and returns the sum of the survivors'
// quantized vectors (see [Config.Dequantize]) and how many they are. The work is spread
// over GOMAXPROCS goroutines.
func (s *Server) Finish() ([]uint32, int, error) {
	if err := s.expect(serverUnmask, "finish"); err != nil {
		return nil, 0, err
	}
	// What to reconstruct: each survivor's self-mask seed, and the mask key of each
	// dropped member whose masks some survivor used.
	type secret struct {
		owner int
		self  bool
		users []int // for a dropped member: the survivors that masked with it
	}
	var secrets []secret
	for _, u := range slices.Sorted(maps.Keys(s.in)) {
		m := s.cfg.Members[u]
		if s.survivors[u] {
			if n := len(s.selfSh[u]); n < s.cfg.Threshold {
				return nil, 0, s.failf("%d reveals of the self mask of %s, threshold %d", n, m, s.cfg.Threshold)
			}
			secrets = append(secrets, secret{owner: u, self: true})
			continue
		}
		var users []int
		for v := range s.holds[u] {
			if v != u && s.survivors[v] {
				users = append(users, v)
			}
		}
		if len(users) == 0 {
			continue
		}
		if n := len(s.maskSh[u]); n < s.cfg.Threshold {
			return nil, 0, s.failf("%d reveals of the mask key of dropped %s, threshold %d", n, m, s.cfg.Threshold)
		}
		slices.Sort(users)
		secrets = append(secrets, secret{owner: u, users: users})
	}
	type job struct {
		key []byte
		sub bool
	}
	// reconstruct turns one secret into the mask jobs that remove it.
	reconstruct := func(sc secret) ([]job, error) {
		m := s.cfg.Members[sc.owner]
		if sc.self {
			b, err := recoverSecret(s.cfg.Threshold, s.selfSh[sc.owner])
			if err != nil {
				return nil, fmt.Errorf("secagg: reconstruct the self mask of %s: %w", m, err)
			}
			seed, err := b.MarshalBinary()
			if err != nil {
				return nil, err
			}
			if selfCommit(s.digest, seed) != s.keys[sc.owner].SelfCommit {
				return nil, fmt.Errorf("secagg: the self mask of %s reconstructs to another seed than it committed to (a corrupt share)", m)
			}
			return []job{{key: maskKey(s.digest, seed, "self"), sub: true}}, nil
		}
		sk, err := recoverSecret(s.cfg.Threshold, s.maskSh[sc.owner])
		if err != nil {
			return nil, fmt.Errorf("secagg: reconstruct the mask key of %s: %w", m, err)
		}
		sb, err := sk.MarshalBinary()
		if err != nil {
			return nil, err
		}
		sec, pub := maskSecret(s.digest, sb)
		if [32]byte(pub) != s.keys[sc.owner].MaskPub {
			return nil, fmt.Errorf("secagg: the mask key of %s reconstructs to another key than it advertised (a corrupt share)", m)
		}
		jobs := make([]job, 0, len(sc.users))
		for _, v := range sc.users {
			ss, err := pairSecret(sec, s.keys[v].MaskPub)
			if err != nil {
				return nil, err
			}
			// v added the pair's mask if v < owner, subtracted it otherwise: undo that.
			jobs = append(jobs, job{key: maskKey(s.digest, ss, pairLabel(sc.owner, v)), sub: v < sc.owner})
		}
		return jobs, nil
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), len(secrets)))
	parts := make([][]uint32, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var acc []uint32
			for i := w; i < len(secrets); i += workers {
				jobs, err := reconstruct(secrets[i])
				if err != nil {
					errs[w] = err
					return
				}
				if acc == nil {
					acc = make([]uint32, s.cfg.Dim)
				}
				for _, j := range jobs {
					applyMask(acc, j.key, j.sub)
				}
			}
			parts[w] = acc
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, s.fatal(err)
	}
	for _, p := range parts {
		for i, v := range p {
			s.sum[i] += v
		}
	}
	s.phase = serverDone
	return s.sum, len(s.survivors), nil
}

// fatal fails the round for a reason other than dropouts.
func (s *Server) fatal(err error) error {
	s.phase = serverFailed
	return err
}

// Survivors returns the members whose masked inputs were added, sorted.
func (s *Server) Survivors() []string {
	var out []string
	for _, u := range slices.Sorted(maps.Keys(s.survivors)) {
		out = append(out, s.cfg.Members[u])
	}
	return out
}
