#!/usr/bin/python3
"""Write a small, deterministic Llama-shaped Hugging Face model folder for mq-dist's tests.

    make_hf_model.py OUT_DIR [--dtype BF16|F16|F32] [--layers L] [--shards K] [--hidden H]
                     [--intermediate I] [--vocab V] [--seed S] [--break-groups]
    make_hf_model.py --merge MODEL_DIR OUT.safetensors

OUT_DIR gets what a LlamaForCausalLM checkpoint folder holds: config.json, generation_config.json,
tokenizer.json (a byte-level BPE), tokenizer_config.json, special_tokens_map.json,
chat_template.jinja, and the weights in model-0000i-of-0000K.safetensors shards with
model.safetensors.index.json (a single model.safetensors with --shards 1).  Tensors: embed_tokens,
per layer q/k/v/o_proj (grouped-query attention, head_dim 64), gate/up/down_proj, input_layernorm,
post_attention_layernorm, then model.norm and an untied lm_head.

Values: every tensor from its own RNG, seeded with (seed, crc32(name)), so a tensor does not depend
on the sharding.  Linear weights are Student-t (5 degrees of freedom) with per-row scales, two
outlier input channels (x4 to x10) and a few single outliers (x5 to x20), std 0.02; norms are near 1 with a
few larger entries.  --break-groups sets intermediate_size to 200: down_proj then has in = 200,
divisible by 8 (it packs) but not by 32, 64 or 128 (group quantization must refuse it).
--edge-rows writes the quantizers' edge cases into a few rows of one weight and zeroes another.

--merge writes every tensor of a model folder (its index, or model.safetensors) into one
.safetensors file, the bytes unchanged, sorted by name.

Files are written by hand: an 8-byte little-endian header length, the JSON header padded with
spaces to a multiple of 8 bytes, then the tensors at contiguous offsets.  Prints nothing on success.
"""

import argparse
import json
import os
import struct
import sys
import zlib
from fractions import Fraction

import numpy as np

ELEM = {"F32": 4, "F16": 2, "BF16": 2}
TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
HEAD_DIM = 64
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>"]
TRANSFORMERS_VERSION = "4.46.0"


# ---------------------------------------------------------------- safetensors writing and reading

def header(entries, metadata):
    """Header bytes for [(name, dtype, shape, nbytes)], offsets in the given order."""
    head, off = {"__metadata__": metadata}, 0
    for name, dtype, shape, nbytes in entries:
        head[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + nbytes]}
        off += nbytes
    raw = json.dumps(head, separators=(",", ":")).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def write_safetensors(path, tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] written in that order; through a rename."""
    head = header([(n, d, s, len(b)) for n, d, s, b in tensors], metadata or {"format": "pt"})
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for _, _, _, blob in tensors:
            f.write(blob)
    os.replace(tmp, path)


def read_safetensors(path):
    """[(name, dtype, shape, bytes)] of a safetensors file, in offset order."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    head = json.loads(blob[8:8 + n].decode("utf-8"))
    head.pop("__metadata__", None)
    data = blob[8 + n:]
    out = []
    for name, e in sorted(head.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, end = e["data_offsets"]
        out.append((name, e["dtype"], e["shape"], data[b:end]))
    return out


def encode(x, dtype):
    """float32 array -> little-endian bytes of dtype (bf16 and f16 round to nearest even)."""
    x = np.ascontiguousarray(x, np.float32)
    if dtype == "F32":
        return x.astype("<f4").tobytes()
    if dtype == "F16":
        return x.astype("<f2").tobytes()
    u = x.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()


# ---------------------------------------------------------------- the model

def tensor_specs(cfg):
    """[(name, shape, kind)] in Hugging Face's order."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * HEAD_DIM
    specs = [("model.embed_tokens.weight", [v, h], "embed")]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        specs += [(p + "input_layernorm.weight", [h], "norm"),
                  (p + "mlp.down_proj.weight", [h, inter], "linear"),
                  (p + "mlp.gate_proj.weight", [inter, h], "linear"),
                  (p + "mlp.up_proj.weight", [inter, h], "linear"),
                  (p + "post_attention_layernorm.weight", [h], "norm"),
                  (p + "self_attn.k_proj.weight", [kv, h], "linear"),
                  (p + "self_attn.o_proj.weight", [h, h], "linear"),
                  (p + "self_attn.q_proj.weight", [h, h], "linear"),
                  (p + "self_attn.v_proj.weight", [kv, h], "linear")]
    specs += [("model.norm.weight", [h], "norm"), ("lm_head.weight", [v, h], "embed")]
    return specs


def values(name, shape, kind, seed):
    """Deterministic float32 values of one tensor."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    if kind == "norm":
        x = 1.0 + 0.05 * rng.standard_normal(shape)
        big = rng.choice(shape[0], size=3, replace=False)
        x[big] = rng.uniform(2.0, 6.0, size=3)
        return x.astype(np.float32)
    out, n = shape
    std = 0.02
    x = rng.standard_t(5, size=shape) * (std / np.sqrt(5 / 3))     # t5 has variance 5/3
    x *= rng.lognormal(0.0, 0.25, size=(out, 1))                    # per-row spread
    if kind == "linear":
        cols = rng.choice(n, size=2, replace=False)
        x[:, cols] *= rng.uniform(4.0, 10.0, size=2)
        k = max(1, x.size // 2000)
        idx = rng.choice(x.size, size=k, replace=False)
        x.reshape(-1)[idx] *= rng.uniform(5.0, 20.0, size=k)
    return x.astype(np.float32)


EDGE_TENSOR = "model.layers.0.self_attn.q_proj.weight"
ZERO_TENSOR = "model.layers.1.self_attn.v_proj.weight"


def near_ties(amax, div, ties):
    """F32 values x whose float32 quotient x / s, s = float32(amax / div), is exactly a tie t while
    the exact quotient is not: float32 and float64 division round them differently."""
    s = np.float32(amax) / np.float32(div)
    out = [np.float32(amax)]
    for t in ties:
        x = np.float32(t * float(s))
        for step in (0, 1, -1, 2, -2, 3, -3, 4, -4):
            y = x
            for _ in range(abs(step)):
                y = np.nextafter(y, np.float32(np.sign(step) * 1e9))
            if y / s == np.float32(t) and Fraction(float(y)) / Fraction(float(s)) != Fraction(t):
                out.append(y)
                break
    return np.array(out[:16], np.float64)


def edge_rows(n, rng, dtype):
    """Rows of n values for the quantizers' edge cases (each pattern tiles groups of 16)."""
    u = 2.0 ** -6
    sym_ties = (np.arange(-8, 8) + 0.5) * u                      # amax 7.5u: s = u, x/s = k + 0.5
    asym_ties = np.concatenate([[-4 * u, 11 * u], (np.arange(-4, 10) + 0.5) * u])   # s = u, zp 4
    fp8_pos = np.array([(8 + m) * 2.0 ** (e - 10) for e in range(1, 16) for m in range(8)][:-1])
    fp8_mids = (fp8_pos[:-1] + fp8_pos[1:]) / 2 * 2.0 ** -10     # amax 448 * 2^-10: s = 2^-10
    rows = [np.zeros(n),                                          # a zero row
            np.full(n, 0.03), np.full(n, -0.03),                  # constant rows
            rng.uniform(0.01, 0.05, n), -rng.uniform(0.01, 0.05, n),   # one-signed rows
            np.resize(sym_ties, n), np.resize(asym_ties, n),      # exact ties of x / s
            rng.uniform(-1e-7, 1e-7, n),                          # scale below 2^-23 (floored)
            np.where(np.arange(n) % 7 == 0, 1e-39, 0.0),          # subnormals
            np.concatenate([[50.0], rng.standard_normal(n - 1) * 0.02]),   # one huge outlier
            np.concatenate([[448 * 2.0 ** -10], np.resize(fp8_mids[::-1], n - 1)])]  # e4m3 ties
    if dtype == "F32":      # ties only in float32 arithmetic (int4 symmetric, then e4m3)
        rows.append(np.resize(near_ties(0.0917, 7.5, [4.5, 5.5, 6.5, -4.5, -5.5, -6.5, -7.5]), n))
        row = near_ties(0.3, 448, fp8_mids[::-1] * 2.0 ** 10)
        rows.append(np.concatenate([row, np.resize(row[1:], n - len(row))]))
    return np.array(rows)


def config(args):
    heads = max(1, args.hidden // HEAD_DIM)
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 256,
        "eos_token_id": [257, 260],
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": args.hidden,
        "initializer_range": 0.02,
        "intermediate_size": 200 if args.break_groups else args.intermediate,
        "max_position_embeddings": 8192,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": heads,
        "num_hidden_layers": args.layers,
        "num_key_value_heads": max(1, heads // 2),
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": TORCH_DTYPE[args.dtype],
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": args.vocab,
    }


# ---------------------------------------------------------------- tokenizer files

def byte_symbols():
    """The 256 byte-level symbols: printable Latin-1 bytes stand for themselves, the others are
    mapped in order to U+0100 upwards (the usual byte-level BPE convention)."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    sym, extra = {}, 0
    for b in range(256):
        if b in keep:
            sym[b] = chr(b)
        else:
            sym[b] = chr(0x100 + extra)
            extra += 1
    return [sym[b] for b in range(256)]


def special_names(vocab):
    names = list(SPECIALS)
    names += ["<|reserved_special_token_%d|>" % i for i in range(vocab - 256 - len(SPECIALS))]
    return names


def added(i, content):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def tokenizer_json(vocab):
    specials = special_names(vocab)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(256 + i, s) for i, s in enumerate(specials)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": SPECIALS[0], "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": SPECIALS[0], "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": SPECIALS[0], "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {SPECIALS[0]: {"id": SPECIALS[0], "ids": [256],
                                             "tokens": [SPECIALS[0]]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": {s: i for i, s in enumerate(byte_symbols())}, "merges": []},
    }


CHAT_TEMPLATE = """{{- bos_token }}
{%- for message in messages %}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""


def tokenizer_config(vocab):
    return {
        "added_tokens_decoder": {str(256 + i): {k: v for k, v in added(0, s).items() if k != "id"}
                                 for i, s in enumerate(special_names(vocab))},
        "bos_token": SPECIALS[0],
        "clean_up_tokenization_spaces": True,
        "eos_token": SPECIALS[4],
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 8192,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def special_tokens_map():
    tok = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    return {"bos_token": dict(content=SPECIALS[0], **tok),
            "eos_token": dict(content=SPECIALS[4], **tok)}


def generation_config():
    return {"bos_token_id": 256, "do_sample": True, "eos_token_id": [257, 260],
            "temperature": 0.6, "top_p": 0.9, "transformers_version": TRANSFORMERS_VERSION}


# ---------------------------------------------------------------- folder

def write_json(path, obj):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(path + ".tmp", path)


def split(specs, k, dtype):
    """specs in order into k contiguous non-empty groups of similar byte size."""
    sizes = [int(np.prod(s)) * ELEM[dtype] for _, s, _ in specs]
    total, groups, cum = sum(sizes), [[] for _ in range(k)], 0
    cur = 0
    for i, spec in enumerate(specs):
        left = len(specs) - i
        if cur < k - 1 and groups[cur] and (cum * k >= total * (cur + 1) or left <= k - 1 - cur):
            cur += 1
        groups[cur].append(spec)
        cum += sizes[i]
    return groups


def write_model(args):
    os.makedirs(args.out, exist_ok=True)
    cfg = config(args)
    specs = tensor_specs(cfg)
    if args.shards > len(specs):
        raise SystemExit("make_hf_model.py: --shards %d is more than the %d tensors"
                         % (args.shards, len(specs)))
    weight_map, total = {}, 0
    for i, group in enumerate(split(specs, args.shards, args.dtype)):
        fname = ("model.safetensors" if args.shards == 1
                 else "model-%05d-of-%05d.safetensors" % (i + 1, args.shards))
        tensors = []
        for name, shape, kind in sorted(group):
            x = values(name, shape, kind, args.seed)
            if args.edge_rows and name == EDGE_TENSOR:
                e = edge_rows(shape[1], np.random.default_rng([args.seed, 99]), args.dtype)
                x[:len(e)] = e
            if args.edge_rows and name == ZERO_TENSOR:
                x[:] = 0
            tensors.append((name, args.dtype, shape, encode(x, args.dtype)))
        write_safetensors(os.path.join(args.out, fname), tensors)
        for name, _, _, blob in tensors:
            weight_map[name] = fname
            total += len(blob)
    if args.shards > 1:
        write_json(os.path.join(args.out, "model.safetensors.index.json"),
                   {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    write_json(os.path.join(args.out, "config.json"), cfg)
    write_json(os.path.join(args.out, "generation_config.json"), generation_config())
    write_json(os.path.join(args.out, "tokenizer.json"), tokenizer_json(args.vocab))
    write_json(os.path.join(args.out, "tokenizer_config.json"), tokenizer_config(args.vocab))
    write_json(os.path.join(args.out, "special_tokens_map.json"), special_tokens_map())
    with open(os.path.join(args.out, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(CHAT_TEMPLATE)


def merge(folder, out):
    """Every tensor of a model folder in one file, bytes unchanged, sorted by name."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    else:
        shards = ["model.safetensors"]
    tensors = []
    for s in shards:
        tensors += read_safetensors(os.path.join(folder, s))
    names = [t[0] for t in tensors]
    if len(set(names)) != len(names):
        raise SystemExit("make_hf_model.py: a tensor name is in two shards")
    write_safetensors(out, sorted(tensors))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", metavar="OUT_DIR")
    ap.add_argument("--dtype", choices=tuple(ELEM), default="BF16")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256, help="hidden size, a multiple of 64")
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--break-groups", action="store_true",
                    help="intermediate_size 200: down_proj's in is not a multiple of 32/64/128")
    ap.add_argument("--edge-rows", action="store_true",
                    help="edge cases in the first rows of " + EDGE_TENSOR + " (zero, constant, "
                    "one-signed, exact ties of x/s for int4 and e4m3, tiny, subnormal, one huge "
                    "value; in F32 also float32-only ties) and an all-zero " + ZERO_TENSOR)
    ap.add_argument("--merge", nargs=2, metavar=("MODEL_DIR", "OUT"),
                    help="write all tensors of MODEL_DIR into the single file OUT and exit")
    args = ap.parse_args(argv)
    if args.merge:
        merge(*args.merge)
        return 0
    if not args.out:
        ap.error("OUT_DIR is needed")
    if args.hidden < HEAD_DIM or args.hidden % HEAD_DIM:
        ap.error("--hidden must be a positive multiple of %d" % HEAD_DIM)
    if args.layers < 1 or args.shards < 1 or args.intermediate < 1:
        ap.error("--layers, --shards and --intermediate must be >= 1")
    if args.vocab < 256 + len(SPECIALS):
        ap.error("--vocab must be at least %d" % (256 + len(SPECIALS)))
    write_model(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
