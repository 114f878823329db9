#!/usr/bin/env bash
# GPTQ (--method gptq) end to end on the fixture of scripts/gptq_ref.py (four Linear layers: one
# with correlated inputs and outlier channels, one with dead input columns, one with fewer
# calibration rows than inputs, a plain one; an embedding, lm_head and a norm kept): int4 in groups
# of 128, 32, 64 and per channel, int4-asym, w8a16 and w8a16-asym, --actorder none, --damp 0.05,
# --damp 0 (the Cholesky of the rank-deficient layer's singular H fails and is retried at 0.01, in
# mq-dist and in the reference alike), --block-size 32, 1 and 48 (a group starting mid-block),
# --calib-samples, a BF16 model (BF16 scales), --actorder none --gptq-scales updated, --clip mse
# (original and updated scales), and the fallback to round to nearest (a layer whose float32
# X^T X overflows); each on several rank counts (-n 1..4 for four of them, -n 1 and 3 for the
# others, to keep the test short: about 75 mpirun starts),
# byte-identical, and checked by gptq_check.py against the numpy reference (codes, scales and zero
# points, output-space error, the layer records' method, gptq_fallback, loss, damp, damp_raised
# and output SQNRs).  GPTQ must beat RTN by 2 dB in output SQNR on the correlated layer at int4
# g128.  Errors: --method gptq without --calib names --calib; --gptq-scales updated without
# --actorder none, an unknown --actorder, --gptq-scales or --method value, --damp 1 and
# --block-size 0 are refused.
. "$(dirname "$0")/lib.sh"
# One machine needs no munge authentication between mpirun and its ranks (where munge is
# installed but its daemon is down, PMIx retries it for 2 s at every start).
export PMIX_MCA_psec=native
REF="$MQ_SCRIPTS/gptq_ref.py"
GC="$HERE/gptq_check.py"
CORR=model.layers.0.self_attn.q_proj

for t in "$REF selftest" "$GC --self-check"; do
    # shellcheck disable=SC2086
    if "$MQ_PYTHON" $t >"$WORK/self.log" 2>&1; then
        pass "$(basename "${t%% *}") ${t#* }"
    else
        fail "$(basename "${t%% *}") ${t#* }"
        grep -v '^ok' "$WORK/self.log" | tail -n 20
    fi
done

"$MQ_PYTHON" "$REF" make "$WORK/f32" || fail "gptq_ref.py make f32"
"$MQ_PYTHON" "$REF" make "$WORK/bf16" --dtype BF16 || fail "gptq_ref.py make bf16"
"$MQ_PYTHON" "$REF" make "$WORK/overflow" --overflow || fail "gptq_ref.py make --overflow"

# gptq NAME DIR "GPTQ_CHECK OPTIONS" [mq-dist options...]: DIR/model.safetensors with
# DIR/calib.h5 and --method gptq on the rank counts $RANKS (default 1 3), byte-identical;
# gptq_check.py on the first one's output $WORK/NAME.n1.safetensors. The largest difference
# between a record's output SQNR and the checker's float64 recomputation goes to $WORK/sqnr.log.
gptq() {
    local name=$1 dir=$2 chk=$3
    shift 3
    local ref="" ok=1 n rc
    for n in ${RANKS:-1 3}; do
        local out="$WORK/$name.n$n.safetensors"
        mq "$n" "$dir/model.safetensors" --calib "$dir/calib.h5" --method gptq -o "$out" -q "$@"
        rc=$?
        if [ $rc -ne 0 ]; then
            fail "$name: -n $n exited $rc ($(grep -m 1 -v '^-*$' "$WORK/last.err" | head -c 300))"
            ok=0
            continue
        fi
        if [ -z "$ref" ]; then
            ref=$out
        elif ! cmp -s "$ref" "$out"; then
            fail "$name: -n $n output differs from -n 1: $("$MQ_PYTHON" "$GC" --diff "$ref" "$out" |
                head -n 5 | tr '\n' ';' | head -c 400)"
            ok=0
        fi
    done
    [ $ok = 1 ] && pass "$name: byte-identical for -n $(echo "${RANKS:-1 3}" | tr ' ' ',')"
    [ -n "$ref" ] || return
    # shellcheck disable=SC2086
    if "$MQ_PYTHON" "$GC" "$ref" "$dir/model.safetensors" "$dir/calib.h5" $chk >"$WORK/check.log" 2>&1; then
        pass "$name: gptq_check ($(tail -n 1 "$WORK/check.log"))"
    else
        fail "$name: gptq_check"
        grep -E '^(FAIL|gptq_check|Traceback|  File|[A-Za-z]*Error)' "$WORK/check.log" | sed 's/^/    /' | tail -n 25
    fi
    grep -F 'largest |output SQNR' "$WORK/check.log" | sed "s/^gptq_check/$name/" >>"$WORK/sqnr.log"
}

# refuse NAME NEEDLE [mq-dist options...]: a run on the f32 fixture must fail as a usage error
# (not crash: exit 6 is an internal error; not "unknown option": the options must exist), print
# NEEDLE on stderr and leave no output.
refuse() {
    local name=$1 needle=$2 rc
    shift 2
    local dir="$WORK/refuse.$name"
    mkdir -p "$dir"
    mq 1 "$WORK/f32/model.safetensors" -o "$dir/out.safetensors" "$@"
    rc=$?
    if [ $rc -eq 0 ] || [ $rc -eq 6 ] || [ $rc -ge 124 ] || grep -q "unknown option" "$WORK/last.err"; then
        fail "$name: exit $rc, expected a refusal ($(grep -m 1 -v '^-*$' "$WORK/last.err" | head -c 200))"
    else
        pass "$name: exit $rc"
    fi
    if grep -qF -- "$needle" "$WORK/last.err"; then
        pass "$name: the message names $needle"
    else
        fail "$name: stderr does not name $needle: $(head -c 300 "$WORK/last.err")"
    fi
    if [ -z "$(ls -A "$dir")" ]; then
        pass "$name: no output left"
    else
        fail "$name: left $(ls -A "$dir" | tr '\n' ' ')"
    fi
}

F32=$WORK/f32
# int4 with the defaults: group 128, actorder static, damp 0.01, block 128; the 2 dB gain
RANKS="1 2 3 4" gptq int4 "$F32" "--scheme int4 --group 128 --min-gain 2 $CORR" -s int4
mq 2 "$F32/model.safetensors" --calib "$F32/calib.h5" --method gptq -o "$WORK/int4-explicit.safetensors" \
    -q -s int4 --group-size 128 --actorder static --damp 0.01 --block-size 128
rc=$?
if [ $rc -ne 0 ]; then
    fail "int4 with the defaults explicit: exit $rc ($(grep -m 1 -v '^-*$' "$WORK/last.err" | head -c 300))"
elif cmp -s "$WORK/int4.n1.safetensors" "$WORK/int4-explicit.safetensors"; then
    pass "int4: the defaults are --group-size 128 --actorder static --damp 0.01 --block-size 128"
else
    fail "int4: the defaults made explicit give another file: $("$MQ_PYTHON" "$GC" --diff \
        "$WORK/int4.n1.safetensors" "$WORK/int4-explicit.safetensors" | head -n 5 | tr '\n' ';' | head -c 400)"
fi
if [ -f "$WORK/int4.n1.safetensors" ]; then
    # GPTQ's codes are not RTN's: the RTN checker must find them different
    if "$MQ_PYTHON" "$HERE/ct_check.py" "$F32/model.safetensors" "$WORK/int4.n1.safetensors" \
        --scheme int4 --group-size 128 >"$WORK/ct.log" 2>&1; then
        fail "int4: ct_check.py finds the RTN codes in a GPTQ output"
    elif grep -q "weight_packed codes" "$WORK/ct.log"; then
        pass "int4: the codes are not RTN's (ct_check.py: $(grep -c 'weight_packed codes' "$WORK/ct.log") layers differ)"
    else
        fail "int4: ct_check.py failed for another reason than the codes: $(grep -m 3 FAIL "$WORK/ct.log" | head -c 400)"
    fi
fi
gptq int4-g32 "$F32" "--scheme int4 --group 32" -s int4 --group-size 32
gptq int4-g64 "$F32" "--scheme int4 --group 64" -s int4 --group-size 64
gptq int4-channel "$F32" "--scheme int4 --group channel" -s int4 --group-size channel
RANKS="1 2 3 4" gptq int4-asym "$F32" "--scheme int4-asym --group 128" -s int4-asym
gptq int4-asym-g32 "$F32" "--scheme int4-asym --group 32" -s int4-asym --group-size 32
gptq w8a16 "$F32" "--scheme w8a16 --group 128" -s w8a16
gptq w8a16-asym-channel "$F32" "--scheme w8a16-asym --group channel" -s w8a16-asym --group-size channel
gptq int4-actorder-none "$F32" "--scheme int4 --group 128 --actorder none" -s int4 --actorder none
gptq int4-damp-0.05 "$F32" "--scheme int4 --group 128 --damp 0.05" -s int4 --damp 0.05
# damp 0: the layer with 96 rows for 256 inputs has a singular H, retried at 0.01: the reference
# (float64) and mq-dist (float32 LAPACK) must agree on the damp used and the times it was raised
gptq int4-damp-0 "$F32" "--scheme int4 --group 128 --damp 0" -s int4 --damp 0
gptq int4-g32-block-32 "$F32" "--scheme int4 --group 32 --block-size 32" -s int4 --group-size 32 --block-size 32
gptq int4-block-1 "$F32" "--scheme int4 --group 128 --block-size 1" -s int4 --block-size 1
# the first 200 calibration rows (the 96-row layer keeps its 96)
gptq int4-calib-samples-200 "$F32" "--scheme int4 --group 128 --calib-samples 200" -s int4 --calib-samples 200
gptq bf16-int4 "$WORK/bf16" "--scheme int4 --group 128" -s int4
gptq bf16-int4-asym-g64-none "$WORK/bf16" "--scheme int4-asym --group 64 --actorder none" -s int4-asym \
    --group-size 64 --actorder none

# --gptq-scales updated (IST's in-loop group parameters, actorder none only): groups smaller
# than blocks, so that the parameters see W without the block's own updates
RANKS="1 2 3 4" gptq int4-updated "$F32" "--scheme int4 --group 32 --actorder none --gptq-scales updated --block-size 64" \
    -s int4 --group-size 32 --actorder none --gptq-scales updated --block-size 64
gptq int4-asym-updated "$F32" "--scheme int4-asym --group 128 --actorder none --gptq-scales updated" \
    -s int4-asym --actorder none --gptq-scales updated
# blocks of 48 over groups of 32: a group's first column in the middle of a block
gptq int4-updated-block-48 "$F32" "--scheme int4 --group 32 --actorder none --gptq-scales updated --block-size 48" \
    -s int4 --group-size 32 --actorder none --gptq-scales updated --block-size 48
gptq w8a16-asym-updated "$F32" "--scheme w8a16-asym --group 64 --actorder none --gptq-scales updated --block-size 32" \
    -s w8a16-asym --group-size 64 --actorder none --gptq-scales updated --block-size 32

# --clip mse: the groups' ranges by the MSE search (the reference's own, from src/quant/clip.h's
# specification), for GPTQ's parameters and for RTN's output SQNR beside them
gptq int4-clip-mse "$F32" "--scheme int4 --group 128 --clip mse" -s int4 --clip mse
gptq int4-asym-g32-clip-mse "$F32" "--scheme int4-asym --group 32 --clip mse" -s int4-asym --group-size 32 --clip mse
gptq int4-g32-clip-mse-updated "$F32" "--scheme int4 --group 32 --actorder none --gptq-scales updated --clip mse" \
    -s int4 --group-size 32 --actorder none --gptq-scales updated --clip mse
gptq bf16-w8a16-clip-mse "$WORK/bf16" "--scheme w8a16 --group 64 --clip mse" -s w8a16 --group-size 64 --clip mse

# the fallback: a layer whose float32 X^T X overflows (inputs ~3e19) has no Cholesky at any
# dampening, and is round to nearest of its original weights (its dead input column not zeroed):
# method gptq, gptq_fallback true, damp the --damp given, damp_raised 0 (an overflowed H is not
# dampened), gptq_loss 1/2 sum (w - q)^2
RANKS="1 2 3 4" gptq fallback "$WORK/overflow" "--scheme int4-asym --group 64" -s int4-asym --group-size 64
gptq fallback-clip-mse "$WORK/overflow" "--scheme int4 --group 128 --clip mse" -s int4 --clip mse

# The product's main output: a model folder in, GPTQ int4 to a folder out, on 1 and 2 ranks
# (identical), checked by folder_check.py (config.json's quantization_config, the shards, the copied
# files) and its weights by gptq_check.py against the reference (ct_check.py's --ct would want
# round-to-nearest codes).
FD="$WORK/folder"
mkdir -p "$FD"
if "$MQ_PYTHON" "$MQ_SCRIPTS/make_hf_model.py" --dtype BF16 --layers 2 --shards 1 --hidden 256 --intermediate 512 "$FD/in" \
    >/dev/null && "$MQ_PYTHON" "$MQ_SCRIPTS/make_calibration.py" "$FD/in/model.safetensors" "$FD/cal.h5" --rows 256 \
    --seed 6 >/dev/null; then
    ok=1
    for n in 1 2; do
        mq "$n" "$FD/in" --calib "$FD/cal.h5" -s int4 --method gptq -o "$FD/out$n" -q ||
            { fail "folder: -n $n exited $?: $(head -c 300 "$WORK/last.err")"; ok=0; }
    done
    [ $ok = 1 ] && diff -r "$FD/out1" "$FD/out2" >/dev/null && pass "folder: -n 1 and 2 write identical folders" ||
        fail "folder: the folders of -n 1 and 2 differ"
    "$MQ_PYTHON" "$HERE/folder_check.py" check "$FD/in" "$FD/out1" --scheme int4 --single >"$WORK/fc.out" 2>&1 &&
        pass "folder: folder_check (config, tensors, copies)" ||
        fail "folder: folder_check: $(tail -5 "$WORK/fc.out")"
    "$MQ_PYTHON" "$GC" "$FD/out1/model.safetensors" "$FD/in/model.safetensors" "$FD/cal.h5" --scheme int4 \
        --group 128 -q >"$WORK/gc.out" 2>&1 && pass "folder: gptq_check of its weights ($(tail -1 "$WORK/gc.out"))" ||
        fail "folder: gptq_check: $(grep FAIL "$WORK/gc.out" | head -3) $(tail -1 "$WORK/gc.out")"
else
    fail "folder: the input folder or its calibration could not be made"
fi

refuse gptq-scales-updated-static "--gptq-scales" -s int4 --calib "$F32/calib.h5" --method gptq --gptq-scales updated
refuse bad-gptq-scales "--gptq-scales" -s int4 --calib "$F32/calib.h5" --method gptq --gptq-scales newest
refuse no-calib "--calib" -s int4 --method gptq
refuse bad-actorder "--actorder" -s int4 --calib "$F32/calib.h5" --method gptq --actorder sideways
refuse bad-method "--method" -s int4 --calib "$F32/calib.h5" --method gptq2
refuse damp-1 "--damp" -s int4 --calib "$F32/calib.h5" --method gptq --damp 1
refuse block-size-0 "--block-size" -s int4 --calib "$F32/calib.h5" --method gptq --block-size 0

# the largest difference between a record's output SQNR and its float64 recomputation
if [ -s "$WORK/sqnr.log" ]; then
    echo "# $(awk -F 'recomputation[|]: ' '{ split($2, a, " "); if (a[1] + 0 >= m) { m = a[1] + 0; l = $0 } }
        END { print l }' "$WORK/sqnr.log")"
fi

finish
