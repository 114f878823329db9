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

# The input is never modified.
sum_before=$(sha256sum "$WORK/f32.safetensors" | cut -d' ' -f1)
mq 3 "$WORK/f32.safetensors" -o "$WORK/again.safetensors" -q
sum_after=$(sha256sum "$WORK/f32.safetensors" | cut -d' ' -f1)
[ "$sum_before" = "$sum_after" ] && pass "input unchanged" || fail "input was modified"

finish
