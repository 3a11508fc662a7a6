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
type CertVerifier struct {
	Roots *x509.CertPool
	// Now is the clock certificates are checked at; nil means time.Now.
	Now func() time.Time
}

// Verify checks that sig is agent's signature of msg, made with the key of cert.
func (v CertVerifier) Verify(agent string, cert, msg, sig []byte) error {
	c, err := x509.ParseCertificate(cert)
	if err != nil {
		return fmt.Errorf("certificate of %s: %w", agent, err)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: v.Roots, CurrentTime: now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("certificate of %s: %w", agent, err)
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
