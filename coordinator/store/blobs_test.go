package store

import (
	"crypto/sha256"
	"os"
	"strings"
	"testing"

	"github.com/fedq/fedq/protocol"
)

func testWeights(n int) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(i%97)/13 - 3
	}
	return w
}

func TestBlobsRoundTrip(t *testing.T) {
	b, err := OpenBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 65536, blobChunk/4 - 1, blobChunk / 4, blobChunk/2 + 3} { // around the read chunk
		w := testWeights(n)
		h, err := b.Put(w)
		if err != nil {
			t.Fatal(err)
		}
		if h != protocol.HashWeights(w) {
			t.Fatalf("n=%d: Put returned another hash than HashWeights", n)
		}
		if h2, err := b.Put(w); err != nil || h2 != h {
			t.Fatalf("n=%d: second Put: %v %v", n, h2, err)
		}
		got := make([]float32, n)
		if err := b.Get(h, got); err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if got[i] != w[i] {
				t.Fatalf("n=%d: value %d = %v, want %v", n, i, got[i], w[i])
			}
		}
		// AddTo: dst += blob.
		dst := make([]float32, n)
		for i := range dst {
			dst[i] = 1
		}
		if err := b.AddTo(h, dst); err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if dst[i] != 1+w[i] {
				t.Fatalf("n=%d: AddTo value %d = %v, want %v", n, i, dst[i], 1+w[i])
			}
		}
		if err := b.Verify(h, n); err != nil {
			t.Fatal(err)
		}
		f, err := b.Open(h, n)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, err := b.Open(h, n+1); err == nil {
			t.Fatalf("n=%d: Open with the wrong size succeeded", n)
		}
	}
}

// TestBlobsDamaged checks that every reader refuses a damaged, truncated or missing blob
// with an error that names the problem.
func TestBlobsDamaged(t *testing.T) {
	const n = 1000
	for _, tc := range []struct {
		name   string
		damage func(path string) error
		want   string
	}{
		{"flipped bit", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 4
			return os.WriteFile(p, b, 0o600)
		}, "damaged store"},
		{"truncated", func(p string) error { return os.Truncate(p, 4*n-4) }, "damaged store"},
		{"missing", os.Remove, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := OpenBlobs(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			h, err := b.Put(testWeights(n))
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(b.Path(h)); err != nil {
				t.Fatal(err)
			}
			for name, read := range map[string]func() error{
				"Get":    func() error { return b.Get(h, make([]float32, n)) },
				"AddTo":  func() error { return b.AddTo(h, make([]float32, n)) },
				"Verify": func() error { return b.Verify(h, n) },
			} {
				if err := read(); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
				}
			}
		})
	}
}

// FuzzBlobGet feeds arbitrary file content to the blob reader: it must never panic, and
// must accept the content only when it hashes to the name it is read under.
func FuzzBlobGet(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63}, true)
	f.Add([]byte{1, 2, 3}, false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, content []byte, named bool) {
		b, err := OpenBlobs(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		h := protocol.Hash(sha256.Sum256(content))
		if !named {
			h[0] ^= 1
		}
		if err := os.WriteFile(b.Path(h), content, 0o600); err != nil {
			t.Fatal(err)
		}
		n := len(content) / 4
		err = b.Get(h, make([]float32, n))
		ok := named && len(content)%4 == 0
		if ok != (err == nil) {
			t.Fatalf("content of %d bytes, named by its hash %v: %v", len(content), named, err)
		}
	})
}

// BenchmarkBlobs40MB measures what a commit does with a 40 MB model: Put (hash, write,
// fsync) the new version, and AddTo the base into the accumulator (read, hash, add).
func BenchmarkBlobs40MB(b *testing.B) {
	blobs, err := OpenBlobs(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	w := testWeights(10 << 20)
	b.Run("Put", func(b *testing.B) {
		b.SetBytes(int64(4 * len(w)))
		for i := 0; b.Loop(); i++ {
			w[0] = float32(i) // a new blob each time
			if _, err := blobs.Put(w); err != nil {
				b.Fatal(err)
			}
		}
	})
	h, err := blobs.Put(w)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, len(w))
	b.Run("AddTo", func(b *testing.B) {
		b.SetBytes(int64(4 * len(w)))
		for b.Loop() {
			if err := blobs.AddTo(h, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBlobsAddTo4KB is a small model's commit reading its base: the chunk buffer
// is sized to the blob, not a megabyte per call.
func BenchmarkBlobsAddTo4KB(b *testing.B) {
	blobs, err := OpenBlobs(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	w := testWeights(1000)
	h, err := blobs.Put(w)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, len(w))
	b.ReportAllocs()
	for b.Loop() {
		if err := blobs.AddTo(h, dst); err != nil {
			b.Fatal(err)
		}
	}
}
