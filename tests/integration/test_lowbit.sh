#!/usr/bin/env bash
# The low-bit schemes end to end: int4, int4-asym, w8a16, w8a16-asym (pack-quantized groups) and
# fp8 e4m3 on a Llama-shaped model (scripts/make_hf_model.py, shards merged into one file, and once
# as the sharded index), F32 and BF16; -n 1, 2 and 3 byte-identical; every output checked by
# ct_check.py, an independent numpy client written from LOWBIT.md (codes, scales and zero points
# exact, SQNR to 1e-3 dB, tensor names, untouched tensors byte for byte).  Error cases: a layer
# whose in is not divisible by the group size fails, names the tensor and leaves no output.
. "$(dirname "$0")/lib.sh"
# One machine needs no munge authentication between mpirun and its ranks (where munge is
# installed but its daemon is down, PMIx retries it for 2 s at every start).
export PMIX_MCA_psec=native
CT="$HERE/ct_check.py"
MAKE_HF="$MQ_SCRIPTS/make_hf_model.py"

if "$MQ_PYTHON" "$CT" --self-test >"$WORK/self.log" 2>&1; then
    pass "ct_check.py --self-test"
else
    fail "ct_check.py --self-test"
    tail -n 20 "$WORK/self.log"
fi

# hf_model NAME [make_hf_model options...]: a model folder $WORK/NAME and its merged $WORK/NAME.safetensors.
hf_model() {
    local name=$1
    shift
    "$MQ_PYTHON" "$MAKE_HF" "$WORK/$name" "$@" &&
        "$MQ_PYTHON" "$MAKE_HF" --merge "$WORK/$name" "$WORK/$name.safetensors"
}

# lowbit NAME INPUT SCHEME "CT_CHECK OPTIONS" [mq-dist options...]: -n 1, 2, 3 byte-identical,
# then ct_check.py on the -n 1 output: NAME.nN.safetensors, or the model folder NAME-nN for a
# NAME beginning with dir-.
lowbit() {
    local name=$1 input=$2 scheme=$3 ctopts=$4
    shift 4
    local ref="" ok=1 n rc
    for n in 1 2 3; do
        local out="$WORK/$name.n$n.safetensors"
        case $name in dir-*) out="$WORK/$name-n$n" ;; esac
        mq "$n" "$input" -o "$out" -q -s "$scheme" "$@"
        rc=$?
        if [ $rc -ne 0 ]; then
            fail "$name: -n $n exited $rc ($(grep -m 1 -v '^-*$' "$WORK/last.err" | head -c 300))"
            ok=0
            continue
        fi
        if [ -z "$ref" ]; then
            ref=$out
        elif ! diff -r -q "$ref" "$out" >"$WORK/diff.log" 2>&1; then
            fail "$name: -n $n output differs from $(basename "$ref"): $(head -c 300 "$WORK/diff.log")"
            ok=0
        fi
    done
    [ $ok = 1 ] && pass "$name: byte-identical for -n 1..3"
    [ -n "$ref" ] || return
    # shellcheck disable=SC2086
    if "$MQ_PYTHON" "$CT" "$input" "$ref" --scheme "$scheme" $ctopts >"$WORK/check.log" 2>&1; then
        pass "$name: ct_check ($(tail -n 1 "$WORK/check.log"))"
    else
        fail "$name: ct_check"
        sed 's/^/    /' "$WORK/check.log" | tail -n 25
    fi
}

# refuse NAME INPUT TENSOR [mq-dist options...]: the run must fail (not crash: exit 6 is an internal
# error), name TENSOR on stderr and leave nothing (no file, no partial folder) where its output
# would be: out.safetensors, or the model folder out for a NAME beginning with dir-.
refuse() {
    local name=$1 input=$2 tensor=$3 n rc out=out.safetensors
    shift 3
    case $name in dir-*) out=out ;; esac
    for n in 1 2; do
        local dir="$WORK/refuse.$name.n$n"
        mkdir -p "$dir"
        mq "$n" "$input" -o "$dir/$out" "$@"
        rc=$?
        local what="$name (-n $n)"
        if [ $rc -eq 0 ] || [ $rc -eq 6 ] || [ $rc -ge 124 ] || grep -q "unknown option" "$WORK/last.err"; then
            fail "$what: exit $rc, expected a refusal ($(grep -m 1 -v '^-*$' "$WORK/last.err" | head -c 200))"
        else
            pass "$what: exit $rc"
        fi
        if grep -qF "$tensor" "$WORK/last.err"; then
            pass "$what: the message names $tensor"
        else
            fail "$what: stderr does not name $tensor: $(head -c 300 "$WORK/last.err")"
        fi
        if [ -z "$(ls -A "$dir")" ]; then
            pass "$what: no output left"
        else
            fail "$what: left $(ls -A "$dir" | tr '\n' ' ')"
        fi
    done
}

hf_model bf16 --dtype BF16 --shards 2 --seed 1 || fail "make_hf_model.py bf16"
# files a folder output copies (a nested one) and leaves out (hidden, the weights in another form)
mkdir -p "$WORK/bf16/extra"
echo "notes" >"$WORK/bf16/extra/notes.txt"
echo "hidden" >"$WORK/bf16/.hidden"
echo "not torch" >"$WORK/bf16/pytorch_model.bin"
hf_model f32 --dtype F32 --shards 3 --seed 2 || fail "make_hf_model.py f32"
hf_model odd --dtype BF16 --shards 2 --seed 3 --break-groups || fail "make_hf_model.py odd"
# edge rows (zero, constant, one-signed, exact ties of x/s, tiny, subnormal, huge) and a zero tensor
hf_model edge-bf16 --dtype BF16 --shards 2 --seed 4 --edge-rows || fail "make_hf_model.py edge-bf16"
hf_model edge-f32 --dtype F32 --shards 1 --seed 5 --edge-rows || fail "make_hf_model.py edge-f32"
hf_model edge-f16 --dtype F16 --shards 2 --seed 6 --edge-rows || fail "make_hf_model.py edge-f16"
BF16="$WORK/bf16.safetensors"
F32="$WORK/f32.safetensors"
ODD="$WORK/odd.safetensors"

# int4: the default group size is 128
lowbit f32-int4 "$F32" int4 "--group-size 128"
lowbit f32-int4-g128 "$F32" int4 "--group-size 128" --group-size 128
if cmp -s "$WORK/f32-int4.n1.safetensors" "$WORK/f32-int4-g128.n1.safetensors"; then
    pass "int4: no --group-size is --group-size 128"
else
    fail "int4: no --group-size differs from --group-size 128"
fi
lowbit bf16-int4 "$BF16" int4 "--group-size 128"
lowbit f32-int4-g32 "$F32" int4 "--group-size 32" --group-size 32
lowbit bf16-int4-g32 "$BF16" int4 "--group-size 32" --group-size 32
lowbit bf16-int4-g64 "$BF16" int4 "--group-size 64" --group-size 64
lowbit f32-int4-channel "$F32" int4 "--group-size channel" --group-size channel
lowbit bf16-int4-channel "$BF16" int4 "--group-size channel" --group-size channel
lowbit f32-int4-asym "$F32" int4-asym "--group-size 128"
lowbit bf16-int4-asym "$BF16" int4-asym "--group-size 128"
lowbit bf16-int4-asym-g32 "$BF16" int4-asym "--group-size 32" --group-size 32
lowbit bf16-int4-asym-channel "$BF16" int4-asym "--group-size channel" --group-size channel
lowbit f32-w8a16 "$F32" w8a16 "--group-size 128"
lowbit bf16-w8a16 "$BF16" w8a16 "--group-size 128"
lowbit bf16-w8a16-channel "$BF16" w8a16 "--group-size channel" --group-size channel
lowbit f32-w8a16-asym-g64 "$F32" w8a16-asym "--group-size 64" --group-size 64
lowbit bf16-w8a16-asym "$BF16" w8a16-asym "--group-size 128"
lowbit f32-fp8 "$F32" fp8 "--granularity channel"
lowbit bf16-fp8 "$BF16" fp8 "--granularity channel"
lowbit f32-fp8-tensor "$F32" fp8 "--granularity tensor" --granularity tensor
lowbit bf16-fp8-tensor "$BF16" fp8 "--granularity tensor" --granularity tensor
# edge cases, and F16 inputs (F16 scales)
lowbit edge-bf16-int4-g32 "$WORK/edge-bf16.safetensors" int4 "--group-size 32" --group-size 32
lowbit edge-bf16-int4-asym-g32 "$WORK/edge-bf16.safetensors" int4-asym "--group-size 32" --group-size 32
lowbit edge-f32-int4-asym "$WORK/edge-f32.safetensors" int4-asym "--group-size 128"
lowbit edge-f32-w8a16-g64 "$WORK/edge-f32.safetensors" w8a16 "--group-size 64" --group-size 64
lowbit edge-f16-int4 "$WORK/edge-f16.safetensors" int4 "--group-size 128"
lowbit edge-f16-w8a16-asym-channel "$WORK/edge-f16.safetensors" w8a16-asym "--group-size channel" --group-size channel
lowbit edge-bf16-fp8 "$WORK/edge-bf16.safetensors" fp8 "--granularity channel"
lowbit edge-f32-fp8 "$WORK/edge-f32.safetensors" fp8 "--granularity channel"
lowbit edge-f16-fp8-tensor "$WORK/edge-f16.safetensors" fp8 "--granularity tensor" --granularity tensor
# --clip mse: scales at most min/max's, codes of the stored scale, no group worse than min/max
lowbit edge-bf16-int4-mse "$WORK/edge-bf16.safetensors" int4 "--group-size 128 --clip mse" --clip mse
lowbit edge-f32-int4-asym-g32-mse "$WORK/edge-f32.safetensors" int4-asym "--group-size 32 --clip mse" \
    --group-size 32 --clip mse
lowbit edge-f16-w8a16-channel-mse "$WORK/edge-f16.safetensors" w8a16 "--group-size channel --clip mse" \
    --group-size channel --clip mse
lowbit edge-bf16-fp8-mse "$WORK/edge-bf16.safetensors" fp8 "--granularity channel --clip mse" --clip mse
# the sharded folder's index as the input (the checker reads the shards)
lowbit sharded-int4-asym "$WORK/bf16/model.safetensors.index.json" int4-asym "--group-size 128"
# in = 200 quantizes per channel (200 is a multiple of 8: it packs) ...
lowbit odd-int4-channel "$ODD" int4 "--group-size channel" --group-size channel
lowbit odd-w8a16-asym-channel "$ODD" w8a16-asym "--group-size channel" --group-size channel

# ... but not in groups of 32, 64 or 128
DOWN=model.layers.0.mlp.down_proj.weight
refuse odd-int4-g128 "$ODD" "$DOWN" -s int4
refuse odd-int4-g32 "$ODD" "$DOWN" -s int4 --group-size 32
refuse odd-int4-asym-g64 "$ODD" "$DOWN" -s int4-asym --group-size 64
refuse odd-w8a16-g128 "$ODD" "$DOWN" -s w8a16 --group-size 128
# --keep-unfit keeps the layers that do not fit unquantized, byte for byte, and quantizes the rest
lowbit odd-int4-keep-unfit "$ODD" int4 "--group-size 128 --exclude mlp\.down_proj" --keep-unfit

# make_model.py's model: a 4-D conv weight (kept by the packed schemes, quantized by fp8), a bias,
# I64 position ids; a NaN in a selected weight is refused naming it (exit 4), nothing written.
make_model "$WORK/mm.safetensors" --dtype F32 --hidden 128 --outliers --seed 7
make_model "$WORK/nan.safetensors" --hidden 128 --corrupt nan
lowbit mm-int4-asym-g64 "$WORK/mm.safetensors" int4-asym "--group-size 64" --group-size 64
lowbit mm-fp8 "$WORK/mm.safetensors" fp8 "--granularity channel"
refuse nan-int4 "$WORK/nan.safetensors" model.layers.0.self_attn.q_proj.weight -s int4
refuse nan-fp8 "$WORK/nan.safetensors" model.layers.0.self_attn.q_proj.weight -s fp8

# Model folders in and out: config.json's quantization_config, the shards and index, the copied
# files (ct_check.py's folder checks); small shards so that layers meet shard boundaries.
lowbit dir-bf16-int4 "$WORK/bf16" int4 "--group-size 128"
lowbit dir-bf16-int4-asym-g32 "$WORK/bf16" int4-asym "--group-size 32 --max-shard-size 500000" \
    --group-size 32 --max-shard-size 500kB
lowbit dir-bf16-w8a16-asym-g32 "$WORK/bf16" w8a16-asym "--group-size 32 --max-shard-size 500000" \
    --group-size 32 --max-shard-size 500kB
lowbit dir-f32-w8a16-channel "$WORK/f32" w8a16 "--group-size channel" --group-size channel
lowbit dir-bf16-fp8 "$WORK/bf16" fp8 "--granularity channel --max-shard-size 300000" --max-shard-size 300kB
lowbit dir-f32-fp8-tensor "$WORK/f32" fp8 "--granularity tensor" --granularity tensor
lowbit dir-odd-int4-keep-unfit "$WORK/odd" int4 "--group-size 128 --exclude mlp\.down_proj" --keep-unfit
refuse dir-odd-int4-g64 "$WORK/odd" "$DOWN" -s int4 --group-size 64
# vLLM fuses q/k/v: quantizing k_proj and v_proj but not q_proj is refused, naming q_proj
refuse dir-split-qkv "$WORK/bf16" model.layers.0.self_attn.q_proj -s int4 -x 'layers\.0\.self_attn\.q_proj'

finish
