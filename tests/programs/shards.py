#!/usr/bin/env python3
"""The protocol's grid over processes (issue 12, part 1): no communication, one output folder.

    shards.py --protocol PATH --ablation PATH --work DIR

- The same small protocol run as one process and as two shards started together (--shard 0/2 and
  1/2) gives the same runs.csv rows and the same tables; the shards' merge is in (method, k, seed)
  order.
- The environment of torchrun (RANK, WORLD_SIZE) and of Slurm (SLURM_PROCID, SLURM_NTASKS) picks
  the shard as --shard does.
- A shard killed after its first cell (cells count in the order k, seed, method: with
  --methods rgb,ncm shard 0/2 owns rgb with seeds 0 and 1) and started again runs its own remaining cells only, and
  `--merge` then writes the same tables.
- Bad worlds are refused before any work: WORLD_SIZE without RANK, a rank not below the size,
  --shard 3/2, --merge on a folder with no run.
- An ablation program (halsal_ablation_depth, MobileNetV2, Conv-1..4 and Baseline) as one process
  and as two processes with torchrun's environment writes the same runs.csv, results.md/csv and
  paired.csv; --merge writes them again; a shard with other settings is refused.

Standard library only; the programs run with one thread (halsal_programs.ENV).
"""
import argparse
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import halsal_programs as h  # noqa: E402

GRID = ["--methods", "rgb,ncm", "--k", "1", "--seeds", "0,1", "--image-size", "64", "--epochs", "1",
        "--warmup-epochs", "0"]


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def rows(path):
    lines = read(path).splitlines()
    return lines[0] if lines else "", lines[1:]


def env_without_world(**extra):
    env = {k: v for k, v in h.ENV.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")}
    env.update(extra)
    return env


def together(c, label, runs):
    """Starts every (args, env) at once and waits for all; checks they exit 0."""
    procs = [h.start(a, e) for a, e in runs]
    results = [h.finish(p) for p in procs]
    for i, (rc, out, err) in enumerate(results):
        c.check(rc == 0, "%s: process %d exits 0" % (label, i), "rc=%s\n%s\n%s" % (rc, out[-1500:], err[-1500:]))
    return results


def same_tables(c, label, a, b):
    ha, ra = rows(os.path.join(a, "runs.csv"))
    hb, rb = rows(os.path.join(b, "runs.csv"))
    c.check(ha == hb and len(ra) == 4 and sorted(ra) == sorted(rb), "%s: the same runs.csv rows" % label,
            "%s\n%s" % (ra, rb))
    for name in ("table.md", "table.csv", "paired.csv"):
        c.check(read(os.path.join(a, name)) == read(os.path.join(b, name)) != "", "%s: the same %s" % (label, name),
                "%s\n---\n%s" % (read(os.path.join(a, name)), read(os.path.join(b, name))))
    return rb


def expect_error(c, label, args, env, needle):
    r = h.run(args, timeout=60, env=env)
    text = r.out + r.err
    c.check(r.rc == 1 and needle in text, "%s is refused (%s)" % (label, needle), "rc=%s\n%s" % (r.rc, text[-1500:]))


ABLATION = ["--backbone", "mobilenet_v2", "--k", "1", "--seeds", "0", "--image-size", "64", "--epochs", "1",
            "--warmup-epochs", "0"]
ABLATION_FILES = ("runs.csv", "results.md", "results.csv", "paired.csv")


def ablation(c, exe, ds, work, env):
    base = [exe, "--data", ds] + ABLATION
    single = os.path.join(work, "ablation-single")
    r = h.run(base + ["--out", single], timeout=300, env=env)
    if not c.check(r.rc == 0, "the ablation as one process", "rc=%s\n%s\n%s" % (r.rc, r.out[-1500:], r.err[-1500:])):
        return
    two = os.path.join(work, "ablation-two")
    results = together(c, "the ablation under torchrun's environment",
                       [(base + ["--out", two], env_without_world(RANK=str(i), WORLD_SIZE="2", LOCAL_RANK=str(i)))
                        for i in (0, 1)])
    c.check(all("(torchrun)" in res[1] for res in results), "each ablation process says its place",
            [res[1][:300] for res in results])
    _, runs = rows(os.path.join(single, "runs.csv"))
    c.check(len(runs) == 5, "one process ran 5 cells (Conv-1..4, Baseline)", runs)
    for i in (0, 1):
        _, own = rows(os.path.join(two, "shards", "rank-%d-of-2" % i, "runs.csv"))
        c.check(len(own) == (3, 2)[i], "ablation shard %d/2 ran %d of the 5 cells" % (i, (3, 2)[i]), own)
    for name in ABLATION_FILES:
        c.check(read(os.path.join(single, name)) == read(os.path.join(two, name)) != "",
                "the ablation's two shards wrote one process's %s" % name,
                "%s\n---\n%s" % (read(os.path.join(single, name)), read(os.path.join(two, name))))
    for name in ABLATION_FILES:
        os.remove(os.path.join(two, name))
    r = h.run(base + ["--merge", "--out", two], timeout=120, env=env)
    c.check(r.rc == 0 and "seed=0] top-1" not in r.out and "merged 5 finished cell(s)" in r.out,
            "ablation --merge trains nothing and merges the 5 cells", r.out[-800:] + r.err[-800:])
    for name in ABLATION_FILES:
        c.check(read(os.path.join(single, name)) == read(os.path.join(two, name)),
                "ablation --merge writes the same %s" % name)
    other = list(ABLATION)
    other[other.index("--epochs") + 1] = "2"
    expect_error(c, "an ablation shard with other settings", [exe, "--data", ds] + other + ["--shard", "1/2", "--out", two],
                 env, "config.epochs: 1 before, 2 now")
    expect_error(c, "--step-one-only with scratch-sal", base + ["--step-one-only", "--out", two], env,
                 "only methods A and B have a Step I")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--ablation", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    if os.path.exists(a.work):
        shutil.rmtree(a.work)
    os.makedirs(a.work)
    ds = os.path.join(a.work, "ds")
    h.make_dataset(ds, classes=3, per_class=12, sizes=(64, 72))
    exe = a.protocol
    base = [exe, "--data", ds] + GRID
    c = h.Checks()
    env = env_without_world()

    single = os.path.join(a.work, "single")
    r = h.run(base + ["--out", single], timeout=300, env=env)
    if not c.check(r.rc == 0, "one process runs the grid", "rc=%s\n%s\n%s" % (r.rc, r.out[-1500:], r.err[-1500:])):
        return 1

    # Two shards at once, by --shard.
    two = os.path.join(a.work, "two")
    together(c, "--shard 0/2 and 1/2", [(base + ["--shard", "0/2", "--out", two], env),
                                        (base + ["--shard", "1/2", "--out", two], env)])
    merged = same_tables(c, "two shards", single, two)
    keys = [tuple(r.split(",")[:3]) for r in merged]
    order = sorted(keys, key=lambda k: (k[0] != "NCM (frozen features)", k[1], int(k[2])))
    c.check(keys == order, "the merged runs.csv is in (method, k, seed) order", keys)
    for i in (0, 1):
        _, own = rows(os.path.join(two, "shards", "rank-%d-of-2" % i, "runs.csv"))
        c.check(len(own) == 2, "shard %d/2 ran 2 of the 4 cells" % i, own)

    # The same from torchrun's and Slurm's environment.
    for name, var in (("torchrun", ("RANK", "WORLD_SIZE")), ("Slurm", ("SLURM_PROCID", "SLURM_NTASKS"))):
        out = os.path.join(a.work, name)
        results = together(c, name, [(base + ["--out", out], env_without_world(**{var[0]: str(i), var[1]: "2"}))
                                     for i in (0, 1)])
        c.check(all(("(%s)" % name) in res[1] for res in results), "%s: each process says where its place came from"
                % name, [res[1][:300] for res in results])
        same_tables(c, name, single, out)

    # Kill shard 0 after its first cell; it resumes its own cells only; --merge writes the tables.
    killed = os.path.join(a.work, "killed")
    own_csv = os.path.join(killed, "shards", "rank-0-of-2", "runs.csv")
    p = h.start(base + ["--shard", "0/2", "--out", killed], env)
    deadline = time.monotonic() + 300 * h.TIME_SCALE
    while time.monotonic() < deadline and p.poll() is None and len(rows(own_csv)[1]) < 1:
        time.sleep(0.2)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    h.finish(p)
    done_before = rows(own_csv)[1]
    c.check(len(done_before) == 1, "shard 0/2 was killed after its first cell", done_before)
    r = h.run(base + ["--shard", "0/2", "--out", killed], timeout=300, env=env)
    c.check(r.rc == 0 and r.out.count("done before, skipped") == 1 and r.out.count("top-1") == 1,
            "the restarted shard skips its finished cell and runs its other one", r.out[-1500:] + r.err[-800:])
    c.check("[rgb k=1 seed=0] done before" in r.out and "[rgb k=1 seed=1] top-1" in r.out and "[ncm" not in r.out,
            "the restarted shard touches only its own cells (rgb, seeds 0 and 1: cells 0 and 2 of the grid)",
            r.out[-1500:])
    c.check(not os.path.exists(os.path.join(killed, "table.md")), "no tables while shard 1/2 has not run")
    r = h.run(base + ["--shard", "1/2", "--out", killed], timeout=300, env=env)
    c.check(r.rc == 0, "shard 1/2 runs", r.err[-800:])
    os.remove(os.path.join(killed, "table.md"))
    r = h.run([exe, "--merge", "--out", killed], timeout=60, env=env)
    c.check(r.rc == 0 and "Merged 4 runs" in r.out, "--merge writes the tables", r.out[-800:] + r.err[-800:])
    same_tables(c, "killed, resumed and merged", single, killed)

    # Bad worlds: refused before any work.
    bad = os.path.join(a.work, "bad")
    expect_error(c, "WORLD_SIZE without RANK", base + ["--out", bad], env_without_world(WORLD_SIZE="2"),
                 "WORLD_SIZE is set but RANK is not")
    expect_error(c, "RANK=2 with WORLD_SIZE=2", base + ["--out", bad], env_without_world(RANK="2", WORLD_SIZE="2"),
                 "rank 2 is not below the world size 2")
    expect_error(c, "SLURM_NTASKS=x", base + ["--out", bad], env_without_world(SLURM_PROCID="0", SLURM_NTASKS="x"),
                 "SLURM_NTASKS=x is not a world size")
    expect_error(c, "--shard 3/2", base + ["--shard", "3/2", "--out", bad], env, "rank 3 is not below the world size 2")
    expect_error(c, "--shard 1", base + ["--shard", "1", "--out", bad], env, "expected I/N")
    expect_error(c, "--merge of an empty folder", [exe, "--merge", "--out", bad], env, "nothing to merge")
    c.check(not os.path.exists(os.path.join(bad, "runs.csv")), "nothing was written by the refused runs")

    ablation(c, a.ablation, ds, a.work, env)

    print("%d failure(s)" % c.failures)
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
