#!/usr/bin/env python3
"""Prints the tables of docs/results.md from the output of scripts/experiments/results.sh.

  scripts/experiments/results-tables.py [OUT_ROOT]   (default ~/.cache/halsal/runs/results)

Reads <OUT_ROOT>/<dataset>/runs.csv and paired.csv (what halsal_protocol wrote) and the cell
times from <OUT_ROOT>/<dataset>.log; puts the paper's Table 2 rows (ResNet-152, 224 px, 70
epochs) next to them. Only the standard library: it reads files, it computes no accuracy.
"""
import csv
import os
import re
import statistics
import sys
from collections import defaultdict

PAPER = {  # Table 2 of the paper, k = 1 / 5 / 10
    "flowers102": {"Baseline-RGB": (39.0, 82.5, 89.0), "Approach A": (42.4, 85.2, 90.3),
                   "Approach B": (42.7, 85.1, 90.4)},
    "cub200_subset100": {"Baseline-RGB": (24.9, 53.3, 63.8), "Approach A": (26.9, 54.2, 64.9),
                         "Approach B": (27.1, 54.9, 65.4)},
}
PAPER_K = (1, 5, 10)
ORDER = ["NCM (frozen features)", "NCM (Step I-modulated features)", "Baseline-RGB", "Approach A", "Approach B"]
CELL = re.compile(r"^\[(\S+) k=(\d+) seed=(\d+)\] top-1 .*\(epoch \d+, (\d+) s\)")


def main():
    root = os.path.expanduser(sys.argv[1] if len(sys.argv) > 1 else "~/.cache/halsal/runs/results")
    for ds in ("flowers102", "cub200_subset100"):
        runs_csv = os.path.join(root, ds, "runs.csv")
        if not os.path.exists(runs_csv):
            print(f"## {ds}: no runs.csv under {root}\n")
            continue
        top1 = defaultdict(dict)  # (method, k) -> seed -> top1
        for row in csv.DictReader(open(runs_csv)):
            top1[(row["method"], int(row["k"]))][int(row["seed"])] = float(row["top1"])
        paired = {(r["method"], int(r["k"])): r for r in csv.DictReader(open(os.path.join(root, ds, "paired.csv")))}
        ks = sorted({k for _, k in top1})
        print(f"## {ds}\n")
        print("| method | " + " | ".join(f"k={k}: top-1 (seeds) | − RGB [95 %]" for k in ks) + " |")
        print("|---|" + "---:|---:|" * len(ks))
        for m in ORDER:
            if not any((m, k) in top1 for k in ks):
                continue
            cells = []
            for k in ks:
                v = top1.get((m, k), {})
                if not v:
                    cells += ["–", "–"]
                    continue
                sd = statistics.stdev(v.values()) if len(v) > 1 else 0.0
                cells.append(f"{statistics.mean(v.values()):.1f} ± {sd:.1f} ({len(v)})")
                p = paired.get((m, k))
                if p and p["mean"]:
                    cells.append(f"{float(p['mean']):+.1f} [{float(p['lo']):+.1f}, {float(p['hi']):+.1f}]")
                else:
                    cells.append("reference" if m == "Baseline-RGB" else "–")
            print(f"| {m} | " + " | ".join(cells) + " |")
        for m, vals in PAPER.get(ds, {}).items():
            cells = []
            for k in ks:
                cells += [f"{vals[PAPER_K.index(k)]:.1f}" if k in PAPER_K else "–", ""]
            print(f"| paper: {m} (ResNet-152, 224 px, 70 epochs) | " + " | ".join(cells) + " |")
        print()
        # The bar: Baseline-RGB against the floor, per k, from the same run.
        for k in ks:
            p = paired.get(("NCM (frozen features)", k))
            if p and p["mean"]:
                print(f"- k={k}: Baseline-RGB − NCM = {-float(p['mean']):+.1f} "
                      f"[{-float(p['hi']):+.1f}, {-float(p['lo']):+.1f}] points (paired, seeds {p['seeds']})")
        times = defaultdict(float)
        log = os.path.join(root, ds + ".log")
        if os.path.exists(log):
            for line in open(log):
                mt = CELL.match(line)
                if mt:
                    times[(mt.group(1), int(mt.group(2)))] += float(mt.group(4))
            total = sum(times.values())
            print(f"- cell times (s, summed over seeds, as logged): " +
                  ", ".join(f"{m} k={k} {t:.0f}" for (m, k), t in sorted(times.items(), key=lambda x: (x[0][1], x[0][0]))) +
                  f"; total {total / 60:.0f} min")
        print()


if __name__ == "__main__":
    main()
