package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/fedq/fedq/compute/blas"
	"github.com/fedq/fedq/protocol"
)

// Blobs are model weights as content-addressed files: the raw little-endian float32
// values of the flat parameter vector, named by their SHA-256 — which is also the
// version's hash and the hash of its model-download stream. A blob is written to a
// temporary file, fsynced, renamed into place and the directory fsynced, so it is
// either whole or absent; the version that names it is committed afterwards, so a
// crash between the two leaves an orphan blob, which Check removes.
type Blobs struct {
	dir string
}

// OpenBlobs opens (creating) a blob directory.
func OpenBlobs(dir string) (*Blobs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blob directory: %w", err)
	}
	return &Blobs{dir: dir}, nil
}

// Path returns the file of the blob of h (which may not exist).
func (b *Blobs) Path(h protocol.Hash) string { return filepath.Join(b.dir, h.String()) }

// Put stores weights and returns their hash. Storing the same weights twice is fine.
func (b *Blobs) Put(w []float32) (protocol.Hash, error) {
	sum := protocol.HashWeights(w)
	final := b.Path(sum)
	if fi, err := os.Stat(final); err == nil && fi.Size() == int64(4*len(w)) {
		return sum, nil
	}
	f, err := os.CreateTemp(b.dir, ".tmp-*")
	if err != nil {
		return sum, fmt.Errorf("store weights: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := writeLE(f, w); err != nil {
		f.Close()
		return sum, fmt.Errorf("store weights: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return sum, fmt.Errorf("store weights: %w", err)
	}
	if err := f.Close(); err != nil {
		return sum, fmt.Errorf("store weights: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return sum, fmt.Errorf("store weights: %w", err)
	}
	if d, err := os.Open(b.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return sum, nil
}

// blobChunk is the size of the pieces blobs are written and read in.
const blobChunk = 1 << 20

// writeLE writes w to f as little-endian float32 values: on a little-endian host its
// memory as is, elsewhere converted piece by piece.
func writeLE(f io.Writer, w []float32) error {
	if b, ok := protocol.LittleEndianBytes(w); ok {
		for len(b) > 0 {
			n := min(len(b), blobChunk)
			if _, err := f.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	}
	buf := make([]byte, 0, blobChunk)
	for len(w) > 0 {
		n := min(len(w), cap(buf)/4)
		buf = buf[:0]
		for _, v := range w[:n] {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
		w = w[n:]
	}
	return nil
}

// Get reads the blob of hash into dst, which must have its exact size, and verifies the
// hash.
func (b *Blobs) Get(h protocol.Hash, dst []float32) error {
	return b.read(h, len(dst), func(chunk []float32, off int) { copy(dst[off:], chunk) })
}

// AddTo adds the blob of hash to dst (dst += blob), which must have its exact size, and
// verifies the hash. The coordinator applies a round's aggregate update to its base
// this way, without holding the base in memory. On error dst is partly updated.
func (b *Blobs) AddTo(h protocol.Hash, dst []float32) error {
	return b.read(h, len(dst), func(chunk []float32, off int) { blas.Axpy(1, chunk, dst[off:off+len(chunk)]) })
}

// Verify checks that the blob of hash holds n values that hash to it.
func (b *Blobs) Verify(h protocol.Hash, n int) error {
	return b.read(h, n, func([]float32, int) {})
}

// Open opens the blob of hash, of n values, for streaming its raw little-endian bytes;
// the caller closes it. Blobs are never rewritten, so a reader sees whole content even
// while new versions are stored. Its hash is not checked here: a download's trailer
// carries the expected hash and the receiver checks it.
func (b *Blobs) Open(h protocol.Hash, n int) (*os.File, error) {
	f, err := os.Open(b.Path(h))
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", h.String()[:12], err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("weights %s: %w", h.String()[:12], err)
	}
	if fi.Size() != int64(4*n) {
		f.Close()
		return nil, fmt.Errorf("weights %s: file has %d bytes, want %d (damaged store)", h.String()[:12], fi.Size(), 4*n)
	}
	return f, nil
}

// read streams the blob of hash, which must hold n values, through fn in chunks, and
// verifies the hash at the end.
func (b *Blobs) read(h protocol.Hash, n int, fn func(chunk []float32, off int)) error {
	f, err := b.Open(h, n)
	if err != nil {
		return err
	}
	defer f.Close()
	hash := sha256.New()
	// A chunk, or the whole blob when it is smaller: a fresh megabyte for a model of a
	// thousand values cost more than the rest of a round's commit (page faults).
	vals := make([]float32, max(1, min(blobChunk/4, n)))
	raw, native := protocol.LittleEndianBytes(vals)
	if !native {
		raw = make([]byte, 4*len(vals))
	}
	for off := 0; off < n; {
		k := min(n-off, len(vals))
		if _, err := io.ReadFull(f, raw[:4*k]); err != nil {
			return fmt.Errorf("weights %s: %w", h.String()[:12], err)
		}
		hash.Write(raw[:4*k])
		if !native {
			for i := range k {
				vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		}
		fn(vals[:k], off)
		off += k
	}
	var sum protocol.Hash
	hash.Sum(sum[:0])
	if sum != h {
		return fmt.Errorf("weights %s: content hashes to %s (damaged store)", h.String()[:12], sum.String()[:12])
	}
	return nil
}

// Size returns a blob's size in bytes, or an error if it is missing.
func (b *Blobs) Size(h protocol.Hash) (int64, error) {
	fi, err := os.Stat(b.Path(h))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// list returns the hashes of the stored blobs and removes leftover temporary files.
func (b *Blobs) list() ([]protocol.Hash, error) {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, err
	}
	var out []protocol.Hash
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(filepath.Join(b.dir, name))
			continue
		}
		raw, err := hex.DecodeString(name)
		if err != nil || len(raw) != 32 {
			continue
		}
		var h protocol.Hash
		copy(h[:], raw)
		out = append(out, h)
	}
	return out, nil
}

// CheckReport says what Check found.
type CheckReport struct {
	Versions       int
	OrphansRemoved int
	Verified       int
}

// Check verifies the store against its blobs: every version's blob exists with the
// right size, the latest version of every task hashes right (it is the base of the next
// round), and blobs no version names — left by a crash between writing a blob and
// committing its version — are removed.
func (s *Store) Check(b *Blobs) (CheckReport, error) {
	var rep CheckReport
	versions, err := s.Versions("")
	if err != nil {
		return rep, err
	}
	tasks, err := s.Tasks()
	if err != nil {
		return rep, err
	}
	latest := map[uint64]bool{}
	for _, t := range tasks {
		latest[t.Latest] = true
	}
	named := map[protocol.Hash]bool{}
	var errs []error
	for _, v := range versions {
		rep.Versions++
		named[v.Hash] = true
		if !v.StrategyState.IsZero() {
			named[v.StrategyState] = true
			if latest[v.Number] {
				if err := b.Get(v.StrategyState, make([]float32, v.StrategyStateValues)); err != nil {
					errs = append(errs, fmt.Errorf("version %d: strategy state: %w", v.Number, err))
				}
			}
		}
		size, err := b.Size(v.Hash)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("version %d: weights missing: %w", v.Number, err))
		case size != int64(4*v.Params):
			errs = append(errs, fmt.Errorf("version %d: weights have %d bytes, want %d", v.Number, size, 4*v.Params))
		case latest[v.Number]:
			if err := b.Get(v.Hash, make([]float32, v.Params)); err != nil {
				errs = append(errs, fmt.Errorf("version %d: %w", v.Number, err))
			} else {
				rep.Verified++
			}
		}
	}
	blobs, err := b.list()
	if err != nil {
		return rep, err
	}
	for _, h := range blobs {
		if !named[h] {
			if err := os.Remove(b.Path(h)); err == nil {
				rep.OrphansRemoved++
			}
		}
	}
	return rep, errors.Join(errs...)
}
