#!/usr/bin/env bash
# serve-bench.sh — served throughput and latency of `fedq serve` (Open Inference Protocol
# v2, JSON, single-image requests) measured with wrk, beside the raw batched throughput
# of the same models (go test -bench, Forward on batches of 64) and the throughput of
# net/http itself under the same load (scripts/httpfloor: read the body, fixed reply).
#
#   scripts/serve-bench.sh                 # 2nn and cnn, 10 s each, 64 connections
#   DURATION=30s CONNS=128 MODELS=2nn scripts/serve-bench.sh
#   FEDQ=/path/to/other/fedq scripts/serve-bench.sh   # serve with another build (a comparator)
#
# Needs wrk (apt-get install wrk) and MNIST (make data). Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
MODELS=${MODELS:-"2nn cnn"}
PORT=${PORT:-18000}
FEDQ=${FEDQ:-bin/fedq}
command -v wrk >/dev/null || { echo "serve-bench: wrk is not installed (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d)
server=""
cleanup() {
	if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

make build >/dev/null

# One 28×28 image, pixel values in [0, 1], as one infer request.
awk 'BEGIN {
	srand(1); printf "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,1,28,28],\"datatype\":\"FP32\",\"data\":["
	for (i = 0; i < 784; i++) { v = (i % 28 > 6 && i % 28 < 21 && i > 150 && i < 650) ? int(rand() * 1000) / 1000 : 0; printf "%s%s", (i ? "," : ""), v }
	printf "]}]}"
}' >"$work/body.json"
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/body.json", "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
	io.write(string.format("RESULT requests/s %.0f  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  errors %d non-2xx %d\n",
		summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
		latency:percentile(99) / 1e3, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
		summary.errors.status))
end
LUA

# The same image with the binary tensor data extension: JSON header, then raw float32.
python3 - "$work" <<'PY'
import json, struct, sys
work = sys.argv[1]
x = json.load(open(work + "/body.json"))["inputs"][0]["data"]
head = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                               "parameters": {"binary_data_size": 4 * len(x)}}]}).encode()
open(work + "/body.bin", "wb").write(head + struct.pack("<%df" % len(x), *x))
open(work + "/head.len", "w").write(str(len(head)))
PY
sed -e 's#application/json"#application/octet-stream"\nwrk.headers["Inference-Header-Content-Length"] = "'"$(cat "$work/head.len")"'"#' \
	-e "s#body.json#body.bin#" "$work/post.lua" >"$work/post-bin.lua"

echo "== net/http's floor: the same requests answered by a handler that only reads the body (scripts/httpfloor)"
go build -o "$work/httpfloor" ./scripts/httpfloor
"$work/httpfloor" "127.0.0.1:$PORT" &
server=$!
for _ in $(seq 100); do
	curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break
	sleep 0.1
done
for body in post post-bin; do
	echo "-- $body"
	wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$work/$body.lua" "http://127.0.0.1:$PORT/v2/models/floor/infer" | grep -E "RESULT"
done
kill "$server"; wait "$server" 2>/dev/null || true; server=""

echo "== raw batched throughput (Forward on batches of 64, one thread)"
go test -run '^$' -bench 'BenchmarkForwardBatch64' -benchtime 2s ./serve/ | grep Benchmark

for model in $MODELS; do
	echo "== $model: training one epoch for a realistic model file"
	"$FEDQ" --log-level warn train --model "$model" --epochs 1 --quiet --out "$work/$model.safetensors" >/dev/null
	"$FEDQ" --log-level warn serve --model "$work/$model.safetensors" --listen "127.0.0.1:$PORT" &
	server=$!
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null && break
		sleep 0.1
	done
	curl -sf "http://127.0.0.1:$PORT/v2/models/$model/infer" -d @"$work/body.json" | head -c 300; echo
	echo "== $model: wrk -t$WRK_THREADS -c$CONNS -d$DURATION, single-image JSON requests"
	wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$work/post.lua" "http://127.0.0.1:$PORT/v2/models/$model/infer" | grep -E "Latency|Requests/sec|RESULT|50%|99%"
	echo "== $model: the same with binary tensor data"
	wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$work/post-bin.lua" "http://127.0.0.1:$PORT/v2/models/$model/infer" | grep -E "RESULT"
	curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^fedq_serve_batch_samples_(sum|count)' || true
	kill "$server"; wait "$server" 2>/dev/null || true; server=""
done
