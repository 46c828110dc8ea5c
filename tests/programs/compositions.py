#!/usr/bin/env python3
"""Every composition the programs train, they save and load (issue 13).

    compositions.py --work DIR --bin NAME=PATH ...

- halsal_ablation_fusion (MobileNetV2, After stage 1..4) and halsal_ablation_depth (AlexNet,
  Conv-1..4) with --save-models write one model file per cell; halsal_eval loads each as its own
  composition and predicts exactly what the cell predicted on its test images (test_outcomes.csv
  against predictions.csv, image by image); halsal_predict loads one and writes its saliency map.
- halsal_train --backbone resnet34 and halsal_protocol --backbone resnet152 run (the backbones
  beyond the first three), and halsal_eval loads the ResNet-34 model file.

Standard library only; the programs run with one thread (halsal_programs.ENV).
"""
import argparse
import csv
import glob
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import halsal_programs as h  # noqa: E402

TINY = ["--image-size", "64", "--epochs", "1", "--warmup-epochs", "0"]


def run_ok(c, label, args, timeout=300):
    r = h.run(args, timeout=timeout)
    c.check(r.rc == 0 and not r.timed_out, "%s (%.1f s)" % (label, r.seconds),
            "rc=%s\n%s\n%s" % (r.rc, r.out[-2000:], r.err[-2000:]))
    return r


def outcomes(path):
    with open(path, newline="") as f:
        return [(row["label"], row["predicted"]) for row in csv.DictReader(f)]


def check_cells(c, b, ds, out, network_part, tmp):
    """Every cell's model file loads (halsal_eval) and predicts the cell's own test outcomes."""
    models = sorted(glob.glob(os.path.join(out, "cells", "*", "model.safetensors")))
    c.check(len(models) == 4, "%s: 4 model files (%d)" % (out, len(models)), "\n".join(models))
    for i, model in enumerate(models):
        cell = os.path.dirname(model)
        name = os.path.basename(cell)
        ev = os.path.join(tmp, "eval-%s" % name)
        r = run_ok(c, "halsal_eval %s" % name, [b["halsal_eval"], "--model", model, "--data", ds, "--subset", "test",
                                                "--out", ev])
        if r.rc != 0:
            continue
        c.check(network_part in r.out, "%s: the model is a %s…" % (name, network_part), r.out)
        want = outcomes(os.path.join(cell, "test_outcomes.csv"))
        got = outcomes(os.path.join(ev, "predictions.csv"))
        c.check(len(want) > 0 and want == got, "%s: halsal_eval predicts the cell's %d test outcomes" % (name, len(want)),
                "cell %s\neval %s" % (want, got))
    return models


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--bin", action="append", default=[])
    a = ap.parse_args()
    b = dict(x.split("=", 1) for x in a.bin)
    if os.path.exists(a.work):
        shutil.rmtree(a.work)
    os.makedirs(a.work)
    ds = os.path.join(a.work, "ds")
    h.make_dataset(ds, classes=3, per_class=12, sizes=(64, 72))
    c = h.Checks()

    # MobileNetV2 fused after stage 1..4, one model file per cell.
    fusion = os.path.join(a.work, "fusion")
    r = run_ok(c, "halsal_ablation_fusion mobilenet_v2 --save-models",
               [b["halsal_ablation_fusion"], "--backbone", "mobilenet_v2", "--data", ds, "--k", "2", "--seeds", "0",
                "--no-baseline", "--save-models", "--out", fusion] + TINY)
    if r.rc == 0:
        models = check_cells(c, b, ds, fusion, "HalSalNet<MobileNetV2, Depth<4>, AfterStage<", a.work)
        stage2 = [m for m in models if "after-stage-2" in m]
        if c.check(len(stage2) == 1, "the After stage 2 cell has a model file"):
            image = sorted(glob.glob(os.path.join(ds, "*", "*.png")))[0]
            pred = os.path.join(a.work, "predict")
            r = run_ok(c, "halsal_predict on the After stage 2 model",
                       [b["halsal_predict"], "--model", stage2[0], image, "--out", pred])
            c.check("HalSalNet<MobileNetV2, Depth<4>, AfterStage<2>, Residual>" in r.out,
                    "halsal_predict names the composition", r.out)
            c.check(len(glob.glob(os.path.join(pred, "*-saliency.png"))) == 1, "halsal_predict wrote the saliency map")

    # AlexNet with saliency branches of 1..4 convolutions.
    depth = os.path.join(a.work, "depth")
    r = run_ok(c, "halsal_ablation_depth alexnet --save-models",
               [b["halsal_ablation_depth"], "--backbone", "alexnet", "--data", ds, "--k", "2", "--seeds", "0",
                "--no-baseline", "--save-models", "--out", depth] + TINY)
    if r.rc == 0:
        check_cells(c, b, ds, depth, "HalSalNet<AlexNet, Depth<", a.work)

    # The backbones beyond the first three.
    r34 = os.path.join(a.work, "resnet34")
    r = run_ok(c, "halsal_train --backbone resnet34",
               [b["halsal_train"], "--backbone", "resnet34", "--data", ds, "--method", "scratch-sal", "--k", "1",
                "--out", r34] + TINY)
    if r.rc == 0:
        r = run_ok(c, "halsal_eval on the ResNet-34 model",
                   [b["halsal_eval"], "--model", os.path.join(r34, "model.safetensors"), "--data", ds])
        c.check("HalSalNet<ResNet-34, Depth<4>, AfterStage<4>, Residual>" in r.out, "the model is a ResNet-34", r.out)
    p152 = os.path.join(a.work, "resnet152")
    r = run_ok(c, "halsal_protocol --backbone resnet152 --methods ncm",
               [b["halsal_protocol"], "--backbone", "resnet152", "--data", ds, "--methods", "ncm", "--k", "1",
                "--seeds", "0", "--image-size", "64", "--out", p152])
    if r.rc == 0:
        with open(os.path.join(p152, "runs.csv")) as f:
            rows = list(csv.DictReader(f))
        c.check(len(rows) == 1 and "NCM" in rows[0].get("method", ""), "ResNet-152 protocol: one NCM run", str(rows))

    print("%d failure(s)" % c.failures)
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
