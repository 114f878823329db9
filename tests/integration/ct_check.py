#!/usr/bin/python3
"""Independent checker of mq-dist's compressed-tensors outputs (pack-quantized int4/int8, fp8).

    ct_check.py INPUT OUTPUT --scheme int4|int4-asym|w8a16|w8a16-asym|fp8
                [--group-size 32|64|128|channel] [--granularity channel|tensor]
                [--input-scale] [--no-default-excludes] [--exclude REGEX]...
    ct_check.py --self-test

Written from the spec text (LOWBIT.md A.2, A.3, A.5, F), not from mq-dist's C code; nothing of
mq-dist is imported.  INPUT is a .safetensors file or a model.safetensors.index.json; OUTPUT is
the .safetensors file mq-dist wrote.

Pack schemes (A.3): every selected weight W = P + "weight" becomes P + weight_packed (I32
[out, ceil(in*b/32)], codes + 2^(b-1) packed LSB first along the row), P + weight_scale (the model's
dtype, [out, in/gs] or [out, 1]), P + weight_shape (I64 [2] = out, in) and, for the asymmetric rows
only, P + weight_zero_point (I32 [ceil(out*b/32), n_groups], packed along dim 0).  The reference
quantizer recomputes, per group of gs input columns (gs = in for channel):
    symmetric:  s = amax / ((qmax - qmin) / 2)                       (7.5 int4, 127.5 int8), zp = 0
    asymmetric: s = (max(hi, 0) - min(lo, 0)) / (qmax - qmin)
                zp = clamp(rne(-min(lo, 0) / s), 0, qmax - qmin) + qmin
    s = max(s, 2^-23), then rounded to the scale's stored dtype (bf16 RNE on the bits, f16 by numpy)
    q = clamp(rne(x / s) + zp, qmin, qmax), all in float32, with the rounded s
and compares scales (bits), zero points and codes exactly, then the SQNR of (q - zp) * s against
the metadata's per-layer "sqnr_db" to 1e-3 dB.

fp8 (A.5, F): W stays W, F8_E4M3 [out, in], with weight_scale F32 ([1] per tensor, [out, 1] per
channel).  Every code must be the nearest e4m3fn value of clamp(x / s, -448, 448) (ties to the even
code), never NaN; s must be max(amax / 448, 2^-23); the SQNR of code * s is compared as above.

Tensors that are not quantized must be in the output byte for byte, and the output must hold
exactly the expected names.  Prints "FAIL: ..." per failed check and a last line
"ct_check: N checks passed, M failed"; exits 1 on a failed check, 2 on an unreadable file.
"""

import argparse
import json
import math
import os
import re
import struct
import sys
import tempfile

import numpy as np

# ---------------------------------------------------------------- safetensors reading

# dtype -> numpy dtype of the stored element (BF16 as its uint16 bits, F8_E4M3 as uint8 codes)
NP_DTYPE = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8", "I8": "i1", "U8": "u1",
            "I16": "<i2", "I32": "<i4", "I64": "<i8", "U16": "<u2", "U32": "<u4", "U64": "<u8",
            "BOOL": "u1", "F8_E4M3": "u1", "F8_E5M2": "u1"}
FLOAT_DTYPES = ("F32", "F16", "BF16")


class FormatError(Exception):
    pass


class Entry:
    def __init__(self, name, dtype, shape, begin, end):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end
        self.numel = math.prod(shape)


class SafeTensors:
    """A safetensors file, read whole: header JSON + the data bytes after it."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            blob = f.read()
        if len(blob) < 8:
            raise FormatError("%s: %d bytes, shorter than the header length" % (path, len(blob)))
        n = struct.unpack("<Q", blob[:8])[0]
        if 8 + n > len(blob):
            raise FormatError("%s: header length %d runs past the end" % (path, n))
        self.header_len = n
        try:
            head = json.loads(blob[8:8 + n].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError("%s: bad header: %s" % (path, e)) from None
        self.data = memoryview(blob)[8 + n:]
        self.metadata = head.pop("__metadata__", None) or {}
        self.entries = {}
        for name, info in head.items():
            dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
            if dtype not in NP_DTYPE:
                raise FormatError("%s: tensor %s has dtype %s, unknown here" % (path, name, dtype))
            t = Entry(name, dtype, list(shape), b, e)
            if not 0 <= b <= e <= len(self.data) or e - b != t.numel * np.dtype(NP_DTYPE[dtype]).itemsize:
                raise FormatError("%s: tensor %s: offsets [%d, %d] do not hold %s %s"
                                  % (path, name, b, e, dtype, shape))
            self.entries[name] = t

    def raw(self, name):
        t = self.entries[name]
        return bytes(self.data[t.begin:t.end])

    def array(self, name):
        """The stored elements, shaped (BF16 as uint16 bits, F8_E4M3 as uint8 codes)."""
        t = self.entries[name]
        return np.frombuffer(self.data[t.begin:t.end], NP_DTYPE[t.dtype]).reshape(t.shape)

    def floats(self, name):
        """F32/F16/BF16 -> float32 (exact)."""
        t = self.entries[name]
        a = self.array(name)
        if t.dtype == "BF16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        if t.dtype in ("F32", "F16"):
            return a.astype(np.float32)
        raise FormatError("%s is %s, not a float tensor" % (name, t.dtype))


class Input:
    """A single file or the shards of an index file, as one name -> (file, Entry) map."""

    def __init__(self, path):
        self.files = {}
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                wmap = json.load(f)["weight_map"]
            folder = os.path.dirname(path)
            shards = {s: SafeTensors(os.path.join(folder, s)) for s in sorted(set(wmap.values()))}
            for name, shard in wmap.items():
                self.files[name] = shards[shard]
        else:
            st = SafeTensors(path)
            for name in st.entries:
                self.files[name] = st

    def entry(self, name):
        return self.files[name].entries[name]


# ---------------------------------------------------------------- packing (A.3)

def pack_int32(codes, bits):
    """Signed codes [..., n] -> int32 words [..., ceil(n*bits/32)]: code + 2^(bits-1), element j at
    bit j*bits of the row, least significant bit first, zero padding.  (For the tests.)"""
    codes = np.asarray(codes, np.int64)
    n = codes.shape[-1]
    words = -(-n * bits // 32)
    u = (codes + (1 << (bits - 1))).reshape(-1, n)
    if u.size and (u.min() < 0 or u.max() >= 1 << bits):
        raise ValueError("code out of range for %d bits" % bits)
    out = np.zeros((u.shape[0], words + 1), np.uint64)
    for j in range(n):
        pos = j * bits
        w, off = pos // 32, pos % 32
        v = u[:, j].astype(np.uint64) << np.uint64(off)
        out[:, w] |= v & np.uint64(0xFFFFFFFF)
        out[:, w + 1] |= v >> np.uint64(32)
    out = out[:, :words].astype(np.uint32).view(np.int32)
    return out.reshape(codes.shape[:-1] + (words,))


def unpack_int32(packed, bits, n):
    """int32 words [..., w] -> the n signed codes of each row (LOWBIT A.3: element j at bit
    j*bits, LSB first, little-endian words, minus the offset 2^(bits-1))."""
    p = np.ascontiguousarray(packed, np.int32)
    rows = p.reshape(-1, p.shape[-1]).view(np.uint32).astype(np.uint64)
    rows = np.concatenate([rows, np.zeros((rows.shape[0], 1), np.uint64)], axis=1)
    j = np.arange(n, dtype=np.int64)
    pos = j * bits
    w, off = pos // 32, (pos % 32).astype(np.uint64)
    if n and w[-1] >= p.shape[-1]:
        raise ValueError("%d words cannot hold %d codes of %d bits" % (p.shape[-1], n, bits))
    both = rows[:, w] | (rows[:, w + 1] << np.uint64(32))
    u = (both >> off) & np.uint64((1 << bits) - 1)
    return (u.astype(np.int64) - (1 << (bits - 1))).reshape(p.shape[:-1] + (n,))


def unpack_rows(packed, bits, n):
    """Zero points packed along dim 0: [ceil(n*bits/32), cols] -> [n, cols] signed codes."""
    return unpack_int32(np.ascontiguousarray(np.asarray(packed).T), bits, n).T


def pack_rows(codes, bits):
    return np.ascontiguousarray(pack_int32(np.ascontiguousarray(np.asarray(codes).T), bits).T)


# ---------------------------------------------------------------- float rounding

def bf16_round_bits(x):
    """float32 -> bfloat16 bits, round to nearest even on the uint32 bits (finite inputs)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to_dtype(s, dtype):
    """float32 values rounded to dtype and back (the value a reader of the stored scale sees)."""
    s = np.asarray(s, np.float32)
    if dtype == "BF16":
        return bf16_bits_to_f32(bf16_round_bits(s))
    if dtype == "F16":
        return s.astype(np.float16).astype(np.float32)
    if dtype == "F32":
        return s
    raise ValueError("scale dtype " + dtype)


def stored_bits(s, dtype):
    """The bits of float32 values s stored as dtype (unsigned integers, for exact comparison)."""
    s = np.asarray(s, np.float32)
    if dtype == "BF16":
        return bf16_round_bits(s)
    if dtype == "F16":
        return s.astype(np.float16).view(np.uint16)
    return s.view(np.uint32)


# ---------------------------------------------------------------- fp8 e4m3fn (F)

def fp8_table():
    """value of each of the 256 codes: s eeee mmm, bias 7, e = 0 -> m * 2^-9, 0x7F/0xFF NaN."""
    t = np.empty(256, np.float64)
    for c in range(256):
        sign = -1.0 if c & 0x80 else 1.0
        e, m = (c >> 3) & 15, c & 7
        if e == 15 and m == 7:
            t[c] = math.nan
        elif e == 0:
            t[c] = sign * m * 2.0 ** -9
        else:
            t[c] = sign * (8 + m) * 2.0 ** (e - 10)
    return t.astype(np.float32)   # every value is exact in float32


FP8 = fp8_table()
FP8_POS = FP8[:0x7F].astype(np.float64)     # codes 0x00..0x7E: 0 .. 448, increasing


def fp8_nearest(v):
    """Codes of the nearest e4m3fn values to v (|v| <= 448), ties to the even code."""
    v = np.asarray(v, np.float64)
    a = np.abs(v)
    if a.size and np.nanmax(a) > 448:
        raise ValueError("fp8_nearest needs |v| <= 448")
    hi = np.clip(np.searchsorted(FP8_POS, a, side="left"), 0, 0x7E)   # FP8_POS[hi] >= a
    lo = np.maximum(hi - 1, 0)
    dlo, dhi = a - FP8_POS[lo], FP8_POS[hi] - a
    pick = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
    pick = np.where(FP8_POS[hi] == a, hi, pick)
    return (pick | np.where(np.signbit(v), 0x80, 0)).astype(np.uint8)


def fp8_recipe(x):
    """LOWBIT F's integer recipe for f32 -> e4m3fn, for the self-test only (not saturating)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.int64)
    sign = u & 0x80000000
    u = u ^ sign
    denorm = np.float32(np.array([141 << 23], np.uint32).view(np.float32)[0])
    small = (u.astype(np.uint32).view(np.float32) + denorm).view(np.uint32).astype(np.int64) \
        - (141 << 23)
    odd = (u >> 20) & 1
    normal = (u + ((7 - 127) << 23) + 0x7FFFF + odd) >> 20
    r = np.where(u >= 1087 << 20, 0x7F, np.where(u < 121 << 23, small, normal))
    return (r | (sign >> 24)).astype(np.uint8)


# ---------------------------------------------------------------- reference quantizer (A.2)

F32_EPS = np.float32(2.0 ** -23)
PACK_SCHEMES = {"int4": (4, True), "int4-asym": (4, False),
                "w8a16": (8, True), "w8a16-asym": (8, False)}
SCHEMES = tuple(PACK_SCHEMES) + ("fp8",)
DEFAULT_EXCLUDES = (r"embed", r"(^|\.)lm_head\.", r"(^|\.)(wte|wpe)\.", r"(^|\.)(mlp\.gate|router)\.")


def ref_pack_quantize(x, bits, symmetric, gs, scale_dtype):
    """x float32 [out, in] -> (codes int64 [out, in], scales float32 [out, in/gs] (values of the
    stored dtype), zero points int64 [out, in/gs]) by the rule in the module docstring."""
    x = np.asarray(x, np.float32)
    out, n = x.shape
    if n % gs:
        raise ValueError("in %d is not a multiple of the group size %d" % (n, gs))
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    g = x.reshape(out, n // gs, gs)
    lo = np.minimum(g.min(axis=2), np.float32(0))
    hi = np.maximum(g.max(axis=2), np.float32(0))
    if symmetric:
        s = np.maximum(-lo, hi) / np.float32((qmax - qmin) / 2)
    else:
        s = (hi - lo) / np.float32(qmax - qmin)
    s = round_to_dtype(np.maximum(s.astype(np.float32), F32_EPS), scale_dtype)
    if symmetric:
        zp = np.zeros(s.shape, np.float32)
    else:
        zp = np.clip(np.rint(-lo / s), 0, qmax - qmin) + np.float32(qmin)
    q = np.clip(np.rint(g / s[:, :, None]) + zp[:, :, None], qmin, qmax)
    return (q.reshape(out, n).astype(np.int64), s.astype(np.float32), zp.astype(np.int64))


def dequant_groups(q, s, zp, gs):
    """(q - zp) * s in float32, groups of gs columns."""
    out, n = q.shape
    qg = q.reshape(out, n // gs, gs).astype(np.int64) - np.asarray(zp, np.int64)[:, :, None]
    return (qg.astype(np.float32) * np.asarray(s, np.float32)[:, :, None]).reshape(out, n)


def sqnr_db(x, deq):
    x64, d64 = np.asarray(x, np.float64), np.asarray(deq, np.float64)
    signal, noise = float(np.sum(x64 * x64)), float(np.sum((x64 - d64) ** 2))
    return signal, noise


def db(signal, noise):
    if noise == 0 or signal == 0:
        return None
    return 10 * math.log10(signal / noise)


# ---------------------------------------------------------------- decompression

def decompress_pack(st, prefix, bits):
    """Float32 [out, in] weight of pack-quantized tensors P+weight_packed/_scale/_shape/_zero_point
    of SafeTensors st.  Raises FormatError on a malformed layout."""
    e = st.entries
    shp = e.get(prefix + "weight_shape")
    if shp is None or shp.dtype != "I64" or shp.shape != [2]:
        raise FormatError("%sweight_shape must be I64 [2], is %s" % (
            prefix, None if shp is None else "%s %s" % (shp.dtype, shp.shape)))
    out, n = (int(v) for v in st.array(prefix + "weight_shape"))
    packed = st.array(prefix + "weight_packed")
    if out < 1 or n < 1 or list(packed.shape) != [out, -(-n * bits // 32)]:
        raise FormatError("%sweight_shape (%d, %d) does not fit weight_packed %s"
                          % (prefix, out, n, list(packed.shape)))
    codes = unpack_int32(packed, bits, n)
    s = st.floats(prefix + "weight_scale")
    ng = s.shape[1] if s.ndim == 2 and s.shape[0] == out else 0
    if not ng or n % ng:
        raise FormatError("%sweight_scale %s does not fit (%d, %d)" % (prefix, list(s.shape), out, n))
    zp = np.zeros((out, ng), np.int64)
    if prefix + "weight_zero_point" in e:
        zp = unpack_rows(st.array(prefix + "weight_zero_point"), bits, out)
    return dequant_groups(codes, s, zp, n // ng)


def decompress_fp8(st, prefix):
    """Float32 weight of P+weight (F8_E4M3) * P+weight_scale (F32 [1] or [out, 1])."""
    w = st.array(prefix + "weight")
    s = st.floats(prefix + "weight_scale")
    rows = w.reshape(w.shape[0], -1)
    return (FP8[rows] * s.reshape(-1, 1)).reshape(w.shape)


# ---------------------------------------------------------------- reporting

class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, msg):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL: " + msg)
        return bool(ok)

    def equal(self, got, want, what):
        return self.check(got == want, "%s: got %r, expected %r" % (what, got, want))


def first_diff(got, want, what, extra=None):
    """None if equal, else 'N of M differ; first at [i, j]: got g, expected w (extra)'."""
    bad = np.argwhere(got != want)
    if not bad.size:
        return None
    idx = tuple(int(i) for i in bad[0])
    msg = "%s: %d of %d differ; first at %s: got %s, expected %s" % (
        what, len(bad), got.size, list(idx), got[idx], want[idx])
    if extra:
        msg += " (" + extra(idx) + ")"
    return msg


# ---------------------------------------------------------------- per-layer checks

def shape_check(rep, st, name, dtype, shape):
    t = st.entries.get(name)
    if not rep.check(t is not None, "%s: missing in output" % name):
        return False
    return rep.equal((t.dtype, t.shape), (dtype, shape), name + ": dtype/shape")


def check_sqnr(rep, name, rec, x, deq, totals):
    signal, noise = sqnr_db(x, deq)
    totals[0] += signal
    totals[1] += noise
    want = db(signal, noise)
    got = rec.get("sqnr_db") if isinstance(rec, dict) else "no layer record"
    if want is None:
        rep.check(got is None, "%s: metadata sqnr_db %r, expected null (no noise)" % (name, got))
    elif rep.check(isinstance(got, (int, float)), "%s: metadata sqnr_db %r is not a number"
                   % (name, got)):
        rep.check(abs(got - want) <= 1e-3, "%s: metadata sqnr_db %.6f, recomputed %.6f "
                  "(|diff| %.3g dB > 1e-3)" % (name, got, want, abs(got - want)))


def check_pack_layer(rep, inp, st, name, rec, scheme, group, totals):
    bits, symmetric = PACK_SCHEMES[scheme]
    prefix = name[:-len("weight")]
    t = inp.entry(name)
    x = inp.files[name].floats(name).reshape(t.shape[0], -1)
    out, n = x.shape
    gs = n if group == "channel" else int(group)
    if not rep.check(n % gs == 0, "%s: in %d is not divisible by group size %d, yet the output "
                     "has it quantized (the run should have failed)" % (name, n, gs)):
        return
    ng = n // gs
    ok = shape_check(rep, st, prefix + "weight_packed", "I32", [out, -(-n * bits // 32)])
    ok = shape_check(rep, st, prefix + "weight_shape", "I64", [2]) and ok
    sc = st.entries.get(prefix + "weight_scale")
    if rep.check(sc is not None, "%sweight_scale: missing in output" % prefix):
        rep.equal(sc.dtype, t.dtype, prefix + "weight_scale: dtype (the model's dtype, A.3)")
        ok = rep.equal(sc.shape, [out, ng], prefix + "weight_scale: shape (group size %s)"
                       % group) and sc.dtype in FLOAT_DTYPES and ok
    else:
        ok = False
    if not symmetric:
        ok = shape_check(rep, st, prefix + "weight_zero_point", "I32",
                         [-(-out * bits // 32), ng]) and ok
    if not ok:
        return
    shape_ok = rep.equal([int(v) for v in st.array(prefix + "weight_shape")], [out, n],
                         prefix + "weight_shape values")

    q_ref, s_ref, zp_ref = ref_pack_quantize(x, bits, symmetric, gs, sc.dtype)
    s_got = st.floats(prefix + "weight_scale")
    words = st.array(prefix + "weight_packed")
    q_got = unpack_int32(words, bits, n)
    rep.check(np.array_equal(pack_int32(q_got, bits), words),
              "%sweight_packed: padding bits past column %d are not zero" % (prefix, n))

    def grp(idx):
        return "group max|x| %.9g, expected scale %.9g" % (
            float(np.abs(x[idx[0], idx[1] * gs:(idx[1] + 1) * gs]).max()), float(s_ref[idx]))
    msg = first_diff(stored_bits(s_got, sc.dtype), stored_bits(s_ref, sc.dtype),
                     prefix + "weight_scale bits", grp)
    rep.check(msg is None, msg)
    zp_got = np.zeros((out, ng), np.int64)
    if not symmetric:
        zw = st.array(prefix + "weight_zero_point")
        zp_got = unpack_rows(zw, bits, out)
        rep.check(np.array_equal(pack_rows(zp_got, bits), zw),
                  "%sweight_zero_point: padding bits past row %d are not zero" % (prefix, out))
        msg = first_diff(zp_got, zp_ref, prefix + "weight_zero_point",
                         lambda i: "group min %.9g, scale %.9g" % (
                             float(x[i[0], i[1] * gs:(i[1] + 1) * gs].min()), float(s_ref[i])))
        rep.check(msg is None, msg)

    def code(idx):
        r, c = idx
        s, z = float(s_ref[r, c // gs]), int(zp_ref[r, c // gs])
        return "x %.9g, scale %.9g, zp %d, x/scale %.9g" % (
            float(x[r, c]), s, z, float(np.float32(x[r, c]) / np.float32(s)))
    msg = first_diff(q_got, q_ref, prefix + "weight_packed codes (reference scale and zp)", code)
    rep.check(msg is None, msg)
    deq = dequant_groups(q_got, s_got, zp_got, gs)
    if shape_ok:
        rep.check(np.array_equal(deq, decompress_pack(st, prefix, bits)),
                  prefix + ": decompress_pack disagrees with the layer check's dequantization")
    check_sqnr(rep, name, rec, x, deq, totals)


def check_fp8_layer(rep, inp, st, name, rec, granularity, input_scale, totals):
    prefix = name[:-len("weight")]
    t = inp.entry(name)
    x = inp.files[name].floats(name).reshape(t.shape[0], -1)
    out = x.shape[0]
    pshape = [1] if granularity == "tensor" else [out, 1]
    ok = shape_check(rep, st, name, "F8_E4M3", t.shape)
    ok = shape_check(rep, st, prefix + "weight_scale", "F32", pshape) and ok
    if input_scale:
        shape_check(rep, st, prefix + "input_scale", "F32", [1])
    if not ok:
        return
    codes = st.array(name).reshape(out, -1)
    s_got = st.floats(prefix + "weight_scale").reshape(-1, 1)
    amax = np.abs(x).max(axis=1, keepdims=True) if granularity == "channel" else \
        np.abs(x).max().reshape(1, 1)
    s_ref = np.maximum(amax / np.float32(448), F32_EPS).astype(np.float32)
    msg = first_diff(s_got.view(np.uint32), s_ref.view(np.uint32),
                     prefix + "weight_scale bits (max(amax/448, 2^-23))",
                     lambda i: "amax %.9g, got %.9g, expected %.9g" % (
                         float(amax[i]), float(s_got[i]), float(s_ref[i])))
    rep.check(msg is None, msg)
    nan = np.isnan(FP8[codes])
    rep.check(not nan.any(), "%s: %d NaN codes (0x7F/0xFF), first at %s" % (
        name, int(nan.sum()), np.argwhere(nan)[0].tolist() if nan.any() else None))
    v = np.clip(x / s_got, np.float32(-448), np.float32(448))
    want = fp8_nearest(v)
    # values, not bits: +0 and -0 are the same nearest value
    got_v, want_v = FP8[codes], FP8[want]
    bad = ~((got_v == want_v) | (np.isnan(got_v) & np.isnan(want_v)))
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        rep.check(False, "%s: %d of %d codes are not the nearest e4m3 value of clamp(x/s, +-448); "
                  "first at [%d, %d]: got 0x%02X (%.9g), expected 0x%02X (%.9g) (x %.9g, scale %.9g, "
                  "x/scale %.9g)" % (name, int(bad.sum()), bad.size, r, c, codes[r, c],
                                     float(got_v[r, c]), want[r, c], float(want_v[r, c]),
                                     float(x[r, c]), float(s_got.reshape(-1)[min(r, s_got.size - 1)]),
                                     float(v[r, c])))
    else:
        rep.check(True, "")
    deq = FP8[codes] * s_got
    rep.check(np.array_equal(deq.reshape(t.shape), decompress_fp8(st, prefix), equal_nan=True),
              prefix + ": decompress_fp8 disagrees with the layer check's dequantization")
    check_sqnr(rep, name, rec, x, deq, totals)


# ---------------------------------------------------------------- whole file

def expected_quantized(inp, scheme, excludes):
    """Names the selection rules quantize: F32/F16/BF16 2-D (pack schemes) or 2-D/4-D (fp8)
    tensors named *.weight, not matching an exclusion."""
    dims = (2,) if scheme in PACK_SCHEMES else (2, 4)
    sel = []
    for name in inp.files:
        t = inp.entry(name)
        if (t.dtype in FLOAT_DTYPES and len(t.shape) in dims and name.endswith(".weight")
                and t.numel > 0 and not any(re.search(p, name) for p in excludes)):
            sel.append(name)
    return sorted(sel)


def layer_names(prefix, scheme, input_scale):
    if scheme == "fp8":
        return [prefix + "weight", prefix + "weight_scale"] + (
            [prefix + "input_scale"] if input_scale else [])
    names = [prefix + s for s in ("weight_packed", "weight_scale", "weight_shape")]
    if not PACK_SCHEMES[scheme][1]:
        names.append(prefix + "weight_zero_point")
    return names


def run(args):
    rep = Report()
    try:
        inp = Input(args.input)
        st = SafeTensors(args.output)
    except (FormatError, OSError, KeyError, ValueError) as e:
        print("ct_check: %s" % e)
        return None
    rep.check(st.header_len % 8 == 0, "output header length %d is not a multiple of 8"
              % st.header_len)
    meta = st.metadata
    rep.equal(meta.get("scheme"), args.scheme, "metadata scheme")
    try:
        layers = json.loads(meta.get("layers", "{}"))
    except json.JSONDecodeError as e:
        rep.check(False, "metadata layers is not JSON: %s" % e)
        layers = {}
    excludes = ([] if args.no_default_excludes else list(DEFAULT_EXCLUDES)) + args.exclude
    want_q = expected_quantized(inp, args.scheme, excludes)
    got_q = sorted(n for n, r in layers.items() if isinstance(r, dict)
                   and r.get("action") == "quantized")
    rep.equal(got_q, want_q, "metadata layers: the quantized set")
    quantized = sorted(set(want_q) | set(got_q))

    expected = set()
    for name in inp.files:
        if name in quantized:
            expected.update(layer_names(name[:-len("weight")], args.scheme, args.input_scale))
        else:
            expected.add(name)
    have = set(st.entries)
    missing, extra = sorted(expected - have), sorted(have - expected)
    rep.check(not missing, "output lacks %d expected tensors: %s" % (len(missing), missing[:6]))
    rep.check(not extra, "output has %d unexpected tensors: %s" % (len(extra), extra[:6]))

    for name in sorted(inp.files):
        if name in quantized or name not in st.entries:
            continue
        src, dst = inp.files[name], st
        a, b = src.entries[name], dst.entries[name]
        rep.check((a.dtype, a.shape) == (b.dtype, b.shape) and src.raw(name) == dst.raw(name),
                  "%s: untouched tensor differs from the input (%s %s -> %s %s%s)" % (
                      name, a.dtype, a.shape, b.dtype, b.shape,
                      ", bytes differ" if (a.dtype, a.shape) == (b.dtype, b.shape) else ""))

    totals = [0.0, 0.0]
    for name in quantized:
        rec = layers.get(name, {})
        try:
            if args.scheme == "fp8":
                check_fp8_layer(rep, inp, st, name, rec, args.granularity, args.input_scale,
                                totals)
            else:
                check_pack_layer(rep, inp, st, name, rec, args.scheme, args.group_size, totals)
        except (FormatError, ValueError, IndexError, KeyError, ArithmeticError) as e:
            rep.check(False, "%s: the layer could not be checked: %s: %s"
                      % (name, type(e).__name__, e))
    want = db(*totals)
    if want is not None:
        try:
            got = float(meta.get("sqnr_db"))
        except (TypeError, ValueError):
            got = math.nan
        rep.check(abs(got - want) <= 1e-3, "metadata sqnr_db %r, recomputed %.6f over the "
                  "quantized layers" % (meta.get("sqnr_db"), want))
    return rep


# ---------------------------------------------------------------- self-test

def write_safetensors(path, tensors, metadata):
    """Tiny writer for the self-test: {name: (dtype, shape, bytes)}, header padded to 8."""
    head, off, blobs = {"__metadata__": metadata}, 0, []
    for name in sorted(tensors):
        dtype, shape, blob = tensors[name]
        head[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(blob)]}
        off += len(blob)
        blobs.append(blob)
    raw = json.dumps(head).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def synthetic_output(inp_tensors, scheme, gs, granularity="channel"):
    """What a correct writer would produce, built from this module's reference pieces (to check
    that run() passes it and catches damage to it)."""
    out, layers, sig, noi = {}, {}, 0.0, 0.0
    for name, (dtype, shape, x) in inp_tensors.items():
        blob = x.astype("<f4").tobytes() if dtype == "F32" else bf16_round_bits(x).tobytes()
        if not (name.endswith(".weight") and len(shape) == 2) or any(
                re.search(e, name) for e in DEFAULT_EXCLUDES):
            out[name] = (dtype, shape, blob)
            layers[name] = {"action": "kept"}
            continue
        p = name[:-len("weight")]
        if scheme == "fp8":
            amax = np.abs(x).max(axis=1, keepdims=True) if granularity == "channel" else \
                np.abs(x).max().reshape(1, 1)
            s = np.maximum(amax / np.float32(448), F32_EPS).astype(np.float32)
            codes = fp8_nearest(np.clip(x / s, -448, 448))
            deq = FP8[codes] * s
            out[name] = ("F8_E4M3", shape, codes.tobytes())
            out[p + "weight_scale"] = ("F32", [1] if granularity == "tensor" else [shape[0], 1],
                                       s.astype("<f4").tobytes())
        else:
            bits, sym = PACK_SCHEMES[scheme]
            g = shape[1] if gs == "channel" else gs
            q, s, zp = ref_pack_quantize(x, bits, sym, g, dtype)
            deq = dequant_groups(q, s, zp, g)
            out[p + "weight_packed"] = ("I32", [shape[0], shape[1] * bits // 32],
                                        pack_int32(q, bits).astype("<i4").tobytes())
            sb = s.astype("<f4").tobytes() if dtype == "F32" else bf16_round_bits(s).tobytes()
            out[p + "weight_scale"] = (dtype, list(s.shape), sb)
            out[p + "weight_shape"] = ("I64", [2], np.array(shape, "<i8").tobytes())
            if not sym:
                out[p + "weight_zero_point"] = ("I32", [shape[0] * bits // 32, s.shape[1]],
                                                pack_rows(zp, bits).astype("<i4").tobytes())
        a, b = sqnr_db(x, deq)
        sig, noi = sig + a, noi + b
        layers[name] = {"action": "quantized", "sqnr_db": float("%.9g" % db(a, b))}
    meta = {"scheme": scheme, "layers": json.dumps(layers), "sqnr_db": "%.9g" % db(sig, noi)}
    return out, meta


def self_test():
    fails = []

    def ok(cond, what):
        if not cond:
            fails.append(what)
            print("self-test FAIL: " + what)

    # spec vectors (A.3)
    ok(pack_int32([1, 2, 3, 4], 4).tolist() == [52137], "int4 [1,2,3,4] packs to 52137")
    ok(pack_int32([1, 2, 3, 4], 8).tolist() == [-2071756159], "int8 [1,2,3,4] packs to -2071756159")
    ok(unpack_int32(np.array([52137], np.int32), 4, 4).tolist() == [1, 2, 3, 4], "unpack 52137")
    ok(unpack_int32(np.array([-2071756159], np.int32), 8, 4).tolist() == [1, 2, 3, 4],
       "unpack -2071756159")
    ok(unpack_int32(np.array([52137], np.int32), 4, 8).tolist() == [1, 2, 3, 4, -8, -8, -8, -8],
       "int4 padding nibbles are code -8")
    # bit positions: int4 column 8k+i in bits [4i, 4i+4) of word k; little-endian bytes
    q = np.array([[-8, 7, 0, 1, 2, 3, 4, 5, -1, -2, 6, -3, -4, -5, -6, -7]])
    w = pack_int32(q, 4)
    for col in range(16):
        ok(((int(w[0, col // 8]) & 0xFFFFFFFF) >> (4 * (col % 8))) & 15 == q[0, col] + 8,
           "int4 column %d at bits [%d,%d) of word %d" % (col, 4 * (col % 8), 4 * (col % 8) + 4,
                                                          col // 8))
    le = w.astype("<i4").tobytes()
    ok(le[0] == (q[0, 0] + 8) | ((q[0, 1] + 8) << 4), "byte 0 holds columns 0 (low) and 1 (high)")
    rng = np.random.default_rng(7)
    for bits in range(1, 9):
        for n in (1, 3, 8, 31, 32, 33, 200, 256):
            codes = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(5, n))
            p = pack_int32(codes, bits)
            ok(p.shape == (5, -(-n * bits // 32)), "pack shape b=%d n=%d" % (bits, n))
            ok(np.array_equal(unpack_int32(p, bits, n), codes), "round trip b=%d n=%d" % (bits, n))
            ok(np.array_equal(unpack_rows(pack_rows(codes.T, bits), bits, n), codes.T),
               "row round trip b=%d n=%d" % (bits, n))

    # fp8 table (F)
    ok(FP8[0x7E] == 448 and FP8[0x08] == 2.0 ** -6 and FP8[0x01] == 2.0 ** -9
       and FP8[0x38] == 1.0 and FP8[0x00] == 0 and FP8[0xFE] == -448, "fp8 table anchors")
    ok(np.isnan(FP8[0x7F]) and np.isnan(FP8[0xFF]) and np.isnan(FP8).sum() == 2, "fp8 NaNs")
    ok(np.all(np.diff(FP8_POS) > 0), "fp8 codes 0..0x7E increase")
    ok(np.signbit(FP8[0x80]) and FP8[0x80] == 0, "0x80 is -0")
    for v, c in ((1.0, 0x38), (0.00146484375, 0x01), (0.0146484375, 0x08), (2.0 ** -10, 0x00),
                 (448.0, 0x7E), (-448.0, 0xFE), (1.0625, 0x38), (1.1875, 0x3A), (-1.0, 0xB8),
                 (3 * 2.0 ** -10, 0x02), (2.0 ** -9 * 0.5000001, 0x01), (440.0, 0x7E),
                 (415.99, 0x7D), (416.0, 0x7D), (400.0, 0x7C),
                 (432.0, 0x7E)):
        ok(int(fp8_nearest(np.array([v]))[0]) == c, "fp8_nearest(%r) == 0x%02X, got 0x%02X"
           % (v, c, int(fp8_nearest(np.array([v]))[0])))
    mids = (FP8_POS[:-1] + FP8_POS[1:]) / 2
    lo = np.arange(0x7E)
    ok(np.array_equal(fp8_nearest(mids), np.where(lo % 2 == 0, lo, lo + 1)), "fp8 ties to even")
    ok(np.array_equal(fp8_nearest(np.nextafter(mids, 0)), lo), "fp8 below a tie")
    ok(np.array_equal(fp8_nearest(np.nextafter(mids, 1e9)), lo + 1), "fp8 above a tie")
    ok(np.array_equal(fp8_nearest(FP8_POS), np.arange(0x7F)), "fp8 exact values")
    # against the bit recipe of LOWBIT F (torch's fp8e4m3fn_from_fp32_value), |v| <= 448
    v = np.concatenate([rng.uniform(-448, 448, 100000), rng.uniform(-0.02, 0.02, 100000),
                        mids, -mids, np.nextafter(mids, 0), FP8_POS]).astype(np.float32)
    ok(np.array_equal(fp8_recipe(v), fp8_nearest(v)), "fp8_nearest equals the F bit recipe")

    # bf16 rounding: a table, then torch's own conversion as an outside reference
    for v, b in ((1.0, 0x3F80), (1 + 2.0 ** -8, 0x3F80), (1 + 3 * 2.0 ** -8, 0x3F82),
                 (1 + 2.0 ** -8 + 2.0 ** -20, 0x3F81), (-1.5, 0xBFC0), (2.0 ** -23, 0x3400),
                 (1 / 7.5, 0x3E09), (0.0, 0x0000), (3.3895314e38, 0x7F7F)):
        got = int(bf16_round_bits(np.array([v], np.float32))[0])
        ok(got == b, "bf16(%r) == 0x%04X, got 0x%04X" % (v, b, got))
    try:
        import torch
        u = rng.integers(0, 0x7F7F0000, size=200000, dtype=np.uint32)
        u[:1000] = (u[:1000] & 0xFFFF0000) | 0x8000                 # exact ties
        x = u.view(np.float32) * np.where(rng.random(u.size) < 0.5, -1, 1).astype(np.float32)
        tb = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        ok(np.array_equal(bf16_round_bits(x), tb), "bf16 rounding equals torch's .to(bfloat16)")
        y = x[:5000] * np.float32(1e-34)
        th = torch.from_numpy(y).to(torch.float16).numpy()
        with np.errstate(over="ignore"):
            ok(np.array_equal(round_to_dtype(y, "F16"), th.astype(np.float32)),
               "f16 rounding equals torch's")
    except ImportError:
        print("self-test: no torch, bf16 cross-check skipped")

    # reference quantizer by hand (A.2)
    x = np.array([[7.5, -7.5, 2.5, -0.5, 1.5, 0, 0, 0]], np.float32)
    q, s, zp = ref_pack_quantize(x, 4, True, 8, "F32")
    ok(q.tolist() == [[7, -8, 2, 0, 2, 0, 0, 0]] and s.tolist() == [[1.0]], "int4 sym by hand")
    x = np.array([[-1, 14, 3.5, 0]], np.float32)
    q, s, zp = ref_pack_quantize(x, 4, False, 4, "F32")
    ok(q.tolist() == [[-8, 7, -3, -7]] and zp.tolist() == [[-7]] and s.tolist() == [[1.0]],
       "int4 asym by hand: %s %s %s" % (q.tolist(), zp.tolist(), s.tolist()))
    x = np.array([[3, 15, 0, 0]], np.float32)
    q, s, zp = ref_pack_quantize(x, 4, False, 4, "F32")
    ok(zp.tolist() == [[-8]] and q.tolist() == [[-5, 7, -8, -8]], "asym all >= 0: zp = qmin")
    x = np.zeros((2, 4), np.float32)
    for sym in (True, False):
        q, s, zp = ref_pack_quantize(x, 4, sym, 4, "BF16")
        ok(np.all(s == F32_EPS) and np.all(dequant_groups(q, s, zp, 4) == 0), "zero group, eps scale")
    # s = 1/7.5 = 0.1333 rounds to bf16 0x3E09 = 0.13378906; 0.467 / s is 3.49 (3.5025 unrounded)
    x = np.array([[1.0, 0.467, -0.25, 0.7]], np.float32)
    q, s, zp = ref_pack_quantize(x, 4, True, 4, "BF16")
    ok(s[0, 0] == bf16_bits_to_f32(np.array([0x3E09], np.uint16))[0], "bf16 scale rounding")
    ok(q.tolist() == [[7, 3, -2, 5]], "codes from the bf16-rounded scale: %s" % q.tolist())
    q, s, zp = ref_pack_quantize(x, 4, True, 4, "F32")
    ok(q.tolist() == [[7, 4, -2, 5]], "codes from the f32 scale: %s" % q.tolist())
    x = np.array([[127.5, -127.5, 64.5, 0.5]], np.float32)
    q, s, zp = ref_pack_quantize(x, 8, True, 4, "F32")
    ok(q.tolist() == [[127, -128, 64, 0]] and s[0, 0] == 1.0, "int8 sym by hand")

    # the whole checker on synthetic files: correct ones pass, damaged ones fail where expected
    rng = np.random.default_rng(11)
    inp = {"a.weight": ("BF16", [16, 128], None), "b.weight": ("F32", [8, 256], None),
           "n.weight": ("BF16", [128], None), "lm_head.weight": ("BF16", [16, 128], None)}
    for k, (d, shp, _) in list(inp.items()):
        v = (rng.standard_normal(shp) * 0.02).astype(np.float32)
        if k == "a.weight":
            v[3, 5] = 0.9
            v[:, 40] *= 20
        inp[k] = (d, shp, round_to_dtype(v, "BF16") if d == "BF16" else v)
    with tempfile.TemporaryDirectory() as tmp:
        ipath = os.path.join(tmp, "in.safetensors")
        write_safetensors(ipath, {k: (d, s, bf16_round_bits(v).tobytes() if d == "BF16" else
                                      v.astype("<f4").tobytes()) for k, (d, s, v) in inp.items()},
                          {"format": "pt"})
        cases = [(sch, gs, "channel") for sch in PACK_SCHEMES for gs in (32, 128, "channel")]
        cases += [("fp8", None, "channel"), ("fp8", None, "tensor")]
        for sch, gs, gran in cases:
            opath = os.path.join(tmp, "out.safetensors")
            out, meta = synthetic_output(inp, sch, gs, gran)
            a = argparse.Namespace(input=ipath, output=opath, scheme=sch, group_size=gs,
                                   granularity=gran, input_scale=False, no_default_excludes=False,
                                   exclude=[])
            write_safetensors(opath, out, meta)
            r = run(a)
            ok(r is not None and r.failed == 0, "synthetic %s g%s %s passes" % (sch, gs, gran))

            def damaged(edit, what):
                o = dict(out)
                m = dict(meta)
                edit(o, m)
                write_safetensors(opath, o, m)
                rr = run_quiet(a)
                ok(rr is not None and rr.failed > 0, "synthetic %s g%s: %s is caught"
                   % (sch, gs, what))

            def flip(o, m, key, byte=0, xor=1):
                d, shp, blob = o[key]
                b = bytearray(blob)
                b[byte] ^= xor
                o[key] = (d, shp, bytes(b))
            if sch == "fp8":
                damaged(lambda o, m: flip(o, m, "a.weight", 7), "a code off by one")
                damaged(lambda o, m: flip(o, m, "a.weight_scale", 0), "a scale bit")
                damaged(lambda o, m: o.__setitem__("a.weight", ("F8_E4M3", [16, 128],
                        b"\x7f" + o["a.weight"][2][1:])), "a NaN code")
            else:
                damaged(lambda o, m: flip(o, m, "a.weight_packed", 1, 0x10), "a code")
                damaged(lambda o, m: flip(o, m, "b.weight_scale", 0), "an F32 scale bit")
                damaged(lambda o, m: flip(o, m, "a.weight_scale", 0), "a BF16 scale bit")
                damaged(lambda o, m: o.__setitem__("a.weight_shape", ("I32", [2],
                        np.array([16, 128], "<i4").tobytes())), "an I32 weight_shape")
                if not PACK_SCHEMES[sch][1]:
                    damaged(lambda o, m: flip(o, m, "a.weight_zero_point", 0), "a zero point")
                else:
                    zw = 16 * PACK_SCHEMES[sch][0] // 32
                    damaged(lambda o, m: o.__setitem__("a.weight_zero_point", ("I32", [zw, 1],
                            bytes(4 * zw))), "a zero point in a symmetric file")
            damaged(lambda o, m: flip(o, m, "n.weight", 0), "a changed untouched tensor")
            damaged(lambda o, m: o.__setitem__("extra", ("I8", [1], b"\0")), "an extra tensor")
            def sqnr_off(o, m):
                recs = json.loads(m["layers"])
                recs["a.weight"]["sqnr_db"] += 0.01
                m["layers"] = json.dumps(recs)
            damaged(sqnr_off, "an SQNR off by 0.01 dB")
        # group divisibility: the checker refuses a quantized in=128 layer at group size 48
        out, meta = synthetic_output(inp, "int4", 32)
        write_safetensors(opath, out, meta)
        a = argparse.Namespace(input=ipath, output=opath, scheme="int4", group_size="48",
                               granularity="channel", input_scale=False,
                               no_default_excludes=False, exclude=[])
        r = run_quiet(a)
        ok(r is not None and r.failed > 0, "group size 48 does not fit in 128 and is reported")
    print("ct_check self-test: %s" % ("%d FAILED" % len(fails) if fails else "all passed"))
    return 1 if fails else 0


def run_quiet(args):
    """run() with its FAIL lines swallowed."""
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        return run(args)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?")
    ap.add_argument("output", nargs="?")
    ap.add_argument("--scheme", choices=SCHEMES)
    ap.add_argument("--group-size", default="128", choices=("32", "64", "128", "channel"),
                    help="pack schemes: the group size the run used (default 128)")
    ap.add_argument("--granularity", default="channel", choices=("channel", "tensor"),
                    help="fp8: one scale per output channel (default) or per tensor")
    ap.add_argument("--input-scale", action="store_true",
                    help="fp8: expect an input_scale per layer (a calibrated run)")
    ap.add_argument("--no-default-excludes", action="store_true")
    ap.add_argument("--exclude", action="append", default=[], metavar="REGEX")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    if not (args.input and args.output and args.scheme):
        ap.error("INPUT, OUTPUT and --scheme are needed (or --self-test)")
    rep = run(args)
    if rep is None:
        return 2
    print("ct_check: %d checks passed, %d failed" % (rep.passed, rep.failed))
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
