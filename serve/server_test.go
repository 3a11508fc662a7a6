package serve

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedq/fedq/compute"
)

// Answers through HTTP are exactly what Forward computes on the same inputs: the logits
// bit for bit (shortest float32 decimals round-trip) and their argmax as labels.
func TestInferMatchesForward(t *testing.T) {
	spec2nn, _ := compute.BuiltinSpec("2nn")
	tests := []struct {
		name  string
		spec  compute.Spec
		n     int
		shape []int // per sample, as sent
	}{
		{"tiny one sample", tinySpec(), 1, []int{1, 4, 4}},
		{"tiny batch", tinySpec(), 7, []int{1, 4, 4}},
		{"tiny flat shape", tinySpec(), 3, []int{16}},
		{"2nn one image", spec2nn, 1, []int{1, 28, 28}},
		{"2nn 100 images, over max batch", spec2nn, 100, []int{1, 28, 28}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, ref := model(t, tc.spec, uint64(i+1), 7)
			s := New(Options{Logger: quietLogger()})
			if err := s.Swap("m", m); err != nil {
				t.Fatal(err)
			}
			url := startServer(t, s)
			x := inputs(tc.n, ref.InputSize(), uint64(100+i))
			code, resp, err := post(http.DefaultClient, url+"/v2/models/m/infer", inferBody(x, tc.n, tc.shape, "req-1"))
			if err != nil || code != 200 {
				t.Fatalf("infer: %d %+v %v", code, resp, err)
			}
			if resp.ModelName != "m" || resp.ModelVersion != "7" || resp.ID != "req-1" {
				t.Fatalf("answer header %+v", resp)
			}
			want := ref.Forward(x, tc.n, false)
			logits, shape := resp.output(t, LogitsName)
			if !slices.Equal(shape, []int{tc.n, tc.spec.Classes}) || !slices.Equal(logits, want) {
				t.Fatalf("logits %v %v, want %v", shape, logits, want)
			}
			labels, shape := resp.output(t, LabelName)
			wantLabels := argmaxRef(want, tc.spec.Classes)
			if !slices.Equal(shape, []int{tc.n}) || len(labels) != tc.n {
				t.Fatalf("labels shape %v", shape)
			}
			for k := range labels {
				if int(labels[k]) != wantLabels[k] {
					t.Fatalf("label %d = %v, want %d", k, labels[k], wantLabels[k])
				}
			}
		})
	}
}

// Nested data and a request for one output.
func TestInferNestedDataAndOutputSelection(t *testing.T) {
	m, ref := model(t, tinySpec(), 3, 1)
	s := New(Options{Logger: quietLogger()})
	if err := s.Swap("m", m); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s)
	x := inputs(2, 16, 5)
	var b strings.Builder
	b.WriteString(`{"inputs":[{"name":"input","datatype":"FP32","shape":[2,1,4,4],"data":[`)
	for n := range 2 {
		if n > 0 {
			b.WriteString(",")
		}
		b.WriteString("[[")
		for r := range 4 {
			if r > 0 {
				b.WriteString(",")
			}
			b.WriteString("[")
			for c := range 4 {
				if c > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, "%v", x[n*16+r*4+c])
			}
			b.WriteString("]")
		}
		b.WriteString("]]")
	}
	b.WriteString(`]}],"outputs":[{"name":"label"}]}`)
	code, resp, err := post(http.DefaultClient, url+"/v2/models/m/versions/1/infer", []byte(b.String()))
	if err != nil || code != 200 {
		t.Fatalf("infer: %d %+v %v", code, resp, err)
	}
	if len(resp.Outputs) != 1 || resp.Outputs[0].Name != LabelName || resp.Outputs[0].Datatype != DatatypeINT64 {
		t.Fatalf("outputs %+v", resp.Outputs)
	}
	labels, _ := resp.output(t, LabelName)
	want := argmaxRef(ref.Forward(x, 2, false), 3)
	if int(labels[0]) != want[0] || int(labels[1]) != want[1] {
		t.Fatalf("labels %v, want %v", labels, want)
	}
}

// Client errors are answered {"error": ...} with the right 4xx status.
func TestInferErrors(t *testing.T) {
	m, _ := model(t, tinySpec(), 1, 4)
	s := New(Options{Logger: quietLogger(), MaxBody: 4096})
	if err := s.Swap("m", m); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s)
	ok := string(inferBody(inputs(1, 16, 1), 1, []int{1, 4, 4}, ""))
	sixteen := strings.TrimSuffix(strings.Repeat("0.5,", 16), ",")
	tests := []struct {
		name, path, body string
		code             int
		msg              string
	}{
		{"valid", "/v2/models/m/infer", ok, 200, ""},
		{"malformed JSON", "/v2/models/m/infer", `{"inputs": [`, 400, "malformed"},
		{"not an object", "/v2/models/m/infer", `[1,2]`, 400, "malformed"},
		{"no inputs", "/v2/models/m/infer", `{"inputs": []}`, 400, "exactly one input"},
		{"wrong input name", "/v2/models/m/infer", strings.Replace(ok, `"input"`, `"x"`, 1), 400, "unknown input"},
		{"wrong datatype", "/v2/models/m/infer", strings.Replace(ok, "FP32", "INT32", 1), 400, "datatype"},
		{"wrong shape", "/v2/models/m/infer", strings.Replace(ok, "[1,1,4,4]", "[1,1,4,5]", 1), 400, "shape"},
		{"zero batch", "/v2/models/m/infer", strings.Replace(ok, "[1,1,4,4]", "[0,1,4,4]", 1), 400, "shape"},
		{"no batch dimension", "/v2/models/m/infer", strings.Replace(ok, "[1,1,4,4]", "[16]", 1), 400, "shape"},
		{"too few values", "/v2/models/m/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[2,16],"data":[` + sixteen + `]}]}`, 400, "values"},
		{"too many values", "/v2/models/m/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,16],"data":[` + sixteen + `,1]}]}`, 400, "more values"},
		{"NaN string", "/v2/models/m/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,16],"data":["NaN",` + sixteen[4:] + `]}]}`, 400, "finite"},
		{"NaN token", "/v2/models/m/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,16],"data":[NaN,` + sixteen[4:] + `]}]}`, 400, "malformed"},
		{"Inf by overflow", "/v2/models/m/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,16],"data":[1e39,` + sixteen[4:] + `]}]}`, 400, "finite"},
		{"null value", "/v2/models/m/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,16],"data":[null,` + sixteen[4:] + `]}]}`, 400, "finite"},
		{"names in another case", "/v2/models/m/infer", strings.Replace(strings.Replace(ok, `"inputs"`, `"Inputs"`, 1), `"datatype"`, `"DataType"`, 1), 200, ""},
		{"a member twice", "/v2/models/m/infer", strings.Replace(ok, `"datatype":"FP32"`, `"datatype":"FP32","datatype":"INT32"`, 1), 400, "duplicate"},
		{"not UTF-8", "/v2/models/m/infer", strings.Replace(ok, `"id":""`, "\"id\":\"\xff\"", 1), 400, "malformed"},
		{"unknown member", "/v2/models/m/infer", strings.Replace(ok, `"id":""`, `"id":"","priority":3`, 1), 200, ""},
		{"unknown output", "/v2/models/m/infer", strings.Replace(ok, "]}]}", `]}],"outputs":[{"name":"probs"}]}`, 1), 400, "unknown output"},
		{"unknown model", "/v2/models/nope/infer", ok, 404, "unknown model"},
		{"unknown version", "/v2/models/m/versions/3/infer", ok, 404, "no version"},
		{"oversized body", "/v2/models/m/infer", ok[:len(ok)-4] + strings.Repeat(" ", 5000) + "]}]}", 413, "over 4096 bytes"},
		{"unknown endpoint", "/v3/models/m/infer", ok, 404, "no such endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, resp, err := post(http.DefaultClient, url+tc.path, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(resp.Error, tc.msg) {
				t.Fatalf("got %d %q, want %d %q", code, resp.Error, tc.code, tc.msg)
			}
		})
	}
}

func TestHealthAndMetadata(t *testing.T) {
	s := New(Options{Logger: quietLogger(), Version: "v-test"})
	s.Register("m")
	url := startServer(t, s)
	if code, _ := get(t, url+"/v2/health/live"); code != 200 {
		t.Fatalf("live: %d", code)
	}
	if code, body := get(t, url+"/v2/health/ready"); code != 503 || body["ready"] != false {
		t.Fatalf("ready before a model: %d %v", code, body)
	}
	if code, _ := get(t, url+"/v2/models/m/ready"); code != 503 {
		t.Fatalf("model ready before load: %d", code)
	}
	if code, resp, _ := post(http.DefaultClient, url+"/v2/models/m/infer", inferBody(inputs(1, 16, 1), 1, []int{16}, "")); code != 503 {
		t.Fatalf("infer before load: %d %+v", code, resp)
	}
	m, _ := model(t, tinySpec(), 1, 12)
	if err := s.Swap("m", m); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, url+"/v2/health/ready"); code != 200 || body["ready"] != true {
		t.Fatalf("ready: %d %v", code, body)
	}
	if code, body := get(t, url+"/v2"); code != 200 || body["name"] != "fedq" || body["version"] != "v-test" {
		t.Fatalf("server metadata: %d %v", code, body)
	}
	code, meta := get(t, url+"/v2/models/m")
	want := `map[inputs:[map[datatype:FP32 name:input shape:[-1 1 4 4]]] name:m outputs:[map[datatype:FP32 name:logits shape:[-1 3]] map[datatype:INT64 name:label shape:[-1]]] platform:fedq versions:[12]]`
	if code != 200 || fmt.Sprint(meta) != want {
		t.Fatalf("model metadata: %d\n%v\nwant\n%v", code, meta, want)
	}
	if code, _ := get(t, url+"/v2/models/m/versions/12"); code != 200 {
		t.Fatalf("version metadata: %d", code)
	}
	if code, body := get(t, url+"/v2/models/m/ready"); code != 200 || body["ready"] != true {
		t.Fatalf("model ready: %d %v", code, body)
	}
	if code, _ := get(t, url+"/v2/models/other"); code != 404 {
		t.Fatalf("unknown model metadata: %d", code)
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`fedq_serve_model_version{model="m"} 12`, `fedq_serve_requests_total{code="503",handler="infer"} 1`,
		`fedq_serve_request_duration_seconds_bucket{handler="ready"`, "go_goroutines"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// Concurrent requests share forward passes. A phantom request in flight keeps the
// batcher from closing a batch early, so the batch is exactly MaxBatch samples.
func TestDynamicBatching(t *testing.T) {
	m, ref := model(t, tinySpec(), 2, 1)
	s := New(Options{Logger: quietLogger(), MaxBatch: 6, MaxWait: time.Minute})
	if err := s.Swap("m", m); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s)
	in := s.slot("m").cur.Load()
	in.coming.Add(1)
	defer in.coming.Add(-1)
	sizes := []int{1, 2, 3} // 6 samples in 3 requests: one batch
	var wg sync.WaitGroup
	errs := make(chan error, len(sizes))
	for i, n := range sizes {
		x := inputs(n, 16, uint64(i))
		want := make([]float32, 0, n*3)
		for k := range n { // row by row: a row's logits should not depend on its batch
			want = append(want, ref.Forward(x[k*16:(k+1)*16], 1, false)...)
		}
		wg.Go(func() {
			code, resp, err := post(http.DefaultClient, url+"/v2/models/m/infer", inferBody(x, n, []int{16}, ""))
			if err != nil || code != 200 {
				errs <- fmt.Errorf("request %d: %d %+v %v", i, code, resp, err)
				return
			}
			logits, _ := resp.output(t, LogitsName)
			for k := range want {
				if d := logits[k] - want[k]; d > 1e-5 || d < -1e-5 {
					errs <- fmt.Errorf("request %d logit %d = %v, want %v", i, k, logits[k], want[k])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(s.metrics.batch); n != 1 {
		t.Fatalf("%d batch histograms", n)
	}
	var count, sum float64
	mfs, err := s.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "fedq_serve_batch_samples" {
			hist := mf.GetMetric()[0].GetHistogram()
			count, sum = float64(hist.GetSampleCount()), hist.GetSampleSum()
		}
	}
	if count != 1 || sum != 6 {
		t.Fatalf("%v forward passes for %v samples, want one of 6", count, sum)
	}
}

// Without help, concurrent clients still get batches larger than one: requests that
// arrive during a forward pass form the next batch. Each client sends its own image
// and must get exactly its own logits back (request buffers are reused between
// requests; nothing decoded may point into them).
func TestConcurrentClientsBatch(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) { testConcurrentClientsBatch(t, workers) })
	}
}

func testConcurrentClientsBatch(t *testing.T, workers int) {
	spec, _ := compute.BuiltinSpec("2nn")
	m, ref := model(t, spec, 1, 1)
	s := New(Options{Logger: quietLogger(), MaxWait: 20 * time.Millisecond, Workers: workers})
	if err := s.Swap("m", m); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s)
	const clients = 16
	bodies, wants := make([][]byte, clients), make([][]float32, clients)
	for c := range clients {
		x := inputs(1, 784, uint64(c+1))
		bodies[c], wants[c] = inferBody(x, 1, []int{1, 28, 28}, ""), slices.Clone(ref.Forward(x, 1, false)) // Forward reuses its output
	}
	var largest atomic.Int64
	in := s.slot("m").cur.Load()
	in.observe = func(n int) { // before any request: the workers read it after the first
		for {
			l := largest.Load()
			if int64(n) <= l || largest.CompareAndSwap(l, int64(n)) {
				return
			}
		}
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for range 20 {
				code, resp, err := post(http.DefaultClient, url+"/v2/models/m/infer", bodies[c])
				if err != nil || code != 200 {
					t.Errorf("infer: %d %+v %v", code, resp, err)
					return
				}
				if logits, _ := resp.output(t, LogitsName); !slices.Equal(logits, wants[c]) {
					t.Errorf("client %d got logits %v, want its own %v", c, logits, wants[c])
					return
				}
			}
		})
	}
	wg.Wait()
	if largest.Load() < 2 {
		t.Fatalf("largest batch %d: 16 concurrent clients were never batched", largest.Load())
	}
	t.Logf("largest batch: %d samples", largest.Load())
}

// With two workers a batch is answered while the other worker is still busy with its
// own: here the first worker stalls after its batch, and the next request must not wait
// for it.
func TestWorkersRunBatchesAtOnce(t *testing.T) {
	m, ref := model(t, tinySpec(), 1, 1)
	s := New(Options{Logger: quietLogger(), Workers: 2, MaxBatch: 1})
	if err := s.Swap("m", m); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s)
	in := s.slot("m").cur.Load()
	stalled, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	var first atomic.Bool
	in.observe = func(int) {
		if first.CompareAndSwap(false, true) { // not sync.Once: its other callers would wait too
			close(stalled)
			<-release
		}
	}
	cl := &http.Client{Timeout: 10 * time.Second}
	for i := range 3 {
		x := inputs(1, 16, uint64(i+1))
		code, resp, err := post(cl, url+"/v2/models/m/infer", inferBody(x, 1, []int{1, 4, 4}, ""))
		if err != nil || code != 200 {
			t.Fatalf("request %d with a worker stalled: %d %+v %v", i, code, resp, err)
		}
		if logits, _ := resp.output(t, LogitsName); !slices.Equal(logits, ref.Forward(x, 1, false)) {
			t.Fatalf("request %d: logits %v differ from the model's", i, logits)
		}
		if i == 0 {
			<-stalled
		}
	}
}

// Swapping versions under load fails no request, and every answer comes from a version
// that was loaded — with that version's logits.
func TestHotSwapUnderLoad(t *testing.T) {
	const versions = 6
	spec := tinySpec()
	x := inputs(1, 16, 77)
	want := map[string][]float32{}
	var models []*Model
	for v := uint64(1); v <= versions; v++ {
		m, ref := model(t, spec, 1000+v, v)
		models = append(models, m)
		want[m.VersionString()] = append([]float32(nil), ref.Forward(x, 1, false)...)
	}
	s := New(Options{Logger: quietLogger(), MaxWait: 200 * time.Microsecond})
	if err := s.Swap("m", models[0]); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s)
	body := inferBody(x, 1, []int{1, 4, 4}, "")
	stop := make(chan struct{})
	var served sync.Map
	var total atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, resp, err := post(http.DefaultClient, url+"/v2/models/m/infer", body)
				if err != nil || code != 200 {
					t.Errorf("infer during swaps: %d %+v %v", code, resp, err)
					return
				}
				w, ok := want[resp.ModelVersion]
				if !ok {
					t.Errorf("answer from version %q, never loaded", resp.ModelVersion)
					return
				}
				logits, _ := resp.output(t, LogitsName)
				for k := range w {
					if d := logits[k] - w[k]; d > 1e-5 || d < -1e-5 {
						t.Errorf("version %s logits %v, want %v", resp.ModelVersion, logits, w)
						return
					}
				}
				served.Store(resp.ModelVersion, true)
				total.Add(1)
			}
		})
	}
	for _, m := range models[1:] {
		time.Sleep(30 * time.Millisecond)
		old := s.slot("m").cur.Load()
		if err := s.Swap("m", m); err != nil {
			t.Fatal(err)
		}
		select { // the old batcher stops once its requests are answered
		case <-old.stopped:
		case <-time.After(5 * time.Second):
			t.Fatalf("version %d's batcher did not stop after the swap", old.model.Version)
		}
	}
	time.Sleep(30 * time.Millisecond)
	close(stop)
	wg.Wait()
	n := 0
	served.Range(func(any, any) bool { n++; return true })
	if v, _ := s.Current("m"); v != versions || n < 2 || total.Load() < 50 {
		t.Fatalf("serving %d; %d versions answered %d requests", v, n, total.Load())
	}
	t.Logf("%d requests answered by %d versions", total.Load(), n)
}

func TestRateLimit(t *testing.T) {
	m, _ := model(t, tinySpec(), 1, 1)
	s := New(Options{Logger: quietLogger(), Rate: 0.001, Burst: 2})
	if err := s.Swap("m", m); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s)
	body := inferBody(inputs(1, 16, 1), 1, []int{16}, "")
	for i, want := range []int{200, 200, 429, 429} {
		code, resp, err := post(http.DefaultClient, url+"/v2/models/m/infer", body)
		if err != nil || code != want {
			t.Fatalf("request %d: %d %+v %v, want %d", i, code, resp, err, want)
		}
	}
	if code, _ := get(t, url+"/v2/health/ready"); code != 200 {
		t.Fatalf("health is not rate limited: %d", code)
	}
}

// A full queue is answered 503 at once, not after a wait. (One worker: the test stalls
// it to let the queue fill.)
func TestQueueFull(t *testing.T) {
	m, _ := model(t, tinySpec(), 1, 1)
	s := New(Options{Logger: quietLogger(), MaxQueue: 1, MaxBatch: 1, Workers: 1})
	if err := s.Swap("m", m); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s)
	in := s.slot("m").cur.Load()
	// Fill the queue behind the batcher's back: hold a reference so the instance lives.
	if !in.acquire() {
		t.Fatal("acquire")
	}
	defer in.release()
	blocker := &job{x: make([]float32, 16), n: 1, done: make(chan struct{})}
	in.coming.Add(2)
	var ran sync.WaitGroup
	ran.Add(1)
	// Stall the batcher after its first batch: observe blocks until the test lets go.
	release := make(chan struct{})
	var once sync.Once
	in.observe = func(int) { once.Do(func() { ran.Done(); <-release }) }
	if !in.enqueue(blocker) {
		t.Fatal("enqueue")
	}
	ran.Wait() // the batcher is stalled after its first batch
	if !in.enqueue(&job{x: make([]float32, 16), n: 1, done: make(chan struct{})}) {
		t.Fatal("enqueue second")
	}
	code, resp, err := post(http.DefaultClient, url+"/v2/models/m/infer", inferBody(inputs(1, 16, 1), 1, []int{16}, ""))
	close(release)
	if err != nil || code != 503 || !strings.Contains(resp.Error, "overloaded") {
		t.Fatalf("infer on a full queue: %d %+v %v", code, resp, err)
	}
}

// Cancelling Serve's context lets the request in flight finish, then returns.
func TestGracefulShutdown(t *testing.T) {
	m, _ := model(t, tinySpec(), 1, 1)
	s := New(Options{Logger: quietLogger(), MaxWait: 300 * time.Millisecond, MaxBatch: 8})
	if err := s.Swap("m", m); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	in := s.slot("m").cur.Load()
	in.coming.Add(1) // the batch waits the whole MaxWait for this phantom
	answered := make(chan int, 1)
	go func() {
		code, _, _ := post(http.DefaultClient, "http://"+ln.Addr().String()+"/v2/models/m/infer", inferBody(inputs(1, 16, 1), 1, []int{16}, ""))
		answered <- code
	}()
	deadline := time.Now().Add(5 * time.Second)
	for refs(in) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // read, decoded and queued: the batch waits for the phantom
	cancel()
	if code := <-answered; code != 200 {
		t.Fatalf("request in flight at shutdown: %d", code)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	in.coming.Add(-1)
	select {
	case <-in.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("batcher still running after Serve returned")
	}
	if err := s.Swap("m", m); err == nil {
		t.Fatal("Swap after shutdown succeeded")
	}
}

// refs returns how many requests hold in.
func refs(in *instance) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.refs
}
