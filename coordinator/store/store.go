// Package store is the coordinator's durable state, in one bbolt file: the agent
// registry (who is enrolled, with which certificate, revoked or not, last seen, what it
// offers) and which join tokens were used. Later issues add model versions and rounds
// here, each change one transaction, so a crash leaves the old state or the new one.
//
// Records are JSON: readable with `bbolt` tools, and tolerant of added fields.
// Frequent small writes (an agent's last-seen time) go through bbolt's Batch, which
// coalesces concurrent updates into one transaction and one fsync.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/fedq/fedq/protocol"
)

var (
	bucketMeta       = []byte("meta")
	bucketAgents     = []byte("agents")
	bucketUsedTokens = []byte("used_tokens")
)

const schemaVersion = "1"

// Agent is an enrolled agent's record.
type Agent struct {
	ID              string                `json:"id"`
	Serial          string                `json:"serial"` // hex serial of its current certificate
	TokenID         string                `json:"token_id"`
	EnrolledAt      time.Time             `json:"enrolled_at"`
	RevokedAt       *time.Time            `json:"revoked_at,omitempty"`
	LastSeen        time.Time             `json:"last_seen,omitzero"`
	SoftwareVersion string                `json:"software_version,omitempty"`
	Capabilities    protocol.Capabilities `json:"capabilities"`
}

// Revoked reports whether the agent was revoked.
func (a *Agent) Revoked() bool { return a.RevokedAt != nil }

// Store is an open state file. It is safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the state file at path. Only one process may hold it:
// a second coordinator on the same directory gets a clear error after a second.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: another process (a running coordinator?) holds it; stop it or use its admin commands", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketAgents, bucketUsedTokens, bucketTasks, bucketVersions, bucketRounds} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get([]byte("schema")); {
		case v == nil:
			return meta.Put([]byte("schema"), []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("state schema %q, this fedq reads %q: use a matching fedq", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// ErrTokenUsed is returned by Enroll for a token that enrolled an agent before.
var ErrTokenUsed = protocol.NewError(protocol.CodeTokenUsed, "join token was already used: ask the operator for a new one")

// Enroll records that tokenID enrolled agent a, in one transaction: it fails with
// ErrTokenUsed if the token was used, and otherwise marks it used and (re)registers the
// agent — a new certificate for a known name replaces the old one, which stops working,
// and clears a revocation (the operator made a new token for it).
func (s *Store) Enroll(tokenID string, a Agent) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		used := tx.Bucket(bucketUsedTokens)
		if used.Get([]byte(tokenID)) != nil {
			return ErrTokenUsed
		}
		mark, err := json.Marshal(struct {
			Agent string    `json:"agent"`
			At    time.Time `json:"at"`
		}{a.ID, a.EnrolledAt})
		if err != nil {
			return err
		}
		if err := used.Put([]byte(tokenID), mark); err != nil {
			return err
		}
		a.TokenID = tokenID
		a.RevokedAt = nil
		return putAgent(tx, &a)
	})
}

// Import registers many agents at once, each with its (unused) token ID marked used, in
// one transaction: for bulk provisioning and load tests.
func (s *Store) Import(tokenIDs []string, agents []Agent) error {
	if len(tokenIDs) != len(agents) {
		return fmt.Errorf("import: %d token IDs for %d agents", len(tokenIDs), len(agents))
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		used := tx.Bucket(bucketUsedTokens)
		for i := range agents {
			if used.Get([]byte(tokenIDs[i])) != nil {
				return fmt.Errorf("import %s: %w", agents[i].ID, ErrTokenUsed)
			}
			mark, err := json.Marshal(struct {
				Agent string `json:"agent"`
			}{agents[i].ID})
			if err != nil {
				return err
			}
			if err := used.Put([]byte(tokenIDs[i]), mark); err != nil {
				return err
			}
			a := agents[i]
			a.TokenID, a.RevokedAt = tokenIDs[i], nil
			if err := putAgent(tx, &a); err != nil {
				return err
			}
		}
		return nil
	})
}

func putAgent(tx *bolt.Tx, a *Agent) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketAgents).Put([]byte(a.ID), b)
}

func getAgent(tx *bolt.Tx, id string) (*Agent, error) {
	v := tx.Bucket(bucketAgents).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var a Agent
	if err := json.Unmarshal(v, &a); err != nil {
		return nil, fmt.Errorf("agent %q record: %w", id, err)
	}
	return &a, nil
}

// Agent returns the record of agent id, or false.
func (s *Store) Agent(id string) (Agent, bool, error) {
	var out *Agent
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = getAgent(tx, id)
		return err
	})
	if err != nil || out == nil {
		return Agent{}, false, err
	}
	return *out, true, nil
}

// Agents returns every agent record, ordered by ID.
func (s *Store) Agents() ([]Agent, error) {
	var out []Agent
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAgents).ForEach(func(k, v []byte) error {
			var a Agent
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("agent %q record: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Agent) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, err
}

// Revoke marks agent id revoked: its certificate no longer opens a session.
func (s *Store) Revoke(id string, now time.Time) (Agent, error) {
	var out Agent
	err := s.db.Update(func(tx *bolt.Tx) error {
		a, err := getAgent(tx, id)
		if err != nil {
			return err
		}
		if a == nil {
			return protocol.NewError(protocol.CodeNotFound, "no agent %q is enrolled", id)
		}
		if a.RevokedAt == nil {
			t := now.UTC()
			a.RevokedAt = &t
		}
		out = *a
		return putAgent(tx, a)
	})
	return out, err
}

// Seen records a session of agent id: when, and what it announced. Concurrent calls are
// coalesced into one transaction.
func (s *Store) Seen(id string, at time.Time, sw string, caps *protocol.Capabilities) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		a, err := getAgent(tx, id)
		if err != nil || a == nil {
			return err
		}
		a.LastSeen = at.UTC()
		if caps != nil {
			a.SoftwareVersion = sw
			a.Capabilities = *caps
		}
		return putAgent(tx, a)
	})
}
