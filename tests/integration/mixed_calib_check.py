#!/usr/bin/python3
"""Checks of mixed-precision outputs beyond mixed_check.py's: the candidates measured on the layers'
outputs (--calib), and the --min-sqnr floor.

    mixed_calib_check.py outspace INPUT CALIB.h5 OUTPUT [--measure-every N]
    mixed_calib_check.py floor OUTPUT DB

INPUT is the model mq-dist read, OUTPUT a .safetensors file or a model folder it wrote.

outspace: every quantized layer's candidates' sqnr_db against this checker's own figure.  The
  rows are those the choice measures (index a multiple of the stride: --measure-every, or less so
  that at least 512 rows are seen); Y = X W^T over the layer's first calib_rows calibration rows,
  Yk = Xk Wk^T with Wk the candidate's reference quantization (mixed_check.Cand.reference) and Xk
  the activations as the candidate runs them: int8 and int8-asym (W8A8) fake-quantized with the
  static scale of the percentile observer (calib_reference.observe, the default observer), the
  others as they are.  The SQNR is computed in float64; the tolerance is calib_e2e.sqnr_bound's
  (how far float32 products in any summation order move it) plus the printing (%.4f).  Where the
  stride is 1 the chosen candidate's figure is also the layer's own output SQNR (output_sqnr_db_wa
  for a W8A8 layer, output_sqnr_db_w otherwise: the same products in other blocks, so the same
  bound), and a W8A8 layer's input_scale is the reference scale.  fp8 candidates (e4m3 activations,
  which this checker has no reference of) are checked only where chosen at stride 1: their figure is
  the layer's own output_sqnr_db_wa (to 1e-3 dB: the same float32 products in other blocks).  mixed_precision says
  "error_space": "output".
floor: mixed_precision's min_sqnr is DB; each quantized layer's chosen candidate measured at
  least DB on every member of its item (q/k/v and gate/up are one), or the record says
  "promoted": "kept" and no candidate reaches it (the layer is not quantized then); "promoted":
  "wider" exactly where the smallest candidate does not reach it; the summary's counts equal the
  records'.

One line "FAIL: ..." per failed check, then "mixed_calib_check: N checks, M failed"; exit 1 if any
failed.
"""
import argparse
import glob
import json
import math
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from calib_e2e import fake_quant, sqnr_bound  # noqa: E402
from calib_reference import observe  # noqa: E402
from ct_check import Model, SafeTensors  # noqa: E402
from mixed_check import CAND_PRINT, Cand, family  # noqa: E402

W8A8 = ("int8", "int8-asym")   # the candidates that quantize their inputs (with static scales here)
FP8_ACTS = ("fp8",)            # and those that quantize them to e4m3


class Tally:
    def __init__(self):
        self.n = self.failed = 0

    def check(self, ok, msg):
        self.n += 1
        if not ok:
            self.failed += 1
            print("FAIL: " + msg)
        return ok

    def end(self):
        print("mixed_calib_check: %d checks, %d failed" % (self.n, self.failed))
        return 1 if self.failed or not self.n else 0


def outputs(path):
    """[(SafeTensors, __metadata__, layer records)] of an output file or of a folder's shards."""
    files = sorted(glob.glob(os.path.join(path, "*.safetensors"))) if os.path.isdir(path) else [path]
    out = []
    for f in files:
        st = SafeTensors(f)
        out.append((st, st.metadata, json.loads(st.metadata.get("layers", "{}"))))
    return out


def records(path):
    recs, meta = {}, None
    for _, m, layers in outputs(path):
        recs.update(layers)
        meta = meta or (m if "mixed_precision" in m else None)
    return recs, meta


def cmd_outspace(args):
    t = Tally()
    inp = Model(args.input)
    recs, meta = records(args.output)
    if not t.check(meta is not None, "%s: no mixed_precision in the metadata" % args.output):
        return t.end()
    mp = json.loads(meta["mixed_precision"])
    t.check(mp.get("error_space") == "output", "error_space %r, expected 'output'" % mp.get("error_space"))
    scales, stored = {}, {}
    for st, _, _ in outputs(args.output):
        for name in st.entries:
            if name.endswith(".input_scale"):
                stored[name] = float(st.floats(name).ravel()[0])
    worst = (0.0, "")
    with h5py.File(args.calib, "r") as f, torch.no_grad():
        for name in sorted(recs):
            rec = recs[name]
            if "candidates" not in rec:
                continue
            layer = name[:-len(".weight")]
            if not t.check(rec.get("calibration") == "static", "%s: calibration %r" % (name, rec.get("calibration"))):
                continue
            e = inp.entry(name)
            w = inp.floats(name).reshape(e.shape[0], -1)
            rows = w.shape[0]
            every = max(1, min(args.measure_every, rows // 512))
            x = torch.from_numpy(np.asarray(f[layer]["inputs"][:rec["calib_rows"]], np.float32).reshape(
                rec["calib_rows"], -1))
            ws = torch.from_numpy(np.ascontiguousarray(w[::every]))
            obs = observe(x.numpy().ravel(), "percentile", "int8")
            scales[layer] = float(obs["scale"])
            for cname, fig in rec["candidates"].items():
                c = Cand(cname)
                got = fig.get("sqnr_db")
                if c.scheme in FP8_ACTS:   # no reference of e4m3 activations here: the chosen = its own only
                    own = rec.get("output_sqnr_db_wa")
                    if every == 1 and cname == rec.get("chosen"):
                        t.check(own is not None and got is not None and abs(own - got) <= 1e-3,
                                "%s: the chosen %s measured %r, the layer's own output_sqnr_db_wa is %r"
                                % (name, cname, got, own))
                    continue
                wh = torch.from_numpy(np.ascontiguousarray(c.reference(w, e.dtype)[::every]))
                xh = fake_quant(x, obs["scale"], 0) if c.scheme in W8A8 else x
                want, _, bound = sqnr_bound(lambda a, b: a @ b.T, w.shape[1], x, ws, xh, wh)
                tol = bound + CAND_PRINT
                if got is None or not math.isfinite(want):
                    t.check(got is None and not math.isfinite(want), "%s %s: sqnr_db %r, reference %r"
                            % (name, cname, got, want))
                    continue
                dev = abs(got - want)
                worst = max(worst, (dev / tol, "%s %s" % (name, cname)))
                t.check(dev <= tol, "%s %s: sqnr_db %.4f, reference %.6f (every %d row): off by %.3g > %.3g"
                        % (name, cname, got, want, every, dev, tol))
                if every == 1 and cname == rec.get("chosen"):
                    key = "output_sqnr_db_wa" if c.scheme in W8A8 else "output_sqnr_db_w"
                    own = rec.get(key)
                    t.check(own is not None and abs(own - got) <= tol,
                            "%s: the chosen %s measured %.4f, the layer's own %s is %r" % (name, cname, got, key, own))
            if rec.get("chosen") in W8A8:
                s = stored.get(layer + ".input_scale")
                t.check(s is not None and abs(s - scales[layer]) <= 1e-6 * scales[layer],
                        "%s: input_scale %r, the observer's %.9g" % (layer, s, scales[layer]))
    print("worst deviation %.2f%% of its tolerance (%s)" % (100 * worst[0], worst[1]))
    return t.end()


def cmd_floor(args):
    t = Tally()
    recs, meta = records(args.output)
    if not t.check(meta is not None, "%s: no mixed_precision in the metadata" % args.output):
        return t.end()
    mp = json.loads(meta["mixed_precision"])
    t.check(abs(mp.get("min_sqnr", float("nan")) - args.db) <= 5e-5,
            "min_sqnr %r, expected %g" % (mp.get("min_sqnr"), args.db))
    fams = {}
    for name, rec in recs.items():
        if "candidates" in rec:
            fams.setdefault(family(name), []).append(name)

    def reaches(members, cname):   # the floor holds on every member of the item (README, --min-sqnr)
        figs = [recs[m]["candidates"].get(cname, {}).get("sqnr_db", -math.inf) for m in members]
        return all(v is None or v >= args.db - CAND_PRINT for v in figs)

    wider = kept = 0
    for key, members in sorted(fams.items(), key=lambda kv: str(kv[0])):
        names = set.intersection(*(set(recs[m]["candidates"]) for m in members))
        for m in members:
            rec, p = recs[m], recs[m].get("promoted")
            figs = rec["candidates"]
            # a fused member whose candidates are not those of its family is chosen alone
            item = members if set(figs) == names else [m]
            ok_names = [c for c in figs if reaches(item, c)]
            if p == "kept":
                kept += 1
                t.check(rec.get("chosen") is None and not ok_names,
                        "%s: kept by the floor, but chosen %r and %r reach it" % (m, rec.get("chosen"), ok_names))
                continue
            t.check(rec.get("chosen") in ok_names,
                    "%s: chosen %r, which does not reach %g dB on its item %s" % (m, rec.get("chosen"), args.db, item))
            smallest = min(figs, key=lambda c: figs[c]["bytes"])
            if p == "wider":
                wider += 1
                t.check(smallest not in ok_names, "%s: promoted, but its smallest candidate %s reaches the floor"
                        % (m, smallest))
            else:
                t.check(p is None and smallest in ok_names,
                        "%s: promoted %r, its smallest candidate %s %s the floor"
                        % (m, p, smallest, "reaches" if smallest in ok_names else "does not reach"))
    t.check(mp.get("promoted") == wider and mp.get("kept_by_min_sqnr") == kept,
            "summary promoted %r kept %r, the records %d and %d" % (mp.get("promoted"), mp.get("kept_by_min_sqnr"),
                                                                   wider, kept))
    print("floor %g dB: %d promoted, %d kept" % (args.db, wider, kept))
    return t.end()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("outspace")
    p.add_argument("input")
    p.add_argument("calib")
    p.add_argument("output")
    p.add_argument("--measure-every", type=int, default=8)
    p = sub.add_parser("floor")
    p.add_argument("output")
    p.add_argument("db", type=float)
    args = ap.parse_args(argv)
    return cmd_outspace(args) if args.cmd == "outspace" else cmd_floor(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
