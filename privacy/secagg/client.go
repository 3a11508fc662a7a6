package secagg

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/kem"
	"github.com/cloudflare/circl/secretsharing"
)

// clientPhase is how far a Client has gone.
type clientPhase int

const (
	clientAdvertised clientPhase = iota
	clientShared
	clientReceived
	clientMasked
	clientRevealed
	clientAborted
)

// peer is a neighbour whose keys checked out.
type peer struct {
	keys Keys
	enc  kem.PublicKey
}

// held are a neighbour's shares this client holds.
type held struct {
	b, s group.Scalar
}

// Client is one agent's side of one secure round. Its methods must be called in order —
// Advertise, ShareKeys, ReceiveShares, MaskedInput, Unmask — and each at most once; a
// call out of order, or after an error, fails. It is not safe for concurrent use.
type Client struct {
	cfg    Config
	digest [32]byte
	self   int
	holds  []int // H(self)
	nbrs   []int // N(self)
	signer Signer
	verify Verifier
	rnd    io.Reader
	phase  clientPhase

	encPub  kem.PublicKey
	encSec  kem.PrivateKey
	maskSec x25519.Key
	keys    Keys
	b, s    group.Scalar // the secrets: self-mask seed scalar, mask-key scalar
	bSeed   []byte

	peers map[int]peer // neighbours with good keys
	held  map[int]held // shares received, from senders in U2 ∩ H(self) (self included)
	masks []uint32     // the sum of this member's masks, once PrepareMasks has run
}

// NewClient prepares member's side of the round described by cfg: it validates cfg and
// draws the member's secrets from rnd (crypto/rand.Reader in production).
func NewClient(cfg Config, member string, signer Signer, verify Verifier, rnd io.Reader) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	self := cfg.index(member)
	if self < 0 {
		return nil, fmt.Errorf("secagg: %s is not a member of round %s", member, cfg.Round)
	}
	g := NewGraph(len(cfg.Members), cfg.Neighbours, cfg.GraphSeed)
	c := &Client{cfg: cfg, digest: cfg.Digest(), self: self, holds: g.holders(self), nbrs: g[self], signer: signer, verify: verify, rnd: rnd,
		peers: map[int]peer{}, held: map[int]held{}}
	seed := make([]byte, scheme.SeedSize())
	if _, err := io.ReadFull(rnd, seed); err != nil {
		return nil, fmt.Errorf("secagg: random: %w", err)
	}
	c.encPub, c.encSec = scheme.DeriveKeyPair(seed)
	c.b = ristretto.RandomNonZeroScalar(rnd)
	c.s = ristretto.RandomNonZeroScalar(rnd)
	var err error
	if c.bSeed, err = c.b.MarshalBinary(); err != nil {
		return nil, err
	}
	sb, err := c.s.MarshalBinary()
	if err != nil {
		return nil, err
	}
	var maskPub x25519.Key
	c.maskSec, maskPub = maskSecret(c.digest, sb)
	c.keys = Keys{Member: member, MaskPub: maskPub, SelfCommit: selfCommit(c.digest, c.bSeed)}
	eb, err := c.encPub.MarshalBinary()
	if err != nil {
		return nil, err
	}
	copy(c.keys.EncPub[:], eb)
	return c, nil
}

// fail marks the client aborted and returns err.
func (c *Client) fail(err error) error {
	c.phase = clientAborted
	return err
}

// expect checks that the client is at phase p.
func (c *Client) expect(p clientPhase, what string) error {
	if c.phase != p {
		return fmt.Errorf("secagg: %s out of order (or after an error) in round %s", what, c.cfg.Round)
	}
	return nil
}

// Advertise returns the member's signed public keys, for the coordinator to forward to
// its neighbours. credential is attached as is (the member's certificate).
func (c *Client) Advertise(credential []byte) (Keys, error) {
	if err := c.expect(clientAdvertised, "advertise"); err != nil {
		return Keys{}, err
	}
	if c.keys.Signature == nil {
		sig, err := c.signer.Sign(c.keys.signedBytes(c.digest))
		if err != nil {
			return Keys{}, c.fail(fmt.Errorf("secagg: sign keys: %w", err))
		}
		c.keys.Signature = sig
	}
	k := c.keys
	k.Credential = credential
	return k, nil
}

// ShareKeys checks the neighbours' keys in roster (entries of non-neighbours are
// refused) and returns, per neighbour, the encrypted shares of this member's secrets,
// keyed by member. It fails if fewer than Threshold holders (this member included)
// remain — the member then drops out of the round.
func (c *Client) ShareKeys(roster []Keys) (map[string][]byte, error) {
	if err := c.expect(clientAdvertised, "share keys"); err != nil {
		return nil, err
	}
	for i := range roster {
		k := &roster[i]
		j := c.cfg.index(k.Member)
		if j < 0 || !slices.Contains(c.nbrs, j) {
			return nil, c.fail(fmt.Errorf("secagg: the roster names %q, not a neighbour of %s in round %s", k.Member, c.keys.Member, c.cfg.Round))
		}
		if _, dup := c.peers[j]; dup {
			return nil, c.fail(fmt.Errorf("secagg: the roster names %s twice", k.Member))
		}
		if err := k.check(c.digest, c.verify); err != nil {
			return nil, c.fail(err)
		}
		enc, err := encPublic(k.EncPub)
		if err != nil {
			return nil, c.fail(fmt.Errorf("secagg: keys of %s: %w", k.Member, err))
		}
		c.peers[j] = peer{keys: *k, enc: enc}
	}
	if len(c.peers)+1 < c.cfg.Threshold {
		return nil, c.fail(fmt.Errorf("secagg: %d of %d neighbours advertised keys; the threshold needs %d holders",
			len(c.peers), len(c.nbrs), c.cfg.Threshold))
	}
	t := uint(c.cfg.Threshold - 1) // circl's t is the polynomial's degree
	bs := secretsharing.New(c.rnd, t, c.b)
	ss := secretsharing.New(c.rnd, t, c.s)
	out := make(map[string][]byte, len(c.peers))
	for _, j := range append(slices.Sorted(maps.Keys(c.peers)), c.self) {
		id := shareID(j)
		pt, err := sharePlaintext(bs.ShareWithID(id).Value, ss.ShareWithID(id).Value)
		if err != nil {
			return nil, c.fail(err)
		}
		if j == c.self {
			c.held[j] = held{b: bs.ShareWithID(id).Value, s: ss.ShareWithID(id).Value}
			continue
		}
		snd, err := suite.NewSender(c.peers[j].enc, shareInfo)
		if err != nil {
			return nil, c.fail(err)
		}
		enc, sealer, err := snd.SetupAuth(c.rnd, c.encSec)
		if err != nil {
			return nil, c.fail(fmt.Errorf("secagg: encrypt to %s: %w", c.cfg.Members[j], err))
		}
		ct, err := sealer.Seal(pt, shareAAD(c.digest, c.self, j))
		if err != nil {
			return nil, c.fail(err)
		}
		out[c.cfg.Members[j]] = append(enc, ct...)
	}
	c.phase = clientShared
	return out, nil
}

// ReceiveShares opens the shares the member's neighbours made for it (keyed by
// sender), as the coordinator forwards them. A ciphertext that does not open — tampered,
// from another round, or not from the sender its keys name — fails the member.
func (c *Client) ReceiveShares(from map[string][]byte) error {
	if err := c.expect(clientShared, "receive shares"); err != nil {
		return err
	}
	encLen := scheme.CiphertextSize()
	for _, m := range slices.Sorted(maps.Keys(from)) {
		j := c.cfg.index(m)
		p, ok := c.peers[j]
		if j < 0 || !ok {
			return c.fail(fmt.Errorf("secagg: shares from %q, which is not a neighbour with keys in round %s", m, c.cfg.Round))
		}
		ct := from[m]
		if len(ct) < encLen {
			return c.fail(fmt.Errorf("secagg: shares from %s: %d bytes, too short", m, len(ct)))
		}
		rcv, err := suite.NewReceiver(c.encSec, shareInfo)
		if err != nil {
			return c.fail(err)
		}
		opener, err := rcv.SetupAuth(ct[:encLen], p.enc)
		if err != nil {
			return c.fail(fmt.Errorf("secagg: shares from %s: %w", m, err))
		}
		pt, err := opener.Open(ct[encLen:], shareAAD(c.digest, j, c.self))
		if err != nil {
			return c.fail(fmt.Errorf("secagg: shares from %s do not open (tampered, or for another round): %w", m, err))
		}
		if len(pt) != 2*shareLen {
			return c.fail(fmt.Errorf("secagg: shares from %s: %d bytes, want %d", m, len(pt), 2*shareLen))
		}
		b, err := scalarFrom(pt[:shareLen])
		if err != nil {
			return c.fail(err)
		}
		s, err := scalarFrom(pt[shareLen:])
		if err != nil {
			return c.fail(err)
		}
		c.held[j] = held{b: b, s: s}
	}
	if len(c.held) < c.cfg.Threshold {
		return c.fail(fmt.Errorf("secagg: %d of %d holders shared keys; the threshold is %d", len(c.held), len(c.holds), c.cfg.Threshold))
	}
	c.phase = clientReceived
	return nil
}

// MaskedInput quantizes the update of weight w (see [Config.Quantize]) and masks it:
// the self mask, plus the pairwise mask of every neighbour that shared keys, added by
// the lower-indexed member of a pair and subtracted by the higher. rng drives the
// stochastic rounding. The result is what the coordinator receives.
func (c *Client) MaskedInput(update []float32, w float64, rng *rand.Rand) ([]uint32, error) {
	if err := c.expect(clientReceived, "masked input"); err != nil {
		return nil, err
	}
	y := make([]uint32, c.cfg.Dim)
	if err := c.cfg.Quantize(y, update, w, rng); err != nil {
		return nil, c.fail(err)
	}
	if err := c.addMasks(y); err != nil {
		return nil, c.fail(err)
	}
	c.phase = clientMasked
	return y, nil
}

// MaskedVector masks a vector the caller has already encoded in Z_2^32 (length Dim) —
// distributed DP's noised integers, say — in place of MaskedInput's quantization; it
// returns the masked copy.
func (c *Client) MaskedVector(v []uint32) ([]uint32, error) {
	if err := c.expect(clientReceived, "masked input"); err != nil {
		return nil, err
	}
	if len(v) != c.cfg.Dim {
		return nil, c.fail(fmt.Errorf("secagg: a vector of %d values, round expects %d", len(v), c.cfg.Dim))
	}
	y := append([]uint32(nil), v...)
	if err := c.addMasks(y); err != nil {
		return nil, c.fail(err)
	}
	c.phase = clientMasked
	return y, nil
}

// PrepareMasks expands the member's masks as soon as the shares are in, so that
// MaskedInput only has to add them: an agent calls it while it trains, taking the
// masks' cost off the round's critical path. It holds one more vector of Dim words.
func (c *Client) PrepareMasks() error {
	if err := c.expect(clientReceived, "prepare masks"); err != nil {
		return err
	}
	if c.masks != nil {
		return nil
	}
	m := make([]uint32, c.cfg.Dim)
	if err := c.mask(m); err != nil {
		return c.fail(err)
	}
	c.masks = m
	return nil
}

// addMasks adds the member's masks to y: those PrepareMasks expanded, or expanded now.
func (c *Client) addMasks(y []uint32) error {
	if c.masks == nil {
		return c.mask(y)
	}
	for i, m := range c.masks {
		y[i] += m
	}
	c.masks = nil
	return nil
}

// mask adds the member's masks to a quantized vector.
func (c *Client) mask(y []uint32) error {
	applyMask(y, maskKey(c.digest, c.bSeed, "self"), false)
	for _, j := range slices.Sorted(maps.Keys(c.held)) {
		if j == c.self {
			continue
		}
		ss, err := pairSecret(c.maskSec, c.peers[j].keys.MaskPub)
		if err != nil {
			return fmt.Errorf("secagg: mask with %s: %w", c.cfg.Members[j], err)
		}
		applyMask(y, maskKey(c.digest, ss, pairLabel(c.self, j)), c.self > j)
	}
	return nil
}

// Unmask answers the coordinator's list of survivors (members whose masked inputs it
// holds): for each holder relation, the share of a surviving neighbour's self-mask seed
// or of a dropped neighbour's mask key — never both, and only once per round. It
// refuses a list that does not include this member, names non-members, or leaves fewer
// than Threshold holders of this member's secrets.
func (c *Client) Unmask(survivors []string) (map[string][]byte, error) {
	if err := c.expect(clientMasked, "unmask"); err != nil {
		return nil, err
	}
	alive := make(map[int]bool, len(survivors))
	for _, m := range survivors {
		j := c.cfg.index(m)
		if j < 0 {
			return nil, c.fail(fmt.Errorf("secagg: survivor %q is not a member of round %s", m, c.cfg.Round))
		}
		alive[j] = true
	}
	if !alive[c.self] {
		return nil, c.fail(errors.New("secagg: the survivors leave this member out, yet ask it to unmask"))
	}
	live := 0
	for j := range c.held {
		if alive[j] {
			live++
		}
	}
	if live < c.cfg.Threshold {
		return nil, c.fail(fmt.Errorf("secagg: %d surviving holders, threshold %d: refusing to unmask", live, c.cfg.Threshold))
	}
	out := make(map[string][]byte, len(c.held))
	for j, h := range c.held {
		kind, v := revealMask, h.s
		if alive[j] {
			kind, v = revealSelf, h.b
		}
		b, err := v.MarshalBinary()
		if err != nil {
			return nil, c.fail(err)
		}
		out[c.cfg.Members[j]] = append([]byte{kind}, b...)
	}
	c.phase = clientRevealed
	return out, nil
}
