#!/usr/bin/env bash
# Semi-supervised training on MNIST with fedq sim (issue 8): the CNN, 100 agents, C = 0.1.
# One JSON file per run in $OUT (default bin/semi) and a line each: final and best test
# accuracy, and the last round's pseudo-label coverage and accuracy. Each CNN run takes
# 5–15 minutes on 2 vCPUs.
#   scripts/bench-semi.sh                 # everything below
#   RUNS="coord-iid coord-baseline" scripts/bench-semi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bin/semi}
mkdir -p "$OUT"
FEDQ=${FEDQ:-bin/fedq}
ROUNDS=${ROUNDS:-30}
common=(--agents 100 --model cnn --fraction 0.1 --batch 10 --lr 0.05 --json)
for run in ${RUNS:-coord-iid coord-shards coord-baseline agents-iid agents-baseline}; do
	f="$OUT/$run.json"
	case $run in
	coord-iid) args=(--partition iid --local-epochs 1 --rounds "$ROUNDS" --semi labels-at-coordinator:600) ;;
	coord-shards) args=(--partition shards --local-epochs 1 --rounds "$ROUNDS" --semi labels-at-coordinator:600) ;;
	coord-baseline) args=(--partition iid --local-epochs 1 --rounds "$ROUNDS" --semi labels-at-coordinator:600 --semi-baseline) ;;
	agents-iid) args=(--partition iid --local-epochs 5 --rounds "${AGENT_ROUNDS:-20}" --semi labels-at-agents:10) ;;
	agents-baseline) args=(--partition iid --local-epochs 5 --rounds "${AGENT_ROUNDS:-20}" --semi labels-at-agents:10 --semi-baseline) ;;
	*) echo "unknown run $run" >&2; exit 2 ;;
	esac
	nice "$FEDQ" sim "${common[@]}" "${args[@]}" >"$f"
	printf '%-16s final %s  best %s  pseudo-labels kept %s, right %s  (%s s)\n' "$run" "$(jq .final_accuracy "$f")" \
		"$(jq '[.rounds[].accuracy]|max' "$f")" "$(jq '.rounds[-1].pseudo_coverage // "-"' "$f")" \
		"$(jq '.rounds[-1].pseudo_accuracy // "-"' "$f")" "$(jq '.seconds|floor' "$f")"
done
