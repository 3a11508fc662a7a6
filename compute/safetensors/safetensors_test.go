package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	nanPayload := math.Float32frombits(0x7fc01234)
	negNaN := math.Float32frombits(0xffa00001) // signalling NaN with payload
	i64 := make([]byte, 3*8)
	for i := range 3 {
		binary.LittleEndian.PutUint64(i64[8*i:], uint64(int64(-1-i)))
	}
	tests := []struct {
		name     string
		tensors  []WriteTensor
		metadata map[string]string
	}{
		{name: "empty file"},
		{name: "metadata only", metadata: map[string]string{"format": "pt"}},
		{name: "vector", tensors: []WriteTensor{{Name: "w", Shape: []int{5}, F32: seq(5, 1)}}},
		{name: "scalar", tensors: []WriteTensor{{Name: "s", Shape: []int{}, F32: []float32{3.5}}}},
		{name: "nil shape scalar", tensors: []WriteTensor{{Name: "s", F32: []float32{-7}}}},
		{name: "zero size", tensors: []WriteTensor{
			{Name: "a", Shape: []int{0}},
			{Name: "b", Shape: []int{3, 0, 2}, F32: []float32{}},
			{Name: "c", Shape: []int{2}, F32: []float32{1, 2}},
			{Name: "d", Shape: []int{0, 4}, DType: I64},
		}},
		{name: "matrix and 3d", tensors: []WriteTensor{
			{Name: "layer.0.weight", Shape: []int{3, 4}, F32: seq(12, -6)},
			{Name: "layer.0.bias", Shape: []int{4}, F32: seq(4, 0.25)},
			{Name: "conv", Shape: []int{2, 3, 2}, F32: seq(12, 100)},
		}, metadata: map[string]string{"format": "pt", "round": "17"}},
		{name: "special floats", tensors: []WriteTensor{{Name: "x", Shape: []int{9}, F32: []float32{
			0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
			nanPayload, negNaN, math.SmallestNonzeroFloat32, math.MaxFloat32, -1e-42,
		}}}},
		{name: "mixed raw dtypes", tensors: []WriteTensor{
			{Name: "ids", Shape: []int{3}, DType: I64, Raw: i64},
			{Name: "f", Shape: []int{2}, F32: []float32{1, -1}},
			{Name: "f_raw", Shape: []int{1}, DType: F32, Raw: f32Bytes(42)},
			{Name: "half", Shape: []int{2}, DType: F16, Raw: []byte{0x00, 0x3c, 0x00, 0xc0}},
			{Name: "mask", Shape: []int{3}, DType: Bool, Raw: []byte{1, 0, 1}},
		}},
		{name: "awkward names and metadata", tensors: []WriteTensor{
			{Name: `quote"back\slash`, Shape: []int{1}, F32: []float32{1}},
			{Name: "ünïcödé 名前 <&>", Shape: []int{1}, F32: []float32{2}},
			{Name: "ctrl\x01\n\t", Shape: []int{1}, F32: []float32{3}},
		}, metadata: map[string]string{"": "empty key", "k\"": "v\n\x00", "json": `{"a":1}`}},
		{name: "many small tensors crossing chunk boundaries", tensors: func() []WriteTensor {
			var ts []WriteTensor
			for i := range 40 {
				n := 1000 + 37*i
				ts = append(ts, WriteTensor{Name: "t" + string(rune('A'+i)), Shape: []int{n}, F32: seq(n, float32(i))})
			}
			return ts
		}()},
		{name: "large tensor", tensors: []WriteTensor{{Name: "big", Shape: []int{300, 301}, F32: seq(300*301, -5)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := mustWrite(t, tc.tensors, tc.metadata)
			checkFile(t, mustRead(t, b), tc.tensors, tc.metadata)

			path := filepath.Join(t.TempDir(), "m.safetensors")
			if err := WriteFile(path, tc.tensors, tc.metadata); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			onDisk, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(onDisk, b) {
				t.Fatalf("WriteFile output differs from Write output")
			}
			f, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			checkFile(t, f, tc.tensors, tc.metadata)
			if err := f.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

// checkFile verifies that f holds exactly tensors and metadata.
func checkFile(t *testing.T, f *File, tensors []WriteTensor, metadata map[string]string) {
	t.Helper()
	h := f.Header()
	if len(h.Tensors) != len(tensors) {
		t.Fatalf("got %d tensors, want %d", len(h.Tensors), len(tensors))
	}
	wantMeta := metadata
	if wantMeta == nil {
		wantMeta = map[string]string{}
	}
	if got := f.Metadata(); got == nil || !mapsEqual(got, wantMeta) {
		t.Fatalf("metadata = %v, want %v", got, wantMeta)
	}
	var covered int64
	for _, want := range tensors {
		info, ok := f.Info(want.Name)
		if !ok {
			t.Fatalf("tensor %q missing", want.Name)
		}
		wantDType := want.DType
		if wantDType == "" {
			wantDType = F32
		}
		if info.DType != wantDType || !slices.Equal(info.Shape, want.Shape) && len(want.Shape)+len(info.Shape) > 0 {
			t.Fatalf("tensor %q: got %s %v, want %s %v", want.Name, info.DType, info.Shape, wantDType, want.Shape)
		}
		covered += info.ByteSize()
		if want.Raw != nil {
			got := make([]byte, len(want.Raw))
			if err := f.ReadRaw(want.Name, got); err != nil {
				t.Fatalf("ReadRaw(%q): %v", want.Name, err)
			}
			if !bytes.Equal(got, want.Raw) {
				t.Fatalf("tensor %q raw bytes differ", want.Name)
			}
		}
		if wantDType == F32 {
			got := make([]float32, info.NumElements())
			if err := f.ReadFloat32(want.Name, got); err != nil {
				t.Fatalf("ReadFloat32(%q): %v", want.Name, err)
			}
			wantVals := want.F32
			if want.Raw != nil {
				wantVals = make([]float32, len(want.Raw)/4)
				DecodeFloat32LE(wantVals, want.Raw)
			}
			if !sameBits(got, wantVals) {
				t.Fatalf("tensor %q: got %v, want %v", want.Name, got, wantVals)
			}
		}
	}
	if covered != h.DataSize {
		t.Fatalf("tensors cover %d bytes, data size %d", covered, h.DataSize)
	}
	if h.DataOffset%8 != 0 {
		t.Fatalf("data offset %d not 8-aligned", h.DataOffset)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestGoldenDecode(t *testing.T) {
	// Hand-built: 8-byte length, header padded with spaces, then 1.0 and 2.0
	// as little-endian float32.
	header := `{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}` // 85 bytes
	header += "   "                                                                                   // pad to 88
	golden := append([]byte{88, 0, 0, 0, 0, 0, 0, 0}, header...)
	golden = append(golden, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40)

	f := mustRead(t, golden)
	h := f.Header()
	if h.DataOffset != 96 || h.DataSize != 8 {
		t.Fatalf("DataOffset, DataSize = %d, %d; want 96, 8", h.DataOffset, h.DataSize)
	}
	want := TensorInfo{Name: "a", DType: F32, Shape: []int{2}, Begin: 0, End: 8}
	if len(h.Tensors) != 1 || h.Tensors[0].Name != want.Name || h.Tensors[0].DType != want.DType ||
		!slices.Equal(h.Tensors[0].Shape, want.Shape) || h.Tensors[0].Begin != 0 || h.Tensors[0].End != 8 {
		t.Fatalf("tensors = %+v, want [%+v]", h.Tensors, want)
	}
	if got := f.Metadata(); len(got) != 1 || got["format"] != "pt" {
		t.Fatalf("metadata = %v", got)
	}
	vals, err := f.Float32s("a")
	if err != nil || !slices.Equal(vals, []float32{1, 2}) {
		t.Fatalf("Float32s = %v, %v; want [1 2]", vals, err)
	}

	// Write must produce exactly these bytes for the same content.
	out := mustWrite(t, []WriteTensor{{Name: "a", Shape: []int{2}, F32: []float32{1, 2}}}, map[string]string{"format": "pt"})
	if !bytes.Equal(out, golden) {
		t.Fatalf("Write output\n%q\nwant\n%q", out, golden)
	}
}

func TestWriteHeaderShape(t *testing.T) {
	tensors := []WriteTensor{
		{Name: "z", Shape: []int{2, 2}, F32: seq(4, 0)},
		{Name: "a", Shape: []int{}, F32: []float32{1}},
		{Name: "e", Shape: []int{0}},
	}
	meta := map[string]string{"format": "pt", "b": "2", "a": "1"}
	out := mustWrite(t, tensors, meta)
	n := binary.LittleEndian.Uint64(out[:8])
	if n%8 != 0 {
		t.Fatalf("header length %d not a multiple of 8", n)
	}
	hdr := out[8 : 8+n]
	if trimmed := bytes.TrimRight(hdr, " "); len(hdr)-len(trimmed) >= 8 || trimmed[len(trimmed)-1] != '}' {
		t.Fatalf("header padding wrong: %q", hdr)
	}
	var parsed map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &parsed); err != nil {
		t.Fatalf("header is not JSON: %v", err)
	}
	var gotMeta map[string]string
	if err := json.Unmarshal(parsed["__metadata__"], &gotMeta); err != nil || !mapsEqual(gotMeta, meta) {
		t.Fatalf("__metadata__ = %v (%v), want %v", gotMeta, err, meta)
	}
	type entry struct {
		DType       string  `json:"dtype"`
		Shape       []int   `json:"shape"`
		DataOffsets []int64 `json:"data_offsets"`
	}
	wants := map[string]entry{
		"z": {"F32", []int{2, 2}, []int64{0, 16}},
		"a": {"F32", []int{}, []int64{16, 20}},
		"e": {"F32", []int{0}, []int64{20, 20}},
	}
	if len(parsed) != len(wants)+1 {
		t.Fatalf("header has %d keys, want %d", len(parsed), len(wants)+1)
	}
	for name, want := range wants {
		var got entry
		if err := json.Unmarshal(parsed[name], &got); err != nil {
			t.Fatalf("entry %q: %v", name, err)
		}
		if got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) || !slices.Equal(got.DataOffsets, want.DataOffsets) {
			t.Fatalf("entry %q = %+v, want %+v", name, got, want)
		}
	}
	if int64(len(out)) != 8+int64(n)+20 {
		t.Fatalf("file is %d bytes, want %d", len(out), 8+n+20)
	}
	// Deterministic: same input, same bytes.
	if again := mustWrite(t, tensors, meta); !bytes.Equal(again, out) {
		t.Fatal("Write is not deterministic")
	}
	// Tensors stay in the given order in the data buffer.
	if !strings.Contains(string(hdr), `{"__metadata__":{"a":"1","b":"2","format":"pt"},"z":`) {
		t.Fatalf("unexpected header layout: %s", hdr)
	}
}

func TestReadAnyOrder(t *testing.T) {
	// Entries listed out of offset order, PyTorch-style padding, unknown
	// extra fields, whitespace, and zero-size tensors sharing an offset.
	header := ` { "b" : {"dtype":"F32","shape":[1],"data_offsets":[8,12], "extra": [1, {"x": null}]},
		"z0": {"shape":[0],"dtype":"I8","data_offsets":[8,8]},
		"a": {"data_offsets":[0,8],"dtype":"BF16","shape":[2,2]},
		"__metadata__": null } `
	data := []byte{0x80, 0x3f, 0x00, 0x40, 0x40, 0x40, 0x80, 0xbf}
	data = append(data, f32Bytes(9)...)
	f := mustRead(t, buildFile(header, data))
	if got := f.Names(); !slices.Equal(got, []string{"a", "z0", "b"}) {
		t.Fatalf("Names = %v, want [a z0 b]", got)
	}
	a, err := f.Float32s("a")
	if err != nil || !slices.Equal(a, []float32{1, 2, 3, -1}) {
		t.Fatalf("a = %v, %v", a, err)
	}
	b, err := f.Float32s("b")
	if err != nil || !slices.Equal(b, []float32{9}) {
		t.Fatalf("b = %v, %v", b, err)
	}
	if len(f.Metadata()) != 0 {
		t.Fatalf("metadata = %v, want empty", f.Metadata())
	}
}

func TestReject(t *testing.T) {
	entry := func(name, dtype, shape, offsets string) string {
		return `"` + name + `":{"dtype":"` + dtype + `","shape":` + shape + `,"data_offsets":` + offsets + `}`
	}
	obj := func(entries ...string) string { return "{" + strings.Join(entries, ",") + "}" }
	zeros := func(n int) []byte { return make([]byte, n) }
	validA := entry("a", "F32", "[2]", "[0,8]")

	tests := []struct {
		name string
		file []byte
		opt  *ReadOptions
		want []string // substrings of the error message
	}{
		{"empty input", nil, nil, []string{"0 bytes", "too short"}},
		{"truncated length prefix", []byte{8, 0, 0, 0, 0}, nil, []string{"5 bytes", "too short"}},
		{"header size larger than file", prefixOnly(100, []byte("{}      ")), nil, []string{"header size 100", "exceeds the 8 bytes"}},
		{"header size max uint64", prefixOnly(math.MaxUint64, nil), nil, []string{"exceeds the limit"}},
		{"header size over default limit", prefixOnly(DefaultMaxHeaderSize+1, zeros(16)), nil, []string{"exceeds the limit of 100000000"}},
		{"header size over custom limit", buildFile(obj(validA), zeros(8)), &ReadOptions{MaxHeaderSize: 16}, []string{"exceeds the limit of 16"}},
		{"empty header", prefixOnly(0, nil), nil, []string{"not valid JSON"}},
		{"invalid JSON", buildFile(`{"a":`, nil), nil, []string{"not valid JSON"}},
		{"invalid JSON value", buildFile(`{"a":{"dtype":F32}}`, nil), nil, []string{"not valid JSON", `"a"`}},
		{"not an object", buildFile(`[1,2]`, nil), nil, []string{"must be a JSON object"}},
		{"string header", buildFile(`"x"`, nil), nil, []string{"must be a JSON object"}},
		{"trailing garbage", buildFile(`{} {}`, nil), nil, []string{"trailing data"}},
		{"invalid UTF-8", buildFile("{\"\xff\":1}", nil), nil, []string{"UTF-8"}},
		{"entry not an object", buildFile(`{"a":1}`, nil), nil, []string{`tensor "a"`, "must be an object"}},
		{"empty name", buildFile(obj(entry("", "F32", "[0]", "[0,0]")), nil), nil, []string{"empty name"}},
		{"unknown dtype", buildFile(obj(entry("a", "F33", "[2]", "[0,8]")), zeros(8)), nil, []string{`tensor "a"`, `unknown dtype "F33"`}},
		{"sub-byte dtype", buildFile(obj(entry("a", "F4", "[2]", "[0,1]")), zeros(1)), nil, []string{`tensor "a"`, `unknown dtype "F4"`}},
		{"lowercase dtype", buildFile(obj(entry("a", "f32", "[2]", "[0,8]")), zeros(8)), nil, []string{`unknown dtype "f32"`}},
		{"dtype not a string", buildFile(`{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, zeros(4)), nil, []string{`tensor "a"`, `"dtype" has the wrong type`}},
		{"missing dtype", buildFile(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, zeros(4)), nil, []string{`tensor "a"`, `missing "dtype"`}},
		{"missing shape", buildFile(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, zeros(4)), nil, []string{`tensor "a"`, `missing "shape"`}},
		{"missing offsets", buildFile(`{"a":{"dtype":"F32","shape":[1]}}`, zeros(4)), nil, []string{`tensor "a"`, `missing "data_offsets"`}},
		{"case-folded field name", buildFile(`{"a":{"DTYPE":"F32","shape":[1],"data_offsets":[0,4]}}`, zeros(4)), nil, []string{`missing "dtype"`}},
		{"null shape", buildFile(`{"a":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}`, zeros(4)), nil, []string{`"shape" has the wrong type`}},
		{"negative dim", buildFile(obj(entry("a", "F32", "[2,-1]", "[0,0]")), nil), nil, []string{`tensor "a"`, "dimension 1 is negative (-1)"}},
		{"fractional dim", buildFile(obj(entry("a", "F32", "[1.5]", "[0,4]")), zeros(4)), nil, []string{`tensor "a"`, "shape must be"}},
		{"shape product overflow", buildFile(obj(entry("a", "F32", "[4294967296,4294967296]", "[0,0]")), nil), nil, []string{`tensor "a"`, "overflows"}},
		{"byte count overflow", buildFile(obj(entry("a", "F64", "[2305843009213693952]", "[0,0]")), nil), nil, []string{`tensor "a"`, "overflows"}},
		{"overflow before zero dim", buildFile(obj(entry("a", "F32", "[4294967296,4294967296,0]", "[0,0]")), nil), nil, []string{`tensor "a"`, "overflows"}},
		{"dim beyond int64", buildFile(obj(entry("a", "F32", "[99999999999999999999]", "[0,0]")), nil), nil, []string{`tensor "a"`, "shape must be"}},
		{"wrong byte count", buildFile(obj(entry("a", "F32", "[3]", "[0,8]")), zeros(8)), nil, []string{`tensor "a"`, "span 8 bytes", "needs 12"}},
		{"wrong byte count for dtype", buildFile(obj(entry("a", "F64", "[2]", "[0,8]")), zeros(8)), nil, []string{`tensor "a"`, "needs 16"}},
		{"offsets not two", buildFile(obj(entry("a", "F32", "[2]", "[0,8,8]")), zeros(8)), nil, []string{`tensor "a"`, "exactly 2 elements"}},
		{"offsets negative", buildFile(obj(entry("a", "F32", "[0]", "[-4,-4]")), nil), nil, []string{`tensor "a"`, "must not be negative"}},
		{"offsets reversed", buildFile(obj(entry("a", "F32", "[1]", "[8,4]")), zeros(8)), nil, []string{`tensor "a"`, "before begin"}},
		{"offsets beyond end", buildFile(obj(entry("a", "F32", "[2]", "[0,8]")), zeros(4)), nil, []string{`tensor "a"`, "beyond the 4-byte data buffer"}},
		{"offsets huge", buildFile(obj(entry("a", "F32", "[2]", "[1e30,1e30]")), zeros(4)), nil, []string{`tensor "a"`, "data_offsets must be"}},
		{"overlapping tensors", buildFile(obj(validA, entry("b", "F32", "[2]", "[4,12]")), zeros(12)), nil, []string{`tensor "b"`, `overlap tensor "a"`}},
		{"identical offsets", buildFile(obj(validA, entry("b", "F32", "[2]", "[0,8]")), zeros(8)), nil, []string{`tensor "b"`, `overlap tensor "a"`}},
		{"hole between tensors", buildFile(obj(entry("a", "F32", "[1]", "[0,4]"), entry("b", "F32", "[1]", "[8,12]")), zeros(12)), nil, []string{"hole at bytes [4, 8)", `tensor "b"`}},
		{"hole at start", buildFile(obj(entry("a", "F32", "[1]", "[4,8]")), zeros(8)), nil, []string{"hole at bytes [0, 4)", `tensor "a"`}},
		{"trailing data", buildFile(obj(entry("a", "F32", "[1]", "[0,4]")), zeros(8)), nil, []string{"cover 4 bytes", "holds 8"}},
		{"data without tensors", buildFile(`{}`, zeros(4)), nil, []string{"cover 0 bytes", "holds 4"}},
		{"duplicate names", buildFile(obj(validA, validA), zeros(8)), nil, []string{`duplicate key "a"`}},
		{"duplicate names via escape", buildFile(obj(validA, entry(`\u0061`, "F32", "[2]", "[0,8]")), zeros(8)), nil, []string{`duplicate key "a"`}},
		{"duplicate field", buildFile(`{"a":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}}`, zeros(4)), nil, []string{`tensor "a" entry`, `duplicate key "dtype"`}},
		{"duplicate metadata", buildFile(`{"__metadata__":{},"__metadata__":{}}`, nil), nil, []string{`duplicate key "__metadata__"`}},
		{"duplicate metadata key", buildFile(`{"__metadata__":{"k":"1","k":"2"}}`, nil), nil, []string{`duplicate key "k"`}},
		{"metadata non-string value", buildFile(`{"__metadata__":{"epoch":3}}`, nil), nil, []string{`"__metadata__" value for key "epoch" must be a string`, "a number"}},
		{"metadata nested object", buildFile(`{"__metadata__":{"x":{}}}`, nil), nil, []string{`key "x" must be a string`, "an object"}},
		{"metadata null value", buildFile(`{"__metadata__":{"x":null}}`, nil), nil, []string{`key "x" must be a string`, "null"}},
		{"metadata not an object", buildFile(`{"__metadata__":"pt"}`, nil), nil, []string{`"__metadata__" must be an object`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewReaderWithOptions(bytes.NewReader(tc.file), int64(len(tc.file)), tc.opt)
			if err == nil {
				t.Fatalf("accepted invalid file, tensors %v", f.Names())
			}
			if !errors.Is(err, ErrInvalidFormat) {
				t.Errorf("error %q does not wrap ErrInvalidFormat", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			// ParseHeader must agree with NewReader.
			if _, perr := ParseHeader(bytes.NewReader(tc.file), int64(len(tc.file)), tc.opt); perr == nil || perr.Error() != err.Error() {
				t.Errorf("ParseHeader error %v, NewReader error %v", perr, err)
			}
		})
	}
}

func TestParseHeaderReaderShorterThanClaimed(t *testing.T) {
	tests := []struct {
		name   string
		input  []byte
		size   int64
		wantIs error
	}{
		{"no prefix", []byte{1, 2}, 1000, io.ErrUnexpectedEOF},
		{"short small header", prefixOnly(64, []byte("{}")), 1000, io.ErrUnexpectedEOF},
		{"short large header", prefixOnly(10<<20, []byte("{}")), 20 << 20, io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseHeader(bytes.NewReader(tc.input), tc.size, nil)
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("err = %v, want %v", err, tc.wantIs)
			}
		})
	}
	// ParseHeader reads exactly 8+N bytes, leaving the data in r.
	b := mustWrite(t, []WriteTensor{{Name: "a", Shape: []int{1}, F32: []float32{5}}}, nil)
	r := bytes.NewReader(b)
	h, err := ParseHeader(r, int64(len(b)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rest := int64(r.Len()); rest != h.DataSize {
		t.Fatalf("ParseHeader left %d bytes, want %d", rest, h.DataSize)
	}
}

// TestBoundedAllocation checks that claimed sizes never drive allocation
// before being checked against the real input.
func TestBoundedAllocation(t *testing.T) {
	tests := []struct {
		name  string
		parse func() error
	}{
		{"claimed header beyond file", func() error {
			b := prefixOnly(DefaultMaxHeaderSize-1, make([]byte, 32))
			_, err := NewReader(bytes.NewReader(b), int64(len(b)))
			return err
		}},
		{"lying file size", func() error {
			b := prefixOnly(DefaultMaxHeaderSize-1, make([]byte, 32))
			_, err := ParseHeader(bytes.NewReader(b), 1<<40, nil)
			return err
		}},
		{"claimed tensor size beyond data", func() error {
			b := buildFile(`{"a":{"dtype":"F64","shape":[100000000],"data_offsets":[0,800000000]}}`, make([]byte, 8))
			_, err := NewReader(bytes.NewReader(b), int64(len(b)))
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := tc.parse()
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("accepted invalid input")
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
				t.Fatalf("allocated %d bytes for a tiny input", alloc)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	i64 := make([]byte, 16)
	b := mustWrite(t, []WriteTensor{
		{Name: "w", Shape: []int{2, 3}, F32: seq(6, 0)},
		{Name: "ids", Shape: []int{2}, DType: I64, Raw: i64},
		{Name: "empty", Shape: []int{0}},
	}, nil)
	f := mustRead(t, b)
	tests := []struct {
		name   string
		read   func() error
		wantIs error
		want   []string
	}{
		{"short dst", func() error { return f.ReadFloat32("w", make([]float32, 5)) }, ErrSizeMismatch, []string{`tensor "w"`, "6 elements", "length 5"}},
		{"long dst", func() error { return f.ReadFloat32("w", make([]float32, 7)) }, ErrSizeMismatch, []string{`tensor "w"`, "length 7"}},
		{"nil dst", func() error { return f.ReadFloat32("w", nil) }, ErrSizeMismatch, []string{`tensor "w"`, "length 0"}},
		{"non-empty dst for empty tensor", func() error { return f.ReadFloat32("empty", make([]float32, 1)) }, ErrSizeMismatch, []string{`tensor "empty"`}},
		{"wrong dtype", func() error { return f.ReadFloat32("ids", make([]float32, 2)) }, ErrDTypeMismatch, []string{`tensor "ids"`, "I64"}},
		{"wrong dtype alloc", func() error { _, err := f.Float32s("ids"); return err }, ErrDTypeMismatch, []string{`tensor "ids"`}},
		{"missing tensor", func() error { return f.ReadFloat32("nope", nil) }, ErrTensorNotFound, []string{`"nope"`}},
		{"missing tensor alloc", func() error { _, err := f.Float32s("nope"); return err }, ErrTensorNotFound, []string{`"nope"`}},
		{"missing raw", func() error { return f.ReadRaw("nope", nil) }, ErrTensorNotFound, []string{`"nope"`}},
		{"missing section", func() error { _, err := f.Section("nope"); return err }, ErrTensorNotFound, []string{`"nope"`}},
		{"raw wrong length", func() error { return f.ReadRaw("ids", make([]byte, 8)) }, ErrSizeMismatch, []string{`tensor "ids"`, "16 bytes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.read()
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("err = %v, want %v", err, tc.wantIs)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if err := f.ReadFloat32("empty", nil); err != nil {
		t.Fatalf("reading empty tensor: %v", err)
	}
	s, err := f.Section("ids")
	if err != nil || s.Size() != 16 {
		t.Fatalf("Section = %v, %v", s, err)
	}
}

// truncatedReaderAt serves only the first n bytes of data.
type truncatedReaderAt struct {
	data []byte
	n    int
}

func (r truncatedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(r.data[:r.n]).ReadAt(p, off)
}

func TestReadTruncatedData(t *testing.T) {
	b := mustWrite(t, []WriteTensor{{Name: "w", Shape: []int{100}, F32: seq(100, 0)}}, nil)
	// The header is intact, but the reader loses the tail after parsing.
	f, err := NewReader(truncatedReaderAt{b, len(b) - 10}, int64(len(b)))
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	err = f.ReadFloat32("w", make([]float32, 100))
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), `tensor "w"`) {
		t.Fatalf("err = %v, want unexpected EOF naming the tensor", err)
	}
}

func TestReadFloat32Conversions(t *testing.T) {
	f16 := []byte{0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x7c, 0x00, 0x80}
	bf16 := []byte{0x80, 0x3f, 0x49, 0x40, 0x80, 0xff}
	f64 := make([]byte, 24)
	for i, v := range []float64{1.0 / 3, -1e300, 2.5} {
		binary.LittleEndian.PutUint64(f64[8*i:], math.Float64bits(v))
	}
	tests := []struct {
		dtype DType
		raw   []byte
		want  []float32
	}{
		{F16, f16, []float32{1, -2, 65504, float32(math.Ldexp(1, -24)), float32(math.Inf(1)), float32(math.Copysign(0, -1))}},
		{BF16, bf16, []float32{1, 3.140625, float32(math.Inf(-1))}},
		{F64, f64, []float32{float32(1.0 / 3), float32(math.Inf(-1)), 2.5}},
	}
	for _, tc := range tests {
		t.Run(string(tc.dtype), func(t *testing.T) {
			n := len(tc.raw) / tc.dtype.Size()
			f := mustRead(t, mustWrite(t, []WriteTensor{{Name: "x", Shape: []int{n}, DType: tc.dtype, Raw: tc.raw}}, nil))
			got, err := f.Float32s("x")
			if err != nil {
				t.Fatal(err)
			}
			if !sameBits(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFloat16ToFloat32(t *testing.T) {
	// Reference: decode every half-precision value with math.Ldexp.
	for h := range 1 << 16 {
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		exp := (h >> 10) & 0x1f
		mant := float64(h & 0x3ff)
		got := Float16ToFloat32(uint16(h))
		var want float64
		switch exp {
		case 0x1f:
			if mant == 0 {
				want = math.Inf(int(sign))
			} else {
				if !math.IsNaN(float64(got)) || math.Float32bits(got)>>13&0x3ff != uint32(h&0x3ff) {
					t.Fatalf("Float16ToFloat32(%#04x) = %#08x, want NaN with payload kept", h, math.Float32bits(got))
				}
				continue
			}
		case 0:
			want = sign * math.Ldexp(mant, -24)
		default:
			want = sign * math.Ldexp(1+mant/1024, exp-15)
		}
		if float64(got) != want || math.Signbit(float64(got)) != (sign < 0) {
			t.Fatalf("Float16ToFloat32(%#04x) = %v, want %v", h, got, want)
		}
	}
}

func TestEncodeDecodeFloat32LE(t *testing.T) {
	vals := []float32{0, 1, -2.5, math.Float32frombits(0x7f800001), math.Float32frombits(0xffffffff)}
	tests := []struct {
		name           string
		dstLen, srcLen int
		want           int
	}{
		{"exact", 5, 20, 5},
		{"short dst", 3, 20, 3},
		{"short src", 5, 13, 3},
		{"empty", 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := make([]byte, 20)
			if n := EncodeFloat32LE(src, vals); n != 5 {
				t.Fatalf("EncodeFloat32LE = %d", n)
			}
			dst := make([]float32, tc.dstLen)
			if n := DecodeFloat32LE(dst, src[:tc.srcLen]); n != tc.want {
				t.Fatalf("DecodeFloat32LE = %d, want %d", n, tc.want)
			}
			if !sameBits(dst[:tc.want], vals[:tc.want]) {
				t.Fatalf("decoded %v, want %v", dst[:tc.want], vals[:tc.want])
			}
		})
	}
	if n := EncodeFloat32LE(make([]byte, 7), vals); n != 1 {
		t.Fatalf("EncodeFloat32LE into 7 bytes = %d, want 1", n)
	}
}

func TestWriteRejects(t *testing.T) {
	tests := []struct {
		name     string
		tensors  []WriteTensor
		metadata map[string]string
		want     []string
	}{
		{"empty name", []WriteTensor{{Shape: []int{0}}}, nil, []string{"tensor 0", "empty name"}},
		{"reserved name", []WriteTensor{{Name: "__metadata__", Shape: []int{0}}}, nil, []string{"reserved"}},
		{"duplicate name", []WriteTensor{{Name: "a", Shape: []int{0}}, {Name: "a", Shape: []int{0}}}, nil, []string{`"a"`, "unique"}},
		{"invalid UTF-8 name", []WriteTensor{{Name: "a\xff", Shape: []int{0}}}, nil, []string{"UTF-8"}},
		{"negative dim", []WriteTensor{{Name: "a", Shape: []int{2, -1}}}, nil, []string{`tensor "a"`, "negative"}},
		{"overflow", []WriteTensor{{Name: "a", Shape: []int{math.MaxInt, math.MaxInt, math.MaxInt}}}, nil, []string{`tensor "a"`, "overflows"}},
		{"too few values", []WriteTensor{{Name: "a", Shape: []int{2, 2}, F32: seq(3, 0)}}, nil, []string{`tensor "a"`, "3 float32 values", "needs 4"}},
		{"values for scalar", []WriteTensor{{Name: "a", Shape: []int{}}}, nil, []string{`tensor "a"`, "needs 1"}},
		{"raw wrong length", []WriteTensor{{Name: "a", Shape: []int{2}, DType: I64, Raw: make([]byte, 8)}}, nil, []string{`tensor "a"`, "8 bytes", "needs 16"}},
		{"raw without dtype", []WriteTensor{{Name: "a", Shape: []int{1}, Raw: make([]byte, 4)}}, nil, []string{`tensor "a"`, "unknown DType"}},
		{"raw unknown dtype", []WriteTensor{{Name: "a", Shape: []int{1}, DType: "Q8", Raw: make([]byte, 1)}}, nil, []string{`"Q8"`}},
		{"both F32 and raw", []WriteTensor{{Name: "a", Shape: []int{1}, DType: F32, F32: []float32{1}, Raw: make([]byte, 4)}}, nil, []string{`tensor "a"`, "only one"}},
		{"F32 with other dtype", []WriteTensor{{Name: "a", Shape: []int{1}, DType: I32, F32: []float32{1}}}, nil, []string{`tensor "a"`, "only one"}},
		{"invalid UTF-8 metadata", nil, map[string]string{"k": "\xfe"}, []string{`"k"`, "UTF-8"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, tc.tensors, tc.metadata)
			if !errors.Is(err, ErrInvalidTensor) {
				t.Fatalf("err = %v, want ErrInvalidTensor", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes before failing", buf.Len())
			}
		})
	}
}

// failWriter accepts limit bytes and then fails.
type failWriter struct{ limit int }

var errDiskFull = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, errDiskFull
	}
	w.limit -= len(p)
	return len(p), nil
}

func TestWriteWriterError(t *testing.T) {
	tensors := []WriteTensor{
		{Name: "small", Shape: []int{4}, F32: seq(4, 0)},
		{Name: "big", Shape: []int{100000}, F32: seq(100000, 0)},
		{Name: "raw", Shape: []int{200000}, DType: U8, Raw: make([]byte, 200000)},
	}
	for _, limit := range []int{0, 100, 70000, 400000, 500000} {
		err := Write(&failWriter{limit: limit}, tensors, nil)
		if !errors.Is(err, errDiskFull) {
			t.Fatalf("limit %d: err = %v, want disk full", limit, err)
		}
	}
	if err := Write(&failWriter{limit: 1 << 30}, tensors, nil); err != nil {
		t.Fatalf("unlimited writer: %v", err)
	}
}

func TestWriteFileAndOpenErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	good := []WriteTensor{{Name: "a", Shape: []int{1}, F32: []float32{1}}}
	if err := WriteFile(path, good, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	// A failed write leaves the old file intact and no temporary files.
	err := WriteFile(path, []WriteTensor{{Name: "", Shape: []int{0}}}, nil)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, ErrInvalidTensor) {
		t.Fatalf("WriteFile invalid: err = %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("failed WriteFile modified the existing file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory has %d entries, want 1 (temporary file left behind?)", len(entries))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode = %v, want 0644", st.Mode().Perm())
	}

	corrupt := filepath.Join(dir, "corrupt.safetensors")
	if err := os.WriteFile(corrupt, buildFile(`{"a":1}`, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	missingDir := filepath.Join(dir, "no", "such", "x.safetensors")
	tests := []struct {
		name   string
		err    func() error
		path   string
		wantIs error
	}{
		{"write into missing dir", func() error { return WriteFile(missingDir, good, nil) }, missingDir, os.ErrNotExist},
		{"open missing", func() error { _, err := Open(missingDir); return err }, missingDir, os.ErrNotExist},
		{"open directory", func() error { _, err := Open(dir); return err }, dir, nil},
		{"open corrupt", func() error { _, err := Open(corrupt); return err }, corrupt, ErrInvalidFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name %s", err, tc.path)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q is not %v", err, tc.wantIs)
			}
		})
	}

	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = f.ReadFloat32("missing", nil)
	if !errors.Is(err, ErrTensorNotFound) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want not-found naming %s", err, path)
	}
}

func TestHeaderIsACopy(t *testing.T) {
	f := mustRead(t, mustWrite(t, []WriteTensor{{Name: "a", Shape: []int{2}, F32: []float32{1, 2}}}, map[string]string{"k": "v"}))
	h := f.Header()
	h.Tensors[0].Shape[0] = 99
	h.Tensors[0].Name = "zzz"
	h.Metadata["k"] = "changed"
	info, _ := f.Info("a")
	info.Shape[0] = 77
	m := f.Metadata()
	m["new"] = "x"
	if info2, ok := f.Info("a"); !ok || info2.Shape[0] != 2 {
		t.Fatalf("Info after mutation = %+v, %v", info2, ok)
	}
	if got := f.Metadata(); len(got) != 1 || got["k"] != "v" {
		t.Fatalf("Metadata after mutation = %v", got)
	}
}

func TestConcurrentReads(t *testing.T) {
	const n = 10000
	f := mustRead(t, mustWrite(t, []WriteTensor{
		{Name: "a", Shape: []int{n}, F32: seq(n, 0)},
		{Name: "b", Shape: []int{n}, F32: seq(n, 5)},
	}, nil))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			name, start := "a", float32(0)
			if i%2 == 1 {
				name, start = "b", 5
			}
			got, err := f.Float32s(name)
			if err == nil && !slices.Equal(got, seq(n, start)) {
				err = errors.New("wrong values for " + name)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestDTypeSize(t *testing.T) {
	tests := []struct {
		d    DType
		want int
	}{
		{Bool, 1}, {U8, 1}, {I8, 1}, {F8E5M2, 1}, {F8E4M3, 1}, {F8E8M0, 1},
		{I16, 2}, {U16, 2}, {F16, 2}, {BF16, 2},
		{I32, 4}, {U32, 4}, {F32, 4},
		{C64, 8}, {F64, 8}, {I64, 8}, {U64, 8},
		{"", 0}, {"f32", 0}, {"F4", 0},
	}
	for _, tc := range tests {
		if got := tc.d.Size(); got != tc.want {
			t.Errorf("%q.Size() = %d, want %d", tc.d, got, tc.want)
		}
		if tc.d.Valid() != (tc.want > 0) {
			t.Errorf("%q.Valid() = %v", tc.d, tc.d.Valid())
		}
	}
}
