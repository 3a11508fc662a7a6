package safetensors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"
)

// writeChunkSize is the capacity of the reusable buffer Write encodes into
// before handing bytes to the destination writer.
const writeChunkSize = 64 << 10

// WriteTensor is one tensor to be written by Write.
//
// A tensor is either float32 data or raw bytes:
//   - If Raw is nil and DType is "" or F32, the tensor is F32 and its values
//     come from F32.
//   - Otherwise the tensor's bytes are Raw, already little-endian, and DType
//     must name their type; F32 must then be nil.
//
// The data length must match Shape exactly: len(F32) == product(Shape), or
// len(Raw) == product(Shape) * DType.Size(). An empty Shape is a scalar
// holding one element; a zero dimension makes a tensor with no data.
type WriteTensor struct {
	// Name is the tensor's key; it must be non-empty, valid UTF-8, unique
	// within the file and not "__metadata__".
	Name string
	// Shape holds the dimensions, each >= 0.
	Shape []int
	// F32 holds the values of an F32 tensor, in row-major order.
	F32 []float32
	// DType is the element type of Raw; "" means F32.
	DType DType
	// Raw holds the little-endian bytes of a tensor of type DType.
	Raw []byte
}

// plannedTensor is a validated WriteTensor with its resolved dtype and
// size.
type plannedTensor struct {
	src   *WriteTensor
	dtype DType
	raw   bool
	size  int64
}

// plan validates tensors and metadata and returns the tensors' layout and
// the padded JSON header.
func plan(tensors []WriteTensor, metadata map[string]string) ([]plannedTensor, []byte, error) {
	planned := make([]plannedTensor, len(tensors))
	seen := make(map[string]int, len(tensors))
	for i := range tensors {
		t := &tensors[i]
		p := plannedTensor{src: t, dtype: t.DType}
		switch {
		case t.Name == "":
			return nil, nil, fmt.Errorf("%w: tensor %d has an empty name; every tensor needs a unique non-empty name", ErrInvalidTensor, i)
		case t.Name == metadataKey:
			return nil, nil, fmt.Errorf("%w: tensor %d is named %q, which is reserved for metadata; rename it", ErrInvalidTensor, i, metadataKey)
		case !utf8.ValidString(t.Name):
			return nil, nil, fmt.Errorf("%w: tensor %d name %q is not valid UTF-8", ErrInvalidTensor, i, t.Name)
		}
		if j, dup := seen[t.Name]; dup {
			return nil, nil, fmt.Errorf("%w: tensors %d and %d are both named %q; names must be unique", ErrInvalidTensor, j, i, t.Name)
		}
		seen[t.Name] = i
		if t.Raw == nil && (t.DType == "" || t.DType == F32) {
			p.dtype = F32
		} else {
			p.raw = true
			if t.F32 != nil {
				return nil, nil, fmt.Errorf("%w: tensor %q sets both F32 and Raw (or a non-F32 DType with F32 data); set only one", ErrInvalidTensor, t.Name)
			}
			if !p.dtype.Valid() {
				return nil, nil, fmt.Errorf("%w: tensor %q has Raw data but unknown DType %q; set DType to a supported dtype such as F32 or I64", ErrInvalidTensor, t.Name, p.dtype)
			}
		}
		for d, v := range t.Shape {
			if v < 0 {
				return nil, nil, fmt.Errorf("%w: tensor %q shape %v has negative dimension %d", ErrInvalidTensor, t.Name, t.Shape, d)
			}
		}
		size, ok := byteSize(t.Shape, p.dtype)
		if !ok {
			return nil, nil, fmt.Errorf("%w: tensor %q shape %v of %s overflows the byte count", ErrInvalidTensor, t.Name, t.Shape, p.dtype)
		}
		p.size = size
		if p.raw {
			if int64(len(t.Raw)) != size {
				return nil, nil, fmt.Errorf("%w: tensor %q has %d bytes of Raw data but shape %v of %s needs %d", ErrInvalidTensor, t.Name, len(t.Raw), t.Shape, p.dtype, size)
			}
		} else if int64(len(t.F32))*4 != size {
			return nil, nil, fmt.Errorf("%w: tensor %q has %d float32 values but shape %v needs %d", ErrInvalidTensor, t.Name, len(t.F32), t.Shape, size/4)
		}
		planned[i] = p
	}

	keys := make([]string, 0, len(metadata))
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, nil, fmt.Errorf("%w: metadata entry %q is not valid UTF-8; metadata keys and values must be UTF-8 text", ErrInvalidTensor, k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)

	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if len(keys) > 0 {
		hdr.WriteString(`"` + metadataKey + `":{`)
		for i, k := range keys {
			if i > 0 {
				hdr.WriteByte(',')
			}
			writeJSONString(&hdr, k)
			hdr.WriteByte(':')
			writeJSONString(&hdr, metadata[k])
		}
		hdr.WriteByte('}')
	}
	var offset int64
	for i, p := range planned {
		if i > 0 || len(keys) > 0 {
			hdr.WriteByte(',')
		}
		writeJSONString(&hdr, p.src.Name)
		hdr.WriteString(`:{"dtype":`)
		writeJSONString(&hdr, string(p.dtype))
		hdr.WriteString(`,"shape":[`)
		for d, v := range p.src.Shape {
			if d > 0 {
				hdr.WriteByte(',')
			}
			hdr.WriteString(strconv.Itoa(v))
		}
		if offset > maxInt64-p.size {
			return nil, nil, fmt.Errorf("%w: total data size overflows at tensor %q; split the tensors over several files", ErrInvalidTensor, p.src.Name)
		}
		hdr.WriteString(`],"data_offsets":[`)
		hdr.WriteString(strconv.FormatInt(offset, 10))
		hdr.WriteByte(',')
		offset += p.size
		hdr.WriteString(strconv.FormatInt(offset, 10))
		hdr.WriteString("]}")
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	if hdr.Len() > DefaultMaxHeaderSize {
		return nil, nil, fmt.Errorf("%w: JSON header would be %d bytes, over the %d-byte limit readers enforce; use fewer tensors or less metadata per file", ErrInvalidTensor, hdr.Len(), DefaultMaxHeaderSize)
	}
	return planned, hdr.Bytes(), nil
}

// maxInt64 is the largest int64.
const maxInt64 = 1<<63 - 1

// writeJSONString writes s, which must be valid UTF-8, as a JSON string
// literal. Unlike encoding/json it does not escape <, > and &, so the output
// is the minimal standard form.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// chunkWriter batches output through one fixed, reusable buffer so that
// many small tensors cost few writes and large ones are encoded a chunk at
// a time.
type chunkWriter struct {
	w   io.Writer
	buf []byte
}

// flush writes out the buffered bytes.
func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.w.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// writeBytes appends p, writing it straight through when it is larger than
// the buffer.
func (c *chunkWriter) writeBytes(p []byte) error {
	if len(p) <= cap(c.buf)-len(c.buf) {
		c.buf = append(c.buf, p...)
		return nil
	}
	if err := c.flush(); err != nil {
		return err
	}
	if len(p) >= cap(c.buf) {
		_, err := c.w.Write(p)
		return err
	}
	c.buf = append(c.buf, p...)
	return nil
}

// writeFloat32 encodes v little-endian into the buffer, flushing as it
// fills.
func (c *chunkWriter) writeFloat32(v []float32) error {
	for len(v) > 0 {
		if cap(c.buf)-len(c.buf) < 4 {
			if err := c.flush(); err != nil {
				return err
			}
		}
		start := len(c.buf)
		k := min(len(v), (cap(c.buf)-start)/4)
		c.buf = c.buf[:start+4*k]
		EncodeFloat32LE(c.buf[start:], v[:k])
		v = v[k:]
	}
	return nil
}

// Write encodes tensors and metadata as a safetensors file to w.
//
// The output is deterministic: tensors are laid out in the given order (not
// re-sorted), "__metadata__" comes first in the header with its keys sorted
// and is omitted when metadata is empty, and the header is padded with
// spaces to a multiple of 8 bytes. Float32 values are encoded bit-for-bit.
// For the data of every tensor to be aligned to its element size (which
// memory-mapping readers like), order tensors by decreasing DType.Size();
// all-F32 files are always aligned.
//
// Everything is validated before the first byte is written, so an invalid
// tensor (wrapping ErrInvalidTensor) never leaves partial output. Data is
// streamed through a small reusable buffer; nothing is copied whole.
func Write(w io.Writer, tensors []WriteTensor, metadata map[string]string) error {
	if err := write(w, tensors, metadata); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// write implements Write, returning errors without the package prefix.
func write(w io.Writer, tensors []WriteTensor, metadata map[string]string) error {
	planned, hdr, err := plan(tensors, metadata)
	if err != nil {
		return err
	}
	total := int64(prefixSize + len(hdr))
	for _, p := range planned {
		total += p.size
	}
	c := &chunkWriter{w: w, buf: make([]byte, 0, min(total, writeChunkSize))}
	var prefix [prefixSize]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(len(hdr)))
	if err := c.writeBytes(prefix[:]); err != nil {
		return fmt.Errorf("writing header: %w", err)
	}
	if err := c.writeBytes(hdr); err != nil {
		return fmt.Errorf("writing header: %w", err)
	}
	for _, p := range planned {
		if p.raw {
			err = c.writeBytes(p.src.Raw)
		} else {
			err = c.writeFloat32(p.src.F32)
		}
		if err != nil {
			return fmt.Errorf("writing tensor %q: %w", p.src.Name, err)
		}
	}
	if err := c.flush(); err != nil {
		return fmt.Errorf("writing tensor data: %w", err)
	}
	return nil
}

// WriteFile writes tensors and metadata to path as Write does, atomically:
// the data goes to a temporary file in the same directory, which is synced
// to disk and then renamed over path, so readers see either the old file or
// the complete new one. The file gets mode 0644. Errors name the path; on
// error no temporary file is left behind.
func WriteFile(path string, tensors []WriteTensor, metadata map[string]string) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("safetensors: write %s: creating temporary file (is the directory writable?): %w", path, err)
	}
	tmpName := tmp.Name()
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				tmp.Close()
			}
			os.Remove(tmpName)
		}
	}()
	if err := write(tmp, tensors, metadata); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("safetensors: write %s: setting permissions: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: write %s: syncing to disk: %w", path, err)
	}
	closed = true
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: write %s: closing temporary file: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("safetensors: write %s: renaming temporary file into place: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable where the platform supports
// syncing directories. It is best effort: some platforms cannot open or
// sync a directory, and the file itself is already synced.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
