#!/usr/bin/python3
"""Checks of mq-dist's PyTorch .pt output and of runs on .pt input.

    pt_check.py zipcheck OUT.pt
        The zip container: every entry stored, CRC-32s right (zipfile.testzip), each
        record's data at a multiple of 64 bytes, only archive/data.pkl, archive/data/<k>,
        archive/version ("3\\n") and archive/mq_metadata.json (a JSON object of strings,
        possibly padded with trailing spaces).
    pt_check.py compare OUT.pt OUT.safetensors
        zipcheck, then torch.load(OUT.pt, weights_only=True) must give an OrderedDict of
        plain contiguous tensors equal bit for bit to the safetensors file's tensors, and
        archive/mq_metadata.json must equal its __metadata__.  For int8 and int8-asym, every
        quantized weight and zero point loads as torch.int8.
    pt_check.py same-tensors A.safetensors B.safetensors
        The same tensor names, dtypes, shapes and bytes.
    pt_check.py same-run A.safetensors B.safetensors [--input-a FILE]
        same-tensors, and the same __metadata__ except provenance "inputs" (JSON values
        compared parsed).  With --input-a, A's provenance inputs must list exactly FILE
        (base name and size).
    pt_check.py f64check IN.safetensors OUT.safetensors
        Every F64 input weight (2-D or 4-D, named *.weight, not excluded) was quantized
        (int8 or int8-asym): the codes, scale and zero point reproduce the float64 input within
        half a step (plus float32 rounding), and the layer record's sqnr_db agrees within the
        bound that the float32 rounding of the values and of mq-dist's sums allows.
    pt_check.py inspect FILE.pt INSPECT.txt [--meta]
        The text printed by `mq-dist inspect FILE.pt` names every tensor (torch.load) on a
        line with its dtype and shape; with --meta, every key of archive/mq_metadata.json.

Prints one line per failed check and a last line "pt_check CMD: N checks passed, M failed";
exits 1 if any check failed.  Only the subcommands that load .pt files import torch.
"""

import argparse
import collections
import json
import math
import os
import re
import struct
import sys
import zipfile

import numpy as np

from check_output import (FormatError, Report, strict_json,   # shared with the safetensors client
                          PRINT_REL, U32, U64, db_bound, gamma, is_number)

FOLDER = "archive/"
ALIGN = 64
FLT_EPS = float(np.finfo(np.float32).eps)
ELEM = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
        "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}
TORCH_DTYPE = {"I8": "int8", "U8": "uint8", "F32": "float32", "F16": "float16",
               "BF16": "bfloat16", "I64": "int64", "F64": "float64", "I32": "int32",
               "I16": "int16", "BOOL": "bool"}


# ---------------------------------------------------------------- safetensors

class SafeTensors:
    """Header and raw tensor bytes of a safetensors file (small test files)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            head = strict_json(f.read(n).decode("utf-8"))
            self.data = f.read()
        self.metadata = head.pop("__metadata__", None) or {}
        self.tensors = collections.OrderedDict()
        for name, e in head.items():
            b, end = e["data_offsets"]
            if end - b != math.prod(e["shape"]) * ELEM[e["dtype"]] or end > len(self.data):
                raise ValueError("%s: bad entry %s" % (path, name))
            self.tensors[name] = (e["dtype"], list(e["shape"]), self.data[b:end])

    def array(self, name, np_dtype):
        dtype, shape, raw = self.tensors[name]
        return np.frombuffer(raw, np_dtype).reshape(shape)


def compare_tensors(rep, a, b, what):
    """a, b: name -> (dtype, shape, bytes)."""
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    rep.check(not only_a and not only_b, "%s: tensor names differ: only in first %s, only in "
              "second %s" % (what, only_a[:5], only_b[:5]))
    for name in sorted(set(a) & set(b)):
        da, sa, ra = a[name]
        db, sb, rb = b[name]
        if rep.check((da, sa) == (db, sb), "%s: %s is %s %s vs %s %s" % (what, name, da, sa, db, sb)):
            rep.check(ra == rb, "%s: %s: bytes differ (%d vs %d bytes)" % (what, name, len(ra), len(rb)))


# ---------------------------------------------------------------- zip container

def zip_checks(rep, path):
    """Container checks; returns the parsed mq_metadata.json or None."""
    with open(path, "rb") as f:
        raw = f.read()
    rep.check(raw[:4] == b"PK\x03\x04", "%s: does not start with a zip local header" % path)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        rep.check(False, "%s: not a zip file: %s" % (path, e))
        return None
    with zf:
        infos = zf.infolist()
        bad = zf.testzip()
        rep.check(bad is None, "%s: CRC-32 or header error in %r" % (path, bad))
        names = [i.filename for i in infos]
        rep.check(len(names) == len(set(names)), "%s: duplicate entry names" % path)
        required = [FOLDER + "data.pkl", FOLDER + "version", FOLDER + "mq_metadata.json"]
        for r in required:
            rep.check(r in names, "%s: no record %s" % (path, r))
        data_re = re.compile(re.escape(FOLDER) + r"data/(0|[1-9][0-9]*)$")
        odd = [n for n in names if n not in required and not data_re.match(n)]
        rep.check(not odd, "%s: unexpected records %s" % (path, odd[:5]))
        rep.check(any(data_re.match(n) for n in names), "%s: no data/<k> records" % path)
        for i in infos:
            rep.check(i.compress_type == zipfile.ZIP_STORED, "%s: %s is compressed (method %d)"
                      % (path, i.filename, i.compress_type))
            h = i.header_offset
            if not rep.check(raw[h:h + 4] == b"PK\x03\x04", "%s: %s: no local header at %d"
                             % (path, i.filename, h)):
                continue
            n_name, n_extra = struct.unpack_from("<HH", raw, h + 26)
            rep.check(raw[h + 30:h + 30 + n_name] == i.filename.encode("utf-8"),
                      "%s: %s: local header name differs" % (path, i.filename))
            start = h + 30 + n_name + n_extra
            rep.check(start % ALIGN == 0, "%s: %s: data starts at %d, not a multiple of %d"
                      % (path, i.filename, start, ALIGN))
        if FOLDER + "version" in names:
            v = zf.read(FOLDER + "version")
            rep.check(v == b"3\n", "%s: version record is %r, expected b'3\\n'" % (path, v))
        meta = None
        if FOLDER + "mq_metadata.json" in names:
            text = zf.read(FOLDER + "mq_metadata.json").decode("utf-8", "replace")
            try:
                meta = strict_json(text.rstrip(" "))
            except FormatError as e:
                rep.check(False, "%s: mq_metadata.json is not JSON: %s" % (path, e))
            if meta is not None and not rep.check(
                    isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values()),
                    "%s: mq_metadata.json is not an object of strings" % path):
                meta = None
    return meta


def torch_tensors(rep, torch, path):
    """torch.load(weights_only=True) -> name -> (dtype, shape, bytes), or None."""
    try:
        obj = torch.load(path, weights_only=True)
    except Exception as e:      # any failure to load is the finding
        rep.check(False, "%s: torch.load(weights_only=True) failed: %s" % (path, e))
        return None
    if not rep.check(type(obj) is collections.OrderedDict, "%s: loads as %s, not an OrderedDict"
                     % (path, type(obj).__name__)):
        return None
    back = {getattr(torch, v): k for k, v in TORCH_DTYPE.items()}
    out = {}
    for name, t in obj.items():
        if not rep.check(type(t) is torch.Tensor, "%s: %r is a %s, not a plain tensor"
                         % (path, name, type(t).__name__)):
            continue
        rep.check(t.is_contiguous(), "%s: %r is not contiguous" % (path, name))
        rep.check(not t.requires_grad, "%s: %r requires grad" % (path, name))
        dtype = back.get(t.dtype)
        if not rep.check(dtype is not None, "%s: %r has dtype %s" % (path, name, t.dtype)):
            continue
        flat = t.contiguous().reshape(-1)
        if t.dtype == torch.bfloat16:
            flat = flat.view(torch.int16)
        out[name] = (dtype, list(t.shape), flat.numpy().tobytes())
    return out


# ---------------------------------------------------------------- subcommands

def cmd_zipcheck(rep, args):
    zip_checks(rep, args.pt)


def cmd_compare(rep, args):
    import torch
    meta = zip_checks(rep, args.pt)
    st = SafeTensors(args.safetensors)
    if meta is not None:
        # The fingerprint covers the output format, so it is the one key that may differ;
        # both must be SHA-256 digests (or "none" in both, without checksums).
        fa, fb = meta.get("fingerprint", ""), st.metadata.get("fingerprint", "")
        rep.check((fa == fb == "none") or bool(re.fullmatch("[0-9a-f]{64}", fa) and re.fullmatch("[0-9a-f]{64}", fb)),
                  "fingerprints %r (.pt) and %r (.safetensors): expected two SHA-256 digests" % (fa, fb))
        rest_a = {k: v for k, v in meta.items() if k != "fingerprint"}
        rest_b = {k: v for k, v in st.metadata.items() if k != "fingerprint"}
        rep.check(rest_a == rest_b, "mq_metadata.json differs from __metadata__ in keys %s"
                  % sorted(k for k in set(rest_a) | set(rest_b) if rest_a.get(k) != rest_b.get(k))[:8])
    got = torch_tensors(rep, torch, args.pt)
    if got is not None:
        compare_tensors(rep, got, st.tensors, "%s vs %s" % (args.pt, args.safetensors))
    if got is not None and meta is not None:
        int8_dtypes(rep, got, meta, args.pt)


def int8_dtypes(rep, got, meta, path):
    """Integer schemes (int8, int8-asym): every quantized weight and every zero point loads as
    torch.int8, as compressed-tensors has it (it has no unsigned type)."""
    if meta.get("scheme") not in ("int8", "int8-asym"):
        return
    selected = parsed(meta.get("selected_layers", "[]"))
    names = [n for n in got if n.endswith("_zero_point")] + list(selected if isinstance(selected, list) else [])
    if meta.get("scheme") == "int8-asym":
        rep.check(any(n.endswith(".weight_zero_point") for n in got) or not selected,
                  "%s: int8-asym output without weight_zero_point tensors" % path)
    for name in names:
        dtype = got.get(name, (None,))[0]
        rep.check(dtype == "I8", "%s: %r loads as %s, expected torch.int8"
                  % (path, name, TORCH_DTYPE.get(dtype, dtype)))


def cmd_same_tensors(rep, args):
    compare_tensors(rep, SafeTensors(args.a).tensors, SafeTensors(args.b).tensors,
                    "%s vs %s" % (args.a, args.b))


def parsed(v):
    try:
        return strict_json(v)
    except FormatError:
        return v


def cmd_same_run(rep, args):
    a, b = SafeTensors(args.a), SafeTensors(args.b)
    compare_tensors(rep, a.tensors, b.tensors, "%s vs %s" % (args.a, args.b))
    ma, mb = dict(a.metadata), dict(b.metadata)
    rep.check(bool(ma) and "layers" in ma, "%s: no metadata layers" % args.a)
    pa, pb = parsed(ma.pop("provenance", "{}")), parsed(mb.pop("provenance", "{}"))
    rep.check(sorted(ma) == sorted(mb), "metadata keys differ: %s"
              % sorted(set(ma) ^ set(mb)))
    for k in sorted(set(ma) & set(mb)):
        rep.check(parsed(ma[k]) == parsed(mb[k]), "metadata %s differs: %.300s ... vs %.300s"
                  % (k, ma[k], mb[k]))
    if rep.check(isinstance(pa, dict) and isinstance(pb, dict), "provenance is not a JSON object"):
        inputs_a = pa.pop("inputs", None)
        pb.pop("inputs", None)
        for k in sorted(set(pa) | set(pb)):
            rep.check(pa.get(k) == pb.get(k), "provenance %s differs: %r vs %r"
                      % (k, pa.get(k), pb.get(k)))
        if args.input_a:
            want = {os.path.basename(args.input_a): os.path.getsize(args.input_a)}
            got = ({e.get("file"): e.get("bytes") for e in inputs_a if isinstance(e, dict)}
                   if isinstance(inputs_a, list) else inputs_a)
            rep.check(got == want, "provenance inputs %r, expected %r" % (inputs_a, want))


def cmd_f64check(rep, args):
    src, out = SafeTensors(args.input), SafeTensors(args.output)
    layers = parsed(out.metadata.get("layers", "{}"))
    scheme = out.metadata.get("scheme")
    f64 = [n for n, t in src.tensors.items() if t[0] == "F64"
           and len(t[1]) in (2, 4) and n.endswith(".weight")]
    quantized = 0
    for name in f64:
        rec = layers.get(name, {}) if isinstance(layers, dict) else {}
        if rec.get("action") == "kept" and "exclu" in str(rec.get("reason")):
            continue            # an excluded name: kept like any excluded float weight
        if not rep.check(rec.get("action") == "quantized", "%s: action %r (%s), expected "
                         "quantized" % (name, rec.get("action"), rec.get("reason"))):
            continue
        quantized += 1
        rep.check(rec.get("dtype_in") == "F64", "%s: dtype_in %r" % (name, rec.get("dtype_in")))
        x = src.array(name, "<f8").astype(np.float64)
        rows = x.shape[0]
        x = x.reshape(rows, -1)
        q_dtype = {"int8": ("I8", "<i1"), "int8-asym": ("I8", "<i1")}.get(scheme)
        if not rep.check(q_dtype is not None, "%s: scheme %r is not int8/int8-asym" % (name, scheme)):
            continue
        prefix = name[:-len("weight")]
        q = out.tensors.get(name)
        s = out.tensors.get(prefix + "weight_scale")
        if not rep.check(q is not None and q[0] == q_dtype[0] and q[1] == src.tensors[name][1],
                         "%s: output is %r, expected %s %s" % (name, q and q[:2], q_dtype[0],
                                                              src.tensors[name][1])):
            continue
        if not rep.check(s is not None and s[0] == "F32", "%s: no F32 weight_scale" % name):
            continue
        codes = out.array(name, q_dtype[1]).astype(np.float64).reshape(rows, -1)
        scale = out.array(prefix + "weight_scale", "<f4").astype(np.float64).reshape(-1, 1)
        zp = np.zeros_like(scale)
        if scheme == "int8-asym":
            z = out.tensors.get(prefix + "weight_zero_point")
            if not rep.check(z is not None and z[0] == "I8", "%s: no I8 weight_zero_point" % name):
                continue
            zp = out.array(prefix + "weight_zero_point", "<i1").astype(np.float64).reshape(-1, 1)
        x32 = x.astype(np.float32)        # mq-dist rounds F64 to float32 first
        if scheme == "int8" and scale.shape[0] == rows:
            # exact: the spec's float32 formula on the rounded values (rounding is monotone)
            want = np.maximum(np.abs(x32).max(axis=1, keepdims=True) / np.float32(127.5),
                              np.float32(FLT_EPS)).astype(np.float32)
            got32 = scale.astype(np.float32)
            bad = np.flatnonzero(got32.view(np.uint32) != want.view(np.uint32))
            rep.check(bad.size == 0, "%s: %d scales differ from float32 max|row| / 127.5 (first "
                      "row %s: %r vs %r)" % (name, bad.size, bad[:1], got32.ravel()[bad[:1]],
                                             want.ravel()[bad[:1]]))
        deq = (codes - zp) * scale          # exact in float64
        err = np.abs(x - deq)
        # Half a step, plus: x rounded to float32 (u|x|, u = 2^-24), the float32 reciprocal and
        # product x * (1/s) (2u|x|), and at the clamp of the largest value 127.5 / (1 - u) steps
        # (3u|x|): 6u|x| <= 2^-21 |x|.  int8-asym's clamp at 255 adds the rounding of
        # (hi - lo) / 255 and of the zero point, under 2048u steps: 2^-13 s.
        step = 0.5 + (2.0 ** -13 if scheme == "int8-asym" else 0.0)
        bound = step * scale + 2.0 ** -21 * np.abs(x)
        over = err - bound
        rep.check(bool(np.all(over <= 0)), "%s: %d values off by more than half a step "
                  "(worst error %g, its bound %g)" % (name, int(np.sum(over > 0)),
                                                      float(err.ravel()[over.argmax()]),
                                                      float(bound.ravel()[over.argmax()])))
        signal, noise = float(np.sum(x * x)), float(np.sum(err * err))
        got = rec.get("sqnr_db")
        if noise > 0 and signal > 0:
            want = 10 * math.log10(signal / noise)
            # mq-dist sums x32^2 and (x32 - fl32(deq))^2: the norms differ from these by
            # u||x|| and u(||x|| + ||deq||); its float32 run sums add gamma_10(u) (check_output's
            # sum_bound).
            g = gamma(10, U32) + 2 * gamma(x.size, U64)
            nx, ne, nd = math.sqrt(signal), math.sqrt(noise), float(np.linalg.norm(deq))
            d_signal = (nx * (1 + U32)) ** 2 * (1 + g) - signal
            d_noise = (ne + U32 * (nx + nd)) ** 2 * (1 + g) - noise
            bound = db_bound(signal, noise, d_signal, d_noise) + abs(want) * (PRINT_REL + 4 * U64)
            if rep.check(is_number(got), "%s: sqnr_db %r is not a number" % (name, got)):
                rep.within(abs(got - want), bound, "%s: sqnr_db %r, expected %.6f" % (name, got, want))
    rep.check(quantized > 0, "%s: no quantized F64 weight" % args.output)


def shapes_in(line):
    """Every bracketed or parenthesised integer list on a line ([2, 3], (2, 3), (5,), []),
    and every AxB word, as tuples."""
    found = []
    for m in re.finditer(r"[\[(]\s*((?:\d+\s*,\s*)*\d*)\s*,?\s*[\])]", line):
        found.append(tuple(int(v) for v in re.findall(r"\d+", m.group(1))))
    for m in re.finditer(r"(?<![\w.])\d+(?:x\d+)+(?![\w.])", line):
        found.append(tuple(int(v) for v in m.group(0).split("x")))
    return found


def cmd_inspect(rep, args):
    import torch
    text = open(args.text, encoding="utf-8", errors="replace").read()
    lines = text.splitlines()
    obj = torch.load(args.pt, weights_only=True)
    if not rep.check(isinstance(obj, dict), "%s: not a state dict" % args.pt):
        return
    aliases = {v: {k.lower(), v, "torch." + v} for k, v in TORCH_DTYPE.items()}
    for name, t in obj.items():
        dtype = str(t.dtype).replace("torch.", "")
        shape = tuple(t.shape)
        hits = [ln for ln in lines if name in re.split(r"[\s'\"]+", ln)]
        if not rep.check(hits, "inspect: tensor %s not listed" % name):
            continue
        ok = any(any(tok.lower() in aliases.get(dtype, {dtype}) for tok in re.split(r"[\s,:]+", ln))
                 and shape in shapes_in(ln) for ln in hits)
        rep.check(ok, "inspect: %s not shown as %s %s: %r" % (name, dtype, list(shape), hits[0]))
    if args.meta:
        with zipfile.ZipFile(args.pt) as zf:
            meta = strict_json(zf.read(FOLDER + "mq_metadata.json").decode("utf-8").rstrip(" "))
        rep.check(bool(meta), "%s: empty mq_metadata.json" % args.pt)
        for key in meta:
            rep.check(re.search(r"(^|[\s\"'])%s[\"']?\s*[:=]" % re.escape(key), text, re.M),
                      "inspect: metadata key %s not shown" % key)


def main(argv):
    ap = argparse.ArgumentParser(description="Check mq-dist .pt outputs and .pt-input runs.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("zipcheck")
    p.add_argument("pt")
    p = sub.add_parser("compare")
    p.add_argument("pt")
    p.add_argument("safetensors")
    for c in ("same-tensors", "same-run"):
        p = sub.add_parser(c)
        p.add_argument("a")
        p.add_argument("b")
        if c == "same-run":
            p.add_argument("--input-a", help="the input file of run A (provenance)")
    p = sub.add_parser("f64check")
    p.add_argument("input")
    p.add_argument("output")
    p = sub.add_parser("inspect")
    p.add_argument("pt")
    p.add_argument("text")
    p.add_argument("--meta", action="store_true")
    args = ap.parse_args(argv)
    rep = Report()
    fn = {"zipcheck": cmd_zipcheck, "compare": cmd_compare, "same-tensors": cmd_same_tensors,
          "same-run": cmd_same_run, "f64check": cmd_f64check, "inspect": cmd_inspect}[args.cmd]
    try:
        fn(rep, args)
    except (OSError, ValueError, FormatError, KeyError, struct.error, zipfile.BadZipFile) as e:
        rep.check(False, "%s: %s: %s" % (args.cmd, type(e).__name__, e))
    print("pt_check %s: %d checks passed, %d failed%s" % (args.cmd, rep.passed, rep.failed,
                                                         rep.summary()))
    return 1 if rep.failed or not rep.passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
