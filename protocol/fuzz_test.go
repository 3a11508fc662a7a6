package protocol

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzReadMessage feeds arbitrary bytes to a Reader. It must never panic;
// every error must be io.EOF or an *Error; every message it returns must
// re-encode, and decode again to the same bytes and value.
func FuzzReadMessage(f *testing.F) {
	var all []byte
	for _, m := range sampleMessages() {
		b := frameBytes(f, m)
		f.Add(b)
		all = append(all, b...)
	}
	f.Add(all)
	f.Add(rawFrame(MsgHeartbeat, []byte{0xa3, 0x01, 0x05, 0x18, 0x63, 0x82, 0x01, 0x02, 0x61, 'z', 0xf5}))
	f.Add(rawFrame(MsgEvalResult, []byte{0xa3, 0x01, 0x61, 'e', 0x03, 0x01, 0x04, 0xa1, 0x61, 'l', 0xf9, 0x7e, 0x00}))
	f.Add([]byte{byte(MsgHello), 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader(bytes.NewReader(data), 64<<10)
		for i := 0; i < 256; i++ {
			m, err := rd.Read()
			if err != nil {
				if err == io.EOF {
					return
				}
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("error is not an *Error: %v", err)
				}
				if pe.Code == CodeFrameTooLarge || errors.Is(err, io.ErrUnexpectedEOF) {
					return // sticky: the stream is unusable
				}
				continue
			}
			checkReencode(t, m)
		}
	})
}

// checkReencode checks that m survives encode → decode → encode unchanged.
func checkReencode(t *testing.T, m Message) {
	t.Helper()
	enc1 := frameBytes(t, m)
	m2, err := NewReader(bytes.NewReader(enc1), 0).Read()
	if err != nil {
		t.Fatalf("re-encoded %s does not decode: %v\n%x", m.Type(), err, enc1)
	}
	enc2 := frameBytes(t, m2)
	if !bytes.Equal(enc1, enc2) {
		t.Fatalf("%s encodes differently after a round trip:\n%x\n%x", m.Type(), enc1, enc2)
	}
	m3, err := NewReader(bytes.NewReader(enc2), 0).Read()
	if err != nil {
		t.Fatal(err)
	}
	// NaN != NaN, so values holding NaN (metrics may) are compared by
	// their deterministic encoding above only.
	if !bytes.Contains(enc1, []byte{0xf9, 0x7e, 0x00}) && !reflect.DeepEqual(m2, m3) {
		t.Fatalf("%s decodes to a different value after a round trip:\n%#v\n%#v", m.Type(), m2, m3)
	}
}

// FuzzTensorReader feeds arbitrary bytes to a TensorReader. It must never
// panic, never accept a stream whose hash does not match, and allocate only
// within its limits (the ones here are small).
func FuzzTensorReader(f *testing.F) {
	lim := Limits{MaxTensors: 64, MaxTotalBytes: 1 << 20, MaxHeaderBytes: 64 << 10, ChunkSize: 64}
	// Small seeds, so that mutations often land in the header and trailer.
	ts := sampleTensors(0)
	ts[5].Info.Shape = []int{3, 3}
	ts[5].F32 = ts[5].F32[:9]
	full, _ := streamBytes(f, ts, lim, false)
	f.Add(full)
	f.Add(full[:len(full)-10]) // truncated trailer
	for i := range ts {
		one, _ := streamBytes(f, ts[i:i+1], lim, false)
		f.Add(one)
	}
	empty, _ := streamBytes(f, nil, lim, false)
	f.Add(empty)
	f.Add(undigestedStream(f, ts[:2]))
	f.Add(frameBytes(f, NewError(CodeNotFound, "no such version")))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		tr, err := NewTensorReader(r, lim)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error is not an *Error: %v", err)
			}
			return
		}
		start := len(data) - r.Len()
		h := tr.Header()
		if h.TotalBytes > lim.MaxTotalBytes || len(h.Tensors) > lim.MaxTensors {
			t.Fatalf("accepted a header over the limits: %d bytes, %d tensors", h.TotalBytes, len(h.Tensors))
		}
		for i := 0; ; i++ {
			info, ok := tr.Next()
			if !ok {
				break
			}
			switch {
			case i%3 == 2:
				err = tr.Skip()
			case info.DType == DTypeF32 && i%3 == 0:
				err = tr.ReadInto(make([]float32, info.NumElements()))
			case info.DType == DTypeF32:
				err = tr.ReadFunc(func([]float32, int) error { return nil })
			case info.DType == DTypeI32:
				err = tr.ReadFuncI32(func([]int32, int) error { return nil })
			default:
				err = tr.ReadIntoU32(make([]uint32, info.NumElements()))
			}
			if err != nil {
				return
			}
		}
		if err := tr.Finish(); err != nil {
			return
		}
		if tr.Digest() == DigestNone {
			if h.Digest != DigestNone || tr.Sum() != (Hash{}) {
				t.Fatalf("unhashed stream with digest %q and sum %s", h.Digest, tr.Sum())
			}
			return
		}
		raw := data[start : start+int(h.TotalBytes)]
		if tr.Sum() != Hash(sha256.Sum256(raw)) {
			t.Fatal("Finish accepted data whose hash differs")
		}
	})
}
