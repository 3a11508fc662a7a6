package serve

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are one server's Prometheus collectors, in a registry of its own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec   // handler, code
	latency  *prometheus.HistogramVec // handler
	batch    *prometheus.HistogramVec // model
	version  *prometheus.GaugeVec     // model
	swaps    *prometheus.CounterVec   // model
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedq_serve_requests_total", Help: "HTTP requests answered, by handler and status code.",
		}, []string{"handler", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedq_serve_request_duration_seconds", Help: "Time to answer an HTTP request, by handler.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50 µs … 1.6 s
		}, []string{"handler"}),
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedq_serve_batch_samples", Help: "Samples per forward pass of the dynamic batcher.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 … 512
		}, []string{"model"}),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fedq_serve_model_version", Help: "The fedq version number being served, by model.",
		}, []string{"model"}),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedq_serve_model_swaps_total", Help: "Model versions loaded, by model.",
		}, []string{"model"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.batch, m.version, m.swaps,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// statusWriter records the status code a handler writes.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// instrument counts and times the requests h answers under the label name.
func (m *metrics) instrument(name string, h http.HandlerFunc) http.HandlerFunc {
	lat := m.latency.WithLabelValues(name)
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		lat.Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
	}
}
