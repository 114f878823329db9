#!/usr/bin/python3
"""Checks an mq-dist `--method gptq` output against the numpy reference scripts/gptq_ref.py.

    gptq_check.py OUT.safetensors MODEL.safetensors CALIB.h5 --scheme int4 [--group 128]
                  [--actorder static|none] [--gptq-scales original|updated] [--clip minmax|mse]
                  [--damp 0.01] [--block-size 128] [--calib-samples N] [--exclude REGEX]...
                  [--min-gain DB LAYER]...
    gptq_check.py --self-check
    gptq_check.py --diff A.safetensors B.safetensors     (how two outputs differ, for the tests)

OUT is decoded with ct_check.py's compressed-tensors reader (an independent decoder written from
LOWBIT.md A.3); the reference reruns GPTQ on the same W (the float32 values of MODEL's weight) and
X (the first N rows of CALIB's "<layer>/inputs").  Per quantized layer:

 (1) codes equal to the reference's in at least 99 % of positions (all of them after a
     fallback, which is RTN of the stored weights: no sums), the first differing code of
     each row (in sweep order) by exactly 1 and at a rounding boundary of the reference's sweep
     (w / s within 1e-2 of a half-integer); scales (their stored bits) and zero points equal,
     except, with --gptq-scales updated, in a group of a row that already has a differing code
     before the group (only such a code can change the W the group's parameters are computed
     from);
 (2) the output-space error ||Y - Yhat||^2 of OUT at most 1.01 x the reference's;
 (3) the layer record (mq-dist's keys, README "## GPTQ"): "method" "gptq" (always, also after a
     fallback), "gptq_fallback" a JSON bool, true exactly where the reference's Cholesky failed
     at every dampening, "gptq_loss" within 1 % of the reference's loss (after a fallback
     1/2 sum (w - q)^2 of RTN), "damp" the fraction the reference used (the last tried after a
     fallback) and "damp_raised" the times it was raised, "output_sqnr_db_w" and
     "output_sqnr_db_w_rtn" within 0.01 dB of their float64 recomputation from OUT's own decoded
     weights and from RTN of W (with the same --clip), "sqnr_db" within 1e-3 dB, "calib_rows" N;
     and none of the keys mq-dist does not write ("output_sqnr_db", "output_sqnr_db_rtn",
     "gptq_seconds": times are in the run report only);
 and dead input columns (all-zero inputs) decode to 0.  Besides: the quantized set is the default
 selection, the tensor names, dtypes and shapes of the pack-quantized layout, untouched tensors
 byte for byte, the aggregate "sqnr_db".  --min-gain DB LAYER: OUT's output SQNR on LAYER (a
 weight or module name) at least DB above RTN's.

Prints one line per check ("ok: ..." or "FAIL: ..."), the largest difference between a record's
output SQNR and its recomputation, and "gptq_check: N checks passed, M failed"; exits 1 on a
failed check, 2 on an unreadable file.
"""

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.environ.get("MQ_SCRIPTS") or os.path.join(HERE, "..", "..", "scripts"))
import ct_check  # noqa: E402
import gptq_ref  # noqa: E402

CODE_AGREEMENT = 0.99       # (1)
ERROR_RATIO = 1.01          # (2)
LOSS_REL = 0.01             # (3)
# (3), output space.  mq-dist computes its sums as x H x^T from its float32 H (syrk), the
# checker from the float32 X in float64 (X^T X in float64): the specification's tolerance.
SQNR_DB_TOL = 0.01
ABSENT_KEYS = ("output_sqnr_db", "output_sqnr_db_rtn", "gptq_seconds")
WEIGHT_SQNR_TOL = 1e-3      # "sqnr_db", as ct_check.py
SCALE_REL = 1e-4            # --gptq-scales updated: a scale of a group no differing code precedes
# --gptq-scales updated with --clip mse: the search runs on the sweep's W, which mq-dist's float32
# sweep has within a few 1e-6 (relative) of the reference's.  Where two steps' sum |e|^2.4 are
# that close (seen: steps p 0.93 and 0.92 of a group 5.5e-6 apart), mq-dist may take the other:
# the search's rounding boundary.  Allowed: a step of the search on the reference's W whose E is
# within MSE_TIE_REL of the reference's choice (neighbouring steps otherwise differ by ~1e-2).
MSE_TIE_REL = 1e-4
# (1) the first differing code of a row: the reference's w / s there within this distance of a
# half-integer (a rounding boundary).  mq-dist's float32 factor and sweep (float32 U, block
# updates by sgemm) carry w close to the reference's float64 one, in units of the scale: 3.5e-5
# at most over every variant of test_gptq.sh (often 0 or 1 ulp), 4.8e-3 on an ill-conditioned
# H (inputs 30 + N(0, 1), in 512, int4); a code off by 1 for another reason lands anywhere in
# [0, 0.5], so 1e-2 still tells them apart.
BOUNDARY_TOL = 1e-2
DAMP_TOL = 1e-9             # the damp is one decimal number; JSON printing may cut digits


class Report:
    def __init__(self, quiet=False):
        self.passed = self.failed = 0
        self.quiet = quiet

    def check(self, ok, msg):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        if not self.quiet or not ok:
            print(("ok: " if ok else "FAIL: ") + msg)
        return bool(ok)


def number(v):
    """A record value as a float (numbers, or strings that hold one), else None."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def decode(st, prefix, bits, symmetric, out, n):
    """codes [out, n], scales [out, ng] (float32 values), zero points [out, ng] of a pack-quantized
    layer, with ct_check's unpacking."""
    codes = ct_check.unpack_int32(st.array(prefix + "weight_packed"), bits, n)
    s = st.floats(prefix + "weight_scale")
    zp = np.zeros(s.shape, np.int64)
    if not symmetric:
        zp = ct_check.unpack_rows(st.array(prefix + "weight_zero_point"), bits, out)
    return codes, s, zp


def shape_check(rep, st, name, dtype, shape):
    t = st.entries.get(name)
    got = "missing" if t is None else "%s %s" % (t.dtype, t.shape)
    return rep.check(t is not None and (t.dtype, t.shape) == (dtype, shape),
                     "%s: %s (expected %s %s)" % (name, got, dtype, shape))


def fmt_db(v):
    return "None" if v is None else "%.4f" % v


_REFS = {}


def reference(a, name, W, X, gs, dtype):
    """gptq_ref.gptq of the layer, remembered for the self-check (which checks the same model
    many times over)."""
    st = os.stat(a.model)
    key = (os.path.abspath(a.model), st.st_mtime_ns, st.st_size, os.path.abspath(a.calib),
           a.calib_samples, name, a.scheme, gs, a.actorder, a.scales, a.damp, a.block_size, dtype,
           a.clip, gptq_ref.hinv_upper)
    if key not in _REFS:
        H = gptq_ref.hessian(X)
        _REFS[key] = gptq_ref.gptq(W, H, a.scheme, gs, a.actorder, a.scales, a.damp,
                                   a.block_size, dtype, clip=a.clip)
        _REFS[key].h_finite = bool(np.all(np.isfinite(H)))
    return _REFS[key]


def check_layer(rep, a, inp, st, name, rec, totals, gains, worst, out_totals):
    bits, sym = ct_check.PACK_SCHEMES[a.scheme]
    prefix = name[:-len("weight")]
    e = inp.entry(name)
    W = inp.floats(name).reshape(e.shape[0], -1)
    out, n = W.shape
    gs = gptq_ref.group_size(a.group, n)
    ng = n // gs
    ok = shape_check(rep, st, prefix + "weight_packed", "I32", [out, -(-n * bits // 32)])
    ok = shape_check(rep, st, prefix + "weight_scale", e.dtype, [out, ng]) and ok
    ok = shape_check(rep, st, prefix + "weight_shape", "I64", [2]) and ok
    if not sym:
        ok = shape_check(rep, st, prefix + "weight_zero_point", "I32",
                                  [-(-out * bits // 32), ng]) and ok
    if not ok:
        return
    rep.check([int(v) for v in st.array(prefix + "weight_shape")] == [out, n],
              "%sweight_shape holds [%d, %d]" % (prefix, out, n))
    codes, s_got, zp_got = decode(st, prefix, bits, sym, out, n)
    deq = ct_check.dequant_groups(codes, s_got, zp_got, gs)
    rep.check(np.array_equal(deq, ct_check.decompress_pack(st, prefix, bits)),
              "%s: ct_check.decompress_pack gives the same weights" % prefix)

    layer = name[:-len(".weight")]
    X = gptq_ref.read_calib(a.calib, layer, a.calib_samples)
    ref = reference(a, name, W, X, gs, e.dtype)
    q_rtn, s_rtn, zp_rtn = gptq_ref.rtn(W, a.scheme, gs, e.dtype, a.clip)
    deq_rtn = ct_check.dequant_groups(q_rtn, s_rtn, zp_rtn, gs)
    deq_ref = ref.dequant()

    # (3a) the method: "gptq" also after a fallback, which gptq_fallback (a JSON bool) says
    method = rec.get("method")
    fb = rec.get("gptq_fallback")
    rep.check(method == "gptq" and isinstance(fb, bool) and fb == bool(ref.fallback),
              "%s: method %r (want \"gptq\"), gptq_fallback %r (want %s%s)"
              % (name, method, fb, "true" if ref.fallback else "false",
                 ": the reference " + ref.fallback if ref.fallback else ""))
    extra = [k for k in ABSENT_KEYS if k in rec]
    rep.check(not extra, "%s: the record has none of %s (has %s)" % (name, ", ".join(ABSENT_KEYS),
                                                                   extra))

    # (1) codes.  The C side sums in another order (H, the block products, float32 or float64),
    # so a value may sit on the other side of a rounding boundary: a code off by exactly 1,
    # rarely.  Such a flip changes the error fed back to the later columns of its row (by about
    # s/d U[j, k]), so a row's later codes may then differ too, and by more than 1 (seen with a
    # float32 sweep: ±2 after a first ±1).  The first differing code of each row in sweep order
    # must differ by exactly 1; later ones are only counted (--strict: every one by exactly 1).
    diff = codes - ref.codes
    nd = int(np.count_nonzero(diff))
    agree = 1 - nd / diff.size
    where = ""
    if nd:
        r, c = (int(i) for i in np.argwhere(diff)[0])
        where = "; first at [%d, %d]: %d, reference %d" % (r, c, codes[r, c], ref.codes[r, c])
    rep.check(agree >= CODE_AGREEMENT, "%s: codes equal to the reference's in %.4f%% of %d "
              "positions (>= %g%%)%s" % (name, 100 * agree, diff.size, 100 * CODE_AGREEMENT, where))
    if ref.fallback:
        # round to nearest of the stored values: no sum whose order could differ
        rep.check(nd == 0, "%s: the fallback's codes are RTN's of the original weights, every one "
                  "(%d differ%s)" % (name, nd, where))
    sweep = diff[:, ref.perm]                      # columns in the order the sweep took them
    rows = np.flatnonzero(sweep.any(axis=1))
    first_pos = np.argmax(sweep != 0, axis=1)      # per row: sweep position of the first diff
    first = sweep[rows, first_pos[rows]]
    big_first = rows[np.abs(first) != 1]
    later_big = int((np.abs(diff) > 1).sum()) - len(big_first)
    if a.strict:
        big = np.argwhere(np.abs(diff) > 1)
        rep.check(not big.size, "%s: every differing code differs by exactly 1 (--strict; %d by "
                  "more%s)" % (name, len(big), "; first at %s: %d, reference %d" % (
                      big[0].tolist(), codes[tuple(big[0])], ref.codes[tuple(big[0])])
                      if big.size else ""))
    else:
        msg = ("%s: the first differing code of each of the %d rows with one differs by exactly 1 "
               "(%d later codes of those rows differ by more)" % (name, len(rows), later_big))
        if len(big_first):
            r = int(big_first[0])
            c = int(ref.perm[first_pos[r]])
            msg += "; %d rows do not, first [%d, %d]: %d, reference %d" % (
                len(big_first), r, c, codes[r, c], ref.codes[r, c])
        rep.check(not len(big_first), msg)

    # (1) scales and zero points: from the original W (--gptq-scales original) they must be equal to
    # the bit.  --gptq-scales updated computes them from the W of the sweep, so they may differ in a
    # group of a row that already has a differing code before the group, and otherwise by the
    # rounding of that W only: the scale relatively by SCALE_REL at most, the zero point by 1
    # (where the group's codes differ too).
    s_diff = ct_check.stored_bits(s_got, e.dtype) != ct_check.stored_bits(ref.scales, e.dtype)
    z_diff = zp_got != ref.zps
    bad = s_diff | z_diff
    allowed = after_code = np.zeros_like(bad)
    if a.scales == "updated" and not ref.fallback:
        # sweep order = column order (actorder none); a code difference changes later W only in
        # its own row
        first_col = np.where(diff.any(axis=1), np.argmax(diff != 0, axis=1), n)
        after_code = first_col[:, None] < (np.arange(ng) * gs)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            # a zero point at the other side of a rounding boundary shifts the group's codes
            # by 1 (same values): allowed only where the group's codes differ
            in_group = (diff != 0).reshape(out, ng, gs).any(axis=2)
            close = (np.abs(s_got.astype(np.float64) - ref.scales) <= SCALE_REL * ref.scales) \
                & ((zp_got == ref.zps) | ((np.abs(zp_got - ref.zps) == 1) & in_group))
        allowed = after_code | close
    ties = np.zeros_like(bad)
    if a.scales == "updated" and a.clip == "mse" and not ref.fallback:
        for r, g in np.argwhere(bad & ~allowed):
            cs, cz, ce, _ = gptq_ref.mse_steps(ref.sources[r:r + 1, g * gs:(g + 1) * gs],
                                                 a.scheme, gs, e.dtype)
            cs, cz, ce = cs[:, 0, 0], cz[:, 0, 0], ce[:, 0, 0]
            _, _, qmin, qmax = gptq_ref.scheme_bits(a.scheme)
            G = ref.sources[r, g * gs:(g + 1) * gs].reshape(1, 1, gs)
            e_ref, _ = gptq_ref._group_errors(G, ref.scales[r:r + 1, g:g + 1],
                                              ref.zps[r:r + 1, g:g + 1], qmin, qmax, 2.4)
            near = ((np.abs(cs.astype(np.float64) - s_got[r, g]) <= SCALE_REL * cs)
                    & ((cz == zp_got[r, g]) | ((np.abs(cz - zp_got[r, g]) == 1) & in_group[r, g]))
                    & (ce <= e_ref[0, 0] * (1 + MSE_TIE_REL)))
            ties[r, g] = near.any()
        allowed = allowed | ties
    unexplained = np.argwhere(bad & ~allowed)
    msg = "%s: scales (stored bits) and zero points equal to the reference's" % name
    if a.scales == "updated":
        msg += " (%d groups differ after a differing code, %d others by rounding only" % (
            int((bad & after_code).sum()), int((bad & ~after_code & allowed & ~ties).sum()))
        msg += ", %d at a near-tie of the MSE search)" % int(ties.sum()) if a.clip == "mse" else ")"
    if unexplained.size:
        r, g = (int(i) for i in unexplained[0])
        msg += "; %d groups differ, first [%d, %d]: scale %.9g zp %d, reference %.9g zp %d" % (
            len(unexplained), r, g, s_got[r, g], zp_got[r, g], ref.scales[r, g], ref.zps[r, g])
    rep.check(not unexplained.size, msg)

    # (1) the first differing code of each row: where the reference's value sat at a rounding
    # boundary (float summation order flipped it), unless the group's parameters themselves are
    # another step of the MSE search (a near-tie, above)
    if len(rows) and ref.ratio is not None:
        cols = ref.perm[first_pos[rows]]
        v = ref.ratio[rows, cols].astype(np.float64)
        dist = np.abs(np.abs(v - np.floor(v)) - 0.5)
        dist[ties[rows, cols // gs]] = 0
        k = int(np.argmax(dist))
        rep.check(dist[k] <= BOUNDARY_TOL,
                  "%s: the first differing code of each row is at a rounding boundary of the "
                  "reference (w / s at most %.3g from a half-integer, <= %g; [%d, %d]: w / s %.9g)"
                  % (name, dist[k], BOUNDARY_TOL, rows[k], cols[k], v[k]))

    # dead columns decode to 0
    dead = ~np.any(X != 0, axis=0)
    if dead.any() and not ref.fallback:
        nz = int(np.count_nonzero(deq[:, dead]))
        rep.check(nz == 0, "%s: the %d dead input columns decode to 0 (%d values do not)"
                  % (name, int(dead.sum()), nz))

    # (2) output-space error against the reference's
    G = gptq_ref.gram(X)
    sig, e_got = gptq_ref.output_errors(X, W, deq, G)
    _, e_ref = gptq_ref.output_errors(X, W, deq_ref, G)
    rel = e_got / sig if sig else math.nan
    rep.check(e_got <= ERROR_RATIO * e_ref, "%s: output error ||Y - Yhat||^2 / ||Y||^2 %.6g, "
              "reference %.6g (ratio %.5f <= %g)" % (name, rel, e_ref / sig if sig else math.nan,
                                                     e_got / e_ref if e_ref else math.inf,
                                                     ERROR_RATIO))

    # (3) the record's figures
    db_got = gptq_ref.output_sqnr_db(X, W, deq, G)
    db_rtn = gptq_ref.output_sqnr_db(X, W, deq_rtn, G)
    gains[name] = (db_got, db_rtn)
    out_totals[0] += sig
    out_totals[1] += e_got
    out_totals[2] = out_totals[2] and ref.h_finite
    keys = [("output_sqnr_db_w", db_got, "OUT's decoded weights"),
            ("output_sqnr_db_w_rtn", db_rtn, "RTN of W")]
    for key, want, what in keys:
        got = number(rec.get(key))
        if not ref.h_finite:
            # where X^T X overflows float32, mq-dist has no H to take the sums from: it computes
            # this (fallen back, round-to-nearest) layer's figures from the calibration rows
            rep.check(got is not None and want is not None and abs(got - want) <= SQNR_DB_TOL,
                      "%s: %s %r (X^T X overflows float32: from the rows), recomputed %s (within %g dB)"
                      % (name, key, rec.get(key), fmt_db(want), SQNR_DB_TOL))
            continue
        if want is None:
            rep.check(rec.get(key) is None, "%s: %s %r, expected null (no noise)"
                      % (name, key, rec.get(key)))
            continue
        if got is not None and abs(got - want) > worst[0]:
            worst[:] = [abs(got - want), name, key, got, want]
        rep.check(got is not None and abs(got - want) <= SQNR_DB_TOL,
                  "%s: %s %s, recomputed from %s %.4f (%+.2g dB, within %g dB)"
                  % (name, key, rec.get(key), what, want,
                     (got - want) if got is not None else math.nan, SQNR_DB_TOL))
    loss = number(rec.get("gptq_loss"))
    rep.check(loss is not None and abs(loss - ref.loss) <= LOSS_REL * ref.loss,
              "%s: gptq_loss %r, reference %.6g%s (within %g%%)"
              % (name, rec.get("gptq_loss"), ref.loss,
                 " (1/2 sum (w - q)^2 of RTN: a fallback)" if ref.fallback else "", 100 * LOSS_REL))
    damp = number(rec.get("damp"))
    rep.check(damp is not None and abs(damp - ref.damp) <= DAMP_TOL,
              "%s: damp %r, the reference %s %.6g" % (name, rec.get("damp"), "tried last"
                                                      if ref.fallback else "used", ref.damp))
    raised = number(rec.get("damp_raised"))
    rep.check(raised is not None and raised == ref.raised,
              "%s: damp_raised %r, the reference raised it %d times"
              % (name, rec.get("damp_raised"), ref.raised))
    w_sig, w_noise = ct_check.sqnr_db(W, deq)
    totals[0] += w_sig
    totals[1] += w_noise
    want = ct_check.db(w_sig, w_noise)
    got = number(rec.get("sqnr_db"))
    rep.check((want is None and rec.get("sqnr_db") is None) or
              (want is not None and got is not None and abs(got - want) <= WEIGHT_SQNR_TOL),
              "%s: sqnr_db %r, recomputed %s (within %g dB)" % (name, rec.get("sqnr_db"),
                                                               fmt_db(want), WEIGHT_SQNR_TOL))
    rep.check(rec.get("calib_rows") == X.shape[0], "%s: calib_rows %r = the %d rows used"
              % (name, rec.get("calib_rows"), X.shape[0]))
    if not a.quiet:
        print("    %s: loss %.6g (reference %.6g), damp %s, output SQNR %s dB, reference %s, "
              "RTN %s; codes %d differ" % (name, number(rec.get("gptq_loss")) or math.nan,
                                           ref.loss if ref.loss is not None else math.nan,
                                           rec.get("damp"), fmt_db(db_got),
                                           fmt_db(gptq_ref.output_sqnr_db(X, W, deq_ref, G)),
                                           fmt_db(db_rtn), nd))


def run(a):
    rep = Report(a.quiet)
    try:
        inp = ct_check.Model(a.model)
        st = ct_check.Model(a.output)
    except (ct_check.FormatError, OSError, KeyError, ValueError) as e:
        print("gptq_check: %s" % e)
        return None
    meta = st.metadata
    rep.check(meta.get("scheme") == a.scheme, "metadata scheme %r is %r"
              % (meta.get("scheme"), a.scheme))
    try:
        layers = json.loads(meta.get("layers", "{}"))
    except json.JSONDecodeError as e:
        rep.check(False, "metadata layers is not JSON: %s" % e)
        layers = {}
    want_q = ct_check.expected_quantized(inp, a.scheme, list(ct_check.DEFAULT_EXCLUDES) + a.exclude)
    got_q = sorted(k for k, r in layers.items() if isinstance(r, dict) and r.get("action") == "quantized")
    rep.check(got_q == want_q, "the quantized layers %s are the default selection %s"
              % (got_q, want_q))
    expected = set()
    for name in inp.files:
        if name in want_q:
            expected.update(ct_check.layer_names(name[:-len("weight")], a.scheme, False))
        else:
            expected.add(name)
    have = set(st.entries)
    rep.check(have == expected, "the output holds the expected tensors (missing %s, extra %s)"
              % (sorted(expected - have)[:4], sorted(have - expected)[:4]))
    kept = [k for k in sorted(inp.files) if k not in want_q and k in st.entries]
    same = [k for k in kept if (inp.entry(k).dtype, inp.entry(k).shape, inp.raw(k)) ==
            (st.entry(k).dtype, st.entry(k).shape, st.raw(k))]
    rep.check(same == kept, "untouched tensors are byte for byte the input's (differ: %s)"
              % sorted(set(kept) - set(same)))
    totals, gains, worst, out_totals = [0.0, 0.0], {}, [0.0, None], [0.0, 0.0, True]
    for name in want_q:
        if name not in got_q:
            continue
        try:
            check_layer(rep, a, inp, st, name, layers.get(name) or {}, totals, gains, worst,
                        out_totals)
        except (ct_check.FormatError, ValueError, IndexError, KeyError, ArithmeticError) as e:
            rep.check(False, "%s: could not be checked: %s: %s" % (name, type(e).__name__, e))
    # the aggregate output SQNR: sum of the layers' signals over the sum of their noises
    want = ct_check.db(*out_totals[:2])
    got = number(meta.get("output_sqnr_db_w"))
    if want is not None and got_q == want_q:
        rep.check(got is not None and abs(got - want) <= SQNR_DB_TOL,
                  "metadata output_sqnr_db_w %r, recomputed %.6f (within %g dB)"
                  % (meta.get("output_sqnr_db_w"), want, SQNR_DB_TOL))
    want = ct_check.db(*totals)
    if want is not None:
        got = number(meta.get("sqnr_db"))
        rep.check(got is not None and abs(got - want) <= WEIGHT_SQNR_TOL,
                  "metadata sqnr_db %r, recomputed %.6f" % (meta.get("sqnr_db"), want))
    for db_min, layer in a.min_gain:
        key = layer if layer.endswith(".weight") else layer + ".weight"
        g = gains.get(key)
        if g is None or None in g:
            rep.check(False, "--min-gain: %s is not a checked quantized layer with noise" % layer)
            continue
        rep.check(g[0] - g[1] >= float(db_min), "%s: GPTQ's output SQNR %.3f dB beats RTN's %.3f "
                  "dB by %.3f dB (>= %s)" % (key, g[0], g[1], g[0] - g[1], db_min))
    if worst[1] is not None:
        print("gptq_check: largest |output SQNR - float64 recomputation|: %.3g dB (%s %s: %.6f vs "
              "%.6f)" % tuple(worst))
    return rep


# ---------------------------------------------------------------- --diff

def cmd_diff(pa, pb):
    """Prints how two mq-dist outputs differ: tensors, metadata keys, layer record keys."""
    a, b = ct_check.SafeTensors(pa), ct_check.SafeTensors(pb)
    lines = []
    for n in sorted(set(a.entries) | set(b.entries)):
        if n not in a.entries or n not in b.entries:
            lines.append("tensor %s only in %s" % (n, pa if n in a.entries else pb))
        elif (a.entries[n].dtype, a.entries[n].shape, a.raw(n)) != \
                (b.entries[n].dtype, b.entries[n].shape, b.raw(n)):
            lines.append("tensor %s differs" % n)
    for k in sorted(set(a.metadata) | set(b.metadata)):
        va, vb = a.metadata.get(k), b.metadata.get(k)
        if va == vb:
            continue
        if k == "layers" and va and vb:
            la, lb = json.loads(va), json.loads(vb)
            for name in sorted(set(la) | set(lb)):
                ra, rb = la.get(name) or {}, lb.get(name) or {}
                for key in sorted(set(ra) | set(rb)):
                    if ra.get(key) != rb.get(key):
                        lines.append("layers[%s].%s: %r vs %r" % (name, key, ra.get(key), rb.get(key)))
        else:
            lines.append("metadata %s: %.80r vs %.80r" % (k, va, vb))
    if a.header_len != b.header_len:
        lines.append("header lengths %d vs %d" % (a.header_len, b.header_len))
    for line in lines[:20]:
        print(line)
    if not lines:
        print("no difference in tensors or metadata" + (
            "" if open(pa, "rb").read() == open(pb, "rb").read() else " (but the bytes differ)"))
    return 1 if lines else 0


# ---------------------------------------------------------------- --self-check

_SYNTH = {}


def synthetic(inp_path, calib, scheme, group, actorder, scales, damp, block, fdtype, edit=None,
              clip="minmax"):
    """The output a correct mq-dist would write, from gptq_ref run in fdtype (float32: another
    rounding, as a C implementation has), in the layout ct_check reads.  edit(name, dict) may
    change a layer's codes/scales/zps/record before the file is written."""
    bits, sym = ct_check.PACK_SCHEMES[scheme]
    inp = ct_check.Model(inp_path)
    sel = ct_check.expected_quantized(inp, scheme, ct_check.DEFAULT_EXCLUDES)
    tensors, layers, totals, out_tot = {}, {}, [0.0, 0.0], [0.0, 0.0]
    for name in sorted(inp.files):
        e = inp.entry(name)
        if name not in sel:
            tensors[name] = (e.dtype, e.shape, inp.raw(name))
            layers[name] = {"action": "kept"}
            continue
        W = inp.floats(name).reshape(e.shape[0], -1)
        out, n = W.shape
        gs = gptq_ref.group_size(group, n)
        X = gptq_ref.read_calib(calib, name[:-len(".weight")])
        key = (inp_path, calib, name, scheme, gs, actorder, scales, damp, block, e.dtype, fdtype,
               clip, gptq_ref.hinv_upper)
        if key not in _SYNTH:
            _SYNTH[key] = gptq_ref.gptq(W, gptq_ref.hessian(X, fdtype), scheme, gs, actorder,
                                        scales, damp, block, e.dtype, fdtype, clip)
        r = _SYNTH[key]
        if key + ("rtn",) not in _SYNTH:
            q_rtn = ct_check.dequant_groups(*gptq_ref.rtn(W, scheme, gs, e.dtype, clip), gs)
            _SYNTH[key + ("rtn",)] = gptq_ref.output_sqnr_db(X, W, q_rtn)
        rtn_db = _SYNTH[key + ("rtn",)]
        d = {"codes": r.codes.copy(), "scales": r.scales.copy(), "zps": r.zps.copy(),
             "loss": r.loss, "damp": r.damp, "raised": r.raised, "fallback": bool(r.fallback)}
        if edit:
            edit(name, d)
        deq = ct_check.dequant_groups(d["codes"], d["scales"], d["zps"], gs)
        out_db = gptq_ref.output_sqnr_db(X, W, deq, gptq_ref.gram(X))
        p = name[:-len("weight")]
        tensors[p + "weight_packed"] = ("I32", [out, n * bits // 32],
                                        ct_check.pack_int32(d["codes"], bits).astype("<i4").tobytes())
        sb = d["scales"].astype("<f4").tobytes() if e.dtype == "F32" else \
            gptq_ref.to_dtype(d["scales"], e.dtype)[1]
        tensors[p + "weight_scale"] = (e.dtype, [out, n // gs], sb)
        tensors[p + "weight_shape"] = ("I64", [2], np.array([out, n], "<i8").tobytes())
        if not sym:
            tensors[p + "weight_zero_point"] = ("I32", [out * bits // 32, n // gs],
                                                ct_check.pack_rows(d["zps"], bits).astype("<i4").tobytes())
        sig_, noi_ = gptq_ref.output_errors(X, W, deq, gptq_ref.gram(X))
        out_tot[0] += sig_
        out_tot[1] += noi_
        a_, b_ = ct_check.sqnr_db(W, deq)
        totals[0] += a_
        totals[1] += b_
        # the keys and their order as src/pipeline/metadata.c writes them
        rec = {"action": "quantized", "sqnr_db": float("%.9g" % ct_check.db(a_, b_)),
               "group_size": gs, "calibration": "static", "calib_rows": X.shape[0],
               "output_sqnr_db_w": None if out_db is None else float("%.9g" % out_db),
               "method": "gptq",
               "gptq_fallback": d["fallback"], "damp": d["damp"], "damp_raised": d["raised"],
               "gptq_loss": float("%.9g" % d["loss"]),
               "output_sqnr_db_w_rtn": None if rtn_db is None else float("%.9g" % rtn_db)}
        for k, v in d.get("rec", {}).items():      # the self-check's edits of the record
            if isinstance(v, tuple) and v[0] == "add":
                rec[k] = rec[k] + v[1]
            elif v is None:
                rec.pop(k, None)
            else:
                rec[k] = v
        layers[name] = rec
    meta = {"format": "pt", "scheme": scheme, "layers": json.dumps(layers),
            "sqnr_db": "%.9g" % ct_check.db(*totals),
            "output_sqnr_db_w": "%.9g" % ct_check.db(*out_tot)}
    return tensors, meta


def self_check():
    fails = []

    def expect(what, rep, out, must):
        """must None: no check failed; else a FAIL line containing must."""
        if rep is None:
            good = False
        elif must is None:
            good = rep.failed == 0
        else:
            good = rep.failed > 0 and any(line.startswith("FAIL: ") and must in line
                                          for line in out.splitlines())
        print("%s: %s (%s)" % ("ok" if good else "FAIL", what,
                               "no report" if rep is None else "%d passed, %d failed"
                               % (rep.passed, rep.failed)))
        if not good:
            fails.append(what)
            print("    " + out.replace("\n", "\n    "))

    with tempfile.TemporaryDirectory() as tmp:
        gptq_ref.make(tmp)
        model, calib, outp = (os.path.join(tmp, f) for f in
                              ("model.safetensors", "calib.h5", "out.safetensors"))

        def args(**kw):
            d = dict(output=outp, model=model, calib=calib, scheme="int4", group="128",
                     actorder="static", scales="original", damp=0.01, block_size=128,
                     calib_samples=None, exclude=[], min_gain=[], quiet=True, strict=False,
                     clip="minmax")
            d.update(kw)
            return argparse.Namespace(**d)

        def check_file(what, must, a):
            with contextlib.redirect_stdout(io.StringIO()) as buf:
                rep = run(a)
            expect(what, rep, buf.getvalue(), must)

        ovf_dir = os.path.join(tmp, "overflow")
        gptq_ref.make(ovf_dir, overflow=True)
        ovf_model, ovf_calib = (os.path.join(ovf_dir, f) for f in ("model.safetensors", "calib.h5"))

        def case(what, must, fdtype=np.float32, edit=None, gen=None, ovf=False, **kw):
            a = args(**kw)
            g = {k: getattr(a, k) for k in ("scheme", "group", "actorder", "scales", "damp",
                                            "block_size", "clip")}
            g.update(gen or {})
            t, m = synthetic(model if not ovf else ovf_model, calib if not ovf else ovf_calib,
                             g["scheme"], g["group"], g["actorder"], g["scales"], g["damp"],
                             g["block_size"], fdtype, edit, g["clip"])
            ct_check.write_safetensors(outp, t, m)
            if ovf:
                a.model, a.calib = ovf_model, ovf_calib
            check_file(what, must, a)

        # correct files, float64 (the reference itself) and float32 (another rounding) sweeps
        for kw in (dict(), dict(group="32"), dict(group="channel", scheme="int4-asym"),
                   dict(scheme="w8a16", group="64"), dict(scheme="w8a16-asym"),
                   dict(actorder="none", scales="updated", group="32", block_size=64),
                   dict(actorder="none", scheme="int4-asym", scales="updated", group="128",
                        block_size=32),
                   dict(damp=0.0), dict(damp=0.05, block_size=32),
                   dict(clip="mse"), dict(clip="mse", scheme="int4-asym", group="32"),
                   dict(clip="mse", actorder="none", scales="updated", group="64")):
            case("a float64 file passes %s" % kw, None, np.float64, **kw)
            case("a float32 file passes %s" % kw, None, np.float32, **kw)
        q = gptq_ref.CORRELATED
        case("--min-gain 2 on the correlated layer passes", None,
             min_gain=[("2", q[:-len(".weight")])])
        case("--min-gain 100 on the correlated layer fails", "by",
             min_gain=[("100", q)])
        case("--min-gain on a layer that is not there fails", "--min-gain",
             min_gain=[("1", "model.nothing")])

        def on(layer, f):
            return lambda name, d: f(d) if name == layer else None

        def bump(d, k, by):
            flat = d["codes"].reshape(-1)
            idx = np.arange(0, flat.size, max(1, flat.size // k))[:k]
            flat[idx] = np.where(flat[idx] < 0, flat[idx] + by, flat[idx] - by)

        def rec(key, value=None, add=None):
            def f(d):
                r = d.setdefault("rec", {})
                r[key] = value if add is None else ("add", add)
            return f

        case("a code off by 1 away from a rounding boundary fails", "rounding boundary",
             edit=on(q, lambda d: bump(d, 1, 1)))
        case("a code off by 2 fails", "differs by exactly 1",
             edit=on(q, lambda d: bump(d, 1, 2)))
        case("2% of codes off by 1 fail", "in 97.", edit=on(q, lambda d: bump(d, 2700, 1)))
        case("0.1% of codes off by 1 pass (1) but not (2)", "output error",
             edit=on(q, lambda d: bump(d, 131, 1)))
        case("a scale off by one ulp fails", "scales (stored bits)", edit=on(
            q, lambda d: d["scales"].__setitem__((3, 1), np.nextafter(d["scales"][3, 1],
                                                                     np.float32(1)))))
        case("a zero point off by 1 fails", "zero points", scheme="int4-asym",
             edit=on(q, lambda d: d["zps"].__setitem__((0, 0), d["zps"][0, 0] + 1)))
        case("a zero point off by 1 fails with --gptq-scales updated", "zero points",
             scheme="int4-asym", actorder="none", scales="updated",
             edit=on(q, lambda d: d["zps"].__setitem__((0, 0), d["zps"][0, 0] + 1)))
        case("gptq_loss 2% high fails", "gptq_loss",
             edit=on(q, lambda d: d.__setitem__("loss", d["loss"] * 1.02)))
        case("gptq_loss 0.5% high passes", None,
             edit=on(q, lambda d: d.__setitem__("loss", d["loss"] * 1.005)))
        case("damp 0.02 instead of 0.01 fails", "damp", edit=on(q, lambda d: d.__setitem__("damp", 0.02)))
        case("damp 0.01 instead of 0.05 fails", "damp", damp=0.05,
             edit=on(q, lambda d: d.__setitem__("damp", 0.01)))
        case("method rtn fails", "method", edit=on(q, rec("method", "rtn")))
        for key, by in (("output_sqnr_db_w", 0.02), ("output_sqnr_db_w_rtn", -0.02),
                        ("sqnr_db", 0.002)):
            case("%s off by %g dB fails" % (key, by), key, edit=on(q, rec(key, add=by)))
        case("output_sqnr_db_w off by 0.005 dB passes", None,
             edit=on(q, rec("output_sqnr_db_w", add=0.005)))
        case("a missing gptq_loss fails", "gptq_loss", edit=on(q, rec("gptq_loss", None)))
        case("a missing output_sqnr_db_w_rtn fails", "output_sqnr_db_w_rtn",
             edit=on(q, rec("output_sqnr_db_w_rtn", None)))
        case("a missing damp_raised fails", "damp_raised", edit=on(q, rec("damp_raised", None)))
        case("damp_raised 1 where the reference did not raise fails", "damp_raised",
             edit=on(q, rec("damp_raised", 1)))
        case("gptq_fallback true on a layer the reference quantizes fails", "gptq_fallback",
             edit=on(q, rec("gptq_fallback", True)))
        case("gptq_fallback \"false\" (a string) fails", "gptq_fallback",
             edit=on(q, rec("gptq_fallback", "false")))
        case("a missing gptq_fallback fails", "gptq_fallback", edit=on(q, rec("gptq_fallback", None)))
        for key in ABSENT_KEYS:
            case("a record with %s fails" % key, key, edit=on(q, rec(key, 20.0)))
        case("calib_rows 100 fails", "calib_rows", edit=on(q, rec("calib_rows", 100)))
        case("a missing calib_rows fails", "calib_rows", edit=on(q, rec("calib_rows", None)))

        def rtn_codes(layer, scheme, g):
            def f(name, d):
                if name == layer:
                    inp = ct_check.Model(model)
                    W = inp.floats(name).reshape(inp.entry(name).shape[0], -1)
                    d["codes"], d["scales"], d["zps"] = gptq_ref.rtn(W, scheme, g)
            return f
        case("RTN codes in place of GPTQ's fail", "codes equal", edit=rtn_codes(q, "int4", 128))
        case("an actorder none file checked as static fails", "codes equal",
             gen={"actorder": "none"})
        case("an updated-scales file checked as original fails", "scales (stored bits)",
             actorder="none", gen={"scales": "updated"})
        case("a block size 32 file of updated scales checked as 128 fails", "scales",
             actorder="none", scales="updated", group="32", gen={"block_size": 32})
        case("a group size 32 file checked as 64 fails", "weight_scale",
             group="64", gen={"group": "32"})
        case("a damp 0.05 file checked as 0.01 fails", "damp", gen={"damp": 0.05})
        case("--clip mse, updated scales: a scale one search step down fails", "scales",
             clip="mse", actorder="none", scales="updated", group="64",
             edit=on(q, lambda d: d["scales"].__setitem__((3, 1), d["scales"][3, 1] * np.float32(0.99))))
        case("a --clip minmax file checked as mse fails", "scales (stored bits)", clip="mse",
             gen={"clip": "minmax"})
        case("a --clip mse file checked as minmax fails", "scales (stored bits)",
             gen={"clip": "mse"})

        # the fallback of a layer whose float32 X^T X overflows
        case("the overflow fixture passes (one layer falls back)", None, ovf=True)
        case("the overflow fixture passes with int4-asym g32 --clip mse", None, ovf=True,
             scheme="int4-asym", group="32", clip="mse")
        ol = gptq_ref.OVERFLOW_LAYER
        case("the overflow layer with gptq_fallback false fails", "gptq_fallback", ovf=True,
             edit=on(ol, rec("gptq_fallback", False)))
        case("the overflow layer with a finite but wrong output_sqnr_db_w fails",
             "output_sqnr_db_w", ovf=True, edit=on(ol, rec("output_sqnr_db_w", 30.0)))

        def zero_dead(name, d):
            if name == ol:
                d["codes"][:, gptq_ref.OVERFLOW_DEAD] = 0
        case("the overflow layer's fallback with its dead column zeroed fails", "codes", ovf=True,
             edit=zero_dead)

        # the fallback: a reference whose every Cholesky fails (hinv_upper replaced), so that
        # every layer is RTN of its original weights
        real_hinv = gptq_ref.hinv_upper

        def never(H, frac, fdtype=np.float64, raised=None):
            return real_hinv(-np.eye(H.shape[0]), frac, fdtype, raised)
        gptq_ref.hinv_upper = never
        try:
            case("a fallback file passes (RTN of the original W, method gptq, gptq_fallback true, "
                 "damp_raised 98)", None)
            case("a fallback file passes with --clip mse and int4-asym", None, clip="mse",
                 scheme="int4-asym")
            case("a fallback file saying gptq_fallback false fails", "gptq_fallback",
                 edit=on(q, rec("gptq_fallback", False)))
            case("a fallback file with method rtn fails", "method",
                 edit=on(q, rec("method", "rtn")))
            case("a fallback file without gptq_loss fails", "gptq_loss",
                 edit=on(q, rec("gptq_loss", None)))
            case("a fallback file with damp_raised 0 fails", "damp_raised",
                 edit=on(q, rec("damp_raised", 0)))

            def zeroed_rtn(name, d):
                if name == gptq_ref.DEAD_LAYER:
                    inp = ct_check.Model(model)
                    W = inp.floats(name).reshape(inp.entry(name).shape[0], -1).copy()
                    W[:, gptq_ref.DEAD_COLUMNS] = 0
                    d["codes"], d["scales"], d["zps"] = gptq_ref.rtn(W, "int4", 128)
            case("a fallback that rounds the dead-zeroed W fails", "codes equal", edit=zeroed_rtn)
        finally:
            gptq_ref.hinv_upper = real_hinv
        case("a non-zero code in a dead column fails", "dead input columns", edit=on(
            gptq_ref.DEAD_LAYER, lambda d: d["codes"].__setitem__((5, gptq_ref.DEAD_COLUMNS[3]), 1)))

        def raw_edit(what, must, f):
            t, m = synthetic(model, calib, "int4", "128", "static", "original", 0.01, 128,
                             np.float32)
            f(t, m)
            ct_check.write_safetensors(outp, t, m)
            check_file(what, must, args())

        def flip_norm(t, m):
            d0, s0, b0 = t["model.norm.weight"]
            t["model.norm.weight"] = (d0, s0, bytes([b0[0] ^ 1]) + b0[1:])
        raw_edit("a changed untouched tensor fails", "untouched", flip_norm)
        raw_edit("a missing weight_shape fails", "weight_shape",
                 lambda t, m: t.pop(q[:-len("weight")] + "weight_shape"))
        raw_edit("the wrong scheme in the metadata fails", "metadata scheme",
                 lambda t, m: m.__setitem__("scheme", "int4-asym"))
        raw_edit("an aggregate sqnr_db off by 0.01 fails", "metadata sqnr_db",
                 lambda t, m: m.__setitem__("sqnr_db", "%.9g" % (float(m["sqnr_db"]) + 0.01)))
        raw_edit("an aggregate output_sqnr_db_w off by 0.02 fails", "metadata output_sqnr_db_w",
                 lambda t, m: m.__setitem__("output_sqnr_db_w",
                                            "%.9g" % (float(m["output_sqnr_db_w"]) + 0.02)))

        # --diff
        t, m = synthetic(model, calib, "int4", "128", "static", "original", 0.01, 128, np.float64)
        ct_check.write_safetensors(outp, t, m)
        other = os.path.join(tmp, "other.safetensors")
        recs = json.loads(m["layers"])
        recs[q]["gptq_loss"] *= 1.001
        ct_check.write_safetensors(other, t, dict(m, layers=json.dumps(recs)))
        with contextlib.redirect_stdout(io.StringIO()) as buf:
            rc = cmd_diff(outp, other)
        good = rc == 1 and "gptq_loss" in buf.getvalue()
        with contextlib.redirect_stdout(io.StringIO()):
            good = good and cmd_diff(outp, outp) == 0
        print("%s: --diff names a changed gptq_loss, and nothing for the same file"
              % ("ok" if good else "FAIL"))
        if not good:
            fails.append("--diff")
    print("gptq_check self-check: %s" % ("%d FAILED" % len(fails) if fails else "all passed"))
    return 1 if fails else 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", nargs="?")
    ap.add_argument("model", nargs="?")
    ap.add_argument("calib", nargs="?")
    ap.add_argument("--scheme", choices=tuple(ct_check.PACK_SCHEMES))
    ap.add_argument("--group", "--group-size", dest="group", default="128",
                    choices=("32", "64", "128", "channel"))
    ap.add_argument("--actorder", default="static", choices=gptq_ref.ACTORDERS)
    ap.add_argument("--gptq-scales", dest="scales", default="original", choices=gptq_ref.SCALES)
    ap.add_argument("--clip", default="minmax", choices=gptq_ref.CLIPS)
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--calib-samples", type=int)
    ap.add_argument("--exclude", action="append", default=[], metavar="REGEX")
    ap.add_argument("--min-gain", nargs=2, action="append", default=[], metavar=("DB", "LAYER"))
    ap.add_argument("--strict", action="store_true",
                    help="every differing code must differ by exactly 1 (not only each row's first)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print failed checks only")
    ap.add_argument("--self-check", action="store_true")
    ap.add_argument("--diff", nargs=2, metavar=("A", "B"))
    a = ap.parse_args(argv)
    if a.self_check:
        return self_check()
    if a.diff:
        return cmd_diff(*a.diff)
    if not (a.output and a.model and a.calib and a.scheme):
        ap.error("OUT, MODEL, CALIB and --scheme are needed (or --self-check)")
    try:
        gptq_ref.check_options(a.actorder, a.scales, a.block_size, a.clip)
    except ValueError as e:
        ap.error(str(e))
    rep = run(a)
    if rep is None:
        return 2
    print("gptq_check: %d checks passed, %d failed" % (rep.passed, rep.failed))
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
