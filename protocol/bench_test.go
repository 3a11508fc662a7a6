package protocol

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkTensorStream40MB moves a 40 MiB model (one tensor per layer of a
// small MLP scaled up) across an io.Pipe: header, raw bytes with SHA-256 on
// both sides, trailer. MB/s is the end-to-end throughput.
func BenchmarkTensorStream40MB(b *testing.B) {
	r := newRand(9)
	shapes := [][]int{{4096, 1024}, {1024}, {2048, 2048}, {2048}, {1024, 2048}, {1024}, {10, 1024}, {10}}
	var refs []TensorRef
	var dsts [][]float32
	var total int64
	for i, s := range shapes {
		info := TensorInfo{Name: "layer" + string(rune('a'+i)), DType: DTypeF32, Shape: s}
		n := info.NumElements()
		refs = append(refs, TensorRef{Info: info, F32: randF32(r, n)})
		dsts = append(dsts, make([]float32, n))
		total += int64(4 * n)
	}
	for _, mode := range []string{"ReadInto", "ReadFunc"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(total)
			b.ReportAllocs()
			tw := NewTensorWriter(Limits{})
			for b.Loop() {
				pr, pw := io.Pipe()
				go func() {
					_, err := tw.Write(pw, refs, nil)
					pw.CloseWithError(err)
				}()
				tr, err := NewTensorReader(pr, Limits{})
				if err != nil {
					b.Fatal(err)
				}
				var acc float32
				for i := range refs {
					if mode == "ReadInto" {
						err = tr.ReadInto(dsts[i])
					} else {
						err = tr.ReadFunc(func(c []float32, _ int) error {
							for _, v := range c {
								acc += v
							}
							return nil
						})
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				if err := tr.Finish(); err != nil {
					b.Fatal(err)
				}
				_ = acc
			}
		})
	}
}

// BenchmarkWriteMessage measures encoding and framing a control message
// with a reused Writer.
func BenchmarkWriteMessage(b *testing.B) {
	for _, m := range []Message{&Heartbeat{Seq: 1, SentAtMs: 1_700_000_000_000}, sampleMessages()[8]} {
		b.Run(m.Type().String(), func(b *testing.B) {
			w := NewWriter(io.Discard, 0)
			b.ReportAllocs()
			for b.Loop() {
				if err := w.Write(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadMessage measures reading, decoding and validating a control
// message with a reused Reader.
func BenchmarkReadMessage(b *testing.B) {
	for _, m := range []Message{&Heartbeat{Seq: 1, SentAtMs: 1_700_000_000_000}, sampleMessages()[8]} {
		b.Run(m.Type().String(), func(b *testing.B) {
			frame := frameBytes(b, m)
			src := bytes.NewReader(frame)
			rd := NewReader(src, 0)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(frame)
				if _, err := rd.Read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
