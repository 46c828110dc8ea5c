#!/usr/bin/env python3
"""C++ (bench_models) against Python eager (python_twin.py) on the same LibTorch, side by side.

    compare.py --bench BUILD/bench/bench_models [--data-bench BUILD/bench/bench_data] [--python PY]
               [--rounds 3] [--size 224] [--batch 8] [--steps 3] [--threads 0] [--precision fp32|bf16]
               [--channels-last] [--only key,key] [--out DIR]

Runs halsal (C++, its defaults: eval-mode BatchNorm folded into the convolutions, freed CPU tensor
memory kept for reuse, networks with depthwise convolutions channels-last), halsal with --no-fold
--no-memory-cache --no-channels-last ("C++ plain": the language alone) and the Python twin, one
network at a time: in each of --rounds rounds every network is timed by every program back to back,
rotating which goes first, so that the machine's drift touches all programs alike. It reports the
median img/s of each program and, per network, the median of the rounds' own C++/Python ratios
(paired: both from the same round) with their range, for the eval forward and the train step; with
--channels-last a fourth program, halsal channels-last for every network. For
ResNet-50's train step also the share of this CPU's fp32 peak (cores x FMA units x SIMD lanes x 2 x
the clock /proc/cpuinfo reports). With --data-bench, the data loader's img/s (decoding, and from the
decoded-image cache) join the table under the train columns. Writes compare.md and compare.json into
--out.
The machine should be otherwise idle: it is noisy (about +-15 % run to run).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# ResNet-50 at 224 px: 4.09 G multiply-adds forward (torchvision's count); a train step costs about
# 3 forward passes (forward, and backward's two products per layer).
RESNET50_FORWARD_FLOP = 2 * 4.09e9


def cpu_peak():
    """(GFLOP/s, text) of the fp32 peak: cores x FMA units x lanes x 2 x clock."""
    flags, mhz, model, vendor, family = set(), None, "?", "", 0
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "flags" and not flags:
                flags = set(value.split())
            elif key == "cpu MHz" and mhz is None:
                mhz = float(value)
            elif key == "model name" and model == "?":
                model = value.strip()
            elif key == "vendor_id" and not vendor:
                vendor = value.strip()
            elif key == "cpu family" and not family:
                family = int(value)
    cores = os.cpu_count()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    # Zen 4 (AMD family 25 with AVX-512) runs a 512-bit FMA as two halves on its 256-bit pipes: its
    # fp32 peak per cycle is AVX2's. Zen 5 (family 26) has 512-bit pipes.
    split = vendor == "AuthenticAMD" and family < 26 and lanes == 16
    if split:
        lanes = 8
    fma_units = 2 if "fma" in flags else 1  # two FMA pipes per core on Zen 2+ and Haswell+
    flops = 2 if "fma" in flags else 1
    peak = cores * fma_units * lanes * flops * (mhz or 0) / 1e3
    text = ("%d cores x %d FMA units x %d fp32 lanes%s x 2 x %.0f MHz (/proc/cpuinfo's 'cpu MHz', the clock the "
            "hypervisor reports) = %.1f GFLOP/s (%s%s)" %
            (cores, fma_units, lanes, " (AVX-512 split into 256-bit halves)" if split else "", mhz or 0, peak, model,
             ", family %d" % family if family else ""))
    return peak, text


def run(cmd, echo=True):
    """Runs cmd, stops with its error output if it fails; returns its standard output."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("compare: %s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stderr[-2000:]))
    if echo:
        sys.stderr.write(r.stdout)
    return r.stdout


def row_keys(program):
    """The row keys a benchmark program measures (its --list), in its order."""
    return run(program + ["--list"], echo=False).split()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="path of bench_models")
    ap.add_argument("--data-bench", default="", help="path of bench_data (adds the loader's img/s)")
    ap.add_argument("--channels-last", action="store_true", help="also time halsal with --channels-last")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=PATH",
                    help="also time another bench_models build (e.g. an older commit's), in its own column, "
                         "with C++'s paired ratio over it")
    ap.add_argument("--python", default=sys.executable, help="the Python with torch and torchvision")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="bench-out")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    common = ["--size", str(a.size), "--batch", str(a.batch), "--steps", str(a.steps), "--threads", str(a.threads),
              "--precision", a.precision]
    programs = {"C++": [a.bench], "C++ plain": [a.bench, "--no-fold", "--no-memory-cache", "--no-channels-last"],
                "Python": [a.python, os.path.join(HERE, "python_twin.py")]}
    known = row_keys(programs["C++"])  # one list of networks, bench_models', which the twin must match
    twin = row_keys(programs["Python"])
    if twin != known:
        sys.exit("compare: bench_models and python_twin.py measure different networks: %s against %s" %
                 (", ".join(known), ", ".join(twin)))
    keys = [k for k in a.only.split(",") if k] or known
    unknown = set(keys) - set(known)
    if unknown:
        sys.exit("compare: unknown network key(s) %s; known: %s" % (", ".join(sorted(unknown)), ", ".join(known)))
    extras = []  # the extra columns: (name, program)
    if a.channels_last:
        extras.append(("C++ channels-last", [a.bench, "--channels-last"]))
    for item in a.also:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            sys.exit("compare: --also wants NAME=PATH, got %r" % item)
        extras.append((name, [path]))
    for name, program in extras:
        programs[name] = program
    names = list(programs)
    results = {name: [] for name in names}
    paired = {}  # (round, key) -> {program: its row}
    data = None
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for i, key in enumerate(keys):
                shift = (r + i) % len(names)
                order = names[shift:] + names[:shift]  # each program leads in turn
                for name in order:
                    out = os.path.join(tmp, "%s-%d-%s.json" % (name.replace(" ", "_"), r, key))
                    sys.stderr.write("round %d/%d, %s: %s\n" % (r + 1, a.rounds, key, name))
                    run(programs[name] + common + ["--only", key, "--json", out])
                    with open(out) as f:
                        doc = json.load(f)
                    results[name].append(doc)
                    for row in doc["rows"]:
                        paired.setdefault((r, row["key"]), {})[name] = row
        if a.data_bench:
            out = os.path.join(tmp, "data.json")
            sys.stderr.write("data loader\n")
            shared = os.path.join(HERE, "..", "..", "shared")  # ../shared beside the checkout, when there
            run([a.data_bench, "--images", "400", "--json", out, "--shared", shared] +
                (["--threads", str(a.threads)] if a.threads > 0 else []))
            with open(out) as f:
                data = json.load(f)

    def medians(lang):
        by_key = {}
        for doc in results[lang]:
            for row in doc["rows"]:
                by_key.setdefault(row["key"], {"network": row["network"], "eval": [], "train": []})
                by_key[row["key"]]["eval"].append(row["eval_ips"])
                by_key[row["key"]]["train"].append(row["train_ips"])
        return {k: {"network": v["network"], "eval": statistics.median(v["eval"]), "train": statistics.median(v["train"]),
                    "eval_runs": v["eval"], "train_runs": v["train"]} for k, v in by_key.items()}

    def ratio(key, num, den, what):
        """Median and range over the rounds of num's img/s over den's, both from the same round."""
        rs = [p[num][what + "_ips"] / p[den][what + "_ips"] for (_, k), p in sorted(paired.items())
              if k == key and num in p and den in p and p[den][what + "_ips"] > 0]
        return (statistics.median(rs), min(rs), max(rs), rs) if rs else None

    def cell(r):
        return "%.2f [%.2f, %.2f]" % r[:3] if r else ""

    cpp, plain, py = medians("C++"), medians("C++ plain"), medians("Python")
    extra_medians = {name: medians(name) for name, _ in extras}
    peak, peak_text = cpu_peak()
    first = results["C++"][0]
    lines = ["# C++ (halsal) against Python eager, the same LibTorch", "",
             "%s; LibTorch %s (C++) and PyTorch %s (Python); %d threads; batch %d, %d px, %s; %d timed steps after "
             "one warm-up; medians of %d rounds, each network timed by every program back to back in each round, each "
             "program leading in turn; frozen BatchNorm, SGD momentum 0.9. img/s; C++ = halsal as it ships (eval-mode "
             "BatchNorm folded into the convolutions, freed CPU tensor memory kept for reuse, channels-last where the "
             "network has depthwise convolutions: marked NHWC), C++ plain = halsal --no-fold --no-memory-cache "
             "--no-channels-last (the language alone)%s. The ratios are the median of the rounds' own ratios "
             "(C++ and Python from the same round) and, in brackets, their smallest and largest." %
             (datetime.date.today().isoformat(), first["torch"], results["Python"][0]["torch"], first["threads"],
              a.batch, a.size, a.precision, a.steps, a.rounds,
              "".join(", %s = %s" % (n, " ".join(p)) for n, p in extras)),
             ""]
    extra = "".join(" %s eval / train (C++ over it) |" % n for n, _ in extras)
    extra_rule = "---:|" * len(extras)
    lines += ["| network | eval C++ | eval C++ plain | eval Python | C++/Py | plain/Py | train C++ | train C++ plain |"
              " train Python | C++/Py | plain/Py |" + extra,
              "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + extra_rule]
    rows = []
    for key, c in cpp.items():
        p, q = py.get(key), plain.get(key)
        if not p or not q:
            continue
        ratios = {"eval_ratio": ratio(key, "C++", "Python", "eval"),
                  "eval_plain_ratio": ratio(key, "C++ plain", "Python", "eval"),
                  "train_ratio": ratio(key, "C++", "Python", "train"),
                  "train_plain_ratio": ratio(key, "C++ plain", "Python", "train")}
        nhwc = any(row.get("channels_last") for doc in results["C++"] for row in doc["rows"] if row["key"] == key)
        row = {"key": key, "network": c["network"], "cpp": c, "cpp_plain": q, "python": p, "cpp_channels_last": nhwc}
        for name, r in ratios.items():
            row[name] = r[0] if r else None
            row[name + "_range"] = [r[1], r[2]] if r else None
            row[name + "_rounds"] = r[3] if r else []
        line = "| %s%s | %.1f | %.1f | %.1f | %s | %s | %.1f | %.1f | %.1f | %s | %s |" % (
            c["network"], " (NHWC)" if nhwc else "", c["eval"], q["eval"], p["eval"], cell(ratios["eval_ratio"]),
            cell(ratios["eval_plain_ratio"]), c["train"], q["train"], p["train"], cell(ratios["train_ratio"]),
            cell(ratios["train_plain_ratio"]))
        for name, _ in extras:
            e = extra_medians[name].get(key)
            row[name] = e
            vs = [ratio(key, "C++", name, what) for what in ("eval", "train")]  # before/after, paired
            row["cpp_over_" + name] = [{"median": r[0], "range": [r[1], r[2]]} if r else None for r in vs]
            line += (" %.1f / %.1f (C++ %s / %s) |" % (e["eval"], e["train"], cell(vs[0]), cell(vs[1])) if e
                     else " |")
        lines.append(line)
        rows.append(row)
    if data:
        # The loader feeds the train step: its img/s belong next to the train columns.
        for d in data["rows"]:
            if d["what"].startswith("loader") or (d["what"] == "decode JPEG" and d["threads"] > 1):
                lines.append("| data: %s (%s, %d thread%s) | | | | | | %.1f | | | | |%s" % (
                    d["what"], d["data"], d["threads"], "s" if d["threads"] > 1 else "", d["images_per_s"],
                    " |" * len(extras)))
    lines.append("")
    if "resnet50" in cpp and peak > 0:
        achieved = cpp["resnet50"]["train"] * 3 * RESNET50_FORWARD_FLOP * (a.size / 224.0) ** 2 / 1e9
        lines.append("ResNet-50 train step (C++): %.1f GFLOP/s = %.1f %% of the fp32 peak, %s." %
                     (achieved, 100 * achieved / peak, peak_text))
        lines.append("")
    lines.append("Command: `python3 bench/compare.py %s`; img/s per round are in compare.json." %
                 " ".join(sys.argv[1:]))
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(a.out, "compare.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "compare.json"), "w") as f:
        json.dump({"machine": platform.node(), "peak": peak_text, "rows": rows, "runs": results, "data": data}, f,
                  indent=2)


if __name__ == "__main__":
    main()
