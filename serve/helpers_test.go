package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/fedq/fedq/compute"
)

func quietLogger() *slog.Logger {
	if os.Getenv("FEDQ_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// tinySpec is a small image model: input [1, 4, 4], 3 classes.
func tinySpec() compute.Spec {
	return compute.Spec{Name: "tiny", Input: []int{1, 4, 4}, Classes: 3, Layers: []compute.LayerSpec{
		{Type: compute.LayerFlatten}, {Type: compute.LayerDense, Out: 8}, {Type: compute.LayerReLU}, {Type: compute.LayerDense, Out: 3},
	}}
}

func newNet(t testing.TB, spec compute.Spec, seed uint64) *compute.Model[float32] {
	t.Helper()
	m, err := compute.New[float32](spec, compute.Options{Seed: seed, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// model returns a model to serve (Swap freezes it) and a twin network with the same
// weights, never frozen, for reference.
func model(t testing.TB, spec compute.Spec, seed, version uint64) (*Model, *compute.Model[float32]) {
	return &Model{Net: newNet(t, spec, seed), Version: version}, newNet(t, spec, seed)
}

// inputs returns n samples of size values in [-1, 1), from seed.
func inputs(n, size int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 9))
	x := make([]float32, n*size)
	for i := range x {
		x[i] = float32(r.Float64()*2 - 1)
	}
	return x
}

// startServer runs s on a loopback test server and returns its base URL.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() { ts.Close(); s.Close() })
	return ts.URL
}

// inferBody is an infer request for x, shaped [n, shape...], each value in float32's
// shortest form.
func inferBody(x []float32, n int, shape []int, id string) []byte {
	return inferBodyBits(x, n, shape, id, 32)
}

// inferBodyBits is inferBody with each value in the shortest form of its float32 (bits
// 32) or of the float64 it widens to (bits 64, as Python and numpy clients write them).
func inferBodyBits(x []float32, n int, shape []int, id string, bits int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"id":%q,"inputs":[{"name":"input","datatype":"FP32","shape":[%d`, id, n)
	for _, d := range shape {
		fmt.Fprintf(&b, ",%d", d)
	}
	b.WriteString(`],"data":[`)
	for i, v := range x {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(float64(v), 'g', -1, bits))
	}
	b.WriteString("]}]}")
	return b.Bytes()
}

// inferResponse is an infer answer, numbers kept exact.
type inferResponse struct {
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	ID           string `json:"id"`
	Outputs      []struct {
		Name     string        `json:"name"`
		Datatype string        `json:"datatype"`
		Shape    []int         `json:"shape"`
		Data     []json.Number `json:"data"`
	} `json:"outputs"`
	Error string `json:"error"`
}

func (r *inferResponse) output(t testing.TB, name string) ([]float32, []int) {
	t.Helper()
	for _, o := range r.Outputs {
		if o.Name == name {
			v := make([]float32, len(o.Data))
			for i, d := range o.Data {
				f, err := strconv.ParseFloat(string(d), 32)
				if err != nil {
					t.Fatalf("output %s[%d] = %q: %v", name, i, d, err)
				}
				v[i] = float32(f)
			}
			return v, o.Shape
		}
	}
	t.Fatalf("no output %q in %+v", name, r)
	return nil, nil
}

// post sends body to url and decodes the answer.
func post(cl *http.Client, url string, body []byte) (int, *inferResponse, error) {
	resp, err := cl.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out inferResponse
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("decode %d answer: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, &out, nil
}

func get(t testing.TB, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode, out
}

func argmaxRef(logits []float32, classes int) []int {
	out := make([]int, len(logits)/classes)
	for i := range out {
		out[i] = argmax(logits[i*classes : (i+1)*classes])
	}
	return out
}
