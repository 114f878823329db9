#!/usr/bin/env python3
"""Writes a small seed corpus per fuzz target into OUT/<target>/.

    make_seeds.py OUT [--repo ROOT]

Seeds are generated, never committed: small safetensors files, shard
indexes for the harness's shards (a.safetensors: x, y; b.safetensors: z;
c.safetensors: none), torch.save checkpoints (Debian's python3-torch) and
their data.pkl, ZIP archives from Python's zipfile, resume journals for the
harness's identity (32 bytes of 0x5a, 4 units), job files (the repository's
jobs/*.json too) and command lines (arguments separated by NUL bytes).
"""
import argparse
import collections
import io
import json
import os
import struct
import sys
import zipfile
import zlib


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, nbytes)], laid out in order."""
    sizes = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "U8": 1, "I8": 1,
             "BOOL": 1}
    hdr, off = {}, 0
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        n = sizes[dtype]
        for s in shape:
            n *= s
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    text = json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(range(256)) * (off // 256) + bytes(off % 256)


def seeds_safetensors(out):
    write(out, "safetensors", "empty", safetensors([]))
    write(out, "safetensors", "meta", safetensors([("w", "F32", [2, 2])], {"format": "pt", "k": "v\u00e9"}))
    write(out, "safetensors", "several", safetensors(
        [("model.embed.weight", "BF16", [4, 3]), ("model.layers.0.weight", "F16", [2, 3]),
         ("model.norm", "F32", [3]), ("scalar", "F64", []), ("empty", "I8", [2, 0]), ("mask", "BOOL", [5])]))
    write(out, "safetensors", "unpadded", safetensors([("a", "U8", [3]), ("b", "I64", [1])], pad=False))
    esc = b'{"a\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":[{"y":null,"z":true}]}}'
    write(out, "safetensors", "escapes", struct.pack("<Q", len(esc)) + esc + b"\0")


def seeds_index(out):
    full = {"metadata": {"total_size": 26},
            "weight_map": {"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"}}
    write(out, "index", "full", json.dumps(full, indent=2))
    write(out, "index", "one", json.dumps({"metadata": {}, "weight_map": {"z": "b.safetensors"}}))
    write(out, "index", "empty-shard", json.dumps({"weight_map": {"x": "a.safetensors", "y": "a.safetensors",
                                                                  "q": "c.safetensors"}}))
    write(out, "index", "wrong", json.dumps({"weight_map": {"x": "b.safetensors", "w": "../a.safetensors"}}))


def torch_files():
    """(name, bytes) of small torch.save checkpoints."""
    import torch
    torch.manual_seed(0)
    res = []

    def save(name, obj):
        b = io.BytesIO()
        torch.save(obj, b)
        res.append((name, b.getvalue()))

    sd = collections.OrderedDict()
    sd["layer.weight"] = torch.randn(3, 4)
    sd["layer.bias"] = torch.zeros(3)
    sd["half"] = torch.ones(2, 2, dtype=torch.float16)
    sd["bf"] = torch.ones(2, dtype=torch.bfloat16)
    save("state_dict", sd)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    save("views", {"t": base.t(), "row": base[1], "col": base[:, 2], "tied": base, "scalar": torch.tensor(7.0)})
    save("checkpoint", {"epoch": 3, "model_state_dict": {"w": torch.ones(2, 3, dtype=torch.float64)},
                        "optimizer": {"lr": 1}, "name": "x"})
    save("nested", {"enc": {"a": torch.ones(1, dtype=torch.int64)}, "dec": {"b": torch.zeros(2, dtype=torch.bool)},
                    "c": torch.ones(1, dtype=torch.int8), "d": torch.ones(1, dtype=torch.uint8),
                    "e": torch.ones(1, dtype=torch.int16), "f": torch.ones(1, dtype=torch.int32)})
    save("parameter", {"p": torch.nn.Parameter(torch.ones(2, 2))})
    save("empty", {})
    return res


def seeds_torch(out):
    files = torch_files()
    for name, data in files:
        write(out, "torch", name, data)
        write(out, "zip", name, data)
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                if info.filename.endswith("data.pkl"):
                    write(out, "pickle", name, z.read(info))
    # plain archives from Python's zipfile (data descriptors off, a deflated record, a comment)
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/version", b"3\n")
        z.writestr(zipfile.ZipInfo("archive/data/0"), b"\0" * 8, zipfile.ZIP_DEFLATED)
        z.comment = b"mq"
    write(out, "zip", "python", b.getvalue())
    write(out, "torch", "python", b.getvalue())
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as f:
            f.write(b"\x80\x02}.")
    write(out, "zip", "zip64", b.getvalue())
    # pickles written by hand: lists, memo, every int width, a float
    write(out, "pickle", "plain", b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01(K\x01M\x00\x01J\xff\xff\xff\xff"
                                  b"\x8a\x05\x00\x00\x00\x00\x01eh\x01\x88\x89N)\x85\x86\x87G?\xf0\x00\x00\x00\x00\x00\x00"
                                  b"\x85U\x01bq\x02r\x03\x00\x00\x00\x86u.")


def journal(entries, n_units=4):
    h = b"mq-dist journal 1\n" + b"\x5a" * 32 + struct.pack("=Q", n_units)
    for rec in entries:
        h += struct.pack("=I", len(rec)) + rec + struct.pack("=I", zlib.crc32(rec) & 0xffffffff)
    return h


def seeds_journal(out):
    write(out, "journal", "header", journal([]))
    write(out, "journal", "two", journal([b"\x00" * 120, bytes(range(152))]))
    write(out, "journal", "torn", journal([b"abc"])[:-2])
    write(out, "journal", "other", b"mq-dist journal 1\n" + b"\x11" * 40)


def seeds_job(out, repo):
    write(out, "job", "minimal", json.dumps({"models": [{"input": "m.safetensors"}]}))
    write(out, "job", "full", json.dumps({
        "report": "reports/nightly",
        "defaults": {"scheme": "int8", "exclude": ["lm_head", "embed"], "memory_budget": 64, "no-checksum": True},
        "models": [
            {"name": "tiny", "input": "models/tiny.safetensors", "output": "out/tiny.int8.safetensors",
             "calib": "calib/tiny.h5", "options": {"granularity": "tensor", "observer": "mse", "act": "int8"}},
            {"input": "/abs/two.pt", "options": {"scheme": "uint8", "include": "proj", "calib-samples": 16}},
            {"name": "c", "input": "m.safetensors.index.json", "options": {"scheme": "bf16", "force": True}},
        ]}, indent=1))
    write(out, "job", "errors", '{"models": [{"input": "x", "options": {"scheme": 1e400, "force": "yes"}}], "x": [1]}')
    if repo:
        jobs = os.path.join(repo, "jobs")
        for name in sorted(os.listdir(jobs)):
            if name.endswith(".json"):
                with open(os.path.join(jobs, name), "rb") as f:
                    write(out, "job", name, f.read())


def seeds_options(out):
    lines = [
        ["model.safetensors"],
        ["-o", "out.pt", "-s", "uint8", "-g", "tensor", "-i", "proj$", "-x", "(^|\\.)lm_head\\.", "m.safetensors"],
        ["--scheme=bf16", "--no-default-excludes", "--force", "--dry-run", "--report", "r.json", "m.pt"],
        ["--calib", "c.h5", "--calib-samples", "8", "--observer", "percentile:99.9", "--act", "uint8",
         "--calib-missing=weights-only", "-m", "64", "--no-sync", "--no-checksum", "-q", "m.bin"],
        ["inspect", "--observer", "entropy", "x.h5"],
        ["--job", "zoo.json", "--groups", "2"],
        ["--help"], ["-V"], ["--", "-weird.safetensors"],
    ]
    for i, args in enumerate(lines):
        write(out, "options", "args%d" % i, b"\0".join(a.encode() for a in args))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--repo", help="the repository, for its jobs/*.json")
    a = ap.parse_args()
    seeds_safetensors(a.out)
    seeds_index(a.out)
    seeds_torch(a.out)
    seeds_journal(a.out)
    seeds_job(a.out, a.repo)
    seeds_options(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
