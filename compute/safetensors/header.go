package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// DefaultMaxHeaderSize is the largest JSON header, in bytes, accepted when
// ReadOptions does not say otherwise. It matches the reference
// implementation's limit of 100 MB.
const DefaultMaxHeaderSize = 100_000_000

// metadataKey is the reserved header key holding the free-form metadata map.
const metadataKey = "__metadata__"

// prefixSize is the size of the little-endian uint64 header-length prefix.
const prefixSize = 8

// Sentinel errors, for use with errors.Is. Every error returned by this
// package carries a message with the specifics; these only classify it.
var (
	// ErrInvalidFormat classifies errors caused by a malformed or
	// inconsistent safetensors file (bad header, bad offsets, ...).
	ErrInvalidFormat = errors.New("invalid file")
	// ErrTensorNotFound classifies lookups of a tensor name that is not in
	// the file.
	ErrTensorNotFound = errors.New("safetensors: tensor not found")
	// ErrDTypeMismatch classifies reads of a tensor into a Go type its
	// dtype cannot be converted to.
	ErrDTypeMismatch = errors.New("safetensors: dtype mismatch")
	// ErrSizeMismatch classifies reads into a destination whose length
	// differs from the tensor's element or byte count.
	ErrSizeMismatch = errors.New("safetensors: size mismatch")
	// ErrInvalidTensor classifies tensors passed to Write that cannot be
	// encoded (bad name, shape, dtype or data length).
	ErrInvalidTensor = errors.New("invalid tensor")
)

// invalidf returns an error wrapping ErrInvalidFormat with a formatted
// explanation.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidFormat}, args...)...)
}

// ReadOptions tunes header parsing. A nil *ReadOptions means all defaults.
type ReadOptions struct {
	// MaxHeaderSize is the largest JSON header, in bytes, that will be
	// accepted. Zero or negative means DefaultMaxHeaderSize.
	MaxHeaderSize int64
}

// maxHeaderSize returns the effective header size limit of opt.
func (opt *ReadOptions) maxHeaderSize() int64 {
	if opt == nil || opt.MaxHeaderSize <= 0 {
		return DefaultMaxHeaderSize
	}
	return opt.MaxHeaderSize
}

// TensorInfo describes one tensor of a safetensors file.
type TensorInfo struct {
	// Name is the tensor's key in the header; never empty.
	Name string
	// DType is the element type; always one for which DType.Size() > 0.
	DType DType
	// Shape holds the dimensions; empty for a scalar. All are >= 0.
	Shape []int
	// Begin and End are the byte range [Begin, End) of the tensor's data,
	// relative to the start of the data buffer (Header.DataOffset).
	Begin, End int64
}

// NumElements returns the number of elements, the product of Shape (1 for a
// scalar). For a TensorInfo obtained from a parsed header it never
// overflows; for a hand-built one it returns -1 on overflow or a negative
// dimension.
func (t TensorInfo) NumElements() int64 {
	n, ok := numElements(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// ByteSize returns the number of bytes of the tensor's data, End - Begin.
func (t TensorInfo) ByteSize() int64 { return t.End - t.Begin }

// clone returns a copy of t that shares no memory with it.
func (t TensorInfo) clone() TensorInfo {
	t.Shape = slices.Clone(t.Shape)
	if t.Shape == nil {
		t.Shape = []int{}
	}
	return t
}

// Header is the parsed and validated header of a safetensors file.
type Header struct {
	// Tensors lists every tensor, sorted by data offsets (Begin, then End,
	// then Name), which is the order their bytes appear in the file.
	Tensors []TensorInfo
	// Metadata is the "__metadata__" map; empty (never nil) when the file
	// has none.
	Metadata map[string]string
	// DataOffset is the absolute file offset of the data buffer: 8 plus the
	// JSON header size.
	DataOffset int64
	// DataSize is the size in bytes of the data buffer, which the tensors
	// cover exactly.
	DataSize int64
}

// clone returns a deep copy of h.
func (h *Header) clone() *Header {
	c := &Header{
		Tensors:    make([]TensorInfo, len(h.Tensors)),
		Metadata:   make(map[string]string, len(h.Metadata)),
		DataOffset: h.DataOffset,
		DataSize:   h.DataSize,
	}
	for i, t := range h.Tensors {
		c.Tensors[i] = t.clone()
	}
	for k, v := range h.Metadata {
		c.Metadata[k] = v
	}
	return c
}

// numElements returns the product of shape, or ok == false if a dimension
// is negative or the product overflows int64. Like the reference
// implementation it multiplies left to right and fails on the first
// overflow, even if a later dimension is zero.
func numElements(shape []int) (n int64, ok bool) {
	n = 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > math.MaxInt64/int64(d) {
			return 0, false
		}
		n *= int64(d)
	}
	return n, true
}

// byteSize returns numElements(shape) * dt.Size(), or ok == false on a
// negative dimension, an unknown dtype or overflow.
func byteSize(shape []int, dt DType) (int64, bool) {
	n, ok := numElements(shape)
	size := int64(dt.Size())
	if !ok || size == 0 || n > math.MaxInt64/size {
		return 0, false
	}
	return n * size, true
}

// ParseHeader reads the 8-byte length prefix and the JSON header from r
// (exactly 8 + N bytes, nothing more) and validates it against fileSize, the
// total size of the file r is positioned at the start of. Validation follows
// the reference implementation: the header must not exceed the configured
// limit or the file, must be a UTF-8 JSON object without duplicate keys,
// every tensor must have a non-empty unique name, a known dtype,
// non-negative dimensions and data_offsets whose length equals the shape's
// byte size, and the tensors must cover the data buffer exactly, without
// overlaps or holes. "__metadata__", if present, must map strings to
// strings.
//
// The header buffer is never allocated before its claimed size has been
// checked against both the limit and fileSize, and large headers are read
// incrementally, so if r holds fewer bytes than fileSize claims, reading
// stops at r's end with an error wrapping io.ErrUnexpectedEOF.
func ParseHeader(r io.Reader, fileSize int64, opt *ReadOptions) (*Header, error) {
	h, err := parseHeader(r, fileSize, opt)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return h, nil
}

// parseHeader implements ParseHeader, returning errors without the package
// prefix.
func parseHeader(r io.Reader, fileSize int64, opt *ReadOptions) (*Header, error) {
	if fileSize < prefixSize {
		return nil, invalidf("file is %d bytes, too short for the 8-byte header length prefix; it is truncated or not a safetensors file", fileSize)
	}
	var prefix [prefixSize]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading the 8-byte header length prefix: %w; the file is shorter than its stated size", err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	limit := opt.maxHeaderSize()
	if n > uint64(limit) {
		return nil, invalidf("header size %d exceeds the limit of %d bytes; the file is corrupt, or raise ReadOptions.MaxHeaderSize if it is trusted", n, limit)
	}
	if n > uint64(fileSize-prefixSize) {
		return nil, invalidf("header size %d exceeds the %d bytes that follow the length prefix; the file is truncated or not a safetensors file", n, fileSize-prefixSize)
	}
	buf, err := readExactly(r, int64(n))
	if err != nil {
		return nil, fmt.Errorf("reading the %d-byte JSON header: %w; the file is shorter than its stated size", n, err)
	}
	h, err := parseHeaderJSON(buf, fileSize-prefixSize-int64(n))
	if err != nil {
		return nil, err
	}
	h.DataOffset = prefixSize + int64(n)
	return h, nil
}

// readExactly reads exactly n bytes from r. Small reads allocate n bytes up
// front; larger ones grow the buffer as data actually arrives, so a reader
// that is shorter than claimed cannot force a large allocation.
func readExactly(r io.Reader, n int64) ([]byte, error) {
	const eager = 1 << 16
	if n <= eager {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r, n))
	if err != nil {
		return nil, err
	}
	if int64(len(buf)) != n {
		return nil, io.ErrUnexpectedEOF
	}
	return buf, nil
}

// parseHeaderJSON parses and validates the JSON header text given the size
// of the data buffer that follows it. DataOffset is left for the caller.
func parseHeaderJSON(buf []byte, dataSize int64) (*Header, error) {
	if !utf8.Valid(buf) {
		return nil, invalidf("header is not valid UTF-8")
	}
	h := &Header{Metadata: map[string]string{}, DataSize: dataSize}
	err := walkObject(buf, "header", func(key string, raw json.RawMessage) error {
		if key == metadataKey {
			return parseMetadata(raw, h.Metadata)
		}
		t, err := parseTensorEntry(key, raw, dataSize)
		if err != nil {
			return err
		}
		h.Tensors = append(h.Tensors, t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if h.Tensors == nil {
		h.Tensors = []TensorInfo{}
	}
	slices.SortFunc(h.Tensors, func(a, b TensorInfo) int {
		if a.Begin != b.Begin {
			return cmp.Compare(a.Begin, b.Begin)
		}
		if a.End != b.End {
			return cmp.Compare(a.End, b.End)
		}
		return strings.Compare(a.Name, b.Name)
	})
	var next int64
	for i, t := range h.Tensors {
		switch {
		case t.Begin < next:
			prev := h.Tensors[i-1]
			return nil, invalidf("tensor %q data_offsets [%d, %d] overlap tensor %q [%d, %d]", t.Name, t.Begin, t.End, prev.Name, prev.Begin, prev.End)
		case t.Begin > next:
			return nil, invalidf("data buffer has a hole at bytes [%d, %d) before tensor %q; every byte must belong to exactly one tensor", next, t.Begin, t.Name)
		}
		next = t.End
	}
	if next != dataSize {
		return nil, invalidf("tensors cover %d bytes but the data buffer holds %d; the file has trailing or missing data", next, dataSize)
	}
	return h, nil
}

// walkObject decodes data, which must hold exactly one JSON object, and
// calls fn for each member in order. Unlike encoding/json it rejects
// duplicate keys instead of keeping the last one. what names the object in
// error messages.
func walkObject(data []byte, what string, fn func(key string, raw json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return invalidf("%s is not valid JSON: %v", what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return invalidf("%s must be a JSON object, found %s", what, describeToken(tok))
	}
	seen := make(map[string]struct{})
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalidf("%s is not valid JSON: %v", what, err)
		}
		key, ok := tok.(string)
		if !ok {
			return invalidf("%s has a non-string key %s", what, describeToken(tok))
		}
		if _, dup := seen[key]; dup {
			return invalidf("%s has duplicate key %q; each key must appear once", what, key)
		}
		seen[key] = struct{}{}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return invalidf("%s is not valid JSON at key %q: %v", what, key, err)
		}
		if err := fn(key, raw); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return invalidf("%s is not valid JSON: %v", what, err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return invalidf("%s has invalid trailing data: %v", what, err)
		}
		return invalidf("%s has trailing data %s after the closing brace", what, describeToken(tok))
	}
	return nil
}

// describeToken renders a JSON token for an error message.
func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", string(v))
	case string:
		return fmt.Sprintf("string %q", truncate(v, 40))
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%v", v)
	}
}

// truncate shortens s to at most n bytes for error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// jsonKind returns the first non-space byte of a raw JSON value, which
// identifies its kind ('{', '[', '"', 'n', 't', 'f', or a number's start).
func jsonKind(raw json.RawMessage) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// kindName names the JSON kind of a raw value for error messages.
func kindName(raw json.RawMessage) string {
	switch jsonKind(raw) {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// parseMetadata parses the "__metadata__" value into dst. null is accepted
// as "no metadata", like the reference implementation.
func parseMetadata(raw json.RawMessage, dst map[string]string) error {
	switch jsonKind(raw) {
	case 'n':
		return nil
	case '{':
	default:
		return invalidf("%q must be an object of strings, found %s", metadataKey, kindName(raw))
	}
	return walkObject(raw, metadataKey, func(key string, v json.RawMessage) error {
		if jsonKind(v) != '"' {
			return invalidf("%q value for key %q must be a string, found %s", metadataKey, key, kindName(v))
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return invalidf("%q value for key %q: %v", metadataKey, key, err)
		}
		dst[key] = s
		return nil
	})
}

// parseTensorEntry parses and validates one tensor's header entry, given
// the size of the data buffer.
func parseTensorEntry(name string, raw json.RawMessage, dataSize int64) (TensorInfo, error) {
	t := TensorInfo{Name: name}
	if name == "" {
		return t, invalidf("header has a tensor with an empty name")
	}
	if jsonKind(raw) != '{' {
		return t, invalidf("tensor %q: entry must be an object with dtype, shape and data_offsets, found %s", name, kindName(raw))
	}
	var dtype, shape, offsets json.RawMessage
	err := walkObject(raw, fmt.Sprintf("tensor %q entry", name), func(key string, v json.RawMessage) error {
		switch key {
		case "dtype":
			dtype = v
		case "shape":
			shape = v
		case "data_offsets":
			offsets = v
		}
		// Unknown fields are ignored, as the reference implementation does.
		return nil
	})
	if err != nil {
		return t, err
	}
	for _, f := range []struct {
		key  string
		raw  json.RawMessage
		kind byte
	}{{"dtype", dtype, '"'}, {"shape", shape, '['}, {"data_offsets", offsets, '['}} {
		if f.raw == nil {
			return t, invalidf("tensor %q: missing %q", name, f.key)
		}
		if jsonKind(f.raw) != f.kind {
			return t, invalidf("tensor %q: %q has the wrong type (%s)", name, f.key, kindName(f.raw))
		}
	}

	var ds string
	if err := json.Unmarshal(dtype, &ds); err != nil {
		return t, invalidf("tensor %q: dtype: %v", name, err)
	}
	t.DType = DType(ds)
	if !t.DType.Valid() {
		return t, invalidf("tensor %q: unknown dtype %q; supported dtypes are BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64", name, truncate(ds, 40))
	}

	var dims []int64
	if err := json.Unmarshal(shape, &dims); err != nil {
		return t, invalidf("tensor %q: shape must be an array of non-negative integers: %v", name, err)
	}
	t.Shape = make([]int, len(dims))
	for i, d := range dims {
		if d < 0 {
			return t, invalidf("tensor %q: shape dimension %d is negative (%d)", name, i, d)
		}
		if int64(int(d)) != d {
			return t, invalidf("tensor %q: shape dimension %d (%d) does not fit in an int on this platform", name, i, d)
		}
		t.Shape[i] = int(d)
	}

	var offs []int64
	if err := json.Unmarshal(offsets, &offs); err != nil {
		return t, invalidf("tensor %q: data_offsets must be two non-negative integers: %v", name, err)
	}
	if len(offs) != 2 {
		return t, invalidf("tensor %q: data_offsets must have exactly 2 elements [begin, end], found %d", name, len(offs))
	}
	t.Begin, t.End = offs[0], offs[1]
	if t.Begin < 0 || t.End < 0 {
		return t, invalidf("tensor %q: data_offsets [%d, %d] must not be negative", name, t.Begin, t.End)
	}
	if t.End < t.Begin {
		return t, invalidf("tensor %q: data_offsets end %d is before begin %d", name, t.End, t.Begin)
	}
	if t.End > dataSize {
		return t, invalidf("tensor %q: data_offsets [%d, %d] extend beyond the %d-byte data buffer; the file is truncated or corrupt", name, t.Begin, t.End, dataSize)
	}
	want, ok := byteSize(t.Shape, t.DType)
	if !ok {
		return t, invalidf("tensor %q: shape %v with dtype %s overflows the byte count", name, t.Shape, t.DType)
	}
	if got := t.End - t.Begin; got != want {
		return t, invalidf("tensor %q: data_offsets [%d, %d] span %d bytes but shape %v of %s needs %d", name, t.Begin, t.End, got, t.Shape, t.DType, want)
	}
	return t, nil
}
