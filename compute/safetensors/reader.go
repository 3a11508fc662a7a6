package safetensors

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
)

// readChunkSize is the size of the scratch buffer used to stream tensor
// bytes from the underlying io.ReaderAt while converting them.
const readChunkSize = 64 << 10

// File is an opened safetensors file: a validated header plus random access
// to the data. Its read methods may be called concurrently from multiple
// goroutines as long as the underlying io.ReaderAt allows it (an *os.File
// does); Close must not run concurrently with them.
type File struct {
	hdr    *Header
	index  map[string]int
	ra     io.ReaderAt
	closer io.Closer
	path   string
}

// Open opens the safetensors file at path and validates its header with
// default ReadOptions. Errors name the path. Call Close when done.
func Open(path string) (*File, error) {
	return OpenWithOptions(path, nil)
}

// OpenWithOptions is like Open but with explicit ReadOptions; opt may be
// nil.
func OpenWithOptions(path string, opt *ReadOptions) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err) // the *PathError names the path
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !st.Mode().IsRegular() {
		fd.Close()
		return nil, fmt.Errorf("safetensors: open %s: not a regular file (mode %v)", path, st.Mode())
	}
	f, err := newReader(fd, st.Size(), opt)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("safetensors: open %s: %w", path, err)
	}
	f.closer = fd
	f.path = path
	return f, nil
}

// NewReader parses and validates the safetensors data in ra, which holds
// size bytes, with default ReadOptions. The returned File reads tensor data
// from ra on demand; its Close does not close ra.
func NewReader(ra io.ReaderAt, size int64) (*File, error) {
	return NewReaderWithOptions(ra, size, nil)
}

// NewReaderWithOptions is like NewReader but with explicit ReadOptions; opt
// may be nil.
func NewReaderWithOptions(ra io.ReaderAt, size int64, opt *ReadOptions) (*File, error) {
	if ra == nil {
		return nil, errors.New("safetensors: NewReader called with a nil io.ReaderAt; pass an open file or bytes.Reader")
	}
	if size < 0 {
		return nil, fmt.Errorf("safetensors: NewReader called with negative size %d; pass the size of the data in bytes", size)
	}
	f, err := newReader(ra, size, opt)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return f, nil
}

// newReader implements NewReaderWithOptions, returning errors without the
// package prefix.
func newReader(ra io.ReaderAt, size int64, opt *ReadOptions) (*File, error) {
	h, err := parseHeader(io.NewSectionReader(ra, 0, size), size, opt)
	if err != nil {
		return nil, err
	}
	index := make(map[string]int, len(h.Tensors))
	for i, t := range h.Tensors {
		index[t.Name] = i
	}
	return &File{hdr: h, index: index, ra: ra}, nil
}

// Header returns a copy of the file's validated header; modifying it does
// not affect f.
func (f *File) Header() *Header { return f.hdr.clone() }

// Metadata returns a copy of the file's "__metadata__" map; it is empty,
// never nil, when the file has none.
func (f *File) Metadata() map[string]string { return maps.Clone(f.hdr.Metadata) }

// Names returns the tensor names in data-offset order.
func (f *File) Names() []string {
	names := make([]string, len(f.hdr.Tensors))
	for i, t := range f.hdr.Tensors {
		names[i] = t.Name
	}
	return names
}

// Info returns a copy of the description of tensor name, and whether it
// exists.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.hdr.Tensors[i].clone(), true
}

// lookup returns the tensor name or an ErrTensorNotFound error.
func (f *File) lookup(name string) (*TensorInfo, error) {
	i, ok := f.index[name]
	if !ok {
		return nil, fmt.Errorf("%w: no tensor %q%s; File.Names lists the available ones", ErrTensorNotFound, name, f.where())
	}
	return &f.hdr.Tensors[i], nil
}

// where returns " in PATH" when f was opened from a path, for messages.
func (f *File) where() string {
	if f.path == "" {
		return ""
	}
	return " in " + f.path
}

// Section returns a reader over the raw little-endian bytes of tensor name.
func (f *File) Section(name string) (*io.SectionReader, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(f.ra, f.hdr.DataOffset+t.Begin, t.ByteSize()), nil
}

// ReadRaw copies the raw little-endian bytes of tensor name into dst, which
// must be exactly TensorInfo.ByteSize() long.
func (f *File) ReadRaw(name string, dst []byte) error {
	t, err := f.lookup(name)
	if err != nil {
		return err
	}
	if int64(len(dst)) != t.ByteSize() {
		return fmt.Errorf("%w: tensor %q%s has %d bytes (%s, shape %v) but dst has length %d", ErrSizeMismatch, name, f.where(), t.ByteSize(), t.DType, t.Shape, len(dst))
	}
	return f.readAt(t, dst, 0)
}

// readAt fills p with the tensor's bytes starting off bytes into it.
func (f *File) readAt(t *TensorInfo, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	n, err := f.ra.ReadAt(p, f.hdr.DataOffset+t.Begin+off)
	if n == len(p) {
		return nil // io.ReaderAt may report io.EOF along with a full read.
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("safetensors: reading tensor %q%s: %w; the file is shorter than its header says or was modified while open", t.Name, f.where(), err)
}

// ReadFloat32 reads tensor name into dst, which must have exactly the
// tensor's element count. F32 data is copied bit-for-bit (NaN payloads
// included). F16 and BF16 are widened exactly. F64 is rounded to the
// nearest float32 (values beyond float32 range become ±Inf). Other dtypes
// yield an error wrapping ErrDTypeMismatch; a wrong dst length yields one
// wrapping ErrSizeMismatch.
func (f *File) ReadFloat32(name string, dst []float32) error {
	t, err := f.lookup(name)
	if err != nil {
		return err
	}
	var decode func(dst []float32, src []byte) int
	switch t.DType {
	case F32:
		decode = DecodeFloat32LE
	case F16:
		decode = decodeFloat16LE
	case BF16:
		decode = decodeBFloat16LE
	case F64:
		decode = decodeFloat64LE
	default:
		return fmt.Errorf("%w: tensor %q%s has dtype %s, which cannot be read as float32 (F32, F16, BF16 and F64 can); use ReadRaw for other dtypes", ErrDTypeMismatch, name, f.where(), t.DType)
	}
	if n := t.NumElements(); int64(len(dst)) != n {
		return fmt.Errorf("%w: tensor %q%s has %d elements (shape %v) but dst has length %d", ErrSizeMismatch, name, f.where(), n, t.Shape, len(dst))
	}
	total := t.ByteSize()
	if total == 0 {
		return nil
	}
	elem := int64(t.DType.Size())
	chunk := min(total, readChunkSize/elem*elem)
	buf := make([]byte, chunk)
	for off := int64(0); off < total; {
		p := buf[:min(chunk, total-off)]
		if err := f.readAt(t, p, off); err != nil {
			return err
		}
		decode(dst[off/elem:], p)
		off += int64(len(p))
	}
	return nil
}

// Float32s allocates a slice of the tensor's element count and reads tensor
// name into it with ReadFloat32 semantics.
func (f *File) Float32s(name string) ([]float32, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	switch t.DType {
	case F32, F16, BF16, F64:
	default:
		return nil, f.ReadFloat32(name, nil) // reports the dtype mismatch
	}
	dst := make([]float32, t.NumElements())
	if err := f.ReadFloat32(name, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// Close releases the file opened by Open. For a File made by NewReader it
// does nothing, leaving the io.ReaderAt to its owner. Calling Close more than
// once is harmless.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	if err != nil {
		return fmt.Errorf("safetensors: close %s: %w", f.path, err)
	}
	return nil
}
