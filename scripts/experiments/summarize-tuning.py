#!/usr/bin/env python3
"""Summarises tune-fast-profile.sh's runs: validation (and test) top-1 per candidate, dataset and k,
and the mean over them; candidates sorted by mean validation top-1. Prints Markdown."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path.home() / ".cache/halsal/runs/tune")
rows = {}
for runs in sorted(root.glob("*/*/runs.jsonl")):
    cand, ds = runs.parent.parent.name, runs.parent.name
    for line in runs.read_text().splitlines():
        r = json.loads(line)
        if r["method_key"] != "rgb":
            continue
        cell = rows.setdefault(cand, {}).setdefault((ds, r["k"]), {"val": [], "test": []})
        cell["val"].append(100 * r["best_val_accuracy"])
        cell["test"].append(r["top1"])
cols = sorted({c for v in rows.values() for c in v})
def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")
ranked = sorted(rows, key=lambda c: -mean([mean(rows[c][k]["val"]) for k in cols if k in rows[c]]))
print("| candidate | " + " | ".join(f"{ds.split('_')[0].replace('200','')} k={k} val (test)" for ds, k in cols) + " | mean val | cells |")
print("|---|" + "---:|" * (len(cols) + 2))
for c in ranked:
    cells = [rows[c].get(k) for k in cols]
    text = [f"{mean(x['val']):.1f} ({mean(x['test']):.1f})" if x else "—" for x in cells]
    vals = [mean(x["val"]) for x in cells if x]
    n = sum(len(x["val"]) for x in cells if x)
    print(f"| {c} | " + " | ".join(text) + f" | {mean(vals):.1f}{'' if len(vals) == len(cols) else ' (partial)'} | {n} |")
