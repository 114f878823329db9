#!/usr/bin/env bash
# Mixed precision (--target-bpw, --target-size, --candidates) end to end, on four models: a
# Llama-shaped F32 and a BF16 model (scripts/make_hf_model.py, two shards, read through the index),
# the GPTQ fixture of scripts/gptq_ref.py (F32: correlated inputs, outlier and dead input columns)
# and the torch-initialised Conv + Linear model of calib_e2e.py (F32; its conv weights take no int4
# groups, so their candidates are int8 and bf16 only).  On each:
#   - at the size of uniform int8 (-s int8's quantized_size_bytes as --target-size) the aggregate
#     SQNR is at least uniform int8's, and at the size of uniform int4 g128 at least int4's (not on
#     the conv model: -s int4 keeps its conv weights in F32, so its SQNR is over fewer tensors);
#   - five budgets between those two sizes: the tensor data within each target, and the aggregate
#     SQNR non-decreasing with the size (the curve is printed);
#   - byte-identical outputs for -n 1, 2 and 3 (a --target-size and a --target-bpw run);
#   - every output checked by mixed_check.py from the file's bytes alone: each layer dequantized by
#     its recorded scheme, its SQNR against the input equal to the record's sqnr_db and to its
#     chosen candidate's, "chosen" the candidate of the stored layout with bytes equal to bytes_out,
#     every candidate's figures against a reference quantization, q/k/v and gate/up one choice, the
#     mixed_precision summary, no uniform plan that fits with less error, and lower_bound <= the
#     exact knapsack optimum <= the choice's error;
#   - a .pt output of a mixed run loads with torch.load(weights_only=True) and holds the same
#     tensors (bytes) and metadata as the .safetensors output of the same options (pt_check.py).
# How far each choice is from the exact optimum is printed; a choice with more error than the
# optimum (beyond the figures' rounding, 1e-4 %) fails: on these models the solver's programme
# runs in units of the sizes' common divisor, where it is exact (README, "The solver").  Wider candidate lists (int4-asym, w8a16 per channel and in groups, fp8, fp16,
# int8-asym) on the F32 and BF16 models.  mixed_check.py's self-test: damaged copies of an output
# are caught.  Errors (exit 2, a message naming the option, nothing left behind): a target below
# the smallest candidates, --scheme, --group-size or --granularity with a target, --candidates
# without a target, a group on a scheme that takes none, a candidate twice, both targets.
# --dry-run with a target writes nothing.
# With --calib (a Llama-shaped model with 1024-row MLP weights and make_calibration.py's
# activations): at the sizes of uniform int8 (W8A8, static input scales) and int4 the output SQNR
# as the layers run is at least theirs; every candidate's figure against a float64 reference of
# its output error on the sampled rows (mixed_calib_check.py outspace, W8A8 with the observer's
# scale); -n 1/2/3 identity; the choice differs from the weight-space one; the model folder's
# config groups and input scales follow the choice and `mq-dist inspect` accepts it.  Gates:
# --min-sqnr on weights and on outputs (every choice reaches the floor, promotions recorded and
# counted: mixed_calib_check.py floor), --fail-below exit 9 on weights and on calibrated outputs,
# and the refusals of --min-sqnr too high, without a target, --calib-missing=weights-only and
# --method gptq with a target.
. "$(dirname "$0")/lib.sh"
# One machine needs no munge authentication between mpirun and its ranks (where munge is
# installed but its daemon is down, PMIx retries it for 2 s at every start).
export PMIX_MCA_psec=native
if ! "$MQ_PYTHON" -c 'import torch' >/dev/null 2>&1; then
    echo "skip - $MQ_PYTHON cannot import torch"
    exit 77
fi
MC="$HERE/mixed_check.py"
PTC="$HERE/pt_check.py"
MAKE_HF="$MQ_SCRIPTS/make_hf_model.py"
DEFAULT=int4-g128,int8,bf16
declare -A MID   # model -> the middle budget's target (bytes)

# meta FILE KEY...: the __metadata__ values of a .safetensors file, one per line (without torch).
meta() {
    "$MQ_PYTHON" -c 'import json, struct, sys
f = open(sys.argv[1], "rb")
m = json.loads(f.read(struct.unpack("<Q", f.read(8))[0])).get("__metadata__", {})
print("\n".join(m.get(k, "MISSING") for k in sys.argv[2:]))' "$@"
}

# run NAME N ARGS...: mq-dist on N ranks must succeed; reports a failure (and returns 1) otherwise.
run() {
    local name=$1 n=$2
    shift 2
    mq "$n" "$@" -q && return 0
    fail "$name: -n $n exited $? ($(grep -m 1 -v '^-*$' "$WORK/last.err" | head -c 300))"
    return 1
}

# ge A B: A >= B as numbers.
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

# check_outputs NAME INPUT CANDIDATES OUT TARGET [OUT TARGET]...: mixed_check.py on the outputs,
# one TAP line per category of checks (all outputs together), and one for the exact optimum; its
# summary lines go to the log.
check_outputs() {
    local name=$1 input=$2 cands=$3
    shift 3
    local args=() cat what p f
    while [ $# -ge 2 ]; do
        args+=(--out "$1" "$2")
        shift 2
    done
    "$MQ_PYTHON" "$MC" check "$input" --candidates "$cands" "${args[@]}" >"$WORK/mc.log" 2>&1
    local rc=$?
    sed -n 's/^summary /#   /p' "$WORK/mc.log"
    for cat in format chosen sqnr reference fused budget; do
        case $cat in
        format) what="layouts as recorded, kept tensors byte for byte, quantized_size_bytes" ;;
        chosen) what="chosen is the stored candidate, its bytes = bytes_out; candidates' bytes, fit" ;;
        sqnr) what="SQNR from the file = record's sqnr_db = chosen candidate's; aggregate" ;;
        reference) what="stored values and every candidate's sqnr_db = the reference quantizers'" ;;
        fused) what="q/k/v and gate/up share the chosen scheme" ;;
        budget) what="within the target; mixed_precision summary; no better uniform plan fits" ;;
        esac
        read -r p f < <(awk -v c="$cat" '$1 == "result" && $3 == c { p += $4; f += $5 }
                                         END { print p + 0, f + 0 }' "$WORK/mc.log")
        if [ "$f" = 0 ] && [ "$p" -gt 0 ] && [ $rc -le 1 ]; then
            pass "$name: $what ($p checks)"
        elif [ "$cat" = fused ] && [ "$p" = 0 ] && [ "$f" = 0 ] && [ $rc -le 1 ]; then
            pass "$name: no fused projections to check"
        else
            fail "$name: $what ($p passed, $f failed)"
            grep "FAIL: [^:]*: $cat:" "$WORK/mc.log" | head -n 8 | sed 's/^/    /'
        fi
    done
    if [ $rc -gt 1 ]; then
        fail "$name: mixed_check.py exited $rc"
        tail -n 5 "$WORK/mc.log" | sed 's/^/    /'
    fi
    # the worst distance from the exact optimum (beyond the figures' rounding: 1e-4 %)
    local worst
    worst=$(awk '$1 == "optimum" && ($3 + 0 > w + 0 || w == "") { w = $3; o = $2; s = $4; b = $5 }
                 END { if (w != "") print w, o, s, b }' "$WORK/mc.log")
    if [ -z "$worst" ]; then
        fail "$name: no exact optimum computed"
    else
        # shellcheck disable=SC2086
        set -- $worst
        if ge 1e-4 "$1"; then
            pass "$name: every choice is the exact knapsack optimum (within the figures' rounding)"
        else
            fail "$name: $2: $1% more squared error than the exact knapsack optimum ($3 dB, optimum $4 dB)"
        fi
    fi
}

# same_bytes NAME N_RANKS... -- ARGS...: mq-dist ARGS -o NAME.nN.safetensors on each rank count;
# the outputs must be byte-identical.
same_bytes() {
    local name=$1 counts=() n ok=1
    shift
    while [ "$1" != -- ]; do
        counts+=("$1")
        shift
    done
    shift
    for n in "${counts[@]}"; do
        run "$name" "$n" "$@" -o "$WORK/$name.n$n.safetensors" || { ok=0; continue; }
        if [ "$n" != "${counts[0]}" ] &&
            ! cmp -s "$WORK/$name.n${counts[0]}.safetensors" "$WORK/$name.n$n.safetensors"; then
            fail "$name: -n $n output differs from -n ${counts[0]}'s"
            ok=0
        fi
    done
    [ $ok = 1 ] && pass "$name: byte-identical for -n ${counts[*]}"
}

# suite NAME INPUT INT4_COMPARABLE: the uniform, budget, rank-count and file checks of one model.
suite() {
    local name=$1 input=$2 cmp4=$3 s q
    local -A size sqnr
    for s in int8 int4; do
        run "$name -s $s" 1 "$input" -s "$s" -o "$WORK/$name.$s.safetensors" || return
        { read -r size[$s]; read -r sqnr[$s]; } < <(meta "$WORK/$name.$s.safetensors" quantized_size_bytes sqnr_db)
        run "$name --target-size (uniform $s)" 2 "$input" --target-size "${size[$s]}" \
            -o "$WORK/$name.at-$s.safetensors" || return
        q=$(meta "$WORK/$name.at-$s.safetensors" sqnr_db)
        if [ $s = int4 ] && [ "$cmp4" != yes ]; then
            echo "#   $name: at uniform int4's ${size[$s]} bytes $q dB; uniform int4's ${sqnr[$s]} dB is over fewer tensors"
        elif ge "$q" "${sqnr[$s]}"; then
            pass "$name: at uniform $s's ${size[$s]} bytes, SQNR $q dB >= uniform $s's ${sqnr[$s]} dB"
        else
            fail "$name: at uniform $s's ${size[$s]} bytes, SQNR $q dB < uniform $s's ${sqnr[$s]} dB"
        fi
    done
    # five budgets between the two sizes, in order
    local k t targets=("size:${size[int4]}") outs=("$WORK/$name.at-int4.safetensors")
    for k in 1 2 3 4 5; do
        t=$((size[int4] + (size[int8] - size[int4]) * k / 6))
        run "$name --target-size $t" 2 "$input" --target-size "$t" -o "$WORK/$name.b$k.safetensors" || return
        targets+=("size:$t")
        outs+=("$WORK/$name.b$k.safetensors")
    done
    targets+=("size:${size[int8]}")
    outs+=("$WORK/$name.at-int8.safetensors")
    echo "#   $name: target bytes -> tensor bytes, aggregate SQNR" \
        "(uniform int4 ${size[int4]} B ${sqnr[int4]} dB, int8 ${size[int8]} B ${sqnr[int8]} dB)"
    local prev="" within=1 mono=1 i bytes
    for i in "${!outs[@]}"; do
        t=${targets[$i]#size:}
        { read -r bytes; read -r q; } < <(meta "${outs[$i]}" quantized_size_bytes sqnr_db)
        printf '#   %10d -> %10d  %s dB\n' "$t" "$bytes" "$q"
        [ "$bytes" -le "$t" ] || within=0
        if [ -n "$prev" ] && ! ge "$q" "$prev"; then
            mono=0
        fi
        prev=$q
    done
    if [ $within = 1 ]; then
        pass "$name: 7 budgets, the tensor data within the target in each"
    else
        fail "$name: tensor data above its target (see the curve)"
    fi
    if [ $mono = 1 ]; then
        pass "$name: aggregate SQNR non-decreasing with the size"
    else
        fail "$name: aggregate SQNR decreases as the size grows (see the curve)"
    fi
    # rank counts: the middle budget (its -n 2 output is b3) and a bits-per-weight target
    t=${targets[3]#size:}
    MID[$name]=$t
    same_bytes "$name.mid" 1 3 -- "$input" --target-size "$t"
    if cmp -s "$WORK/$name.mid.n1.safetensors" "$WORK/$name.b3.safetensors"; then
        pass "$name.mid: -n 1 and -n 3 outputs equal -n 2's"
    else
        fail "$name.mid: -n 2's output (b3) differs from -n 1's"
    fi
    same_bytes "$name.bpw" 1 2 3 -- "$input" --target-bpw 6
    check_outputs "$name" "$input" "$DEFAULT" \
        "${outs[0]}" "${targets[0]}" "${outs[1]}" "${targets[1]}" "${outs[2]}" "${targets[2]}" \
        "${outs[3]}" "${targets[3]}" "${outs[4]}" "${targets[4]}" "${outs[5]}" "${targets[5]}" \
        "${outs[6]}" "${targets[6]}" "$WORK/$name.bpw.n1.safetensors" bpw:6
    # the same options to a .pt
    if run "$name -o .pt" 3 "$input" --target-size "$t" -o "$WORK/$name.mid.pt"; then
        if "$MQ_PYTHON" "$PTC" compare "$WORK/$name.mid.pt" "$WORK/$name.b3.safetensors" >"$WORK/pt.log" 2>&1; then
            pass "$name: .pt loads with torch.load(weights_only=True), the .safetensors' tensors and metadata ($(tail -n 1 "$WORK/pt.log"))"
        else
            fail "$name: .pt against the .safetensors of the same options"
            tail -n 8 "$WORK/pt.log" | sed 's/^/    /'
        fi
    fi
}

# ---------------------------------------------------------------- models
for spec in "f32 F32 1" "bf16 BF16 2"; do
    # shellcheck disable=SC2086
    set -- $spec
    "$MQ_PYTHON" "$MAKE_HF" "$WORK/$1" --dtype "$2" --layers 4 --hidden 256 --intermediate 512 \
        --shards 2 --seed "$3" || fail "make_hf_model.py $1"
done
"$MQ_PYTHON" "$MQ_SCRIPTS/gptq_ref.py" make "$WORK/gptq" || fail "gptq_ref.py make"
mkdir -p "$WORK/e2e"
MQ_SCRIPTS="$MQ_SCRIPTS" "$MQ_PYTHON" "$HERE/calib_e2e.py" make "$WORK/e2e" >/dev/null ||
    fail "calib_e2e.py make"
declare -A INPUT=([f32]="$WORK/f32/model.safetensors.index.json"
                  [bf16]="$WORK/bf16/model.safetensors.index.json")
F32=${INPUT[f32]}

suite f32 "${INPUT[f32]}" yes
suite bf16 "${INPUT[bf16]}" yes
suite gptq "$WORK/gptq/model.safetensors" yes
suite e2e "$WORK/e2e/model.safetensors" no

# the checker catches damage, on a mixed output of each dtype
for m in f32 bf16; do
    [ -f "$WORK/$m.b3.safetensors" ] || continue
    if "$MQ_PYTHON" "$MC" self-test "${INPUT[$m]}" "$WORK/$m.b3.safetensors" "size:${MID[$m]}" \
        >"$WORK/self.log" 2>&1; then
        pass "mixed_check.py self-test on $m.b3: $(grep -c '^ok self-test' "$WORK/self.log") damages, each caught where it belongs"
    else
        fail "mixed_check.py self-test on $m.b3"
        grep -v '^ok' "$WORK/self.log" | tail -n 10 | sed 's/^/    /'
    fi
done

# wider candidate lists: every scheme's layout and reference
WIDE=int4-asym-g32,w8a16-channel,fp8,fp16,int8-asym,int4-g64,w8a16-asym-g128
for m in f32 bf16; do
    same_bytes "$m.wide" 1 3 -- "${INPUT[$m]}" --target-bpw 7 --candidates "$WIDE"
    [ -f "$WORK/$m.wide.n1.safetensors" ] &&
        check_outputs "$m wide" "${INPUT[$m]}" "$WIDE" "$WORK/$m.wide.n1.safetensors" bpw:7
done
# sizes with units (kB, MB, GB: powers of 1000; KiB, MiB, GiB: of 1024), and on the conv model a
# candidate list that fits no conv weight (they are kept as they are)
if run "f32 --target-size 3MB" 2 "$F32" --target-size 3MB -o "$WORK/f32.3MB.safetensors"; then
    check_outputs "f32 3MB" "$F32" "$DEFAULT" "$WORK/f32.3MB.safetensors" size:3000000
fi
if run "bf16 --target-size 2MiB" 2 "${INPUT[bf16]}" --target-size 2MiB -o "$WORK/bf16.2MiB.safetensors"; then
    check_outputs "bf16 2MiB" "${INPUT[bf16]}" "$DEFAULT" "$WORK/bf16.2MiB.safetensors" size:2097152
fi
E2E="$WORK/e2e/model.safetensors"
if run "e2e --candidates int4-g128" 2 "$E2E" --target-bpw 6 --candidates int4-g128 -o "$WORK/e2e.only-int4.safetensors"; then
    check_outputs "e2e int4-g128 only" "$E2E" int4-g128 "$WORK/e2e.only-int4.safetensors" bpw:6
fi

# ---------------------------------------------------------------- errors and the dry run
# refuse NAME PATTERN ARGS...: exit 2, PATTERN (grep -E) on stderr, nothing in the output's folder.
refuse() {
    local name=$1 pattern=$2 dir="$WORK/refuse" rc
    shift 2
    rm -rf "$dir"
    mkdir -p "$dir"
    mq 2 "$F32" -o "$dir/out.safetensors" "$@"
    rc=$?
    if [ $rc -eq 2 ] && grep -qE -- "$pattern" "$WORK/last.err" && [ -z "$(ls -A "$dir")" ]; then
        pass "$name: exit 2, names $pattern, no output ($(grep -m 1 'error' "$WORK/last.err" | head -c 100)...)"
    else
        fail "$name: exit $rc (expected 2), left '$(ls -A "$dir" | tr '\n' ' ')':" \
            "$(grep -m 1 -v '^-*$' "$WORK/last.err" | head -c 300)"
    fi
}
refuse "--target-bpw 1 (below the smallest candidates)" "--target-bpw" --target-bpw 1
refuse "--target-size 1MB (below the smallest candidates)" "--target-size" --target-size 1MB
refuse "--scheme int8 with --target-bpw" "--scheme" -s int8 --target-bpw 6
refuse "--group-size with --target-bpw" "--group-size" --group-size 64 --target-bpw 6
refuse "--granularity with --target-size" "--granularity" -g tensor --target-size 3MB
refuse "--candidates without a target" "--candidates" --candidates int8,bf16
refuse "--candidates int8-g64 (int8 takes no groups)" "int8-g64" --target-bpw 6 --candidates int8-g64
refuse "--candidates int8,int8 (twice)" "twice" --target-bpw 6 --candidates int8,int8
refuse "--target-bpw and --target-size together" \
    "--target-bpw.*--target-size|--target-size.*--target-bpw" --target-bpw 6 --target-size 3MB
refuse "--target-bpw 0" "--target-bpw" --target-bpw 0

# ---------------------------------------------------------------- --calib: output-space choices
# A Llama-shaped F32 model whose MLP weights have 1024 rows (so the choice samples every 2nd row of
# them) and synthetic calibration for every quantized layer (make_calibration.py).  With --calib
# the int8 candidate is W8A8 with static input scales, and every candidate's error is measured on
# the layer's outputs as it will run.
CAL="$WORK/cal"
MCC="$HERE/mixed_calib_check.py"
"$MQ_PYTHON" "$MAKE_HF" "$CAL" --dtype F32 --layers 2 --hidden 256 --intermediate 1024 --shards 1 --seed 5 \
    >/dev/null && "$MQ_PYTHON" "$MQ_SCRIPTS/make_calibration.py" "$CAL/model.safetensors" "$WORK/cal.h5" \
    --rows 192 --seed 3 >/dev/null || fail "calib: the model or its calibration could not be made"
CM="$CAL/model.safetensors"
# as_run FILE: the aggregate output-space SQNR as the layers run (activations quantized where they are)
as_run() {
    local w wa
    { read -r w; read -r wa; } < <(meta "$1" output_sqnr_db_w output_sqnr_db_wa)
    case $wa in MISSING|null|nan|"") echo "$w" ;; *) echo "$wa" ;; esac
}
# mcc NAME ARGS...: mixed_calib_check.py must pass; its last lines are shown on a failure
mcc() {
    local name=$1
    shift
    if MQ_SCRIPTS="$MQ_SCRIPTS" "$MQ_PYTHON" "$MCC" "$@" >"$WORK/mcc.log" 2>&1; then
        pass "$name ($(tail -n 1 "$WORK/mcc.log" | sed 's/^mixed_calib_check: //'); $(tail -n 2 "$WORK/mcc.log" | head -n 1))"
    else
        fail "$name"
        grep -m 8 "FAIL\|Error\|error" "$WORK/mcc.log" | sed 's/^/    /'
    fi
}
declare -A CSIZE CSQNR
for s in int8 int4; do
    run "calib -s $s" 1 "$CM" --calib "$WORK/cal.h5" -s $s -o "$WORK/cal.$s.safetensors" || continue
    CSIZE[$s]=$(meta "$WORK/cal.$s.safetensors" quantized_size_bytes)
    CSQNR[$s]=$(as_run "$WORK/cal.$s.safetensors")
    # at uniform s's size, measured on every row: the knapsack's errors are the layers' own
    run "calib at uniform $s's size" 2 "$CM" --calib "$WORK/cal.h5" --target-size "${CSIZE[$s]}" --measure-every 1 \
        -o "$WORK/cal.at-$s.safetensors" || continue
    q=$(as_run "$WORK/cal.at-$s.safetensors")
    if ge "$q" "${CSQNR[$s]}"; then
        pass "calib: at uniform $s's ${CSIZE[$s]} bytes, output SQNR $q dB >= uniform $s's ${CSQNR[$s]} dB"
    else
        fail "calib: at uniform $s's ${CSIZE[$s]} bytes, output SQNR $q dB < uniform $s's ${CSQNR[$s]} dB"
    fi
    mcc "calib at-$s: each candidate's output-space SQNR = the reference's, the chosen = the layer's own" \
        outspace "$CM" "$WORK/cal.h5" "$WORK/cal.at-$s.safetensors" --measure-every 1
done
# fp8 (e4m3 activations with a static scale) among the candidates, every row measured
if run "calib fp8 candidates" 2 "$CM" --calib "$WORK/cal.h5" --target-bpw 9 --candidates fp8,int4-g128,bf16 \
    --measure-every 1 -o "$WORK/cal.fp8.safetensors"; then
    mcc "calib fp8,int4-g128,bf16: the references, and each chosen fp8 figure = the layer's own W8A8 one" \
        outspace "$CM" "$WORK/cal.h5" "$WORK/cal.fp8.safetensors" --measure-every 1
fi
if [ -n "${CSIZE[int8]:-}" ] && [ -n "${CSIZE[int4]:-}" ]; then
    CMID=$(( (CSIZE[int8] + CSIZE[int4]) / 2 ))
    same_bytes "calib.mid" 1 2 3 -- "$CM" --calib "$WORK/cal.h5" --target-size "$CMID"
    if [ -f "$WORK/calib.mid.n1.safetensors" ]; then
        mcc "calib mid: the candidates measured on every 2nd row of the 1024-row weights, against the reference" \
            outspace "$CM" "$WORK/cal.h5" "$WORK/calib.mid.n1.safetensors"
        [ "$(meta "$WORK/calib.mid.n1.safetensors" quantized_size_bytes)" -le "$CMID" ] &&
            pass "calib mid: within the target of $CMID bytes" || fail "calib mid: above the target of $CMID bytes"
        # the choice differs from the weights' own: the W8A8 layers' activations count
        run "calib mid without --calib" 2 "$CM" --target-size "$CMID" -o "$WORK/cal.w.safetensors" &&
            if "$MQ_PYTHON" - "$WORK/calib.mid.n1.safetensors" "$WORK/cal.w.safetensors" <<'EOF'
import json, struct, sys
def chosen(p):
    f = open(p, "rb")
    m = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
    return {k: v.get("chosen") for k, v in json.loads(m["layers"]).items()}, json.loads(m["mixed_precision"])
(a, ma), (b, mb) = chosen(sys.argv[1]), chosen(sys.argv[2])
sys.exit(0 if a != b and ma["error_space"] == "output" and mb["error_space"] == "weight" else 1)
EOF
            then
                pass "calib mid: the output-space choice is not the weight-space one (error_space output / weight)"
            else
                fail "calib mid: the same choice with and without --calib, or error_space wrong"
            fi
    fi
    # a model folder: one config group per scheme, the W8A8 group with static input scales
    if run "calib folder" 2 "$CAL" --calib "$WORK/cal.h5" --target-size "$CMID" -o "$WORK/cal-out"; then
        if "$MQ_PYTHON" - "$WORK/cal-out" "$WORK/calib.mid.n1.safetensors" <<'EOF'
import glob, json, os, struct, sys
out, ref = sys.argv[1], sys.argv[2]
def head(p):
    f = open(p, "rb")
    return json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
tensors, recs = {}, {}
for p in glob.glob(os.path.join(out, "*.safetensors")):
    h = head(p)
    m = h.pop("__metadata__", {})
    tensors.update(h)
    recs.update(json.loads(m.get("layers", "{}")))
want = {k[:-len(".weight")]: v.get("chosen") for k, v in json.loads(head(ref)["__metadata__"]["layers"]).items()
        if "candidates" in v}
qc = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
bad = []
seen = {}
for g in qc["config_groups"].values():
    ia = g.get("input_activations")
    for t in g["targets"]:
        seen[t] = (g["weights"]["num_bits"], ia)
for mod, ch in want.items():
    if ch == "int8":
        s = seen.get(mod)
        if not s or s[0] != 8 or not s[1] or s[1].get("dynamic") is not False or mod + ".input_scale" not in tensors:
            bad.append("%s: int8 but %r, input_scale %s" % (mod, s, mod + ".input_scale" in tensors))
    elif ch == "int4-g128":
        s = seen.get(mod)
        if not s or s[0] != 4 or s[1] is not None or mod + ".weight_packed" not in tensors:
            bad.append("%s: int4 but %r" % (mod, s))
    elif mod not in qc.get("ignore", []):
        bad.append("%s: %s, not in ignore" % (mod, ch))
if set(seen) != {m for m, c in want.items() if c in ("int8", "int4-g128")}:
    bad.append("targets %s" % sorted(set(seen) ^ {m for m, c in want.items() if c in ("int8", "int4-g128")}))
if qc.get("format") != "mixed-precision" and len(qc["config_groups"]) > 1:
    bad.append("format %r" % qc.get("format"))
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
EOF
        then
            pass "calib folder: the file's choice, one group per scheme with its modules, W8A8 static with input_scale"
        else
            fail "calib folder: config.json groups against the choice"
        fi
        if "$MQ_DIST" inspect "$WORK/cal-out" >"$WORK/insp.log" 2>&1; then
            pass "calib folder: mq-dist inspect checks every module against its group"
        else
            fail "calib folder: mq-dist inspect: $(grep -m 2 -i 'problem\|error' "$WORK/insp.log")"
        fi
    fi
fi

# ---------------------------------------------------------------- --min-sqnr and --fail-below
# weight space on the F32 model of the suites, output space with --calib
if run "--min-sqnr 20" 2 "$F32" --target-bpw 12 --min-sqnr 20 -o "$WORK/floor.w.safetensors"; then
    mcc "--min-sqnr 20: every choice reaches it, promotions recorded and counted" floor "$WORK/floor.w.safetensors" 20
fi
if mq 2 "$CM" --calib "$WORK/cal.h5" --target-bpw 14 --min-sqnr 18 -o "$WORK/floor.c.safetensors"; then
    mcc "--calib --min-sqnr 18: on the outputs' SQNR" floor "$WORK/floor.c.safetensors" 18
    n=$(sed -n 's/.*"promoted":\([0-9]*\).*/\1/p' <<<"$(meta "$WORK/floor.c.safetensors" mixed_precision)")
    grep -qE -- "--min-sqnr 18.00 dB: ${n:-x} weights promoted past the smallest candidate: model\.layers\." \
        "$WORK/last.out" "$WORK/last.err" && pass "--calib --min-sqnr 18: the summary names the $n promoted weights" ||
        fail "--calib --min-sqnr 18: no summary line for the ${n:-?} promotions"
else
    fail "--calib --min-sqnr 18: exit $? ($(grep -m 1 error "$WORK/last.err" | head -c 300))"
fi
# gate NAME PATTERN ARGS...: exit 9, PATTERN on stderr, nothing left in the output's folder
gate() {
    local name=$1 pattern=$2 dir="$WORK/gate" rc
    shift 2
    rm -rf "$dir"
    mkdir -p "$dir"
    mq 2 "$@" -o "$dir/out.safetensors" -q
    rc=$?
    if [ $rc -eq 9 ] && grep -qE -- "$pattern" "$WORK/last.err" && [ -z "$(ls -A "$dir")" ]; then
        pass "$name: exit 9, lists the layers, no output"
    else
        fail "$name: exit $rc (expected 9), left '$(ls -A "$dir" | tr '\n' ' ')': $(grep -m 1 error "$WORK/last.err" | head -c 300)"
    fi
}
gate "-s int4 --fail-below 20" "below --fail-below 20.00 dB: '[^']+' \([0-9.]+ dB\)" "$F32" -s int4 --fail-below 20
gate "--calib -s int8 --fail-below 20 (the W8A8 outputs)" "dB of its output" "$CM" --calib "$WORK/cal.h5" -s int8 \
    --fail-below 20
if run "-s int8 --fail-below 20 (weights 31+ dB)" 2 "$CM" -s int8 --fail-below 20 -o "$WORK/fb.ok.safetensors"; then
    pass "-s int8 --fail-below 20 without --calib: the weights' SQNR passes, exit 0"
fi
refuse "--min-sqnr too high for the target" "lower --min-sqnr" --target-bpw 5 --min-sqnr 40
refuse "--min-sqnr without a target" "--min-sqnr" --min-sqnr 20 -s int8
refuse "--calib-missing=weights-only with a target" "--calib-missing" --target-bpw 6 --calib "$WORK/cal.h5" \
    --calib-missing=weights-only
refuse "--method gptq with a target" "--method gptq" --target-bpw 6 --calib "$WORK/cal.h5" --method gptq

D="$WORK/dry"
mkdir -p "$D"
mq 2 "$F32" --dry-run --target-bpw 6 -o "$D/out.safetensors"
rc=$?
if [ $rc -eq 0 ] && [ -z "$(ls -A "$D")" ] && grep -q "mixed precision" "$WORK/last.out"; then
    pass "--dry-run --target-bpw 6: exit 0, the choice printed, no file"
else
    fail "--dry-run --target-bpw 6: exit $rc, left '$(ls -A "$D" | tr '\n' ' ')': $(head -c 300 "$WORK/last.err")"
fi

finish
