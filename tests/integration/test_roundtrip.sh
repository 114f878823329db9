#!/usr/bin/env bash
# End to end on generated models: byte-identical outputs for 1..4 ranks, and an
# independent numpy/torch client that parses, dequantizes and re-derives everything.
. "$(dirname "$0")/lib.sh"

# roundtrip NAME INPUT [mq-dist options...]: runs 1..4 ranks, compares, checks with the client.
roundtrip() {
    local name=$1 input=$2
    shift 2
    local ref="" ok=1 scheme=int8 gran=channel a
    for a in "$@"; do
        case $a in
            --scheme=*) scheme=${a#--scheme=} ;;
            --granularity=*) gran=${a#--granularity=} ;;
        esac
    done
    for n in 1 2 3 4; do
        local out="$WORK/$name.n$n.safetensors"
        if ! mq "$n" "$input" -o "$out" -q "$@"; then
            fail "$name: -n $n exited $? ($(head -c 300 "$WORK/last.err"))"
            ok=0
            continue
        fi
        if [ -z "$ref" ]; then
            ref=$out
        elif ! cmp -s "$ref" "$out"; then
            fail "$name: -n $n output differs from -n 1"
            ok=0
        fi
    done
    [ $ok = 1 ] && pass "$name: byte-identical for -n 1..4"
    if "$MQ_PYTHON" "$CHECK" --scheme "$scheme" --granularity "$gran" "$input" "$ref" >"$WORK/check.log" 2>&1; then
        pass "$name: client check ($(tail -n 1 "$WORK/check.log"))"
    else
        fail "$name: client check"
        tail -n 20 "$WORK/check.log"
    fi
}

make_model "$WORK/f32.safetensors" --dtype F32 --outliers --seed 1
make_model "$WORK/f16.safetensors" --dtype F16 --outliers --seed 2
make_model "$WORK/bf16.safetensors" --dtype BF16 --outliers --seed 3
mkdir -p "$WORK/sharded"
make_model "$WORK/sharded/model.safetensors.index.json" --dtype BF16 --shards 3 --outliers --seed 4

roundtrip f32-int8 "$WORK/f32.safetensors"
roundtrip f16-int8 "$WORK/f16.safetensors"
roundtrip bf16-int8 "$WORK/bf16.safetensors"
roundtrip sharded-int8 "$WORK/sharded/model.safetensors.index.json"
roundtrip f32-int8-asym "$WORK/f32.safetensors" --scheme=int8-asym
roundtrip bf16-int8-tensor "$WORK/bf16.safetensors" --granularity=tensor
roundtrip f16-int8-asym-tensor "$WORK/f16.safetensors" --scheme=int8-asym --granularity=tensor
roundtrip f32-fp16 "$WORK/f32.safetensors" --scheme=fp16
roundtrip f32-bf16 "$WORK/f32.safetensors" --scheme=bf16
# Casts convert every floating-point tensor (embeddings, lm_head, norms, biases too), as
# model.to(dtype) does; the client compares each with torch's .to() bit for bit. --exclude keeps one.
roundtrip f16-bf16 "$WORK/f16.safetensors" --scheme=bf16
roundtrip f32-bf16-exclude "$WORK/f32.safetensors" --scheme=bf16 --exclude=lm_head --exclude=layernorm
"$MQ_PYTHON" - "$WORK/f32-bf16.n1.safetensors" "$WORK/f32-bf16-exclude.n1.safetensors" <<'PY' \
    && pass "casts: a pure BF16 file, and only the --exclude'd tensors stay F32" || fail "casts: dtypes"
import json, struct, sys
def dtypes(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__")
    return {k: v["dtype"] for k, v in h.items()}
pure, part = dtypes(sys.argv[1]), dtypes(sys.argv[2])
assert set(pure.values()) == {"BF16", "I64"}, sorted(set(pure.values()))
assert {k for k, d in pure.items() if d == "I64"} == {"model.position_ids"}
kept = sorted(k for k, d in part.items() if d == "F32")
assert kept and all("lm_head" in k or "layernorm" in k for k in kept), kept
assert "lm_head.weight" in kept and "model.embed_tokens.weight" not in kept, kept
PY

# A tensor larger than one 16 MiB chunk, split across ranks, with a tiny memory budget.
# down_proj is [1536, 3072] F32: 18 MiB, two chunks.
make_model "$WORK/big.safetensors" --dtype F32 --hidden 1536 --layers 1 --seed 5 --outliers
roundtrip big-split "$WORK/big.safetensors" --memory-budget=4
mq 2 "$WORK/big.safetensors" -o "$WORK/big.default.safetensors" -q
if cmp -s "$WORK/big.default.safetensors" "$WORK/big-split.n1.safetensors"; then
    pass "memory budget does not change the output"
else
    fail "memory budget changed the output"
fi

# Per-tensor scales over a tensor of several chunks whose rows do not divide into read blocks
# evenly (lm_head is [5000, 1250] F32: 3355-row chunks): the client recomputes every chunk digest.
make_model "$WORK/odd.safetensors" --dtype F32 --hidden 1250 --layers 1 --seed 6
roundtrip odd-rows-tensor "$WORK/odd.safetensors" --granularity=tensor --memory-budget=4 --no-default-excludes

# The input read in place (a mapped window: the default) and copied (MQ_READ=pread) give the same
# bytes, for every dtype, a sharded model, per-tensor scales, casts and copies.
same_read() {
    local name=$1 input=$2 ref=$3
    shift 3
    if MQ_READ=pread mq 2 "$input" -o "$WORK/$name.pread.safetensors" -q "$@" &&
        cmp -s "$ref" "$WORK/$name.pread.safetensors"; then
        pass "$name: the same bytes with MQ_READ=pread"
    else
        fail "$name: MQ_READ=pread gave other bytes or failed ($(head -c 300 "$WORK/last.err"))"
    fi
}
same_read f32-int8 "$WORK/f32.safetensors" "$WORK/f32-int8.n1.safetensors"
same_read bf16-int8 "$WORK/bf16.safetensors" "$WORK/bf16-int8.n1.safetensors"
same_read sharded-int8 "$WORK/sharded/model.safetensors.index.json" "$WORK/sharded-int8.n1.safetensors"
same_read bf16-int8-tensor "$WORK/bf16.safetensors" "$WORK/bf16-int8-tensor.n1.safetensors" --granularity=tensor
same_read f16-bf16 "$WORK/f16.safetensors" "$WORK/f16-bf16.n1.safetensors" --scheme=bf16
# Tensor data not aligned for its dtype (the format allows it: a header of 8k+2 bytes, and a 3-byte
# tensor before a BF16 one) is copied, not viewed in place: the same bytes on both paths, and the
# client's check.
"$MQ_PYTHON" - "$WORK/unaligned.safetensors" <<'PY'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(7)
w = rng.standard_normal((96, 160)).astype(np.float32)
b = (rng.standard_normal((64, 96)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
tensors = [("a.tag", "U8", [3], np.array([1, 2, 3], np.uint8).tobytes()),
           ("model.layers.0.mlp.down_proj.weight", "BF16", [64, 96], b.tobytes()),
           ("model.layers.0.mlp.up_proj.weight", "F32", [96, 160], w.tobytes())]
header, data = {}, b""
for name, dt, shape, raw in tensors:
    header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
text = json.dumps(header).encode()
text += b" " * ((2 - len(text)) % 8)  # 8 + len(text) is 2 mod 8: the F32 data starts off 4-byte alignment
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + data)
PY
roundtrip unaligned "$WORK/unaligned.safetensors"
same_read unaligned "$WORK/unaligned.safetensors" "$WORK/unaligned.n1.safetensors"

# The input is never modified.
sum_before=$(sha256sum "$WORK/f32.safetensors" | cut -d' ' -f1)
mq 3 "$WORK/f32.safetensors" -o "$WORK/again.safetensors" -q
sum_after=$(sha256sum "$WORK/f32.safetensors" | cut -d' ' -f1)
[ "$sum_before" = "$sum_after" ] && pass "input unchanged" || fail "input was modified"

finish
