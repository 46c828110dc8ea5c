#!/usr/bin/env python3
"""Writes the small weight files halsal::io's tests read, and the values they must give.

Run with the venv's Python (torch 2.x and safetensors installed):
    ~/.cache/halsal/venv/bin/python tests/data/make_io_fixtures.py
Outputs go to tests/data/io/ (a few KB in all). The tensors and golden values are deterministic;
the bytes of the .pth files are not quite (torch.save writes a serialization id, and legacy
storage keys are memory addresses).

    python make_io_fixtures.py --check-safetensors FILE [--check-pth FILE]
checks that Python reads files written by halsal (prints every tensor's name, dtype, shape, sum).
"""
import argparse
import collections
import datetime
import io
import os
import pickle
import struct
import sys
import zipfile

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "io")
# Seeds for the pickle fuzzer (tests/fuzz/fuzz_pickle.cpp): raw pickles as torch.save writes them.
PICKLE_SEEDS = os.path.join(HERE, "..", "fuzz", "corpus", "pickle")


def mixed_state_dict():
    """Every storage type halsal reads, a non-contiguous view and shared storages."""
    sd = collections.OrderedDict()
    base = (torch.arange(12, dtype=torch.float32) * 0.37 - 1.1).reshape(3, 4)
    sd["w_f32"] = base
    # A transposed view of w_f32: same storage, strides (1, 4).
    sd["w_f32_t"] = base.t()
    big = torch.arange(30, dtype=torch.float64).reshape(5, 6) / 7.0
    # A strided view with a storage offset: rows 1.., every second column.
    sd["f64_view"] = big[1:, ::2]
    sd["f64_base"] = big
    sd["w_f16"] = torch.tensor([0.5, -1.25, 3.0, 65504.0, 1e-4], dtype=torch.float16)
    sd["w_bf16"] = torch.tensor([[1.5, -2.0, 3.140625], [0.0078125, -100.0, 7.0]], dtype=torch.bfloat16)
    sd["i64"] = torch.tensor([0, -7, 2**40 + 3, -(2**62)], dtype=torch.int64)
    sd["i32"] = torch.tensor([2**31 - 1, -(2**31), 12345], dtype=torch.int32)
    sd["i16"] = torch.tensor([-32768, 32767, 5], dtype=torch.int16)
    sd["u8"] = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    sd["i8"] = torch.tensor([-128, -1, 0, 127], dtype=torch.int8)
    sd["flag"] = torch.tensor([True, False, True, True, False])
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.linspace(-1, 1, 7))
    # torch.nn.Module.state_dict() attaches this; pickled with BUILD, as in torchvision's files.
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return sd


def tiny_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    bn = net[1]
    bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, -0.4]))
    bn.running_var.copy_(torch.tensor([0.5, 1.5, 2.0, 0.8]))
    bn.num_batches_tracked.fill_(17)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.1, 0.9, -0.7, 1.3]))
        bn.bias.copy_(torch.tensor([0.05, -0.1, 0.2, 0.0]))
    return net.eval()


def tiny_input():
    # Exactly representable in both Python and C++: arange / 54 - 1.
    return (torch.arange(108, dtype=torch.float32) / 54 - 1).reshape(1, 3, 6, 6)


def fmt_ints(xs):
    return ",".join(str(int(x)) for x in xs) or "-"


def golden_lines(fname, sd, shared_storage=True):
    """NAME DTYPE SHAPE STRIDES OFFSET SUM WSUM GROUP: WSUM = sum((i+1) * x_i) over the
    row-major elements (catches permutations a plain sum misses); GROUP numbers the storages, so
    tensors with the same GROUP share one ("-": the format has no shared storages)."""
    groups = {}
    lines = []
    for k, t in sd.items():
        t = t.detach()
        ptr = t.untyped_storage().data_ptr()
        g = groups.setdefault(ptr, len(groups))
        flat = t.reshape(-1).to(torch.float64)
        s = flat.sum().item() if flat.numel() else 0.0
        w = (flat * torch.arange(1, flat.numel() + 1, dtype=torch.float64)).sum().item() if flat.numel() else 0.0
        lines.append(
            f"{fname} {k} {str(t.dtype).replace('torch.', '')} {fmt_ints(t.shape)} {fmt_ints(t.stride())} "
            f"{t.storage_offset()} {s!r} {w!r} {g if shared_storage else '-'}"
        )
    return lines


class _Anything(dict):
    pass


class _Skimmer(pickle.Unpickler):
    """Reads past one pickle without building torch objects."""

    def persistent_load(self, pid):
        return None

    def find_class(self, module, name):
        return lambda *args, **kwargs: _Anything()


def skim_pickle(f):
    _Skimmer(f).load()


def legacy_bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def make():
    os.makedirs(OUT, exist_ok=True)
    golden = []

    sd = mixed_state_dict()
    torch.save(sd, os.path.join(OUT, "mixed_zip.pth"))
    write("mixed_legacy.pth", legacy_bytes(sd))
    for fname in ("mixed_zip.pth", "mixed_legacy.pth"):
        loaded = torch.load(os.path.join(OUT, fname), weights_only=True)
        golden += golden_lines(fname, loaded)

    # A training-script checkpoint: nested dicts, integer keys (optimizer state), lists and
    # other non-tensor entries.
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    (p ** 2).sum().backward()
    opt.step()  # momentum_buffer = grad = 2 p = [2, -2]
    nested = {"epoch": 7, "arch": "tiny", "state_dict": collections.OrderedDict(
        [("a", torch.tensor([1.0, 2.0])), ("b", torch.tensor([[3, 4]], dtype=torch.int64))]),
        "optimizer": opt.state_dict()}
    torch.save(nested, os.path.join(OUT, "nested_zip.pth"))
    golden += golden_lines("nested_zip.pth", collections.OrderedDict(
        [("state_dict." + k, v) for k, v in nested["state_dict"].items()] +
        [("optimizer.state.0.momentum_buffer", nested["optimizer"]["state"][0]["momentum_buffer"])]))

    # Python's safetensors of the same tensors (contiguous; safetensors stores no views).
    st = collections.OrderedDict((k, v.detach().contiguous()) for k, v in sd.items())
    save_file(st, os.path.join(OUT, "python.safetensors"), metadata={"source": "make_io_fixtures"})
    os.chmod(os.path.join(OUT, "python.safetensors"), 0o644)
    golden += golden_lines("python.safetensors", load_file(os.path.join(OUT, "python.safetensors")),
                           shared_storage=False)

    net = tiny_net()
    torch.save(net.state_dict(), os.path.join(OUT, "tiny_net.pth"))
    write("tiny_net_legacy.pth", legacy_bytes(net.state_dict()))
    with torch.no_grad():
        y = net(tiny_input())
    with open(os.path.join(OUT, "tiny_net_output.txt"), "w") as f:
        f.write("# tiny_net(arange(108)/54-1 reshaped 1x3x6x6) in eval mode, written by make_io_fixtures.py\n")
        f.write(" ".join(repr(v) for v in y.reshape(-1).tolist()) + "\n")

    # Hostile or foreign files: a global that is not a tensor constructor...
    torch.save({"w": torch.ones(2), "when": datetime.date(2020, 1, 1)},
               os.path.join(OUT, "evil_global.pth"), pickle_protocol=2)
    # ...and a legacy file whose object pickle starts with an opcode that does not exist (0xfe
    # in place of its first GLOBAL).
    raw = bytearray(legacy_bytes(collections.OrderedDict([("w", torch.ones(2))])))
    f = io.BytesIO(bytes(raw))
    for _ in range(3):
        pickle.load(f)
    at = f.tell()
    assert raw[at:at + 3] == b"\x80\x02c", raw[at:at + 3]
    raw[at + 2] = 0xFE
    write("bad_opcode_legacy.pth", bytes(raw))

    os.makedirs(PICKLE_SEEDS, exist_ok=True)
    for name in ("tiny_net", "mixed_zip", "nested_zip"):
        with zipfile.ZipFile(os.path.join(OUT, name + ".pth")) as z:
            pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            with open(os.path.join(PICKLE_SEEDS, name + ".pkl"), "wb") as f:
                f.write(z.read(pkl))
    # The legacy stream up to the storages: five consecutive pickles.
    raw = legacy_bytes(collections.OrderedDict([("w", torch.ones(2)), ("h", torch.ones(1).half())]))
    f = io.BytesIO(raw)
    for _ in range(5):
        skim_pickle(f)
    with open(os.path.join(PICKLE_SEEDS, "legacy_stream.pkl"), "wb") as out:
        out.write(raw[:f.tell()])

    with open(os.path.join(OUT, "golden.txt"), "w") as f:
        f.write("# FILE NAME DTYPE SHAPE STRIDES OFFSET SUM WSUM GROUP -- written by make_io_fixtures.py\n")
        f.write("\n".join(golden) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {OUT}")


def describe(name, sd):
    for k, t in sd.items():
        print(f"{name} {k} {str(t.dtype).replace('torch.', '')} {list(t.shape)} "
              f"{t.double().sum().item()!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-safetensors", help="a safetensors file written by halsal")
    ap.add_argument("--check-pth", help="a .pth file written by halsal")
    args = ap.parse_args()
    if args.check_safetensors or args.check_pth:
        if args.check_safetensors:
            describe("safetensors", load_file(args.check_safetensors))
        if args.check_pth:
            describe("pth", torch.load(args.check_pth, weights_only=True))
        return 0
    make()
    return 0


if __name__ == "__main__":
    sys.exit(main())
