package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// encodeIDX builds a plain IDX file. Dims are written as given, so tests can
// declare dims that disagree with data.
func encodeIDX(typ DType, dims []uint32, data []byte) []byte {
	b := []byte{0, 0, byte(typ), byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, data...)
}

// gz compresses b.
func gz(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// flipCRC corrupts the CRC-32 in a gzip member's trailer.
func flipCRC(b []byte) []byte {
	b = slices.Clone(b)
	b[len(b)-8] ^= 0xff
	return b
}

// seq returns n bytes 0, 1, 2, ... (mod 256).
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestReadIDXValid(t *testing.T) {
	tests := []struct {
		name string
		typ  DType
		dims []uint32
	}{
		{"ubyte vector", IDXUByte, []uint32{5}},
		{"ubyte images", IDXUByte, []uint32{3, 4, 2}},
		{"sbyte", IDXSByte, []uint32{7}},
		{"int16", IDXInt16, []uint32{2, 3}},
		{"int32", IDXInt32, []uint32{4}},
		{"float32", IDXFloat32, []uint32{2, 2}},
		{"float64", IDXFloat64, []uint32{3}},
		{"eight dims", IDXUByte, []uint32{1, 2, 1, 2, 1, 2, 1, 2}},
		{"larger than one chunk", IDXUByte, []uint32{3, idxChunk/2 + 7}},
	}
	for _, tc := range tests {
		n := tc.typ.Size()
		wantDims := make([]int, len(tc.dims))
		for i, d := range tc.dims {
			n *= int(d)
			wantDims[i] = int(d)
		}
		data := seq(n)
		plain := encodeIDX(tc.typ, tc.dims, data)
		for _, enc := range []struct {
			name string
			in   []byte
		}{{"plain", plain}, {"gzip", gz(t, plain)}} {
			t.Run(tc.name+"/"+enc.name, func(t *testing.T) {
				m, err := ReadIDX(bytes.NewReader(enc.in))
				if err != nil {
					t.Fatalf("ReadIDX: %v", err)
				}
				if m.Type != tc.typ || !slices.Equal(m.Dims, wantDims) || !bytes.Equal(m.Data, data) {
					t.Fatalf("got type %v dims %v and %d bytes, want %v %v and %d bytes", m.Type, m.Dims, len(m.Data), tc.typ, wantDims, len(data))
				}
				if got := m.NumElements() * m.Type.Size(); got != len(m.Data) {
					t.Fatalf("NumElements*Size = %d, len(Data) = %d", got, len(m.Data))
				}
			})
		}
	}
}

func TestReadIDXErrors(t *testing.T) {
	valid := encodeIDX(IDXUByte, []uint32{2, 3}, seq(6))
	tests := []struct {
		name string
		in   []byte
		opt  IDXOptions
		want string // substring of the error
	}{
		{"empty", nil, IDXOptions{}, "header truncated"},
		{"one byte", []byte{0}, IDXOptions{}, "header truncated"},
		{"bad magic", append([]byte{1}, valid[1:]...), IDXOptions{}, "bad magic"},
		{"unknown type", encodeIDX(0x0A, []uint32{1}, []byte{0}), IDXOptions{}, "unknown element type 0x0a"},
		{"zero dims", []byte{0, 0, 8, 0}, IDXOptions{}, "0 dimensions"},
		{"nine dims", encodeIDX(IDXUByte, []uint32{1, 1, 1, 1, 1, 1, 1, 1, 1}, []byte{0}), IDXOptions{}, "9 dimensions"},
		{"dims cut", valid[:6], IDXOptions{}, "header truncated: expected at least 12 bytes, got 6"},
		{"zero dim", encodeIDX(IDXUByte, []uint32{3, 0}, nil), IDXOptions{}, "dimension 1 is zero"},
		{"payload cut", valid[:len(valid)-2], IDXOptions{}, "payload truncated: expected 6 bytes, got 4"},
		{"payload cut gzip", gz(t, valid[:len(valid)-2]), IDXOptions{}, "payload truncated: expected 6 bytes, got 4"},
		{"trailing byte", append(slices.Clone(valid), 9), IDXOptions{}, "trailing data"},
		{"trailing byte inside gzip", gz(t, append(slices.Clone(valid), 9)), IDXOptions{}, "trailing data"},
		{"short garbage after gzip", append(gz(t, valid), 'x', 'y', 'z'), IDXOptions{}, "stray bytes"},
		{"long garbage after gzip", append(gz(t, valid), []byte("not a gzip member at all")...), IDXOptions{}, "stray bytes after the gzip stream"},
		{"gzip cut in trailer", gz(t, valid)[:len(gz(t, valid))-3], IDXOptions{}, "gzip stream truncated"},
		{"gzip checksum wrong", flipCRC(gz(t, valid)), IDXOptions{}, "checksum"},
		{"gzip cut", gz(t, valid)[:20], IDXOptions{}, "truncated"},
		{"gzip header damaged", []byte{0x1f, 0x8b, 0, 0}, IDXOptions{}, "gzip"},
		{"over limit", encodeIDX(IDXFloat64, []uint32{10, 10}, nil), IDXOptions{MaxBytes: 799}, "over the 799-byte limit"},
		{"at limit ok but cut", encodeIDX(IDXFloat64, []uint32{10, 10}, nil), IDXOptions{MaxBytes: 800}, "payload truncated: expected 800 bytes, got 0"},
		{"claims 16 EiB", encodeIDX(IDXFloat64, []uint32{0xffffffff, 0xffffffff, 0xffffffff}, nil), IDXOptions{}, "limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ReadIDXWithOptions(bytes.NewReader(tc.in), tc.opt)
			if err == nil {
				t.Fatalf("ReadIDX succeeded with dims %v, want error containing %q", m.Dims, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestReadIDXHugeClaimDoesNotAllocate checks that a header declaring almost
// 2 GiB on a tiny input fails without allocating anywhere near that.
func TestReadIDXHugeClaimDoesNotAllocate(t *testing.T) {
	in := encodeIDX(IDXUByte, []uint32{1<<31 - 1}, seq(100))
	for _, enc := range []struct {
		name string
		in   []byte
	}{{"plain", in}, {"gzip", gz(t, in)}} {
		t.Run(enc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := ReadIDX(bytes.NewReader(enc.in))
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), "expected 2147483647 bytes, got 100") {
				t.Fatalf("err = %v, want truncated error", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Fatalf("allocated %d bytes for a 100-byte payload", grew)
			}
		})
	}
}

func TestLoadIDXFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.idx.gz")
	bad := filepath.Join(dir, "bad.idx")
	if err := os.WriteFile(good, gz(t, encodeIDX(IDXUByte, []uint32{4}, seq(4))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, encodeIDX(IDXUByte, []uint32{4}, seq(3)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		wantErr bool
	}{
		{good, false},
		{bad, true},
		{filepath.Join(dir, "missing"), true},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			m, err := LoadIDXFile(tc.path)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.path) {
					t.Fatalf("err = %v, want an error naming %s", err, tc.path)
				}
				return
			}
			if err != nil || !slices.Equal(m.Dims, []int{4}) {
				t.Fatalf("LoadIDXFile = %v, %v", m, err)
			}
		})
	}
}

func TestDTypeString(t *testing.T) {
	tests := []struct {
		typ  DType
		want string
		size int
	}{
		{IDXUByte, "ubyte", 1}, {IDXSByte, "sbyte", 1}, {IDXInt16, "int16", 2},
		{IDXInt32, "int32", 4}, {IDXFloat32, "float32", 4}, {IDXFloat64, "float64", 8},
		{0x0A, "unknown(0x0a)", 0},
	}
	for _, tc := range tests {
		if got := tc.typ.String(); got != tc.want || tc.typ.Size() != tc.size {
			t.Errorf("DType(0x%02x): String %q Size %d, want %q %d", byte(tc.typ), got, tc.typ.Size(), tc.want, tc.size)
		}
	}
}

func FuzzReadIDX(f *testing.F) {
	small := encodeIDX(IDXUByte, []uint32{2, 3}, seq(6))
	seeds := [][]byte{
		small,
		gz(f, small),
		encodeIDX(IDXInt16, []uint32{3}, seq(6)),
		encodeIDX(IDXFloat64, []uint32{1, 1}, seq(8)),
		gz(f, encodeIDX(IDXFloat32, []uint32{2}, seq(8))),
		small[:len(small)-1],
		small[:7],
		gz(f, small)[:15],
		append(slices.Clone(small), 0),
		encodeIDX(IDXUByte, []uint32{1<<31 - 1}, seq(10)),
		append(gz(f, small), 'x', 'y', 'z'),
		flipCRC(gz(f, small)),
		{},
		{0x1f, 0x8b},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ReadIDXWithOptions(bytes.NewReader(in), IDXOptions{MaxBytes: 1 << 24})
		if err != nil {
			return
		}
		if m.Type.Size() == 0 || len(m.Dims) < 1 || len(m.Dims) > 8 {
			t.Fatalf("accepted type %v with %d dims", m.Type, len(m.Dims))
		}
		want := m.Type.Size()
		for _, d := range m.Dims {
			if d <= 0 {
				t.Fatalf("accepted dims %v", m.Dims)
			}
			want *= d
		}
		if len(m.Data) != want {
			t.Fatalf("dims %v of %v need %d bytes, Data has %d", m.Dims, m.Type, want, len(m.Data))
		}
		// A plain input must be exactly header plus payload.
		if len(in) >= 2 && in[0] == 0 {
			dims := make([]uint32, len(m.Dims))
			for i, d := range m.Dims {
				dims[i] = uint32(d)
			}
			if !bytes.Equal(encodeIDX(m.Type, dims, m.Data), in) {
				t.Fatalf("re-encoding a plain input does not reproduce it")
			}
		}
	})
}

// mnistLikeImages returns n 28x28 ubyte images that compress like MNIST:
// mostly zero background with a bright blob whose place varies.
func mnistLikeImages(n int) []byte {
	b := make([]byte, n*28*28)
	for i := range n {
		img := b[i*784 : (i+1)*784]
		cx, cy := 8+i%12, 8+(i/12)%12
		for y := range 28 {
			for x := range 28 {
				dx, dy := x-cx, y-cy
				if r := dx*dx + dy*dy; r < 30 {
					img[y*28+x] = byte(255 - 8*r - (i+x*y)%7)
				}
			}
		}
	}
	return b
}

func BenchmarkReadIDX(b *testing.B) {
	const n = 10000 // the size of the MNIST test set
	in := gz(b, encodeIDX(IDXUByte, []uint32{n, 28, 28}, mnistLikeImages(n)))
	b.SetBytes(n * 28 * 28)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadIDX(bytes.NewReader(in)); err != nil {
			b.Fatal(err)
		}
	}
}
