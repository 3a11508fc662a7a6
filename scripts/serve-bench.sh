#!/usr/bin/env bash
# serve-bench.sh — served throughput and latency of `fedq serve` (Open Inference Protocol
# v2, JSON, single-image requests) measured with wrk, beside the raw batched throughput
# of the same models (go test -bench, Forward on batches of 64) and the throughput of
# servers that do no work under the same load: net/http (scripts/httpfloor: read the body,
# fixed reply) and, unless FLOORS=nethttp, fasthttp and a gnet event loop (scripts/floors,
# its own module). Each wrk run also prints the CPU time per request of wrk and of the
# server (from /proc), and the most requests/s any server could get from wrk on this many
# cores: nproc / wrk's CPU per request. After each model's runs it prints the mean batch
# (fedq_serve_batch_samples sum and count) and the server's peak resident memory.
#
#   scripts/serve-bench.sh                 # 2nn and cnn, 10 s each, 64 connections
#   DURATION=30s CONNS=128 MODELS=2nn scripts/serve-bench.sh
#   FEDQ=/path/to/other/fedq scripts/serve-bench.sh   # serve with another build (a comparator)
#   FLOORS=nethttp scripts/serve-bench.sh               # net/http's floor only (no module download)
#   SERVE_ARGS="--workers 1" scripts/serve-bench.sh     # more flags for fedq serve
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
FLOORS=${FLOORS:-all}
SERVE_ARGS=${SERVE_ARGS:-}
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
	io.write(string.format("RESULT requests/s %.0f  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  errors %d non-2xx %d  requests %d\n",
		summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
		latency:percentile(99) / 1e3, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
		summary.errors.status, summary.requests))
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

# cpu_ticks PID: user + system CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# load SCRIPT URL: one wrk run on the server $server; prints wrk's RESULT line, then the CPU
# time per request of wrk (bash's `times` for the subshell's child) and of the server.
load() {
	local before after out
	before=$(cpu_ticks "$server")
	out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$work/$1.lua" "$2"; times)
	after=$(cpu_ticks "$server")
	grep RESULT <<<"$out"
	awk -v tick="$(getconf CLK_TCK)" -v cores="$(nproc)" -v server=$((after - before)) '
		/^RESULT/ { n = $NF }
		/^[0-9]+m[0-9.]+s [0-9]+m[0-9.]+s$/ { split($1, u, /[ms]/); split($2, s, /[ms]/); wrk = u[1] * 60 + u[2] + s[1] * 60 + s[2] }
		END { if (n > 0) printf "CPU per request: wrk %.1f us, server %.1f us; wrk alone caps any server at %.0f requests/s on %d cores\n",
			wrk * 1e6 / n, server / tick * 1e6 / n, cores * n / wrk, cores }' <<<"$out"
}

# wait_up URL: until the server answers.
wait_up() {
	for _ in $(seq 100); do
		curl -sf -o /dev/null "$1" && return
		sleep 0.1
	done
	echo "serve-bench: no answer from $1" >&2
	exit 1
}

floors=("$work/httpfloor 127.0.0.1:$PORT")
go build -o "$work/httpfloor" ./scripts/httpfloor
if [ "$FLOORS" = all ]; then
	if (cd scripts/floors && go build -o "$work/floors" .); then
		floors+=("$work/floors -engine fasthttp 127.0.0.1:$PORT" "$work/floors -engine gnet 127.0.0.1:$PORT")
	else
		echo "serve-bench: scripts/floors did not build (its modules come from the Go module proxy); net/http's floor only" >&2
	fi
fi
for floor in "${floors[@]}"; do
	echo "== floor: the same requests answered by a server that only reads them: ${floor#"$work/"}"
	$floor &
	server=$!
	wait_up "http://127.0.0.1:$PORT/"
	for body in post post-bin; do
		echo "-- $body"
		load "$body" "http://127.0.0.1:$PORT/v2/models/floor/infer"
	done
	kill "$server"; wait "$server" 2>/dev/null || true; server=""
done

echo "== raw batched throughput (Forward on batches of 64, one thread)"
go test -run '^$' -bench 'BenchmarkForwardBatch64' -benchtime 2s ./serve/ | grep Benchmark

for model in $MODELS; do
	echo "== $model: training one epoch for a realistic model file"
	"$FEDQ" --log-level warn train --model "$model" --epochs 1 --quiet --out "$work/$model.safetensors" >/dev/null
	# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
	"$FEDQ" --log-level warn serve --model "$work/$model.safetensors" --listen "127.0.0.1:$PORT" $SERVE_ARGS &
	server=$!
	wait_up "http://127.0.0.1:$PORT/v2/health/ready"
	curl -sf "http://127.0.0.1:$PORT/v2/models/$model/infer" -d @"$work/body.json" | head -c 300; echo
	echo "== $model: wrk -t$WRK_THREADS -c$CONNS -d$DURATION, single-image JSON requests"
	load post "http://127.0.0.1:$PORT/v2/models/$model/infer"
	echo "== $model: the same with binary tensor data"
	load post-bin "http://127.0.0.1:$PORT/v2/models/$model/infer"
	curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^fedq_serve_batch_samples_(sum|count)' || true
	awk '/^VmHWM/ { printf "peak RSS of fedq serve: %.0f MB\n", $2 / 1024 }' "/proc/$server/status"
	kill "$server"; wait "$server" 2>/dev/null || true; server=""
done
