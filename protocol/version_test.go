package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"testing"
)

func TestVersionSignature(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	h := VersionHeader{Number: 7, Parent: 6, Task: "mnist", Round: 6, Params: 199210, Hash: Hash{9}}
	meta := SignedMeta(h, key)
	got, err := VerifyVersion(pub, meta)
	if err != nil || got != h {
		t.Fatalf("VerifyVersion = %+v, %v", got, err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	tampered := map[string]string{MetaVersion: string(VersionHeader{Number: 8, Parent: 6, Task: "mnist", Round: 6, Params: 199210, Hash: Hash{9}}.Text()), MetaSignature: meta[MetaSignature]}
	for name, tc := range map[string]struct {
		pub  ed25519.PublicKey
		meta map[string]string
		code ErrorCode
	}{
		"other key": {other, meta, CodeHashMismatch},
		"tampered":  {pub, tampered, CodeHashMismatch},
		"unsigned":  {pub, map[string]string{}, CodeInvalid},
		"bad b64":   {pub, map[string]string{MetaVersion: meta[MetaVersion], MetaSignature: "!!"}, CodeInvalid},
	} {
		if _, err := VerifyVersion(tc.pub, tc.meta); CodeOf(err) != tc.code {
			t.Errorf("%s: %v, want %v", name, err, tc.code)
		}
	}
}

func FuzzParseVersionHeader(f *testing.F) {
	f.Add(VersionHeader{Number: 1, Task: "t", Hash: Hash{1}}.Text())
	f.Add([]byte("fedq-version/1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseVersionHeader(b)
		if err != nil {
			return
		}
		if _, err := ParseVersionHeader(h.Text()); err != nil {
			t.Fatalf("re-parse of %q: %v", h.Text(), err)
		}
	})
}

// TestHashWeightsEncoding checks HashWeights against the SHA-256 of the values encoded
// one by one as little-endian float32, whichever path the host takes.
func TestHashWeightsEncoding(t *testing.T) {
	for _, n := range []int{0, 1, 16<<10 - 1, 16 << 10, 100003} {
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(i%1013)*0.37 - 11
		}
		var enc []byte
		for _, v := range w {
			enc = binary.LittleEndian.AppendUint32(enc, math.Float32bits(v))
		}
		if got, want := HashWeights(w), Hash(sha256.Sum256(enc)); got != want {
			t.Fatalf("n=%d: HashWeights = %s, want %s", n, got, want)
		}
		if b, ok := LittleEndianBytes(w); ok && !bytes.Equal(b, enc) {
			t.Fatalf("n=%d: LittleEndianBytes differs from the encoding", n)
		}
	}
}

// BenchmarkHashWeights40MB measures the hash of a committed 40 MB model.
func BenchmarkHashWeights40MB(b *testing.B) {
	w := make([]float32, 10<<20)
	b.SetBytes(int64(4 * len(w)))
	for b.Loop() {
		HashWeights(w)
	}
}
