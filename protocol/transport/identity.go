package transport

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// KeySigner signs application messages (such as an agent's secure-aggregation keys)
// with the private key of a certificate: ECDSA keys sign the message's SHA-256 (ASN.1
// signature), Ed25519 keys the message itself.
type KeySigner struct {
	Key crypto.Signer
}

// Sign signs msg.
func (s KeySigner) Sign(msg []byte) ([]byte, error) {
	if s.Key == nil {
		return nil, errors.New("no signing key")
	}
	if _, ok := s.Key.Public().(ed25519.PublicKey); ok {
		return s.Key.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	d := sha256.Sum256(msg)
	return s.Key.Sign(rand.Reader, d[:], crypto.SHA256)
}

// CertVerifier checks a [KeySigner]'s signature against the signer's certificate: the
// certificate (DER) must chain to Roots, be valid now, carry RoleAgent and name the
// expected agent as its common name.
//
// Chain verification is the costly part and the same certificates come back round after
// round, so a verifier made by [NewCertVerifier] remembers the certificates it has
// verified (by hash, until they expire).
type CertVerifier struct {
	Roots *x509.CertPool
	// Now is the clock certificates are checked at; nil means time.Now.
	Now func() time.Time

	cache *certCache
}

// NewCertVerifier returns a CertVerifier that remembers verified certificates.
func NewCertVerifier(roots *x509.CertPool, now func() time.Time) CertVerifier {
	return CertVerifier{Roots: roots, Now: now, cache: &certCache{m: map[[32]byte]*x509.Certificate{}}}
}

// certCache holds chain-verified certificates by the SHA-256 of their DER.
type certCache struct {
	mu sync.Mutex
	m  map[[32]byte]*x509.Certificate
}

// maxCachedCerts bounds a cache; past it, it starts afresh.
const maxCachedCerts = 1 << 16

// Verify checks that sig is agent's signature of msg, made with the key of cert.
func (v CertVerifier) Verify(agent string, cert, msg, sig []byte) error {
	c, err := v.certificate(agent, cert)
	if err != nil {
		return err
	}
	if c.Subject.CommonName != agent || !slices.Contains(c.Subject.OrganizationalUnit, RoleAgent) {
		return fmt.Errorf("the certificate names %q, not agent %s", c.Subject.CommonName, agent)
	}
	switch pub := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(pub, d[:], sig) {
			return errors.New("ECDSA signature does not verify")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, msg, sig) {
			return errors.New("Ed25519 signature does not verify")
		}
	default:
		return fmt.Errorf("certificate key of type %T cannot sign", pub)
	}
	return nil
}

// certificate parses cert and verifies its chain, or finds it verified before.
func (v CertVerifier) certificate(agent string, cert []byte) (*x509.Certificate, error) {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now()
	key := sha256.Sum256(cert)
	if v.cache != nil {
		v.cache.mu.Lock()
		c := v.cache.m[key]
		v.cache.mu.Unlock()
		if c != nil && t.After(c.NotBefore) && t.Before(c.NotAfter) {
			return c, nil
		}
	}
	c, err := x509.ParseCertificate(cert)
	if err != nil {
		return nil, fmt.Errorf("certificate of %s: %w", agent, err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: v.Roots, CurrentTime: t, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("certificate of %s: %w", agent, err)
	}
	if v.cache != nil {
		v.cache.mu.Lock()
		if len(v.cache.m) >= maxCachedCerts {
			clear(v.cache.m)
		}
		v.cache.m[key] = c
		v.cache.mu.Unlock()
	}
	return c, nil
}
