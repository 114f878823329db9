#!/usr/bin/python3
"""Writes synthetic calibration activations for a safetensors model, for benchmarks and tests.

For every 2-D `.weight` tensor of MODEL (a Linear layer), the group `<layer>/inputs` gets
ROWS x in_features float32 values (ReLU of a seeded normal, with rare large outliers), written in
blocks so that memory stays small whatever the size. The layout is the one README "Calibration"
describes.

  make_calibration.py MODEL.safetensors OUT.h5 --rows 16384 [--seed 0] [--skip REGEX]
"""
import argparse
import json
import re
import struct

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default=r"embed|lm_head", help="layers to leave out (regex)")
    a = ap.parse_args()
    with open(a.model, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    rng = np.random.default_rng(a.seed)
    with h5py.File(a.out, "w") as h5:
        h5.attrs["model"] = a.model.rsplit("/", 1)[-1]
        h5.attrs["dataset"] = "synthetic relu(normal)"
        h5.attrs["num_samples"] = np.int64(a.rows)
        h5.attrs["mq_calib_version"] = np.int64(1)
        for name, t in sorted(header.items()):
            if name == "__metadata__" or not name.endswith(".weight") or len(t["shape"]) != 2:
                continue
            if re.search(a.skip, name):
                continue
            width = t["shape"][1]
            chunk = max(1, min(a.rows, (1 << 20) // (4 * width)))
            d = h5.create_dataset(name[:-len(".weight")] + "/inputs", shape=(a.rows, width), dtype="f4",
                                  chunks=(chunk, width), maxshape=(None, width))
            step = max(chunk, (16 << 20) // (4 * width) // chunk * chunk)
            for r in range(0, a.rows, step):
                k = min(step, a.rows - r)
                x = np.maximum(rng.standard_normal((k, width), dtype=np.float32), 0)
                x[rng.random((k, width)) < 1e-4] *= 20
                d[r:r + k] = x


if __name__ == "__main__":
    main()
