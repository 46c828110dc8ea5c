#!/usr/bin/env python3
"""Writes tests/data/spectral_residual_fixture.json: an independent numpy implementation of the
spectral-residual saliency (Hou & Zhang, CVPR 2007) exactly as documented in
include/halsal/saliency/spectral_residual.hpp, evaluated on a synthetic image that test_eval.cpp
rebuilds from the same formula. Only numpy is needed:  python3 tests/data/make_spectral_fixture.py
"""
import json
import math
import os

import numpy as np

H, W = 96, 128  # shrunk 2x (area average) to the 64-px working width, then enlarged back
SQUARE = (28, 48, 72, 92)  # rows [y0, y1), cols [x0, x1): the bright object
SIGMA = 2.5


def synthetic_image():
    """3×H×W float64: a faint noise texture with a bright square (same formula as the C++ test)."""
    y, x = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    s = np.sin(12.9898 * x + 78.233 * y) * 43758.5453
    noise = s - np.floor(s)
    base = 0.1 + 0.05 * noise
    sq = np.zeros((H, W))
    y0, y1, x0, x1 = SQUARE
    sq[y0:y1, x0:x1] = 0.8
    return np.stack([base + sq, 0.5 * base + sq, 2.0 * base + sq])


def bilinear_resize(a, oh, ow):
    """PyTorch's upsample_bilinear2d with align_corners=False."""
    ih, iw = a.shape

    def coords(o, i):
        src = (np.arange(o) + 0.5) * (i / o) - 0.5
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), i - 1)
        i1 = np.minimum(i0 + 1, i - 1)
        return i0, i1, src - i0

    y0, y1, ly = coords(oh, ih)
    x0, x1, lx = coords(ow, iw)
    top = a[y0][:, x0] * (1 - lx) + a[y0][:, x1] * lx
    bot = a[y1][:, x0] * (1 - lx) + a[y1][:, x1] * lx
    return top * (1 - ly)[:, None] + bot * ly[:, None]


def box(a, k):
    p = k // 2
    ap = np.pad(a, p, mode="edge")
    out = np.zeros_like(a)
    for dy in range(k):
        for dx in range(k):
            out += ap[dy:dy + a.shape[0], dx:dx + a.shape[1]]
    return out / (k * k)


def gaussian(a, sigma):
    r = int(math.ceil(3 * sigma))
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma * sigma))
    k /= k.sum()
    ap = np.pad(a, ((0, 0), (r, r)), mode="edge")
    a = sum(k[i] * ap[:, i:i + a.shape[1]] for i in range(2 * r + 1))
    ap = np.pad(a, ((r, r), (0, 0)), mode="edge")
    return sum(k[i] * ap[i:i + a.shape[0], :] for i in range(2 * r + 1))


def spectral_residual(img):
    g = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    g = g.reshape(H // 2, 2, W // 2, 2).mean(axis=(1, 3))  # area average to 64 px wide
    F = np.fft.fft2(g)
    A = np.abs(F)
    A = np.maximum(A, A.max() * 1e-12)
    L = np.log(A)
    R = L - box(L, 3)
    S = np.abs(np.fft.ifft2(F * (np.exp(R) / A))) ** 2
    S = gaussian(S, SIGMA)
    S = (S - S.min()) / (S.max() - S.min())
    return np.clip(bilinear_resize(S, H, W), 0, 1)


def main():
    s = spectral_residual(synthetic_image())
    y0, y1, x0, x1 = SQUARE
    points = [(0, 0), (5, 120), (30, 80), (38, 82), (40, 60), (47, 71), (50, 10), (60, 100),
              (70, 40), (95, 127), (28, 72), (47, 91)]
    fixture = {
        "comment": "written by tests/data/make_spectral_fixture.py (numpy float64 reference)",
        "height": H, "width": W, "square": list(SQUARE), "sigma": SIGMA,
        "samples": [[y, x, float(s[y, x])] for y, x in points],
        "mean": float(s.mean()),
        "mass_in_square": float(s[y0:y1, x0:x1].sum() / s.sum()),
        "argmax": [int(v) for v in np.unravel_index(np.argmax(s), s.shape)],
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spectral_residual_fixture.json")
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(out, "mass_in_square", fixture["mass_in_square"], "square share",
          (y1 - y0) * (x1 - x0) / (H * W))


if __name__ == "__main__":
    main()
