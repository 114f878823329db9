#!/usr/bin/python3
"""The benchmark's peer: per-channel symmetric int8 of a .safetensors file's 2-D weights in torch,
as a user writes it (one process, one tensor at a time, torch's own threads limited to one), saved
with torch.save. Prints the input GB/s.

Usage: peer_torch.py MODEL.safetensors OUT.pt
"""
import json
import struct
import sys
import time

import numpy as np
import torch

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.int16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def main():
    src, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    data = np.memmap(src, dtype=np.uint8, mode="r", offset=8 + n)
    result, bytes_in = {}, 0
    for name, t in header.items():
        a, b = t["data_offsets"]
        raw = np.asarray(data[a:b]).view(DTYPES[t["dtype"]]).reshape(t["shape"])
        w = torch.from_numpy(raw.copy())
        if t["dtype"] == "BF16":
            w = w.view(torch.bfloat16)
        bytes_in += b - a
        if w.dim() != 2 or not name.endswith(".weight"):
            result[name] = w
            continue
        w = w.float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        result[name] = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
        result[name[:-len("weight")] + "weight_scale"] = scale
    torch.save(result, out)
    dt = time.perf_counter() - t0
    print("peer_gbps %.3f" % (bytes_in / dt / 1e9))
    print("peer_s %.3f" % dt)


if __name__ == "__main__":
    main()
