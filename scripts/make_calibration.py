#!/usr/bin/python3
"""Writes synthetic calibration activations for a safetensors model, for benchmarks and tests.

Every `.weight` tensor of MODEL that mq-dist quantizes by default gets a group, in the layout
README "Calibration" describes; the values are ReLU of a seeded normal, with rare large outliers,
written in blocks so that memory stays small whatever the size:

- a 2-D weight [out, in] (Linear): `<layer>/inputs` of ROWS x in float32 values;
- a 4-D weight [out, in, kh, kw] (Conv2d): `<layer>/inputs` of ROWS samples [in, H, W] (H = W =
  --conv-size, at least the kernel), and the group attributes stride (1, 1), padding
  (kh // 2, kw // 2), dilation (1, 1) and groups 1, as capture_calibration.py writes them.

  make_calibration.py MODEL.safetensors OUT.h5 --rows 16384 [--seed 0] [--skip REGEX] [--conv-size 8]

MODEL may also be a sharded model's model.safetensors.index.json (every shard's weights).
"""
import argparse
import json
import os
import re
import struct

import h5py
import numpy as np

BLOCK_BYTES = 16 << 20   # float32 bytes generated per block
CHUNK_BYTES = 1 << 20    # HDF5 chunks of about 1 MiB of rows


def activations(rng, shape):
    x = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0)
    x[rng.random(shape) < 1e-4] *= 20
    return x


def write_group(h5, layer, rng, rows, row_shape):
    """One layer's `inputs` dataset of `rows` rows of shape row_shape, chunked by rows."""
    width = int(np.prod(row_shape))
    chunk = max(1, min(rows, CHUNK_BYTES // (4 * width)))
    d = h5.create_dataset(layer + "/inputs", shape=(rows,) + row_shape, dtype="f4",
                          chunks=(chunk,) + row_shape, maxshape=(None,) + row_shape)
    step = max(chunk, BLOCK_BYTES // (4 * width) // chunk * chunk)
    for r in range(0, rows, step):
        k = min(step, rows - r)
        d[r:r + k] = activations(rng, (k,) + row_shape)
    return h5[layer]


def tensors(path):
    """name -> header entry of a .safetensors file, or of every shard of a model.safetensors.index.json."""
    if path.endswith(".json"):
        with open(path) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        base = os.path.dirname(path)
        out = {}
        for s in shards:
            out.update(tensors(os.path.join(base, s)))
        return out
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=4096, help="rows (Linear) or samples (Conv) per layer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default=r"embed|lm_head", help="layers to leave out (regex)")
    ap.add_argument("--conv-size", type=int, default=8, help="height and width of Conv inputs")
    a = ap.parse_args()
    header = tensors(a.model)
    rng = np.random.default_rng(a.seed)
    with h5py.File(a.out, "w") as h5:
        h5.attrs["model"] = a.model.rsplit("/", 1)[-1]
        h5.attrs["dataset"] = "synthetic relu(normal)"
        h5.attrs["num_samples"] = np.int64(a.rows)
        h5.attrs["mq_calib_version"] = np.int64(1)
        for name, t in sorted(header.items()):
            if name == "__metadata__" or not name.endswith(".weight") or len(t["shape"]) not in (2, 4):
                continue
            if re.search(a.skip, name):
                continue
            layer = name[:-len(".weight")]
            shape = t["shape"]
            if len(shape) == 2:
                write_group(h5, layer, rng, a.rows, (shape[1],))
                continue
            _, c_in, kh, kw = shape
            h, w = max(a.conv_size, kh), max(a.conv_size, kw)
            g = write_group(h5, layer, rng, a.rows, (c_in, h, w))
            g.attrs["stride"] = np.array([1, 1], dtype=np.int64)
            g.attrs["padding"] = np.array([kh // 2, kw // 2], dtype=np.int64)
            g.attrs["dilation"] = np.array([1, 1], dtype=np.int64)
            g.attrs["groups"] = np.int64(1)


if __name__ == "__main__":
    main()
