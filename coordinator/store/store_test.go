package store_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/protocol"
)

var t0 = time.Date(2031, 3, 14, 15, 9, 26, 0, time.UTC)

// open opens a store in a fresh directory and closes it when the test ends.
func open(t *testing.T) (*store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := store.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func mustAgent(t *testing.T, s *store.Store, id string) store.Agent {
	t.Helper()
	a, ok, err := s.Agent(id)
	if err != nil {
		t.Fatalf("Agent(%q): %v", id, err)
	}
	if !ok {
		t.Fatalf("Agent(%q): not found", id)
	}
	return a
}

func sampleCaps() protocol.Capabilities {
	return protocol.Capabilities{
		Datasets:    []protocol.DatasetInfo{{Name: "mnist", Examples: 60000, Labelled: 60000, Classes: 10}},
		Backend:     "cuda",
		Device:      "NVIDIA H200",
		GPUs:        []protocol.GPUInfo{{Name: "NVIDIA H200", MemoryBytes: 141 << 30}},
		Threads:     16,
		Features:    []string{"secagg", "eval"},
		MemoryBytes: 128 << 30,
	}
}

func TestEnroll(t *testing.T) {
	s, _ := open(t)
	revoked := t0.Add(-time.Hour)
	in := store.Agent{ID: "agent-1", Serial: "0a", EnrolledAt: t0, TokenID: "ignored", RevokedAt: &revoked}
	if err := s.Enroll("tok-1", in); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	got := mustAgent(t, s, "agent-1")
	if got.ID != "agent-1" || got.Serial != "0a" || !got.EnrolledAt.Equal(t0) {
		t.Errorf("record %+v", got)
	}
	if got.TokenID != "tok-1" {
		t.Errorf("TokenID = %q, want the enrolling token tok-1", got.TokenID)
	}
	if got.Revoked() || got.RevokedAt != nil {
		t.Error("a freshly enrolled agent is revoked")
	}
	if _, ok, err := s.Agent("agent-2"); ok || err != nil {
		t.Errorf("Agent(unknown) = %v, %v; want not found, no error", ok, err)
	}
}

func TestEnrollTokenUsedOnce(t *testing.T) {
	s, _ := open(t)
	if err := s.Enroll("tok-1", store.Agent{ID: "agent-1", Serial: "01", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"agent-2", "agent-1"} {
		err := s.Enroll("tok-1", store.Agent{ID: id, Serial: "02", EnrolledAt: t0.Add(time.Minute)})
		if err == nil {
			t.Fatalf("second Enroll with tok-1 (agent %s) succeeded", id)
		}
		if code := protocol.CodeOf(err); code != protocol.CodeTokenUsed {
			t.Errorf("code %v, want %v (err %v)", code, protocol.CodeTokenUsed, err)
		}
		if !errors.Is(err, protocol.CodeTokenUsed) {
			t.Errorf("errors.Is(%v, CodeTokenUsed) is false", err)
		}
	}
	if _, ok, _ := s.Agent("agent-2"); ok {
		t.Error("the refused enrollment registered agent-2")
	}
	if a := mustAgent(t, s, "agent-1"); a.Serial != "01" || a.TokenID != "tok-1" {
		t.Errorf("the refused enrollment changed agent-1: %+v", a)
	}
}

func TestReEnrollReplacesAndClearsRevocation(t *testing.T) {
	s, _ := open(t)
	if err := s.Enroll("tok-1", store.Agent{ID: "agent-1", Serial: "01", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke("agent-1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a := mustAgent(t, s, "agent-1"); !a.Revoked() {
		t.Fatal("Revoke did not revoke")
	}
	t1 := t0.Add(2 * time.Hour)
	if err := s.Enroll("tok-2", store.Agent{ID: "agent-1", Serial: "02", EnrolledAt: t1}); err != nil {
		t.Fatalf("re-enroll: %v", err)
	}
	a := mustAgent(t, s, "agent-1")
	if a.Serial != "02" || a.TokenID != "tok-2" || !a.EnrolledAt.Equal(t1) {
		t.Errorf("re-enrolled record %+v, want serial 02, token tok-2", a)
	}
	if a.Revoked() {
		t.Error("re-enrollment did not clear the revocation")
	}
	if all, err := s.Agents(); err != nil || len(all) != 1 {
		t.Errorf("Agents = %d records, %v; want 1", len(all), err)
	}
}

func TestRevoke(t *testing.T) {
	s, _ := open(t)
	if err := s.Enroll("tok-1", store.Agent{ID: "agent-1", Serial: "01", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	first := t0.Add(time.Hour).In(time.FixedZone("X", 3600))
	a, err := s.Revoke("agent-1", first)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if a.RevokedAt == nil || !a.RevokedAt.Equal(first) {
		t.Fatalf("RevokedAt = %v, want %v", a.RevokedAt, first)
	}
	if a.ID != "agent-1" || a.Serial != "01" {
		t.Errorf("returned record %+v", a)
	}
	b, err := s.Revoke("agent-1", first.Add(time.Hour))
	if err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if b.RevokedAt == nil || !b.RevokedAt.Equal(first) {
		t.Errorf("second Revoke returned RevokedAt %v, want the first time %v", b.RevokedAt, first)
	}
	stored := mustAgent(t, s, "agent-1")
	if stored.RevokedAt == nil || !stored.RevokedAt.Equal(first) {
		t.Errorf("stored RevokedAt %v, want %v", stored.RevokedAt, first)
	}
}

func TestRevokeUnknown(t *testing.T) {
	s, _ := open(t)
	a, err := s.Revoke("nobody", t0)
	if code := protocol.CodeOf(err); code != protocol.CodeNotFound {
		t.Fatalf("Revoke(unknown) = %v (code %v), want code %v", err, code, protocol.CodeNotFound)
	}
	if !strings.Contains(err.Error(), "nobody") {
		t.Errorf("error %q does not name the agent", err)
	}
	if !reflect.DeepEqual(a, store.Agent{}) {
		t.Errorf("returned %+v with the error", a)
	}
	if _, ok, _ := s.Agent("nobody"); ok {
		t.Error("Revoke(unknown) created a record")
	}
}

func TestAgentsSorted(t *testing.T) {
	s, _ := open(t)
	if all, err := s.Agents(); err != nil || len(all) != 0 {
		t.Fatalf("Agents of an empty store = %v, %v", all, err)
	}
	ids := []string{"c", "a", "b-2", "B", "aa", "b-10", "0"}
	for i, id := range ids {
		if err := s.Enroll(fmt.Sprintf("tok-%d", i), store.Agent{ID: id, EnrolledAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Agents()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range all {
		got = append(got, a.ID)
	}
	want := []string{"0", "B", "a", "aa", "b-10", "b-2", "c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Agents order %q, want %q", got, want)
	}
}

func TestSeen(t *testing.T) {
	s, _ := open(t)
	if err := s.Enroll("tok-1", store.Agent{ID: "agent-1", Serial: "01", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	caps := sampleCaps()
	seen1 := t0.Add(time.Minute).In(time.FixedZone("Y", -7200))
	if err := s.Seen("agent-1", seen1, "fedq 1.2.3", &caps); err != nil {
		t.Fatalf("Seen: %v", err)
	}
	a := mustAgent(t, s, "agent-1")
	if !a.LastSeen.Equal(seen1) || a.LastSeen.Location() != time.UTC {
		t.Errorf("LastSeen = %v, want %v in UTC", a.LastSeen, seen1)
	}
	if a.SoftwareVersion != "fedq 1.2.3" {
		t.Errorf("SoftwareVersion = %q", a.SoftwareVersion)
	}
	if !reflect.DeepEqual(a.Capabilities, caps) {
		t.Errorf("Capabilities = %+v, want %+v", a.Capabilities, caps)
	}
	if a.Serial != "01" || a.TokenID != "tok-1" || !a.EnrolledAt.Equal(t0) {
		t.Errorf("Seen changed other fields: %+v", a)
	}

	// Without capabilities only the time changes.
	seen2 := seen1.Add(time.Minute)
	if err := s.Seen("agent-1", seen2, "fedq 9.9.9", nil); err != nil {
		t.Fatalf("Seen: %v", err)
	}
	a = mustAgent(t, s, "agent-1")
	if !a.LastSeen.Equal(seen2) {
		t.Errorf("LastSeen = %v, want %v", a.LastSeen, seen2)
	}
	if a.SoftwareVersion != "fedq 1.2.3" || !reflect.DeepEqual(a.Capabilities, caps) {
		t.Errorf("Seen without capabilities changed them: %q %+v", a.SoftwareVersion, a.Capabilities)
	}

	// New capabilities replace the old ones.
	caps2 := protocol.Capabilities{Backend: "cpu", Threads: 4}
	if err := s.Seen("agent-1", seen2.Add(time.Minute), "fedq 1.3.0", &caps2); err != nil {
		t.Fatal(err)
	}
	a = mustAgent(t, s, "agent-1")
	if a.SoftwareVersion != "fedq 1.3.0" || !reflect.DeepEqual(a.Capabilities, caps2) {
		t.Errorf("capabilities not replaced: %q %+v", a.SoftwareVersion, a.Capabilities)
	}
}

func TestSeenUnknown(t *testing.T) {
	s, _ := open(t)
	caps := sampleCaps()
	if err := s.Seen("ghost", t0, "v1", &caps); err != nil {
		t.Fatalf("Seen(unknown) = %v, want nil", err)
	}
	if _, ok, err := s.Agent("ghost"); ok || err != nil {
		t.Errorf("Seen(unknown) created a record (ok=%v, err=%v)", ok, err)
	}
	if all, _ := s.Agents(); len(all) != 0 {
		t.Errorf("Agents = %+v, want none", all)
	}
}

func TestSeenConcurrent(t *testing.T) {
	s, _ := open(t)
	const n = 16
	for i := range n {
		if err := s.Enroll(fmt.Sprintf("tok-%d", i), store.Agent{ID: fmt.Sprintf("agent-%02d", i), EnrolledAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			caps := protocol.Capabilities{Threads: uint32(i + 1)}
			errs <- s.Seen(fmt.Sprintf("agent-%02d", i), t0.Add(time.Duration(i)*time.Second), "v", &caps)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Seen: %v", err)
		}
	}
	for i := range n {
		a := mustAgent(t, s, fmt.Sprintf("agent-%02d", i))
		if !a.LastSeen.Equal(t0.Add(time.Duration(i)*time.Second)) || a.Capabilities.Threads != uint32(i+1) {
			t.Errorf("agent %s: LastSeen %v, threads %d", a.ID, a.LastSeen, a.Capabilities.Threads)
		}
	}
}

func TestImport(t *testing.T) {
	s, _ := open(t)
	const n = 500
	tokens := make([]string, n)
	agents := make([]store.Agent, n)
	revoked := t0
	for i := range n {
		tokens[i] = fmt.Sprintf("imp-%04d", i)
		agents[i] = store.Agent{ID: fmt.Sprintf("bulk-%04d", i), Serial: fmt.Sprintf("%x", i), EnrolledAt: t0, RevokedAt: &revoked}
	}
	if err := s.Import(tokens, agents); err != nil {
		t.Fatalf("Import: %v", err)
	}
	all, err := s.Agents()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("%d agents after Import, want %d", len(all), n)
	}
	for i, a := range all {
		if a.ID != agents[i].ID || a.Serial != agents[i].Serial || a.TokenID != tokens[i] || a.Revoked() {
			t.Fatalf("agent %d = %+v, want ID %s, serial %s, token %s, not revoked", i, a, agents[i].ID, agents[i].Serial, tokens[i])
		}
	}
	// Imported tokens are used.
	err = s.Enroll(tokens[7], store.Agent{ID: "late", EnrolledAt: t0})
	if code := protocol.CodeOf(err); code != protocol.CodeTokenUsed {
		t.Errorf("Enroll with an imported token: %v (code %v), want %v", err, code, protocol.CodeTokenUsed)
	}
}

func TestImportRefusesUsedToken(t *testing.T) {
	tests := []struct {
		name   string
		tokens []string
	}{
		{"token used by Enroll", []string{"new-1", "used", "new-2"}},
		{"token twice in one import", []string{"new-1", "new-2", "new-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := open(t)
			if err := s.Enroll("used", store.Agent{ID: "old", Serial: "01", EnrolledAt: t0}); err != nil {
				t.Fatal(err)
			}
			agents := []store.Agent{{ID: "x1", EnrolledAt: t0}, {ID: "x2", EnrolledAt: t0}, {ID: "old", Serial: "99", EnrolledAt: t0}}
			err := s.Import(tt.tokens, agents)
			if code := protocol.CodeOf(err); code != protocol.CodeTokenUsed {
				t.Fatalf("Import: %v (code %v), want code %v", err, code, protocol.CodeTokenUsed)
			}
			if !errors.Is(err, store.ErrTokenUsed) {
				t.Errorf("errors.Is(%v, ErrTokenUsed) is false", err)
			}
			// One transaction: nothing of the refused import stays.
			all, err := s.Agents()
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 1 || all[0].ID != "old" || all[0].Serial != "01" {
				t.Errorf("after a refused import: %+v, want only the old agent, unchanged", all)
			}
			if err := s.Enroll("new-1", store.Agent{ID: "x1", EnrolledAt: t0}); err != nil {
				t.Errorf("token of a refused import is marked used: %v", err)
			}
		})
	}
}

func TestImportLengthMismatch(t *testing.T) {
	s, _ := open(t)
	if err := s.Import([]string{"a", "b"}, []store.Agent{{ID: "x"}}); err == nil {
		t.Fatal("Import with 2 tokens for 1 agent succeeded")
	}
	if all, _ := s.Agents(); len(all) != 0 {
		t.Errorf("Agents = %+v, want none", all)
	}
}

func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	caps := sampleCaps()
	for _, step := range []func() error{
		func() error { return s.Enroll("tok-1", store.Agent{ID: "agent-1", Serial: "01", EnrolledAt: t0}) },
		func() error { return s.Enroll("tok-2", store.Agent{ID: "agent-2", Serial: "02", EnrolledAt: t0}) },
		func() error { return s.Seen("agent-1", t0.Add(time.Minute), "fedq 1.0", &caps) },
		func() error {
			return s.Import([]string{"tok-3"}, []store.Agent{{ID: "agent-3", Serial: "03", EnrolledAt: t0}})
		},
		func() error { _, err := s.Revoke("agent-2", t0.Add(time.Hour)); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	before, err := s.Agents()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = store.Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	after, err := s.Agents()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 3 {
		t.Fatalf("%d agents after reopening, want 3", len(after))
	}
	for i := range after {
		b, a := before[i], after[i]
		if a.ID != b.ID || a.Serial != b.Serial || a.TokenID != b.TokenID || !a.EnrolledAt.Equal(b.EnrolledAt) ||
			!a.LastSeen.Equal(b.LastSeen) || a.SoftwareVersion != b.SoftwareVersion ||
			!reflect.DeepEqual(a.Capabilities, b.Capabilities) || a.Revoked() != b.Revoked() {
			t.Errorf("after reopening %+v, before %+v", a, b)
		}
	}
	if a := mustAgent(t, s, "agent-2"); a.RevokedAt == nil || !a.RevokedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("revocation lost: %+v", a)
	}
	if a := mustAgent(t, s, "agent-1"); !reflect.DeepEqual(a.Capabilities, caps) {
		t.Errorf("capabilities lost: %+v", a.Capabilities)
	}
	for _, tok := range []string{"tok-1", "tok-2", "tok-3"} {
		err := s.Enroll(tok, store.Agent{ID: "again", EnrolledAt: t0})
		if code := protocol.CodeOf(err); code != protocol.CodeTokenUsed {
			t.Errorf("Enroll with %s after reopening: %v, want code %v", tok, err, protocol.CodeTokenUsed)
		}
	}
}

func TestOpenLocked(t *testing.T) {
	s, path := open(t)
	type result struct {
		s   *store.Store
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		s2, err := store.Open(path)
		done <- result{s2, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("second Open of a held file still blocks after 10s")
	}
	elapsed := time.Since(start)
	err := r.err
	if err == nil {
		r.s.Close()
		t.Fatal("second Open of a held file succeeded")
	}
	if !strings.Contains(err.Error(), "another process") {
		t.Errorf("error %q does not say another process holds the file", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if elapsed > 3*time.Second {
		t.Errorf("second Open took %v to fail, want about a second", elapsed)
	}
	// Once the first closes, the file opens.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := store.Open(path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s3.Close()
}

func TestSchemaVersion(t *testing.T) {
	// A new file records schema "1".
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	s, err := store.Open(fresh)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(fresh, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("meta"))
		if b == nil {
			return errors.New("no meta bucket")
		}
		if v := string(b.Get([]byte("schema"))); v != "1" {
			return fmt.Errorf("schema %q, want \"1\"", v)
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	// A file of another schema is refused, and left as it was.
	for _, version := range []string{"2", "0", "10"} {
		t.Run("schema "+version, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "other.db")
			db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("meta"))
				if err != nil {
					return err
				}
				return b.Put([]byte("schema"), []byte(version))
			}); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			s, err := store.Open(p)
			if err == nil {
				s.Close()
				t.Fatalf("Open accepted a file of schema %q", version)
			}
			if !strings.Contains(err.Error(), "schema") {
				t.Errorf("error %q does not mention the schema", err)
			}
			// The refused Open released the file and did not rewrite the version.
			db, err = bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatalf("file still held after a refused Open: %v", err)
			}
			defer db.Close()
			if err := db.View(func(tx *bolt.Tx) error {
				if v := string(tx.Bucket([]byte("meta")).Get([]byte("schema"))); v != version {
					return fmt.Errorf("schema now %q, want %q", v, version)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestCorruptRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enroll("tok-1", store.Agent{ID: "good", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("agents")).Put([]byte("bad"), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err = store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.Agent("bad"); err == nil || !strings.Contains(err.Error(), "bad") {
		t.Errorf("Agent(corrupt) = %v, want an error naming the record", err)
	}
	if _, err := s.Agents(); err == nil {
		t.Error("Agents with a corrupt record: no error")
	}
	if _, err := s.Revoke("bad", t0); err == nil {
		t.Error("Revoke of a corrupt record: no error")
	}
	if err := s.Seen("bad", t0, "", nil); err == nil {
		t.Error("Seen of a corrupt record: no error")
	}
	if a := mustAgent(t, s, "good"); a.ID != "good" {
		t.Errorf("good record: %+v", a)
	}
}
