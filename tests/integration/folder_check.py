#!/usr/bin/python3
"""Checks of mq-dist's Hugging Face model folder output, for tests/integration/test_folder.sh.

    folder_check.py check IN_DIR OUT_DIR --scheme S [--group-size 32|64|128|channel]
                    [--keep REGEX]... [--single | --min-shards K] [--ct]
    folder_check.py decorate DIR        add the files a real model folder has around the weights
    folder_check.py hub DIR CACHE       a Hugging Face hub cache of DIR (every file a symlink into
                                        blobs/); prints the snapshot folder
    folder_check.py max-shard DIR       prints the largest number of tensor data bytes in a shard

check (written from LOWBIT.md B.3/B.4 and A.3-A.5, not from mq-dist's C code):
  - config.json: parsed strictly (no duplicate keys, no NaN); every key of the input's config.json
    is there with the same value and the same JSON types (recursively), the only other key is
    "quantization_config", which must equal the scheme's expected object exactly (written out
    below); the file's bytes must be json.dumps(obj, indent=2, sort_keys=True) of itself.
  - the shards: one model.safetensors (--single), or model-0000i-of-0000n.safetensors and
    model.safetensors.index.json = {"metadata": {"total_size": N}, "weight_map": {...}}; the map
    names exactly the tensors of the shards, each in its own shard, N = the sum of their data
    bytes.  Every shard parses as safetensors strictly (8-aligned header, offsets contiguous from 0
    to the end of the file, sizes = dtype x shape) and has a __metadata__ of strings with a
    "fingerprint" (the same in every shard) and "scheme".
  - the tensors: every Linear weight (2-D *.weight, not lm_head or embed_tokens, not --keep) has
    exactly the compressed-tensors names of the scheme with their dtypes and shapes; every other
    tensor is there under its own name, byte-identical to the input's (dtype, shape, data).
  - the other files: every non-hidden file of the input that is not a weight file (*.safetensors,
    *.bin, *.pth), config.json or the index is copied, a regular file (not a link) with the same
    bytes; the output holds nothing else (no hidden files or folders, no stray weights, no links).
  - --ct: the shards merged into one file (with the first shard's metadata) and handed to
    ct_check.py (the independent decompressor: codes, scales and SQNR recomputed).  Pack schemes
    and fp8 only.
Prints "FAIL: ..." per failed check and "folder_check: N checks passed, M failed"; exits 1 on any.
"""

import argparse
import hashlib
import json
import math
import os
import re
import stat
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

ELEM = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
        "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
PACK = {"int4": 4, "w8a16": 8}
WEIGHT_FILES = (".safetensors", ".bin", ".pth")
SHARD_RE = re.compile(r"^model-(\d{5})-of-(\d{5})\.safetensors$")


# ---------------------------------------------------------------- the expected quantization_config

def args_block(bits, typ, strategy, group_size, dynamic, observer):
    return {"actorder": None, "block_structure": None, "dynamic": dynamic, "group_size": group_size,
            "num_bits": bits, "observer": observer, "observer_kwargs": {}, "strategy": strategy,
            "symmetric": True, "type": typ}


def expected_qconfig(scheme, group_size, ignore):
    """LOWBIT.md B.3, with the group size and ignore list of the run."""
    if scheme in PACK:
        gs = None if group_size == "channel" else int(group_size)
        weights = args_block(PACK[scheme], "int", "channel" if gs is None else "group", gs, False,
                             "minmax")
        fmt, inputs = "pack-quantized", None
    elif scheme == "int8":
        weights = args_block(8, "int", "channel", None, False, "minmax")
        fmt, inputs = "int-quantized", args_block(8, "int", "token", None, True, None)
    elif scheme == "fp8":
        weights = args_block(8, "float", "channel", None, False, "minmax")
        fmt, inputs = "float-quantized", args_block(8, "float", "token", None, True, None)
    else:
        raise SystemExit("folder_check.py: no expected quantization_config for %s" % scheme)
    return {
        "config_groups": {"group_0": {"format": fmt, "input_activations": inputs,
                                      "output_activations": None, "targets": ["Linear"],
                                      "weights": weights}},
        "format": fmt,
        "global_compression_ratio": None,
        "ignore": ignore,
        "kv_cache_scheme": None,
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
        "sparsity_config": {},
        "transform_config": {},
        "version": "0.12.2",
    }


# ---------------------------------------------------------------- reading

class Bad(Exception):
    pass


def no_dups(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise Bad("duplicate key %r" % k)
        d[k] = v
    return d


def no_constant(name):
    raise Bad("non-standard JSON constant %s" % name)


def strict_json(raw, what):
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=no_dups, parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError, Bad) as e:
        raise Bad("%s is not strict JSON: %s" % (what, e)) from None


class Shard:
    """A safetensors file, checked as strictly as the safetensors library reads it."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            blob = f.read()
        name = os.path.basename(path)
        if len(blob) < 8:
            raise Bad("%s: %d bytes" % (name, len(blob)))
        n = struct.unpack("<Q", blob[:8])[0]
        if 8 + n > len(blob):
            raise Bad("%s: header length %d runs past the end" % (name, n))
        if n % 8:
            raise Bad("%s: header length %d is not a multiple of 8" % (name, n))
        head = strict_json(blob[8:8 + n], name + " header")
        if not isinstance(head, dict):
            raise Bad("%s: header is not an object" % name)
        self.header_len = n
        self.data = memoryview(blob)[8 + n:]
        self.metadata = head.pop("__metadata__", None)
        if self.metadata is not None and not (isinstance(self.metadata, dict) and all(
                isinstance(v, str) for v in self.metadata.values())):
            raise Bad("%s: __metadata__ is not an object of strings" % name)
        self.tensors = {}
        spans = []
        for t, e in head.items():
            if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
                raise Bad("%s: %s: bad entry %r" % (name, t, e))
            dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
            if dtype not in ELEM:
                raise Bad("%s: %s: unknown dtype %r" % (name, t, dtype))
            if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
                raise Bad("%s: %s: bad shape %r" % (name, t, shape))
            if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)):
                raise Bad("%s: %s: bad data_offsets %r" % (name, t, offs))
            b, end = offs
            if end - b != math.prod(shape) * ELEM[dtype]:
                raise Bad("%s: %s: offsets [%d, %d] do not hold %s %s" % (name, t, b, end, dtype, shape))
            self.tensors[t] = (dtype, shape, b, end)
            spans.append((b, end, t))
        pos = 0
        for b, end, t in sorted(spans):
            if b != pos:
                raise Bad("%s: %s starts at %d, the previous tensor ends at %d (gap or overlap)"
                          % (name, t, b, pos))
            pos = end
        if pos != len(self.data):
            raise Bad("%s: tensors end at %d, the data is %d bytes" % (name, pos, len(self.data)))

    def raw(self, t):
        _, _, b, e = self.tensors[t]
        return bytes(self.data[b:e])

    def data_bytes(self):
        return sum(e - b for _, _, b, e in self.tensors.values())


def input_tensors(folder):
    """name -> (dtype, shape, bytes) of a model folder's weights."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, "rb") as f:
            files = sorted(set(strict_json(f.read(), "input index")["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fn in files:
        s = Shard(os.path.join(folder, fn))
        for t, (dtype, shape, _, _) in s.tensors.items():
            out[t] = (dtype, shape, s.raw(t))
    return out


# ---------------------------------------------------------------- checking

class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, msg):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL: " + msg)
        return ok


def same_json(a, b, where, diffs):
    """Equal values with equal JSON types, recursively; differences appended to diffs."""
    if type(a) is not type(b):
        diffs.append("%s: %r (%s) became %r (%s)" % (where, a, type(a).__name__, b, type(b).__name__))
    elif isinstance(a, dict):
        if set(a) != set(b):
            diffs.append("%s: keys %s missing, %s extra" % (where, sorted(set(a) - set(b)),
                                                             sorted(set(b) - set(a))))
        for k in sorted(set(a) & set(b)):
            same_json(a[k], b[k], "%s.%s" % (where, k), diffs)
    elif isinstance(a, list):
        if len(a) != len(b):
            diffs.append("%s: %d items became %d" % (where, len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            same_json(x, y, "%s[%d]" % (where, i), diffs)
    elif isinstance(a, float):
        if not (a == b and math.copysign(1, a) == math.copysign(1, b)):
            diffs.append("%s: %r became %r" % (where, a, b))
    elif a != b:
        diffs.append("%s: %r became %r" % (where, a, b))


def is_linear(name, shape):
    return (len(shape) == 2 and name.endswith(".weight")
            and not re.search(r"(^|\.)lm_head\.", name) and "embed" not in name)


def walk(folder):
    """(files, dirs) relative paths under folder; symlinked files count as files (not followed
    into symlinked folders)."""
    files, dirs = [], []
    for root, ds, fs in os.walk(folder):
        rel = os.path.relpath(root, folder)
        for d in ds:
            dirs.append(os.path.normpath(os.path.join(rel, d)))
        for f in fs:
            files.append(os.path.normpath(os.path.join(rel, f)))
    return sorted(files), sorted(dirs)


def expected_copies(in_dir):
    files, _ = walk(in_dir)
    out = []
    for rel in files:
        parts = rel.split(os.sep)
        if any(p.startswith(".") for p in parts):
            continue
        if parts[-1].endswith(WEIGHT_FILES):
            continue
        if rel in ("config.json", "model.safetensors.index.json"):
            continue
        out.append(rel)
    return out


def check_config(rep, in_dir, out_dir, want_q):
    with open(os.path.join(in_dir, "config.json"), "rb") as f:
        cin = strict_json(f.read(), "input config.json")
    with open(os.path.join(out_dir, "config.json"), "rb") as f:
        raw = f.read()
    try:
        cout = strict_json(raw, "output config.json")
    except Bad as e:
        rep.check(False, str(e))
        return
    if not rep.check(isinstance(cout, dict), "config.json is not an object"):
        return
    rep.check(set(cout) == set(cin) | {"quantization_config"},
              "config.json keys: missing %s, extra %s" % (sorted(set(cin) - set(cout)),
                                                          sorted(set(cout) - set(cin) - {"quantization_config"})))
    diffs = []
    for k in sorted(set(cin) & set(cout)):
        same_json(cin[k], cout[k], k, diffs)
    rep.check(not diffs, "config.json values changed: %s" % "; ".join(diffs[:8]))
    got_q = cout.get("quantization_config")
    diffs = []
    same_json(want_q, got_q, "quantization_config", diffs)
    rep.check(not diffs, "quantization_config differs from the expected: %s" % "; ".join(diffs[:8]))
    want_raw = json.dumps(cout, indent=2, sort_keys=True).encode("utf-8")
    if not rep.check(raw == want_raw, "config.json bytes are not json.dumps(indent=2, sort_keys=True) "
                     "(%d bytes, Python's %d)" % (len(raw), len(want_raw))):
        for i, (x, y) in enumerate(zip(raw, want_raw)):
            if x != y:
                break
        else:
            i = min(len(raw), len(want_raw))
        print("  first difference at byte %d: got %r, Python writes %r"
              % (i, raw[max(0, i - 30):i + 30], want_raw[max(0, i - 30):i + 30]))


def load_shards(rep, out_dir, single, min_shards):
    """{file: Shard}, or None; checks the names, the index and the shards' metadata."""
    index_path = os.path.join(out_dir, "model.safetensors.index.json")
    top = sorted(f for f in os.listdir(out_dir) if f.endswith(".safetensors"))
    if single:
        rep.check(top == ["model.safetensors"], "expected one model.safetensors, found %s" % top)
        rep.check(not os.path.exists(index_path), "a single-shard output has an index")
        names = ["model.safetensors"]
        index = None
    else:
        if not rep.check(os.path.exists(index_path), "no model.safetensors.index.json"):
            return None, None
        with open(index_path, "rb") as f:
            try:
                index = strict_json(f.read(), "the index")
            except Bad as e:
                rep.check(False, str(e))
                return None, None
        names = sorted(set(index.get("weight_map", {}).values())) if isinstance(index, dict) else []
        n = len(names)
        want = ["model-%05d-of-%05d.safetensors" % (i, n) for i in range(1, n + 1)]
        rep.check(names == want, "the index's shards %s are not model-0000i-of-%05d" % (names, n))
        rep.check(top == want, "the folder's .safetensors files %s are not the index's %s" % (top, want))
        rep.check(n >= min_shards, "%d shards, expected at least %d" % (n, min_shards))
    shards = {}
    for fn in names:
        try:
            shards[fn] = Shard(os.path.join(out_dir, fn))
        except (Bad, OSError) as e:
            rep.check(False, "shard %s does not parse: %s" % (fn, e))
    if len(shards) != len(names):
        return None, None
    rep.passed += 1
    fps = set()
    for fn, s in shards.items():
        meta = s.metadata or {}
        fp = meta.get("fingerprint")
        rep.check(isinstance(fp, str) and len(fp) > 0, "%s: __metadata__ has no fingerprint" % fn)
        fps.add(fp)
    rep.check(len(fps) == 1, "the shards carry different fingerprints: %s" % sorted(map(str, fps)))
    if index is not None:
        rep.check(isinstance(index, dict) and set(index) == {"metadata", "weight_map"},
                  "index keys %s, expected metadata and weight_map" % sorted(index))
        wmap = index.get("weight_map", {})
        have = {t: fn for fn, s in shards.items() for t in s.tensors}
        n_tensors = sum(len(s.tensors) for s in shards.values())
        rep.check(n_tensors == len(have), "a tensor is in two shards")
        wrong = sorted(t for t in set(wmap) | set(have) if wmap.get(t) != have.get(t))
        rep.check(not wrong, "weight_map disagrees with the shards on %d tensors, e.g. %s"
                  % (len(wrong), [(t, wmap.get(t), have.get(t)) for t in wrong[:4]]))
        total = sum(s.data_bytes() for s in shards.values())
        meta = index.get("metadata")
        rep.check(isinstance(meta, dict) and set(meta) == {"total_size"}
                  and type(meta["total_size"]) is int and meta["total_size"] == total,
                  "index metadata %r, expected {'total_size': %d}" % (meta, total))
    return shards, index


def check_tensors(rep, inp, shards, scheme, group_size, keep):
    out = {}
    for fn, s in shards.items():
        for t, (dtype, shape, _, _) in s.tensors.items():
            out[t] = (dtype, shape, s, fn)
    expected = {}
    kept_modules = []
    for name, (dtype, shape, blob) in sorted(inp.items()):
        if is_linear(name, shape) and any(re.search(k, name) for k in keep):
            kept_modules.append(name[:-len(".weight")])
        if is_linear(name, shape) and not any(re.search(k, name) for k in keep):
            p = name[:-len("weight")]
            o, i = shape
            if scheme in PACK:
                bits = PACK[scheme]
                ng = 1 if group_size == "channel" else i // int(group_size)
                expected[p + "weight_packed"] = ("I32", [o, -(-i * bits // 32)], None)
                expected[p + "weight_scale"] = (dtype, [o, ng], None)
                expected[p + "weight_shape"] = ("I64", [2], struct.pack("<2q", o, i))
            elif scheme == "int8":
                expected[p + "weight"] = ("I8", [o, i], None)
                expected[p + "weight_scale"] = (("F32", dtype), [o, 1], None)
            else:
                expected[p + "weight"] = ("F8_E4M3", [o, i], None)
                expected[p + "weight_scale"] = ("F32", [o, 1], None)
        else:
            expected[name] = (dtype, shape, blob)
    missing = sorted(set(expected) - set(out))
    extra = sorted(set(out) - set(expected))
    rep.check(not missing, "the output lacks %d tensors: %s" % (len(missing), missing[:6]))
    rep.check(not extra, "the output has %d unexpected tensors: %s" % (len(extra), extra[:6]))
    bad = []
    for t in sorted(set(expected) & set(out)):
        wdt, wshape, wblob = expected[t]
        dtype, shape, s, fn = out[t]
        okd = dtype in wdt if isinstance(wdt, tuple) else dtype == wdt
        if not okd or shape != wshape:
            bad.append("%s: %s %s, expected %s %s" % (t, dtype, shape, wdt, wshape))
        elif wblob is not None and s.raw(t) != wblob:
            bad.append("%s (%s): bytes differ from the input's" % (t, fn) if t in inp
                       else "%s: value %r, expected %r" % (t, s.raw(t), wblob))
    rep.check(not bad, "%d tensors wrong: %s" % (len(bad), "; ".join(bad[:6])))
    return sorted(set(["lm_head"] + kept_modules))


def check_files(rep, in_dir, out_dir, shard_names):
    copies = expected_copies(in_dir)
    want = set(copies) | {"config.json"} | set(shard_names)
    if len(shard_names) > 1 or shard_names[0] != "model.safetensors":
        want.add("model.safetensors.index.json")
    files, dirs = walk(out_dir)
    rep.check(set(files) == want, "output files: missing %s, unexpected %s"
              % (sorted(want - set(files)), sorted(set(files) - want)))
    want_dirs = {os.path.dirname(c) for c in copies if os.path.dirname(c)}
    want_dirs = {os.sep.join(d.split(os.sep)[:k]) for d in want_dirs for k in range(1, len(d.split(os.sep)) + 1)}
    rep.check(set(dirs) == want_dirs, "output folders %s, expected %s" % (dirs, sorted(want_dirs)))
    links = [f for f in files + dirs if os.path.islink(os.path.join(out_dir, f))]
    rep.check(not links, "output entries that are symlinks: %s" % links)
    bad = []
    for rel in copies:
        p = os.path.join(out_dir, rel)
        if not os.path.lexists(p):
            continue
        st = os.lstat(p)
        if not stat.S_ISREG(st.st_mode):
            bad.append("%s is not a regular file" % rel)
            continue
        with open(os.path.join(in_dir, rel), "rb") as a, open(p, "rb") as b:
            if a.read() != b.read():
                bad.append("%s: bytes differ" % rel)
    rep.check(not bad, "copied files: %s" % "; ".join(bad))
    rep.check(len(copies) > 0, "the input has no files to copy (test setup)")


def ct_numeric(rep, in_dir, shards, scheme, group_size, keep):
    sys.path.insert(0, HERE)
    import ct_check  # the independent decompressor; not ours to change
    index = os.path.join(in_dir, "model.safetensors.index.json")
    inp = index if os.path.exists(index) else os.path.join(in_dir, "model.safetensors")
    first = shards[sorted(shards)[0]]
    entries, blobs, off = {}, [], 0
    for fn in sorted(shards):
        s = shards[fn]
        for t, (dtype, shape, b, e) in sorted(s.tensors.items(), key=lambda kv: kv[1][2]):
            entries[t] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + e - b]}
            blobs.append(s.data[b:e])
            off += e - b
    head = json.dumps(dict({"__metadata__": first.metadata}, **entries)).encode()
    head += b" " * (-len(head) % 8)
    with tempfile.TemporaryDirectory() as tmp:
        merged = os.path.join(tmp, "merged.safetensors")
        with open(merged, "wb") as f:
            f.write(struct.pack("<Q", len(head)) + head)
            for b in blobs:
                f.write(b)
        a = argparse.Namespace(input=inp, output=merged, scheme=scheme, group_size=group_size,
                               granularity="channel", input_scale=False, no_default_excludes=False,
                               exclude=list(keep), clip="minmax", max_shard_size=None, self_test=False)
        r = ct_check.run(a)
    if r is None:
        rep.check(False, "ct_check could not read the merged shards")
        return
    rep.check(r.failed == 0, "ct_check on the merged shards: %d checks failed (FAIL lines above)"
              % r.failed)
    rep.passed += r.passed
    print("ct_check: %d checks passed, %d failed" % (r.passed, r.failed))


def cmd_check(a):
    rep = Report()
    try:
        inp = input_tensors(a.in_dir)
    except (Bad, OSError) as e:
        print("folder_check: the input cannot be read: %s" % e)
        return 2
    shards, _ = load_shards(rep, a.out_dir, a.single, a.min_shards)
    ignore = None
    if shards:
        ignore = check_tensors(rep, inp, shards, a.scheme, a.group_size, a.keep)
        for fn, s in shards.items():
            rep.check((s.metadata or {}).get("scheme") == a.scheme,
                      "%s: metadata scheme %r, expected %r" % (fn, (s.metadata or {}).get("scheme"), a.scheme))
        check_files(rep, a.in_dir, a.out_dir, sorted(shards))
    want_ignore = ignore if ignore is not None else ["lm_head"]
    want_q = expected_qconfig(a.scheme, a.group_size, want_ignore)
    try:
        check_config(rep, a.in_dir, a.out_dir, want_q)
    except (Bad, OSError) as e:
        rep.check(False, "config.json: %s" % e)
    if a.ct and shards:
        ct_numeric(rep, a.in_dir, shards, a.scheme, a.group_size, a.keep)
    print("folder_check: %d checks passed, %d failed" % (rep.passed, rep.failed))
    return 1 if rep.failed else 0


# ---------------------------------------------------------------- setup helpers

def cmd_decorate(a):
    """What a downloaded model folder holds besides the weights, and a config.json with values a
    JSON rewriter can get wrong (non-ASCII and escaped text, -0.0, 1e-10, 3e+20, ints past 2^53,
    empty containers, 1.0 as a float)."""
    d = a.dir

    def put(rel, data):
        p = os.path.join(d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    put("README.md", "---\nlicense: other\n---\n# tiny llama \u2014 for tests\n".encode())
    put("original/params.json", b'{"dim": 256, "n_layers": 2}\n')
    put("original/tokenizer.model", bytes(range(256)) * 4)
    put("assets/notes with space.txt", b"copied byte for byte\r\n\x00\xff")
    put("original/consolidated.00.pth", b"PK\x03\x04 not a real checkpoint")
    put("pytorch_model.bin", b"PK\x03\x04 not a real checkpoint either")
    put("adapter_model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    put(".gitattributes", b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    put(".cache/huggingface/download/config.json.metadata", b"abc\n")
    put("original/.hidden_note", b"hidden\n")
    with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.update({"_name_or_path": "Mod\u00e8le/\u00fc\u6a21\u578b \"q\" \\ /\t\u0001 \U0001F600",
                "big_int": 2 ** 63 - 1, "past_2_53": 2 ** 53 + 1, "neg_zero": -0.0,
                "tiny": 1e-10, "huge": 3e20, "third": 1 / 3, "one_float": 1.0,
                "nested": {"z": [], "a": {}, "m": [1, 2.5, None, True, False, "x"]}})
    with open(os.path.join(d, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)   # unsorted, as transformers < 4.x did
        f.write("\n")
    return 0


def cmd_hub(a):
    """CACHE/models--test--tiny/{blobs/<sha256>, refs/main, snapshots/<rev>/...}: every file of
    DIR a relative symlink into blobs (as huggingface_hub lays out its cache)."""
    repo = os.path.join(a.cache, "models--test--tiny")
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = os.path.join(repo, "snapshots", rev)
    os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(rev)
    files, _ = walk(a.dir)
    for rel in files:
        with open(os.path.join(a.dir, rel), "rb") as f:
            data = f.read()
        h = hashlib.sha256(data).hexdigest()
        blob = os.path.join(repo, "blobs", h)
        if not os.path.exists(blob):
            with open(blob, "wb") as f:
                f.write(data)
        link = os.path.join(snap, rel)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    print(snap)
    return 0


def cmd_max_shard(a):
    # The largest tensor bytes of a shard holding more than one module: a limit from there up to
    # the one that cut the folder gives the same shards, as mq-dist closes a shard when the next
    # module does not fit (a module larger than the limit, alone in its shard, does not count).
    top = sorted(f for f in os.listdir(a.dir) if SHARD_RE.match(f) or f == "model.safetensors")
    sizes = []
    for f in top:
        sh = Shard(os.path.join(a.dir, f))
        modules = {t.rsplit(".", 1)[0] for t in sh.tensors}
        sizes.append((len(modules) > 1, sh.data_bytes()))
    print(max(b for multi, b in sizes if multi) if any(m for m, _ in sizes) else max(b for _, b in sizes))
    return 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("in_dir")
    c.add_argument("out_dir")
    c.add_argument("--scheme", required=True, choices=("int4", "w8a16", "int8", "fp8"))
    c.add_argument("--group-size", default="128", choices=("32", "64", "128", "channel"))
    c.add_argument("--keep", action="append", default=[], metavar="REGEX",
                   help="Linear weights expected kept (and their modules in ignore)")
    c.add_argument("--single", action="store_true", help="expect one model.safetensors")
    c.add_argument("--min-shards", type=int, default=2)
    c.add_argument("--ct", action="store_true", help="also run ct_check on the merged shards")
    d = sub.add_parser("decorate")
    d.add_argument("dir")
    h = sub.add_parser("hub")
    h.add_argument("dir")
    h.add_argument("cache")
    m = sub.add_parser("max-shard")
    m.add_argument("dir")
    a = ap.parse_args(argv)
    return {"check": cmd_check, "decorate": cmd_decorate, "hub": cmd_hub,
            "max-shard": cmd_max_shard}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
