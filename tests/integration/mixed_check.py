#!/usr/bin/python3
"""Independent checker of mq-dist's mixed-precision outputs (--target-bpw, --target-size).

    mixed_check.py check INPUT [--candidates LIST] --out OUTPUT TARGET [--out OUTPUT TARGET]...
    mixed_check.py self-test INPUT OUTPUT TARGET

INPUT is the model mq-dist read (a .safetensors file or a model.safetensors.index.json), OUTPUT a
.safetensors file it wrote with a target, TARGET that target as "size:BYTES" or "bpw:B".  LIST is
the run's --candidates (default int4-g128,int8,bf16).  Nothing of mq-dist is imported; the file
formats and reference quantizers are those of ct_check.py (pack-quantized groups, fp8) and
check_output.py (int8 per channel, through torch's quantize_per_channel; bf16 round to nearest even),
written from the specs.

check, for each OUTPUT, from the file's bytes alone:
  format     every input tensor has a record; kept tensors are in the output byte for byte; each
             quantized weight is stored as its record's "scheme" says (int8: I8 weight + F32
             weight_scale [out, 1]; int8-asym: + I8 weight_zero_point; fp8: F8_E4M3 + F32 scale;
             int4/int4-asym/w8a16/w8a16-asym: weight_packed/weight_scale/weight_shape
             (+ weight_zero_point), scales in the model's dtype; bf16/fp16: the weight cast); no
             other tensor; quantized_size_bytes is all tensor data; selected_layers.
  chosen     "chosen" names a candidate of the record, the one of the stored scheme and group size;
             its "bytes" equals the record's bytes_out and the bytes of the layer's tensors; every
             candidate's bytes are what its layout takes; a record lists exactly the candidates
             that can store that weight.
  sqnr       each quantized layer dequantized from the file ((q - zp) * s, the cast back), its
             SQNR against the input weight compared with the record's sqnr_db (printed %.9g) and
             the chosen candidate's sqnr_db (printed %.4f), mse and max_abs_err; the aggregate
             sqnr_db (10 log10 of the total signal over the total noise).  Why a tolerance:
             mq-dist forms x - deq in float32 (or with deq unrounded, fused) and sums the squares in
             float32 runs, then in float64 (check_output's sum_bound), while this checker sums the
             exact squares in float64; the bound (deviations()) is 2^-24 (|x| + |deq| + |x - deq|)
             per difference and gamma_10(2^-24) + gamma_n(2^-53) on the sums, carried through
             10 log10, plus the printing (%.9g: 5e-9 relative; %.4f: 5e-5 dB).  Without the
             printing it is 1e-5 to 6e-5 dB on these models (the figures are within 1% of it); a
             scale doubled or a code 4 steps off moves a layer's SQNR far more.  A single code one
             step off can stay within it: the reference check below sees that.
  reference  each candidate's sqnr_db against this checker's own quantization of the weight by
             that candidate (same tolerance), and the stored values equal the reference
             quantizer's bit for bit.
  fused      q/k/v of one attention and gate/up of one MLP have the same chosen scheme.
  budget     the tensor data is at most the target (and bits_per_weight at most B); the
             mixed_precision summary: target_bytes, bytes, bits_per_weight, the chosen counts,
             items, error (the total squared error, against the recomputed one) and lower_bound;
             no uniform plan (one candidate for every weight) that fits has less error (the
             solver's promise); lower_bound <= the exact optimum of the knapsack (a dynamic
             programme over the bytes, on the recomputed errors) <= error.  How far error is above
             that optimum is printed (test_mixed.sh fails a choice above it beyond the figures' rounding).
Each OUTPUT ends with a line "result OUTPUT CATEGORY PASSED FAILED" per category (for the
test's TAP lines), "summary OUTPUT ..." and "optimum OUTPUT PERCENT_ABOVE SQNR OPTIMUM_SQNR"; one
line "FAIL: ..." per failed check.  Exit 1 if any check failed.

self-test damages copies of OUTPUT (a code, a scale, a record's SQNR, a candidate's SQNR or bytes,
"chosen", one of q/k/v stored in another scheme with its records made consistent, the summary, a
kept tensor) and checks that each damage is caught in the category it belongs to, and that the
undamaged OUTPUT passes.
"""

import argparse
import json
import math
import os
import re
import sys
import tempfile
from functools import reduce

import numpy as np

from ct_check import (FP8, FLOAT_DTYPES, PACK_SCHEMES, DEFAULT_EXCLUDES, F32_EPS, Model, SafeTensors,
                      bf16_bits_to_f32, bf16_round_bits, decompress_fp8, decompress_pack,
                      dequant_groups, fp8_nearest, pack_int32, ref_pack_quantize,
                      write_safetensors)
from check_output import (PRINT_REL, U32, U64, db_bound, gamma, int_params, strict_json, torch_codes)

DEFAULT_CANDIDATES = "int4-g128,int8,bf16"
CAND_RE = re.compile(r"(int8|int8-asym|fp8|fp16|bf16|int4|int4-asym|w8a16|w8a16-asym)"
                     r"(?:-g(32|64|128)|-(channel))?$")
CAST = {"bf16": "BF16", "fp16": "F16"}
ELEM = {"F32": 4, "F16": 2, "BF16": 2}
CATEGORIES = ("format", "chosen", "sqnr", "reference", "fused", "budget")
FUSED = (("q_proj.weight", "k_proj.weight", "v_proj.weight"), ("gate_proj.weight", "up_proj.weight"))
EXP_LSB = {"F32": (2, 0x80), "BF16": (0, 0x80), "F16": (1, 0x04)}   # (byte, bit) of the exponent's last bit
CAND_PRINT = 0.5e-4          # a candidate's sqnr_db is printed with 4 decimals


class Report:
    """Checks counted per category; one line per failure."""

    def __init__(self, label=""):
        self.label = label
        self.counts = {c: [0, 0] for c in CATEGORIES}
        self.quiet = False
        self.worst = {}           # kind -> the largest |figure - recomputed| / its bound

    def within(self, cat, dev, bound, msg, kind=None):
        """dev <= bound, remembering the largest dev / bound of its kind."""
        if bound > 0 and math.isfinite(dev):
            kind = kind or cat
            self.worst[kind] = max(self.worst.get(kind, 0.0), dev / bound)
        return self.check(cat, dev <= bound, "%s (off by %.3g, bound %.3g)" % (msg, dev, bound))

    def check(self, cat, ok, msg):
        self.counts[cat][0 if ok else 1] += 1
        if not ok and not self.quiet:
            print("FAIL: %s: %s: %s" % (self.label, cat, msg))
        return bool(ok)

    def failed(self, cat=None):
        return sum(v[1] for c, v in self.counts.items() if cat in (None, c))


# ---------------------------------------------------------------- candidates

class Cand:
    """A candidate: scheme, group (an int, "channel", or None for the schemes without groups)."""

    def __init__(self, text):
        m = CAND_RE.match(text)
        if not m:
            raise ValueError("%r is not a candidate name" % text)
        self.scheme = m.group(1)
        if self.scheme in PACK_SCHEMES:
            self.group = int(m.group(2)) if m.group(2) else ("channel" if m.group(3) else 128)
        elif m.group(2) or m.group(3):
            raise ValueError("%r: %s takes no group" % (text, self.scheme))
        else:
            self.group = None
        self.name = self.scheme + ("" if self.group is None else
                                   "-channel" if self.group == "channel" else "-g%d" % self.group)

    def group_of(self, n):
        return n if self.group == "channel" else self.group

    def fits(self, e):
        """Can this candidate store weight entry e?  (README: --keep-unfit; LOWBIT A.3.)"""
        if e.dtype not in FLOAT_DTYPES:
            return False
        out, n = e.shape[0], e.numel // e.shape[0]
        if self.scheme in PACK_SCHEMES:
            bits, sym = PACK_SCHEMES[self.scheme]
            gs = self.group_of(n)
            return len(e.shape) == 2 and n % gs == 0 and n % 8 == 0 and (sym or out % 8 == 0)
        return True

    def layout(self, e):
        """{tensor suffix: (dtype, shape)} the candidate stores weight e in."""
        out, n = e.shape[0], e.numel // e.shape[0]
        s = self.scheme
        if s in CAST:
            return {"weight": (CAST[s], list(e.shape))}
        if s in ("int8", "int8-asym", "fp8"):
            lay = {"weight": ("F8_E4M3" if s == "fp8" else "I8", list(e.shape)),
                   "weight_scale": ("F32", [out, 1])}
            if s == "int8-asym":
                lay["weight_zero_point"] = ("I8", [out, 1])
            return lay
        bits, sym = PACK_SCHEMES[s]
        ng = n // self.group_of(n)
        lay = {"weight_packed": ("I32", [out, -(-n * bits // 32)]),
               "weight_scale": (e.dtype, [out, ng]), "weight_shape": ("I64", [2])}
        if not sym:
            lay["weight_zero_point"] = ("I32", [-(-out * bits // 32), ng])
        return lay

    def nbytes(self, e):
        size = {"I8": 1, "F8_E4M3": 1, "I32": 4, "I64": 8, "F32": 4, "F16": 2, "BF16": 2}
        return sum(size[d] * math.prod(shp) for d, shp in self.layout(e).values())

    def reference(self, x, dtype):
        """The candidate's quantization of x [out, n] (float32) by the specs, dequantized (float32)."""
        s = self.scheme
        if s == "bf16":
            return bf16_bits_to_f32(bf16_round_bits(x))
        if s == "fp16":
            return x.astype(np.float16).astype(np.float32)
        if s in ("int8", "int8-asym"):
            sc, zp = int_params(x, s)
            codes, _ = torch_codes(x, sc, zp, s, True)
            z = (zp - 128) if s == "int8-asym" else zp
            return (codes - z[:, None]).astype(np.float32) * sc[:, None]
        if s == "fp8":
            amax = np.abs(x).max(axis=1, keepdims=True)
            sc = np.maximum(amax / np.float32(448), F32_EPS).astype(np.float32)
            codes = fp8_nearest(np.clip(x / sc, np.float32(-448), np.float32(448)))
            return FP8[codes] * sc
        bits, sym = PACK_SCHEMES[s]
        gs = self.group_of(x.shape[1])
        q, sc, zp = ref_pack_quantize(x, bits, sym, gs, dtype)
        return dequant_groups(q, sc, zp, gs)


def stored(st, name, rec, e):
    """The layer's dequantized weight [out, n] from the output file, by its record's scheme."""
    p = name[:-len("weight")]
    s = rec.get("scheme")
    if s in CAST:
        return st.floats(name).reshape(e.shape[0], -1)
    if s in ("int8", "int8-asym"):
        q = st.array(name).reshape(e.shape[0], -1).astype(np.int32)
        zp = (st.array(p + "weight_zero_point").reshape(-1, 1).astype(np.int32)
              if s == "int8-asym" else 0)
        return (q - zp).astype(np.float32) * st.floats(p + "weight_scale").reshape(-1, 1)
    if s == "fp8":
        return decompress_fp8(st, p).reshape(e.shape[0], -1)
    return decompress_pack(st, p, PACK_SCHEMES[s][0])


# ---------------------------------------------------------------- numbers

def sums(x, deq):
    """signal, noise and ||deq||^2 in float64 (exact squares of float32 values, summed)."""
    x64, d64 = x.astype(np.float64), deq.astype(np.float64)
    return float(np.sum(x64 * x64)), float(np.sum((x64 - d64) ** 2)), float(np.sum(d64 * d64))


def deviations(signal, noise, dsq, n):
    """How far mq-dist's signal and noise sums may be from the exact ones: it forms x - deq in float32
    (within 2^-24 (|x - deq| + |deq|) of the exact difference, whether deq is rounded first or not;
    |x| is added for margin) and sums the squares in float32 runs of 128, 16 lanes (gamma_10(2^-24)),
    then in float64 (gamma_n(2^-53)); a square that underflows float32 loses at most 2^-150
    (check_output.sum_bound)."""
    g = gamma(10, U32) + 2 * gamma(max(n, 1), U64)
    ne = math.sqrt(noise) + U32 * (math.sqrt(noise) + math.sqrt(signal) + math.sqrt(dsq))
    return signal * g + n * 2.0 ** -150, ne * ne * (1 + g) - noise + n * 2.0 ** -150


def sqnr_dev(signal, noise, d_signal, d_noise):
    """(SQNR in dB, how far a correct mq-dist figure may be from it before printing)."""
    want = 10 * math.log10(signal / noise)
    return want, db_bound(signal, noise, d_signal, d_noise) + abs(want) * (PRINT_REL + 4 * U64)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def family(name):
    """The fused family key of a weight name (q/k/v, gate/up of one stem), or the name itself."""
    for k, members in enumerate(FUSED):
        for m in members:
            if name == m or name.endswith("." + m):
                return (name[:len(name) - len(m)], k)
    return name


def knapsack_optimum(items, budget):
    """Exact least total error of choosing one (bytes, error) option per item within budget bytes:
    a dynamic programme over the bytes in units of their common divisor.  (error, [option index per
    item]), or (None, None) if nothing fits or the table would be too large."""
    g = reduce(math.gcd, (b for opts in items for b, _ in opts), 0) or 1
    cap = budget // g
    if cap < 0 or cap * max(len(items), 1) > 100_000_000:
        return None, None
    best = np.zeros(cap + 1)
    picks = []
    for opts in items:
        new = np.full(cap + 1, np.inf)
        pick = np.full(cap + 1, -1, np.int8)
        for j, (b, err) in enumerate(opts):
            k = b // g
            if k <= cap:
                cand = best[:cap + 1 - k] + err
                better = cand < new[k:]
                new[k:][better] = cand[better]
                pick[k:][better] = j
        best = new
        picks.append(pick)
    at = int(np.argmin(best))
    v = float(best[at])
    if not math.isfinite(v):
        return None, None
    choice = []
    for opts, pick in zip(reversed(items), reversed(picks)):
        j = int(pick[at])
        choice.append(j)
        at -= opts[j][0] // g
    return v, choice[::-1]


# ---------------------------------------------------------------- one output

class Checker:
    def __init__(self, input_path, candidates):
        self.inp = Model(input_path)
        self.cands = [Cand(c) for c in candidates.split(",")]
        self.cache = {}           # (name, candidate) -> (deq float32, signal, noise, dsq)
        self.mcache = {}          # (name, candidate, measure_every) -> the sums the choice is made from
        self.every = 1

    def measured(self, name, cand):
        """A candidate's signal, noise and ||deq||^2 as mq-dist measures them for the choice: over the rows
        whose index is a multiple of --measure-every (provenance options measure_every), scaled by the
        tensor's rows over those rows; and the number of values they hold."""
        key = (name, cand.name, self.every)
        if key not in self.mcache:
            e = self.inp.entry(name)
            x = self.inp.floats(name).reshape(e.shape[0], -1)
            deq = self.ref(name, cand)[0].reshape(x.shape)
            ev = self.stride(x.shape[0])
            rows, k = x.shape[0], (x.shape[0] + ev - 1) // ev
            s_, n_, d_ = sums(x[::ev], deq[::ev])
            f = rows / k
            self.mcache[key] = (s_ * f, n_ * f, d_ * f, x[::ev].size)
        return self.mcache[key]

    def stride(self, rows):
        """Every n-th row: measure_every, or less so that at least 512 rows are measured."""
        return max(1, min(self.every, rows // 512))

    def ref(self, name, cand):
        key = (name, cand.name)
        if key not in self.cache:
            e = self.inp.entry(name)
            x = self.inp.floats(name).reshape(e.shape[0], -1)
            deq = cand.reference(x, e.dtype)
            self.cache[key] = (deq,) + sums(x, deq)
        return self.cache[key]

    def run(self, path, target, rep):
        inp = self.inp
        st = SafeTensors(path)
        meta = st.metadata
        kind, tval = target.split(":", 1)
        layers = strict_json(meta.get("layers", "{}"))
        mp = strict_json(meta.get("mixed_precision", "null"))
        prov = strict_json(meta.get("provenance", "{}"))
        rep.check("format", meta.get("scheme") == "mixed", "metadata scheme %r, expected mixed"
                  % meta.get("scheme"))
        if not rep.check("budget", isinstance(mp, dict), "no mixed_precision object in __metadata__"):
            mp = {}
        opts = prov.get("options", {}) if isinstance(prov, dict) else {}
        self.every = opts.get("measure_every", 1) if isinstance(opts.get("measure_every"), int) else 1
        rep.check("chosen", opts.get("candidates") == [c.name for c in self.cands],
                  "provenance options candidates %r, expected %r"
                  % (opts.get("candidates"), [c.name for c in self.cands]))

        expected_names, quantized, fixed = set(), [], 0
        tot = {"signal": 0.0, "noise": 0.0, "dsig": 0.0, "dnoise": 0.0, "numel": 0, "measured": 0.0}
        counts = {c.name: 0 for c in self.cands}
        chosen_of, fits_of, item_err_tol = {}, {}, 0.0
        for name in sorted(inp.entries):
            e = inp.entry(name)
            rec = layers.get(name)
            if not rep.check("format", isinstance(rec, dict), "%s: no layer record" % name):
                continue
            if rec.get("action") != "quantized":
                rep.check("format", rec.get("action") == "kept", "%s: action %r" % (name, rec.get("action")))
                expected_names.add(name)
                fixed += e.end - e.begin
                o = st.entries.get(name)
                rep.check("format", o is not None and (o.dtype, o.shape) == (e.dtype, e.shape)
                          and st.raw(name) == inp.raw(name),
                          "%s: kept tensor not in the output byte for byte" % name)
                rep.check("chosen", "chosen" not in rec, "%s: kept, yet chosen %r" % (name, rec.get("chosen")))
                continue
            quantized.append(name)
            fits = [c for c in self.cands if c.fits(e)]
            fits_of[name] = fits
            self.layer(rep, st, name, rec, e, fits, expected_names, tot, counts, chosen_of)
            item_err_tol += max((deviations(*self.measured(name, c)[:3], e.numel)[1] for c in fits), default=0)

        # the whole file
        extra = sorted(set(st.entries) - expected_names)
        missing = sorted(expected_names - set(st.entries))
        rep.check("format", not extra and not missing, "output tensors: unexpected %s, missing %s"
                  % (extra[:5], missing[:5]))
        data = sum(t.end - t.begin for t in st.entries.values())
        rep.check("format", meta.get("quantized_size_bytes") == "%d" % data,
                  "quantized_size_bytes %r, the tensor data is %d bytes" % (meta.get("quantized_size_bytes"), data))
        sel = strict_json(meta.get("selected_layers", "[]"))
        rep.check("format", sel == sorted(quantized, key=str.encode), "selected_layers differ from the quantized records")
        # the selection rules (check_output.eligible, the default exclusions); a weight that no
        # candidate can store is kept
        want_sel = sorted(n for n in inp.entries if inp.entry(n).dtype in FLOAT_DTYPES
                          and len(inp.entry(n).shape) in (2, 4) and n.endswith(".weight")
                          and not any(re.search(p, n) for p in DEFAULT_EXCLUDES)
                          and any(c.fits(inp.entry(n)) for c in self.cands))
        rep.check("format", sorted(quantized) == want_sel, "quantized %s, the selection rules give %s"
                  % (sorted(set(quantized) ^ set(want_sel))[:4], len(want_sel)))
        got = meta.get("sqnr_db")
        agg = None
        if tot["noise"] > 0:
            agg, dev = sqnr_dev(tot["signal"], tot["noise"], tot["dsig"], tot["dnoise"])
            try:
                g = float(got)
            except (TypeError, ValueError):
                g = math.nan
            rep.within("sqnr", abs(g - agg), dev, "metadata sqnr_db %r, recomputed from the file %.9f"
                       % (got, agg), "aggregate")
        else:
            rep.check("sqnr", got in ("null", None) or not math.isfinite(float(got)),
                      "metadata sqnr_db %r with no noise at all" % got)

        # fused families
        fam, item_cands, item_names = {}, [], []
        for name in quantized:
            fam.setdefault(family(name), []).append(name)
        items = []
        for key, names in sorted(fam.items(), key=lambda kv: str(kv[0])):
            common = [c for c in self.cands if all(c in fits_of[n] for n in names)]
            groups = [names] if common else [[n] for n in names]
            if len(names) > 1 and common:
                ch = sorted(set(chosen_of.get(n) for n in names), key=str)
                rep.check("fused", len(ch) == 1, "%s: one fused layer, chosen %s" % (
                    ", ".join(names), ", ".join("%s %s" % (n.rsplit(".", 2)[-2], chosen_of.get(n)) for n in names)))
            for grp in groups:
                opts_ = [c for c in self.cands if all(c in fits_of[n] for n in grp)]
                items.append([(sum(c.nbytes(inp.entry(n)) for n in grp), sum(self.measured(n, c)[1] for n in grp))
                              for c in opts_])
                item_cands.append(opts_)
                item_names.append(grp)

        # the budget and the summary
        elems = sum(inp.entry(n).numel for n in quantized)
        qbytes = data - fixed
        if kind == "size":
            tbytes = int(tval)
            budget = tbytes - fixed
            rep.check("budget", data <= tbytes, "tensor data %d bytes > the target %d" % (data, tbytes))
        else:
            bpw = float(tval)
            budget = int(bpw * elems / 8.0)
            tbytes = fixed + budget
            rep.check("budget", 8 * qbytes <= bpw * elems, "the weights take %.4f bits per weight > %s"
                      % (8 * qbytes / elems, tval))
            rep.check("budget", data <= tbytes, "tensor data %d bytes > the target %d" % (data, tbytes))
        rep.check("budget", mp.get("target_bytes") == tbytes, "mixed_precision target_bytes %r, expected %d"
                  % (mp.get("target_bytes"), tbytes))
        rep.check("budget", mp.get("bytes") == data, "mixed_precision bytes %r, the tensor data is %d"
                  % (mp.get("bytes"), data))
        bits = mp.get("bits_per_weight")
        rep.check("budget", is_num(bits) and abs(bits - 8 * qbytes / elems) <= CAND_PRINT * 1.000001,
                  "mixed_precision bits_per_weight %r, the weights take %.6f" % (bits, 8 * qbytes / elems))
        rep.check("budget", mp.get("chosen") == counts, "mixed_precision chosen %r, the records say %r"
                  % (mp.get("chosen"), counts))
        rep.check("budget", mp.get("items") == len(items), "mixed_precision items %r, expected %d"
                  % (mp.get("items"), len(items)))
        err, lb = mp.get("error"), mp.get("lower_bound")
        # the choice's error as measured (the file's own total where every row is measured)
        rep.check("budget", is_num(err) and abs(err - tot["measured"]) <= tot["dnoise"] + abs(err) * PRINT_REL,
                  "mixed_precision error %r, the chosen candidates' measured squared error is %.9g"
                  % (err, tot["measured"]))
        opt, pick = knapsack_optimum(items, budget)
        # lower_bound, the optimum and error are sums of mq-dist's or this checker's error figures:
        # they may differ by the figures' rounding (item_err_tol) and the printing (%.9g).
        tol = item_err_tol + 1e-9 * sum(max(e for _, e in it) for it in items) + 1e-300
        gap, opt_desc, opt_sqnr = None, "", None
        if rep.check("budget", opt is not None, "the exact knapsack finds no choice within %d bytes" % budget):
            rep.check("budget", is_num(lb) and lb <= opt + tol, "mixed_precision lower_bound %r above the "
                      "exact optimum %.9g" % (lb, opt))
            rep.check("budget", is_num(err) and opt <= err + tol, "the exact optimum %.9g is below the error "
                      "of the choice %r: the recomputed figures disagree" % (opt, err))
            gap = (err - opt) / opt if opt > 0 and is_num(err) else 0.0
            opt_counts = {c.name: 0 for c in self.cands}
            for cands_, names, j in zip(item_cands, item_names, pick):
                opt_counts[cands_[j].name] += len(names)
            opt_sqnr = 10 * math.log10(tot["signal"] / opt) if opt > 0 else None
            opt_desc = "%s (%s dB)" % (",".join("%s=%d" % kv for kv in opt_counts.items()),
                                       "none" if opt_sqnr is None else "%.4f" % opt_sqnr)
        rep.check("budget", is_num(lb) and is_num(err) and lb <= err + tol,
                  "mixed_precision lower_bound %r above its error %r" % (lb, err))
        # the promise of the solver: never worse than one candidate for every weight, where that fits
        for j, c in enumerate(self.cands):
            opts_ = [next((o for cc, o in zip(ic, it) if cc is c), None) for ic, it in zip(item_cands, items)]
            if all(o is not None for o in opts_) and sum(o[0] for o in opts_) <= budget:
                u = sum(o[1] for o in opts_)
                rep.check("budget", is_num(err) and err <= u + tol, "the choice's error %r is above uniform "
                          "%s's %.9g, which fits" % (err, c.name, u))
        return {"bytes": data, "target": tbytes, "sqnr": agg, "counts": counts, "gap": gap,
                "opt": opt, "error": err, "opt_desc": opt_desc, "opt_sqnr": opt_sqnr}

    def layer(self, rep, st, name, rec, e, fits, expected_names, tot, counts, chosen_of):
        """The checks of one quantized weight."""
        cands = rec.get("candidates")
        if not rep.check("chosen", isinstance(cands, dict), "%s: no candidates object" % name):
            cands = {}
        rep.check("chosen", list(cands) == [c.name for c in fits], "%s: candidates %s, the weight fits %s"
                  % (name, list(cands), [c.name for c in fits]))
        for c in fits:
            ent = cands.get(c.name, {})
            rep.check("chosen", ent.get("bytes") == c.nbytes(e), "%s: candidate %s bytes %r, its layout "
                      "takes %d" % (name, c.name, ent.get("bytes"), c.nbytes(e)))
        chosen = rec.get("chosen")
        chosen_of[name] = chosen
        cand = next((c for c in fits if c.name == chosen), None)
        if not rep.check("chosen", cand is not None, "%s: chosen %r is not one of its candidates %s"
                         % (name, chosen, list(cands))):
            return
        counts[cand.name] += 1
        gs = rec.get("group_size")
        rep.check("chosen", rec.get("scheme") == cand.scheme and gs == (
            cand.group if isinstance(cand.group, int) else None),
            "%s: stored as %s group_size %r, chosen %s" % (name, rec.get("scheme"), gs, chosen))
        # the stored tensors
        prefix = name[:-len("weight")]
        lay = cand.layout(e)
        ok = True
        for suffix, (dtype, shape) in lay.items():
            t = st.entries.get(prefix + suffix)
            ok = rep.check("format", t is not None and (t.dtype, t.shape) == (dtype, shape),
                           "%s: %s %s, expected %s %s" % (prefix + suffix, t and t.dtype, t and t.shape,
                                                          dtype, shape)) and ok
            expected_names.add(prefix + suffix)
        if not ok:
            return
        out_bytes = sum(st.entries[prefix + s].end - st.entries[prefix + s].begin for s in lay)
        rep.check("chosen", rec.get("bytes_out") == out_bytes and cands[chosen].get("bytes") == out_bytes,
                  "%s: bytes_out %r, chosen %s bytes %r, its tensors %d bytes"
                  % (name, rec.get("bytes_out"), chosen, cands[chosen].get("bytes"), out_bytes))
        try:
            deq = stored(st, name, rec, e)
        except Exception as ex:           # a malformed layout is the finding
            rep.check("format", False, "%s: cannot dequantize: %s" % (name, ex))
            return
        x = self.inp.floats(name).reshape(e.shape[0], -1)
        signal, noise, dsq = sums(x, deq)
        d_signal, d_noise = deviations(signal, noise, dsq, e.numel)
        tot["signal"] += signal
        tot["noise"] += noise
        tot["dsig"] += d_signal
        tot["dnoise"] += d_noise
        tot["numel"] += e.numel
        got, gc = rec.get("sqnr_db"), cands[chosen].get("sqnr_db")
        if noise == 0:
            rep.check("sqnr", got is None, "%s: no noise, yet sqnr_db %r" % (name, got))
        else:
            want, dev = sqnr_dev(signal, noise, d_signal, d_noise)
            rep.within("sqnr", abs(got - want) if is_num(got) else math.inf, dev,
                       "%s: sqnr_db %r, the file gives %.9f" % (name, got, want), "record")
        # the chosen candidate's figure is the stored values' SQNR on the measured rows
        ev = self.stride(x.shape[0])
        xs, ds = x[::ev], deq.reshape(x.shape)[::ev]
        tot["measured"] += self.measured(name, cand)[1]
        ms_, mn_, md_ = sums(xs, ds)
        if mn_ == 0:
            rep.check("sqnr", gc is None, "%s: no noise on the measured rows, yet candidate sqnr_db %r" % (name, gc))
        else:
            want_m, dev_m = sqnr_dev(ms_, mn_, *deviations(ms_, mn_, md_, xs.size))
            rep.within("sqnr", abs(gc - want_m) if is_num(gc) else math.inf, dev_m + CAND_PRINT * 1.000001,
                       "%s: chosen %s sqnr_db %r, the file gives %.6f on the measured rows" % (name, chosen, gc, want_m),
                       "chosen")
        mse = rec.get("mse")
        rep.check("sqnr", is_num(mse) and abs(mse - noise / e.numel) <= (d_noise / e.numel +
                  abs(mse) * PRINT_REL + 1e-300), "%s: mse %r, the file gives %.9g" % (name, mse, noise / e.numel))
        mae = float(np.max(np.abs(x.astype(np.float64) - deq.astype(np.float64))))
        rep.check("sqnr", is_num(rec.get("max_abs_err")) and abs(rec["max_abs_err"] - mae) <= mae * 2 * U32,
                  "%s: max_abs_err %r, the file gives %.9g" % (name, rec.get("max_abs_err"), mae))
        # the reference quantizer: the stored values, and every candidate's figure
        rdeq = self.ref(name, cand)[0]
        bad = int(np.sum(rdeq.view(np.uint32) != deq.astype(np.float32).view(np.uint32)))
        rep.check("reference", bad == 0, "%s: %d of %d stored values differ from the %s reference "
                  "quantizer's" % (name, bad, deq.size, chosen))
        for c in fits:
            s2, n2, d2, _ = self.measured(name, c)
            v = cands.get(c.name, {}).get("sqnr_db")
            if n2 == 0:
                rep.check("reference", v is None, "%s: %s has no error, yet sqnr_db %r" % (name, c.name, v))
                continue
            want, dev = sqnr_dev(s2, n2, *deviations(s2, n2, d2, e.numel))  # scaled: the same SQNR
            rep.within("reference", abs(v - want) if is_num(v) else math.inf, dev + CAND_PRINT * 1.000001,
                       "%s: candidate %s sqnr_db %r, its reference quantization gives %.6f"
                       % (name, c.name, v, want), "candidates")


def cmd_check(args):
    chk = Checker(args.input, args.candidates)
    failed = 0
    for path, target in args.out:
        rep = Report(os.path.basename(path))
        try:
            res = chk.run(path, target, rep)
        except Exception as ex:            # an unreadable file is a failure of the format checks
            rep.check("format", False, "%s: %s" % (type(ex).__name__, ex))
            res = None
        for c in CATEGORIES:
            print("result %s %s %d %d" % (os.path.basename(path), c, *rep.counts[c]))
        if res:
            print("summary %s target %d bytes %d sqnr %s chosen %s; error above the exact optimum %s "
                  "(optimum %s); SQNR deviations (largest, in %% of the bound): %s" % (
                os.path.basename(path), res["target"], res["bytes"],
                "none" if res["sqnr"] is None else "%.4f" % res["sqnr"],
                ",".join("%s=%d" % kv for kv in res["counts"].items()),
                "none" if res["gap"] is None else "%.4g%%" % (100 * res["gap"]), res["opt_desc"],
                " ".join("%s %.2g" % (k, 100 * v) for k, v in sorted(rep.worst.items()))))
            if res["gap"] is not None:
                print("optimum %s %.6g %s %s" % (os.path.basename(path), 100 * res["gap"],
                                                 "none" if res["sqnr"] is None else "%.4f" % res["sqnr"],
                                                 "none" if res["opt_sqnr"] is None else "%.4f" % res["opt_sqnr"]))
        failed += rep.failed()
    return 1 if failed else 0


# ---------------------------------------------------------------- self-test

def cmd_self_test(args):
    """Damage copies of a good output and check that each damage is caught where it belongs."""
    chk = Checker(args.input, args.candidates)
    st = SafeTensors(args.output)
    tensors = {n: (e.dtype, e.shape, st.raw(n)) for n, e in st.entries.items()}
    meta = dict(st.metadata)
    layers = strict_json(meta["layers"])
    fails = []

    def run_on(t, m, target=None):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "out.safetensors")
            write_safetensors(p, t, m)
            rep = Report("self-test")
            rep.quiet = True
            chk.run(p, target or args.target, rep)
            return rep

    def expect(what, cats, t=None, m=None, target=None):
        rep = run_on(t or tensors, m or meta, target)
        caught = [c for c in CATEGORIES if rep.failed(c)]
        ok = all(c in caught for c in cats) if cats else not caught
        print("%s self-test: %s: %s" % ("ok" if ok else "FAIL", what,
                                         "caught in %s" % ", ".join(caught) if caught else "passes"))
        if not ok:
            fails.append(what)

    def with_layers(edit):
        recs = json.loads(json.dumps(layers))
        edit(recs)
        m = dict(meta)
        m["layers"] = json.dumps(recs)
        return m

    def flipped(name, byte, xor):
        t = dict(tensors)
        d, s, b = t[name]
        b = bytearray(b)
        b[byte] ^= xor
        t[name] = (d, s, bytes(b))
        return t

    q = [n for n, r in layers.items() if r.get("action") == "quantized"]
    by = {}
    for n in q:
        by.setdefault(layers[n]["scheme"], []).append(n)
    expect("the output as written", [])
    for scheme, names in sorted(by.items()):
        # small damage (one code a step off, the lowest mantissa bit) only the exact comparison with
        # the reference quantizer must see; a large one (a code 64 steps off, a scale or value
        # doubled) the SQNR checks must see too
        n = names[0]
        p = n[:-len("weight")]
        if scheme in PACK_SCHEMES:
            expect("%s: a packed code one step off" % n, ["reference"], flipped(p + "weight_packed", 1, 0x10))
            expect("%s: a packed code 4 steps off" % n, ["sqnr", "reference"], flipped(p + "weight_packed", 1, 0x40))
            expect("%s: a scale doubled or halved" % n, ["sqnr", "reference"],
                   flipped(p + "weight_scale", *EXP_LSB[tensors[p + "weight_scale"][0]]))
        elif scheme in CAST:
            expect("%s: a mantissa's last bit flipped" % n, ["reference"], flipped(n, 0, 0x01))
            expect("%s: a value doubled or halved" % n, ["sqnr", "reference"], flipped(n, *EXP_LSB[tensors[n][0]]))
        else:
            expect("%s: a code one step off" % n, ["reference"], flipped(n, 3, 0x01))
            expect("%s: a code 64 steps off" % n, ["sqnr", "reference"], flipped(n, 3, 0x40))
            expect("%s: a scale doubled or halved" % n, ["sqnr", "reference"],
                   flipped(p + "weight_scale", *EXP_LSB["F32"]))
    n = next(n for n in q if is_num(layers[n].get("sqnr_db")))
    ch = layers[n]["chosen"]
    other = next(c for c in layers[n]["candidates"] if c != ch)

    def shifted(rec, key, by):
        rec[key] = round((rec[key] or 0) + by, 9)

    expect("%s: sqnr_db + 0.001 dB" % n, ["sqnr"],
           m=with_layers(lambda r: shifted(r[n], "sqnr_db", 0.001)))
    expect("%s: chosen candidate's sqnr_db + 0.001 dB" % n, ["sqnr", "reference"],
           m=with_layers(lambda r: shifted(r[n]["candidates"][ch], "sqnr_db", 0.001)))
    expect("%s: another candidate's sqnr_db - 0.001 dB" % n, ["reference"],
           m=with_layers(lambda r: shifted(r[n]["candidates"][other], "sqnr_db", -0.001)))
    expect("%s: chosen renamed to %s" % (n, other), ["chosen"],
           m=with_layers(lambda r: r[n].__setitem__("chosen", other)))
    expect("%s: chosen candidate's bytes + 4" % n, ["chosen"],
           m=with_layers(lambda r: shifted(r[n]["candidates"][ch], "bytes", 4)))
    expect("%s: bytes_out - 1" % n, ["chosen"], m=with_layers(lambda r: shifted(r[n], "bytes_out", -1)))
    m2 = dict(meta)
    m2["sqnr_db"] = "%.9g" % (float(meta["sqnr_db"]) + 0.001)
    expect("metadata sqnr_db + 0.001 dB", ["sqnr"], m=m2)
    mp = strict_json(meta["mixed_precision"])
    for key, val in (("error", mp["error"] * 1.001), ("bytes", mp["bytes"] - 8),
                     ("lower_bound", mp["error"] * 2), ("items", mp["items"] + 1)):
        m3 = dict(meta)
        m3["mixed_precision"] = json.dumps(dict(mp, **{key: val}))
        expect("mixed_precision %s changed" % key, ["budget"], m=m3)
    data = sum(len(b) for _, _, b in tensors.values())
    expect("a target 1 byte below the data", ["budget"], target="size:%d" % (data - 1))
    kept = next(n for n, r in layers.items() if r.get("action") == "kept")
    expect("kept %s: a byte flipped" % kept, ["format"], flipped(kept, 0, 0x01))
    # k_proj re-encoded in another candidate, its record made consistent with its new bytes: the
    # per-layer checks pass, the fused check must not (the aggregate and the summary change too)
    k = next((n for n in q if n.endswith("k_proj.weight")), None)
    if k:
        e = chk.inp.entry(k)
        ch = layers[k]["chosen"]
        alt = next(c for c in chk.cands if c.name != ch and c.fits(e)
                   and c.scheme in ("int8", "bf16") + tuple(PACK_SCHEMES))
        t, p = dict(tensors), k[:-len("weight")]
        for s in Cand(ch).layout(e):
            del t[p + s]
        x = chk.inp.floats(k).reshape(e.shape[0], -1)
        if alt.scheme == "bf16":
            t[k] = ("BF16", e.shape, bf16_round_bits(x).tobytes())
        elif alt.scheme == "int8":
            sc, zp = int_params(x, "int8")
            codes, _ = torch_codes(x, sc, zp, "int8", True)
            t[k] = ("I8", e.shape, codes.astype("i1").tobytes())
            t[p + "weight_scale"] = ("F32", [e.shape[0], 1], sc.astype("<f4").tobytes())
        else:
            bits, sym = PACK_SCHEMES[alt.scheme]
            qq, sc, zp = ref_pack_quantize(x, bits, sym, alt.group_of(x.shape[1]), e.dtype)
            words = pack_int32(qq, bits).astype("<i4")
            t[p + "weight_packed"] = ("I32", list(words.shape), words.tobytes())
            sb = sc.astype("<f4").tobytes() if e.dtype == "F32" else bf16_round_bits(sc).tobytes()
            t[p + "weight_scale"] = (e.dtype, list(sc.shape), sb)
            t[p + "weight_shape"] = ("I64", [2], np.array(e.shape, "<i8").tobytes())
        deq, s2, n2, _ = chk.ref(k, alt)

        def edit(r):
            r[k].update(scheme=alt.scheme, chosen=alt.name, bytes_out=alt.nbytes(e),
                        sqnr_db=float("%.9g" % (10 * math.log10(s2 / n2))) if n2 else None,
                        mse=float("%.9g" % (n2 / e.numel)),
                        max_abs_err=float("%.9g" % np.max(np.abs(x.astype(np.float64) - deq))))
            r[k].pop("group_size", None)
            if isinstance(alt.group, int):
                r[k]["group_size"] = alt.group
        m4 = with_layers(edit)
        m4["quantized_size_bytes"] = "%d" % sum(len(b) for _, _, b in t.values())
        expect("%s stored as %s, its q/v siblings as %s" % (k, alt.name, ch), ["fused"], t, m4)
    print("mixed_check self-test: %s" % ("%d FAILED: %s" % (len(fails), "; ".join(fails)) if fails
                                         else "all damages caught"))
    return 1 if fails else 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("check")
    p.add_argument("input")
    p.add_argument("--candidates", default=DEFAULT_CANDIDATES)
    p.add_argument("--out", nargs=2, action="append", required=True, metavar=("OUTPUT", "TARGET"))
    p = sub.add_parser("self-test")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("target")
    p.add_argument("--candidates", default=DEFAULT_CANDIDATES)
    args = ap.parse_args(argv)
    return {"check": cmd_check, "self-test": cmd_self_test}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
