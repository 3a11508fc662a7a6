package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fedq/fedq/protocol"
)

// Buckets of tasks, rounds and versions.
var (
	bucketTasks    = []byte("tasks")
	bucketVersions = []byte("versions")
	bucketRounds   = []byte("rounds")
)

// Version is a committed global model: its weights are the blob named by Hash.
type Version struct {
	Number  uint64             `json:"number"`
	Parent  uint64             `json:"parent,omitempty"` // 0: a task's initial model
	Task    string             `json:"task"`
	Round   uint64             `json:"round"` // 0: the initial model
	Hash    protocol.Hash      `json:"sha256"`
	Params  int                `json:"params"`
	Created time.Time          `json:"created"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Strategy names the task's aggregation strategy. StrategyState, when not zero, is
	// the blob of its state after this version's round (StrategyStateValues float32
	// values: server momentum, adaptive moments), which lets a restarted coordinator
	// continue exactly.
	Strategy            string        `json:"strategy,omitempty"`
	StrategyState       protocol.Hash `json:"strategy_state,omitzero"`
	StrategyStateValues int           `json:"strategy_state_values,omitempty"`
	// Privacy is the differential privacy spent by the task up to this version.
	Privacy *PrivacySpent `json:"privacy,omitempty"`
	// Signature is the coordinator's Ed25519 signature of Header().Text().
	Signature []byte `json:"signature"`
}

// PrivacySpent is a private task's guarantee after a version: (Epsilon, Delta)-DP over
// Rounds rounds of the subsampled Gaussian mechanism.
type PrivacySpent struct {
	Mode            string  `json:"mode"` // central (user-level) or record (record-level)
	Epsilon         float64 `json:"epsilon"`
	Delta           float64 `json:"delta"`
	Rounds          uint64  `json:"rounds"`
	NoiseMultiplier float64 `json:"noise_multiplier"`
	SampleRate      float64 `json:"sample_rate"`
	Clip            float64 `json:"clip"`
	// NextClip is the clip of the next round, with adaptive clipping.
	NextClip float64 `json:"next_clip,omitempty"`
}

// Header is the signed part of the version.
func (v *Version) Header() protocol.VersionHeader {
	return protocol.VersionHeader{Number: v.Number, Parent: v.Parent, Task: v.Task, Round: v.Round, Params: uint64(v.Params), Hash: v.Hash}
}

// TaskRecord is a task's durable state.
type TaskRecord struct {
	Name string          `json:"name"`
	Spec json.RawMessage `json:"spec"`
	// Status is idle, running or done (see engine.Status).
	Status string `json:"status"`
	// Round is the next round to run: committed rounds + 1.
	Round      uint64    `json:"round"`
	RoundsLeft int       `json:"rounds_left"`
	Latest     uint64    `json:"latest_version"`
	Created    time.Time `json:"created"`
}

// RoundRecord is one attempt of a round.
type RoundRecord struct {
	Task     string    `json:"task"`
	Round    uint64    `json:"round"`
	Attempt  uint32    `json:"attempt"`
	TaskID   string    `json:"task_id"`
	Selected int       `json:"selected"`
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitzero"`
	// Result is running, committed or failed.
	Result   string  `json:"result"`
	Reason   string  `json:"reason,omitempty"`
	Updates  int     `json:"updates,omitempty"`
	Examples uint64  `json:"examples,omitempty"`
	Loss     float64 `json:"train_loss,omitempty"`
	Version  uint64  `json:"version,omitempty"`
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// roundKey orders a task's round records by round; the task ID (unique per attempt and
// start of the coordinator) tells attempts apart.
func roundKey(r *RoundRecord) []byte {
	k := append([]byte(r.Task), 0)
	k = binary.BigEndian.AppendUint64(k, r.Round)
	return append(k, r.TaskID...)
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("record %q: %w", key, err)
	}
	return true, nil
}

// lastVersion returns the highest version number (0 if none).
func lastVersion(tx *bolt.Tx) uint64 {
	k, _ := tx.Bucket(bucketVersions).Cursor().Last()
	if k == nil {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

// NextVersion returns the number the next version will get.
func (s *Store) NextVersion() (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error { n = lastVersion(tx) + 1; return nil })
	return n, err
}

func putVersion(tx *bolt.Tx, v *Version) error {
	if want := lastVersion(tx) + 1; v.Number != want {
		return fmt.Errorf("version %d out of sequence: the next is %d", v.Number, want)
	}
	return putJSON(tx.Bucket(bucketVersions), u64(v.Number), v)
}

// AddTask records a new task with its initial version (whose blob must already be
// stored), in one transaction. A task of the same name is an error.
func (s *Store) AddTask(t TaskRecord, v Version) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		tasks := tx.Bucket(bucketTasks)
		if tasks.Get([]byte(t.Name)) != nil {
			return protocol.NewError(protocol.CodeInvalid, "a task named %q exists", t.Name)
		}
		if err := putVersion(tx, &v); err != nil {
			return err
		}
		t.Latest = v.Number
		return putJSON(tasks, []byte(t.Name), &t)
	})
}

// Task returns a task's record.
func (s *Store) Task(name string) (TaskRecord, bool, error) {
	var t TaskRecord
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx.Bucket(bucketTasks), []byte(name), &t)
		return err
	})
	return t, ok, err
}

// Tasks returns every task's record, by name.
func (s *Store) Tasks() ([]TaskRecord, error) {
	var out []TaskRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			var t TaskRecord
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("task %q: %w", k, err)
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

// updateTask applies fn to a task's record in one transaction.
func (s *Store) updateTask(name string, fn func(tx *bolt.Tx, t *TaskRecord) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var t TaskRecord
		ok, err := getJSON(tx.Bucket(bucketTasks), []byte(name), &t)
		if err != nil {
			return err
		}
		if !ok {
			return protocol.NewError(protocol.CodeNotFound, "no task %q", name)
		}
		if err := fn(tx, &t); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketTasks), []byte(name), &t)
	})
}

// RequestRounds adds n rounds to a task and marks it running.
func (s *Store) RequestRounds(name string, n int) (TaskRecord, error) {
	var out TaskRecord
	err := s.updateTask(name, func(_ *bolt.Tx, t *TaskRecord) error {
		t.RoundsLeft += n
		t.Status = "running"
		out = *t
		return nil
	})
	return out, err
}

// EndTask marks a task as unable to run more rounds (status, e.g. "budget_exhausted"),
// with no rounds left.
func (s *Store) EndTask(name, status string) error {
	return s.updateTask(name, func(_ *bolt.Tx, t *TaskRecord) error {
		t.RoundsLeft = 0
		t.Status = status
		return nil
	})
}

// FailAttempt records that an attempt ended without a version.
func (s *Store) FailAttempt(r RoundRecord) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		r.Result = "failed"
		return putJSON(tx.Bucket(bucketRounds), roundKey(&r), &r)
	})
}

// Commit stores a round's new version, its round record and the task's advance in one
// transaction: after a crash either all of it is there or none. The version's blob must
// already be stored.
func (s *Store) Commit(r RoundRecord, v Version) (TaskRecord, error) {
	var out TaskRecord
	err := s.updateTask(r.Task, func(tx *bolt.Tx, t *TaskRecord) error {
		if r.Round != t.Round || v.Parent != t.Latest {
			return fmt.Errorf("commit of round %d from version %d out of sequence (task at round %d, version %d)", r.Round, v.Parent, t.Round, t.Latest)
		}
		if err := putVersion(tx, &v); err != nil {
			return err
		}
		r.Result, r.Version = "committed", v.Number
		if err := putJSON(tx.Bucket(bucketRounds), roundKey(&r), &r); err != nil {
			return err
		}
		t.Latest, t.Round = v.Number, t.Round+1
		if t.RoundsLeft > 0 {
			t.RoundsLeft--
		}
		if t.RoundsLeft == 0 {
			t.Status = "done"
		}
		out = *t
		return nil
	})
	return out, err
}

// Version returns version n.
func (s *Store) Version(n uint64) (Version, bool, error) {
	var v Version
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx.Bucket(bucketVersions), u64(n), &v)
		return err
	})
	return v, ok, err
}

// Versions returns the versions of a task (all tasks if task is empty), oldest first.
func (s *Store) Versions(task string) ([]Version, error) {
	var out []Version
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVersions).ForEach(func(k, data []byte) error {
			var v Version
			if err := json.Unmarshal(data, &v); err != nil {
				return fmt.Errorf("version %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if task == "" || v.Task == task {
				out = append(out, v)
			}
			return nil
		})
	})
	return out, err
}

// Rounds returns the round records of a task, in order.
func (s *Store) Rounds(task string) ([]RoundRecord, error) {
	var out []RoundRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRounds).Cursor()
		prefix := append([]byte(task), 0)
		for k, v := c.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
			var r RoundRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
