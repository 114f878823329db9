#!/usr/bin/env bash
# PyTorch .pt end to end.  Output: the .pt holds exactly the tensors and metadata of the
# .safetensors output of the same run, loads with torch.load(weights_only=True), is a clean
# stored zip with 64-byte aligned records, and is byte-identical for -n 1..4.  Input: files
# written by torch.save (state dicts, wrapped checkpoints, views, four float dtypes) give the
# same results as the same tensors in a .safetensors file.  Hostile and malformed files exit 3
# with one clear message, leave nothing behind and execute nothing.
# Fixtures: pt_fixtures.py; checks: pt_check.py (torch.load, zipfile, numpy).
. "$(dirname "$0")/lib.sh"

if ! "$MQ_PYTHON" -c 'import torch' >/dev/null 2>&1; then
    echo "skip - $MQ_PYTHON cannot import torch"
    exit 77
fi
PTF="$HERE/pt_fixtures.py"
PTC="$HERE/pt_check.py"
OUT="$WORK/out"          # output folder of the failing runs: must stay empty
MARKERS="$WORK/markers"   # an executed hostile pickle creates a file here
mkdir -p "$OUT" "$WORK/in" "$WORK/h" "$MARKERS"

fixtures() { "$MQ_PYTHON" "$PTF" "$@"; }

# ptcheck NAME ARGS...: pt_check.py ARGS must pass.
ptcheck() {
    local name=$1
    shift
    if "$MQ_PYTHON" "$PTC" "$@" >"$WORK/ptcheck.log" 2>&1; then
        pass "$name ($(tail -n 1 "$WORK/ptcheck.log"))"
    else
        fail "$name"
        tail -n 15 "$WORK/ptcheck.log"
    fi
}

# run NAME N ARGS...: mq-dist must succeed; reports a failure (and returns 1) otherwise.
run() {
    local name=$1 n=$2
    shift 2
    mq "$n" "$@" -q && return 0
    fail "$name: -n $n exited $? ($(head -c 300 "$WORK/last.err"))"
    return 1
}

# same_files NAME REF FILES...: every file is byte-identical to REF.
same_files() {
    local name=$1 ref=$2 f bad=""
    shift 2
    for f in "$@"; do
        cmp -s "$ref" "$f" || bad="$bad ${f##*/}"
    done
    [ -f "$ref" ] && [ -z "$bad" ] && pass "$name" || fail "$name: differ from ${ref##*/}:$bad"
}

# ---------------------------------------------------------------- writing .pt

make_model "$WORK/f32.safetensors" --dtype F32 --outliers --seed 41
make_model "$WORK/f16.safetensors" --dtype F16 --outliers --seed 42
make_model "$WORK/bf16.safetensors" --dtype BF16 --outliers --seed 43

# write_pt NAME INPUT EXT [options...]: .EXT output on 1 and 3 ranks (byte-identical) against
# the .safetensors output of the same options on 2 ranks.
write_pt() {
    local name=$1 input=$2 ext=$3
    shift 3
    local st="$WORK/$name.safetensors"
    run "$name" 2 "$input" -o "$st" "$@" || return
    run "$name" 1 "$input" -o "$WORK/$name.n1.$ext" "$@" || return
    run "$name" 3 "$input" -o "$WORK/$name.n3.$ext" "$@" || return
    same_files "$name: .$ext byte-identical for -n 1 and 3" "$WORK/$name.n1.$ext" "$WORK/$name.n3.$ext"
    ptcheck "$name: .$ext holds the .safetensors output's tensors and metadata" \
        compare "$WORK/$name.n1.$ext" "$st"
}

write_pt f32-int8 "$WORK/f32.safetensors" pt
write_pt f16-int8-asym "$WORK/f16.safetensors" pth -s int8-asym
write_pt bf16-int8-tensor "$WORK/bf16.safetensors" pt -g tensor
write_pt f32-fp16 "$WORK/f32.safetensors" pt -s fp16
write_pt f16-bf16 "$WORK/f16.safetensors" pt -s bf16

# The checker itself: a reference .pt made from a safetensors output passes, and a wrong
# pairing and a torch.save file (not mq-dist's layout) are caught.
fixtures convert "$WORK/ref.pt" --from "$WORK/f32-int8.safetensors"
ptcheck "checker accepts a reference .pt" compare "$WORK/ref.pt" "$WORK/f32-int8.safetensors"
if "$MQ_PYTHON" "$PTC" compare "$WORK/ref.pt" "$WORK/f16-int8-asym.safetensors" >/dev/null 2>&1; then
    fail "checker missed a .pt that differs from the .safetensors"
else
    pass "checker rejects a .pt that differs from the .safetensors"
fi

# A tensor split across ranks: down_proj is [1536, 3072] F32, 18 MiB, two 16 MiB chunks.
make_model "$WORK/big.safetensors" --dtype F32 --hidden 1536 --layers 1 --seed 44 --outliers
ok=1
for n in 1 2 3 4; do
    run big-split "$n" "$WORK/big.safetensors" -o "$WORK/big.n$n.pt" --memory-budget=4 || ok=0
done
if [ $ok = 1 ]; then
    same_files "big-split: .pt byte-identical for -n 1..4" "$WORK/big.n1.pt" "$WORK/big.n2.pt" \
        "$WORK/big.n3.pt" "$WORK/big.n4.pt"
    run big-split 2 "$WORK/big.safetensors" -o "$WORK/big.st.safetensors" &&
        ptcheck "big-split: .pt holds the .safetensors output" compare "$WORK/big.n1.pt" "$WORK/big.st.safetensors"
fi

# ---------------------------------------------------------------- reading .pt

# Each benign fixture comes with a .safetensors companion holding the same tensors.
fixtures model-sd "$WORK/in/model-sd.pt" wrapped "$WORK/in/wrapped.pth" views "$WORK/in/views.pt" \
    dtypes "$WORK/in/dtypes.pt" control "$WORK/in/control.pt" legacy "$WORK/h/legacy.pt" --seed 45

# read_pt NAME FILE.pt [options...]: the .pt and its companion give the same tensors and the
# same metadata but for the provenance's file list; the companion run passes check_output.py.
read_pt() {
    local name=$1 pt=$2
    shift 2
    local st="${pt%.*}.safetensors" sum
    sum=$(sha256sum <"$pt")
    run "$name" 2 "$pt" -o "$WORK/$name.from-pt.safetensors" "$@" || return
    [ "$sum" = "$(sha256sum <"$pt")" ] && pass "$name: input unchanged" || fail "$name: input modified"
    run "$name" 2 "$st" -o "$WORK/$name.from-st.safetensors" "$@" || return
    ptcheck "$name: .pt input = .safetensors input" same-run "$WORK/$name.from-pt.safetensors" \
        "$WORK/$name.from-st.safetensors" --input-a "$pt"
    if "$MQ_PYTHON" "$CHECK" "$st" "$WORK/$name.from-st.safetensors" >"$WORK/check.log" 2>&1; then
        pass "$name: client check of the companion run ($(tail -n 1 "$WORK/check.log"))"
    else
        fail "$name: client check of the companion run"
        tail -n 10 "$WORK/check.log"
    fi
}

read_pt model-sd "$WORK/in/model-sd.pt"
read_pt wrapped "$WORK/in/wrapped.pth"
read_pt views "$WORK/in/views.pt"
read_pt control "$WORK/in/control.pt"
# float64 weights are kept here (-x), so both inputs take the same path.
read_pt dtypes "$WORK/in/dtypes.pt" -x '^f64\.'

# views: proj.weight is a transposed 18 MiB tensor, read in two chunks by different ranks.
ok=1
for n in 1 3 4; do
    run views "$n" "$WORK/in/views.pt" -o "$WORK/views.n$n.safetensors" || ok=0
done
[ $ok = 1 ] && same_files "views: byte-identical for -n 1..4" "$WORK/views.from-pt.safetensors" \
    "$WORK/views.n1.safetensors" "$WORK/views.n3.safetensors" "$WORK/views.n4.safetensors"

# float64 weights from a .pt are quantized like float32 ones.
run dtypes-f64 2 "$WORK/in/dtypes.pt" -o "$WORK/dtypes.f64.safetensors" &&
    ptcheck "dtypes: float64 weights quantized" f64check "$WORK/in/dtypes.safetensors" "$WORK/dtypes.f64.safetensors"
# Casts of the fixture's F32, F16, BF16 and F64 weights, biases and 0-d scalars (its safetensors
# twin, which the client reads): every float tensor becomes F16/BF16, bit for bit what torch's
# .to() gives (F64 goes through float32 first in torch too).
for cast in fp16 bf16; do
    run "dtypes-$cast" 2 "$WORK/in/dtypes.safetensors" -o "$WORK/dtypes.$cast.safetensors" -s "$cast" &&
        if "$MQ_PYTHON" "$HERE/check_output.py" --scheme "$cast" "$WORK/in/dtypes.safetensors" \
            "$WORK/dtypes.$cast.safetensors" >"$WORK/cast.log" 2>&1; then
            pass "dtypes: -s $cast casts every float tensor as torch's .to() ($(tail -n 1 "$WORK/cast.log"))"
        else
            fail "dtypes: -s $cast"
            tail -n 20 "$WORK/cast.log"
        fi
done
# F16, BF16, F64 and 0-d tensors kept through .pt to .pt.
run dtypes-pt 3 "$WORK/in/dtypes.pt" -o "$WORK/dtypes.out.pt" -x '^f64\.' &&
    ptcheck "dtypes: .pt to .pt" compare "$WORK/dtypes.out.pt" "$WORK/dtypes.from-pt.safetensors"

# .pt in, .pt out; that output read back changes nothing (int8 codes, scales: all kept).
if run roundtrip 2 "$WORK/in/model-sd.pt" -o "$WORK/model-sd.rt.pt"; then
    ptcheck "roundtrip: .pt to .pt loads in torch" compare "$WORK/model-sd.rt.pt" "$WORK/model-sd.from-pt.safetensors"
    run roundtrip 2 "$WORK/model-sd.rt.pt" -o "$WORK/model-sd.rt2.safetensors" &&
        ptcheck "roundtrip: mq-dist reads its own .pt" same-tensors "$WORK/model-sd.rt2.safetensors" \
            "$WORK/model-sd.from-pt.safetensors"
fi

# inspect: a torch.save file, and an mq-dist output with its metadata.
if "$MQ_DIST" inspect "$WORK/in/model-sd.pt" >"$WORK/inspect1" 2>&1; then
    ptcheck "inspect lists a torch.save file" inspect "$WORK/in/model-sd.pt" "$WORK/inspect1"
else
    fail "inspect of a torch.save file: exit $? $(head -c 300 "$WORK/inspect1")"
fi
if [ -f "$WORK/model-sd.rt.pt" ] && "$MQ_DIST" inspect "$WORK/model-sd.rt.pt" >"$WORK/inspect2" 2>&1; then
    ptcheck "inspect lists an mq-dist .pt and its metadata" inspect "$WORK/model-sd.rt.pt" "$WORK/inspect2" --meta
else
    fail "inspect of an mq-dist .pt: $(head -c 300 "$WORK/inspect2" 2>/dev/null)"
fi

# ---------------------------------------------------------------- errors

# expect_err NAME CODE INPUT NEEDLES N ARGS...: exit CODE with exactly one error line, which
# names INPUT's file (unless INPUT is empty) and holds one of the |-separated NEEDLES
# (case-insensitive; empty: any message); nothing left in $OUT, INPUT unchanged, no marker
# file in $MARKERS.
expect_err() {
    local name=$1 code=$2 input=$3 needles=$4 n=$5
    shift 5
    local sum="" why="" errs found alt
    [ -n "$input" ] && sum=$(sha256sum <"$input")
    mq "$n" "$@"
    local rc=$?
    errs=$(grep 'mq-dist: error' "$WORK/last.err")
    if [ -n "$(ls -A "$MARKERS")" ]; then
        why="a pickled command RAN: $(ls -A "$MARKERS" | tr '\n' ' ')"
    elif [ $rc -ne "$code" ]; then
        why="exit $rc, expected $code"
    elif [ "$(printf '%s' "$errs" | grep -c '')" -ne 1 ]; then
        why="expected one error line"
    elif [ -n "$(ls -A "$OUT")" ]; then
        why="left behind: $(ls -A "$OUT" | tr '\n' ' ')"
    elif [ -n "$input" ] && [ "$sum" != "$(sha256sum <"$input")" ]; then
        why="the input was modified"
    elif [ -n "$input" ] && ! grep -qF -- "${input##*/}" <<<"$errs"; then
        why="message does not name ${input##*/}"
    else
        # The needles must be in the message itself, not in the file's name.
        if [ -n "$input" ]; then
            errs=${errs//"$input"/}
            errs=${errs//"${input##*/}"/}
        fi
        found=""
        [ -z "$needles" ] && found=1
        IFS='|' read -ra alts <<<"$needles"
        for alt in "${alts[@]}"; do
            grep -qiF -- "$alt" <<<"$errs" && found=1
        done
        [ -z "$found" ] && why="message lacks '$needles'"
    fi
    if [ -z "$why" ]; then
        pass "$name (-n $n): exit $code${needles:+, '$needles'}"
    else
        fail "$name (-n $n): $why: $(head -c 400 "$WORK/last.err")"
    fi
    rm -rf "${OUT:?}"/* "$OUT"/.[!.]* 2>/dev/null
}

# Hand-built archives (zipfile + hand-written pickle bytes); pt_fixtures.py describes each.
HOSTILE="os-system posix-system builtins-eval subprocess-popen short-storage stride-past-end
outside-folder outside-root bad-cd-offset bad-local-offset truncated protocol4"
set --
for k in $HOSTILE; do
    set -- "$@" "$k" "$WORK/h/$k.pt"
done
fixtures "$@" --marker "$MARKERS/pwned" --seed 46

while read -r kind n needles; do
    expect_err "hostile $kind" 3 "$WORK/h/$kind.pt" "$needles" "$n" "$WORK/h/$kind.pt" -o "$OUT/o.pt"
done <<'KINDS'
os-system 1 os.system
os-system 3 os.system
posix-system 2 posix.system
builtins-eval 2 builtins.eval
subprocess-popen 2 subprocess.Popen
short-storage 2 data/0
stride-past-end 2 stride|past
outside-folder 2 outside
outside-root 2 outside
bad-cd-offset 2
bad-local-offset 2
truncated 2
protocol4 2
legacy 2 legacy|zip
KINDS
expect_err "hostile os-system to .safetensors" 3 "$WORK/h/os-system.pt" os.system 2 \
    "$WORK/h/os-system.pt" -o "$OUT/o.safetensors"
sleep 0.2   # a Popen would run asynchronously
[ -z "$(ls -A "$MARKERS")" ] && pass "no pickled command ran" || fail "pickled commands ran: $(ls -A "$MARKERS")"

# Output errors with a .pt output: nothing left behind either.
make_model "$WORK/nan.safetensors" --corrupt nan --seed 47
expect_err "NaN weight, .pt output" 4 "" "NaN" 3 "$WORK/nan.safetensors" -o "$OUT/o.pt"
expect_err "missing output folder, .pt output" 5 "" "" 2 "$WORK/f32.safetensors" -o "$OUT/missing/o.pt"
printf 'an existing file\n' >"$WORK/exists.pt"
cp "$WORK/exists.pt" "$WORK/exists.copy"
mq 2 "$WORK/f32.safetensors" -o "$WORK/exists.pt"
rc=$?
if [ $rc -eq 5 ] && cmp -s "$WORK/exists.pt" "$WORK/exists.copy"; then
    pass "existing .pt refused without --force, left untouched"
else
    fail "existing .pt: exit $rc $(head -c 300 "$WORK/last.err")"
fi

finish
