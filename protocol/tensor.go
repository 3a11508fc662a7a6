package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"math/bits"
	"unsafe"
)

// DType names the element type of a tensor on the wire. Elements are always
// little-endian.
type DType string

// Element types. All are 4 bytes wide.
const (
	// DTypeF32 is IEEE 754 binary32 (model weights, plain updates).
	DTypeF32 DType = "F32"
	// DTypeI32 is two's-complement int32.
	DTypeI32 DType = "I32"
	// DTypeU32 is uint32 (secure-aggregation masked vectors, in Z_2^32).
	DTypeU32 DType = "U32"
)

// Size returns the size in bytes of one element, or 0 for a dtype this
// version does not define.
func (d DType) Size() int {
	switch d {
	case DTypeF32, DTypeI32, DTypeU32:
		return 4
	}
	return 0
}

// MaxTensorsLimit is the most tensors any tensor stream may hold, whatever
// the Limits say (it is also the CBOR decoder's array limit).
const MaxTensorsLimit = 16384

// Limits bound what a [TensorReader] accepts and a [TensorWriter] sends.
// A zero field means its default (see [DefaultLimits]). A header over a
// limit is refused with [CodeLimitExceeded] before any tensor byte is read
// or any buffer is sized from it.
type Limits struct {
	// MaxTensors bounds the number of tensors (default 4096, at most
	// MaxTensorsLimit).
	MaxTensors int
	// MaxDims bounds the rank of each tensor (default 8).
	MaxDims int
	// MaxDimSize bounds each dimension (default 1<<31).
	MaxDimSize int
	// MaxTotalBytes bounds the raw payload of the stream (default 4 GiB).
	MaxTotalBytes uint64
	// MaxNameLen bounds each tensor's name in bytes (default 512).
	MaxNameLen int
	// MaxHeaderBytes bounds the CBOR payload of the TensorHeader frame
	// (default 4 MiB).
	MaxHeaderBytes int
	// ChunkSize is the size of the one buffer used to move tensor bytes
	// (default 64 KiB; rounded down to a multiple of 4). It is a local I/O
	// choice and does not appear on the wire.
	ChunkSize int
}

// DefaultLimits returns the default tensor stream limits.
func DefaultLimits() Limits {
	return Limits{
		MaxTensors:     4096,
		MaxDims:        8,
		MaxDimSize:     min(1<<31, math.MaxInt),
		MaxTotalBytes:  4 << 30,
		MaxNameLen:     512,
		MaxHeaderBytes: 4 << 20,
		ChunkSize:      64 << 10,
	}
}

// withDefaults fills zero fields from DefaultLimits and clamps the rest to
// what the format allows.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxTensors <= 0 {
		l.MaxTensors = d.MaxTensors
	}
	l.MaxTensors = min(l.MaxTensors, MaxTensorsLimit)
	if l.MaxDims <= 0 {
		l.MaxDims = d.MaxDims
	}
	if l.MaxDimSize <= 0 {
		l.MaxDimSize = d.MaxDimSize
	}
	if l.MaxTotalBytes == 0 {
		l.MaxTotalBytes = d.MaxTotalBytes
	}
	if l.MaxNameLen <= 0 {
		l.MaxNameLen = d.MaxNameLen
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	l.MaxHeaderBytes = normFrameLimit(l.MaxHeaderBytes)
	if l.ChunkSize <= 0 {
		l.ChunkSize = d.ChunkSize
	}
	l.ChunkSize = max(l.ChunkSize&^3, 4)
	return l
}

// TensorInfo describes one tensor of a tensor stream.
type TensorInfo struct {
	// Name is the tensor's name, e.g. "fc1.weight" (PyTorch naming).
	Name string `cbor:"1,keyasint,omitempty"`
	// DType is the element type.
	DType DType `cbor:"2,keyasint,omitempty"`
	// Shape is the tensor's dimensions, outermost first (row-major). An
	// empty shape is a scalar (one element).
	Shape []int `cbor:"3,keyasint,omitempty"`
}

// NumElements returns the product of the shape, or -1 if a dimension is
// negative or the product overflows an int. On a TensorInfo from a
// [TensorReader] it is always valid, so it can size a destination slice.
func (ti TensorInfo) NumElements() int {
	n := uint64(1)
	for _, d := range ti.Shape {
		if d < 0 {
			return -1
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt {
			return -1
		}
		n = lo
	}
	return int(n)
}

// TensorHeader opens a tensor stream: it lists the tensors whose raw bytes
// follow, in order.
//
// Direction: coordinator → agent on a model-download stream, agent →
// coordinator on an update-upload stream. When: right after the stream's
// first frame ([ModelRequest] or [UpdateHeader]); it is followed by exactly
// TotalBytes of raw little-endian tensor data and a [TensorTrailer].
type TensorHeader struct {
	// Tensors lists the tensors in stream order.
	Tensors []TensorInfo `cbor:"1,keyasint,omitempty"`
	// TotalBytes is the length of the raw data that follows the header: the
	// sum over tensors of elements × dtype size.
	TotalBytes uint64 `cbor:"2,keyasint,omitempty"`
	// Meta carries free-form metadata (e.g. "version", "format"), opaque to
	// the protocol.
	Meta map[string]string `cbor:"3,keyasint,omitempty"`
	// Digest is how the trailer checks the raw data: empty or [DigestSHA256]
	// (a SHA-256 in the trailer), or [DigestNone] (no hash: the stream relies
	// on QUIC's authenticated encryption alone).
	Digest Digest `cbor:"4,keyasint,omitempty"`
}

// Digest names the end-to-end check of a tensor stream's raw data.
type Digest string

// Digests. A model stream always carries a SHA-256: the hash is the version's
// identity, which the receiver checks against the signed one. An update upload
// needs none — QUIC's AEAD already authenticates every byte, the framing catches
// a truncated stream, and nothing is addressed by an update's hash — so an agent
// skips it when the coordinator offers [FeatureUndigestedUploads], saving two
// SHA-256 passes (sender and receiver) over every update.
const (
	// DigestSHA256 is a SHA-256 of the raw data in the trailer; an empty
	// Digest means the same.
	DigestSHA256 Digest = "sha256"
	// DigestNone is no digest: the trailer carries no hash.
	DigestNone Digest = "none"
)

// Type implements [Message].
func (*TensorHeader) Type() MsgType { return MsgTensorHeader }

// Validate checks the header against [DefaultLimits]; see [Message].
func (h *TensorHeader) Validate() error { return h.check(DefaultLimits()) }

// check validates h against lim (already defaulted): bounded counts, known
// dtypes, non-negative dimensions, unique non-empty names, and TotalBytes
// equal to the sizes the shapes imply, computed without overflow. It returns
// an *Error with CodeLimitExceeded or CodeInvalid.
func (h *TensorHeader) check(lim Limits) error {
	lim = lim.withDefaults()
	if len(h.Tensors) > lim.MaxTensors {
		return NewError(CodeLimitExceeded, "tensor header lists %d tensors, over the limit of %d", len(h.Tensors), lim.MaxTensors)
	}
	if h.TotalBytes > lim.MaxTotalBytes {
		return NewError(CodeLimitExceeded, "tensor header announces %d bytes, over the limit of %d", h.TotalBytes, lim.MaxTotalBytes)
	}
	if err := checkStringMap("TensorHeader.Meta", h.Meta); err != nil {
		return wrapError(CodeInvalid, err, "bad tensor header metadata")
	}
	var seen map[string]struct{}
	if len(h.Tensors) > 1 {
		seen = make(map[string]struct{}, len(h.Tensors))
	}
	var total uint64
	for i, ti := range h.Tensors {
		if ti.Name == "" {
			return NewError(CodeInvalid, "tensor %d has an empty name", i)
		}
		if len(ti.Name) > lim.MaxNameLen {
			return NewError(CodeLimitExceeded, "tensor %d name is %d bytes, over the limit of %d", i, len(ti.Name), lim.MaxNameLen)
		}
		if seen != nil {
			if _, dup := seen[ti.Name]; dup {
				return NewError(CodeInvalid, "tensor name %q appears twice; names must be unique", ti.Name)
			}
			seen[ti.Name] = struct{}{}
		}
		size := ti.DType.Size()
		if size == 0 {
			return NewError(CodeInvalid, "tensor %q has dtype %q; fedq/1 defines F32, I32 and U32", ti.Name, ti.DType)
		}
		if len(ti.Shape) > lim.MaxDims {
			return NewError(CodeLimitExceeded, "tensor %q has %d dimensions, over the limit of %d", ti.Name, len(ti.Shape), lim.MaxDims)
		}
		nbytes := uint64(size)
		for _, d := range ti.Shape {
			if d < 0 {
				return NewError(CodeInvalid, "tensor %q has negative dimension %d in shape %v", ti.Name, d, ti.Shape)
			}
			if d > lim.MaxDimSize {
				return NewError(CodeLimitExceeded, "tensor %q has dimension %d, over the limit of %d", ti.Name, d, lim.MaxDimSize)
			}
			hi, lo := bits.Mul64(nbytes, uint64(d))
			if hi != 0 || lo > lim.MaxTotalBytes {
				return NewError(CodeLimitExceeded, "tensor %q of shape %v is over the %d-byte limit", ti.Name, ti.Shape, lim.MaxTotalBytes)
			}
			nbytes = lo
		}
		if nbytes/uint64(size) > math.MaxInt {
			return NewError(CodeLimitExceeded, "tensor %q of shape %v has more elements than this host can index", ti.Name, ti.Shape)
		}
		sum, carry := bits.Add64(total, nbytes, 0)
		if carry != 0 || sum > lim.MaxTotalBytes {
			return NewError(CodeLimitExceeded, "tensors up to %q exceed the %d-byte limit", ti.Name, lim.MaxTotalBytes)
		}
		total = sum
	}
	if total != h.TotalBytes {
		return NewError(CodeInvalid, "tensor header says TotalBytes=%d but its shapes add up to %d bytes", h.TotalBytes, total)
	}
	switch h.Digest {
	case "", DigestSHA256, DigestNone:
	default:
		return NewError(CodeInvalid, "tensor header asks for digest %q; fedq/1 defines %q and %q", h.Digest, DigestSHA256, DigestNone)
	}
	return nil
}

// hashed reports whether the stream's trailer carries a SHA-256.
func (h *TensorHeader) hashed() bool { return h.Digest != DigestNone }

// TensorTrailer closes a tensor stream.
//
// Direction: as [TensorHeader]. When: right after the last raw byte.
type TensorTrailer struct {
	// SHA256 is the SHA-256 of all raw bytes between header and trailer;
	// absent when the header's Digest is [DigestNone].
	SHA256 Hash `cbor:"1,keyasint,omitempty"`
}

// Type implements [Message].
func (*TensorTrailer) Type() MsgType { return MsgTensorTrailer }

// Validate checks field ranges; see [Message]. Whether SHA256 must be present
// depends on the stream's header, which [TensorReader.Finish] checks.
func (m *TensorTrailer) Validate() error { return nil }

// maxTrailerBytes bounds the trailer frame's payload: its CBOR is 36 bytes.
const maxTrailerBytes = 128

// element is the set of Go element types a tensor can be read into or
// written from. All are 4 bytes wide, like every DType.
type element interface {
	~float32 | ~int32 | ~uint32
}

// asBytes views s's memory as bytes, without copying.
func asBytes[E element](s []E) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*4)
}

// asElems views b's memory (4-byte aligned, length a multiple of 4) as
// elements, without copying.
func asElems[E element](b []uint32) []E {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*E)(unsafe.Pointer(unsafe.SliceData(b))), len(b))
}

// leToNative converts b in place from little-endian 4-byte words to host
// order. It is correct on any host (on a little-endian host it is the
// identity); the fast paths skip it there. b must be 4-byte aligned.
func leToNative(b []byte) {
	if len(b) < 4 {
		return
	}
	u := unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
	for i := range u {
		u[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
}

// nativeToLE encodes src (host-order 4-byte words) as little-endian into
// dst, which must hold len(src)*4 bytes. Correct on any host.
func nativeToLE[E element](dst []byte, src []E) {
	u := unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(src))), len(src))
	for i, v := range u {
		binary.LittleEndian.PutUint32(dst[4*i:], v)
	}
}

// TensorRef is a tensor to send: its description and its data. Exactly the
// slice matching Info.DType is used and must hold Info.NumElements()
// elements; the others are ignored. The writer reads the slice in place, so
// it must not change until the write returns.
type TensorRef struct {
	// Info names and shapes the tensor.
	Info TensorInfo
	// F32 holds the data of an F32 tensor.
	F32 []float32
	// I32 holds the data of an I32 tensor.
	I32 []int32
	// U32 holds the data of a U32 tensor.
	U32 []uint32
}

// data returns the ref's data as bytes in host order, checking that the
// slice matching the dtype has the right length.
func (t *TensorRef) data() ([]byte, error) {
	n := t.Info.NumElements()
	var got int
	var b []byte
	switch t.Info.DType {
	case DTypeF32:
		got, b = len(t.F32), asBytes(t.F32)
	case DTypeI32:
		got, b = len(t.I32), asBytes(t.I32)
	case DTypeU32:
		got, b = len(t.U32), asBytes(t.U32)
	default:
		return nil, NewError(CodeInvalid, "tensor %q has dtype %q; use DTypeF32, DTypeI32 or DTypeU32", t.Info.Name, t.Info.DType)
	}
	if got != n {
		return nil, NewError(CodeInvalid, "tensor %q of shape %v needs %d %s elements, the %s slice has %d",
			t.Info.Name, t.Info.Shape, n, t.Info.DType, t.Info.DType, got)
	}
	return b, nil
}

// TensorWriter writes tensor streams, reusing its buffers across calls.
// It is not safe for concurrent use; one per goroutine.
type TensorWriter struct {
	lim      Limits
	portable bool     // encode element by element instead of writing memory as is
	chunk    []uint32 // portable-path buffer, allocated on first use
	frame    bytes.Buffer
	h        hash.Hash
	digest   Digest // of the streams Write sends
}

// NewTensorWriter returns a TensorWriter that refuses to send streams over
// lim (zero fields: defaults), so that a stream the peer would reject fails
// here first. The receiver's limits should be at least as large.
func NewTensorWriter(lim Limits) *TensorWriter {
	return &TensorWriter{lim: lim.withDefaults(), portable: !hostLittleEndian, h: sha256.New()}
}

// SetDigest sets the digest of the streams [TensorWriter.Write] sends (by
// default [DigestSHA256]). With [DigestNone] the raw bytes are not hashed, the
// trailer carries no hash and Write returns the zero Hash: for an update
// upload to a coordinator that offers [FeatureUndigestedUploads]. Model
// streams (WriteKnown, WriteRaw) always carry their SHA-256.
func (tw *TensorWriter) SetDigest(d Digest) error {
	switch d {
	case "", DigestSHA256:
		tw.digest = ""
	case DigestNone:
		tw.digest = d
	default:
		return fmt.Errorf("protocol: unknown digest %q (want %q or %q)", d, DigestSHA256, DigestNone)
	}
	return nil
}

// WriteTensors writes a complete tensor stream to w with default limits and
// returns the SHA-256 of the raw bytes (the trailer's hash). Use a
// [TensorWriter] to reuse buffers across streams. To compute the hash
// without sending anything, write to io.Discard.
func WriteTensors(w io.Writer, tensors []TensorRef, meta map[string]string) (Hash, error) {
	return NewTensorWriter(Limits{}).Write(w, tensors, meta)
}

// Write writes a complete tensor stream to w: the TensorHeader frame, the
// raw little-endian bytes of each tensor in order, and the TensorTrailer
// frame. On a little-endian host the tensors' memory is written as is, in
// chunks, with no copy; elsewhere each chunk is encoded into one reusable
// buffer. It returns the SHA-256 of the raw bytes. A failed write leaves
// the stream unusable: abort it (QUIC: CancelWrite with
// CodeOf(err).AppErrorCode()).
func (tw *TensorWriter) Write(w io.Writer, tensors []TensorRef, meta map[string]string) (Hash, error) {
	return tw.write(w, tensors, meta, nil)
}

// WriteKnown writes a tensor stream whose hash the caller already knows (a stored model
// version), sending sum as the trailer instead of hashing the bytes again: serving one
// model to many agents then costs no hashing. If sum is wrong every receiver rejects
// the stream with CodeHashMismatch, so a stale or corrupt hash is caught, not trusted.
func (tw *TensorWriter) WriteKnown(w io.Writer, tensors []TensorRef, meta map[string]string, sum Hash) error {
	_, err := tw.write(w, tensors, meta, &sum)
	return err
}

// WriteRaw writes a tensor stream whose raw bytes — the tensors of layout in order,
// little-endian, as a stored model file holds them — come from data, with sum, the
// caller's known hash of those bytes, as the trailer (see WriteKnown). Exactly the
// layout's byte size is read from data; a shorter data is an error, and the stream is
// then unusable. A coordinator serves stored versions this way, from the file, without
// holding the model in memory.
func (tw *TensorWriter) WriteRaw(w io.Writer, layout []TensorInfo, meta map[string]string, sum Hash, data io.Reader) error {
	hdr := TensorHeader{Tensors: layout, Meta: meta}
	for _, t := range layout {
		hdr.TotalBytes += uint64(t.NumElements() * t.DType.Size())
	}
	if err := hdr.check(tw.lim); err != nil {
		return fmt.Errorf("protocol: refusing to send a tensor stream the peer would reject: %w", err)
	}
	b, err := encodeFrame(&tw.frame, &hdr, tw.lim.MaxHeaderBytes)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("protocol: writing tensor header: %w", err)
	}
	buf := chunkFor(&tw.chunk, tw.lim.ChunkSize, hdr.TotalBytes)
	for left := hdr.TotalBytes; left > 0; {
		p := buf[:min(uint64(len(buf)), left)]
		if _, err := io.ReadFull(data, p); err != nil {
			return fmt.Errorf("protocol: reading tensor data (%d bytes left): %w", left, err)
		}
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("protocol: writing tensor data: %w", err)
		}
		left -= uint64(len(p))
	}
	b, err = encodeFrame(&tw.frame, &TensorTrailer{SHA256: sum}, maxTrailerBytes)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("protocol: writing tensor trailer: %w", err)
	}
	return nil
}

func (tw *TensorWriter) write(w io.Writer, tensors []TensorRef, meta map[string]string, known *Hash) (Hash, error) {
	hdr := TensorHeader{Tensors: make([]TensorInfo, len(tensors)), Meta: meta}
	if known == nil {
		hdr.Digest = tw.digest
	}
	hashing := known == nil && hdr.hashed()
	data := make([][]byte, len(tensors))
	for i := range tensors {
		b, err := tensors[i].data()
		if err != nil {
			return Hash{}, err
		}
		hdr.Tensors[i] = tensors[i].Info
		data[i] = b
		hdr.TotalBytes += uint64(len(b))
	}
	if err := hdr.check(tw.lim); err != nil {
		return Hash{}, fmt.Errorf("protocol: refusing to send a tensor stream the peer would reject: %w", err)
	}
	b, err := encodeFrame(&tw.frame, &hdr, tw.lim.MaxHeaderBytes)
	if err != nil {
		return Hash{}, err
	}
	if _, err := w.Write(b); err != nil {
		return Hash{}, fmt.Errorf("protocol: writing tensor header: %w", err)
	}
	tw.h.Reset()
	for i, b := range data {
		if err := tw.writeData(w, b, hashing); err != nil {
			return Hash{}, fmt.Errorf("protocol: writing tensor %q: %w", hdr.Tensors[i].Name, err)
		}
	}
	var sum Hash
	switch {
	case known != nil:
		sum = *known
	case hashing:
		tw.h.Sum(sum[:0])
	}
	b, err = encodeFrame(&tw.frame, &TensorTrailer{SHA256: sum}, maxTrailerBytes)
	if err != nil {
		return Hash{}, err
	}
	if _, err := w.Write(b); err != nil {
		return Hash{}, fmt.Errorf("protocol: writing tensor trailer: %w", err)
	}
	return sum, nil
}

// writeData writes one tensor's host-order bytes as little-endian chunks,
// hashing them when hash is set.
func (tw *TensorWriter) writeData(w io.Writer, b []byte, hash bool) error {
	cs := tw.lim.ChunkSize
	if !tw.portable {
		for off := 0; off < len(b); off += cs {
			p := b[off:min(off+cs, len(b))]
			if hash {
				tw.h.Write(p)
			}
			if _, err := w.Write(p); err != nil {
				return err
			}
		}
		return nil
	}
	out := chunkFor(&tw.chunk, cs, uint64(len(b)))
	for off := 0; off < len(b); off += cs {
		end := min(off+cs, len(b))
		src := unsafe.Slice((*uint32)(unsafe.Pointer(&b[off])), (end-off)/4)
		p := out[:end-off]
		nativeToLE(p, src)
		if hash {
			tw.h.Write(p)
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// TensorReader reads one tensor stream: the header (read and checked by
// [NewTensorReader]), then each tensor in order with one of the Read or
// Skip methods, then [TensorReader.Finish] to read the trailer and check the
// hash. It never allocates from sizes the peer announces: tensors go
// straight into the caller's slices, or through one chunk buffer of
// Limits.ChunkSize bytes.
//
// Any error other than a misuse (wrong dtype or slice length, which consume
// nothing) leaves the reader unusable; the stream must then be aborted
// (QUIC: CancelRead with CodeOf(err).AppErrorCode()). Data handed out before
// Finish returns nil is not yet verified: an accumulator must be able to
// discard what it received from a stream that fails.
//
// A TensorReader is not safe for concurrent use.
type TensorReader struct {
	r        io.Reader
	lim      Limits
	hdr      TensorHeader
	next     int // index of the next tensor to read
	h        hash.Hash
	chunk    []uint32 // allocated on first use
	sum      Hash
	portable bool
	done     bool
	err      error // sticky
}

// NewTensorReader reads a TensorHeader frame from r and checks it against
// lim (zero fields: defaults). If the frame is an [Error] message instead
// (for example the coordinator's answer to a ModelRequest for an unknown
// version), that *Error is returned. A header that breaks a limit yields an
// *Error with CodeLimitExceeded, one that is inconsistent CodeInvalid, a
// frame that is not a header CodeProtocol.
func NewTensorReader(r io.Reader, lim Limits) (*TensorReader, error) {
	lim = lim.withDefaults()
	var fh [FrameHeaderSize]byte
	t, payload, _, err := readFrame(r, fh[:], nil, lim.MaxHeaderBytes)
	if err != nil {
		if err == io.EOF {
			return nil, wrapError(CodeMalformed, io.ErrUnexpectedEOF, "stream ended before the tensor header")
		}
		return nil, err
	}
	switch t {
	case MsgTensorHeader:
	case MsgError:
		m, err := decodeMessage(t, payload)
		if err != nil {
			return nil, err
		}
		return nil, m.(*Error)
	default:
		return nil, NewError(CodeProtocol, "expected a TensorHeader frame, received %s", t)
	}
	tr := &TensorReader{r: r, lim: lim, portable: !hostLittleEndian}
	if err := wire.dec.Unmarshal(payload, &tr.hdr); err != nil {
		return nil, NewError(CodeMalformed, "decoding TensorHeader (%d bytes): %v", len(payload), err)
	}
	if err := tr.hdr.check(lim); err != nil {
		return nil, err
	}
	if tr.hdr.hashed() {
		tr.h = sha256.New()
	}
	return tr, nil
}

// Digest returns the stream's digest: [DigestSHA256] (a SHA-256 of the data,
// which [TensorReader.Finish] checks) or [DigestNone]. A model download must
// carry a SHA-256.
func (tr *TensorReader) Digest() Digest {
	if tr.h == nil {
		return DigestNone
	}
	return DigestSHA256
}

// Header returns the stream's header. The caller must not modify it.
func (tr *TensorReader) Header() *TensorHeader { return &tr.hdr }

// Next returns the description of the tensor the next Read or Skip call
// consumes, and false when all tensors have been consumed.
func (tr *TensorReader) Next() (TensorInfo, bool) {
	if tr.next >= len(tr.hdr.Tensors) {
		return TensorInfo{}, false
	}
	return tr.hdr.Tensors[tr.next], true
}

// ReadInto reads the next tensor, which must be F32, into dst, which must
// have exactly its number of elements. Bytes go from the stream straight
// into dst's memory, chunk by chunk.
func (tr *TensorReader) ReadInto(dst []float32) error { return readInto(tr, DTypeF32, dst) }

// ReadIntoI32 is [TensorReader.ReadInto] for an I32 tensor.
func (tr *TensorReader) ReadIntoI32(dst []int32) error { return readInto(tr, DTypeI32, dst) }

// ReadIntoU32 is [TensorReader.ReadInto] for a U32 tensor.
func (tr *TensorReader) ReadIntoU32(dst []uint32) error { return readInto(tr, DTypeU32, dst) }

// ReadFunc reads the next tensor, which must be F32, chunk by chunk,
// calling fn with each chunk and the element offset of its first element in
// the tensor. The chunk is only valid during the call (the buffer is
// reused). This is how an accumulator consumes an update without holding
// it. An error from fn stops the read and is returned wrapped.
func (tr *TensorReader) ReadFunc(fn func(chunk []float32, offset int) error) error {
	return readFunc(tr, DTypeF32, fn)
}

// ReadFuncI32 is [TensorReader.ReadFunc] for an I32 tensor.
func (tr *TensorReader) ReadFuncI32(fn func(chunk []int32, offset int) error) error {
	return readFunc(tr, DTypeI32, fn)
}

// ReadFuncU32 is [TensorReader.ReadFunc] for a U32 tensor.
func (tr *TensorReader) ReadFuncU32(fn func(chunk []uint32, offset int) error) error {
	return readFunc(tr, DTypeU32, fn)
}

// Skip reads and discards the next tensor (it still counts in the hash).
func (tr *TensorReader) Skip() error {
	info, err := tr.begin("")
	if err != nil {
		return err
	}
	n := uint64(info.NumElements()) * uint64(info.DType.Size())
	buf := asBytes(tr.chunkBuf())
	for n > 0 {
		k := min(n, uint64(len(buf)))
		if err := tr.fill(buf[:k], info.Name); err != nil {
			return err
		}
		n -= k
	}
	tr.next++
	return nil
}

// Finish reads the trailer and checks the SHA-256 of everything read
// against it ([CodeHashMismatch] if they differ); a stream sent with
// [DigestNone] must end with a trailer without a hash. All tensors must have
// been read or skipped first. After Finish returns nil, [TensorReader.Sum]
// returns the verified hash (zero without a digest).
func (tr *TensorReader) Finish() error {
	if tr.err != nil {
		return tr.err
	}
	if tr.done {
		return nil
	}
	if left := len(tr.hdr.Tensors) - tr.next; left > 0 {
		return NewError(CodeInternal, "Finish called with %d tensors unread (next %q); read or Skip them first",
			left, tr.hdr.Tensors[tr.next].Name)
	}
	var fh [FrameHeaderSize]byte
	var buf [maxTrailerBytes]byte
	t, payload, _, err := readFrame(tr.r, fh[:], buf[:0], maxTrailerBytes)
	if err != nil {
		if err == io.EOF {
			err = wrapError(CodeMalformed, io.ErrUnexpectedEOF, "stream ended before the tensor trailer")
		}
		return tr.fail(err)
	}
	if t != MsgTensorTrailer {
		return tr.fail(NewError(CodeProtocol, "expected a TensorTrailer frame after the tensor data, received %s", t))
	}
	var tt TensorTrailer
	if err := wire.dec.Unmarshal(payload, &tt); err != nil {
		return tr.fail(NewError(CodeMalformed, "decoding TensorTrailer: %v", err))
	}
	if tr.h == nil {
		if !tt.SHA256.IsZero() {
			return tr.fail(NewError(CodeMalformed, "the tensor trailer carries a hash but the header declared digest %q", DigestNone))
		}
		tr.done = true
		return nil
	}
	var sum Hash
	tr.h.Sum(sum[:0])
	if sum != tt.SHA256 {
		return tr.fail(NewError(CodeHashMismatch,
			"tensor data hashes to %s but the trailer says %s; the data was corrupted in transit or by the sender, discard it and retry",
			sum, tt.SHA256))
	}
	tr.sum = sum
	tr.done = true
	return nil
}

// Sum returns the verified SHA-256 of the raw tensor bytes, or the zero Hash
// before [TensorReader.Finish] has succeeded and for a stream without a digest.
func (tr *TensorReader) Sum() Hash { return tr.sum }

// fail records a sticky error and returns it.
func (tr *TensorReader) fail(err error) error {
	tr.err = err
	return err
}

// begin checks that a tensor can be read next and, unless want is empty,
// that it has dtype want.
func (tr *TensorReader) begin(want DType) (TensorInfo, error) {
	if tr.err != nil {
		return TensorInfo{}, tr.err
	}
	info, ok := tr.Next()
	if !ok {
		return TensorInfo{}, NewError(CodeInternal, "all %d tensors of the stream have been read; call Finish", len(tr.hdr.Tensors))
	}
	if want != "" && info.DType != want {
		return TensorInfo{}, NewError(CodeInternal, "tensor %q is %s, not %s; use the matching Read method", info.Name, info.DType, want)
	}
	return info, nil
}

// chunkBuf returns the reusable chunk buffer.
func (tr *TensorReader) chunkBuf() []uint32 {
	chunkFor(&tr.chunk, tr.lim.ChunkSize, tr.hdr.TotalBytes)
	return tr.chunk
}

// chunkFor returns *chunk as bytes, allocating it first if it holds less than a chunk
// of size bytes or the n bytes a stream carries, whichever is smaller: a stream of a
// small model (a few kilobytes, the common case of a round's offers and downloads)
// does not pay for a whole chunk of zeroed memory.
func chunkFor(chunk *[]uint32, size int, n uint64) []byte {
	want := (int(min(uint64(size), n)) + 3) / 4 // size is a multiple of 4
	if len(*chunk) < want {
		*chunk = make([]uint32, want)
	}
	return asBytes(*chunk)
}

// fill reads exactly len(p) tensor bytes into p and hashes them.
func (tr *TensorReader) fill(p []byte, name string) error {
	n, err := io.ReadFull(tr.r, p)
	if tr.h != nil {
		tr.h.Write(p[:n])
	}
	if err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return tr.fail(wrapError(CodeMalformed, io.ErrUnexpectedEOF,
				"stream ended inside tensor %q; the sender aborted or the connection broke, discard the partial data", name))
		}
		return tr.fail(fmt.Errorf("protocol: reading tensor %q: %w", name, err))
	}
	return nil
}

// readInto implements the ReadInto methods.
func readInto[E element](tr *TensorReader, want DType, dst []E) error {
	info, err := tr.begin(want)
	if err != nil {
		return err
	}
	if n := info.NumElements(); len(dst) != n {
		return NewError(CodeInternal, "tensor %q of shape %v has %d elements, dst has %d; size dst from Next()",
			info.Name, info.Shape, n, len(dst))
	}
	b := asBytes(dst)
	cs := tr.lim.ChunkSize
	for off := 0; off < len(b); off += cs {
		p := b[off:min(off+cs, len(b))]
		if err := tr.fill(p, info.Name); err != nil {
			return err
		}
		if tr.portable {
			leToNative(p)
		}
	}
	tr.next++
	return nil
}

// readFunc implements the ReadFunc methods.
func readFunc[E element](tr *TensorReader, want DType, fn func([]E, int) error) error {
	info, err := tr.begin(want)
	if err != nil {
		return err
	}
	n := info.NumElements()
	chunk := asElems[E](tr.chunkBuf())
	buf := asBytes(chunk)
	for off := 0; off < n; off += len(chunk) {
		k := min(len(chunk), n-off)
		p := buf[:4*k]
		if err := tr.fill(p, info.Name); err != nil {
			return err
		}
		if tr.portable {
			leToNative(p)
		}
		if err := fn(chunk[:k], off); err != nil {
			return tr.fail(fmt.Errorf("protocol: consumer of tensor %q failed at element %d: %w", info.Name, off, err))
		}
	}
	tr.next++
	return nil
}
