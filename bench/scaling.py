#!/usr/bin/env python3
"""Scaling over processes on this machine: the same work as 1 process and as N, side by side.

    bench/scaling.py --build build [--processes 2] [--epochs 4] [--image-size 96] [--json FILE]

Two rows per world size:
- data-parallel training (halsal_train under a c10d world, Gloo on localhost): one ResNet-18
  scratch-sal network, per-process batch b (1 process: batch N*b, the same samples per step);
  img/s in total and per process, from metrics.jsonl (epochs after the first: no start-up).
- the protocol's grid over shards (halsal_protocol --shard I/N, no communication): rgb and
  scratch-sal cells; cells/min from the wall time.

Each process gets cores/N intra-op threads (HALSAL_NUM_THREADS), so 1 process × 2 threads is
compared with 2 processes × 1 thread on a 2-core machine. The numbers are printed as a Markdown
table and, with --json, written to a file. Standard library only; data is synthetic.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "programs"))
import halsal_programs as h  # noqa: E402


def env_for(rank, size, port, threads):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                        "SLURM_NTASKS", "TORCHELASTIC_USE_AGENT_STORE")}
    env.update(OMP_WAIT_POLICY="PASSIVE", HALSAL_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    if size > 1:
        env.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
    return env


def run_all(commands):
    """Starts every (args, env) at once; returns the wall time; raises on a failure."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(a, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for a, e in commands]
    outs = [p.communicate() for p in procs]
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            raise SystemExit("failed (%s): %s\n%s" % (p.returncode, " ".join(p.args[:3]), err.decode()[-2000:]))
    return time.monotonic() - t0


def data_parallel(build, ds, work, n, total_batch, epochs, size, cores):
    """One network; each of the n processes takes total_batch / n samples per step."""
    out = os.path.join(work, "dp-%d" % n)
    port = h.free_port()
    args = [os.path.join(build, "examples", "halsal_train"), "--data", ds, "--backbone", "resnet18", "--method",
            "scratch-sal", "--k", "8", "--image-size", str(size), "--epochs", str(epochs), "--warmup-epochs", "0",
            "--head", "xavier", "--set", "batch_size=%d" % (total_batch // n), "--out", out]
    threads = max(1, cores // n)
    wall = run_all([(args, env_for(i, n, port, threads)) for i in range(n)])
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if l.strip()]
    later = lines[1:] or lines
    images = sum(l["images"] for l in later)
    seconds = sum(l["seconds"] for l in later)
    return {"kind": "data-parallel", "processes": n, "threads_per_process": threads, "img_s_total": images / seconds,
            "img_s_per_process": images / seconds / n, "wall_s": wall}


def grid(build, ds, work, n, epochs, size, cores):
    out = os.path.join(work, "grid-%d" % n)
    args = [os.path.join(build, "examples", "halsal_protocol"), "--data", ds, "--methods", "rgb,scratch-sal", "--k",
            "2", "--seeds", "0,1", "--image-size", str(size), "--epochs", str(epochs), "--warmup-epochs", "0",
            "--out", out]
    threads = max(1, cores // n)
    commands = [(args + (["--shard", "%d/%d" % (i, n)] if n > 1 else []), env_for(0, 1, 0, threads)) for i in range(n)]
    wall = run_all(commands)
    cells = 4
    return {"kind": "grid (shards)", "processes": n, "threads_per_process": threads, "cells": cells,
            "cells_per_min": cells / wall * 60, "wall_s": wall}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8, help="per-process batch of the data-parallel run")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    work = tempfile.mkdtemp(prefix="halsal-scaling-")
    try:
        ds = os.path.join(work, "ds")
        h.make_dataset(ds, classes=4, per_class=20, sizes=(96, 112))
        rows = []
        for n in (1, a.processes):
            rows.append(data_parallel(a.build, ds, work, n, a.batch * a.processes, a.epochs, a.image_size, cores))
            rows.append(grid(a.build, ds, work, n, max(1, a.epochs // 2), a.image_size, cores))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| work | processes × threads | img/s total | img/s per process | cells/min | wall s |")
    print("|:---|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %s | %d × %d | %s | %s | %s | %.1f |" % (
            r["kind"], r["processes"], r["threads_per_process"],
            "%.1f" % r["img_s_total"] if "img_s_total" in r else "—",
            "%.1f" % r["img_s_per_process"] if "img_s_per_process" in r else "—",
            "%.2f" % r["cells_per_min"] if "cells_per_min" in r else "—", r["wall_s"]))
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump({"cores": cores, "rows": rows}, f, indent=2)
        os.replace(a.json + ".tmp", a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
