package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/fedq/fedq/protocol"
)

// TokenRecord is what the coordinator keeps of a join token: never the secret, only its
// SHA-256.
type TokenRecord struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Secret  string    `json:"secret_sha256"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName reports whether name can be an agent's ID: 1 to 64 letters, digits, dots,
// dashes and underscores, starting with a letter or digit.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("agent name %q: use 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit", name)
	}
	return nil
}

// CreateToken makes a one-time join token for an agent to be called name, valid for ttl,
// pointing agents at addr (empty: the address in coordinator.json). It returns the
// token's text, which is shown once and not stored.
func (a *Authority) CreateToken(name string, ttl time.Duration, addr string, now time.Time) (string, *TokenRecord, error) {
	if err := ValidName(name); err != nil {
		return "", nil, err
	}
	if ttl <= 0 {
		return "", nil, fmt.Errorf("token ttl must be positive, got %v", ttl)
	}
	if addr == "" {
		addr = a.Config.Addr
	}
	idb := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", nil, err
	}
	if _, err := rand.Read(secret); err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(secret)
	rec := &TokenRecord{ID: hex.EncodeToString(idb), Name: name, Secret: hex.EncodeToString(sum[:]), Created: now.UTC(), Expires: now.Add(ttl).UTC()}
	tok := &protocol.JoinToken{Addr: addr, CAHash: a.CAHash(), ID: rec.ID, Secret: secret}
	text, err := tok.Encode()
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(filepath.Join(a.Dir, TokenDir), 0o700); err != nil {
		return "", nil, err
	}
	if err := writeJSON(filepath.Join(a.Dir, TokenDir, rec.ID+".json"), rec); err != nil {
		return "", nil, fmt.Errorf("save token: %w", err)
	}
	return text, rec, nil
}

var tokenIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// CheckToken finds the record of a presented token and checks its secret and expiry. It
// does not know whether the token was used: the coordinator's store does.
func (a *Authority) CheckToken(t *protocol.JoinToken, now time.Time) (*TokenRecord, error) {
	if !tokenIDRE.MatchString(t.ID) {
		return nil, protocol.NewError(protocol.CodeTokenInvalid, "unknown join token")
	}
	var rec TokenRecord
	if err := readJSON(filepath.Join(a.Dir, TokenDir, t.ID+".json"), &rec); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, protocol.NewError(protocol.CodeTokenInvalid, "unknown join token: ask the operator for a new one (`fedq token create`)")
		}
		return nil, fmt.Errorf("read token %s: %w", t.ID, err)
	}
	sum := sha256.Sum256(t.Secret)
	want, err := hex.DecodeString(rec.Secret)
	if err != nil || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return nil, protocol.NewError(protocol.CodeTokenInvalid, "join token does not match: ask the operator for a new one")
	}
	if t.CAHash != a.CAHash() {
		return nil, protocol.NewError(protocol.CodeTokenInvalid, "join token was made for another CA")
	}
	if !now.Before(rec.Expires) {
		return nil, protocol.NewError(protocol.CodeTokenExpired, "join token expired at %s: ask the operator for a new one", rec.Expires.Format(time.RFC3339))
	}
	return &rec, nil
}
