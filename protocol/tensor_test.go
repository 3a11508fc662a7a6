package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// sampleTensors returns deterministic tensors of every dtype and some edge
// shapes (scalar, empty, sizes that do not divide chunk sizes).
func sampleTensors(seed uint64) []TensorRef {
	r := newRand(seed)
	u32 := make([]uint32, 10)
	for i := range u32 {
		u32[i] = r.Uint32()
	}
	i32 := make([]int32, 8)
	for i := range i32 {
		i32[i] = int32(r.Uint32())
	}
	return []TensorRef{
		{Info: TensorInfo{Name: "fc1.weight", DType: DTypeF32, Shape: []int{3, 4}}, F32: randF32(r, 12)},
		{Info: TensorInfo{Name: "mask", DType: DTypeU32, Shape: []int{10}}, U32: u32},
		{Info: TensorInfo{Name: "counts", DType: DTypeI32, Shape: []int{2, 2, 2}}, I32: i32},
		{Info: TensorInfo{Name: "scale", DType: DTypeF32, Shape: nil}, F32: []float32{float32(math.Inf(-1))}},
		{Info: TensorInfo{Name: "empty", DType: DTypeF32, Shape: []int{0, 5}}, F32: nil},
		{Info: TensorInfo{Name: "conv.weight", DType: DTypeF32, Shape: []int{1000, 33}}, F32: randF32(r, 33000)},
	}
}

// refWire encodes tensors with the portable reference encoder: what the raw
// part of a tensor stream must contain on any host.
func refWire(tensors []TensorRef) []byte {
	var b []byte
	for _, t := range tensors {
		for _, v := range t.F32 {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		for _, v := range t.I32 {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
		for _, v := range t.U32 {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
	}
	return b
}

// streamBytes writes a tensor stream into memory.
func streamBytes(tb testing.TB, tensors []TensorRef, lim Limits, portable bool) ([]byte, Hash) {
	tb.Helper()
	var buf bytes.Buffer
	tw := NewTensorWriter(lim)
	tw.portable = portable
	sum, err := tw.Write(&buf, tensors, map[string]string{"version": "4"})
	if err != nil {
		tb.Fatalf("Write: %v", err)
	}
	return buf.Bytes(), sum
}

// readAll reads every tensor of tr the way mode says and returns copies.
func readAll(tr *TensorReader, mode string) ([]TensorRef, error) {
	var out []TensorRef
	for i := 0; ; i++ {
		info, ok := tr.Next()
		if !ok {
			break
		}
		ref := TensorRef{Info: info}
		n := info.NumElements()
		var err error
		switch {
		case mode == "skip-odd" && i%2 == 1:
			err = tr.Skip()
		case mode == "func":
			switch info.DType {
			case DTypeF32:
				ref.F32 = make([]float32, n)
				err = tr.ReadFunc(func(c []float32, off int) error { copy(ref.F32[off:], c); return nil })
			case DTypeI32:
				ref.I32 = make([]int32, n)
				err = tr.ReadFuncI32(func(c []int32, off int) error { copy(ref.I32[off:], c); return nil })
			case DTypeU32:
				ref.U32 = make([]uint32, n)
				err = tr.ReadFuncU32(func(c []uint32, off int) error { copy(ref.U32[off:], c); return nil })
			}
		default:
			switch info.DType {
			case DTypeF32:
				ref.F32 = make([]float32, n)
				err = tr.ReadInto(ref.F32)
			case DTypeI32:
				ref.I32 = make([]int32, n)
				err = tr.ReadIntoI32(ref.I32)
			case DTypeU32:
				ref.U32 = make([]uint32, n)
				err = tr.ReadIntoU32(ref.U32)
			}
		}
		if err != nil {
			return out, err
		}
		out = append(out, ref)
	}
	return out, tr.Finish()
}

func TestTensorRoundTrip(t *testing.T) {
	want := sampleTensors(1)
	wantWire := refWire(want)
	wantSum := Hash(sha256.Sum256(wantWire))
	for _, chunk := range []int{4, 12, 4096, 0} {
		for _, mode := range []string{"into", "func", "skip-odd"} {
			for _, portable := range []bool{false, true} {
				name := fmt.Sprintf("chunk=%d/%s/portable=%v", chunk, mode, portable)
				t.Run(name, func(t *testing.T) {
					lim := Limits{ChunkSize: chunk}
					pr, pw := io.Pipe()
					go func() {
						tw := NewTensorWriter(lim)
						tw.portable = portable
						_, err := tw.Write(pw, want, nil)
						pw.CloseWithError(err)
					}()
					tr, err := NewTensorReader(pr, lim)
					if err != nil {
						t.Fatal(err)
					}
					tr.portable = portable
					got, err := readAll(tr, mode)
					if err != nil {
						t.Fatal(err)
					}
					if tr.Sum() != wantSum {
						t.Fatalf("Sum %s, want %s", tr.Sum(), wantSum)
					}
					if len(got) != len(want) {
						t.Fatalf("%d tensors read, want %d", len(got), len(want))
					}
					for i, w := range want {
						if mode == "skip-odd" && i%2 == 1 {
							continue // readAll returns only the Info of skipped tensors
						}
						g := got[i]
						if !reflect.DeepEqual(g.Info, w.Info) || !equalBits(g, w) {
							t.Fatalf("tensor %q differs", w.Info.Name)
						}
					}
				})
			}
		}
	}
	// The wire bytes are the same on both paths and match the reference.
	fast, s1 := streamBytes(t, want, Limits{}, false)
	slow, s2 := streamBytes(t, want, Limits{}, true)
	if !bytes.Equal(fast, slow) || s1 != wantSum || s2 != wantSum {
		t.Fatal("portable and fast writers disagree")
	}
	if !bytes.Contains(fast, wantWire) {
		t.Fatal("stream does not contain the reference little-endian bytes")
	}
}

// equalBits compares tensor data bit for bit (so NaN and -Inf compare).
func equalBits(a, b TensorRef) bool {
	return bytes.Equal(refWire([]TensorRef{a}), refWire([]TensorRef{b}))
}

func TestTensorStreamAfterUpdateHeader(t *testing.T) {
	// One stream: an UpdateHeader frame, then a tensor stream; the Reader
	// must not read past its frame.
	var buf bytes.Buffer
	hdr := &UpdateHeader{TaskID: "t", Round: 1, Examples: 10}
	if err := WriteMessage(&buf, hdr); err != nil {
		t.Fatal(err)
	}
	tensors := sampleTensors(2)
	if _, err := WriteTensors(&buf, tensors, nil); err != nil {
		t.Fatal(err)
	}
	r := iotest.OneByteReader(&buf)
	m, err := Expect[*UpdateHeader](NewReader(r, 0).Read())
	if err != nil || !reflect.DeepEqual(m, hdr) {
		t.Fatalf("header %v, %v", m, err)
	}
	tr, err := NewTensorReader(r, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(tr, "into"); err != nil {
		t.Fatal(err)
	}
}

// TestTensorStream40MBMemory checks that 40 MB cross a pipe with O(chunk)
// extra memory: the bytes go from the sender's slice to the receiver's.
func TestTensorStream40MBMemory(t *testing.T) {
	const n = 10 << 20 // 10 Mi float32 = 40 MiB
	src := randF32(newRand(3), n)
	ref := []TensorRef{{Info: TensorInfo{Name: "w", DType: DTypeF32, Shape: []int{n / 1024, 1024}}, F32: src}}
	dst := make([]float32, n)
	pipes := map[string]func() (io.ReadCloser, io.WriteCloser){
		"io.Pipe": func() (io.ReadCloser, io.WriteCloser) { return io.Pipe() },
		"net.Pipe": func() (io.ReadCloser, io.WriteCloser) {
			a, b := net.Pipe()
			return a, b
		},
	}
	for _, name := range []string{"io.Pipe", "net.Pipe"} {
		for _, mode := range []string{"into", "func"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				clear(dst)
				r, w := pipes[name]()
				var sum float64
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				errc := make(chan error, 1)
				go func() {
					_, err := WriteTensors(w, ref, nil)
					w.Close()
					errc <- err
				}()
				tr, err := NewTensorReader(r, Limits{})
				if err != nil {
					t.Fatal(err)
				}
				if mode == "into" {
					err = tr.ReadInto(dst)
				} else {
					err = tr.ReadFunc(func(c []float32, off int) error {
						for _, v := range c {
							sum += float64(v)
						}
						return nil
					})
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := tr.Finish(); err != nil {
					t.Fatal(err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				runtime.ReadMemStats(&after)
				r.Close()
				if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
					t.Fatalf("moving 40 MiB allocated %d bytes; want O(chunk)", d)
				}
				if mode == "into" && (dst[0] != src[0] || dst[n-1] != src[n-1] || dst[n/2] != src[n/2]) {
					t.Fatal("data differs")
				}
			})
		}
	}
}

func TestTensorCorruptionDetected(t *testing.T) {
	tensors := sampleTensors(4)
	stream, _ := streamBytes(t, tensors, Limits{}, false)
	wire := refWire(tensors)
	start := bytes.Index(stream, wire)
	end := start + len(wire)
	for _, pos := range []int{start, start + 1, (start + end) / 2, end - 1, len(stream) - 1} {
		t.Run(fmt.Sprint(pos), func(t *testing.T) {
			bad := bytes.Clone(stream)
			bad[pos] ^= 0x40
			tr, err := NewTensorReader(bytes.NewReader(bad), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = readAll(tr, "func")
			if !errors.Is(err, CodeHashMismatch) {
				t.Fatalf("err = %v, want hash mismatch", err)
			}
			if tr.Sum() != (Hash{}) {
				t.Fatal("Sum set for a stream that failed")
			}
		})
	}
}

func TestTensorTruncationDetected(t *testing.T) {
	stream, _ := streamBytes(t, sampleTensors(5)[:3], Limits{}, false)
	for cut := 0; cut < len(stream); cut++ {
		tr, err := NewTensorReader(bytes.NewReader(stream[:cut]), Limits{ChunkSize: 8})
		if err == nil {
			_, err = readAll(tr, "into")
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, CodeMalformed) {
			t.Fatalf("cut at %d of %d: err = %v, want malformed/unexpected EOF", cut, len(stream), err)
		}
	}
}

// headerStream builds a stream that starts with an unchecked TensorHeader.
func headerStream(tb testing.TB, h *TensorHeader) []byte {
	return rawFrame(MsgTensorHeader, mustEncode(tb, h))
}

func TestTensorHeaderLies(t *testing.T) {
	f32 := func(name string, shape ...int) TensorInfo {
		return TensorInfo{Name: name, DType: DTypeF32, Shape: shape}
	}
	many := make([]TensorInfo, 4097)
	for i := range many {
		many[i] = f32(fmt.Sprint(i))
	}
	tests := []struct {
		name  string
		input []byte
		code  ErrorCode
		small bool // must be refused with a small allocation
	}{
		{"total mismatch", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("a", 2, 3)}, TotalBytes: 100}), CodeInvalid, true},
		{"total missing", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("a", 2, 3)}}), CodeInvalid, true},
		{"too many tensors", headerStream(t, &TensorHeader{Tensors: many, TotalBytes: 4097 * 4}), CodeLimitExceeded, false},
		{"huge dims", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("a", 1<<30, 1<<30)}, TotalBytes: 1 << 62}), CodeLimitExceeded, true},
		{"dim over limit", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("a", math.MaxInt, 0)}}), CodeLimitExceeded, true},
		{"product overflow", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("a", 1<<30, 1<<30, 1<<30, 1<<30)}, TotalBytes: 16}), CodeLimitExceeded, true},
		{"over total limit", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("a", 1342177280)}, TotalBytes: 5 << 30}), CodeLimitExceeded, true},
		{"sum over limit", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("a", 1<<29), f32("b", 1<<29), f32("c", 1<<29)}, TotalBytes: 16}), CodeLimitExceeded, true},
		{"negative dim", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("a", -1, -4)}, TotalBytes: 16}), CodeInvalid, true},
		{"too many dims", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("a", 1, 1, 1, 1, 1, 1, 1, 1, 1)}, TotalBytes: 4}), CodeLimitExceeded, true},
		{"unknown dtype", headerStream(t, &TensorHeader{Tensors: []TensorInfo{{Name: "a", DType: "F64"}}, TotalBytes: 8}), CodeInvalid, true},
		{"duplicate name", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("a"), f32("a")}, TotalBytes: 8}), CodeInvalid, true},
		{"empty name", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32("")}, TotalBytes: 4}), CodeInvalid, true},
		{"long name", headerStream(t, &TensorHeader{Tensors: []TensorInfo{f32(strings.Repeat("n", 513))}, TotalBytes: 4}), CodeLimitExceeded, true},
		{"header frame too large", []byte{byte(MsgTensorHeader), 0x7f, 0, 0, 0}, CodeFrameTooLarge, true},
		{"header frame truncated", []byte{byte(MsgTensorHeader), 0x00, 0x3f, 0, 0, 0xa1}, CodeMalformed, true},
		{"not cbor", rawFrame(MsgTensorHeader, []byte{0xff}), CodeMalformed, true},
		{"wrong frame", frameBytes(t, &Heartbeat{Seq: 1}), CodeProtocol, true},
		{"empty stream", nil, CodeMalformed, true},
		{"peer error", frameBytes(t, NewError(CodeNotFound, "no version 9")), CodeNotFound, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Claimed data follows nowhere: the reader must refuse from the
			// header alone.
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			tr, err := NewTensorReader(bytes.NewReader(tt.input), Limits{})
			runtime.ReadMemStats(&after)
			if tr != nil || !errors.Is(err, tt.code) {
				t.Fatalf("err = %v, want %v", err, tt.code)
			}
			if d := after.TotalAlloc - before.TotalAlloc; tt.small && d > 64<<10 {
				t.Fatalf("allocated %d bytes to refuse a bad header", d)
			}
		})
	}
}

func TestTensorReaderMisuse(t *testing.T) {
	stream, _ := streamBytes(t, sampleTensors(6)[:2], Limits{}, false)
	tr, err := NewTensorReader(bytes.NewReader(stream), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.ReadIntoU32(make([]uint32, 12)); !errors.Is(err, CodeInternal) {
		t.Fatalf("wrong dtype: %v", err)
	}
	if err := tr.ReadInto(make([]float32, 11)); !errors.Is(err, CodeInternal) {
		t.Fatalf("wrong length: %v", err)
	}
	if err := tr.Finish(); !errors.Is(err, CodeInternal) {
		t.Fatalf("early Finish: %v", err)
	}
	// Nothing was consumed by the misuses: the stream still reads.
	if err := tr.ReadInto(make([]float32, 12)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("accumulator full")
	err = tr.ReadFuncU32(func([]uint32, int) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("callback error not returned: %v", err)
	}
	if err2 := tr.Finish(); err2 != err {
		t.Fatalf("error after a failed read is not sticky: %v", err2)
	}
}

func TestTensorReaderAfterAll(t *testing.T) {
	stream, _ := streamBytes(t, sampleTensors(6)[:1], Limits{}, false)
	tr, _ := NewTensorReader(bytes.NewReader(stream), Limits{})
	if err := tr.Skip(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Skip(); !errors.Is(err, CodeInternal) {
		t.Fatalf("Skip past the end: %v", err)
	}
	if err := tr.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Finish(); err != nil {
		t.Fatalf("second Finish: %v", err)
	}
}

func TestTensorTrailerErrors(t *testing.T) {
	stream, _ := streamBytes(t, sampleTensors(7)[:1], Limits{}, false)
	trailerAt := len(stream) - FrameHeaderSize - 36
	tests := []struct {
		name    string
		trailer []byte
		code    ErrorCode
	}{
		{"wrong type", frameBytes(t, &Heartbeat{Seq: 1}), CodeProtocol},
		{"too large", []byte{byte(MsgTensorTrailer), 0, 0, 1, 0}, CodeFrameTooLarge},
		{"zero hash", rawFrame(MsgTensorTrailer, []byte{0xa0}), CodeHashMismatch},
		{"bad cbor", rawFrame(MsgTensorTrailer, []byte{0xa1, 0x01}), CodeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append(bytes.Clone(stream[:trailerAt]), tt.trailer...)
			tr, err := NewTensorReader(bytes.NewReader(in), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := readAll(tr, "into"); !errors.Is(err, tt.code) {
				t.Fatalf("err = %v, want %v", err, tt.code)
			}
		})
	}
}

func TestTensorWriterRejects(t *testing.T) {
	tests := []struct {
		name    string
		tensors []TensorRef
		lim     Limits
		code    ErrorCode
	}{
		{"short slice", []TensorRef{{Info: TensorInfo{Name: "a", DType: DTypeF32, Shape: []int{3}}, F32: make([]float32, 2)}}, Limits{}, CodeInvalid},
		{"wrong slice", []TensorRef{{Info: TensorInfo{Name: "a", DType: DTypeU32, Shape: []int{3}}, F32: make([]float32, 3)}}, Limits{}, CodeInvalid},
		{"unknown dtype", []TensorRef{{Info: TensorInfo{Name: "a", DType: "BF16"}}}, Limits{}, CodeInvalid},
		{"duplicate", []TensorRef{{Info: TensorInfo{Name: "a", DType: DTypeF32}, F32: []float32{1}}, {Info: TensorInfo{Name: "a", DType: DTypeF32}, F32: []float32{1}}}, Limits{}, CodeInvalid},
		{"over limit", []TensorRef{{Info: TensorInfo{Name: "a", DType: DTypeF32, Shape: []int{3}}, F32: make([]float32, 3)}}, Limits{MaxTotalBytes: 8}, CodeLimitExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := NewTensorWriter(tt.lim).Write(&buf, tt.tensors, nil)
			if !errors.Is(err, tt.code) {
				t.Fatalf("err = %v, want %v", err, tt.code)
			}
			if buf.Len() != 0 {
				t.Fatal("bytes written despite the error")
			}
		})
	}
}

func TestPortableConversions(t *testing.T) {
	src := sampleTensors(8)[0].F32
	want := refWire([]TensorRef{{F32: src}})
	got := make([]byte, len(want))
	nativeToLE(got, src)
	if !bytes.Equal(got, want) {
		t.Fatal("nativeToLE differs from the reference encoding")
	}
	// leToNative turns wire bytes into host values: on this host, the
	// values that produced them.
	dst := make([]float32, len(src))
	b := asBytes(dst)
	copy(b, want)
	leToNative(b)
	for i := range dst {
		if math.Float32bits(dst[i]) != math.Float32bits(src[i]) && hostLittleEndian {
			t.Fatalf("element %d: %v, want %v", i, dst[i], src[i])
		}
	}
}

func TestNumElements(t *testing.T) {
	tests := []struct {
		shape []int
		want  int
	}{
		{nil, 1}, {[]int{0}, 0}, {[]int{2, 3}, 6}, {[]int{-1}, -1}, {[]int{math.MaxInt, math.MaxInt}, -1},
	}
	for _, tt := range tests {
		if got := (TensorInfo{Shape: tt.shape}).NumElements(); got != tt.want {
			t.Errorf("NumElements(%v) = %d, want %d", tt.shape, got, tt.want)
		}
	}
}

func TestWriteKnownHash(t *testing.T) {
	refs := []TensorRef{{Info: TensorInfo{Name: "w", DType: DTypeF32, Shape: []int{3}}, F32: []float32{1, 2, 3}}}
	var buf bytes.Buffer
	sum, err := WriteTensors(&buf, refs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sum  Hash
		ok   bool
	}{{"right", sum, true}, {"wrong", Hash{1}, false}} {
		var b bytes.Buffer
		if err := NewTensorWriter(Limits{}).WriteKnown(&b, refs, nil, tc.sum); err != nil {
			t.Fatal(err)
		}
		if tc.ok && !bytes.Equal(b.Bytes(), buf.Bytes()) {
			t.Fatalf("%s: WriteKnown wrote other bytes than Write", tc.name)
		}
		tr, err := NewTensorReader(&b, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		tr.Next()
		dst := make([]float32, 3)
		if err := tr.ReadInto(dst); err != nil {
			t.Fatal(err)
		}
		err = tr.Finish()
		if tc.ok != (err == nil) || (!tc.ok && CodeOf(err) != CodeHashMismatch) {
			t.Fatalf("%s: Finish = %v", tc.name, err)
		}
	}
}

// TestWriteRaw checks that a stream written from raw little-endian bytes is byte for
// byte the stream Write produces from the same tensors, across chunk boundaries, and
// that short data is an error.
func TestWriteRaw(t *testing.T) {
	tensors := sampleTensors(7)
	var want bytes.Buffer
	sum, err := NewTensorWriter(Limits{ChunkSize: 8}).Write(&want, tensors, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	layout := make([]TensorInfo, len(tensors))
	for i := range tensors {
		layout[i] = tensors[i].Info
		b, err := tensors[i].data()
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < len(b); j += 4 { // host order → little-endian
			raw = binary.LittleEndian.AppendUint32(raw, binary.NativeEndian.Uint32(b[j:]))
		}
	}
	for _, chunk := range []int{8, 12, 64 << 10} {
		var got bytes.Buffer
		if err := NewTensorWriter(Limits{ChunkSize: chunk}).WriteRaw(&got, layout, map[string]string{"k": "v"}, sum, bytes.NewReader(raw)); err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("chunk %d: WriteRaw wrote other bytes than Write", chunk)
		}
	}
	err = NewTensorWriter(Limits{}).WriteRaw(io.Discard, layout, nil, sum, bytes.NewReader(raw[:len(raw)-4]))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short data: %v", err)
	}
}

// One writer and one reader configuration serve streams of growing sizes: the chunk
// buffer, sized to the first (small) stream, grows for the larger ones.
func TestChunkBufferGrows(t *testing.T) {
	tw := NewTensorWriter(Limits{ChunkSize: 64 << 10})
	for _, n := range []int{1, 3, 1000, 40000, 2} {
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(i) - 0.5
		}
		layout := []TensorInfo{{Name: "w", DType: DTypeF32, Shape: []int{n}}}
		raw := make([]byte, 0, 4*n)
		for _, v := range src {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
		var stream bytes.Buffer
		if err := tw.WriteRaw(&stream, layout, nil, HashWeights(src), bytes.NewReader(raw)); err != nil {
			t.Fatalf("%d values: %v", n, err)
		}
		tr, err := NewTensorReader(&stream, Limits{ChunkSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []float32
		if err := tr.ReadFunc(func(c []float32, _ int) error { got = append(got, c...); return nil }); err != nil {
			t.Fatalf("%d values: %v", n, err)
		}
		if err := tr.Finish(); err != nil {
			t.Fatalf("%d values: %v", n, err)
		}
		if !slices.Equal(got, src) {
			t.Fatalf("%d values: read back other values", n)
		}
		if want := min(64<<10, 4*n); 4*len(tw.chunk) < want || (n == 1 && 4*len(tw.chunk) != 4) {
			t.Fatalf("after %d values the chunk buffer holds %d bytes, want at least %d (and 4 for the first stream)", n, 4*len(tw.chunk), want)
		}
	}
}

// undigestedStream writes tensors as a stream with DigestNone.
func undigestedStream(tb testing.TB, tensors []TensorRef) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := NewTensorWriter(Limits{})
	if err := tw.SetDigest(DigestNone); err != nil {
		tb.Fatal(err)
	}
	sum, err := tw.Write(&buf, tensors, nil)
	if err != nil {
		tb.Fatalf("Write: %v", err)
	}
	if sum != (Hash{}) {
		tb.Fatalf("Write with DigestNone returned hash %s", sum)
	}
	return buf.Bytes()
}

func TestTensorDigestNone(t *testing.T) {
	want := sampleTensors(11)
	stream := undigestedStream(t, want)
	hashed, _ := streamBytes(t, want, Limits{}, false)
	// Same data, no hash in the trailer: the stream is 32 bytes shorter (the
	// hash) plus the header's digest field.
	if !bytes.Contains(stream, refWire(want)) {
		t.Fatal("undigested stream does not hold the reference bytes")
	}
	if len(stream) >= len(hashed) {
		t.Fatalf("undigested stream %d bytes, hashed %d: the trailer should carry no hash", len(stream), len(hashed))
	}
	for _, mode := range []string{"into", "func", "skip-odd"} {
		t.Run(mode, func(t *testing.T) {
			tr, err := NewTensorReader(bytes.NewReader(stream), Limits{ChunkSize: 12})
			if err != nil {
				t.Fatal(err)
			}
			if tr.Digest() != DigestNone || tr.Header().Digest != DigestNone {
				t.Fatalf("Digest() = %q, header's %q: want an undigested stream", tr.Digest(), tr.Header().Digest)
			}
			got, err := readAll(tr, mode)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Sum() != (Hash{}) {
				t.Fatalf("Sum %s for a stream without a digest", tr.Sum())
			}
			for i, w := range want {
				if mode != "skip-odd" || i%2 == 0 {
					if !equalBits(got[i], w) {
						t.Fatalf("tensor %q differs", w.Info.Name)
					}
				}
			}
		})
	}
	// A default writer still hashes, and says nothing about its digest (the
	// bytes of a stream are those of fedq/1 before digests were named).
	tr, err := NewTensorReader(bytes.NewReader(hashed), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Digest() != DigestSHA256 || tr.Header().Digest != "" {
		t.Fatalf("default stream: Digest() = %q, header's %q", tr.Digest(), tr.Header().Digest)
	}
	// SetDigest(DigestSHA256) goes back to hashing.
	tw := NewTensorWriter(Limits{})
	for _, d := range []Digest{DigestNone, DigestSHA256} {
		if err := tw.SetDigest(d); err != nil {
			t.Fatal(err)
		}
	}
	if sum, err := tw.Write(io.Discard, want, nil); err != nil || sum != Hash(sha256.Sum256(refWire(want))) {
		t.Fatalf("after SetDigest(sha256): sum %s, err %v", sum, err)
	}
	if err := tw.SetDigest("md5"); err == nil {
		t.Fatal("SetDigest accepted an unknown digest")
	}
}

func TestTensorDigestErrors(t *testing.T) {
	tensors := sampleTensors(12)[:1]
	undigested := undigestedStream(t, tensors)
	hashed, sum := streamBytes(t, tensors, Limits{}, false)
	hdr := TensorHeader{Tensors: []TensorInfo{tensors[0].Info}, TotalBytes: uint64(4 * tensors[0].Info.NumElements())}
	tests := []struct {
		name   string
		stream []byte
		code   ErrorCode
	}{
		// A hash where none was declared is refused rather than ignored.
		{"hash on an undigested stream", append(bytes.Clone(undigested[:len(undigested)-FrameHeaderSize-1]), frameBytes(t, &TensorTrailer{SHA256: sum})...), CodeMalformed},
		// A hashed stream whose trailer lost its hash fails as before.
		{"no hash on a hashed stream", append(bytes.Clone(hashed[:len(hashed)-FrameHeaderSize-36]), rawFrame(MsgTensorTrailer, []byte{0xa0})...), CodeHashMismatch},
		{"unknown digest", func() []byte { h := hdr; h.Digest = "crc32"; return headerStream(t, &h) }(), CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := NewTensorReader(bytes.NewReader(tt.stream), Limits{})
			if err == nil {
				_, err = readAll(tr, "into")
			}
			if !errors.Is(err, tt.code) {
				t.Fatalf("err = %v, want %v", err, tt.code)
			}
		})
	}
}
