package serve

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/fedq/fedq/compute"
)

// BenchmarkForwardBatch64 is the raw batched inference throughput of a model: one
// Forward of 64 images at a time, one thread, no HTTP. Compare its samples/s with
// BenchmarkServeHTTP's for the same model.
func BenchmarkForwardBatch64(b *testing.B) {
	for _, name := range []string{"2nn", "cnn"} {
		b.Run(name, func(b *testing.B) {
			spec, _ := compute.BuiltinSpec(name)
			m := newNet(b, spec, 1)
			if err := m.Freeze(); err != nil { // as served
				b.Fatal(err)
			}
			x := inputs(64, m.InputSize(), 1)
			for b.Loop() {
				m.Forward(x, 64, false)
			}
			b.ReportMetric(float64(64*b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkForwardSmallBatch is what a Forward costs per image at the batch sizes a
// server forms (1, 2, 4 images lightly loaded; about 8 for the 2nn under wrk's 64
// connections) beside a full one, for a model as trained
// ("plain") and as served (frozen: dense weights kept transposed, see compute.Model.Freeze).
func BenchmarkForwardSmallBatch(b *testing.B) {
	for _, name := range []string{"2nn", "cnn"} {
		spec, _ := compute.BuiltinSpec(name)
		plain, frozen := newNet(b, spec, 1), newNet(b, spec, 1)
		if err := frozen.Freeze(); err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 2, 4, 8, 64} {
			for _, v := range []struct {
				kind string
				m    *compute.Model[float32]
			}{{"plain", plain}, {"frozen", frozen}} {
				b.Run(fmt.Sprintf("%s/%s/batch%d", name, v.kind, n), func(b *testing.B) {
					x := inputs(n, v.m.InputSize(), 1)
					for b.Loop() {
						v.m.Forward(x, n, false)
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N)/1e3, "µs/image")
				})
			}
		}
	}
}

// BenchmarkServeHTTP is the served throughput: concurrent clients (8 per GOMAXPROCS,
// in this process) each posting single-image JSON infer requests over loopback HTTP to
// a server that batches them dynamically (max batch 64, max wait 2 ms).
func BenchmarkServeHTTP(b *testing.B) {
	for _, name := range []string{"2nn", "cnn"} {
		b.Run(name, func(b *testing.B) {
			spec, _ := compute.BuiltinSpec(name)
			s := New(Options{Logger: quietLogger()})
			if err := s.Swap(name, &Model{Net: newNet(b, spec, 1), Version: 1}); err != nil {
				b.Fatal(err)
			}
			url := startServer(b, s) + "/v2/models/" + name + "/infer"
			body := inferBody(inputs(1, 784, 1), 1, []int{1, 28, 28}, "")
			cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 1024}, Timeout: 10 * time.Second}
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := cl.Post(url, "application/json", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkDecodeInfer2nn is the cost of decoding one single-image JSON request:
// "random" holds 784 random float32 values in their shortest form (up to nine
// significant digits), "pixels" an image as clients send MNIST — byte/255 in float32's
// shortest form, four fifths of them 0 — and "pixels-float64" the same image as Python
// and numpy write float32s: the shortest form of the float64 (up to 17 digits).
func BenchmarkDecodeInfer2nn(b *testing.B) {
	for _, c := range []struct {
		name string
		x    []float32
		bits int
	}{{"random", inputs(1, 784, 1), 32}, {"pixels", pixels(), 32}, {"pixels-float64", pixels(), 64}} {
		b.Run(c.name, func(b *testing.B) {
			body := inferBodyBits(c.x, 1, []int{1, 28, 28}, "", c.bits)
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := decodeInfer(body, []int{1, 28, 28}, 784); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// pixels is one image as clients send MNIST: byte/255, four fifths of it 0.
func pixels() []float32 {
	x := make([]float32, 784)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range x {
		if r.IntN(5) == 0 {
			x[i] = float32(r.IntN(256)) / 255
		}
	}
	return x
}

// BenchmarkInferHandler is the server's own work per single-image 2nn request (an MNIST
// image's pixels, as JSON numbers or binary tensor data), without sockets: concurrent
// goroutines (8 per GOMAXPROCS) call the handler directly with a reused request and a
// response writer that discards, so ns/op and allocs/op are the handler's decode,
// batching hand-off, forward pass and reply — what `fedq serve` adds to net/http's
// per-request cost.
func BenchmarkInferHandler(b *testing.B) {
	spec, _ := compute.BuiltinSpec("2nn")
	x := pixels()
	bin, headLen := binaryBody(x, []int{1, 1, 28, 28}, 4*len(x))
	for _, c := range []struct {
		name   string
		body   []byte
		header map[string]string
	}{
		{"json", inferBody(x, 1, []int{1, 28, 28}, ""), map[string]string{"Content-Type": "application/json"}},
		{"binary", bin, map[string]string{"Content-Type": "application/octet-stream", HeaderContentLength: fmt.Sprint(headLen)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := New(Options{Logger: quietLogger()})
			b.Cleanup(s.Close)
			if err := s.Swap("2nn", &Model{Net: newNet(b, spec, 1), Version: 1}); err != nil {
				b.Fatal(err)
			}
			h := s.Handler()
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				body := &bodyReader{}
				r, err := http.NewRequest(http.MethodPost, "/v2/models/2nn/infer", body)
				if err != nil {
					b.Error(err)
					return
				}
				for k, v := range c.header {
					r.Header.Set(k, v)
				}
				r.ContentLength = int64(len(c.body))
				w := &discardWriter{header: http.Header{}}
				for pb.Next() {
					body.Reset(c.body)
					w.code = 0
					h.ServeHTTP(w, r)
					if w.code != 0 && w.code != http.StatusOK {
						b.Errorf("status %d", w.code)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
		})
	}
}

// bodyReader is a request body that can be rewound for the next request.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

// discardWriter is a ResponseWriter that keeps only the status code.
type discardWriter struct {
	header http.Header
	code   int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(code int) { w.code = code }
