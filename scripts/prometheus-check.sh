#!/usr/bin/env bash
# prometheus-check.sh — Debian's Prometheus scrapes a running fedq coordinator, and the
# metrics come back through Prometheus's own HTTP API.
#
#   scripts/prometheus-check.sh
#
# Starts a coordinator with --http (its /metrics behind the admin token, which Prometheus
# reads from the coordinator's dashboard.token with `authorization: credentials_file`),
# two agents with a small CSV dataset, runs two rounds, has Prometheus scrape every
# second, and queries up, fedq_agents_online, fedq_rounds_committed_total and
# fedq_task_version back from Prometheus. Exits non-zero if any differs from what ran.
# Needs Debian's prometheus (apt-get install prometheus) and python3. Everything listens
# on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v prometheus >/dev/null || { echo "prometheus-check: prometheus is not installed (apt-get install prometheus)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "prometheus-check: needs python3" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -INT "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }

go build -o "$work/fedq" ./cmd/fedq
fedq="$work/fedq"
quic=$(free_port SOCK_DGRAM)
web=$(free_port SOCK_STREAM)
prom=$(free_port SOCK_STREAM)
coord="$work/coord"

"$fedq" ca init --dir "$coord" --addr "127.0.0.1:$quic" >/dev/null
"$fedq" --log-level warn coordinator run --dir "$coord" --heartbeat 1s --http "127.0.0.1:$web" &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$web/healthz" >/dev/null && break; sleep 0.1; done

# Two agents, each with 300 rows of two separable blobs.
for name in east west; do
	awk -v seed="${#name}$RANDOM" 'BEGIN { srand(seed); print "a,b,c,d,label";
		for (i = 0; i < 300; i++) { y = int(rand() * 2); c = 2 * y - 1;
			printf "%.3f,%.3f,%.3f,%.3f,%d\n", c + rand() - 0.5, -c + rand() - 0.5, rand(), c, y } }' >"$work/$name.csv"
	tok=$("$fedq" token create --dir "$coord" --name "$name" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
	"$fedq" agent enroll --token "$tok" --dir "$work/$name" >/dev/null
	"$fedq" --log-level warn agent run --dir "$work/$name" --data "blobs=$work/$name.csv" &
	pids+=($!)
done
cat >"$work/task.json" <<'EOF'
{"name": "blobs", "dataset": "blobs",
 "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 8}, {"type": "relu"}, {"type": "dense", "out": 2}]},
 "train": {"epochs": 1, "batch": 8, "lr": 0.1}, "agents_per_round": 2, "seed": 1}
EOF
"$fedq" task submit --dir "$coord" "$work/task.json" >/dev/null
for _ in $(seq 100); do
	[ "$("$fedq" status --dir "$coord" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["online"])')" = 2 ] && break
	sleep 0.1
done
"$fedq" round start --dir "$coord" --task blobs --rounds 2 --watch >/dev/null

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: fedq
    authorization:
      type: Bearer
      credentials_file: $coord/dashboard.token
    static_configs:
      - targets: ["127.0.0.1:$web"]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
	--web.listen-address="127.0.0.1:$prom" --log.level=warn &
pids+=($!)

# query EXPR → the value of its first series, or "" while there is none.
query() {
	curl -sf --get "http://127.0.0.1:$prom/api/v1/query" --data-urlencode "query=$1" |
		python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true
}
declare -A want=(
	['up{job="fedq"}']=1
	['fedq_agents_online']=2
	['fedq_rounds_committed_total{task="blobs"}']=2
	['fedq_task_version{task="blobs"}']=3
)
fail=0
for expr in "${!want[@]}"; do
	got=""
	for _ in $(seq 60); do
		got=$(query "$expr")
		[ "$got" = "${want[$expr]}" ] && break
		sleep 0.5
	done
	if [ "$got" = "${want[$expr]}" ]; then
		echo "ok   $expr = $got (from Prometheus at 127.0.0.1:$prom)"
	else
		echo "FAIL $expr = '$got', want ${want[$expr]}" >&2
		fail=1
	fi
done
echo "histogram: fedq_round_phase_duration_seconds_count by phase: $(curl -sf --get "http://127.0.0.1:$prom/api/v1/query" \
	--data-urlencode 'query=sum by (phase) (fedq_round_phase_duration_seconds_count)' |
	python3 -c 'import json,sys; print(", ".join(r["metric"]["phase"]+"="+r["value"][1] for r in json.load(sys.stdin)["data"]["result"]))')"
exit $fail
