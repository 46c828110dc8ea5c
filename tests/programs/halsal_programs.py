"""Shared pieces of the program-level tests (standard library only).

Tiny image writers (PNG, BMP), a synthetic dataset in the `folders` layout, a runner with a
per-call timeout that reports signals and hangs, and the checks of the hostile-input matrix.
"""
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

# Every program call gets one intra-op thread and sleeping (not spinning) OpenMP waits: the tests
# must stay cheap on a shared 2-core machine.
ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HALSAL_NUM_THREADS="1", OMP_NUM_THREADS="1")
ENV.pop("HALSAL_CACHE_DIR", None)


def png_bytes(width, height, pixels):
    """An 8-bit RGB PNG; pixels: bytes of width*height*3."""
    raw = b"".join(b"\x00" + pixels[y * width * 3:(y + 1) * width * 3] for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def bmp_bytes(width, height, pixels):
    """A 24-bit bottom-up BMP; pixels: RGB bytes of width*height*3."""
    stride = (width * 3 + 3) & ~3
    rows = []
    for y in reversed(range(height)):
        row = bytearray()
        for x in range(width):
            r, g, b = pixels[(y * width + x) * 3:(y * width + x) * 3 + 3]
            row += bytes((b, g, r))
        rows.append(bytes(row) + b"\x00" * (stride - width * 3))
    data = b"".join(rows)
    header = struct.pack("<2sIHHI", b"BM", 54 + len(data), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    return header + info + data


def class_image(cls, index, size):
    """A size×size picture of class `cls`: a coloured square on noise, placed by `index`."""
    seed = (cls * 7919 + index * 104729 + 12345) & 0xFFFFFFFF
    colours = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40), (200, 60, 220), (40, 210, 210)]
    cr, cg, cb = colours[cls % len(colours)]
    pix = bytearray(size * size * 3)
    x0 = (seed >> 3) % (size // 2)
    y0 = (seed >> 9) % (size // 2)
    side = size // 2
    for y in range(size):
        for x in range(size):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            n = (seed >> 16) & 0x3F
            i = (y * size + x) * 3
            if x0 <= x < x0 + side and y0 <= y < y0 + side:
                pix[i:i + 3] = bytes((min(255, cr + n // 4), min(255, cg + n // 4), min(255, cb + n // 4)))
            else:
                pix[i:i + 3] = bytes((n + 60, n + 60, n + 60))
    return bytes(pix)


def make_dataset(root, classes=4, per_class=12, sizes=(32, 48, 64), bmp_every=0, classes_csv=False):
    """A `folders`-layout dataset: root/<class>/img_NN.png (every bmp_every-th image a BMP)."""
    os.makedirs(root, exist_ok=True)
    names = ["class_%c" % (ord("a") + c) for c in range(classes)]
    for c, name in enumerate(names):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            size = sizes[(c + i) % len(sizes)]
            pix = class_image(c, i, size)
            if bmp_every and i % bmp_every == bmp_every - 1:
                data, ext = bmp_bytes(size, size, pix), ".bmp"
            else:
                data, ext = png_bytes(size, size, pix), ".png"
            with open(os.path.join(root, name, "img_%02d%s" % (i, ext)), "wb") as f:
                f.write(data)
    if classes_csv:
        write_classes_csv(root, names)
    return names


def write_classes_csv(root, folders):
    with open(os.path.join(root, "classes.csv"), "w") as f:
        f.write("index,folder,name\n")
        for i, name in enumerate(folders):
            f.write("%d,%s,%s\n" % (i, name, name.replace("_", " ")))


def truncated(data, keep=None):
    """The first half (or `keep` bytes) of `data`."""
    return data[:len(data) // 2 if keep is None else keep]


def bit_flipped(data, offset, bit=0x10):
    b = bytearray(data)
    b[offset] ^= bit
    return bytes(b)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


class Result:
    def __init__(self, args, rc, out, err, seconds, timed_out):
        self.args, self.rc, self.out, self.err, self.seconds, self.timed_out = args, rc, out, err, seconds, timed_out


# Sanitizer builds run several times slower: HALSAL_TEST_TIME_SCALE (make test-asan sets it)
# stretches every time limit of these tests.
TIME_SCALE = float(os.environ.get("HALSAL_TEST_TIME_SCALE", "1") or 1)


def run(args, timeout=60, cwd=None, env=None):
    """Runs a program (niced); never raises for its failure: see Result.timed_out and .rc (< 0: signal)."""
    timeout = timeout * TIME_SCALE
    t0 = time.monotonic()
    p = subprocess.Popen(["nice", "-n", "10"] + [str(a) for a in args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=cwd, env=env or ENV, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        timed_out = True
    return Result(args, p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                  time.monotonic() - t0, timed_out)


def start(args, env=None, nice=True):
    """Starts a program in its own session (for several at once); collect it with finish()."""
    return subprocess.Popen((["nice", "-n", "10"] if nice else []) + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env or ENV, start_new_session=True)


def finish(p, timeout=300):
    """(returncode, stdout, stderr) of a start()ed program; killed after `timeout` (then rc is
    the signal's, negative)."""
    try:
        out, err = p.communicate(timeout=timeout * TIME_SCALE)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def free_port():
    """A TCP port on localhost that nothing listens on now (for a c10d master)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tmpfs_or_reason(path, size="64k"):
    """Mounts a small tmpfs at `path`; returns None on success, else why it could not."""
    if os.geteuid() != 0:
        return "not running as root"
    if shutil.which("mount") is None:
        return "no mount command"
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", path], capture_output=True, text=True)
    if p.returncode != 0:
        return "mount -t tmpfs failed: " + (p.stderr.strip() or "exit %d" % p.returncode)
    return None


def fill(path):
    """Fills the file system holding folder `path` (a file that grows until ENOSPC)."""
    fd = os.open(os.path.join(path, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True)


class Matrix:
    """Collects the rows of one program's hostile-input matrix and the failures among them."""

    def __init__(self, program):
        self.program = program
        self.failures = []
        self.rows = []
        self.t0 = time.monotonic()

    def expect_error(self, label, args, names, problem=None, timeout=60, cwd=None, any_name=False):
        """The call must exit with 1 (no signal, no hang) and stderr must name every string of
        `names` (the offending files; with any_name, one of them), each on a line that says what
        is wrong with it (`problem`, a regular expression, when given; else some words)."""
        import re
        r = run(args, timeout=timeout, cwd=cwd)
        why = None
        sanitizer = re.search(r"ERROR: \w+Sanitizer|runtime error: ", r.err)
        if r.timed_out:
            why = "hung (killed after %d s)" % timeout
        elif sanitizer:
            # Sanitizers exit with 1 too: a report must not pass for the expected error.
            why = "sanitizer report (%s)" % sanitizer.group(0)
        elif r.rc < 0:
            why = "killed by signal %s" % signal.Signals(-r.rc).name
        elif r.rc != 1:
            why = "exit code %d, expected 1" % r.rc
        else:
            lines = [l for l in r.err.splitlines() if l.strip()]
            names_ = [names] if isinstance(names, str) else list(names)

            def says(line, name):
                # The name, and a problem: the given pattern, or at least two words besides the name.
                if name not in line:
                    return False
                if problem is not None:
                    return re.search(problem, line) is not None
                rest = re.sub(r"^\s*halsal[_a-z]*:\s*", "", line).replace(name, "")
                return len(re.findall(r"[A-Za-z]{2,}", rest)) >= 2

            named = [n for n in names_ if any(says(l, n) for l in lines)]
            if (any_name and not named) or (not any_name and len(named) < len(names_)):
                missing = [n for n in names_ if n not in named]
                why = "stderr does not name %s with its problem on one line" % (
                    ("one of " if any_name else "") + " and ".join(missing))
        message = r.err.strip().splitlines()[-1] if r.err.strip() else "(no stderr)"
        self.rows.append((label, "ok" if why is None else "FAIL", message, r.seconds))
        status = "ok  " if why is None else "FAIL"
        print("%s %-44s %5.1fs  %s" % (status, label, r.seconds, message if why is None else why))
        if why is not None:
            print("     command: %s\n     rc=%s\n     stderr: %s" % (" ".join(map(str, args)), r.rc, r.err.strip()[-2000:]))
            self.failures.append("%s: %s" % (label, why))
        sys.stdout.flush()
        return r

    def skip(self, label, reason):
        self.rows.append((label, "skipped", reason, 0.0))
        print("skip %-44s        %s" % (label, reason))
        sys.stdout.flush()

    def fail(self, label, why):
        self.rows.append((label, "FAIL", why, 0.0))
        print("FAIL %-44s        %s" % (label, why))
        self.failures.append("%s: %s" % (label, why))

    def finish(self):
        print("%s: %d rows, %d failed, %.1f s" % (self.program, len(self.rows), len(self.failures),
                                               time.monotonic() - self.t0))
        if self.failures:
            for f in self.failures:
                print("  FAILED " + f)
            return 1
        return 0


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, dtype 'F32'|'I64', shape, bytes)."""
    import json
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)


def backbone_weights(keys_file, path, num_classes):
    """A torchvision-named weights file of random (not pretrained) values with the shapes listed in
    tests/data/backbones/<model>.keys, its head cut to `num_classes` outputs: enough for Step I and
    for every reader, at a fraction of the real file's size."""
    import array
    import math
    import random
    rng = random.Random(1234)
    pattern = array.array("f", [rng.uniform(-1.0, 1.0) * math.sqrt(3.0) for _ in range(4099)])
    tensors = []
    lines = [l.split() for l in open(keys_file) if l.strip()]
    head = lines[-2][0].rsplit(".", 1)[0]
    for name, shape_text in lines:
        shape = [] if shape_text == "scalar" else [int(s) for s in shape_text.split("x")]
        if name.startswith(head + ".") and shape:
            shape[0] = num_classes
        count = 1
        for s in shape:
            count *= s
        if name.endswith("num_batches_tracked"):
            tensors.append((name, "I64", shape, struct.pack("<q", 0)))
            continue
        leaf = name.rsplit(".", 1)[1]
        if leaf in ("running_var",) or (leaf == "weight" and len(shape) == 1):
            values = array.array("f", [1.0]) * count
        elif leaf in ("bias", "running_mean"):
            values = array.array("f", [0.0]) * count
        else:
            fan_in = count // shape[0]
            scale = math.sqrt(1.0 / fan_in)
            scaled = array.array("f", [v * scale for v in pattern])
            values = (scaled * (count // len(scaled) + 1))[:count]
        tensors.append((name, "F32", shape, values.tobytes()))
    write_safetensors(path, tensors)
    return path


# A list of named checks that keeps going after a failure and counts them (for tests that are one
# script with many checks).
class Checks:
    def __init__(self):
        self.failures = 0

    def check(self, ok, what, detail=""):
        print("%s %s" % ("ok  " if ok else "FAIL", what))
        if not ok:
            self.failures += 1
            if detail:
                print("     " + str(detail).replace("\n", "\n     ")[:3000])
        return ok
