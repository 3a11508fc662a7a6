// Package serve serves fedq's global models over the Open Inference Protocol v2 (the
// REST API of KServe, Triton and Seldon MLServer), so an inference client written for
// those servers can query a model trained by a federation.
//
// # Endpoints
//
//	GET  /v2/health/live                          200 {"live": true} while the process runs
//	GET  /v2/health/ready                         200 once every model is loaded, else 503
//	GET  /v2                                      server metadata {"name", "version", "extensions"}
//	GET  /v2/models/{name}[/versions/{v}]         model metadata: versions, platform "fedq", inputs, outputs
//	GET  /v2/models/{name}[/versions/{v}]/ready   200 {"name", "ready": true}; 503 before the first version
//	POST /v2/models/{name}[/versions/{v}]/infer   inference (below)
//	GET  /metrics                                 Prometheus metrics of this server
//
// A model has one input, "input" (FP32, shape [-1, input shape...], e.g. [-1, 1, 28, 28]
// for MNIST; [n, input size] is accepted too), and two outputs: "logits" (FP32, [n,
// classes]) and "label" (INT64, [n], the argmax of the logits). An infer request carries
// JSON tensors, data flat or nested in row-major order:
//
//	{"id": "42", "inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [...]}],
//	 "outputs": [{"name": "label"}]}
//
// and is answered {"model_name", "model_version", "id", "outputs": [...]}; without
// "outputs" both are sent. Logits are written in the shortest decimal form that parses
// back to the same float32, so a client gets exactly what the model computed. Versions are
// fedq version numbers in decimal ("0" for a file that carries none); a request for a
// version other than the one being served is answered 404. Errors are answered as the
// protocol says, {"error": "message"}: 400 for malformed JSON (a member named twice and
// text that is not UTF-8 included; names match in any case), a wrong input name, shape
// or datatype, or a value that is not a finite float32 (NaN, Inf, or out of range); 404
// for an unknown model or version; 413 for a body over Options.MaxBody; 429 for a client
// over its rate limit; 503 before a model is loaded or when its queue is full.
//
// # Dynamic batching
//
// A compute.Model is not safe for concurrent use, so each loaded version runs on
// Options.Workers goroutines (default: one per core, GOMAXPROCS), each with its own
// replica of the network (compute.Model.Replica: the weights are shared, the
// activations are not). Infer requests queue to them (at most Options.MaxQueue); one
// worker at a time gathers a batch — it takes the first request, then more until the
// batch holds Options.MaxBatch samples or Options.MaxWait has passed — and runs one
// Forward for the whole batch, handing each request its rows, while the next worker
// gathers the next batch. A worker never waits for nobody: when every request the server
// has read for the model is already in the batch, the batch runs at once, so a lone
// client pays no batching delay and concurrent clients share forward passes. A single
// request larger than MaxBatch runs alone. The fedq_serve_batch_samples histogram shows
// the batch sizes. A model whose forward pass is the cost (the cnn) is served about 1.5
// times faster by two workers than by one on two cores; each worker holds its own
// activations (the cnn's peak memory grows by about 37 MB a worker under load).
//
// # Hot swap
//
// Each model name holds its current version behind an atomic pointer. Server.Swap loads
// a new version beside the old one and swaps the pointer: requests read after the swap
// run on the new version; a request holds a reference to the version it started on (from
// before decoding its input until its answer), so requests in flight finish on it and
// report it in model_version; the old version's workers drain its queue and stop when
// the last reference is dropped. No request fails because of a swap.
//
// Follow keeps a server on a task's newest version: every interval it asks the
// coordinator (with admin credentials) for the latest version, and when it is newer it
// pulls it, checks the coordinator's Ed25519 signature of the version header and that the
// weights' SHA-256 (little-endian float32, as the coordinator's store hashes them) is the
// signed one, and swaps it in. A version that fails is refused with an error log and the
// old one keeps serving; a coordinator that cannot be reached is retried at the next tick.
// LoadFile checks a pulled file the same way when given the signing key.
//
// # Limits and operations
//
// Each client (remote IP) may be limited to Options.Rate infer requests a second
// (golang.org/x/time/rate; health, metadata and metrics are not limited). Serve shuts
// down gracefully when its context ends: it stops accepting, lets requests in flight
// finish (up to Options.ShutdownTimeout) and stops the workers. Metrics live in a
// registry of the server's own: fedq_serve_requests_total{handler,code},
// fedq_serve_request_duration_seconds{handler}, fedq_serve_batch_samples{model},
// fedq_serve_model_version{model} and fedq_serve_model_swaps_total{model}, plus the Go
// and process collectors.
//
// The command is `fedq serve` (cmd/fedq): --model FILE [--name N] [--verify-with DIR]
// serves a file; --dir DIR [--addr A] --task T [--follow --interval 5s] serves a task's
// latest version from a coordinator and follows it. --listen (127.0.0.1:8000),
// --workers (one per core), --max-batch (64), --max-wait (2ms), --max-queue (1024),
// --max-body (8 MiB), --rate (0: off) and --threads tune the server.
package serve
