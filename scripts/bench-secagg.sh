#!/usr/bin/env bash
# Secure aggregation (issue 6): what SecAgg+ costs, beside the same round without it.
#   scripts/bench-secagg.sh rounds     # fedq bench rounds, plain then secure, back to back:
#                                      #   n=10 with 100k parameters; n=100 with 1M, 10% dropout
#   scripts/bench-secagg.sh crypto     # the protocol alone: one agent's work, the coordinator's unmasking
#   scripts/bench-secagg.sh accuracy   # fedq sim on MNIST, the same seed with and without it
# JSON results in $OUT (default bin/secagg).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bin/secagg}
mkdir -p "$OUT"
FEDQ=${FEDQ:-bin/fedq}
case "${1:-rounds}" in
rounds)
	for setting in "10 100000 0 ${ROUNDS10:-20}" "100 1000000 0.1 ${ROUNDS100:-6}"; do
		read -r n p d r <<<"$setting"
		for mode in plain secagg; do
			flag=""
			[ "$mode" = secagg ] && flag=--secagg
			f="$OUT/rounds-n$n-p$p-$mode.json"
			"$FEDQ" bench rounds --agents "$n" --params "$p" --rounds "$r" --dropout "$d" $flag --json >"$f"
			printf 'n=%-4s params=%-8s dropout=%-4s %-7s %7.1f ms per round (median)\n' "$n" "$p" "$d" "$mode" \
				"$(jq '.seconds_per_round_median*1000' "$f")"
		done
	done
	;;
crypto)
	go test -run '^$' -bench 'Client|Unmask' -benchtime "${BENCHTIME:-3x}" -count "${COUNT:-3}" ./privacy/secagg | tee "$OUT/crypto.txt"
	;;
accuracy)
	for mode in plain secagg secagg-dropout; do
		flags=()
		[ "$mode" != plain ] && flags+=(--secagg)
		[ "$mode" = secagg-dropout ] && flags+=(--dropout 0.1)
		f="$OUT/accuracy-$mode.json"
		"$FEDQ" sim --agents 100 --model 2nn --partition iid --fraction 0.1 --local-epochs 1 --batch 10 --lr 0.1 \
			--rounds "${ROUNDS:-50}" --seed 1 "${flags[@]}" --json >"$f"
		printf '%-15s accuracy %s after %s rounds (%s s)\n' "$mode" "$(jq .final_accuracy "$f")" "$(jq '.rounds|length' "$f")" "$(jq '.seconds|floor' "$f")"
	done
	;;
*)
	echo "usage: $0 rounds|crypto|accuracy" >&2
	exit 2
	;;
esac
