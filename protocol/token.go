package protocol

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

// TokenPrefix starts every encoded [JoinToken].
const TokenPrefix = "fedq1."

// tokenSecretLen is the size of a join token's secret.
const tokenSecretLen = 32

// JoinToken is what an operator hands to a new agent: everything it needs to enroll
// once, securely, with no other configuration.
//
// It travels as text, [TokenPrefix] followed by the unpadded base64url encoding of the
// token's CBOR (deterministic encoding, integer keys as in messages):
//
//	key 1 Addr    text   the coordinator's UDP address, host:port
//	key 2 CAHash  bytes  SHA-256 of the coordinator CA certificate (DER): the agent
//	                     accepts only a server chain that contains this certificate
//	key 3 ID      text   the token's ID, which the coordinator looks the token up by
//	key 4 Secret  bytes  32 random bytes; the coordinator keeps only their SHA-256
//
// The agent sends the whole encoded token in [EnrollRequest.Token]. A token is a
// bearer credential until it is used or expires: treat it like a password.
type JoinToken struct {
	Addr   string `cbor:"1,keyasint,omitempty"`
	CAHash Hash   `cbor:"2,keyasint,omitempty"`
	ID     string `cbor:"3,keyasint,omitempty"`
	Secret []byte `cbor:"4,keyasint,omitempty"`
}

// Validate checks the token's fields.
func (t *JoinToken) Validate() error {
	if err := firstErr(
		checkRequired("JoinToken.Addr", t.Addr, MaxShortStringLen),
		checkRequired("JoinToken.ID", t.ID, MaxIDLen),
	); err != nil {
		return err
	}
	if t.CAHash.IsZero() {
		return fmt.Errorf("JoinToken.CAHash is missing")
	}
	if len(t.Secret) != tokenSecretLen {
		return fmt.Errorf("JoinToken.Secret has %d bytes, want %d", len(t.Secret), tokenSecretLen)
	}
	return nil
}

// Encode returns the token's text form.
func (t *JoinToken) Encode() (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	b, err := wire.enc.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encode join token: %w", err)
	}
	s := TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	if len(s) > MaxTokenLen {
		return "", fmt.Errorf("encoded join token is %d bytes, more than %d: shorten the address", len(s), MaxTokenLen)
	}
	return s, nil
}

// ParseJoinToken decodes and validates a token's text form. Surrounding white space is
// ignored (tokens are pasted).
func ParseJoinToken(s string) (*JoinToken, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxTokenLen {
		return nil, fmt.Errorf("join token is %d bytes, more than %d: not a fedq token", len(s), MaxTokenLen)
	}
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return nil, fmt.Errorf("join token does not start with %q: copy the whole token printed by `fedq token create`", TokenPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("join token is damaged (%v): copy the whole token printed by `fedq token create`", err)
	}
	var t JoinToken
	if err := wire.dec.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("join token is damaged (%v): copy the whole token printed by `fedq token create`", err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("join token is invalid: %w", err)
	}
	return &t, nil
}

// SecretMatches reports, in constant time, whether secret is the token's secret.
func (t *JoinToken) SecretMatches(secret []byte) bool {
	return subtle.ConstantTimeCompare(t.Secret, secret) == 1
}
