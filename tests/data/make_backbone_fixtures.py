#!/usr/bin/env python3
"""Writes the backbone fixtures under tests/data/backbones/ (run once with the venv's torchvision):

* <model>.keys    torchvision's state_dict() keys with shapes, one "name dim0xdim1..." per line;
* <model>.logits  for the parity models: eval-mode logits (float32, little-endian, 2x1000) of the
                  model whose weights and input come from the deterministic generator below, which
                  tests/unit/test_backbones.cpp reimplements bit for bit. No weights are committed.

Usage: ~/.cache/halsal/venv/bin/python tests/data/make_backbone_fixtures.py
"""
import pathlib

import numpy as np
import torch
import torchvision

OUT = pathlib.Path(__file__).resolve().parent / "backbones"
MODELS = {
    "alexnet": torchvision.models.alexnet,
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
    "resnet152": torchvision.models.resnet152,
    "mobilenet_v2": torchvision.models.mobilenet_v2,
}
PARITY = ["alexnet", "resnet18", "resnet50", "mobilenet_v2"]
INPUT_SHAPE = (2, 3, 224, 224)


def fnv1a32(text: str) -> int:
    h = 0x811C9DC5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def uniform(name: str, n: int) -> np.ndarray:
    """n values in [0, 1) from a 32-bit integer hash of (name, index); exact in float64."""
    x = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B1) + np.uint64(fnv1a32(name))) & np.uint64(0xFFFFFFFF)
    for shift, mul in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        x ^= x >> np.uint64(shift)
        x = (x * np.uint64(mul)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    return (x >> np.uint64(8)).astype(np.float64) * 2.0**-24


def fill(name: str, t: torch.Tensor) -> torch.Tensor:
    n = t.numel()
    if name.endswith("num_batches_tracked"):
        return torch.zeros_like(t)
    u = uniform(name, n)
    if name.endswith("running_var"):
        v = 0.5 + u
    elif name.endswith("running_mean"):
        v = 0.2 * (u - 0.5)
    elif name.endswith("bias"):
        v = 0.2 * (u - 0.5)
    elif t.dim() == 1:  # BatchNorm weight
        v = 0.5 + u
    else:
        fan_in = n // t.shape[0]
        v = (2.0 * u - 1.0) * np.sqrt(3.0 / fan_in)
    return torch.from_numpy(v.astype(np.float32)).reshape(t.shape)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    x = torch.from_numpy((2.0 * uniform("input", int(np.prod(INPUT_SHAPE))) - 1.0).astype(np.float32))
    x = x.reshape(INPUT_SHAPE)
    for name, ctor in MODELS.items():
        model = ctor()
        sd = model.state_dict()
        with open(OUT / f"{name}.keys", "w") as f:
            for k, v in sd.items():
                f.write(f"{k} {'x'.join(str(d) for d in v.shape) or 'scalar'}\n")
        if name in PARITY:
            model.load_state_dict({k: fill(k, v) for k, v in sd.items()})
            model.eval()
            with torch.no_grad():
                logits = model(x)
            logits.numpy().astype("<f4").tofile(OUT / f"{name}.logits")
            print(f"{name}: {len(sd)} keys, logits |max| {logits.abs().max():.4g}")
        else:
            print(f"{name}: {len(sd)} keys")


if __name__ == "__main__":
    main()
