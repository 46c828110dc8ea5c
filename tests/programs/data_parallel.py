#!/usr/bin/env python3
"""Data-parallel training on c10d (issue 12, part 2): halsal_train as 2 processes (Gloo on
localhost, a free port chosen here) against 1 process.

    data_parallel.py --train PATH --protocol PATH --work DIR [--available 0|1] [--nccl 0|1]

- 2 processes with a per-process batch of 2 end with the weights of 1 process with a batch of 4
  on the same samples (ResNet-18: no dropout; frozen BatchNorm; augmentations follow the sample's
  place in the epoch): every tensor within 1e-5 relative (the norm of the difference over the norm).
- Only rank 0 writes: one metrics.jsonl line per epoch, one model file; rank 1 prints no results.
- Validation and test images are shared out (no padding) and their logits summed over the world:
  the test report is the one process's, each image counted once.
- Resuming with another world size is refused, naming both sizes.
- A world whose other rank never comes fails after HALSAL_DIST_TIMEOUT with the master's address;
  a rank killed mid-training makes the other stop with an error, not hang.
- Step I (halsal_protocol --step-one, ResNet-18) as 2 processes × batch 2 writes the branch of 1
  process × batch 4 (within 1e-5), the same held-out check, and only rank 0 reports and writes.
- HALSAL_DIST_BACKEND=nccl on a machine without a GPU (or a build without NCCL) is refused, saying why.
- Without c10d in this build (--available 0), a world of 2 is refused with a message that says so.

Standard library only; the programs run with one thread (halsal_programs.ENV).
"""
import argparse
import array
import json
import math
import os
import re
import shutil
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import halsal_programs as h  # noqa: E402

TRAIN = ["--backbone", "resnet18", "--method", "scratch-sal", "--k", "4", "--image-size", "64", "--epochs", "2",
         "--warmup-epochs", "0", "--head", "xavier"]


def world_env(rank, size, port, **extra):
    env = {k: v for k, v in h.ENV.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE")}
    env.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(port), HALSAL_DIST_TIMEOUT="60")
    env.update(extra)
    return env


def read_safetensors(path):
    """name -> array('f') of every F32 tensor."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        values = array.array("f")
        values.frombytes(blob[8 + n + a:8 + n + b])
        out[name] = values
    return out


def relative_difference(a, b):
    diff = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
    norm = math.sqrt(sum(y * y for y in b))
    return diff / norm if norm > 0 else diff


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--available", default="1")
    ap.add_argument("--nccl", default="0")
    a = ap.parse_args()
    if os.path.exists(a.work):
        shutil.rmtree(a.work)
    os.makedirs(a.work)
    ds = os.path.join(a.work, "ds")
    h.make_dataset(ds, classes=3, per_class=14, sizes=(64, 72))
    c = h.Checks()
    base = [a.train, "--data", ds] + TRAIN

    if a.available != "1":
        port = h.free_port()
        r = h.run(base + ["--out", os.path.join(a.work, "off")], timeout=60, env=world_env(0, 2, port))
        c.check(r.rc == 1 and "built without c10d" in r.err, "without c10d a world of 2 is refused", r.err[-800:])
        print("%d failure(s)" % c.failures)
        return 1 if c.failures else 0

    single = os.path.join(a.work, "single")
    r = h.run(base + ["--set", "batch_size=4", "--out", single], timeout=300, env=world_env(0, 1, 1))
    if not c.check(r.rc == 0, "one process, batch 4", "rc=%s\n%s\n%s" % (r.rc, r.out[-1500:], r.err[-1500:])):
        return 1

    two = os.path.join(a.work, "two")
    port = h.free_port()
    t0 = time.monotonic()
    procs = [h.start(base + ["--set", "batch_size=2", "--keep-checkpoints", "--out", two], world_env(i, 2, port))
             for i in (0, 1)]
    results = [h.finish(p) for p in procs]
    seconds = time.monotonic() - t0
    for i, (rc, out, err) in enumerate(results):
        c.check(rc == 0, "data-parallel rank %d exits 0" % i, "rc=%s\n%s\n%s" % (rc, out[-1500:], err[-1500:]))
    if c.failures:
        return 1
    c.check("rank 0 of 2 (data-parallel over gloo, batch 2 per process)" in results[0][1], "rank 0 says its place",
            results[0][1][:400])
    c.check("test:" in results[0][1] and "test:" not in results[1][1], "only rank 0 reports the result",
            results[1][1][-400:])
    def test_line(text):
        m = re.search(r"test: (.*)", text)
        return m.group(1) if m else "(none)"
    c.check(test_line(results[0][1]) == test_line(r.out) and " on 15 images" in test_line(r.out),
            "the test set, shared out over the processes, counts each image once: the one process's report",
            (test_line(results[0][1]), test_line(r.out)))
    lines = [l for l in h.read(os.path.join(two, "metrics.jsonl")).decode().splitlines() if l.strip()]
    c.check(len(lines) == 2, "metrics.jsonl: one line per epoch, written by rank 0 only", lines)

    w1 = read_safetensors(os.path.join(single, "model.safetensors"))
    w2 = read_safetensors(os.path.join(two, "model.safetensors"))
    c.check(sorted(w1) == sorted(w2) and len(w1) > 60, "the same tensors (%d)" % len(w1))
    worst = max(((relative_difference(w2[k], w1[k]), k) for k in w1 if k in w2), default=(1.0, "none"))
    c.check(worst[0] <= 1e-5, "2 processes x batch 2 give the weights of 1 process x batch 4 (worst %.2e, %s)"
            % worst, worst)
    l1 = [json.loads(l) for l in h.read(os.path.join(single, "metrics.jsonl")).decode().splitlines() if l.strip()]
    l2 = [json.loads(l) for l in lines]
    c.check(all(abs(x["loss"] - y["loss"]) <= 1e-5 * max(1.0, abs(x["loss"])) for x, y in zip(l1, l2)),
            "the epochs' losses over both processes are the one process's", (l1, l2))
    print("data-parallel run: %.1f s for 2 epochs on 2 processes (starts included)" % seconds)

    # Resuming with another world size is refused.
    r = h.run(base + ["--set", "batch_size=4", "--out", two], timeout=120, env=world_env(0, 1, 1))
    c.check(r.rc == 1 and "over 2 process(es); resume it with the same world size, not 1" in r.err,
            "resuming with another world size is refused", r.err[-800:])

    # Rank 1 never comes: rank 0 gives up after HALSAL_DIST_TIMEOUT, naming the master.
    port = h.free_port()
    t0 = time.monotonic()
    r = h.run(base + ["--out", os.path.join(a.work, "alone")], timeout=120,
              env=world_env(0, 2, port, HALSAL_DIST_TIMEOUT="4"))
    took = time.monotonic() - t0
    c.check(r.rc == 1 and ("127.0.0.1:%d" % port) in r.err and "could not join the world" in r.err,
            "a world whose rank 1 never comes fails naming the master (%.1f s)" % took, r.err[-800:])

    # Rank 1 killed mid-training: rank 0 stops with an error.
    port = h.free_port()
    killed = os.path.join(a.work, "killed")
    longer = list(base)
    longer[longer.index("--epochs") + 1] = "200"
    longer += ["--set", "batch_size=2", "--out", killed]
    procs = [h.start(longer, world_env(i, 2, port, HALSAL_DIST_TIMEOUT="20")) for i in (0, 1)]
    deadline = time.monotonic() + 120 * h.TIME_SCALE
    metrics = os.path.join(killed, "metrics.jsonl")
    while time.monotonic() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    c.check(all(p.poll() is None for p in procs), "both ranks are training when rank 1 is killed",
            [h.finish(p, 5)[2][-600:] for p in procs if p.poll() is not None])
    try:
        os.killpg(procs[1].pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    t0 = time.monotonic()
    rc, out, err = h.finish(procs[0], timeout=120)
    h.finish(procs[1])
    c.check(rc == 1 and "rank 0/2" in err and "failed (another process of the world" in err,
            "rank 1 killed: rank 0 stops with an error (%.1f s after the kill)" % (time.monotonic() - t0),
            "rc=%s\n%s" % (rc, err[-1200:]))

    step_one(a, c)

    # NCCL where there is no GPU (or no NCCL in this build): refused before any training, saying why.
    port = h.free_port()
    procs = [h.start(base + ["--out", os.path.join(a.work, "nccl")], world_env(i, 2, port, HALSAL_DIST_BACKEND="nccl"))
             for i in (0, 1)]
    results = [h.finish(p, 120) for p in procs]
    why = "needs a CUDA GPU" if a.nccl == "1" else "built without NCCL"
    c.check(all(rc == 1 and why in err for rc, _, err in results),
            "HALSAL_DIST_BACKEND=nccl here is refused: '%s'" % why, [err[-600:] for _, _, err in results])

    print("%d failure(s)" % c.failures)
    return 1 if c.failures else 0


def step_one(a, c):
    """Step I, data-parallel: 2 processes x batch 2 against 1 process x batch 4 (ResNet-18: no dropout)."""
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    inet = os.path.join(a.work, "inet")
    h.make_dataset(inet, classes=4, per_class=16, sizes=(48, 64))
    for i, name in enumerate(sorted(os.listdir(inet))):
        os.rename(os.path.join(inet, name), os.path.join(inet, "n%08d" % (1440764 + i)))
    weights = h.backbone_weights(os.path.join(source, "tests", "data", "backbones", "resnet18.keys"),
                                 os.path.join(a.work, "resnet18-4class.safetensors"), num_classes=4)

    def args(out, batch):
        os.makedirs(out, exist_ok=True)
        return [a.protocol, "--step-one", inet, "--weights", weights, "--backbone", "resnet18",
                "--stepI", os.path.join(out, "stepI.safetensors"), "--epochs", "2", "--image-size", "64",
                # 48 training images: a multiple of the world's batch (no padded sample)
                "--holdout", "0.25",
                "--set", "batch_size=%d" % batch, "--out", out]

    single = os.path.join(a.work, "stepI-single")
    r = h.run(args(single, 4), timeout=300, env=world_env(0, 1, 1))
    if not c.check(r.rc == 0, "Step I, one process, batch 4", "rc=%s\n%s\n%s" % (r.rc, r.out[-1500:], r.err[-1500:])):
        return
    two = os.path.join(a.work, "stepI-two")
    port = h.free_port()
    procs = [h.start(args(two, 2), world_env(i, 2, port)) for i in (0, 1)]
    results = [h.finish(p) for p in procs]
    ok = [c.check(rc == 0, "Step I rank %d exits 0" % i, "rc=%s\n%s\n%s" % (rc, out[-1500:], err[-1500:]))
          for i, (rc, out, err) in enumerate(results)]
    if not all(ok):
        return
    c.check("data-parallel over gloo" in results[0][1], "Step I rank 0 says it trains data-parallel", results[0][1][:400])
    c.check("Step I:" in results[0][1] and "Step I:" not in results[1][1], "only rank 0 reports Step I",
            results[1][1][-400:])
    files = sorted(f for f in os.listdir(two) if not f.startswith("."))
    c.check(files == sorted(f for f in os.listdir(single) if not f.startswith(".")),
            "the same files as one process's (written once, by rank 0)", files)

    def check_lines(text):  # the held-out check's numbers
        return [l for l in text.splitlines() if ("held-out" in l.lower() or "top-1" in l.lower()) and "galleries" not in l]
    c.check(check_lines(results[0][1]) == check_lines(r.out) and check_lines(r.out),
            "the held-out check of 2 processes is the one process's", (check_lines(results[0][1]), check_lines(r.out)))
    w1 = read_safetensors(os.path.join(single, "stepI.safetensors"))
    w2 = read_safetensors(os.path.join(two, "stepI.safetensors"))
    c.check(sorted(w1) == sorted(w2) and all(k.startswith("saliency.") for k in w1) and w1,
            "the same saliency.* tensors (%d)" % len(w1))
    worst = max(((relative_difference(w2[k], w1[k]), k) for k in w1 if k in w2), default=(1.0, "none"))
    c.check(worst[0] <= 1e-5, "Step I: 2 processes x batch 2 give the branch of 1 process x batch 4 (worst %.2e, %s)"
            % worst, worst)


if __name__ == "__main__":
    sys.exit(main())
