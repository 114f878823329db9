#!/usr/bin/python3
"""A small numpy reference implementation of GPTQ, as mq-dist's `--method gptq` specifies it, and
the fixtures of its integration test.

    gptq_ref.py make DIR [--dtype F32|BF16|F16] [--seed S] [--overflow]
        DIR/model.safetensors (a few Linear weights, an embedding, lm_head and a norm that the
        default exclusions keep) and DIR/calib.h5 (each quantized layer's "inputs"); --overflow
        adds a layer whose inputs (~3e19) overflow X^T X in float32: GPTQ's fallback.
    gptq_ref.py show MODEL.safetensors CALIB.h5 [--scheme int4] [--group-size 128] [--actorder ...]
                [--gptq-scales original|updated] [--clip minmax|mse] [--damp F] [--block-size N]
        per layer: the reference's loss, damp, and output-space SQNR of GPTQ and of RTN.
    gptq_ref.py selftest

Written from the task's specification of mq-dist's GPTQ and from LOWBIT.md sections A.2, A.3 and
C (IST-DASLab/gptq fasterquant, llm-compressor's quantize_weight), not from mq-dist's C code.  The
group parameters and the packed layout are those of tests/integration/ct_check.py (an
independent decoder, imported, not copied).  Float64 numpy, except where the specification says
float32.  Per Linear weight W [out, in] (the float32 values of the stored weight) and
calibration rows X [N, in]:

 1. H = (2/N) X^T X, N the calibration rows (tokens).  mq-dist accumulates X^T X in float32 (syrk)
    and scales it after: an entry beyond the float32 range is inf there, and so is H's; such an H
    is not dampened at all but goes straight to step 5's fallback at the --damp fraction (raised
    0 times).  Modelled so (hessian), away from the boundary.
 2. dead = diag(H) == 0; H[dead, dead] = 1; W[:, dead] = 0.
 3. actorder "static": perm = stable argsort of -diag(H) (ties: lower index first); "none":
    identity.  W's columns and H's rows and columns are permuted.
 4. H += frac * mean(diag(H)) * I (frac = --damp, 0.01).
 5. U = the upper Cholesky factor of H^-1 (U^T U = H^-1), computed as torch's
    cholesky(cholesky_inverse(cholesky(H)), upper=True).  If a Cholesky fails, frac + 0.01 k
    (k = 1, 2, ...) while < 1; if all fail, plain RTN of the original W ("fallback": the
    weights as stored, dead columns NOT zeroed, group parameters from them; loss
    1/2 sum (w - q)^2, i.e. d = 1; damp the last fraction tried, raised the k of that try).
 6. Group parameters (scale, zero point per row and group of `group` ORIGINAL columns) by the
    scheme's RTN formula (ct_check.ref_pack_quantize: the scale rounded to the stored dtype
    before the zero point and codes), or with clip "mse" by the MSE range search of
    src/quant/clip.h's specification (mse_params below: llm-compressor's memoryless MSE observer,
    grid 100, maxshrink 0.2, norm 2.4, patience 5 per group, min/max kept where the winner's
    squared error is larger); scales "original": from W after step 2, before any update;
    "updated" (actorder none only): at column j with j % group == 0, from W[:, j:j+group] as of the
    start of the current block (previous blocks' updates in, this block's not: IST reads W, not
    W1).
 7. Blocks of B columns with lazy updates (IST fasterquant); column i of a block:
    q = fakequant(w, params of the group of original column perm[i1+i]),
    loss += sum((w - q)^2) / d^2 / 2 (d = U[i1+i, i1+i]), err = (w - q) / d,
    W1[:, i:] -= err U[i1+i, i1+i:i2]; after the block W[:, i2:] -= Err1 U[i1:i2, i2:].
    fakequant(x, s, zp) = (clamp(rint(f32(x) / f32(s)) + zp, qmin, qmax) - zp) * s in float32.
    The codes of column perm[j] are those of step j; the output is in the original order.
 8. Per layer: the loss, the damp fraction used (and the times it was raised), the output-space
    SQNR 10 log10(sum Y^2 / sum (Y - Yhat)^2), Y = X W^T, Yhat = X What^T, of GPTQ and of RTN
    (mq-dist's record keys "output_sqnr_db_w" and "output_sqnr_db_w_rtn"; RTN with the same
    --clip as GPTQ's group parameters, of the original W).
"""

import argparse
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import ct_check  # noqa: E402  (the independent compressed-tensors decoder and RTN formulas)

PACK_SCHEMES = ct_check.PACK_SCHEMES          # scheme -> (bits, symmetric)
ACTORDERS = ("static", "none")
SCALES = ("original", "updated")
CLIPS = ("minmax", "mse")
DAMP_STEP = 0.01                               # step 5: frac + DAMP_STEP k while < 1


# ---------------------------------------------------------------- pieces

def scheme_bits(scheme):
    if scheme not in PACK_SCHEMES:
        raise ValueError("scheme %r: GPTQ takes %s" % (scheme, ", ".join(PACK_SCHEMES)))
    bits, sym = PACK_SCHEMES[scheme]
    return bits, sym, -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def group_size(group, n):
    """--group-size value (32, 64, 128, "channel", None) -> the columns per group."""
    if group in (None, "channel", "-1", -1):
        return n
    gs = int(group)
    if gs <= 0 or n % gs:
        raise ValueError("in %d is not a multiple of the group size %s" % (n, group))
    return gs


FLT_MAX = float(np.finfo(np.float32).max)


def hessian(X, dtype=np.float64):
    """H = (2/N) X^T X of calibration rows X [N, in] (float32 values), in dtype; entries whose
    X^T X is beyond the float32 range are inf (step 1)."""
    X = np.asarray(X, np.float32).astype(dtype)
    n = X.shape[0]
    if n == 0:
        raise ValueError("no calibration rows")
    with np.errstate(over="ignore", invalid="ignore"):
        G = X.T @ X                                  # float32 (the self-check's): inf by itself
        big = np.abs(G) > FLT_MAX
        G[big] = np.inf * np.sign(G[big])
        return G * dtype(2.0 / n)


def range_params(lo, hi, bits, sym, scale_dtype):
    """Scale and zero point of the ranges [lo, hi] (float32 arrays, lo <= 0 <= hi) by
    ct_check.ref_pack_quantize's formula (written out again: that function takes the range from
    the values; the self-test checks that the two agree)."""
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    lo = np.asarray(lo, np.float32)
    hi = np.asarray(hi, np.float32)
    if sym:
        s = np.maximum(-lo, hi) / np.float32((qmax - qmin) / 2)
    else:
        s = (hi - lo) / np.float32(qmax - qmin)
    s = ct_check.round_to_dtype(np.maximum(s.astype(np.float32), ct_check.F32_EPS), scale_dtype)
    s = np.asarray(s, np.float32).reshape(lo.shape)
    if sym:
        zp = np.zeros(s.shape, np.float32)
    else:
        zp = np.clip(np.rint(-lo / s), 0, qmax - qmin) + np.float32(qmin)
    return s, zp.astype(np.int64)


def _group_errors(G, s, zp, qmin, qmax, norm):
    """(sum |e|^norm, sum e^2) per group in float64, e = x - (q - zp) s in float32 as the kernels
    compute it; G [..., gs], s and zp [...]."""
    z = zp.astype(np.float32)[..., None]
    q = np.clip(np.rint(G / s[..., None]) + z, np.float32(qmin), np.float32(qmax))
    e = (G - ((q - z) * s[..., None]).astype(np.float32)).astype(np.float32)
    a = np.abs(e).astype(np.float64)
    return np.sum(a ** norm, axis=-1), np.sum(a * a, axis=-1)


def mse_params(Wg, scheme, gs, scale_dtype, grid=100, maxshrink=0.2, norm=2.4, patience=5):
    """--clip mse: the parameters [out, ncols/gs] the MSE range search chooses for each group of
    gs columns of Wg (float32 values), as src/quant/clip.h specifies it (not from clip.c): from
    the group's exact range (lo = min(min x, 0), hi = max(max x, 0)), step i = 0 .. (int)(maxshrink
    grid) - 1 takes p = f32(1 - i / grid) and the range lo p, hi p in float32 through the scheme's
    min/max formula (step 0 is min/max); E = sum |e|^norm in float64; the strictly smallest E wins
    (a tie keeps the larger p); a group stops after `patience` steps in a row that did not lower
    its best E; the winner is kept only if its sum e^2 is at most min/max's, else min/max's."""
    bits, sym, qmin, qmax = scheme_bits(scheme)
    W = np.asarray(Wg, np.float32)
    out, n = W.shape
    G = W.reshape(out, n // gs, gs)
    lo = np.minimum(G.min(axis=2), np.float32(0))
    hi = np.maximum(G.max(axis=2), np.float32(0))
    s0, z0 = range_params(lo, hi, bits, sym, scale_dtype)
    best_e, sq0 = _group_errors(G, s0, z0, qmin, qmax, norm)
    bs, bz = s0.copy(), z0.copy()
    stale = np.zeros(best_e.shape, np.int64)
    active = np.ones(best_e.shape, bool)
    for i in range(1, max(1, int(maxshrink * grid))):
        if not active.any():
            break
        p = np.float32(1 - i / grid)
        s, z = range_params((lo * p).astype(np.float32), (hi * p).astype(np.float32), bits, sym,
                            scale_dtype)
        e, _ = _group_errors(G, s, z, qmin, qmax, norm)
        better = active & (e < best_e)
        best_e = np.where(better, e, best_e)
        bs = np.where(better, s, bs)
        bz = np.where(better, z, bz)
        stale = np.where(better, 0, stale + 1)
        active &= stale < patience
    _, sq = _group_errors(G, bs, bz, qmin, qmax, norm)
    keep = sq <= sq0
    return np.where(keep, bs, s0).astype(np.float32), np.where(keep, bz, z0).astype(np.int64)


def mse_steps(Wg, scheme, gs, scale_dtype, grid=100, maxshrink=0.2, norm=2.4):
    """Every step of the MSE search without its choice, for the checker's near-ties: scales and
    zero points [steps, out, ncols/gs], E = sum |e|^norm and sum e^2 [steps, out, ncols/gs]."""
    bits, sym, qmin, qmax = scheme_bits(scheme)
    W = np.asarray(Wg, np.float32)
    out, n = W.shape
    G = W.reshape(out, n // gs, gs)
    lo = np.minimum(G.min(axis=2), np.float32(0))
    hi = np.maximum(G.max(axis=2), np.float32(0))
    res = []
    for i in range(max(1, int(maxshrink * grid))):
        p = np.float32(1 - i / grid)
        s, z = range_params((lo * p).astype(np.float32), (hi * p).astype(np.float32), bits, sym,
                            scale_dtype)
        e, sq = _group_errors(G, s, z, qmin, qmax, norm)
        res.append((s, z, e, sq))
    return tuple(np.stack(a) for a in zip(*res))


def params(Wg, scheme, gs, scale_dtype, clip="minmax"):
    """Scale (float32 values of the stored dtype) and zero point (int64) [out, ncols/gs] of the
    float32 values of Wg [out, ncols], by the scheme's RTN formula (ct_check), or by the MSE
    range search (clip "mse")."""
    bits, sym, _, _ = scheme_bits(scheme)
    if clip == "mse":
        return mse_params(Wg, scheme, gs, scale_dtype)
    _, s, zp = ct_check.ref_pack_quantize(np.asarray(Wg, np.float32), bits, sym, gs, scale_dtype)
    return s, zp


def fakequant(x, s, zp, qmin, qmax):
    """Codes and dequantized float32 values of x (one column, [out]) with per-row s, zp:
    q = clamp(rint(f32(x) / f32(s)) + zp, qmin, qmax), deq = (q - zp) * s, all float32."""
    x32 = np.asarray(x).astype(np.float32)
    s32 = np.asarray(s, np.float32)
    z32 = np.asarray(zp).astype(np.float32)
    q = np.clip(np.rint(x32 / s32) + z32, np.float32(qmin), np.float32(qmax))
    return q.astype(np.int64), ((q - z32) * s32).astype(np.float32)


def rtn(W, scheme, group, scale_dtype="F32", clip="minmax"):
    """Plain round-to-nearest of the float32 values of W: codes [out, in], scales, zero points
    (the group parameters by min/max, or by the MSE search with clip "mse")."""
    bits, sym, qmin, qmax = scheme_bits(scheme)
    W = np.asarray(W, np.float32)
    gs = group_size(group, W.shape[1])
    if clip != "mse":
        return ct_check.ref_pack_quantize(W, bits, sym, gs, scale_dtype)
    s, zp = mse_params(W, scheme, gs, scale_dtype)
    out, n = W.shape
    q = np.clip(np.rint(W.reshape(out, n // gs, gs) / s[:, :, None]) +
                zp.astype(np.float32)[:, :, None], qmin, qmax)
    return q.reshape(out, n).astype(np.int64), s, zp


def dequant(codes, s, zp):
    """(q - zp) * s in float32 (ct_check.dequant_groups); the group size from the scales' shape."""
    return ct_check.dequant_groups(codes, s, zp, codes.shape[1] // s.shape[1])


def hinv_upper(H, frac, fdtype=np.float64, raised=None):
    """(U, frac used) with U the upper Cholesky factor of (H + frac mean(diag H) I)^-1, retrying
    frac + 0.01 k (k = 1, 2, ...) while that is below 1; (None, last frac tried) if all fail.
    raised (a list) gets the k of the last try appended."""
    n = H.shape[0]
    if not np.all(np.isfinite(H)):   # an overflowed H: the fallback at once, no dampening tried
        if raised is not None:
            raised.append(0)
        return None, frac
    mean = float(np.mean(np.diag(H)))
    k, tried = 0, frac
    while True:
        f = frac + DAMP_STEP * k
        if k > 0 and not f < 1:
            if raised is not None:
                raised.append(k - 1)
            return None, tried
        tried = f
        Hd = np.array(H, np.float64)
        Hd[np.diag_indices(n)] += f * mean
        try:
            if not np.all(np.isfinite(Hd)):
                raise np.linalg.LinAlgError("not finite")
            L = np.linalg.cholesky(Hd)                     # H = L L^T
            Linv = np.linalg.inv(L)
            Hinv = Linv.T @ Linv                           # cholesky_inverse
            U = np.linalg.cholesky(Hinv).T                 # upper, U^T U = H^-1
            if not np.all(np.isfinite(U)):
                raise np.linalg.LinAlgError("not finite")
            if raised is not None:
                raised.append(k)
            return U.astype(fdtype), f
        except np.linalg.LinAlgError:
            k += 1


class Result:
    """codes [out, in] int64 (original column order), scales [out, ng] float32, zps [out, ng]
    int64, loss, damp (fraction used, the last tried after a fallback), raised (the times it was
    raised), fallback (None, or "cholesky failed at damp F"), perm; sources (scales "updated"
    only): [out, in] float32, original order, the values each group's parameters were computed
    from (W at the start of the block of the group's first column); ratio: [out, in] float32,
    original order, f32(w) / f32(s) of each value as the sweep rounded it (before rint), so that
    a checker can tell how close a value was to a rounding boundary (None after a fallback)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def dequant(self):
        return dequant(self.codes, self.scales, self.zps)


def check_options(actorder, scales, block, clip="minmax"):
    if clip not in CLIPS:
        raise ValueError("clip %r: %s" % (clip, ", ".join(CLIPS)))
    if actorder not in ACTORDERS:
        raise ValueError("actorder %r: %s" % (actorder, ", ".join(ACTORDERS)))
    if scales not in SCALES:
        raise ValueError("scales %r: %s" % (scales, ", ".join(SCALES)))
    if scales == "updated" and actorder != "none":
        raise ValueError("scales 'updated' needs actorder 'none'")
    if int(block) < 1:
        raise ValueError("block size %r" % block)


def prepare(W, H, scheme, gs, actorder, scales, scale_dtype, fdtype, clip="minmax"):
    """Steps 2-3 and the original scales: (W permuted, H permuted, perm, s, zp or None)."""
    W = np.array(W, np.float32).astype(fdtype)
    H = np.array(H, fdtype)
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    s = zp = None
    if scales == "original":
        s, zp = params(W, scheme, gs, scale_dtype, clip)
    if actorder == "static":
        perm = np.argsort(-np.diag(H), kind="stable")
    else:
        perm = np.arange(W.shape[1])
    return W[:, perm], H[np.ix_(perm, perm)], perm, s, zp


def fallback_result(W0, scheme, gs, scale_dtype, clip, frac, raised, perm):
    """Step 5's fallback: RTN of the original W (dead columns not zeroed), loss 1/2 sum (w - q)^2
    (float64 of the float32 values: the d of the sweep's loss is 1)."""
    q, s, zp = rtn(W0, scheme, gs, scale_dtype, clip)
    e = np.asarray(W0, np.float32).astype(np.float64) - dequant(q, s, zp).astype(np.float64)
    return Result(codes=q, scales=s, zps=zp, loss=float(np.sum(e * e)) / 2, damp=frac,
                  raised=raised, perm=perm, fallback="cholesky failed at damp %g" % frac,
                  sources=None, ratio=None)


def gptq(W, H, scheme, group, actorder="static", scales="original", damp=0.01, block=128,
         scale_dtype="F32", fdtype=np.float64, clip="minmax"):
    """GPTQ of W [out, in] (float32 values) with Hessian H [in, in] (steps 2-7 of the module
    docstring).  fdtype float32 runs the sweep in float32 (for the checker's self-check only: a
    second, differently rounded implementation)."""
    check_options(actorder, scales, block, clip)
    _, sym, qmin, qmax = scheme_bits(scheme)
    W0 = np.asarray(W, np.float32)
    out, n = W0.shape
    gs = group_size(group, n)
    B = int(block)
    W, H, perm, s_all, zp_all = prepare(W0, H, scheme, gs, actorder, scales, scale_dtype, fdtype,
                                        clip)
    raised = []
    U, frac = hinv_upper(H, damp, fdtype, raised)
    if U is None:
        return fallback_result(W0, scheme, gs, scale_dtype, clip, frac, raised[0], perm)
    if s_all is None:
        s_all = np.zeros((out, n // gs), np.float32)
        zp_all = np.zeros((out, n // gs), np.int64)
    codes = np.zeros((out, n), np.int64)
    sources = np.zeros((out, n), np.float32) if scales == "updated" else None
    ratio = np.zeros((out, n), np.float32)
    loss = 0.0
    for i1 in range(0, n, B):
        i2 = min(i1 + B, n)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        for i in range(i2 - i1):
            j = i1 + i
            if scales == "updated" and j % gs == 0:
                # W, not W1: this block's in-block updates are not seen (IST's quirk)
                s_all[:, j // gs], zp_all[:, j // gs] = (a[:, 0] for a in params(
                    W[:, j:j + gs], scheme, gs, scale_dtype, clip))
                sources[:, j:j + gs] = W[:, j:j + gs]
            g = perm[j] // gs
            w = W1[:, i]
            d = U[j, j]
            c, q = fakequant(w, s_all[:, g], zp_all[:, g], qmin, qmax)
            codes[:, perm[j]] = c
            ratio[:, perm[j]] = np.asarray(w).astype(np.float32) / s_all[:, g]
            q = q.astype(fdtype)
            loss += float(np.sum((w - q) ** 2)) / float(d) ** 2 / 2
            err = (w - q) / d
            W1[:, i:] -= np.outer(err, U[j, j:i2])
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return Result(codes=codes, scales=s_all, zps=zp_all, loss=loss, damp=frac, raised=raised[0],
                  perm=perm, fallback=None, sources=sources, ratio=ratio)


def gptq_slow(W, H, scheme, group, actorder="static", scales="original", damp=0.01, block=128,
              scale_dtype="F32", clip="minmax"):
    """A literal column-by-column transcription without lazy blocks, for the self-test: every
    column's error is applied at once to all later columns.  `block` only fixes when "updated"
    scales read W (the values at the start of the column's block)."""
    check_options(actorder, scales, block, clip)
    bits, sym, qmin, qmax = scheme_bits(scheme)
    W0 = np.array(W, np.float32)
    W = W0.astype(np.float64)
    out, n = W.shape
    gs = group_size(group, n)
    H = np.array(H, np.float64)
    for c in range(n):
        if H[c, c] == 0:
            H[c, c] = 1.0
            W[:, c] = 0.0
    if scales == "original":
        s_all, zp_all = params(W, scheme, gs, scale_dtype, clip)
    else:
        s_all = np.zeros((out, n // gs), np.float32)
        zp_all = np.zeros((out, n // gs), np.int64)
    order = list(range(n))
    if actorder == "static":
        order.sort(key=lambda c: (-H[c, c], c))
    P = np.zeros((n, n))
    P[order, np.arange(n)] = 1                             # W @ P: column k is W[:, order[k]]
    W = W @ P
    H = P.T @ H @ P
    raised = []
    U, frac = hinv_upper(H, damp, raised=raised)
    if U is None:
        return fallback_result(W0, scheme, gs, scale_dtype, clip, frac, raised[0], None)
    codes = np.zeros((out, n), np.int64)
    loss = 0.0
    snapshot = W.copy()
    for k in range(n):
        if k % int(block) == 0:
            snapshot = W.copy()
        if scales == "updated" and k % gs == 0:
            s, zp = params(snapshot[:, k:k + gs], scheme, gs, scale_dtype, clip)
            s_all[:, k // gs], zp_all[:, k // gs] = s[:, 0], zp[:, 0]
        col = order[k]
        for r in range(out):
            x = np.float32(W[r, k])
            s = np.float32(s_all[r, col // gs])
            z = np.float32(zp_all[r, col // gs])
            qi = min(max(np.rint(x / s) + z, np.float32(qmin)), np.float32(qmax))
            codes[r, col] = int(qi)
            deq = float(np.float32((qi - z) * s))
            e = (W[r, k] - deq) / U[k, k]
            loss += e * e / 2
            W[r, k:] -= e * U[k, k:]
    return Result(codes=codes, scales=s_all, zps=zp_all, loss=loss, damp=frac, raised=raised[0],
                  fallback=None)


def gram(X):
    """X^T X in float64, for output_errors."""
    X = np.asarray(X, np.float32).astype(np.float64)
    return X.T @ X


def output_errors(X, W, What, G=None):
    """(sum Y^2, sum (Y - Yhat)^2) in float64, Y = X W^T, Yhat = X What^T (float32 values of
    W and What).  With G = gram(X): the same sums as sum((W G) * W) and sum((D G) * D),
    D = W - What (cheaper when the same X serves several weights)."""
    W = np.asarray(W, np.float32).astype(np.float64)
    D = W - np.asarray(What, np.float32).astype(np.float64)
    if G is not None:
        return float(np.sum((W @ G) * W)), float(np.sum((D @ G) * D))
    X = np.asarray(X, np.float32).astype(np.float64)
    Y = X @ W.T
    E = X @ D.T
    return float(np.sum(Y * Y)), float(np.sum(E * E))


def output_sqnr_db(X, W, What, G=None):
    sig, noise = output_errors(X, W, What, G)
    if noise == 0 or sig == 0:
        return None
    return 10 * math.log10(sig / noise)


# ---------------------------------------------------------------- fixtures

# name -> (shape [out, in], calibration rows, kind)
FIXTURE = {
    "model.layers.0.self_attn.q_proj.weight": ((256, 512), 1024, "correlated"),
    "model.layers.0.self_attn.o_proj.weight": ((64, 128), 256, "plain"),
    "model.layers.0.mlp.up_proj.weight": ((128, 256), 512, "dead"),
    "model.layers.0.mlp.down_proj.weight": ((64, 256), 96, "few-rows"),
}
KEPT = {"model.embed_tokens.weight": (64, 128), "lm_head.weight": (64, 128),
        "model.norm.weight": (128,)}
CORRELATED = "model.layers.0.self_attn.q_proj.weight"
DEAD_LAYER = "model.layers.0.mlp.up_proj.weight"
FEW_ROWS = "model.layers.0.mlp.down_proj.weight"
# columns of the dead layer whose inputs are exactly zero: the edges, both sides of group
# boundaries, and one whole group of 32 (64..95)
DEAD_COLUMNS = sorted({0, 1, 2, 31, 32, 100, 127, 128, 129, 200, 254, 255} | set(range(64, 96)))
CHUNK_ROWS = 64
# make --overflow: a layer whose float32 X^T X overflows (x ~ 3e19, 64 rows: sums ~6e40), with a
# dead input column that the fallback must not zero
OVERFLOW_LAYER = "model.layers.1.mlp.up_proj.weight"
OVERFLOW_DEAD = 5


def fixture_inputs(kind, rows, n, rng):
    if kind == "correlated":
        # low rank (16) plus noise, a few outlier channels 10x-50x larger
        z = rng.standard_normal((rows, 16)) @ rng.standard_normal((16, n))
        x = z + 1.0 * rng.standard_normal((rows, n))
        out_ch = rng.choice(n, 6, replace=False)
        x[:, out_ch] *= np.array([10, 15, 20, 30, 40, 50])
    elif kind == "dead":
        x = np.maximum(rng.standard_normal((rows, n)), 0)
        x[:, DEAD_COLUMNS] = 0
    elif kind == "few-rows":
        z = rng.standard_normal((rows, 8)) @ rng.standard_normal((8, n))
        x = np.maximum(z + 0.5 * rng.standard_normal((rows, n)), 0)
    else:
        x = np.maximum(rng.standard_normal((rows, n)), 0)
        x[rng.random((rows, n)) < 1e-3] *= 20
    return x.astype(np.float32)


def fixture_arrays(seed=0):
    """{weight name: float32 weight}, {layer name: float32 inputs} (deterministic)."""
    rng = np.random.default_rng(seed)
    weights, inputs = {}, {}
    for name, (shape, rows, kind) in FIXTURE.items():
        w = rng.standard_normal(shape) * 0.02
        w[rng.random(shape) < 0.002] *= 8                   # a few large weights
        weights[name] = w.astype(np.float32)
        inputs[name[:-len(".weight")]] = fixture_inputs(kind, rows, shape[1], rng)
    for name, shape in KEPT.items():
        weights[name] = (rng.standard_normal(shape) * 0.02 + (1.0 if len(shape) == 1 else 0)
                         ).astype(np.float32)
    return weights, inputs


def to_dtype(x, dtype):
    """float32 values -> (values as float32 after rounding to dtype, stored bytes)."""
    if dtype == "BF16":
        b = ct_check.bf16_round_bits(x)
        return ct_check.bf16_bits_to_f32(b), b.astype("<u2").tobytes()
    if dtype == "F16":
        h = np.asarray(x, np.float32).astype("<f2")
        return h.astype(np.float32), h.tobytes()
    return np.asarray(x, np.float32), np.asarray(x, "<f4").tobytes()


def write_calib(path, inputs, model_name):
    import h5py
    with h5py.File(path, "w") as h5:
        h5.attrs["model"] = model_name
        h5.attrs["dataset"] = "gptq_ref.py synthetic"
        h5.attrs["num_samples"] = np.int64(max(x.shape[0] for x in inputs.values()))
        h5.attrs["mq_calib_version"] = np.int64(1)
        for layer in sorted(inputs):
            x = inputs[layer]
            h5.create_dataset(layer + "/inputs", data=x, dtype="f4",
                              chunks=(min(CHUNK_ROWS, x.shape[0]), x.shape[1]),
                              maxshape=(None, x.shape[1]))


def make(d, dtype="F32", seed=0, overflow=False):
    os.makedirs(d, exist_ok=True)
    weights, inputs = fixture_arrays(seed)
    if overflow:
        rng = np.random.default_rng(seed + 1000)
        weights[OVERFLOW_LAYER] = (rng.standard_normal((64, 128)) * 0.02).astype(np.float32)
        x = (rng.standard_normal((64, 128)) * 3e19).astype(np.float32)
        x[:, OVERFLOW_DEAD] = 0
        inputs[OVERFLOW_LAYER[:-len(".weight")]] = x
    tensors = {}
    for name, w in weights.items():
        _, blob = to_dtype(w, dtype)
        tensors[name] = (dtype, list(w.shape), blob)
    ct_check.write_safetensors(os.path.join(d, "model.safetensors"), tensors, {"format": "pt"})
    write_calib(os.path.join(d, "calib.h5"), inputs, "model.safetensors")


def read_calib(path, layer, samples=None):
    import h5py
    with h5py.File(path, "r") as h5:
        d = h5[layer]["inputs"]
        n = d.shape[0] if samples is None else min(d.shape[0], samples)
        return np.asarray(d[:n], np.float32)


# ---------------------------------------------------------------- show

def cmd_show(a):
    model = ct_check.Model(a.model)
    for name in ct_check.expected_quantized(model, a.scheme, ct_check.DEFAULT_EXCLUDES):
        e = model.entry(name)
        W = model.floats(name).reshape(e.shape[0], -1)
        X = read_calib(a.calib, name[:-len(".weight")], a.calib_samples)
        r = gptq(W, hessian(X), a.scheme, a.group_size, a.actorder, a.gptq_scales, a.damp,
                 a.block_size, e.dtype, clip=a.clip)
        q, s, zp = rtn(W, a.scheme, a.group_size, e.dtype, a.clip)
        g_db = output_sqnr_db(X, W, r.dequant())
        r_db = output_sqnr_db(X, W, dequant(q, s, zp))
        print("%-45s loss %-12.6g damp %-5g %s output SQNR gptq %.3f dB, rtn %.3f dB (%+.3f)"
              % (name, r.loss, r.damp,
                 "FALLBACK" if r.fallback else "", g_db, r_db, g_db - r_db))
    return 0


# ---------------------------------------------------------------- self-test

def selftest():
    fails = []

    def ok(cond, what):
        print(("ok: " if cond else "FAIL: ") + what)
        if not cond:
            fails.append(what)

    rng = np.random.default_rng(5)

    # the Hessian, against a loop of outer products
    X = rng.standard_normal((13, 6)).astype(np.float32)
    Hl = sum(np.outer(x, x) for x in X.astype(np.float64)) * 2 / 13
    ok(np.allclose(hessian(X), Hl, rtol=1e-13, atol=0), "hessian = (2/N) sum x x^T")

    # the output-space sums, directly and through X^T X
    W = rng.standard_normal((7, 6)).astype(np.float32)
    Wh = (W + 0.01 * rng.standard_normal((7, 6))).astype(np.float32)
    a, b = output_errors(X, W, Wh), output_errors(X, W, Wh, gram(X))
    ok(np.allclose(a, b, rtol=1e-12, atol=0), "output errors through X^T X equal X W^T's")

    # U against torch's cholesky(cholesky_inverse(cholesky(H)), upper=True)
    try:
        import torch
        A = rng.standard_normal((40, 40))
        H = A @ A.T / 40
        U, f = hinv_upper(H, 0.01)
        Hd = torch.from_numpy(H + 0.01 * np.mean(np.diag(H)) * np.eye(40))
        Ut = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(Hd)),
                                   upper=True).numpy()
        ok(f == 0.01 and np.allclose(U, Ut, rtol=1e-9, atol=1e-12),
           "U equals torch's cholesky(cholesky_inverse(cholesky(H)), upper=True)")
        ok(np.allclose(np.triu(U), U) and np.allclose(U.T @ U, np.linalg.inv(Hd.numpy())),
           "U is upper triangular and U^T U = H^-1")
    except ImportError:
        print("selftest: no torch, U cross-check skipped")

    # lazy blocks against the literal column-by-column transcription
    weights, inputs = fixture_arrays(0)
    Wc = weights[CORRELATED][:48, :256]
    Xc = inputs[CORRELATED[:-7]][:, :256]
    Wd = weights[DEAD_LAYER][:40]
    Xd = inputs[DEAD_LAYER[:-7]]
    cases = [("int4", 32, "static", "original", Wc, Xc), ("int4-asym", 64, "static", "original", Wd, Xd),
             ("w8a16", "channel", "none", "original", Wc, Xc), ("int4", 128, "none", "original", Wd, Xd),
             ("int4-asym", 32, "none", "updated", Wc, Xc), ("int4", 16, "none", "updated", Wd, Xd),
             ("w8a16-asym", "channel", "none", "updated", Wc, Xc)]
    for scheme, group, actorder, scales, W, X in cases:
        H = hessian(X)
        for B in (1, 7, 128):
            fast = gptq(W, H, scheme, group, actorder, scales, 0.01, B)
            slow = gptq_slow(W, H, scheme, group, actorder, scales, 0.01, B)
            what = "%s g%s actorder %s scales %s B %d" % (scheme, group, actorder, scales, B)
            ok(np.array_equal(fast.codes, slow.codes) and np.array_equal(fast.scales, slow.scales)
               and np.array_equal(fast.zps, slow.zps),
               "lazy = column by column, codes, scales, zero points: " + what)
            ok(abs(fast.loss - slow.loss) <= 1e-9 * slow.loss,
               "lazy = column by column, loss %.12g vs %.12g: %s" % (fast.loss, slow.loss, what))
    # with original scales, the block size changes nothing but the rounding
    H = hessian(Xc)
    a = [gptq(Wc, H, "int4", 32, "static", "original", 0.01, B) for B in (1, 7, 32, 128, 1000)]
    ok(all(np.array_equal(a[0].codes, r.codes) for r in a), "block size does not change the codes")
    # the whole fixture layers, once each, against the transcription
    for name in (CORRELATED, DEAD_LAYER):
        W, X = weights[name], inputs[name[:-7]]
        H = hessian(X)
        fast = gptq(W, H, "int4", 128)
        slow = gptq_slow(W, H, "int4", 128)
        ok(np.array_equal(fast.codes, slow.codes) and abs(fast.loss - slow.loss) <= 1e-9 * slow.loss,
           "%s int4 g128: lazy = column by column" % name)

    # GPTQ beats RTN in output space on the correlated layer by >= 2 dB (int4 g128, static)
    W, X = weights[CORRELATED], inputs[CORRELATED[:-7]]
    r = gptq(W, hessian(X), "int4", 128)
    g_db = output_sqnr_db(X, W, r.dequant())
    r_db = output_sqnr_db(X, W, dequant(*rtn(W, "int4", 128)))
    ok(g_db - r_db >= 2, "correlated layer int4 g128: GPTQ %.2f dB, RTN %.2f dB, gain %.2f >= 2"
       % (g_db, r_db, g_db - r_db))
    ok(r.loss > 0 and r.fallback is None and r.damp == 0.01 and r.raised == 0,
       "loss %.6g > 0, damp 0.01, not raised" % r.loss)

    # dead columns: code for 0 (dequantized exactly 0) whatever the scheme and order
    W, X = weights[DEAD_LAYER], inputs[DEAD_LAYER[:-7]]
    H = hessian(X)
    ok(np.all(np.diag(H)[DEAD_COLUMNS] == 0), "the dead layer's dead columns have diag(H) = 0")
    for scheme in PACK_SCHEMES:
        for group, actorder, scales in ((128, "static", "original"), (32, "none", "updated"),
                                        ("channel", "static", "original")):
            r = gptq(W, H, scheme, group, actorder, scales)
            deq = r.dequant()
            ok(np.all(deq[:, DEAD_COLUMNS] == 0) and np.all(r.codes[:, DEAD_COLUMNS] ==
                                                            r.zps[:, np.array(DEAD_COLUMNS) //
                                                                  group_size(group, 256)]),
               "dead columns get the code for 0: %s g%s %s %s" % (scheme, group, actorder, scales))

    # a singular H with damp 0: the Cholesky fails and the retry at 0.01 succeeds
    X = rng.standard_normal((96, 256)).astype(np.float32)             # rank 96 < 256
    X[:, 1] = X[:, 0]
    H = hessian(X)
    U, f = hinv_upper(H, 0.0)
    ok(U is not None and f == 0.01, "singular H, damp 0: retried, damp used %r" % f)
    W = (rng.standard_normal((16, 256)) * 0.02).astype(np.float32)
    r = gptq(W, H, "int4", 128, damp=0.0)
    ok(r.fallback is None and r.damp == 0.01, "gptq(damp=0) on a singular H uses damp 0.01")
    H2 = np.array([[4.0, 4.0], [4.0, 4.0]])
    U, f = hinv_upper(H2, 0.0)
    ok(U is not None and f == 0.01, "H = [[4, 4], [4, 4]] (exactly singular), damp 0: retried")
    ok(r.raised == 1, "... raised once (%r)" % r.raised)
    # an H no damp below 1 makes positive definite: RTN of the original W
    Hbad = np.array([[1.0, 10.0], [10.0, 1.0]])
    W = np.array([[0.3, -0.2], [0.1, 0.25]], np.float32)
    r = gptq(np.tile(W, (1, 4)), np.kron(np.eye(4), Hbad), "int4", 8)
    q, s, zp = rtn(np.tile(W, (1, 4)), "int4", 8)
    ok(r.fallback is not None and r.fallback.startswith("cholesky failed")
       and np.array_equal(r.codes, q) and np.array_equal(r.scales, s),
       "indefinite H: fallback to RTN (%s)" % r.fallback)
    ok(0.99 - 1e-9 <= r.damp < 1, "the last damp tried is 0.99 (%r)" % r.damp)
    ok(r.raised == 98, "the last try raised the damp 98 times (%r)" % r.raised)
    e = np.tile(W, (1, 4)).astype(np.float64) - dequant(q, s, zp)
    ok(abs(r.loss - float(np.sum(e * e)) / 2) <= 1e-15,
       "the fallback's loss is 1/2 sum (w - q)^2 of RTN (%r)" % r.loss)
    # ... with a dead column: the fallback rounds the ORIGINAL W (the dead column not zeroed)
    Hd = np.kron(np.eye(4), Hbad)
    Hd[0, :] = Hd[:, 0] = 0
    W8 = np.tile(W, (1, 4))
    for scheme, clip in (("int4", "minmax"), ("int4-asym", "mse")):
        r = gptq(W8, Hd, scheme, 8, clip=clip)
        q, s, zp = rtn(W8, scheme, 8, clip=clip)
        sl = gptq_slow(W8, Hd, scheme, 8, clip=clip)
        ok(r.fallback is not None and np.array_equal(r.codes, q) and np.any(r.dequant()[:, 0] != 0)
           and np.array_equal(sl.codes, q) and r.loss == sl.loss,
           "fallback with a dead column: RTN of the original W, %s clip %s" % (scheme, clip))

    # the MSE range search (--clip mse): step 0 is min/max (range_params = ct_check's formula),
    # it only shrinks, never raises a group's squared error, and shrinks some
    Wm = weights[CORRELATED][:32]
    for scheme in PACK_SCHEMES:
        bits, sym, qmin, qmax = scheme_bits(scheme)
        for dt in ("F32", "BF16", "F16"):
            for gs in (32, 128, 512):
                G = Wm.reshape(32, -1, gs)
                _, s_ref, zp_ref = ct_check.ref_pack_quantize(Wm, bits, sym, gs, dt)
                s0, z0 = range_params(np.minimum(G.min(axis=2), 0), np.maximum(G.max(axis=2), 0),
                                      bits, sym, dt)
                sm, zm = mse_params(Wm, scheme, gs, dt)
                _, sq0 = _group_errors(G, s0, z0, qmin, qmax, 2.4)
                _, sqm = _group_errors(G, sm, zm, qmin, qmax, 2.4)
                # (w8a16-asym: 255 steps over the exact range; on these Gaussian weights no
                # shrink of both ends lowers the 2.4-norm error, so none is required there)
                ok(np.array_equal(s0, s_ref) and np.array_equal(z0, zp_ref) and np.all(sm <= s0)
                   and np.all(sqm <= sq0) and (np.any(sm < s0) or scheme == "w8a16-asym"),
                   "mse search %s %s g%d: min/max at step 0, %d of %d groups shrunk, none worse"
                   % (scheme, dt, gs, int((sm < s0).sum()), sm.size))
    x = np.array([[1.0, -0.9, 0.5, 0.02] * 8], np.float32)
    sm, _ = mse_params(x, "int4", 32, "F32")
    ok(sm[0, 0] <= np.float32(1) / np.float32(7.5), "mse search of a small group: %r" % sm)
    for scheme, group, actorder, scales, W, X in cases[:2] + cases[4:6]:
        H = hessian(X)
        fast = gptq(W, H, scheme, group, actorder, scales, 0.01, 7, clip="mse")
        slow = gptq_slow(W, H, scheme, group, actorder, scales, 0.01, 7, clip="mse")
        mm = gptq(W, H, scheme, group, actorder, scales, 0.01, 7)
        ok(np.array_equal(fast.codes, slow.codes) and np.array_equal(fast.scales, slow.scales)
           and abs(fast.loss - slow.loss) <= 1e-9 * slow.loss and not np.array_equal(
               fast.scales, mm.scales),
           "clip mse: lazy = column by column, other scales than min/max: %s g%s %s %s"
           % (scheme, group, actorder, scales))

    # the options
    for bad in (dict(actorder="static", scales="updated"), dict(actorder="weight"),
                dict(scales="new"), dict(block=0), dict(clip="max")):
        try:
            gptq(Wc, hessian(Xc), "int4", 32, **bad)
            ok(False, "refused: %s" % bad)
        except ValueError:
            ok(True, "refused: %s" % bad)

    # stored scale dtypes: BF16 scales are BF16 values, and codes are derived from them
    W, X = weights[CORRELATED], inputs[CORRELATED[:-7]]
    Wb = ct_check.round_to_dtype(W, "BF16")
    r = gptq(Wb, hessian(X), "int4", 128, scale_dtype="BF16")
    ok(np.array_equal(ct_check.round_to_dtype(r.scales, "BF16"), r.scales),
       "BF16 scales are BF16 values")

    # the fixture files: layout and values
    import tempfile
    import h5py
    with tempfile.TemporaryDirectory() as tmp:
        make(tmp)
        m = ct_check.Model(os.path.join(tmp, "model.safetensors"))
        sel = ct_check.expected_quantized(m, "int4", ct_check.DEFAULT_EXCLUDES)
        ok(sel == sorted(FIXTURE), "the default exclusions select exactly the fixture's Linear "
           "layers: %s" % sel)
        with h5py.File(os.path.join(tmp, "calib.h5"), "r") as h5:
            ok(sorted(h5.attrs) == ["dataset", "model", "mq_calib_version", "num_samples"],
               "calib.h5 root attributes %s" % sorted(h5.attrs))
            for name, (shape, rows, _) in FIXTURE.items():
                d = h5[name[:-7]]["inputs"]
                ok(d.shape == (rows, shape[1]) and d.dtype == np.float32
                   and d.chunks == (min(CHUNK_ROWS, rows), shape[1])
                   and np.array_equal(d[:], inputs[name[:-7]]),
                   "%s/inputs: %s float32, chunked by rows" % (name[:-7], d.shape))
        ok(np.array_equal(m.floats(CORRELATED), weights[CORRELATED]), "weights stored as F32")
        make(tmp, "BF16")
        m = ct_check.Model(os.path.join(tmp, "model.safetensors"))
        ok(m.entry(CORRELATED).dtype == "BF16" and np.array_equal(
            m.floats(CORRELATED), ct_check.round_to_dtype(weights[CORRELATED], "BF16")),
            "--dtype BF16 stores the rounded weights")
        make(tmp, "F32", overflow=True)
        m = ct_check.Model(os.path.join(tmp, "model.safetensors"))
        X = read_calib(os.path.join(tmp, "calib.h5"), OVERFLOW_LAYER[:-7])
        H = hessian(X)
        W = m.floats(OVERFLOW_LAYER).reshape(64, 128)
        r = gptq(W, H, "int4", 128)
        q, s, zp = rtn(W, "int4", 128)
        ok(np.all(np.isfinite(X)) and not np.all(np.isfinite(H)) and np.all(np.isfinite(
            np.asarray(X, np.float64).T @ X)) and r.fallback is not None and r.raised == 0
           and np.array_equal(r.codes, q) and np.any(r.dequant()[:, OVERFLOW_DEAD] != 0),
           "--overflow: finite inputs, a float32-overflowing H, the fallback: RTN of the original W")
    print("gptq_ref selftest: %s" % ("%d FAILED" % len(fails) if fails else "all passed"))
    return 1 if fails else 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="write DIR/model.safetensors and DIR/calib.h5")
    mk.add_argument("dir")
    mk.add_argument("--dtype", default="F32", choices=("F32", "BF16", "F16"))
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--overflow", action="store_true",
                    help="add a layer whose float32 X^T X overflows (GPTQ's fallback)")
    sh = sub.add_parser("show", help="the reference's per-layer figures")
    sh.add_argument("model")
    sh.add_argument("calib")
    sh.add_argument("--scheme", default="int4", choices=tuple(PACK_SCHEMES))
    sh.add_argument("--group-size", default="128", choices=("32", "64", "128", "channel"))
    sh.add_argument("--actorder", default="static", choices=ACTORDERS)
    sh.add_argument("--gptq-scales", default="original", choices=SCALES)
    sh.add_argument("--clip", default="minmax", choices=CLIPS)
    sh.add_argument("--damp", type=float, default=0.01)
    sh.add_argument("--block-size", type=int, default=128)
    sh.add_argument("--calib-samples", type=int)
    sub.add_parser("selftest", help="check the reference against a slow transcription, and more")
    a = ap.parse_args(argv)
    if a.cmd == "make":
        make(a.dir, a.dtype, a.seed, a.overflow)
        return 0
    if a.cmd == "show":
        return cmd_show(a)
    return selftest()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
