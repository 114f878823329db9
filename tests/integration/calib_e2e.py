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


def sqnr(y, yq):
    y, yq = y.double(), yq.double()
    return float(10 * torch.log10((y * y).sum() / ((y - yq) ** 2).sum()))


def check(d, quant, calib):
    model = build()
    meta, q = read_safetensors(quant)
    layers = json.loads(meta["layers"])
    worst = 0.0
    with h5py.File(calib) as f, torch.no_grad():
        for mname, mod in model.named_modules():
            rec = layers.get(mname + ".weight")
            if rec is None or rec.get("calibration") != "static":
                continue
            x = torch.from_numpy(f[mname]["inputs"][:rec["calib_rows"]].astype(np.float32))
            w, wh = mod.weight, dequantized(q, mname + ".weight")
            if isinstance(mod, torch.nn.Conv2d):
                op = lambda x, w: torch.nn.functional.conv2d(x, w, None, mod.stride, mod.padding, mod.dilation)
            else:
                op = lambda x, w: x @ w.T
            y = op(x, w)
            got = rec["output_sqnr_db_w"]
            want = sqnr(y, op(x, wh))
            worst = max(worst, abs(got - want))
            if "input_scale" in rec:
                s = float(q[mname + ".input_scale"][0])
                zp, lo, hi = 0.0, -128.0, 127.0
                if mname + ".input_zero_point" in q:
                    zp = float(q[mname + ".input_zero_point"][0])
                xh = (torch.clamp(torch.round(x / s) + zp, lo, hi) - zp) * s
                worst = max(worst, abs(rec["output_sqnr_db_wa"] - sqnr(y, op(xh, wh))))
    print("%.6f" % worst)


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
        check(a.dir, a.quant, a.calib)
    else:
        evaluate(a.dir, a.quant, a.scale_factor)


if __name__ == "__main__":
    main()
