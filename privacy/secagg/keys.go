package secagg

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
)

// Signer signs with an agent's identity key (in fedq, the key of its certificate).
type Signer interface {
	Sign(msg []byte) ([]byte, error)
}

// Verifier checks that sig is member's signature of msg, with the credential that
// came with it (in fedq, the member's certificate: issued by the CA and naming member).
type Verifier interface {
	Verify(member string, credential, msg, sig []byte) error
}

// Keys is what an agent advertises: its public keys for the round and a commitment to
// its self-mask seed, signed with its identity key.
type Keys struct {
	// Member is the agent.
	Member string
	// EncPub is the X25519 public key that shares are encrypted to (HPKE).
	EncPub [32]byte
	// MaskPub is the X25519 public key pairwise masks are agreed with.
	MaskPub [32]byte
	// SelfCommit is a hash of the self-mask seed; the coordinator checks the seed it
	// reconstructs against it.
	SelfCommit [32]byte
	// Signature signs all of the above and the round's digest.
	Signature []byte
	// Credential lets others check Signature (the member's certificate, DER).
	Credential []byte
}

// signedBytes is what Keys.Signature signs.
func (k *Keys) signedBytes(digest [32]byte) []byte {
	var b bytes.Buffer
	b.WriteString("fedq/secagg/v1/keys")
	b.Write(digest[:])
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(k.Member)))
	b.Write(l[:])
	b.WriteString(k.Member)
	b.Write(k.EncPub[:])
	b.Write(k.MaskPub[:])
	b.Write(k.SelfCommit[:])
	return b.Bytes()
}

// check verifies the signature and refuses low-order public keys.
func (k *Keys) check(digest [32]byte, v Verifier) error {
	if err := v.Verify(k.Member, k.Credential, k.signedBytes(digest), k.Signature); err != nil {
		return fmt.Errorf("secagg: keys of %s: bad signature (substituted keys, or keys of another round): %w", k.Member, err)
	}
	for _, p := range [][32]byte{k.EncPub, k.MaskPub} {
		if lowOrder(p) {
			return fmt.Errorf("secagg: keys of %s: a low-order X25519 public key", k.Member)
		}
	}
	return nil
}

// lowOrder reports whether an X25519 public key is a low-order point (which would
// make every shared secret all zeros).
func lowOrder(pub [32]byte) bool {
	var sec, ss x25519.Key
	sec[0] = 8 // any non-zero scalar shows it: low-order points give zero for all
	p := x25519.Key(pub)
	return !x25519.Shared(&ss, &sec, &p)
}

var (
	suite     = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305)
	scheme    = hpke.KEM_X25519_HKDF_SHA256.Scheme()
	ristretto = group.Ristretto255
)

// selfCommit hashes a self-mask seed.
func selfCommit(digest [32]byte, seed []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("fedq/secagg/v1/self-commit"))
	h.Write(digest[:])
	h.Write(seed)
	var c [32]byte
	h.Sum(c[:0])
	return c
}

// maskSecret derives the X25519 mask key pair from the shared scalar.
func maskSecret(digest [32]byte, scalar []byte) (sec, pub x25519.Key) {
	copy(sec[:], maskKey(digest, scalar, "mask-secret"))
	x25519.KeyGen(&pub, &sec)
	return sec, pub
}

// pairSecret agrees the pairwise secret of two members from one's mask secret key and
// the other's public key.
func pairSecret(sec x25519.Key, pub [32]byte) ([]byte, error) {
	var ss x25519.Key
	p := x25519.Key(pub)
	if !x25519.Shared(&ss, &sec, &p) {
		return nil, errors.New("secagg: low-order mask key")
	}
	return ss[:], nil
}

// encKeys unmarshals an X25519 KEM public key.
func encPublic(b [32]byte) (kem.PublicKey, error) {
	return scheme.UnmarshalBinaryPublicKey(b[:])
}

// Share kinds in a reveal.
const (
	revealSelf byte = 1 // a share of the self-mask seed b
	revealMask byte = 2 // a share of the mask-key scalar s
)

// shareLen is a serialized Ristretto255 scalar.
const shareLen = 32

// sharePlaintext is what one holder receives: its shares of b and of s.
func sharePlaintext(b, s group.Scalar) ([]byte, error) {
	bb, err := b.MarshalBinary()
	if err != nil {
		return nil, err
	}
	sb, err := s.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return append(bb, sb...), nil
}

// scalarFrom decodes a canonical Ristretto255 scalar.
func scalarFrom(b []byte) (group.Scalar, error) {
	if len(b) != shareLen {
		return nil, fmt.Errorf("secagg: a share of %d bytes, want %d", len(b), shareLen)
	}
	s := ristretto.NewScalar()
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("secagg: a malformed share: %w", err)
	}
	return s, nil
}

// shareAAD binds a share ciphertext to the round, its sender and its recipient.
func shareAAD(digest [32]byte, from, to int) []byte {
	b := make([]byte, 0, 32+8)
	b = append(b, digest[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(from))
	return binary.BigEndian.AppendUint32(b, uint32(to))
}

// shareInfo is the HPKE info string of share ciphertexts.
var shareInfo = []byte("fedq/secagg/v1/shares")

// shareID is the Shamir share ID of member index i.
func shareID(i int) group.Scalar {
	return ristretto.NewScalar().SetUint64(uint64(i + 1))
}
