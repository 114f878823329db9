#!/usr/bin/python3
"""End-to-end helper for test_calib_e2e.sh: builds a small torch model, writes its weights
(safetensors) and calibration (HDF5, through scripts/capture_calibration.py), and evaluates a
quantized file in torch: dequantized weights, and activations fake-quantized with the stored
static scales.

  calib_e2e.py make DIR              model.safetensors, calib.h5, bad-shape.h5, nan.h5, eval.pt
  calib_e2e.py eval DIR QUANT.safetensors [--scale-factor F]
      prints the relative output error of the quantized model against the float one
  calib_e2e.py check DIR QUANT.safetensors CALIB.h5
      recomputes each layer's output-space SQNR in torch and compares it with the metadata
"""
import argparse
import json
import math
import os
import struct
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.environ.get("MQ_SCRIPTS", os.path.join(os.path.dirname(__file__), "..", "..", "scripts")))
import capture_calibration  # noqa: E402


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(16 * 8 * 8, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()


def inputs(seed, n):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g)


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        b = tensors[name].astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    dt = {"F32": np.float32, "I8": np.int8, "U8": np.uint8}
    out = {}
    for k, v in h.items():
        if k != "__metadata__":
            s, e = v["data_offsets"]
            out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt[v["dtype"]]).reshape(v["shape"])
    return h["__metadata__"], out


def make(d):
    model = build()
    write_safetensors(os.path.join(d, "model.safetensors"), {k: v.numpy() for k, v in model.state_dict().items()})
    calib = inputs(1, 256)
    capture_calibration.capture(model, [calib[i:i + 32] for i in range(0, 256, 32)], os.path.join(d, "calib.h5"),
                                model_name="e2e", dataset="randn")
    torch.save(inputs(2, 64), os.path.join(d, "eval.pt"))
    # a layer captured from another model: in_features 64 instead of 1024
    with h5py.File(os.path.join(d, "calib.h5")) as src, h5py.File(os.path.join(d, "bad-shape.h5"), "w") as dst:
        for k in src:
            if k != "5":
                src.copy(src[k], dst, k)
        dst.create_dataset("5/inputs", data=np.ones((8, 64), np.float32))
    with h5py.File(os.path.join(d, "calib.h5")) as src, h5py.File(os.path.join(d, "nan.h5"), "w") as dst:
        for k in src:
            src.copy(src[k], dst, k)
        x = dst["7/inputs"][...]
        x[3, 5] = np.nan
        dst["7/inputs"][...] = x


def evaluate(d, quant, factor):
    model = build()
    meta, q = read_safetensors(quant)
    layers = json.loads(meta["layers"])
    state = {}
    for name, rec in layers.items():
        if rec["action"] != "quantized":
            state[name] = torch.from_numpy(q[name].copy())
            continue
        state[name] = dequantized(q, name)
    qmodel = build()
    qmodel.load_state_dict(state)
    hooks = []
    for mname, mod in qmodel.named_modules():
        key = mname + ".input_scale"
        if key not in q:
            continue
        scale = float(q[key][0]) * factor
        zp = 0.0
        if mname + ".input_zero_point" in q:   # int8-asym: an I8 zero point, codes in [-128, 127]
            assert q[mname + ".input_zero_point"].dtype == np.int8, q[mname + ".input_zero_point"].dtype
            zp = float(q[mname + ".input_zero_point"][0])
        lo, hi = -128.0, 127.0

        def pre(module, args, scale=scale, zp=zp, lo=lo, hi=hi):
            x = args[0]
            return (torch.clamp(torch.round(x / scale) + zp, lo, hi) - zp) * scale,
        hooks.append(mod.register_forward_pre_hook(pre))
    x = torch.load(os.path.join(d, "eval.pt"), weights_only=True)
    with torch.no_grad():
        y, yq = model(x), qmodel(x)
    print("%.6f %d" % (float((yq - y).norm() / y.norm()), len(hooks)))


def dequantized(q, name):
    base = name[:-len("weight")]
    w = q[name].astype(np.float32)
    s = q[base + "weight_scale"].astype(np.float32)
    zp = q.get(base + "weight_zero_point")
    zp = zp.astype(np.float32) if zp is not None else np.zeros_like(s)
    shape = (-1,) + (1,) * (w.ndim - 1)
    return torch.from_numpy((w - zp.reshape(shape)) * s.reshape(shape))


U32, U64 = 2.0 ** -24, 2.0 ** -53      # unit roundoff of float32 and float64


def gamma(n, u):
    return n * u / (1 - n * u)


def sqnr(y, yq):
    y, yq = y.double(), yq.double()
    return float(10 * torch.log10((y * y).sum() / ((y - yq) ** 2).sum()))


def fake_quant(x, s, zp):
    """mq-dist's fake quantization (pipeline/outspace.c), the same float32 operations: codes
    clamp(rne(x * (1/s)) + zp, -128, 127), then (q - zp) * s."""
    x = x.numpy().astype(np.float32)
    s, zp = np.float32(s), np.float32(zp)
    q = np.clip(np.rint(x * (np.float32(1) / s)) + zp, np.float32(-128), np.float32(127))
    return torch.from_numpy(((q - zp) * s).astype(np.float32))


LAMBDA = 10.0   # each probabilistic bound below fails with probability < 2K exp(-LAMBDA^2 / 2), ~1e-18


def db_range(want, s, n, ds, dn, rel):
    """Largest change of 10 log10(s / n) when s moves down by ds[0] or up by ds[1], n likewise,
    then the float64 sums of squares (rel) and %.9g (5e-9 relative)."""
    if dn[0] >= n or ds[0] >= s:
        return math.inf
    hi = 10 * math.log10((s + ds[1]) / (n - dn[0]) * (1 + rel) / (1 - rel))
    lo = 10 * math.log10((s - ds[0]) / (n + dn[1]) * (1 - rel) / (1 + rel))
    return max(hi - want, want - lo) + 5e-9 * abs(want)


def bernstein(var, b):
    """t with P(|sum| >= t) <= 2 exp(-LAMBDA^2 / 2) for a sum of independent mean-zero terms of
    total variance var, each bounded by b (Bernstein's inequality)."""
    c = LAMBDA * LAMBDA * b / 3
    return (c + math.sqrt(c * c + 4 * LAMBDA * LAMBDA * var)) / 2


def shift(v, bound, var):
    """(down, up) bounds on ||v + a||^2 - ||v||^2 = 2<v, a> + ||a||^2 for independent mean-zero
    a with |a| <= bound and var(a) <= var elementwise."""
    cross = 2 * bernstein(float((v * v * var).sum()), float((v.abs() * bound).max()))
    sq = float(var.sum()) + bernstein(float((bound ** 4).sum()), float((bound * bound).max()))
    return cross, cross + sq


def sqnr_bound(op, k, x, w, xh, wh):
    """The float64 SQNR of Y = op(x, w) against Yq = op(xh, wh), and two bounds on how far
    mq-dist's float32 products (OpenBLAS sgemm, any kernel: summation order, FMA or not) move it.
    Y~ = Y + a, Yq~ = Yq + b, E = Y - Yq; the squares are summed in float64 (gamma_M(2^-53)).
    worst case: |a| <= A = gamma_K(2^-24) op(|x|, |w|) elementwise, K the reduction length
      (Higham, Accuracy and Stability, 3.1), |b| <= B likewise: ||Y~|| is within ||A|| of ||Y||,
      ||Y~ - Yq~|| within ||A + B|| of ||E||.  Always true, but at K = 1024 and ~48 dB the error
      norms reach half the noise norm: it allows several dB, too loose to catch a bug (printed only).
    enforced: rounding errors as independent, mean-zero variables bounded by u = 2^-24 (Higham &
      Mary, SIAM J. Sci. Comput. 41, 2019): |a| <= A' = (exp(L sqrt(K) u + K u^2/(1-u)) - 1)
      op(|x|, |w|), and to first order var(a) <= K u^2 op(|x|, |w|)^2 (K - 1 additions whose
      partial sums are at most op(|x|, |w|), K products whose squares sum to at most its
      square).  The errors of different outputs, and of the two products, are independent, so
      <Y, a>, <E, a - b>, ||a||^2 and ||a - b||^2 follow Bernstein's inequality, L = 10.
      Observed: under 1% of this bound with OpenBLAS's Haswell, SkylakeX and Sandybridge kernels."""
    x, w, xh, wh = x.double(), w.double(), xh.double(), wh.double()
    y, yq = op(x, w), op(xh, wh)
    e = y - yq
    s, n = float((y * y).sum()), float((e * e).sum())
    want = 10 * math.log10(s / n)
    rel = gamma(y.numel(), U64)
    mag_w, mag_q = op(x.abs(), w.abs()), op(xh.abs(), wh.abs())
    ref = gamma(k, U64)                    # the float64 reference's own error, worst case
    g = gamma(k, U32) + ref
    ny, ne = math.sqrt(s), math.sqrt(n)
    dy, de = g * float(mag_w.norm()), g * float((mag_w + mag_q).norm())
    worst = math.inf
    if de < ne and dy < ny:
        worst = db_range(want, s, n, (s - (ny - dy) ** 2, (ny + dy) ** 2 - s),
                         (n - (ne - de) ** 2, (ne + de) ** 2 - n), rel)
    gp = math.expm1(LAMBDA * math.sqrt(k) * U32 + k * U32 * U32 / (1 - U32)) + ref
    var = k * U32 * U32
    ds = shift(y, gp * mag_w, var * mag_w ** 2)
    dn = shift(e, gp * (mag_w + mag_q), var * (mag_w ** 2 + mag_q ** 2))
    return want, worst, db_range(want, s, n, ds, dn, rel)


def check(d, quant, calib):
    """Each layer's output_sqnr_db_w and _wa against the float64 value, within the float32 bound
    of sqnr_bound (and torch's own float32 figure within the same bound).  Prints the largest
    deviation and its bound; exits 1 if a figure is outside its bound."""
    model = build()
    meta, q = read_safetensors(quant)
    layers = json.loads(meta["layers"])
    worst, bad = (0.0, 0.0, 1.0, ""), []
    with h5py.File(calib) as f, torch.no_grad():
        for mname, mod in model.named_modules():
            rec = layers.get(mname + ".weight")
            if rec is None or rec.get("calibration") != "static":
                continue
            x = torch.from_numpy(f[mname]["inputs"][:rec["calib_rows"]].astype(np.float32))
            w, wh = mod.weight, dequantized(q, mname + ".weight")
            k = w[0].numel()                       # in_features, or in_channels * kh * kw
            if isinstance(mod, torch.nn.Conv2d):
                op = lambda x, w: torch.nn.functional.conv2d(x, w, None, mod.stride, mod.padding, mod.dilation)
            else:
                op = lambda x, w: x @ w.T
            figures = [("w", rec["output_sqnr_db_w"], x)]
            if "input_scale" in rec:
                zp = q[mname + ".input_zero_point"][0] if mname + ".input_zero_point" in q else 0
                figures.append(("wa", rec["output_sqnr_db_wa"], fake_quant(x, q[mname + ".input_scale"][0], zp)))
            for tag, got, xh in figures:
                want, worst_case, bound = sqnr_bound(op, k, x, w, xh, wh)
                if not math.isfinite(bound):   # the products' error could hide any noise
                    bad.append("layer %s %s: no finite float32 bound at %.3g dB" % (mname, tag, want))
                    continue
                t32 = sqnr(op(x, w), op(xh, wh))
                print("layer %s %s (K %d): float64 %.6f dB, mq-dist %+.2g, torch float32 %+.2g, "
                      "bound %.2g (worst case %.2g)" % (mname, tag, k, want, got - want, t32 - want, bound, worst_case))
                for who, value in (("mq-dist", got), ("torch float32", t32)):
                    dev = abs(value - want)
                    if dev / bound > worst[0]:
                        worst = (dev / bound, dev, bound, "%s %s %s" % (who, mname, tag))
                    if not dev <= bound:
                        bad.append("layer %s %s: %s %.9g dB, float64 %.9g dB: deviation %.3g > bound %.3g"
                                   % (mname, tag, who, value, want, dev, bound))
    for line in bad:
        print("FAIL: " + line)
    print("max deviation %.3g dB, %.2g%% of its bound %.3g dB (%s)"
          % (worst[1], 100 * worst[0], worst[2], worst[3]))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "eval", "check"])
    ap.add_argument("dir")
    ap.add_argument("quant", nargs="?")
    ap.add_argument("calib", nargs="?")
    ap.add_argument("--scale-factor", type=float, default=1.0)
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.dir)
    elif a.cmd == "check":
        sys.exit(check(a.dir, a.quant, a.calib))
    else:
        evaluate(a.dir, a.quant, a.scale_factor)


if __name__ == "__main__":
    main()
