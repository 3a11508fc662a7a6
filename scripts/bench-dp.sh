#!/usr/bin/env bash
# User-level central DP (DP-FedAvg) on MNIST with fedq sim (issue 7): 1,000 agents of 60
# examples each (IID), Poisson sampling at rate 0.1, E=1, B=10; the noise is calibrated
# so that the run's rounds spend exactly the target ε (δ = 1e-5). One JSON file per run in
# $OUT (default bin/dp) and a line each.
#   scripts/bench-dp.sh            # ε = 1, 2, 4, 8 and the same run without DP
#   scripts/bench-dp.sh record     # record-level DP-SGD: 10 agents of 6,000 records, ε = 3
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bin/dp}
mkdir -p "$OUT"
FEDQ=${FEDQ:-bin/fedq}
ROUNDS=${ROUNDS:-100}
CLIP=${CLIP:-0.5}
if [ "${1:-}" = record ]; then
	# Record-level: 10 IID agents of 6,000 records, all in every round, one local epoch of
	# DP-SGD (Poisson lots of expected size 600, so rate 0.1) per round, on the dpcnn.
	for eps in ${EPSILONS:-3}; do
		f="$OUT/record-eps-$eps.json"
		"$FEDQ" sim --agents 10 --model "${MODEL:-dpcnn}" --partition iid --fraction 1 --local-epochs 1 --batch "${RECORD_BATCH:-600}" --lr "${LR:-4}" \
			--rounds "${RECORD_ROUNDS:-20}" --strategy "${STRATEGY:-fedavg}" --dp-mode record --dp-clip "${RECORD_CLIP:-1}" --dp-epsilon "$eps" --dp-delta 1e-5 --json >"$f"
		printf 'record-level ε %-4s accuracy %s  noise multiplier %s  ε spent %s  (%s s)\n' "$eps" "$(jq .final_accuracy "$f")" \
			"$(jq .noise_multiplier "$f")" "$(jq .epsilon "$f")" "$(jq '.seconds|floor' "$f")"
	done
	exit 0
fi
common=(--agents 1000 --model 2nn --partition iid --fraction 0.1 --local-epochs 1 --batch 10 --lr "${LR:-0.1}" --rounds "$ROUNDS" --json)
for eps in ${EPSILONS:-none 8 4 2 1}; do
	f="$OUT/dp-eps-$eps.json"
	if [ "$eps" = none ]; then
		"$FEDQ" sim "${common[@]}" >"$f"
	else
		"$FEDQ" sim "${common[@]}" --dp-clip "$CLIP" --dp-epsilon "$eps" --dp-delta 1e-5 >"$f"
	fi
	printf 'ε %-5s accuracy %s  noise multiplier %s  ε spent %s  (%s s)\n' "$eps" "$(jq .final_accuracy "$f")" \
		"$(jq '.noise_multiplier // 0' "$f")" "$(jq '.epsilon // 0' "$f")" "$(jq '.seconds|floor' "$f")"
done
