#!/usr/bin/python3
"""Write deterministic synthetic safetensors models for mq-dist tests and benchmarks.

The model looks like a small decoder-only transformer (embeddings, attention and
MLP projections, norms, a bias, a conv weight, int64 position ids, lm_head).
Every tensor is drawn from its own numpy RNG seeded with (seed, crc32(name)), so
a tensor's values do not depend on the layout, the number of shards or the
other options.  Files are written by hand, following the safetensors rules:
8-byte little-endian header length N, a JSON header padded with spaces to a
multiple of 8, then the tensors sorted by element size (descending) and name,
at contiguous offsets from 0.  Data is generated and written in row blocks, so
memory stays bounded whatever the model size.

--corrupt KIND writes a small malformed file instead, for error-path tests.
Prints nothing on success; errors go to stderr with a non-zero exit status.
"""

import argparse
import json
import os
import struct
import sys
import zlib

import numpy as np

MIB = 1 << 20
BLOCK_BYTES = 16 * MIB          # float32 bytes generated per block
ELEM_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}
INDEX_SUFFIX = "model.safetensors.index.json"
AUTO_HIDDEN = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
MAX_AUTO_LAYERS = 64            # --size-mib without --hidden: widen until layers <= this
EDGE_TENSOR = "model.layers.0.self_attn.q_proj.weight"  # gets a zero and a constant row
CONST_ROW_VALUE = 0.05

CORRUPT_KINDS = (
    "truncated", "short", "header-too-large", "header-past-eof", "bad-json",
    "bad-utf8", "overlap", "hole", "trailing", "unknown-dtype", "size-mismatch",
    "negative-shape", "float-offset", "exp-offset", "duplicate-name",
    "metadata-not-string", "nan", "inf", "not-first-zero",
)


class Spec:
    """One tensor to generate: name, safetensors dtype, shape and value kind."""

    def __init__(self, name, dtype, shape, kind):
        self.name = name
        self.dtype = dtype
        self.shape = list(shape)
        self.kind = kind            # "weight", "norm", "bias" or "ids"

    @property
    def numel(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self):
        return self.numel * ELEM_SIZE[self.dtype]


# ---------------------------------------------------------------- model shape

def model_specs(dtype, layers, hidden):
    """The tensor list of a model with `layers` blocks of width `hidden`."""
    h, vocab = hidden, 4 * hidden
    specs = [Spec("model.embed_tokens.weight", dtype, [vocab, h], "weight"),
             Spec("lm_head.weight", dtype, [vocab, h], "weight"),
             Spec("model.conv.weight", dtype, [8, 4, 3, 3], "weight"),
             Spec("model.position_ids", "I64", [16], "ids")]
    for i in range(layers):
        p = "model.layers.%d." % i
        for proj in ("q", "k", "v", "o"):
            specs.append(Spec(p + "self_attn.%s_proj.weight" % proj, dtype, [h, h], "weight"))
        specs.append(Spec(p + "self_attn.q_proj.bias", dtype, [h], "bias"))
        specs.append(Spec(p + "mlp.gate_proj.weight", dtype, [2 * h, h], "weight"))
        specs.append(Spec(p + "mlp.up_proj.weight", dtype, [2 * h, h], "weight"))
        specs.append(Spec(p + "mlp.down_proj.weight", dtype, [h, 2 * h], "weight"))
        specs.append(Spec(p + "input_layernorm.weight", dtype, [h], "norm"))
    return specs


def model_bytes(dtype, layers, hidden):
    """Total tensor data bytes of model_specs(dtype, layers, hidden)."""
    es, h = ELEM_SIZE[dtype], hidden
    fixed = (2 * 4 * h * h + 8 * 4 * 3 * 3) * es + 16 * 8
    return fixed + layers * (10 * h * h + 2 * h) * es


def layers_for_size(dtype, hidden, size_mib):
    """Number of layers that brings the model closest to size_mib MiB (at least 1)."""
    per_layer = model_bytes(dtype, 1, hidden) - model_bytes(dtype, 0, hidden)
    target = size_mib * MIB - model_bytes(dtype, 0, hidden)
    return max(1, int(round(target / per_layer)))


def hidden_for_size(dtype, layers, size_mib):
    """Hidden size that brings a model of `layers` blocks closest to size_mib MiB."""
    target = size_mib * MIB
    lo, hi = 1, 1
    while model_bytes(dtype, layers, hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:      # model_bytes grows with hidden: bisect
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if model_bytes(dtype, layers, mid) < target else (lo, mid)
    return min((lo, hi), key=lambda h: abs(model_bytes(dtype, layers, h) - target))


# ---------------------------------------------------------------- tensor data

def f32_to_bf16_bits(x):
    """float32 array -> uint16 bfloat16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bits = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():  # keep NaN a (quiet) NaN; the rounding add could turn it into Inf
        bits[nan] = ((u[nan] >> 16) | np.uint32(0x40)).astype(np.uint16)
    return bits


def encode(x, dtype):
    """Little-endian bytes of float32 array x stored as `dtype`."""
    if dtype == "F32":
        return x.astype("<f4").tobytes()
    if dtype == "F16":
        return x.astype("<f2").tobytes()
    if dtype == "BF16":
        return f32_to_bf16_bits(x).astype("<u2").tobytes()
    raise ValueError("cannot encode floats as " + dtype)


def outlier_plan(spec, seed):
    """Sorted flat indices and scale factors of the outliers of one weight."""
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode()), 1])
    n = spec.numel
    k = max(1, n // 1000)
    idx = np.sort(rng.choice(n, size=k, replace=False))
    return idx, rng.uniform(20.0, 50.0, size=k).astype(np.float32)


def tensor_chunks(spec, seed, outliers):
    """Yield the bytes of one tensor, one block of rows at a time."""
    if spec.kind == "ids":
        yield np.arange(spec.numel, dtype="<i8").tobytes()
        return
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    rows = spec.shape[0] if spec.shape else 1
    row_n = spec.numel // rows if rows else 0
    if row_n == 0:
        return
    idx, fac = (outlier_plan(spec, seed) if outliers and spec.kind == "weight"
                else (np.zeros(0, np.int64), np.zeros(0, np.float32)))
    edge = outliers and spec.name == EDGE_TENSOR
    step = max(1, BLOCK_BYTES // (4 * row_n))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        x = rng.standard_normal((r1 - r0) * row_n, dtype=np.float32) * np.float32(0.02)
        if spec.kind == "norm":
            x += np.float32(1.0)
        lo, hi = np.searchsorted(idx, [r0 * row_n, r1 * row_n])
        x[idx[lo:hi] - r0 * row_n] *= fac[lo:hi]
        x = x.reshape(r1 - r0, row_n)
        if edge:
            for r, v in ((1, 0.0), (2, CONST_ROW_VALUE)):
                if r0 <= r < r1:
                    x[r - r0, :] = np.float32(v)
        yield encode(x, spec.dtype)


# ---------------------------------------------------------------- file layout

def layout(specs):
    """[(spec, begin, end)] in safetensors writer order, offsets contiguous from 0."""
    out, off = [], 0
    for s in sorted(specs, key=lambda s: (-ELEM_SIZE[s.dtype], s.name.encode())):
        out.append((s, off, off + s.nbytes))
        off += s.nbytes
    return out


def num(v):
    """A header number: ints are printed plainly, strings are used verbatim."""
    return v if isinstance(v, str) else "%d" % v


def entry_json(name, dtype, shape, begin, end):
    """One tensor entry of the header, as JSON text."""
    return '%s:{"dtype":%s,"shape":[%s],"data_offsets":[%s,%s]}' % (
        json.dumps(name), json.dumps(dtype), ",".join(num(d) for d in shape),
        num(begin), num(end))


def header_bytes(entries, metadata='{"format":"pt"}'):
    """Header JSON from entry texts, space-padded to a multiple of 8 bytes."""
    text = '{"__metadata__":%s%s}' % (metadata, "".join("," + e for e in entries))
    raw = text.encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def write_model(path, specs, seed, outliers):
    """Stream one safetensors file (through a temporary file and a rename)."""
    lay = layout(specs)
    head = header_bytes([entry_json(s.name, s.dtype, s.shape, b, e) for s, b, e in lay])
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for s, _, _ in lay:
            for chunk in tensor_chunks(s, seed, outliers):
                f.write(chunk)
    os.replace(tmp, path)


def split_shards(specs, k):
    """Split specs, in name order, into k contiguous non-empty groups of similar byte size."""
    specs = sorted(specs, key=lambda s: s.name.encode())
    total = max(1, sum(s.nbytes for s in specs))
    groups, cum, cur = [[] for _ in range(k)], 0, 0
    for i, s in enumerate(specs):
        left = len(specs) - i
        if cur < k - 1 and groups[cur] and (cum * k >= total * (cur + 1) or left <= k - 1 - cur):
            cur += 1
        groups[cur].append(s)
        cum += s.nbytes
    return groups


def write_sharded(index_path, specs, k, seed, outliers):
    """Write k shards next to index_path and the Hugging Face index file."""
    folder = os.path.dirname(index_path) or "."
    weight_map = {}
    for i, group in enumerate(split_shards(specs, k)):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, k)
        write_model(os.path.join(folder, fname), group, seed, outliers)
        weight_map.update((s.name, fname) for s in group)
    index = {"metadata": {"total_size": sum(s.nbytes for s in specs)},
             "weight_map": dict(sorted(weight_map.items()))}
    with open(index_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    os.replace(index_path + ".tmp", index_path)


# ---------------------------------------------------------------- corrupt files

def corrupt_bytes(kind, specs, seed, outliers):
    """The bytes of a malformed safetensors file of the given kind."""
    blobs = {s.name: b"".join(tensor_chunks(s, seed, outliers)) for s in specs}
    by_name = {s.name: s for s in specs}
    q, k = "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"
    bias, norm = "model.layers.0.self_attn.q_proj.bias", "model.layers.0.input_layernorm.weight"

    if kind in ("nan", "inf"):   # a bad value inside a weight that would be quantized
        s = by_name[q]
        bad = encode(np.array([np.nan if kind == "nan" else np.inf], np.float32), s.dtype)
        pos = (s.numel // 2) * ELEM_SIZE[s.dtype]
        blobs[q] = blobs[q][:pos] + bad + blobs[q][pos + len(bad):]

    # Mutable entries [name, dtype, shape, begin, end] in writer order.
    stored = [s for s in specs if not (kind == "overlap" and s.name == k)]
    ents = [[s.name, s.dtype, list(s.shape), b, e] for s, b, e in layout(stored)]
    if kind == "overlap":        # k_proj shares q_proj's bytes; no hole anywhere
        i = next(j for j, e in enumerate(ents) if e[0] == q)
        ents.insert(i + 1, [k, by_name[k].dtype, list(by_name[k].shape), ents[i][3], ents[i][4]])
    buf = bytearray(max(e[4] for e in ents))
    for e in ents:
        buf[e[3]:e[4]] = blobs[e[0]]

    meta = '{"format":"pt"}'
    field = {e[0]: e for e in ents}
    if kind == "hole":           # 16-byte gap before the middle tensor
        gap = 16
        mid = len(ents) // 2
        buf[ents[mid][3]:ents[mid][3]] = bytes(gap)
        for e in ents[mid:]:
            e[3] += gap
            e[4] += gap
    elif kind == "not-first-zero":
        buf[0:0] = bytes(8)
        for e in ents:
            e[3] += 8
            e[4] += 8
    elif kind == "unknown-dtype":
        field[norm][1] = "Q7"
    elif kind == "size-mismatch":
        field[bias][2] = [field[bias][2][0] + 1]
    elif kind == "negative-shape":
        field[bias][2] = [-field[bias][2][0]]
    elif kind == "float-offset":
        ents[0][4] = "%d.0" % ents[0][4]
    elif kind == "exp-offset":
        digits = "%d" % ents[0][4]
        ents[0][4] = "%se%d" % (repr(int(digits) / 10 ** (len(digits) - 1)), len(digits) - 1)
    elif kind == "duplicate-name":
        field[k][0] = q
    elif kind == "metadata-not-string":
        meta = '{"format":"pt","layers":3}'

    head = header_bytes([entry_json(*e) for e in ents], meta)
    if kind == "bad-json":       # drop the closing brace, keep the length
        i = head.rstrip(b" ").rfind(b"}")
        head = head[:i] + b" " + head[i + 1:]
    elif kind == "bad-utf8":
        name = json.dumps("model.conv.weight").encode()
        head = head.replace(name, name.replace(b"conv.", b"conv\xff"), 1)
    data = struct.pack("<Q", len(head)) + head + bytes(buf)

    if kind == "truncated":
        return data[:8 + len(head) + len(buf) // 2]
    if kind == "short":
        return data[:5]
    if kind == "header-too-large":
        return struct.pack("<Q", 100000001) + data[8:]
    if kind == "header-past-eof":
        return struct.pack("<Q", len(data) + 1) + data[8:]
    if kind == "trailing":
        return data + b"garbage"
    return data


# ---------------------------------------------------------------- command line

def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Write a deterministic synthetic safetensors model.")
    ap.add_argument("out", metavar="OUT_PATH",
                    help="output .safetensors file, or the path of a "
                         "model.safetensors.index.json with --shards K >= 2")
    ap.add_argument("--dtype", choices=("F32", "F16", "BF16"), default="F32",
                    help="dtype of the float tensors (default F32)")
    ap.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    ap.add_argument("--shards", type=int, default=1, metavar="K",
                    help="write K shards and an index file (default 1: one file)")
    ap.add_argument("--layers", type=int, metavar="L",
                    help="number of transformer blocks (default 2)")
    ap.add_argument("--hidden", type=int, metavar="H",
                    help="hidden size; vocab = 4*H (default 64, or chosen by --size-mib)")
    ap.add_argument("--size-mib", type=float, metavar="M",
                    help="make the tensor data about M MiB: with --hidden, by choosing the "
                         "number of layers; with --layers, by choosing H; with neither, H is "
                         "the smallest of %s giving at most %d layers"
                         % ("/".join(map(str, AUTO_HIDDEN)), MAX_AUTO_LAYERS))
    ap.add_argument("--outliers", action="store_true",
                    help="add outliers (0.1%% of each weight scaled by 20-50), a zero row "
                         "and a constant row in " + EDGE_TENSOR)
    ap.add_argument("--corrupt", choices=CORRUPT_KINDS, metavar="KIND",
                    help="write a malformed single file instead: " + ", ".join(CORRUPT_KINDS))
    args = ap.parse_args(argv)

    if args.seed < 0:
        ap.error("--seed must be >= 0")
    if args.shards < 1:
        ap.error("--shards must be >= 1")
    if args.hidden is not None and args.hidden < 1:
        ap.error("--hidden must be >= 1")
    if args.layers is not None and args.layers < 0:
        ap.error("--layers must be >= 0")
    if args.size_mib is not None:
        if args.size_mib <= 0:
            ap.error("--size-mib must be > 0")
        if args.layers is not None and args.hidden is not None:
            ap.error("--size-mib cannot be combined with both --layers and --hidden")
    if args.shards > 1:
        if args.corrupt:
            ap.error("--corrupt writes a single file; it cannot be combined with --shards")
        if not args.out.endswith(INDEX_SUFFIX):
            ap.error("with --shards K >= 2, OUT_PATH must end with " + INDEX_SUFFIX)
    elif args.out.endswith(".json"):
        ap.error("a .json OUT_PATH needs --shards K >= 2")
    if args.corrupt and (args.layers == 0 or args.size_mib is not None):
        ap.error("--corrupt needs at least one layer and no --size-mib (it builds in memory)")

    if args.size_mib is not None:
        if args.layers is not None:
            args.hidden = hidden_for_size(args.dtype, args.layers, args.size_mib)
        else:
            if args.hidden is None:
                for h in AUTO_HIDDEN:
                    args.hidden = h
                    if layers_for_size(args.dtype, h, args.size_mib) <= MAX_AUTO_LAYERS:
                        break
            args.layers = layers_for_size(args.dtype, args.hidden, args.size_mib)
    if args.hidden is None:
        args.hidden = 64
    if args.layers is None:
        args.layers = 2
    return args, ap


def main(argv):
    args, ap = parse_args(argv)
    specs = model_specs(args.dtype, args.layers, args.hidden)
    if args.shards > len(specs):
        ap.error("--shards %d is more than the %d tensors of the model" % (args.shards, len(specs)))
    try:
        folder = os.path.dirname(args.out)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if args.corrupt:
            with open(args.out, "wb") as f:
                f.write(corrupt_bytes(args.corrupt, specs, args.seed, args.outliers))
        elif args.shards > 1:
            write_sharded(args.out, specs, args.shards, args.seed, args.outliers)
        else:
            write_model(args.out, specs, args.seed, args.outliers)
    except OSError as e:
        print("make_model.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
