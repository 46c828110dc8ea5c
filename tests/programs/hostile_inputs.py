#!/usr/bin/env python3
"""The hostile-input matrix of halsal's programs (issue 14, part 3).

    hostile_inputs.py setup   --work DIR --bin NAME=PATH ...   # the valid fixture, made once
    hostile_inputs.py PROGRAM --work DIR --bin NAME=PATH ...   # that program's rows

Every row runs the program on one bad input -- a missing path, a folder where a file belongs, an
empty file, a truncated and a bit-flipped image / weights file (.pth, .safetensors) / model file /
checkpoint, a classes.csv with a missing or a duplicate row, an output folder on a full file
system -- and requires exit code 1 (no signal, no hang) and a stderr line that names the offending
file together with the problem (for checks of many files: every bad file). The full file system is
a 64 KiB tmpfs, mounted when the test runs as root and mount works; otherwise those rows are
skipped with the reason.

Bit flips are placed where the format can notice them: in an image's header, in the length of a
.safetensors header (model files and Step I files are safetensors too), inside a .pth entry (zip
entries carry a CRC-32) and inside a checkpoint (halsal checkpoints carry a CRC-32). A flip inside
the tensor data of a plain .safetensors file cannot be noticed: the format has no checksum.
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import halsal_programs as h  # noqa: E402

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = os.path.join(SOURCE, "tests", "data", "backbones", "mobilenet_v2.keys")
# The tiny settings every training call uses: seconds per run.
TINY = ["--backbone", "mobilenet_v2", "--image-size", "64", "--epochs", "1", "--warmup-epochs", "0"]


class Fixture:
    """The valid inputs the rows corrupt copies of (made by `setup`)."""

    def __init__(self, work):
        self.dir = os.path.join(work, "fixture")
        self.ds = os.path.join(self.dir, "ds")            # 4 classes x 12 images, PNG + BMP, classes.csv
        self.inet = os.path.join(self.dir, "inet")        # 4 wnid classes x 8 images (Step I)
        self.st = os.path.join(self.dir, "mnv2.safetensors")  # torchvision-named MobileNetV2, 4-class head
        self.pth = os.path.join(self.dir, "mnv2.pth")     # the same as torch.save's zip
        self.step_one = os.path.join(self.dir, "stepI.safetensors")
        self.model_dir = os.path.join(self.dir, "model")  # halsal_train --keep-checkpoints
        self.model = os.path.join(self.model_dir, "model.safetensors")
        self.checkpoints = os.path.join(self.model_dir, "checkpoints")
        self.stamp = os.path.join(self.dir, "ready")


def setup(fx, bins):
    if os.path.exists(fx.dir):
        shutil.rmtree(fx.dir)
    os.makedirs(fx.dir)
    h.make_dataset(fx.ds, bmp_every=4, classes_csv=True)
    h.make_dataset(fx.inet, classes=4, per_class=8)
    for i, name in enumerate(sorted(os.listdir(fx.inet))):
        os.rename(os.path.join(fx.inet, name), os.path.join(fx.inet, "n%08d" % (1440764 + i)))
    h.backbone_weights(KEYS, fx.st, num_classes=4)
    steps = [
        [bins["halsal_weights"], "convert", fx.st, fx.pth],
        [bins["halsal_protocol"], "--step-one", fx.inet, "--weights", fx.st, "--stepI", fx.step_one,
         "--image-size", "64", "--epochs", "1", "--out", os.path.join(fx.dir, "stepI-check")],
        [bins["halsal_train"], "--data", fx.ds, "--method", "scratch-sal", "--k", "1", "--out", fx.model_dir,
         "--keep-checkpoints"] + TINY,
    ]
    for args in steps:
        r = h.run(args, timeout=300)
        if r.rc != 0:
            print("setup failed: %s\nrc=%s\n%s\n%s" % (" ".join(args), r.rc, r.out, r.err))
            return 1
        print("setup: %s (%.1f s)" % (os.path.basename(args[0]), r.seconds))
    h.write(fx.stamp, b"ok\n")
    return 0


# ---------------------------------------------------------------------------------------------
# Bad copies of files and datasets


def bad_files(tmp, valid, flip_at, stem):
    """(label, path) for a missing file, a folder, an empty, a truncated and a bit-flipped copy of
    `valid`, all named <stem>-<what><ext> under tmp."""
    ext = os.path.splitext(valid)[1]
    data = h.read(valid)
    out = []
    missing = os.path.join(tmp, stem + "-missing" + ext)
    out.append(("missing", missing))
    folder = os.path.join(tmp, stem + "-folder" + ext)
    os.makedirs(folder, exist_ok=True)
    out.append(("folder", folder))
    out.append(("empty", h.write(os.path.join(tmp, stem + "-empty" + ext), b"")))
    out.append(("truncated", h.write(os.path.join(tmp, stem + "-truncated" + ext), h.truncated(data))))
    offset = flip_at(data) if callable(flip_at) else flip_at
    out.append(("bit-flipped", h.write(os.path.join(tmp, stem + "-flipped" + ext), h.bit_flipped(data, offset))))
    return out


def safetensors_flip(data):
    return 0  # the header's length: its JSON no longer parses


def middle(data):
    return len(data) // 2  # inside a zip entry or a checkpoint's tensors: a CRC-32 mismatch


PNG_FLIP = 18  # the IHDR width's third byte: the rows no longer fit the image data
BMP_FLIP = 19  # the width's second byte (+256 pixels): the rows no longer fit the file
# (a flip that makes a BMP smaller gives a valid, smaller picture: BMP has no checksum)


class Datasets:
    """Copies of the fixture's dataset with one kind of damage each."""

    def __init__(self, fx, tmp):
        self.fx, self.tmp, self.n = fx, tmp, 0

    def copy(self, label):
        self.n += 1
        d = os.path.join(self.tmp, "ds%02d-%s" % (self.n, label))
        while os.path.exists(d):
            self.n += 1
            d = os.path.join(self.tmp, "ds%02d-%s" % (self.n, label))
        shutil.copytree(self.fx.ds, d)
        return d

    def images(self):
        """(label, dataset folder, [bad files], problem regex or None) for bad images."""
        out = []
        png = "class_a/img_00.png"
        bmp = "class_b/img_03.bmp"
        for label, change in [
            ("image truncated (PNG)", lambda d: h.truncated(d)),
            ("image bit-flipped (PNG)", lambda d: h.bit_flipped(d, PNG_FLIP)),
            ("image empty", lambda d: b""),
            ("image is text", lambda d: b"this is not an image\n"),
        ]:
            d = self.copy(label.split(" (")[0].replace(" ", "-"))
            f = os.path.join(d, png)
            h.write(f, change(h.read(f)))
            out.append((label, d, [f]))
        d = self.copy("bmp-truncated")
        f = os.path.join(d, bmp)
        h.write(f, h.truncated(h.read(f)))
        out.append(("image truncated (BMP)", d, [f]))
        d = self.copy("bmp-flipped")
        f = os.path.join(d, bmp)
        h.write(f, h.bit_flipped(h.read(f), BMP_FLIP, 0x01))
        out.append(("image bit-flipped (BMP)", d, [f]))
        return out

    def several_bad(self, keep=20):
        """One folder with a truncated (to `keep` bytes: inside the header by default, which opening
        a dataset checks; None: half the file, which only decoding finds), an empty and a
        text-as-image file: all three must be named."""
        d = self.copy("three-bad")
        files = [os.path.join(d, p) for p in ("class_a/img_00.png", "class_b/img_01.png", "class_c/img_02.png")]
        h.write(files[0], h.truncated(h.read(files[0]), keep))
        h.write(files[1], b"")
        h.write(files[2], b"plain text, not a PNG\n")
        return d, files

    def classes_csv(self):
        """(label, dataset folder, classes.csv path) for a missing and a duplicate row."""
        out = []
        d = self.copy("csv-missing-row")
        h.write_classes_csv(d, ["class_a", "class_b", "class_d"])
        out.append(("classes.csv missing a row", d, os.path.join(d, "classes.csv")))
        d = self.copy("csv-duplicate-row")
        h.write_classes_csv(d, ["class_a", "class_b", "class_c", "class_d", "class_b"])
        out.append(("classes.csv duplicate row", d, os.path.join(d, "classes.csv")))
        d = self.copy("csv-truncated")
        f = os.path.join(d, "classes.csv")
        h.write(f, h.read(f)[:25])
        out.append(("classes.csv truncated", d, f))
        d = self.copy("csv-folder")
        f = os.path.join(d, "classes.csv")
        os.remove(f)
        os.makedirs(f)
        out.append(("classes.csv is a folder", d, f))
        return out


class FullDisk:
    """A 64 KiB tmpfs filled to the last block (or the reason there is none)."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "full")
        self.reason = h.tmpfs_or_reason(self.path)
        if self.reason is None:
            os.makedirs(os.path.join(self.path, "out"))
            h.fill(self.path)

    def out(self, name):
        return os.path.join(self.path, "out", name)

    def close(self):
        if self.reason is None:
            h.umount(self.path)


# ---------------------------------------------------------------------------------------------
# The programs' rows


def rows_weights(m, b, fx, tmp, full):
    exe = b["halsal_weights"]
    for valid, flip in ((fx.pth, middle), (fx.st, safetensors_flip)):
        kind = os.path.splitext(valid)[1]
        for label, f in bad_files(tmp, valid, flip, "weights"):
            m.expect_error("ls: %s %s" % (label, kind), [exe, "ls", f], f)
    bad = bad_files(tmp, fx.pth, middle, "in")
    m.expect_error("convert: input truncated", [exe, "convert", bad[3][1], os.path.join(tmp, "o.safetensors")], bad[3][1])
    folder = os.path.join(tmp, "out-folder.safetensors")
    os.makedirs(folder, exist_ok=True)
    m.expect_error("convert: output is a folder", [exe, "convert", fx.st, folder], folder)
    m.expect_error("convert: output folder missing", [exe, "convert", fx.st, os.path.join(tmp, "no", "such", "o.pth")],
                   os.path.join(tmp, "no", "such", "o.pth"))
    if full.reason:
        m.skip("convert: output on a full disk", full.reason)
    else:
        for ext in (".pth", ".safetensors"):
            o = full.out("o" + ext)
            m.expect_error("convert: output on a full disk (%s)" % ext, [exe, "convert", fx.st, o], o)
            leftover = [n for n in os.listdir(os.path.dirname(o)) if n.startswith("o.") or ".tmp" in n]
            if leftover:
                m.fail("convert: full disk leaves no file", "left %s" % leftover)


def dataset_rows(m, args_for, fx, tmp, several=True, images=True, decode=False):
    """The rows every program that opens a dataset shares; args_for(dataset) -> command line.
    decode: the program decodes every image up front (halsal_data info --verify decode)."""
    ds = Datasets(fx, tmp)
    missing = os.path.join(tmp, "no-such-dataset")
    m.expect_error("dataset missing", args_for(missing), missing)
    a_file = h.write(os.path.join(tmp, "a-file-not-a-folder"), b"x\n")
    m.expect_error("dataset is a file", args_for(a_file), a_file)
    if images:
        for label, d, files in ds.images():
            m.expect_error(label, args_for(d), files)
    if several:
        d, files = ds.several_bad(None if decode else 20)
        m.expect_error("3 bad images (every one named)", args_for(d), files)
    for label, d, f in ds.classes_csv():
        m.expect_error(label, args_for(d), f, problem="folder" if label.endswith("is a folder") else None)


def rows_data(m, b, fx, tmp, full):
    exe = b["halsal_data"]
    dataset_rows(m, lambda d: [exe, "info", d, "--verify", "decode"], fx, tmp, decode=True)
    ds = Datasets(fx, tmp)
    d, files = ds.several_bad()
    m.expect_error("info (header check): 3 bad images", [exe, "info", d], files)
    a_file = h.write(os.path.join(tmp, "a-file"), b"x\n")
    for label, args, name in [
        ("split: output is a folder", [exe, "split", fx.ds, "--k", "1", "--out", tmp], tmp),
        ("split: output's folder is a file", [exe, "split", fx.ds, "--k", "1", "--out", os.path.join(a_file, "s.csv")],
         a_file),
        ("cache: output is a folder", [exe, "cache", fx.ds, "--size", "16", "--out", tmp], tmp),
        ("sample-synthetic: output is a folder", [exe, "sample-synthetic", os.path.join(tmp, "x.png")], None),
    ]:
        if name is None:
            os.makedirs(os.path.join(tmp, "x.png"), exist_ok=True)
            name = os.path.join(tmp, "x.png")
        m.expect_error(label, args, name)
    if full.reason:
        m.skip("split/cache/sample-synthetic: full disk", full.reason)
        return
    for label, args, name in [
        ("split: output on a full disk", [exe, "split", fx.ds, "--k", "1", "--out", full.out("split.csv")],
         full.out("split.csv")),
        ("cache: output on a full disk", [exe, "cache", fx.ds, "--size", "16", "--out", full.out("c.cache")], "c.cache"),
        ("sample-synthetic: output on a full disk", [exe, "sample-synthetic", full.out("grid.png")],
         full.out("grid.png")),
    ]:
        m.expect_error(label, args, name)
    leftover = os.listdir(os.path.join(full.path, "out"))
    if leftover:
        m.fail("full disk leaves no partial file", "left in the output folder: %s" % leftover)


def weight_rows(m, args_for, fx, tmp, labels=None):
    for valid, flip in ((fx.pth, middle), (fx.st, safetensors_flip)):
        kind = os.path.splitext(valid)[1]
        for label, f in bad_files(tmp, valid, flip, "weights"):
            if labels and label not in labels:
                continue
            m.expect_error("weights %s (%s)" % (label, kind), args_for(f), f)


def checkpoint_rows(m, b, fx, tmp):
    """A damaged newest checkpoint in halsal_train's --out: the run must say so, by name, either
    refusing (exit 1) or passing over it to the one before (exit 0 with a warning)."""
    exe = b["halsal_train"]
    src = os.path.join(fx.checkpoints, "checkpoint-000001.safetensors")
    for label, change in (("truncated", h.truncated), ("bit-flipped", lambda d: h.bit_flipped(d, middle(d)))):
        out = os.path.join(tmp, "ckpt-" + label)
        shutil.copytree(fx.checkpoints, os.path.join(out, "checkpoints"))
        f = os.path.join(out, "checkpoints", "checkpoint-000001.safetensors")
        h.write(f, change(h.read(src)))
        args = [exe, "--data", fx.ds, "--method", "scratch-sal", "--k", "1", "--out", out] + TINY
        r = h.run(args, timeout=120)
        row = "checkpoint %s" % label
        lines = [l for l in r.err.splitlines() if f in l]
        if r.timed_out or r.rc < 0 or r.rc not in (0, 1):
            m.fail(row, "rc=%s timed_out=%s\n%s" % (r.rc, r.timed_out, r.err[-1500:]))
        elif not lines:
            m.fail(row, "exit %d without naming %s on stderr:\n%s" % (r.rc, f, r.err[-1500:]))
        else:
            m.rows.append((row, "ok", lines[0], r.seconds))
            print("ok   %-44s %5.1fs  exit %d: %s" % (row, r.seconds, r.rc, lines[0]))
    # The selected weights (best.safetensors) of an interrupted run, truncated.
    out = os.path.join(tmp, "best-truncated")
    shutil.copytree(fx.checkpoints, os.path.join(out, "checkpoints"))
    f = os.path.join(out, "checkpoints", "best.safetensors")
    h.write(f, h.truncated(h.read(f)))
    m.expect_error("best.safetensors truncated", [exe, "--data", fx.ds, "--method", "scratch-sal", "--k", "1",
                                                  "--out", out] + TINY, f)


def out_rows(m, args_for, tmp, full, name_in_full):
    """--out given as an existing file, and on a full disk."""
    a_file = h.write(os.path.join(tmp, "out-is-a-file"), b"x\n")
    m.expect_error("--out is a file", args_for(a_file), a_file)
    if full.reason:
        m.skip("--out on a full disk", full.reason)
        return
    out = full.out("run")
    m.expect_error("--out on a full disk", args_for(out), name_in_full(out))


def rows_train(m, b, fx, tmp, full):
    exe = b["halsal_train"]
    base = [exe, "--method", "scratch-sal", "--k", "1"] + TINY
    n = [0]

    def out():
        n[0] += 1
        return os.path.join(tmp, "out%02d" % n[0])

    dataset_rows(m, lambda d: base + ["--data", d, "--out", out()], fx, tmp)
    weight_rows(m, lambda w: base + ["--data", fx.ds, "--weights", w, "--out", out()], fx, tmp)
    for label, f in bad_files(tmp, fx.step_one, safetensors_flip, "stepI"):
        if label in ("truncated", "bit-flipped", "missing"):
            m.expect_error("Step I file %s (method A)" % label,
                           [exe, "--method", "A", "--k", "1"] + TINY + ["--data", fx.ds, "--weights", fx.st,
                                                                       "--stepI", f, "--out", out()], f)
    checkpoint_rows(m, b, fx, tmp)
    out_rows(m, lambda o: base + ["--data", fx.ds, "--out", o], tmp, full, lambda o: o)


def model_rows(m, args_for, fx, tmp, which="model"):
    for label, f in bad_files(tmp, fx.model, safetensors_flip, which):
        m.expect_error("%s file %s" % (which, label), args_for(f), f)
    # A valid safetensors file that is not a model file: the backbone weights.
    m.expect_error("%s file: weights, not a model" % which, args_for(fx.st), fx.st)


def rows_eval(m, b, fx, tmp, full):
    exe = b["halsal_eval"]
    o = os.path.join(tmp, "eval-out")
    model_rows(m, lambda f: [exe, "--model", f, "--data", fx.ds, "--out", o], fx, tmp)
    dataset_rows(m, lambda d: [exe, "--model", fx.model, "--data", d, "--subset", "all", "--out", o], fx, tmp)
    out_rows(m, lambda o: [exe, "--model", fx.model, "--data", fx.ds, "--out", o], tmp, full, lambda o: o)


def rows_predict(m, b, fx, tmp, full):
    exe = b["halsal_predict"]
    good = os.path.join(fx.ds, "class_a", "img_01.png")
    model_rows(m, lambda f: [exe, "--model", f, good], fx, tmp)
    png = os.path.join(fx.ds, "class_a", "img_00.png")
    for label, f in bad_files(tmp, png, PNG_FLIP, "image"):
        m.expect_error("image %s (PNG)" % label, [exe, "--model", fx.model, good, f], f)
    bmp = os.path.join(fx.ds, "class_a", "img_03.bmp")
    for label, f in bad_files(tmp, bmp, BMP_FLIP, "image"):
        if label in ("truncated", "bit-flipped"):
            m.expect_error("image %s (BMP)" % label, [exe, "--model", fx.model, f], f)
    text = h.write(os.path.join(tmp, "text.jpg"), b"hello\n")
    m.expect_error("image is text (.jpg)", [exe, "--model", fx.model, text], text)
    folder = os.path.join(tmp, "overlay-folder.png")
    os.makedirs(folder, exist_ok=True)
    m.expect_error("--saliency-png is a folder", [exe, "--model", fx.model, good, "--saliency-png", folder], folder)
    a_file = h.write(os.path.join(tmp, "out-is-a-file"), b"x\n")
    m.expect_error("--out is a file", [exe, "--model", fx.model, good, "--out", a_file], a_file)
    if full.reason:
        m.skip("--saliency-png / --out on a full disk", full.reason)
        return
    o = full.out("overlay.png")
    m.expect_error("--saliency-png on a full disk", [exe, "--model", fx.model, good, "--saliency-png", o], o)
    m.expect_error("--out on a full disk", [exe, "--model", fx.model, good, "--out", full.out("d")],
                   full.out("d"))


def rows_gallery(m, b, fx, tmp, full):
    exe = b["halsal_gallery"]
    o = os.path.join(tmp, "g.png")
    model_rows(m, lambda f: [exe, "--data", fx.ds, "--baseline", f, "--ours", fx.model, "--out", o], fx, tmp,
               "baseline model")
    bad = bad_files(tmp, fx.model, safetensors_flip, "ours")
    m.expect_error("ours model file truncated", [exe, "--data", fx.ds, "--baseline", fx.model, "--ours", bad[3][1],
                                                 "--out", o], bad[3][1])
    dataset_rows(m, lambda d: [exe, "--data", d, "--baseline", fx.model, "--ours", fx.model, "--out", o], fx, tmp,
                 images=False)
    # Opening checks headers only; a truncated PNG is found when the test split is decoded, so
    # every image of one class is truncated (some of them are test images).
    d = Datasets(fx, tmp).copy("class-truncated")
    files = sorted(os.path.join(d, "class_a", f) for f in os.listdir(os.path.join(d, "class_a")) if f.endswith(".png"))
    for f in files:
        h.write(f, h.truncated(h.read(f)))
    m.expect_error("images truncated (test split)", [exe, "--data", d, "--baseline", fx.model, "--ours", fx.model,
                                                     "--out", o], files, any_name=True)
    folder = os.path.join(tmp, "gallery-folder.png")
    os.makedirs(folder, exist_ok=True)
    m.expect_error("--out is a folder", [exe, "--data", fx.ds, "--baseline", fx.model, "--ours", fx.model,
                                         "--out", folder], folder)
    if full.reason:
        m.skip("--out on a full disk", full.reason)
        return
    g = full.out("g.png")
    m.expect_error("--out on a full disk", [exe, "--data", fx.ds, "--baseline", fx.model, "--ours", fx.model,
                                            "--out", g, "--tile", "32"], g)


def protocol_base(exe):
    return [exe, "--methods", "rgb", "--k", "1", "--seeds", "0"] + TINY


def corrupt_out_rows(m, args_for, tmp, files):
    """A finished output folder whose bookkeeping files (runs.csv, settings.json, ...) are damaged:
    a rerun must name the file."""
    src = os.path.join(tmp, "valid-out")
    r = h.run(args_for(src), timeout=180)
    if r.rc != 0:
        m.fail("valid run for the damaged-output rows", "rc=%s\n%s" % (r.rc, r.err[-1500:]))
        return
    for name, changes in files:
        for label, change in changes:
            out = os.path.join(tmp, "damaged-%s-%s" % (name.replace("/", "_"), label))
            shutil.copytree(src, out)
            f = os.path.join(out, name)
            h.write(f, change(h.read(f)))
            m.expect_error("%s %s in --out" % (name, label), args_for(out), f)


def rows_protocol(m, b, fx, tmp, full):
    exe = b["halsal_protocol"]
    n = [0]

    def out():
        n[0] += 1
        return os.path.join(tmp, "out%02d" % n[0])

    base = protocol_base(exe)
    dataset_rows(m, lambda d: base + ["--data", d, "--out", out()], fx, tmp)
    weight_rows(m, lambda w: base + ["--data", fx.ds, "--weights", w, "--out", out()], fx, tmp)
    for label, f in bad_files(tmp, fx.step_one, safetensors_flip, "stepI"):
        m.expect_error("Step I file %s (method A)" % label,
                       [exe, "--methods", "A", "--k", "1", "--seeds", "0"] + TINY +
                       ["--data", fx.ds, "--weights", fx.st, "--stepI", f, "--out", out()], f)
    # Step I's own inputs: its weights and its ImageNet-layout folder.
    step_one = lambda w, d, o: [exe, "--step-one", d, "--weights", w, "--stepI", os.path.join(o, "s.safetensors"),
                                "--image-size", "64", "--epochs", "1", "--out", o]
    for label, f in bad_files(tmp, fx.st, safetensors_flip, "stepone-weights"):
        if label in ("truncated", "bit-flipped", "missing"):
            o = out()
            os.makedirs(o)
            m.expect_error("Step I: weights %s" % label, step_one(f, fx.inet, o), f)
    inet = os.path.join(tmp, "inet-bad")
    shutil.copytree(fx.inet, inet)
    bad_img = os.path.join(inet, sorted(os.listdir(inet))[1], "img_00.png")
    h.write(bad_img, h.truncated(h.read(bad_img)))
    o = out()
    os.makedirs(o)
    m.expect_error("Step I: image truncated", step_one(fx.st, inet, o), bad_img)
    trunc = lambda d: h.truncated(d)
    corrupt_out_rows(m, lambda o: base + ["--data", fx.ds, "--out", o], tmp, [
        ("runs.csv", [("truncated", lambda d: d[:len(d) - 9]), ("bit-flipped", lambda d: h.bit_flipped(d, len(d) - 6, 0x40))]),
        ("settings.json", [("truncated", trunc)]),
        ("cells/rgb-k1-s0/test_outcomes.csv", [("truncated", trunc)]),
    ])
    out_rows(m, lambda o: base + ["--data", fx.ds, "--out", o], tmp, full, lambda o: o)


def rows_ablation(program):
    def rows(m, b, fx, tmp, full):
        exe = b[program]
        n = [0]

        def out():
            n[0] += 1
            return os.path.join(tmp, "out%02d" % n[0])

        base = [exe, "--backbone", "mobilenet_v2", "--k", "1", "--seeds", "0", "--image-size", "64", "--epochs", "1",
                "--warmup-epochs", "0"]
        dataset_rows(m, lambda d: base + ["--data", d, "--out", out()], fx, tmp)
        weight_rows(m, lambda w: base + ["--data", fx.ds, "--weights", w, "--out", out()], fx, tmp,
                    labels=("truncated", "bit-flipped", "missing"))
        corrupt_out_rows(m, lambda o: base + ["--data", fx.ds, "--out", o], tmp, [
            ("runs.csv", [("truncated", lambda d: d[:len(d) - 9])]),
        ])
        out_rows(m, lambda o: base + ["--data", fx.ds, "--out", o], tmp, full, lambda o: o)
    return rows


PROGRAMS = {
    "halsal_weights": rows_weights,
    "halsal_data": rows_data,
    "halsal_train": rows_train,
    "halsal_eval": rows_eval,
    "halsal_predict": rows_predict,
    "halsal_gallery": rows_gallery,
    "halsal_protocol": rows_protocol,
    "halsal_ablation_depth": rows_ablation("halsal_ablation_depth"),
    "halsal_ablation_fusion": rows_ablation("halsal_ablation_fusion"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["setup"] + sorted(PROGRAMS))
    ap.add_argument("--work", required=True, help="working folder (the fixture lives in WORK/fixture)")
    ap.add_argument("--bin", action="append", default=[], help="NAME=PATH of a program")
    a = ap.parse_args()
    bins = dict(x.split("=", 1) for x in a.bin)
    work = os.path.realpath(a.work)
    os.makedirs(work, exist_ok=True)
    fx = Fixture(work)
    if a.what == "setup":
        return setup(fx, bins)
    if not os.path.exists(fx.stamp):
        print("no fixture at %s: run the setup first (ctest runs programs.setup)" % fx.dir)
        return 1
    os.makedirs(os.path.join(work, "runs"), exist_ok=True)
    tmp = os.path.realpath(tempfile.mkdtemp(prefix=a.what + "-", dir=os.path.join(work, "runs")))
    full = FullDisk(tmp)
    m = h.Matrix(a.what)
    # A wrong argument: exit 1 and the program's name, like every other error.
    m.expect_error("unknown option", [bins[a.what], "--no-such-option"], a.what, problem=r"see --help")
    if full.reason:
        print("full-disk rows skipped: %s" % full.reason)
    try:
        PROGRAMS[a.what](m, bins, fx, tmp, full)
    finally:
        full.close()
    rc = m.finish()
    if rc == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("inputs kept in %s" % tmp)
    return rc


if __name__ == "__main__":
    sys.exit(main())
