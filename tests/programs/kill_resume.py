#!/usr/bin/env python3
"""kill -9 at any moment loses nothing (issue 14, part 2).

    kill_resume.py --protocol PATH --weights-tool PATH --work DIR

1. Protocol: halsal_protocol on a generated dataset (4 classes x 12 images of 32-64 px; methods
   rgb and scratch-sal, k 1,2, seeds 0,1, 2 epochs, MobileNetV2 at 64 px, checkpoints every
   epoch) runs once uninterrupted. Then, in a second folder, it is stopped again and again and
   restarted each time: SIGKILL when a cell's first checkpoint appears (mid-cell, the next epoch
   running), while a checkpoint's temporary file is being written, when a cell's metrics.jsonl
   appears, when runs.csv gains a line (between cells), after seeded random short delays, and
   once each SIGINT and SIGTERM. Finally it runs to the end. runs.csv, table.csv, table.md,
   paired.csv, runs.jsonl and every cell's test_outcomes.csv must equal the uninterrupted run's
   byte for byte; both folders must hold the same files; no temporary or partial file (".tmp",
   ".partial", hidden or not) may remain.
2. Step I: halsal_protocol --step-one on a generated ImageNet-layout folder (4 wnid classes,
   weights with a 4-output head: Step I only needs the weights' head to match the folder's
   classes, so 1000 classes are not needed), the same way: SIGKILL at random moments, SIGINT,
   SIGTERM, then to the end; the Step I file and its three gallery PNGs must equal the
   uninterrupted run's byte for byte.
"""
import argparse
import glob
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import halsal_programs as h  # noqa: E402

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = os.path.join(SOURCE, "tests", "data", "backbones", "mobilenet_v2.keys")
ATTEMPT_TIMEOUT = 180 * h.TIME_SCALE  # seconds one start of the program may take
STOP_TIMEOUT = 30 * h.TIME_SCALE     # seconds a signalled program may take to stop

failures = []

def fail(msg):
    print("FAIL " + msg)
    failures.append(msg)


def start(args):
    return subprocess.Popen(["nice", "-n", "10"] + [str(a) for a in args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=h.ENV, start_new_session=True)


def run_to_end(args, label):
    t0 = time.monotonic()
    p = start(args)
    try:
        _, err = p.communicate(timeout=ATTEMPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        fail("%s: hung (killed after %d s)" % (label, ATTEMPT_TIMEOUT))
        return None
    if p.returncode != 0:
        fail("%s: exit %s\n%s" % (label, p.returncode, err.decode(errors="replace")[-3000:]))
        return None
    return time.monotonic() - t0


def interrupt(args, trigger, sig, label):
    """Starts the program, waits for trigger() (polled every 2 ms), sends `sig`, waits for the
    stop. Returns "fired", "finished" (the program ended first) or None after a failure."""
    t0 = time.monotonic()
    p = start(args)
    fired = False
    while p.poll() is None:
        if trigger(time.monotonic() - t0):
            p.send_signal(sig)
            fired = True
            break
        if time.monotonic() - t0 > ATTEMPT_TIMEOUT:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            fail("%s: neither finished nor triggered in %d s" % (label, ATTEMPT_TIMEOUT))
            return None
        time.sleep(0.002)
    try:
        _, err = p.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        fail("%s: did not stop within %d s of %s" % (label, STOP_TIMEOUT, sig.name))
        return None
    err = err.decode(errors="replace")
    seconds = time.monotonic() - t0
    sanitizer = re.search(r"ERROR: \w+Sanitizer|runtime error: ", err)
    if sanitizer:
        # Sanitizers exit non-zero like a stopped run: a report must not pass for a stop.
        fail("%s: sanitizer report (%s)\n%s" % (label, sanitizer.group(0), err[-3000:]))
        return None
    if not fired:
        if p.returncode != 0:
            fail("%s: exit %s before the trigger\n%s" % (label, p.returncode, err[-3000:]))
            return None
        print("     %-52s the run finished first (%.1f s)" % (label, seconds))
        return "finished"
    # Stopped by the signal (default action) or by a handler that exits non-zero.
    if p.returncode == 0:
        # The signal reached a process already on its way out (its work done): a finished run.
        print("     %-52s %s at %.2f s, but the run had just finished" % (label, sig.name, seconds))
        return "finished"
    if p.returncode < 0 and -p.returncode not in (sig, signal.SIGKILL):
        fail("%s: died of %s after %s" % (label, signal.Signals(-p.returncode).name, sig.name))
        return None
    how = signal.Signals(-p.returncode).name if p.returncode < 0 else "exit %d" % p.returncode
    print("     %-52s %s at %.2f s -> %s" % (label, sig.name, seconds, how))
    return "fired"


def listing(root):
    out = set()
    for d, _, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


def temp_names(root):
    return sorted(p for p in listing(root) if ".tmp" in os.path.basename(p) or ".partial" in os.path.basename(p))


def compare(ref, got, files, label):
    """True when every file of `files` is equal and no temporary file is left;
    the files found equal are in compare.equal."""
    ok = True
    compare.equal = []
    for f in files:
        a, b = os.path.join(ref, f), os.path.join(got, f)
        if not os.path.exists(b):
            fail("%s: %s is missing after the interrupted run" % (label, f))
            ok = False
        elif h.read(a) != h.read(b):
            fail("%s: %s differs from the uninterrupted run's" % (label, f))
            print("---- uninterrupted\n%s\n---- interrupted\n%s" % (h.read(a).decode(errors="replace")[:2000],
                                                                  h.read(b).decode(errors="replace")[:2000]))
            ok = False
        else:
            compare.equal.append(f)
    left = temp_names(got)
    if left:
        fail("%s: temporary or partial files left: %s" % (label, left))
        ok = False
    la, lb = listing(ref), listing(got)
    stale = sorted(p for p in lb - la if p.split(os.sep)[0] == "cells" and p.split(os.sep)[2:3] == ["checkpoints"])
    if stale:
        fail("%s: a finished cell's checkpoints were left: %s" % (label, ", ".join(stale)))
        ok = False
        lb -= set(stale)
    if la != lb:
        fail("%s: the folders hold different files: only uninterrupted %s, only interrupted %s"
             % (label, sorted(la - lb), sorted(lb - la)))
        ok = False
    return ok


def lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def protocol_test(exe, work, rng):
    ds = os.path.join(work, "ds")
    h.make_dataset(ds, classes=4, per_class=12, sizes=(32, 48, 64))
    common = ["--data", ds, "--methods", "rgb,scratch-sal", "--k", "1,2", "--seeds", "0,1", "--epochs", "2",
              "--warmup-epochs", "0", "--image-size", "64", "--backbone", "mobilenet_v2"]
    ref = os.path.join(work, "protocol-uninterrupted")
    got = os.path.join(work, "protocol-interrupted")
    seconds = run_to_end([exe] + common + ["--out", ref], "protocol, uninterrupted")
    if seconds is None:
        return
    print("protocol: uninterrupted run %.1f s" % seconds)
    args = [exe] + common + ["--out", got]

    def new_file(pattern):
        before = set(glob.glob(os.path.join(got, pattern)))
        return lambda t: bool(set(glob.glob(os.path.join(got, pattern))) - before)

    def runs_grows():
        n = lines(os.path.join(got, "runs.csv"))
        return lambda t: lines(os.path.join(got, "runs.csv")) > n

    def after(s):
        return lambda t: t >= s

    schedule = [
        ("SIGKILL when a cell's first checkpoint appears", signal.SIGKILL,
         lambda: new_file("cells/*/checkpoints/checkpoint-*.safetensors")),
        ("SIGKILL while a checkpoint is written", signal.SIGKILL,
         lambda: new_file("cells/*/checkpoints/.checkpoint-*.tmp-*")),
        ("SIGKILL when runs.csv gains a line", signal.SIGKILL, runs_grows),
        ("SIGKILL when a cell's metrics.jsonl appears", signal.SIGKILL, lambda: new_file("cells/*/metrics.jsonl")),
        ("SIGINT when a cell's checkpoint appears", signal.SIGINT,
         lambda: new_file("cells/*/checkpoints/checkpoint-*.safetensors")),
        ("SIGTERM when runs.csv gains a line", signal.SIGTERM, runs_grows),
    ]
    for i in range(3):
        delay = round(rng.uniform(0.4, max(0.8, seconds / 3)), 2)
        schedule.append(("SIGKILL after %.2f s" % delay, signal.SIGKILL, lambda d=delay: after(d)))
    schedule.append(("SIGKILL when runs.csv gains a line", signal.SIGKILL, runs_grows))
    fired = 0
    for label, sig, make_trigger in schedule:
        r = interrupt(args, make_trigger(), sig, label)
        if r is None:
            return
        if r == "finished":
            break
        fired += 1
    if run_to_end(args, "protocol, final resume") is None:
        return
    print("protocol: %d interruptions, then resumed to the end" % fired)
    if fired < 6:
        fail("protocol: only %d of the interruptions happened before the run finished" % fired)
    files = ["runs.csv", "table.csv", "table.md", "paired.csv", "runs.jsonl", "settings.json"]
    files += sorted(os.path.relpath(p, ref) for p in glob.glob(os.path.join(ref, "cells", "*", "test_outcomes.csv")))
    if compare(ref, got, files, "protocol"):
        outcomes = [f for f in compare.equal if f.endswith("test_outcomes.csv")]
        print("ok   protocol: %s equal the uninterrupted run's byte for byte; no temporary file left"
              % ", ".join([f for f in compare.equal if f not in outcomes] + ["%d test_outcomes.csv" % len(outcomes)]))
    # Resumed cells append to their metrics.jsonl; an epoch logged twice is worth knowing about.
    for m in sorted(glob.glob(os.path.join(got, "cells", "*", "metrics.jsonl"))):
        epochs = [l.split('"epoch":')[1].split(",")[0] for l in open(m) if '"epoch":' in l]
        if len(epochs) != len(set(epochs)):
            print("note %s logs epochs %s (an epoch repeated after a resume)" % (os.path.relpath(m, got), epochs))


def step_one_test(exe, work, rng):
    inet = os.path.join(work, "inet")
    h.make_dataset(inet, classes=4, per_class=16, sizes=(48, 64))
    for i, name in enumerate(sorted(os.listdir(inet))):
        os.rename(os.path.join(inet, name), os.path.join(inet, "n%08d" % (1440764 + i)))
    weights = h.backbone_weights(KEYS, os.path.join(work, "mnv2-4class.safetensors"), num_classes=4)

    def args(out):
        os.makedirs(out, exist_ok=True)
        return [exe, "--step-one", inet, "--weights", weights, "--stepI", os.path.join(out, "stepI.safetensors"),
                "--epochs", "3", "--image-size", "64", "--out", out]

    ref = os.path.join(work, "stepI-uninterrupted")
    got = os.path.join(work, "stepI-interrupted")
    seconds = run_to_end(args(ref), "Step I, uninterrupted")
    if seconds is None:
        return
    print("Step I: uninterrupted run %.1f s" % seconds)
    schedule = []
    for i in range(3):
        delay = round(rng.uniform(0.3, max(0.6, seconds * 0.75)), 2)
        schedule.append(("SIGKILL after %.2f s" % delay, signal.SIGKILL, delay))
    schedule.append(("SIGINT after %.2f s" % (seconds / 2), signal.SIGINT, seconds / 2))
    schedule.append(("SIGTERM after %.2f s" % (seconds / 2), signal.SIGTERM, seconds / 2))
    # While the Step I file itself is being written.
    schedule.append(("SIGKILL while stepI.safetensors is written", signal.SIGKILL, "temp"))
    fired = 0
    for label, sig, when in schedule:
        if when == "temp":
            pattern = os.path.join(got, ".stepI.safetensors.tmp-*")
            trigger = lambda t, before=set(glob.glob(pattern)): bool(set(glob.glob(pattern)) - before)
        else:
            trigger = lambda t, d=when: t >= d
        r = interrupt(args(got), trigger, sig, label)
        if r is None:
            return
        if r == "finished":
            shutil.rmtree(got)  # start the next interruption from scratch again
            continue
        fired += 1
    if run_to_end(args(got), "Step I, final run") is None:
        return
    print("Step I: %d interruptions, then run to the end" % fired)
    if fired < 3:
        fail("Step I: only %d of the interruptions happened before the run finished" % fired)
    files = ["stepI.safetensors", "stepI-helped.png", "stepI-hurt.png", "stepI-heldout.png"]
    if compare(ref, got, files, "Step I"):
        print("ok   Step I: %s equal the uninterrupted run's byte for byte; no temporary file left" % ", ".join(files))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--protocol", required=True, help="path of halsal_protocol")
    ap.add_argument("--work", required=True, help="working folder (emptied first)")
    ap.add_argument("--seed", type=int, default=14, help="seed of the random delays")
    ap.add_argument("--only", choices=["protocol", "step-one"], help="run one half")
    a = ap.parse_args()
    work = os.path.realpath(a.work)
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    rng = random.Random(a.seed)
    t0 = time.monotonic()
    if a.only in (None, "protocol"):
        protocol_test(a.protocol, work, rng)
    if a.only in (None, "step-one"):
        step_one_test(a.protocol, work, rng)
    print("kill/resume: %d failures, %.1f s" % (len(failures), time.monotonic() - t0))
    if failures:
        print("files kept in %s" % work)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
