#!/usr/bin/env python3
"""Loads a model saved by `fedq train --out` into the equivalent torch.nn.Module with
load_state_dict(strict=True) and evaluates it on the MNIST test set.

The module is built from the fedq spec stored in the file's metadata, layer by layer,
with PyTorch's names (fc1, conv1, ...), so the state_dict keys and shapes must match
exactly. The safetensors file is parsed here with numpy (8-byte little-endian header
length, JSON header, raw little-endian data), so only python3-torch and numpy are needed.

Usage: MNIST_DIR=... torch_check.py MODEL.safetensors [FEDQ_PREDICTIONS.txt]
Prints one JSON object: torch's test accuracy and, given fedq's predictions, how many agree.
"""
import gzip, json, os, struct, sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = OrderedDict()
    for name, info in header.items():
        assert info["dtype"] == "F32", name
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[base + b:base + e], dtype="<f4").reshape(info["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


class FedqNet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.steps = []
        counts = {"fc": 0, "conv": 0}
        shape = list(spec["input"])
        for i, l in enumerate(spec["layers"]):
            t = l["type"]
            if t == "dense":
                counts["fc"] += 1
                name = l.get("name") or f"fc{counts['fc']}"
                fan = int(np.prod(shape))
                setattr(self, name, nn.Linear(fan, l["out"]))
                self.steps.append(("flatten", None))
                self.steps.append(("mod", name))
                shape = [l["out"]]
            elif t == "conv2d":
                counts["conv"] += 1
                name = l.get("name") or f"conv{counts['conv']}"
                k, s, p = l["kernel"], l.get("stride") or 1, l.get("pad", 0)
                setattr(self, name, nn.Conv2d(shape[0], l["out"], k, stride=s, padding=p))
                self.steps.append(("mod", name))
                shape = [l["out"], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1]
            elif t == "maxpool2d":
                k, s = l["kernel"], l.get("stride") or l["kernel"]
                self.steps.append(("fn", lambda x, k=k, s=s: torch.nn.functional.max_pool2d(x, k, s)))
                shape = [shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1]
            elif t == "relu":
                self.steps.append(("fn", torch.relu))
            elif t == "tanh":
                self.steps.append(("fn", torch.tanh))
            elif t == "dropout":
                self.steps.append(("fn", lambda x: x))  # evaluation mode
            elif t == "flatten":
                self.steps.append(("flatten", None))
                shape = [int(np.prod(shape))]
            else:
                raise SystemExit(f"layer {i}: unknown type {t}")

    def forward(self, x):
        for kind, v in self.steps:
            if kind == "mod":
                x = getattr(self, v)(x)
            elif kind == "flatten":
                x = x.flatten(1)
            else:
                x = v(x)
        return x


def main():
    path = sys.argv[1]
    tensors, meta = read_safetensors(path)
    spec = json.loads(meta["fedq.spec"])
    net = FedqNet(spec)
    net.load_state_dict(tensors, strict=True)
    net.eval()
    d = os.environ["MNIST_DIR"]
    with gzip.open(d + "/t10k-images-idx3-ubyte.gz") as f:
        X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, *spec["input"]).astype(np.float32) / 255
    with gzip.open(d + "/t10k-labels-idx1-ubyte.gz") as f:
        Y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    with torch.no_grad():
        pred = net(torch.from_numpy(X)).argmax(1).numpy()
    out = {"torch_version": torch.__version__, "model": spec.get("name", ""), "torch_test_accuracy": float((pred == Y).mean())}
    if len(sys.argv) > 2:
        fedq = np.loadtxt(sys.argv[2], dtype=np.int64)
        out["fedq_test_accuracy"] = float((fedq == Y).mean())
        out["same_predictions"] = int((fedq == pred).sum())
        out["samples"] = int(len(Y))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
