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
// lightly loaded server forms (1, 2, 4 images) beside a full one, for a model as trained
// ("plain") and as served (frozen: dense weights kept transposed, see compute.Model.Freeze).
func BenchmarkForwardSmallBatch(b *testing.B) {
	for _, name := range []string{"2nn", "cnn"} {
		spec, _ := compute.BuiltinSpec(name)
		plain, frozen := newNet(b, spec, 1), newNet(b, spec, 1)
		if err := frozen.Freeze(); err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 2, 4, 64} {
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
// "random" holds 784 random float32 values (nine significant digits, the slow path of
// number parsing), "pixels" an image as clients send MNIST — byte/255 in float32's
// shortest form, four fifths of them 0.
func BenchmarkDecodeInfer2nn(b *testing.B) {
	pixels := make([]float32, 784)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range pixels {
		if r.IntN(5) == 0 {
			pixels[i] = float32(r.IntN(256)) / 255
		}
	}
	for _, c := range []struct {
		name string
		x    []float32
	}{{"random", inputs(1, 784, 1)}, {"pixels", pixels}} {
		b.Run(c.name, func(b *testing.B) {
			body := inferBody(c.x, 1, []int{1, 28, 28}, "")
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := decodeInfer(body, []int{1, 28, 28}, 784); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
