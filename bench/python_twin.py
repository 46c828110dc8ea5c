#!/usr/bin/env python3
"""The Python eager twin of bench_models: the same networks, batch, size, threads, frozen
BatchNorm and SGD step, written as a PyTorch user would write them (torchvision's models, no
folding, no channels-last), so that bench/compare.py can put C++ and Python side by side on the
same LibTorch.

    python_twin.py [--size 224] [--batch 8] [--threads N] [--steps 3] [--precision fp32|bf16]
                   [--only key,key] [--json FILE] [--list]

The HalSal rows mirror halsal's HalSalNet: the saliency branch (AlexNet-style convolutions, max-pools
after the first two, a 1x1 score, ReLU) on the image, its map resized bilinearly to the fusion
point, features l*(s+1), then the rest of the backbone.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class SaliencyBranch(nn.Module):
    def __init__(self, depth=4, widths=(96, 256, 384, 384, 256)):
        super().__init__()
        kernels, strides, pads = (11, 5, 3, 3, 3), (4, 1, 1, 1, 1), (0, 2, 1, 1, 1)
        layers, c = [], 3
        for i in range(depth):
            layers.append(nn.Conv2d(c, widths[i], kernels[i], strides[i], pads[i]))
            c = widths[i]
        self.convs = nn.ModuleList(layers)
        self.score = nn.Conv2d(c, 1, 1)

    def forward(self, x, size):
        h = x
        for i, conv in enumerate(self.convs):
            h = F.relu(conv(h))
            if i < 2:
                h = F.max_pool2d(h, 3, 2)
        s = F.relu(self.score(h))
        if s.shape[-2:] != size:
            s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
        return s


def modulate(l, branch, x):
    return l * (branch(x, l.shape[-2:]) + 1)


class HalSalAlexNet(nn.Module):  # BeforePool2, Depth<4>
    def __init__(self, classes):
        super().__init__()
        self.backbone = torchvision.models.alexnet(num_classes=classes)
        self.saliency = SaliencyBranch()

    def forward(self, x):
        f = self.backbone.features
        l = modulate(f[:5](x), self.saliency, x)
        h = self.backbone.avgpool(f[5:](l))
        return self.backbone.classifier(torch.flatten(h, 1))


class HalSalResNet(nn.Module):  # AfterStage<4>, Depth<4>
    def __init__(self, depth, classes):
        super().__init__()
        self.backbone = getattr(torchvision.models, "resnet%d" % depth)(num_classes=classes)
        self.saliency = SaliencyBranch()

    def forward(self, x):
        b = self.backbone
        h = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        l = modulate(b.layer4(b.layer3(b.layer2(b.layer1(h)))), self.saliency, x)
        return b.fc(torch.flatten(b.avgpool(l), 1))


class HalSalMobileNetV2(nn.Module):  # AfterStage<4>, Depth<4>
    def __init__(self, classes):
        super().__init__()
        self.backbone = torchvision.models.mobilenet_v2(num_classes=classes)
        self.saliency = SaliencyBranch()

    def forward(self, x):
        l = modulate(self.backbone.features(x), self.saliency, x)
        return self.backbone.classifier(torch.flatten(F.adaptive_avg_pool2d(l, 1), 1))


ROWS = [
    ("alexnet", "AlexNet", lambda: torchvision.models.alexnet(num_classes=102)),
    ("halsal_alexnet", "HalSal AlexNet", lambda: HalSalAlexNet(102)),
    ("resnet18", "ResNet-18", lambda: torchvision.models.resnet18(num_classes=102)),
    ("resnet50", "ResNet-50", lambda: torchvision.models.resnet50(num_classes=102)),
    ("resnet152", "ResNet-152", lambda: torchvision.models.resnet152(num_classes=102)),
    ("halsal_resnet152", "HalSal ResNet-152", lambda: HalSalResNet(152, 102)),
    ("mobilenet_v2", "MobileNetV2", lambda: torchvision.models.mobilenet_v2(num_classes=102)),
    ("halsal_mobilenet_v2", "HalSal MobileNetV2", lambda: HalSalMobileNetV2(102)),
]


def freeze_batchnorm(model):
    """halsal's default: BatchNorm in eval mode, its affine parameters frozen."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def measure(model, batch, size, steps, precision):
    x = torch.randn(batch, 3, size, size)
    y = torch.zeros(batch, dtype=torch.long)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def timed(step):
        step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return batch * steps / (time.perf_counter() - t0)

    def forward():
        if dtype is None:
            return model(x)
        with torch.autocast("cpu", dtype=dtype):
            return model(x)

    model.eval()
    with torch.no_grad():
        eval_ips = timed(forward)
    model.train()
    freeze_batchnorm(model)
    sgd = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def train_step():
        sgd.zero_grad()
        F.cross_entropy(forward().float(), y).backward()
        sgd.step()

    return eval_ips, timed(train_step)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = cores)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--only", default="", help="comma list of row keys (default: all)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--list", action="store_true", help="print the row keys, one per line, and exit")
    a = ap.parse_args()
    if a.list:
        print("\n".join(key for key, _, _ in ROWS))
        return
    torch.set_num_threads(a.threads or os.cpu_count())
    keys = [k for k in a.only.split(",") if k]
    unknown = set(keys) - {k for k, _, _ in ROWS}
    if unknown:
        sys.exit("python_twin: unknown row key(s): %s" % ", ".join(sorted(unknown)))
    print("PyTorch %s (Python eager), %d threads, cpu, %s, batch %d, %d px\n" %
          (torch.__version__, torch.get_num_threads(), a.precision, a.batch, a.size))
    print("| network | eval img/s | train img/s |\n|---|---|---|")
    rows = []
    for key, name, make in ROWS:
        if keys and key not in keys:
            continue
        torch.manual_seed(0)
        e, t = measure(make(), a.batch, a.size, a.steps, a.precision)
        print("| %s | %.1f | %.1f |" % (name, e, t), flush=True)
        rows.append({"key": key, "network": name, "eval_ips": e, "train_ips": t})
    if a.json:
        doc = {"language": "Python", "torch": torch.__version__, "threads": torch.get_num_threads(), "device": "cpu",
               "precision": a.precision, "batch": a.batch, "size": a.size, "steps": a.steps, "rows": rows}
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(a.json)), prefix=".twin-")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()
