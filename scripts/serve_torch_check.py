#!/usr/bin/env python3
"""Sends MNIST test images to a running `fedq serve` (Open Inference Protocol v2, JSON) and
compares its logits and labels with the same safetensors file loaded into PyTorch
(torch_check.FedqNet with load_state_dict(strict=True)).

Usage: MNIST_DIR=... serve_torch_check.py MODEL.safetensors URL MODEL_NAME [N] [BATCH]
Prints one JSON object: how many labels agree and the largest logit difference.
"""
import gzip, json, os, sys, urllib.request

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_check import FedqNet, read_safetensors  # noqa: E402


def main():
    path, url, name = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 50
    tensors, meta = read_safetensors(path)
    spec = json.loads(meta["fedq.spec"])
    net = FedqNet(spec)
    net.load_state_dict(tensors, strict=True)
    net.eval()
    with gzip.open(os.environ["MNIST_DIR"] + "/t10k-images-idx3-ubyte.gz") as f:
        X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, *spec["input"]).astype(np.float32)[:n] / 255
    with torch.no_grad():
        want = net(torch.from_numpy(X)).numpy()
    same, worst = 0, 0.0
    for i in range(0, n, batch):
        x = X[i:i + batch]
        body = {"id": str(i), "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                          "data": x.reshape(-1).tolist()}]}
        req = urllib.request.Request(f"{url}/v2/models/{name}/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            out = {o["name"]: o for o in json.load(r)["outputs"]}
        logits = np.array(out["logits"]["data"], dtype=np.float32).reshape(len(x), -1)
        labels = np.array(out["label"]["data"])
        same += int((labels == want[i:i + batch].argmax(1)).sum())
        worst = max(worst, float(np.abs(logits - want[i:i + batch]).max()))
    print(json.dumps({"torch_version": torch.__version__, "samples": n, "same_labels": same, "max_logit_diff": worst}))


if __name__ == "__main__":
    main()
