#!/usr/bin/python3
"""Independent checker of an mq-dist output file against the model it was made from.

    check_output.py INPUT OUTPUT [--scheme int8|int8-asym|fp16|bf16] [--granularity channel|tensor]

INPUT is a .safetensors file or a model.safetensors.index.json (shards in the
same folder).  Nothing from mq-dist is imported: both files are parsed here by
hand, every quantized value is recomputed (scales in float32 by the spec's
formulas, integer codes by torch.quantize_per_channel / quantize_per_tensor,
fp16 by numpy, bf16 by round-to-nearest-even on the bits), and every number in
the output's __metadata__ is recomputed and compared.

int8-asym follows compressed-tensors, which has no unsigned type: the codes and
zero points are I8, read here with numpy as signed bytes, and must equal torch's
quint8 codes and zero points minus 128; (q - zp) * s must equal torch's
dequantize() of the quint8 tensor bit for bit.

Prints one line per failed check and a final line
"check_output: N checks passed, M failed"; exits 1 if any check failed.
Tensors are processed one at a time, in blocks of rows, so memory stays bounded.
"""

import argparse
import collections
import hashlib
import json
import math
import os
import struct
import sys

import numpy as np
import torch

MIB = 1 << 20
MAX_HEADER = 100_000_000
HASH_CHUNK = 16_777_216          # spec: tensor sha256 chunk size
BLOCK_BYTES = 16 * MIB           # float32 bytes processed per block
FLT_EPS = np.float32(np.finfo(np.float32).eps)
U32, U64 = 2.0 ** -24, 2.0 ** -53      # unit roundoff of float32 and float64
PRINT_REL = 5e-9                       # %.9g keeps 9 digits: relative error <= 0.5e-8

# safetensors dtype -> bits per element (FORMATS.md 1.3)
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32,
    "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64, "C64": 64, "F8_E5M2": 8,
    "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F4": 4,
    "F6_E2M3": 6, "F6_E3M2": 6,
}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
CAST_SCHEMES = ("fp16", "bf16")
SCHEMES = {  # scheme -> (quantization_dtype, output dtype, symmetric or None if unspecified)
    "int8": ("int8", "I8", "true"), "int8-asym": ("int8", "I8", "false"),
    "fp16": ("float16", "F16", None), "bf16": ("bfloat16", "BF16", None),
}
LAYER_KEYS = ("action", "reason", "dtype_in", "dtype_out", "shape", "bytes_in",
              "bytes_out", "sqnr_db", "mse", "max_abs_err")
# The source digests' algorithm, as the output's options name it (--digest): the metadata key and the
# hash function. set_digest() picks it before any tensor is checked.
DIGESTS = {"sha256": ("sha256", hashlib.sha256), "xxh3-128": ("xxh3_128", None)}
KEY, HASH = "sha256", hashlib.sha256


def set_digest(meta):
    """Picks KEY and HASH from the provenance's options ("checksum"); SHA-256 when it cannot be read."""
    global KEY, HASH
    try:
        algo = json.loads(meta.get("provenance", "{}")).get("options", {}).get("checksum", "sha256")
    except (ValueError, AttributeError):
        algo = "sha256"
    KEY, HASH = DIGESTS.get(algo, DIGESTS["sha256"])
    if HASH is None:
        import xxhash   # Debian's python3-xxhash: an implementation independent of mq-dist's libxxhash use
        HASH = xxhash.xxh3_128
META_KEYS = ("format", "quantization_dtype", "scheme", "symmetric", "per_channel",
             "selected_layers", "calibration_samples", "mq_dist_version",
             "original_size_bytes", "quantized_size_bytes", "original_size_mb",
             "quantized_size_mb", "compression_ratio", "sqnr_db", "layers", "provenance")


class FormatError(Exception):
    """A file breaks the safetensors rules (or the index format)."""


class Report:
    """Counts checks; prints one line per failure."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.worst = None   # (dev / bound, dev, bound, what) of within()

    def check(self, ok, msg):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL: " + msg)
        return bool(ok)

    def equal(self, got, want, what):
        return self.check(got == want, "%s: got %r, expected %r" % (what, got, want))

    def within(self, dev, bound, msg):
        """dev <= bound; remembers the largest dev/bound for the final line."""
        if bound > 0 and (self.worst is None or dev / bound > self.worst[0]):
            self.worst = (dev / bound, dev, bound, ":".join(msg.split(":")[:2]))
        return self.check(dev <= bound, "%s (deviation %.3g, bound %.3g)" % (msg, dev, bound))

    def summary(self):
        if self.worst is None:
            return ""
        return "; largest deviation %.2g%% of its bound (%.3g vs %.3g, %s)" % (
            100 * self.worst[0], self.worst[1], self.worst[2], self.worst[3])


# ---------------------------------------------------------------- safetensors parsing

def strict_json(text):
    """json.loads that rejects duplicate keys and NaN/Infinity literals."""
    def pairs(items):
        obj = {}
        for k, v in items:
            if k in obj:
                raise FormatError("duplicate JSON key %r" % k)
            obj[k] = v
        return obj

    def constant(name):
        raise FormatError("invalid JSON literal %s" % name)
    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise FormatError("invalid JSON: %s" % e) from None


def is_uint(v):
    return type(v) is int and v >= 0


class Tensor:
    """One tensor of a safetensors file: dtype, shape and absolute byte range."""

    def __init__(self, name, dtype, shape, begin, end, path, data_start):
        self.name, self.dtype, self.shape = name, dtype, shape
        self.begin, self.end = begin, end
        self.path, self.data_start = path, data_start
        self.bits = DTYPE_BITS[dtype]
        self.numel = math.prod(shape)
        self.nbytes = self.numel * self.bits // 8

    @property
    def rows(self):
        """Rows of the 2-D view [shape[0], rest] (a 0-D tensor is one row)."""
        return self.shape[0] if self.shape else 1

    @property
    def row_bytes(self):
        return self.nbytes // self.rows if self.rows else 0


class SafeTensors:
    """A parsed and validated safetensors file (header only; data read on demand)."""

    def __init__(self, path):
        self.path = path
        self.file_size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise FormatError("file is %d bytes, shorter than the 8-byte header length"
                                  % len(prefix))
            n = struct.unpack("<Q", prefix)[0]
            if n > MAX_HEADER:
                raise FormatError("header length %d exceeds %d" % (n, MAX_HEADER))
            if 8 + n > self.file_size:
                raise FormatError("header length %d runs past the end of the %d-byte file"
                                  % (n, self.file_size))
            self.raw_header = f.read(n)
        self.header_len = n
        self.data_start = 8 + n
        try:
            text = self.raw_header.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError("header is not valid UTF-8: %s" % e) from None
        self.header_text = text
        head = strict_json(text)
        if not isinstance(head, dict):
            raise FormatError("header is not a JSON object")
        self.metadata = None
        self.entry_keys = {}
        if "__metadata__" in head:
            meta = head.pop("__metadata__")
            if not isinstance(meta, dict):
                raise FormatError("__metadata__ is not an object")
            for k, v in meta.items():
                if not isinstance(v, str):
                    raise FormatError("__metadata__[%r] is not a string" % k)
            self.metadata = meta
        self.tensors = {}
        for name, info in head.items():
            self.tensors[name] = self._entry(name, info)
        self._check_offsets()

    def _entry(self, name, info):
        if not isinstance(info, dict):
            raise FormatError("entry %r is not an object" % name)
        self.entry_keys[name] = sorted(info)
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_BITS:
            raise FormatError("tensor %r: unknown dtype %r" % (name, dtype))
        if not isinstance(shape, list) or not all(is_uint(d) for d in shape):
            raise FormatError("tensor %r: shape %r is not a list of non-negative integers"
                              % (name, shape))
        if (not isinstance(offs, list) or len(offs) != 2 or not all(is_uint(o) for o in offs)):
            raise FormatError("tensor %r: data_offsets %r are not two non-negative integers"
                              % (name, offs))
        t = Tensor(name, dtype, shape, offs[0], offs[1], self.path, self.data_start)
        if t.numel * t.bits % 8:
            raise FormatError("tensor %r: %d elements of %d bits are not whole bytes"
                              % (name, t.numel, t.bits))
        if offs[1] < offs[0] or offs[1] - offs[0] != t.nbytes:
            raise FormatError("tensor %r: data_offsets %r do not hold %d bytes"
                              % (name, offs, t.nbytes))
        return t

    def _check_offsets(self):
        pos = 0
        for t in sorted(self.tensors.values(), key=lambda t: (t.begin, t.end)):
            if t.begin != pos:
                raise FormatError("tensor %r begins at %d, expected %d (%s)" % (
                    t.name, t.begin, pos, "overlap" if t.begin < pos else "hole"))
            pos = t.end
        if self.data_start + pos != self.file_size:
            raise FormatError("tensor data ends at byte %d but the file has %d bytes"
                              % (self.data_start + pos, self.file_size))


def load_input(path):
    """Input tensors (name -> Tensor), [(basename, size)] of the safetensors files read,
    and (basename, size) of the index file or None."""
    if not path.endswith(".json"):
        st = SafeTensors(path)
        return st.tensors, [(os.path.basename(path), st.file_size)], None
    try:
        with open(path, "rb") as f:
            index = strict_json(f.read().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise FormatError("index is not valid UTF-8: %s" % e) from None
    wmap = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wmap, dict) or not all(isinstance(v, str) for v in wmap.values()):
        raise FormatError("index has no weight_map object of strings")
    folder = os.path.dirname(path)
    tensors, files = {}, []
    for shard in sorted(set(wmap.values())):
        st = SafeTensors(os.path.join(folder, shard))
        files.append((shard, st.file_size))
        for name, t in st.tensors.items():
            if wmap.get(name) != shard:
                raise FormatError("tensor %r is in %s but weight_map says %r"
                                  % (name, shard, wmap.get(name)))
            tensors[name] = t
    missing = sorted(set(wmap) - set(tensors))
    if missing:
        raise FormatError("weight_map lists tensors found in no shard: %s" % missing[:5])
    total = (index.get("metadata") or {}).get("total_size")
    if total != sum(t.nbytes for t in tensors.values()):
        raise FormatError("index metadata.total_size %r != %d data bytes"
                          % (total, sum(t.nbytes for t in tensors.values())))
    return tensors, files, (os.path.basename(path), os.path.getsize(path))


# ---------------------------------------------------------------- tensor data

_files = {}


def read_at(path, offset, n):
    """n bytes at an absolute file offset, as a writable bytearray."""
    f = _files.get(path)
    if f is None:
        f = _files[path] = open(path, "rb")
    f.seek(offset)
    buf = bytearray(n)
    if f.readinto(buf) != n:
        raise FormatError("%s: short read at %d" % (path, offset))
    return buf


def read_rows(t, r0, r1):
    return read_at(t.path, t.data_start + t.begin + r0 * t.row_bytes, (r1 - r0) * t.row_bytes)


def to_f32(buf, dtype):
    """Raw bytes of F32/F16/BF16 values -> float32 array (exact conversion); F64 is rounded
    to float32 (round to nearest even), as mq-dist and torch's .to() do."""
    if dtype == "F32":
        return np.frombuffer(buf, "<f4").astype(np.float32)
    if dtype == "F64":
        return np.frombuffer(buf, "<f8").astype(np.float32)
    if dtype == "F16":
        return np.frombuffer(buf, "<f2").astype(np.float32)
    if dtype == "BF16":
        return (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
    raise ValueError(dtype)


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (NaN kept NaN)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    bits = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    bits[nan] = ((u[nan] >> 16) | np.uint32(0x40)).astype(np.uint16)
    return bits


def tensor_sha256(t):
    """Spec digest: the digest (HASH) over the digests of each chunk of whole rows."""
    if t.nbytes == 0:
        return HASH(b"").digest()
    if len(t.shape) == 0:
        row_bytes, rows = t.nbytes, 1
    elif len(t.shape) == 1:
        row_bytes, rows = max(1, t.bits // 8), t.nbytes // max(1, t.bits // 8)
    else:
        row_bytes, rows = t.row_bytes, t.rows
    per_chunk = max(1, HASH_CHUNK // row_bytes)
    outer = HASH()
    base = t.data_start + t.begin
    for r0 in range(0, rows, per_chunk):
        n = min(per_chunk, rows - r0) * row_bytes
        outer.update(HASH(read_at(t.path, base + r0 * row_bytes, n)).digest())
    return outer.digest()


def row_blocks(t):
    """(r0, r1) blocks of rows holding about BLOCK_BYTES of float32."""
    n = max(1, t.numel // t.rows) if t.rows else 1
    step = max(1, BLOCK_BYTES // (4 * n))
    for r0 in range(0, t.rows, step):
        yield r0, min(t.rows, r0 + step)


# ---------------------------------------------------------------- quantization reference

INT_SCHEMES = ("int8", "int8-asym")


def int_params(x, scheme):
    """Spec scales (float32) and unsigned zero points (int64, 0..255 for int8-asym, the
    torch.quint8 convention) of each row of x [rows, n]."""
    if scheme == "int8":
        s = np.max(np.abs(x), axis=1) / np.float32(127.5)
        s = np.where(s < FLT_EPS, FLT_EPS, s).astype(np.float32)
        return s, np.zeros(len(s), np.int64)
    mn = np.minimum(np.min(x, axis=1), np.float32(0))
    mx = np.maximum(np.max(x, axis=1), np.float32(0))
    s = (mx - mn) / np.float32(255)
    s = np.where(s < FLT_EPS, FLT_EPS, s).astype(np.float32)
    zp = np.clip(np.rint(np.float32(0) - mn / s), 0, 255).astype(np.int64)
    return s, zp


def row_extremes(t, scheme):
    """Whole-tensor extremes as a 1-row array, for per-tensor parameters."""
    lo, hi = np.float32(np.inf), np.float32(-np.inf)
    for r0, r1 in row_blocks(t):
        x = to_f32(read_rows(t, r0, r1), t.dtype)
        lo, hi = min(lo, x.min()), max(hi, x.max())
    if scheme == "int8":
        return np.array([[max(abs(lo), abs(hi))]], np.float32)
    return np.array([[lo, hi]], np.float32)


def torch_codes(x, s, zp, scheme, per_channel):
    """Integer codes from torch's quantizer, given the reference parameters (zp unsigned for
    int8-asym), and torch's dequantized values.  int8-asym is quantized as torch.quint8 and
    shifted by -128 to compressed-tensors' signed codes."""
    qdtype = torch.qint8 if scheme == "int8" else torch.quint8
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if per_channel:
        q = torch.quantize_per_channel(xt, torch.from_numpy(s.astype(np.float64)),
                                       torch.from_numpy(zp.astype(np.int64)), 0, qdtype)
    else:
        q = torch.quantize_per_tensor(xt, float(s[0]), int(zp[0]), qdtype)
    codes = q.int_repr().numpy().astype(np.int64)
    if scheme == "int8-asym":
        codes -= 128
    return codes, q.dequantize().numpy()


class Mismatch:
    """Counts element mismatches of one comparison and remembers the first."""

    def __init__(self):
        self.count = 0
        self.first = None

    def add(self, got, want, row0, width):
        bad = np.flatnonzero(got.ravel() != want.ravel())
        if bad.size:
            if self.first is None:
                i = int(bad[0])
                self.first = "first at row %d col %d: got %s, expected %s" % (
                    row0 + i // width, i % width, got.ravel()[i], want.ravel()[i])
            self.count += bad.size

    def report(self, rep, what):
        rep.check(self.count == 0, "%s: %d mismatches, %s" % (what, self.count, self.first))


def check_quantized(rep, t, out, scheme, per_channel):
    """Check the output tensors of one quantized weight; return (signal, noise, max_err)."""
    prefix = t.name[:-len("weight")]
    wq = out.tensors.get(t.name)
    sq = out.tensors.get(prefix + "weight_scale")
    zq = out.tensors.get(prefix + "weight_zero_point")
    int_scheme = scheme in INT_SCHEMES
    dtype_out = SCHEMES[scheme][1]
    ok = rep.check(wq is not None, "%s: missing in output" % t.name)
    ok = ok and rep.equal((wq.dtype, wq.shape), (dtype_out, t.shape), t.name + ": dtype/shape")
    if int_scheme:
        pshape = [t.rows, 1] if per_channel else [1]
        ok = rep.check(sq is not None, "%s: missing in output" % (prefix + "weight_scale")) and ok
        ok = ok and rep.equal((sq.dtype, sq.shape), ("F32", pshape),
                              prefix + "weight_scale: dtype/shape")
        if scheme == "int8-asym":
            ok = rep.check(zq is not None,
                           "%s: missing in output" % (prefix + "weight_zero_point")) and ok
            ok = ok and rep.equal((zq.dtype, zq.shape), ("I8", pshape),
                                  prefix + "weight_zero_point: dtype/shape")
    if not ok:
        return None

    if t.numel == 0:
        return 0.0, 0.0, 0.0
    n = t.numel // t.rows
    # per tensor: parameters from the whole tensor's extremes (one extra read pass)
    whole = None if per_channel or not int_scheme else int_params(row_extremes(t, scheme), scheme)
    bad_scale, bad_zp, bad_q, bad_fp = Mismatch(), Mismatch(), Mismatch(), Mismatch()
    bad_deq = Mismatch()
    signal = noise = 0.0
    max_err = 0.0
    for r0, r1 in row_blocks(t):
        x = to_f32(read_rows(t, r0, r1), t.dtype).reshape(r1 - r0, n)
        if int_scheme:
            s_ref, zp_ref = whole if whole is not None else int_params(x, scheme)
            p0, p1 = (r0, r1) if per_channel else (0, 1)
            s_got = np.frombuffer(read_rows(sq, p0, p1), "<f4")
            bad_scale.add(s_got.view(np.uint32), s_ref.view(np.uint32), p0, 1)
            zp_got = (np.frombuffer(read_rows(zq, p0, p1), "i1").astype(np.int64)
                      if scheme == "int8-asym" else np.zeros(p1 - p0, np.int64))
            bad_zp.add(zp_got, zp_ref - 128 if scheme == "int8-asym" else zp_ref, p0, 1)
            q_got = np.frombuffer(read_rows(wq, r0, r1), "i1").reshape(r1 - r0, n)
            codes, deq_torch = torch_codes(x, s_ref, zp_ref, scheme, per_channel)
            bad_q.add(q_got.astype(np.int64), codes, r0, n)
            shape = (-1, 1) if per_channel else (1, 1)
            deq = ((q_got.astype(np.int32) - zp_got.reshape(shape).astype(np.int32))
                   .astype(np.float32) * s_got.reshape(shape))
            bad_deq.add(deq.view(np.uint32), deq_torch.astype(np.float32).view(np.uint32), r0, n)
        else:
            got = np.frombuffer(read_rows(wq, r0, r1), "<u2").reshape(r1 - r0, n)
            with np.errstate(over="ignore"):   # overflow to Inf is what RNE gives
                want = x.astype(np.float16).view(np.uint16) if scheme == "fp16" else bf16_bits(x)
            bad_fp.add(got, want, r0, n)
            deq = to_f32(got.tobytes(), dtype_out).reshape(r1 - r0, n)
        xd = x.astype(np.float64)
        diff = xd - deq.astype(np.float64)
        signal += float(np.sum(xd * xd))
        noise += float(np.sum(diff * diff))
        max_err = max(max_err, float(np.max(np.abs(diff))))
    if int_scheme:
        bad_scale.report(rep, prefix + "weight_scale: bits differ from spec scale")
        if scheme == "int8-asym":
            bad_zp.report(rep, prefix + "weight_zero_point: differs from spec zero point - 128")
        bad_q.report(rep, t.name + ": codes differ from torch.quantize_per_%s%s"
                     % ("channel" if per_channel else "tensor",
                        " (quint8) - 128" if scheme == "int8-asym" else ""))
        bad_deq.report(rep, t.name + ": (q - zp) * s differs from torch's dequantize()")
    else:
        bad_fp.report(rep, t.name + ": bits differ from %s round-to-nearest-even" % scheme)
        bad_torch = Mismatch()
        bad_torch.add(np.frombuffer(read_rows(wq, 0, t.rows), "<u2"), torch_cast_bits(t, scheme), 0, n)
        bad_torch.report(rep, t.name + ": bits differ from torch's .to(torch.%s)"
                         % ("float16" if scheme == "fp16" else "bfloat16"))
    return signal, noise, max_err


def is_number(v):
    return type(v) in (int, float)


def gamma(n, u):
    """The classic bound gamma_n = n*u / (1 - n*u) on n roundings with unit roundoff u."""
    return n * u / (1 - n * u)


def sum_bound(total, n_terms):
    """Bound on |mq-dist's error sum - the exact sum| for a sum of n_terms non-negative squares
    x^2 or e^2.  mq-dist (quant/kernel.h) forms e = x - dequant in float32 (exact by Sterbenz's lemma
    but at the edge of a binade: one rounding, two once squared), rounds each square to float32
    and adds 8 of them per lane and run of 128 (16 lanes) in float32: gamma_10(2^-24) relative in all.  The
    run sums are added in float64 (lanes, rows, units, tensors): at most gamma_n(2^-53); a square
    that underflows float32 loses at most 2^-150.  The reference forms the squares exactly in
    float64 and sums them there (gamma_n(2^-53) again)."""
    return total * (gamma(10, U32) + 2 * gamma(n_terms, U64)) + n_terms * 2.0 ** -150


def db_bound(signal, noise, d_signal, d_noise):
    """Largest change of 10 log10(signal / noise) when the sums move by up to d_signal and
    d_noise; inf when the noise bound reaches the noise."""
    if d_noise >= noise or d_signal >= signal:
        return math.inf
    db = 10 * math.log10(signal / noise)
    return max(10 * math.log10((signal + d_signal) / (noise - d_noise)) - db,
               db - 10 * math.log10((signal - d_signal) / (noise + d_noise)))


def check_sqnr(rep, what, got, signal, noise, n_terms):
    """A sqnr_db printed with %.9g against 10 log10(signal / noise) of the exact sums."""
    want = 10 * math.log10(signal / noise)
    bound = (db_bound(signal, noise, sum_bound(signal, n_terms), sum_bound(noise, n_terms))
             + abs(want) * (PRINT_REL + 4 * U64))     # printing, log10 and the division
    if rep.check(is_number(got), "%s %r is not a number" % (what, got)):
        rep.within(abs(got - want), bound, "%s: %r, expected %.9f" % (what, got, want))


def check_metrics(rep, name, rec, numel, signal, noise, max_err):
    """Per-layer sqnr_db / mse / max_abs_err against the recomputed values."""
    if not rep.check(math.isfinite(noise), "%s: output holds non-finite values" % name):
        return
    mse = noise / numel
    if rep.check(is_number(rec.get("mse")), "%s: mse %r is not a number" % (name, rec.get("mse"))):
        # mq-dist's noise sum / numel, printed with %.9g
        bound = sum_bound(noise, numel) / numel + mse * (PRINT_REL + 2 * U64)
        rep.within(abs(rec["mse"] - mse), bound, "%s: mse: %r, expected %r" % (name, rec["mse"], mse))
    got = rec.get("max_abs_err")
    if rep.check(is_number(got), "%s: max_abs_err %r is not a number" % (name, got)):
        # exact: the max of |x - dequant| exact in float32 on both sides, then %.9g
        rep.equal(got, float("%.9g" % max_err), name + ": max_abs_err")
    got = rec.get("sqnr_db")
    if noise == 0:
        rep.check(got is None, "%s: sqnr_db %r, expected null (no noise)" % (name, got))
    elif signal > 0:
        check_sqnr(rep, name + ": sqnr_db", got, signal, noise, numel)


# ---------------------------------------------------------------- whole-file checks

def check_writer_layout(rep, out):
    """Writer conventions on top of the reader's rules (which SafeTensors enforced)."""
    rep.check(out.header_len % 8 == 0, "output: header length %d is not a multiple of 8"
              % out.header_len)
    rep.check(out.raw_header[:1] == b"{", "output: header does not begin with '{'")
    end = json.JSONDecoder().raw_decode(out.header_text.lstrip())[1]
    tail = out.header_text.lstrip()[end:]
    rep.check(set(tail) <= {" "}, "output: header padding is not only spaces: %r" % tail[:20])
    odd = [n for n, k in out.entry_keys.items() if k != ["data_offsets", "dtype", "shape"]]
    rep.check(not odd, "output: entries with unexpected keys: %s" % odd[:5])
    order = sorted(out.tensors.values(), key=lambda t: (-t.bits, t.name.encode()))
    pos, bad = 0, None
    for t in order:
        if t.begin != pos and bad is None:
            bad = t.name
        pos = t.end
    rep.check(bad is None, "output: tensors not laid out by dtype size then name (at %r)" % bad)
    rep.check(out.metadata is not None, "output: no __metadata__")


def json_meta(rep, meta, key, kind):
    """Parse a JSON-valued metadata string; None on failure."""
    try:
        val = strict_json(meta.get(key, ""))
    except FormatError as e:
        rep.check(False, "metadata %s: %s" % (key, e))
        return None
    if not rep.check(isinstance(val, kind), "metadata %s is not a JSON %s" % (key, kind.__name__)):
        return None
    return val


def check_header_meta(rep, meta, args):
    """Top-level metadata keys; returns (scheme, per_channel) or None."""
    for k in META_KEYS:
        rep.check(k in meta, "metadata: missing key %r" % k)
    rep.equal(meta.get("format"), "pt", "metadata format")
    scheme = meta.get("scheme")
    if not rep.check(scheme in SCHEMES, "metadata scheme %r is not one of %s"
                     % (scheme, list(SCHEMES))):
        return None
    if args.scheme:
        rep.equal(scheme, args.scheme, "metadata scheme")
    qdtype, _, symmetric = SCHEMES[scheme]
    rep.equal(meta.get("quantization_dtype"), qdtype, "metadata quantization_dtype")
    if symmetric:
        rep.equal(meta.get("symmetric"), symmetric, "metadata symmetric")
    else:
        rep.check(meta.get("symmetric") in ("true", "false"), "metadata symmetric %r"
                  % meta.get("symmetric"))
    per_channel = meta.get("per_channel")
    rep.check(per_channel in ("true", "false"), "metadata per_channel %r" % per_channel)
    if args.granularity and scheme in INT_SCHEMES:
        rep.equal(per_channel, "true" if args.granularity == "channel" else "false",
                  "metadata per_channel")
    rep.equal(meta.get("calibration_samples"), "0", "metadata calibration_samples")
    rep.check(bool(meta.get("mq_dist_version")), "metadata: empty mq_dist_version")
    return scheme, per_channel != "false"


def eligible(t, scheme):
    """Selection rules 1-4: only these tensors may be quantized.  A cast converts every
    floating-point tensor (as model.to(dtype) does)."""
    if scheme in CAST_SCHEMES:
        return t.dtype in FLOAT_DTYPES
    return (t.dtype in FLOAT_DTYPES and len(t.shape) in (2, 4)
            and t.name.endswith(".weight") and t.numel > 0)


def torch_cast_bits(t, scheme):
    """The input tensor through torch's own .to(torch.float16 / torch.bfloat16), as uint16 bits."""
    raw = read_at(t.path, t.data_start + t.begin, t.nbytes)
    if t.dtype == "BF16":
        src = torch.from_numpy(np.frombuffer(raw, "<i2").copy()).view(torch.bfloat16)
    else:
        src = torch.from_numpy(np.frombuffer(raw, {"F32": "<f4", "F16": "<f2", "F64": "<f8"}[t.dtype]).copy())
    out = src.to(torch.float16 if scheme == "fp16" else torch.bfloat16)
    return out.view(torch.int16).numpy().view(np.uint16)


def check_tensor(rep, t, digest, rec, out, scheme, per_channel, totals, expected_out):
    """All checks of one input tensor; updates totals and the expected output names."""
    name = t.name
    rep.equal(str(rec.get(KEY)).lower(), digest.hex(), name + ": " + KEY)
    rep.equal(rec.get("dtype_in"), t.dtype, name + ": dtype_in")
    rep.equal(rec.get("shape"), t.shape, name + ": shape")
    rep.equal(rec.get("bytes_in"), t.nbytes, name + ": bytes_in")
    rep.check(isinstance(rec.get("reason"), str) and rec.get("reason"),
              "%s: reason %r is not a non-empty string" % (name, rec.get("reason")))
    missing = [k for k in LAYER_KEYS + (KEY,) if k not in rec]
    rep.check(not missing, "%s: layer record lacks %s" % (name, missing))
    action = rec.get("action")
    if action == "kept":
        if scheme in CAST_SCHEMES and t.dtype in FLOAT_DTYPES:   # only an option keeps a float tensor
            reason = str(rec.get("reason"))
            rep.check(reason.startswith("--exclude") or reason == "no --include matches",
                      "%s: %s tensor kept by a %s cast (%r); a cast converts every float tensor"
                      % (name, t.dtype, scheme, reason))
        expected_out.append(name)
        o = out.tensors.get(name)
        if rep.check(o is not None, "%s: kept tensor missing in output" % name):
            rep.equal((o.dtype, o.shape), (t.dtype, t.shape), name + ": kept dtype/shape")
            rep.check(o.nbytes == t.nbytes and tensor_sha256(o) == digest,
                      "%s: kept tensor bytes differ from the input" % name)
        rep.equal(rec.get("dtype_out"), t.dtype, name + ": dtype_out")
        rep.equal(rec.get("bytes_out"), t.nbytes, name + ": bytes_out")
        for k in ("sqnr_db", "mse", "max_abs_err"):
            rep.check(rec.get(k) is None, "%s: kept tensor has %s = %r" % (name, k, rec.get(k)))
        return
    if not rep.check(action == "quantized", "%s: action %r" % (name, action)):
        return
    totals["quantized"].append(name)
    outs = [name]
    if not rep.check(eligible(t, scheme), "%s: quantized but rules 1-4 say keep (%s %s)"
                     % (name, t.dtype, t.shape)):
        expected_out.append(name)
        return
    prefix = name[:-len("weight")]
    if scheme in INT_SCHEMES:
        outs.append(prefix + "weight_scale")
        if scheme == "int8-asym":
            outs.append(prefix + "weight_zero_point")
    expected_out.extend(outs)
    rep.equal(rec.get("dtype_out"), SCHEMES[scheme][1], name + ": dtype_out")
    out_bytes = [out.tensors[n].nbytes for n in outs if n in out.tensors]
    rep.check(rec.get("bytes_out") in (out_bytes[0] if out_bytes else None, sum(out_bytes)),
              "%s: bytes_out %r is neither the weight's %r nor all its tensors' %r bytes"
              % (name, rec.get("bytes_out"), out_bytes[:1], sum(out_bytes)))
    res = check_quantized(rep, t, out, scheme, per_channel)
    if res is not None and t.numel:
        check_metrics(rep, name, rec, t.numel, *res)
        totals["signal"] += res[0]
        totals["noise"] += res[1]
        totals["numel"] += t.numel


def check_totals(rep, meta, inputs, files, index, out, totals, digests):
    """Sizes, ratio, aggregate SQNR, selected_layers and provenance."""
    orig = sum(t.nbytes for t in inputs.values())
    quant = sum(t.nbytes for t in out.tensors.values())
    rep.equal(meta.get("original_size_bytes"), "%d" % orig, "metadata original_size_bytes")
    rep.equal(meta.get("quantized_size_bytes"), "%d" % quant, "metadata quantized_size_bytes")
    rep.equal(meta.get("original_size_mb"), "%.3f" % (orig / MIB), "metadata original_size_mb")
    rep.equal(meta.get("quantized_size_mb"), "%.3f" % (quant / MIB), "metadata quantized_size_mb")
    if quant:
        rep.equal(meta.get("compression_ratio"), "%.4f" % (orig / quant),
                  "metadata compression_ratio")
    got = meta.get("sqnr_db")
    try:
        got_f = float(got)
    except (TypeError, ValueError):
        got_f = None
    if totals["noise"] > 0 and totals["signal"] > 0:
        check_sqnr(rep, "metadata sqnr_db", got_f, totals["signal"], totals["noise"],
                   totals["numel"])
    else:  # no noise at all: the spec gives no value; accept any non-finite spelling
        rep.check(got_f is None or not math.isfinite(got_f),
                  "metadata sqnr_db %r, but there is no quantization noise" % got)
    sel = json_meta(rep, meta, "selected_layers", list)
    if sel is not None:
        rep.equal(sel, sorted(totals["quantized"], key=str.encode), "metadata selected_layers")

    prov = json_meta(rep, meta, "provenance", dict)
    if prov is None:
        return
    rep.equal(prov.get("tool"), "mq-dist", "provenance tool")
    rep.equal(prov.get("version"), meta.get("mq_dist_version"), "provenance version")
    rep.equal(prov.get("chunk_bytes"), HASH_CHUNK, "provenance chunk_bytes")
    rep.check(isinstance(prov.get("options"), dict), "provenance options is not an object")
    source = HASH(b"".join(digests[n] for n in sorted(digests, key=str.encode)))
    rep.equal(str(prov.get("source_" + KEY)).lower(), source.hexdigest(),
              "provenance source_" + KEY)
    listed = prov.get("inputs")
    if rep.check(isinstance(listed, list) and all(isinstance(e, dict) for e in listed),
                 "provenance inputs is not a list of objects"):
        got = {e.get("file"): e.get("bytes") for e in listed}
        want = dict(files)
        if index is not None and index[0] in got:   # listing the index file is optional
            want[index[0]] = index[1]
        rep.equal(got, want, "provenance inputs")


def run(args):
    rep = Report()
    try:
        inputs, files, index = load_input(args.input)
    except (FormatError, OSError) as e:
        rep.check(False, "input %s: %s" % (args.input, e))
        return rep
    try:
        out = SafeTensors(args.output)
    except (FormatError, OSError) as e:
        rep.check(False, "output %s is not a valid safetensors file: %s" % (args.output, e))
        return rep
    rep.check(True, "output parses as safetensors")
    check_writer_layout(rep, out)
    meta = out.metadata or {}
    sp = check_header_meta(rep, meta, args)
    layers = json_meta(rep, meta, "layers", dict)
    if sp is None or layers is None:
        return rep
    scheme, per_channel = sp
    missing = sorted(set(inputs) - set(layers))
    rep.check(not missing, "metadata layers: no record for %d input tensors, e.g. %s"
              % (len(missing), missing[:3]))
    extra = sorted(set(layers) - set(inputs))
    rep.check(not extra, "metadata layers: records for %d unknown tensors, e.g. %s"
              % (len(extra), extra[:3]))

    set_digest(meta)
    totals = {"signal": 0.0, "noise": 0.0, "numel": 0, "quantized": []}
    digests, expected_out = {}, []
    for name in sorted(inputs, key=str.encode):
        t = inputs[name]
        digests[name] = tensor_sha256(t)
        rec = layers.get(name)
        if name not in layers:
            expected_out.append(name)   # already reported; do not report its output again
        elif rep.check(isinstance(rec, dict), "%s: layer record is not an object" % name):
            check_tensor(rep, t, digests[name], rec, out, scheme, per_channel, totals,
                         expected_out)
    dup = sorted(n for n, c in collections.Counter(expected_out).items() if c > 1)
    rep.check(not dup, "output names collide: %s" % dup[:5])
    extra = sorted(set(out.tensors) - set(expected_out))
    rep.check(not extra, "output has unexpected tensors: %s" % extra[:5])
    check_totals(rep, meta, inputs, files, index, out, totals, digests)
    return rep


def main(argv):
    ap = argparse.ArgumentParser(description="Check an mq-dist output against its input.")
    ap.add_argument("input", metavar="INPUT",
                    help="input .safetensors or model.safetensors.index.json")
    ap.add_argument("output", metavar="OUTPUT", help="mq-dist output .safetensors")
    ap.add_argument("--scheme", choices=tuple(SCHEMES),
                    help="expected scheme (default: whatever the metadata says)")
    ap.add_argument("--granularity", choices=("channel", "tensor"),
                    help="expected granularity for int8/int8-asym (default: from metadata)")
    args = ap.parse_args(argv)
    rep = run(args)
    print("check_output: %d checks passed, %d failed%s" % (rep.passed, rep.failed, rep.summary()))
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
