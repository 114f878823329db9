#!/usr/bin/python3
"""Capture the inputs of a PyTorch model's Linear and Conv2d layers into an
mq-dist calibration file (HDF5).

The file holds one group per layer, named by the layer's module path (the
weight's name without ".weight", e.g. "model.layers.0.mlp.down_proj"), with a
dataset "inputs":

  - nn.Linear: [rows, in_features], every leading dimension of the input
    flattened into rows;
  - nn.Conv2d: [n, in_channels, h, w], plus the group attributes stride,
    padding, dilation (2 values each) and groups.

Datasets are float32 (or float16 with --dtype float16), chunked by rows and
resizable along the rows, and are written batch by batch as the model runs,
so memory stays bounded whatever the number of batches. Root attributes:
model, dataset, num_samples (the number of samples fed, i.e. the sum of the
batch sizes) and mq_calib_version = 1.  The file is written under a temporary
name beside the output and renamed when complete: a failed run leaves nothing.

Command line:

    capture_calibration.py --model-module FILE.py --model-fn NAME --inputs FILE.pt
                           --out calib.h5 [--batch-size B] [--dtype float32|float16]
                           [--layers REGEX] [--model-name S] [--dataset S]

FILE.py defines NAME(), a function returning the nn.Module (with its weights
loaded). FILE.pt is one tensor saved with torch.save, whose first dimension
indexes samples; it is loaded with weights_only=True and fed to the model in
batches of B samples (default 32), as model(batch). --layers keeps only the
layers whose module path matches REGEX (re.search). Example:

    $ cat mymodel.py
    import torch
    def build():
        net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
        net.load_state_dict(torch.load("weights.pt"))
        return net
    $ python3 -c 'import torch; torch.save(torch.randn(512, 16), "calib_inputs.pt")'
    $ capture_calibration.py --model-module mymodel.py --model-fn build \\
          --inputs calib_inputs.pt --out calib.h5 --batch-size 64
    $ mq-dist inspect calib.h5 --observer percentile

As a library:

    from capture_calibration import capture
    capture(model, (x for x, _ in loader), "calib.h5", model_name="resnet18",
            dataset="imagenet-val[:512]")

A batch is a tensor (model(batch)), a tuple or list (model(*batch)) or a dict
(model(**batch)); its number of samples is the first dimension of its first
tensor. The model runs in eval mode under torch.no_grad(); its training flags
are restored afterwards.
"""

import argparse
import importlib.util
import os
import pickle
import re
import sys
import tempfile

import numpy as np
import torch

CALIB_VERSION = 1
CHUNK_BYTES = 1 << 20          # target chunk size: 1 MiB of rows
DTYPES = {"float32": (np.float32, torch.float32), "float16": (np.float16, torch.float16)}
F16_MAX = 65504.0

__all__ = ["capture", "capturable_layers", "chunk_rows"]


def chunk_rows(n_rows, row_bytes):
    """Rows per chunk: min(n_rows, max(1, 1 MiB // row_bytes)), at least 1."""
    return max(1, min(n_rows, max(1, CHUNK_BYTES // max(1, row_bytes))))


def capturable_layers(model):
    """{module path: module} for every nn.Linear and nn.Conv2d, in module order."""
    return {name: m for name, m in model.named_modules()
            if name and isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}


def _pair(x):
    return [int(x), int(x)] if isinstance(x, int) else [int(v) for v in x]


def _conv_padding(name, conv):
    """Conv2d padding as two ints (resolves padding='valid' / 'same')."""
    p = conv.padding
    if isinstance(p, str):
        if p == "valid":
            return [0, 0]
        out = []
        for k, d in zip(_pair(conv.kernel_size), _pair(conv.dilation)):
            total = d * (k - 1)
            if total % 2:
                raise ValueError(f"layer '{name}': padding='same' with an even kernel pads unevenly, "
                                 "which the calibration file cannot describe")
            out.append(total // 2)
        return out
    return _pair(p)


class _Writer:
    """Appends layer inputs to an open h5py.File, one batch at a time."""

    def __init__(self, f, layers, np_dtype, torch_dtype):
        self.f = f
        self.layers = layers
        self.np_dtype = np_dtype
        self.torch_dtype = torch_dtype

    def rows_of(self, name, module, x):
        """The input as a contiguous tensor in the file's layout ([rows, in] or [n, c, h, w])."""
        if isinstance(module, torch.nn.Linear):
            return x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x
        if x.dim() == 3:                       # unbatched conv input [c, h, w]
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise ValueError(f"layer '{name}': Conv2d input of rank {x.dim()}")
        return x

    def append(self, name, module, x):
        if not torch.is_tensor(x):
            raise TypeError(f"layer '{name}': input is a {type(x).__name__}, not a tensor")
        x = self.rows_of(name, module, x.detach())
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"layer '{name}': NaN or Inf in its inputs")
        if self.torch_dtype == torch.float16 and x.numel() and float(x.abs().max()) > F16_MAX:
            raise ValueError(f"layer '{name}': inputs beyond the float16 range (|x| > 65504); "
                             "use dtype float32")
        a = x.to(device="cpu", dtype=self.torch_dtype).contiguous().numpy()
        if name in self.f:
            ds = self.f[name]["inputs"]
            if ds.shape[1:] != a.shape[1:]:
                raise ValueError(f"layer '{name}': input shape {list(a.shape[1:])} differs from "
                                 f"the earlier {list(ds.shape[1:])}")
            if ds.dtype != a.dtype:
                raise ValueError(f"layer '{name}': the file holds {ds.dtype}, not {a.dtype}")
            n0 = ds.shape[0]
            ds.resize(n0 + a.shape[0], axis=0)
            ds[n0:] = a
            return
        g = self.f.create_group(name)
        row_bytes = int(np.prod(a.shape[1:], dtype=np.int64)) * a.itemsize
        chunks = (chunk_rows(a.shape[0], row_bytes),) + a.shape[1:]
        g.create_dataset("inputs", data=a, chunks=chunks, maxshape=(None,) + a.shape[1:])
        if isinstance(module, torch.nn.Conv2d):
            g.attrs["stride"] = np.array(_pair(module.stride), dtype=np.int64)
            g.attrs["padding"] = np.array(_conv_padding(name, module), dtype=np.int64)
            g.attrs["dilation"] = np.array(_pair(module.dilation), dtype=np.int64)
            g.attrs["groups"] = np.int64(module.groups)

    def hook(self, name):
        def pre_hook(module, args):      # an exception here ends the forward pass and capture()
            if not args:
                raise ValueError(f"layer '{name}' was called without a positional input")
            self.append(name, module, args[0])
        return pre_hook


def _batch_size(batch):
    if torch.is_tensor(batch):
        return int(batch.shape[0]) if batch.dim() else 1
    items = batch.values() if isinstance(batch, dict) else batch
    for x in items:
        if torch.is_tensor(x):
            return int(x.shape[0]) if x.dim() else 1
    raise TypeError("a batch holds no tensor")


def _to_device(batch, device):
    if device is None:
        return batch
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _model_device(model):
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return None


def _select(model, layers):
    found = capturable_layers(model)
    if layers is None:
        chosen = found
    else:
        chosen = {}
        modules = dict(model.named_modules())
        for name in layers:
            if name not in modules:
                raise ValueError(f"no module named '{name}' in the model")
            if name not in found:
                raise ValueError(f"module '{name}' is a {type(modules[name]).__name__}, "
                                 "not an nn.Linear or nn.Conv2d")
            chosen[name] = found[name]
    if not chosen:
        raise ValueError("the model has no nn.Linear or nn.Conv2d layer to capture")
    return chosen


def _open(path, append):
    import h5py
    if append and os.path.exists(path):
        f = h5py.File(path, "r+")
        version = f.attrs.get("mq_calib_version")
        if version is None or int(version) != CALIB_VERSION:
            f.close()
            raise ValueError(f"'{path}' is not an mq-dist calibration file of version {CALIB_VERSION}")
        return f, None
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)       # mkstemp makes it 0600; give it a normal file's mode
        return h5py.File(tmp, "w"), tmp
    except BaseException:
        os.unlink(tmp)
        raise


def capture(model, batches, path, model_name="", dataset="", layers=None, dtype="float32", append=False):
    """Runs `model` over `batches` and writes the inputs of its layers to the HDF5 file `path`.

    layers: None for every nn.Linear and nn.Conv2d, or an iterable of module paths.
    dtype: "float32" or "float16", the storage type of the inputs.
    append: extend an existing calibration file (its datasets and num_samples) instead of
    replacing it; the layers and their shapes must match.
    Returns {"num_samples": N, "layers": {name: shape}}.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    if isinstance(layers, str):
        layers = [layers]
    chosen = _select(model, list(layers) if layers is not None else None)
    f, tmp = _open(path, append)
    writer = _Writer(f, chosen, *DTYPES[dtype])
    handles = [m.register_forward_pre_hook(writer.hook(n)) for n, m in chosen.items()]
    training = {m: m.training for m in model.modules()}
    device = _model_device(model)
    ok = False
    try:
        if tmp is not None or "num_samples" not in f.attrs:
            f.attrs["model"] = str(model_name)
            f.attrs["dataset"] = str(dataset)
            f.attrs["num_samples"] = np.int64(0)
            f.attrs["mq_calib_version"] = np.int64(CALIB_VERSION)
        num = int(f.attrs["num_samples"])
        model.eval()
        with torch.no_grad():
            for batch in batches:
                n = _batch_size(batch)
                batch = _to_device(batch, device)
                if isinstance(batch, dict):
                    model(**batch)
                elif isinstance(batch, (list, tuple)):
                    model(*batch)
                else:
                    model(batch)
                num += n
                f.attrs["num_samples"] = np.int64(num)
        missing = [n for n in chosen if n not in f]
        if missing:
            print(f"capture_calibration: warning: never called, not in the file: {', '.join(missing)}",
                  file=sys.stderr)
        summary = {"num_samples": num,
                   "layers": {n: tuple(f[n]["inputs"].shape) for n in chosen if n in f}}
        ok = True
    finally:
        for h in handles:
            h.remove()
        for m, t in training.items():
            m.train(t)
        f.close()
        if tmp is not None:
            if ok:
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    return summary


def _load_model(module_file, fn_name):
    spec = importlib.util.spec_from_file_location(
        "_mq_calib_model_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(module_file))[0]),
        module_file)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load '{module_file}' as a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(module_file)))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.pop(0)
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ValueError(f"'{module_file}' has no function '{fn_name}'")
    model = fn()
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{fn_name}() returned a {type(model).__name__}, not an nn.Module")
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-module", required=True, metavar="FILE.py",
                    help="Python file defining the function that builds the model")
    ap.add_argument("--model-fn", required=True, metavar="NAME", help="function in FILE.py returning an nn.Module")
    ap.add_argument("--inputs", required=True, metavar="FILE.pt",
                    help="one tensor saved with torch.save; dimension 0 indexes samples")
    ap.add_argument("--out", required=True, metavar="calib.h5", help="the calibration file to write (replaced)")
    ap.add_argument("--batch-size", type=int, default=32, metavar="B", help="samples per forward pass (32)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="storage type (float32)")
    ap.add_argument("--layers", metavar="REGEX", help="capture only the layers whose module path matches")
    ap.add_argument("--model-name", help="the 'model' attribute (default: FILE:NAME)")
    ap.add_argument("--dataset", help="the 'dataset' attribute (default: the inputs file's name)")
    args = ap.parse_args(argv)
    if args.batch_size < 1:
        ap.error("--batch-size must be at least 1")
    try:
        model = _load_model(args.model_module, args.model_fn)
        x = torch.load(args.inputs, map_location="cpu", weights_only=True)
        if not torch.is_tensor(x) or x.dim() < 1:
            raise ValueError(f"'{args.inputs}' must hold one tensor with a sample dimension")
        layers = None
        if args.layers is not None:
            rx = re.compile(args.layers)
            layers = [n for n in capturable_layers(model) if rx.search(n)]
            if not layers:
                raise ValueError(f"no Linear or Conv2d layer matches --layers '{args.layers}'")
        name = args.model_name if args.model_name is not None else \
            f"{os.path.splitext(os.path.basename(args.model_module))[0]}:{args.model_fn}"
        dataset = args.dataset if args.dataset is not None else os.path.basename(args.inputs)
        summary = capture(model, torch.split(x, args.batch_size), args.out, model_name=name,
                          dataset=dataset, layers=layers, dtype=args.dtype)
    except (OSError, ValueError, TypeError, RuntimeError, re.error, pickle.UnpicklingError) as e:
        print(f"capture_calibration: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: {summary['num_samples']} samples, {len(summary['layers'])} layers")
    for n, shape in summary["layers"].items():
        print(f"  {n} {list(shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
