#!/usr/bin/env bash
# Strategies on MNIST with fedq sim (issue 5): rounds to 97% on McMahan's shards non-IID
# split, and accuracy under Byzantine agents. Results as JSON lines in $OUT (default
# bin/strategies), one file per run; a summary table at the end.
#   scripts/bench-strategies.sh learning     # 2nn, shards, C=0.1 E=1 B=10, to 97%
#   scripts/bench-strategies.sh byzantine    # 2nn, IID, 20% Byzantine agents, 50 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bin/strategies}
mkdir -p "$OUT"
FEDQ=${FEDQ:-bin/fedq}
common=(--agents 100 --model 2nn --fraction 0.1 --local-epochs 1 --batch 10 --lr 0.1 --json)

learning() {
	for s in ${STRATEGIES:-fedavg fedavgm:lr=1,momentum=0.5 fedprox:mu=0.01 fedadam:eta=0.003 fedyogi:eta=0.003}; do
		f="$OUT/learning-${s//[:=,]/_}.json"
		"$FEDQ" sim "${common[@]}" --partition shards --rounds "${ROUNDS:-700}" --target-accuracy 0.97 --strategy "$s" >"$f"
		printf '%-32s rounds to 97%%: %s  (%s s)\n' "$s" "$(jq .rounds_to_target "$f")" "$(jq '.seconds|floor' "$f")"
	done
}

byzantine() {
	for s in ${STRATEGIES:-fedavg median trimmed_mean:beta=0.2 krum:f=3 multikrum:f=3}; do
		for a in none ${ATTACKS:-signflip scale noise labelflip}; do
			f="$OUT/byzantine-${s//[:=,]/_}-$a.json"
			args=()
			[ "$a" != none ] && args=(--byzantine 0.2 --attack "$a")
			"$FEDQ" sim "${common[@]}" --partition iid --rounds "${ROUNDS:-50}" --strategy "$s" "${args[@]}" >"$f"
			printf '%-24s %-10s final accuracy %s\n' "$s" "$a" "$(jq .final_accuracy "$f")"
		done
	done
}

"${1:-learning}"
