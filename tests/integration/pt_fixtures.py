#!/usr/bin/python3
"""Write PyTorch .pt fixtures for the mq-dist .pt tests.

    pt_fixtures.py KIND OUT [KIND OUT ...] [--seed S] [--marker PREFIX] [--from FILE]

Benign kinds are written by torch.save (zip format).  Each also writes a
companion OUT-stem.safetensors holding the same tensors (contiguous copies) with
the small safetensors writer below, so a run on the .pt can be compared with a
run on the .safetensors:

  model-sd   state_dict() of a small model: Linear, Conv2d, BatchNorm2d (int64
             num_batches_tracked), LayerNorm, Embedding
  wrapped    {'state_dict': sd, 'epoch': 3, 'lr': 0.001, 'note': 'x'}
  views      a non-contiguous slice, a large transposed weight, a view with a
             storage offset, tied weights (one tensor under two names)
  dtypes     storages of float32, float16, bfloat16 and float64 (f64.* names)
  legacy     torch.save(..., _use_new_zipfile_serialization=False) (no companion)

Hand-built kinds: a zip written with Python's zipfile (ZIP_STORED, data padded to
64 bytes as torch does) around a hand-written protocol-2 pickle; no pickle writer
is used, so the bytes are exactly the ones written here:

  control          a valid two-tensor state dict (with companion .safetensors)
  os-system        a state dict whose third value is os.system('touch MARKER')
  posix-system     the same through posix.system
  builtins-eval    builtins.eval("__import__('os').system('touch MARKER')")
  subprocess-popen subprocess.Popen(['touch', MARKER])
  short-storage    archive/data/0 is 4 bytes shorter than its storage
  stride-past-end  a [4, 4] view with stride (8, 1) of a 16-element storage
  outside-folder   an extra record other/x beside archive/
  outside-root     an extra record evil.txt at the top of the zip
  bad-cd-offset    the end record points the central directory past the end
  bad-local-offset a central entry points its local header past the end
  truncated        the control file cut in the middle (no end record)
  protocol4        the control state dict written with protocol-4 opcodes
                   (FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE)

  convert          --from FILE.safetensors: the tensors and __metadata__ of an
                   mq-dist output as the .pt mq-dist is meant to write (archive/
                   folder, archive/mq_metadata.json); a reference for pt_check.

The exec kinds need --marker PREFIX: an executed pickle of kind KIND would create the
file MARKER = PREFIX-KIND (each attack really runs under a naive pickle.load).
"""

import argparse
import collections
import json
import shlex
import struct
import sys
import zipfile

import numpy as np

TORCH_KINDS = ("model-sd", "wrapped", "views", "dtypes", "legacy")
HAND_KINDS = ("control", "os-system", "posix-system", "builtins-eval", "subprocess-popen",
              "short-storage", "stride-past-end", "outside-folder", "outside-root",
              "bad-cd-offset", "bad-local-offset", "truncated", "protocol4", "convert")
EXEC_KINDS = ("os-system", "posix-system", "builtins-eval", "subprocess-popen")
ALIGN = 64

# safetensors dtype -> (torch storage class, element size, numpy dtype of the raw bits)
STORAGE = {
    "F64": ("DoubleStorage", 8, "<u8"), "F32": ("FloatStorage", 4, "<u4"),
    "F16": ("HalfStorage", 2, "<u2"), "BF16": ("BFloat16Storage", 2, "<u2"),
    "I64": ("LongStorage", 8, "<i8"), "I32": ("IntStorage", 4, "<i4"),
    "I16": ("ShortStorage", 2, "<i2"), "I8": ("CharStorage", 1, "<i1"),
    "U8": ("ByteStorage", 1, "<u1"), "BOOL": ("BoolStorage", 1, "<u1"),
}


# ---------------------------------------------------------------- protocol-2 pickle opcodes

class Pickle:
    """Builds pickle bytes opcode by opcode.  proto4 swaps in the protocol-4 forms
    (STACK_GLOBAL, SHORT_BINUNICODE, MEMOIZE, one FRAME) that mq-dist must refuse."""

    def __init__(self, proto4=False):
        self.proto4 = proto4
        self.out = bytearray()

    def op(self, b):
        self.out += b
        return self

    def str(self, s):
        b = s.encode("utf-8")
        if self.proto4 and len(b) < 256:
            return self.op(b"\x8c" + bytes([len(b)]) + b + b"\x94")      # SHORT_BINUNICODE, MEMOIZE
        return self.op(b"X" + struct.pack("<I", len(b)) + b)            # BINUNICODE

    def glob(self, module, name):
        if self.proto4:
            self.str(module).str(name)
            return self.op(b"\x93")                                     # STACK_GLOBAL
        return self.op(b"c" + module.encode() + b"\n" + name.encode() + b"\n")  # GLOBAL

    def int(self, v):
        if 0 <= v < 256:
            return self.op(b"K" + bytes([v]))                           # BININT1
        if 0 <= v < 65536:
            return self.op(b"M" + struct.pack("<H", v))                 # BININT2
        if -2 ** 31 <= v < 2 ** 31:
            return self.op(b"J" + struct.pack("<i", v))                 # BININT
        n = (v.bit_length() + 8) // 8
        return self.op(b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True))  # LONG1

    def tuple(self, items):
        """items: a list of ints."""
        if not items:
            return self.op(b")")                                        # EMPTY_TUPLE
        if len(items) > 3:
            self.op(b"(")                                               # MARK
        for v in items:
            self.int(v)
        return self.op({1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(items), b"t"))

    def ordered_dict(self):
        return self.glob("collections", "OrderedDict").op(b")R")      # EMPTY_TUPLE, REDUCE

    def tensor(self, storage_cls, key, numel, offset, size, stride):
        """_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())."""
        self.glob("torch._utils", "_rebuild_tensor_v2").op(b"(")
        self.op(b"(").str("storage").glob("torch", storage_cls).str(key).str("cpu")
        self.int(numel).op(b"tQ")                                       # TUPLE, BINPERSID
        self.int(offset).tuple(size).tuple(stride).op(b"\x89")          # NEWFALSE
        return self.ordered_dict().op(b"tR")                            # TUPLE, REDUCE

    def bytes(self):
        body = bytes(self.out) + b"."                                   # STOP
        if self.proto4:
            return b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body  # PROTO 4, FRAME
        return b"\x80\x02" + body                                       # PROTO 2


def state_dict_pickle(entries, proto4=False, evil=None):
    """An OrderedDict pickle.  entries: (name, storage class, key, numel, offset, size,
    stride).  evil: (key, writer function) adds one more value written by the function."""
    p = Pickle(proto4)
    p.ordered_dict().op(b"(")                                           # MARK
    for name, cls, key, numel, offset, size, stride in entries:
        p.str(name).tensor(cls, key, numel, offset, size, stride)
    if evil:
        p.str(evil[0])
        evil[1](p)
    p.op(b"u")                                                          # SETITEMS
    return p.bytes()


def exec_call(kind, marker):
    """A writer of the pickled call that would run `touch MARKER` if executed."""
    cmd = "touch " + shlex.quote(marker)

    def write(p):
        if kind == "os-system":
            p.glob("os", "system").str(cmd).op(b"\x85R")                # TUPLE1, REDUCE
        elif kind == "posix-system":
            p.glob("posix", "system").str(cmd).op(b"\x85R")
        elif kind == "builtins-eval":
            p.glob("builtins", "eval").str("__import__('os').system(%r)" % cmd).op(b"\x85R")
        elif kind == "subprocess-popen":
            p.glob("subprocess", "Popen").op(b"]").str("touch").op(b"a")  # EMPTY_LIST, APPEND
            p.str(marker).op(b"a\x85R")
    return write


# ---------------------------------------------------------------- zip writing

def write_zip(path, records):
    """A ZIP_STORED archive of (name, bytes) records, each record's data starting at a
    multiple of 64 bytes (torch's 'FB' padding extra field in the local header)."""
    with open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for name, data in records:
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_STORED
            start = f.tell() + 30 + len(name.encode("utf-8")) + 4
            pad = -start % ALIGN
            zi.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            zf.writestr(zi, data)


def eocd_offset(data):
    """Offset of the end-of-central-directory record (no zip comment is written)."""
    pos = data.rfind(b"PK\x05\x06")
    if pos < 0:
        raise SystemExit("no end of central directory record")
    return pos


# ---------------------------------------------------------------- hand-built archives

def control_tensors(seed):
    """The two tensors of the hand-built archives, as float32 arrays."""
    rng = np.random.default_rng([seed, 77])
    w = (rng.standard_normal((4, 8)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(4) * 0.01).astype(np.float32)
    return collections.OrderedDict([("layer.weight", w), ("layer.bias", b)])


def hand_built(kind, out, seed, marker):
    tensors = control_tensors(seed)
    w, b = tensors["layer.weight"], tensors["layer.bias"]
    entries = [("layer.weight", "FloatStorage", "0", 32, 0, [4, 8], [8, 1]),
               ("layer.bias", "FloatStorage", "1", 4, 0, [4], [1])]
    data0, data1 = w.astype("<f4").tobytes(), b.astype("<f4").tobytes()
    evil = None
    if kind in EXEC_KINDS:
        if not marker:
            raise SystemExit("kind %s needs --marker PATH" % kind)
        evil = ("pwn", exec_call(kind, "%s-%s" % (marker, kind)))
    if kind == "short-storage":
        data0 = data0[:-4]
    if kind == "stride-past-end":
        entries[0] = ("layer.weight", "FloatStorage", "0", 16, 0, [4, 4], [8, 1])
        data0 = data0[:64]
    pkl = state_dict_pickle(entries, proto4=(kind == "protocol4"), evil=evil)
    records = [("archive/data.pkl", pkl), ("archive/data/0", data0),
               ("archive/data/1", data1), ("archive/version", b"3\n")]
    if kind == "outside-folder":
        records.append(("other/x", b"outside the archive folder\n"))
    if kind == "outside-root":
        records.append(("evil.txt", b"outside the archive folder\n"))
    write_zip(out, records)

    if kind in ("bad-cd-offset", "bad-local-offset", "truncated"):
        data = bytearray(open(out, "rb").read())
        end = eocd_offset(data)
        cd = struct.unpack_from("<I", data, end + 16)[0]
        if kind == "bad-cd-offset":
            struct.pack_into("<I", data, end + 16, len(data) + 4096)
        elif kind == "bad-local-offset":
            if data[cd:cd + 4] != b"PK\x01\x02":
                raise SystemExit("central directory not found")
            struct.pack_into("<I", data, cd + 42, len(data) + 4096)   # first entry: data.pkl
        else:
            data = data[:cd // 2]
        with open(out, "wb") as f:
            f.write(bytes(data))
    if kind == "control":
        write_safetensors(companion(out), [(n, "F32", list(a.shape), a.astype("<f4").tobytes())
                                           for n, a in tensors.items()])


def convert(src, out):
    """The .pt that mq-dist should write for a safetensors output file (reference)."""
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        base = 8 + n
        meta = head.pop("__metadata__", {})
        entries, records = [], []
        for i, name in enumerate(head):
            t = head[name]
            cls, size = STORAGE[t["dtype"]][:2]
            b, e = t["data_offsets"]
            f.seek(base + b)
            raw = f.read(e - b)
            shape = t["shape"]
            stride, acc = [], 1
            for d in reversed(shape):
                stride.insert(0, acc)
                acc *= d
            entries.append((name, cls, str(i), len(raw) // size, 0, shape, stride))
            records.append(("archive/data/%d" % i, raw))
    text = json.dumps(meta, separators=(",", ":"))
    pkl = state_dict_pickle(entries)
    write_zip(out, [("archive/data.pkl", pkl)] + records
              + [("archive/version", b"3\n"),
                 ("archive/mq_metadata.json", (text + " " * (-len(text) % 8)).encode())])


# ---------------------------------------------------------------- safetensors companion

def companion(out):
    stem = out
    for ext in (".pt", ".pth"):
        if stem.endswith(ext):
            stem = stem[:-len(ext)]
    return stem + ".safetensors"


def write_safetensors(path, tensors):
    """tensors: [(name, dtype, shape, raw little-endian bytes)].  8-byte header length,
    JSON header padded with spaces to a multiple of 8, tensors sorted by element size
    (widest first) then name, packed tightly from offset 0."""
    order = sorted(tensors, key=lambda t: (-STORAGE[t[1]][1], t[0].encode()))
    head, off = collections.OrderedDict([("__metadata__", {"format": "pt"})]), 0
    for name, dtype, shape, raw in order:
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    text = json.dumps(head, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for t in order:
            f.write(t[3])


# ---------------------------------------------------------------- torch.save kinds

def torch_raw(torch, t):
    """(safetensors dtype, shape, little-endian bytes of the logical contiguous data)."""
    names = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
             torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
             torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    dtype = names[t.dtype]
    c = t.detach().contiguous().clone().reshape(-1)
    if t.dtype != torch.bool:
        c = c.view(bits[STORAGE[dtype][1]])
    return dtype, list(t.shape), c.numpy().tobytes()


def small_model(torch, seed):
    nn = torch.nn
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 24)
            self.conv = nn.Conv2d(3, 12, 3)
            self.bn = nn.BatchNorm2d(12)
            self.blocks = nn.Sequential(nn.Linear(24, 40), nn.LayerNorm(40), nn.Linear(40, 24))
            self.head = nn.Linear(24, 10, bias=False)

    net = Net()
    net.train()
    with torch.no_grad():   # non-trivial running statistics, num_batches_tracked = 1
        net.bn(net.conv(torch.randn(2, 3, 7, 7)))
    return net.state_dict()


def views_dict(torch, seed):
    g = torch.Generator().manual_seed(seed)
    big = torch.randn(32, 16, generator=g) * 0.1
    w = torch.randn(1536, 3072, generator=g) * 0.02      # w.t() is 18 MiB: two 16 MiB chunks
    base = torch.randn(12, 16, generator=g) * 0.1
    tied = torch.randn(20, 16, generator=g) * 0.1
    vec = torch.randn(40, generator=g)
    return collections.OrderedDict([
        ("big.weight", big),
        ("sliced.weight", big[:, 2:7]),              # non-contiguous, shares big's storage
        ("proj.weight", w.t()),                      # transposed, stride (1, 3072)
        ("base.weight", base),
        ("offset.weight", base[3:]),                 # storage offset 48
        ("tied_a.weight", tied),
        ("tied_b.weight", tied),                     # the same tensor twice
        ("norm.bias", vec[5:25]),                    # 1-D view with an offset
        ("col.weight", big[:, 9]),                   # 1-D, stride 16
    ])


def dtypes_dict(torch, seed):
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for tag, dt in (("f32", torch.float32), ("f16", torch.float16),
                    ("bf16", torch.bfloat16), ("f64", torch.float64)):
        sd[tag + ".proj.weight"] = (torch.randn(24, 32, generator=g) * 0.05).to(dt)
        sd[tag + ".conv.weight"] = (torch.randn(6, 3, 3, 3, generator=g) * 0.1).to(dt)
        sd[tag + ".proj.bias"] = (torch.randn(24, generator=g) * 0.01).to(dt)
        sd[tag + ".scalar"] = torch.tensor(1.5, dtype=dt)
    sd["f16.proj.weight"][3, 7] = 60000.0                # large but within the float16 range
    sd["step"] = torch.tensor(7, dtype=torch.int64)
    return sd


def torch_kind(kind, out, seed):
    import torch
    if kind == "views":
        sd = views_dict(torch, seed)
    elif kind == "dtypes":
        sd = dtypes_dict(torch, seed)
    else:
        sd = small_model(torch, seed)
    if kind == "legacy":
        torch.save(sd, out, _use_new_zipfile_serialization=False)
        return
    obj = {"state_dict": sd, "epoch": 3, "lr": 0.001, "note": "x"} if kind == "wrapped" else sd
    torch.save(obj, out)
    write_safetensors(companion(out), [(n,) + tuple(torch_raw(torch, t)) for n, t in sd.items()])


def main(argv):
    ap = argparse.ArgumentParser(description="Write .pt fixtures for the mq-dist tests.")
    ap.add_argument("pairs", nargs="+", metavar="KIND OUT", help="kind and output path, repeated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--marker", metavar="PREFIX",
                    help="an executed attack of kind KIND creates PREFIX-KIND (exec kinds)")
    ap.add_argument("--from", dest="src", help="input .safetensors (convert)")
    args = ap.parse_args(argv)
    if len(args.pairs) % 2:
        ap.error("expected KIND OUT pairs")
    for kind, out in zip(args.pairs[0::2], args.pairs[1::2]):
        if kind in TORCH_KINDS:
            torch_kind(kind, out, args.seed)
        elif kind == "convert":
            if not args.src:
                ap.error("convert needs --from FILE.safetensors")
            convert(args.src, out)
        elif kind in HAND_KINDS:
            hand_built(kind, out, args.seed, args.marker)
        else:
            ap.error("unknown kind %r (one of %s)" % (kind, ", ".join(TORCH_KINDS + HAND_KINDS)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
