package serve

import (
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/internal/keyfile"
	"github.com/fedq/fedq/protocol"
)

func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed + byte(i)
	}
	return ed25519.NewKeyFromSeed(s)
}

// signedFile saves net as `fedq model pull` does: the version header the coordinator
// signs, its signature, the task and the number. tamper changes a weight after signing.
func signedFile(t *testing.T, net *compute.Model[float32], key ed25519.PrivateKey, number uint64, tamper bool) string {
	t.Helper()
	h := protocol.VersionHeader{Number: number, Parent: number - 1, Task: "mnist", Round: number - 1,
		Params: uint64(net.NumParams()), Hash: protocol.HashWeights(net.Values())}
	meta := protocol.SignedMeta(h, key)
	meta[MetaTask] = "mnist"
	meta[MetaVersionNumber] = "7"
	if tamper {
		net.Values()[3] += 1e-3
	}
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := compute.SaveFile(path, net, meta); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadFileVerifies(t *testing.T) {
	key, other := testKey(1), testKey(2)
	pub := key.Public().(ed25519.PublicKey)
	plain := filepath.Join(t.TempDir(), "plain.safetensors")
	if err := compute.SaveFile(plain, newNet(t, tinySpec(), 1), nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		key      ed25519.PublicKey
		version  uint64
		verified bool
		err      string
	}{
		{"signed, verified", signedFile(t, newNet(t, tinySpec(), 1), key, 7, false), pub, 7, true, ""},
		{"signed, not checked", signedFile(t, newNet(t, tinySpec(), 1), key, 7, false), nil, 7, false, ""},
		{"signed by another key", signedFile(t, newNet(t, tinySpec(), 1), other, 7, false), pub, 0, false, "signature does not verify"},
		{"weights tampered", signedFile(t, newNet(t, tinySpec(), 1), key, 7, true), pub, 0, false, "altered after signing"},
		{"unsigned but a key given", plain, pub, 0, false, "not signed"},
		{"unsigned, no key", plain, nil, 0, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := LoadFile(tc.path, LoadOptions{VerifyWith: tc.key})
			if tc.err != "" {
				var ve *VerifyError
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ve) || !strings.Contains(err.Error(), "refusing to serve") {
					t.Fatalf("LoadFile: %v, want a refusal saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Version != tc.version || (m.Header != nil) != tc.verified {
				t.Fatalf("version %d, header %v", m.Version, m.Header)
			}
		})
	}
}

// A header whose parameter count does not match is refused too.
func TestVerifyParamCount(t *testing.T) {
	key := testKey(3)
	w := []float32{1, 2, 3}
	h := protocol.VersionHeader{Number: 2, Task: "t", Params: 4, Hash: protocol.HashWeights(w)}
	if _, err := Verify(key.Public().(ed25519.PublicKey), protocol.SignedMeta(h, key), w); err == nil || !strings.Contains(err.Error(), "4 parameters") {
		t.Fatalf("Verify: %v", err)
	}
}

// HashWeights is the coordinator's hash of weights: store.HashWeights, and what the
// blob store's Put returns (the hash versions are signed with).
func TestHashWeightsIsTheCoordinators(t *testing.T) {
	blobs, err := store.OpenBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 1000, 70_001} { // across the 64 KiB chunking
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(r.NormFloat64())
		}
		put, err := blobs.Put(w)
		if err != nil {
			t.Fatal(err)
		}
		if got := protocol.HashWeights(w); got != protocol.HashWeights(w) || got != put {
			t.Fatalf("%d weights: HashWeights %s, store %s, Put %s", n, got, protocol.HashWeights(w), put)
		}
	}
}

func TestLoadSigningKey(t *testing.T) {
	dir := t.TempDir()
	pem, err := keyfile.PublicKeyPEM(testKey(4).Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ca.SigningPubFile), pem, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, ca.SigningPubFile)} {
		k, err := LoadSigningKey(p)
		if err != nil || !k.Equal(testKey(4).Public()) {
			t.Fatalf("LoadSigningKey(%s): %v", p, err)
		}
	}
	if _, err := LoadSigningKey(t.TempDir()); err == nil {
		t.Fatal("a directory without signing.pub gave a key")
	}
}
