package dataset

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// DType is the element type byte of an IDX file (the third byte of its
// header).
type DType byte

// The element types defined by the IDX format.
const (
	IDXUByte   DType = 0x08 // unsigned 8-bit integer
	IDXSByte   DType = 0x09 // signed 8-bit integer
	IDXInt16   DType = 0x0B // big-endian signed 16-bit integer
	IDXInt32   DType = 0x0C // big-endian signed 32-bit integer
	IDXFloat32 DType = 0x0D // big-endian IEEE 754 binary32
	IDXFloat64 DType = 0x0E // big-endian IEEE 754 binary64
)

// Size returns the size of one element in bytes, or 0 for an unknown type.
func (t DType) Size() int {
	switch t {
	case IDXUByte, IDXSByte:
		return 1
	case IDXInt16:
		return 2
	case IDXInt32, IDXFloat32:
		return 4
	case IDXFloat64:
		return 8
	}
	return 0
}

// String returns a short name for the type, e.g. "ubyte" or "float32".
func (t DType) String() string {
	switch t {
	case IDXUByte:
		return "ubyte"
	case IDXSByte:
		return "sbyte"
	case IDXInt16:
		return "int16"
	case IDXInt32:
		return "int32"
	case IDXFloat32:
		return "float32"
	case IDXFloat64:
		return "float64"
	}
	return fmt.Sprintf("unknown(0x%02x)", byte(t))
}

// IDX is a decoded IDX file: its element type, its dimensions, and its
// payload exactly as stored in the file (big-endian, row-major).
//
// A value returned by ReadIDX always satisfies
// len(Data) == NumElements()*Type.Size().
type IDX struct {
	Type DType
	Dims []int
	Data []byte
}

// NumElements returns the product of Dims (0 if Dims is empty).
func (m *IDX) NumElements() int {
	if len(m.Dims) == 0 {
		return 0
	}
	n := 1
	for _, d := range m.Dims {
		n *= d
	}
	return n
}

// DefaultMaxIDXBytes is the payload size limit ReadIDX applies when
// IDXOptions.MaxBytes is zero: 2 GiB, well above any dataset fedq handles in
// memory, and low enough that a corrupt header cannot demand absurd sizes.
const DefaultMaxIDXBytes int64 = 1 << 31

// maxIDXDims is the largest number of dimensions ReadIDX accepts.
const maxIDXDims = 8

// idxChunk is the first allocation for a payload and the smallest step by
// which the payload buffer grows.
const idxChunk = 1 << 20

// IDXOptions tunes ReadIDXWithOptions.
type IDXOptions struct {
	// MaxBytes caps the payload size (product of dims times element size)
	// a header may declare. Zero or negative means DefaultMaxIDXBytes.
	MaxBytes int64
}

// ReadIDX decodes one IDX file from r with the default options. The input may
// be gzip-compressed (detected by the magic bytes 0x1f 0x8b) or plain. See
// ReadIDXWithOptions.
func ReadIDX(r io.Reader) (*IDX, error) {
	return ReadIDXWithOptions(r, IDXOptions{})
}

// ReadIDXWithOptions decodes one IDX file from r, which may be
// gzip-compressed or plain.
//
// It checks the header (two zero magic bytes, a known type, 1 to 8
// dimensions, none of them zero), refuses payloads larger than opt.MaxBytes,
// reports a truncated payload with the expected and actual sizes, and rejects
// any data after the payload. Memory grows with the bytes actually read, so a
// header that claims gigabytes on a short input fails without allocating them.
func ReadIDXWithOptions(r io.Reader, opt IDXOptions) (*IDX, error) {
	maxBytes := opt.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxIDXBytes
	}
	br := bufio.NewReader(r)
	src := io.Reader(br)
	compressed := false
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("IDX: open gzip stream: %w (the file looks gzip-compressed but is damaged; re-fetch it)", err)
		}
		defer zr.Close()
		src = zr
		compressed = true
	}

	var head [4]byte
	if n, err := io.ReadFull(src, head[:]); err != nil {
		return nil, headerError(err, n, 4, compressed)
	}
	if head[0] != 0 || head[1] != 0 {
		return nil, fmt.Errorf("IDX: bad magic bytes 0x%02x 0x%02x, want 0x00 0x00 (not an IDX file)", head[0], head[1])
	}
	typ := DType(head[2])
	elem := typ.Size()
	if elem == 0 {
		return nil, fmt.Errorf("IDX: unknown element type 0x%02x (want 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E; the file is corrupt or not IDX)", head[2])
	}
	ndims := int(head[3])
	if ndims < 1 || ndims > maxIDXDims {
		return nil, fmt.Errorf("IDX: %d dimensions, want 1 to %d (the file is corrupt or not IDX)", ndims, maxIDXDims)
	}

	var dimBuf [4 * maxIDXDims]byte
	if n, err := io.ReadFull(src, dimBuf[:4*ndims]); err != nil {
		return nil, headerError(err, 4+n, 4+4*ndims, compressed)
	}
	dims := make([]int, ndims)
	total := int64(elem)
	for i := range dims {
		d := int64(binary.BigEndian.Uint32(dimBuf[4*i:]))
		if d == 0 {
			return nil, fmt.Errorf("IDX: dimension %d is zero (an empty IDX file carries no data; the file is corrupt or was cut at the writer)", i)
		}
		if total > maxBytes/d || total*d > math.MaxInt {
			return nil, fmt.Errorf("IDX: header declares %s dims %v, a payload over the %d-byte limit (corrupt header, or raise IDXOptions.MaxBytes if the file is genuine)", typ, rawDims(dimBuf[:4*ndims]), maxBytes)
		}
		total *= d
		dims[i] = int(d)
	}

	data, err := readPayload(src, int(total))
	if err != nil {
		return nil, err
	}

	// Anything after the payload means the header and the data disagree.
	// Reading past the end also makes a gzip stream verify its checksum.
	var extra [1]byte
	n, err := io.ReadFull(src, extra[:])
	switch {
	case n > 0:
		return nil, fmt.Errorf("IDX: trailing data after the %d-byte payload for %s dims %v (header and data disagree; the file is corrupt)", total, typ, dims)
	case err == nil || err == io.EOF:
	case compressed && errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("IDX: gzip stream truncated, or stray bytes follow it, after the %d-byte payload: %w (the file is corrupt; re-fetch it)", total, err)
	case compressed && errors.Is(err, gzip.ErrHeader):
		return nil, fmt.Errorf("IDX: stray bytes after the gzip stream: %w (the file is corrupt; re-fetch it)", err)
	case compressed && errors.Is(err, gzip.ErrChecksum):
		return nil, fmt.Errorf("IDX: gzip checksum mismatch: %w (the file is corrupt; re-fetch it)", err)
	default:
		return nil, fmt.Errorf("IDX: after the %d-byte payload: %w (the file is corrupt; re-fetch it)", total, err)
	}
	return &IDX{Type: typ, Dims: dims, Data: data}, nil
}

// rawDims decodes big-endian uint32 dims for error messages.
func rawDims(raw []byte) []uint32 {
	out := make([]uint32, len(raw)/4)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(raw[4*i:])
	}
	return out
}

// headerError describes a failure to read the fixed-size header.
func headerError(err error, got, want int, compressed bool) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("IDX: header truncated: expected at least %d bytes, got %d (the file is truncated or empty; re-fetch it)", want, got)
	}
	if compressed {
		return fmt.Errorf("IDX: read header: %w (the gzip stream is damaged; re-fetch the file)", err)
	}
	return fmt.Errorf("IDX: read header: %w", err)
}

// readPayload reads exactly want bytes from r. The buffer starts at most
// idxChunk bytes and at most doubles, so memory stays within about twice
// what the input really holds, whatever the header claimed.
func readPayload(r io.Reader, want int) ([]byte, error) {
	buf := make([]byte, 0, min(want, idxChunk))
	for len(buf) < want {
		if len(buf) == cap(buf) {
			next := min(want, max(2*cap(buf), cap(buf)+idxChunk))
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("IDX: payload truncated: expected %d bytes, got %d (the file is truncated; re-fetch it)", want, len(buf))
			}
			return nil, fmt.Errorf("IDX: read payload after %d of %d bytes: %w (the file is corrupt; re-fetch it)", len(buf), want, err)
		}
	}
	return buf, nil
}

// LoadIDXFile opens path and decodes it with ReadIDX; every error names the
// path.
func LoadIDXFile(path string) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open IDX file: %w", err)
	}
	defer f.Close()
	m, err := ReadIDX(f)
	if err != nil {
		return nil, fmt.Errorf("read IDX %s: %w", path, err)
	}
	return m, nil
}
