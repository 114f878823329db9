#!/usr/bin/env bash
# Every error end to end: the exit code, one clear message naming the file or
# tensor, nothing left behind in the output folder, and no hang.
. "$(dirname "$0")/lib.sh"

OUT="$WORK/out"
mkdir -p "$OUT"

# expect_error NAME CODE NEEDLE N ARGS...: runs on N ranks and checks the failure.
expect_error() {
    local name=$1 code=$2 needle=$3 n=$4
    shift 4
    mq "$n" "$@"
    local rc=$?
    local left
    left=$(ls -A "$OUT")
    if [ "$rc" -ne "$code" ]; then
        fail "$name (-n $n): exit $rc, expected $code: $(head -c 400 "$WORK/last.err")"
    elif ! grep -qF -- "$needle" "$WORK/last.err"; then
        fail "$name (-n $n): message lacks '$needle': $(head -c 400 "$WORK/last.err")"
    elif [ "$(grep -c 'mq-dist: error' "$WORK/last.err")" -ne 1 ]; then
        fail "$name (-n $n): expected exactly one error line, got: $(cat "$WORK/last.err")"
    elif [ -n "$left" ]; then
        fail "$name (-n $n): left behind: $left"
    else
        pass "$name (-n $n): exit $code, '$needle'"
    fi
    rm -rf "${OUT:?}"/* "$OUT"/.[!.]* 2>/dev/null
}

make_model "$WORK/good.safetensors" --seed 7

expect_error missing-file 3 "cannot open '$WORK/nope.safetensors'" 2 "$WORK/nope.safetensors" -o "$OUT/o.safetensors"

# Malformed files: each names the file and what is wrong.
while read -r kind code needle; do
    make_model "$WORK/bad-$kind.safetensors" --corrupt "$kind" --seed 8
    for n in 1 3; do
        expect_error "corrupt-$kind" "$code" "$needle" "$n" "$WORK/bad-$kind.safetensors" -o "$OUT/o.safetensors"
    done
done <<'KINDS'
truncated 3 truncated
short 3 too small
header-too-large 3 exceeds the 100000000-byte limit
header-past-eof 3 past the end
bad-json 3 malformed safetensors header
bad-utf8 3 not valid UTF-8
overlap 3 an overlap
hole 3 a hole
trailing 3 unexpected bytes after the last tensor
unknown-dtype 3 unknown dtype 'Q7'
size-mismatch 3 shape mismatch
negative-shape 3 negative number
float-offset 3 fraction or exponent
duplicate-name 3 appears twice
metadata-not-string 3 is not a string
not-first-zero 3 not at 0
nan 4 NaN at row
inf 4 Inf at row
KINDS

# BF16 and F16 rows are quantized from their bits, with no float32 copy: a NaN or an Inf there is
# still an error, and it names the same row and element as in the float32 file of the same seed.
for dtype in BF16 F16; do
    d=$(echo "$dtype" | tr 'A-Z' 'a-z')
    for kind in nan inf; do
        make_model "$WORK/$d-$kind.safetensors" --corrupt "$kind" --seed 8 --dtype "$dtype"
        for n in 1 2; do
            expect_error "corrupt-$d-$kind" 4 "at row" "$n" "$WORK/$d-$kind.safetensors" -o "$OUT/o.safetensors"
            got=$(grep -o "[A-Za-z]* at row [0-9]*, element [0-9]*" "$WORK/last.err")
            mq 1 "$WORK/bad-$kind.safetensors" -o "$OUT/o.safetensors"
            want=$(grep -o "[A-Za-z]* at row [0-9]*, element [0-9]*" "$WORK/last.err")
            rm -rf "${OUT:?}"/* "$OUT"/.[!.]* 2>/dev/null
            [ -n "$got" ] && [ "$got" = "$want" ] && pass "$d-$kind (-n $n): '$got', as in float32" ||
                fail "$d-$kind (-n $n): '$got', float32 file: '$want'"
        done
    done
done

# The bad value sits in one tensor: whichever rank owns it, every rank exits 4.
make_model "$WORK/nan.safetensors" --corrupt nan --seed 9
for n in 2 4; do
    expect_error nan-any-rank 4 "tensor '" "$n" "$WORK/nan.safetensors" -o "$OUT/o.safetensors"
done

# Every rank, not just mpirun, exits with the same code.
rm -f "$WORK"/rc.*
timeout -k 5 180 "$MQ_MPIEXEC" -n 3 sh -c '"$0" "$@"; echo $? >"'"$WORK"'/rc.$OMPI_COMM_WORLD_RANK"' \
    "$MQ_DIST" "$WORK/nan.safetensors" -o "$OUT/o.safetensors" </dev/null >/dev/null 2>&1
codes=$(cat "$WORK"/rc.* 2>/dev/null | sort | uniq -c | awk '{print $1 "x" $2}')
[ "$codes" = "3x4" ] && pass "all 3 ranks exit 4" || fail "per-rank exit codes: '$codes'"

# fp16 cast of a value past 65504
make_model "$WORK/outliers.safetensors" --outliers --seed 10 --dtype F32
"$MQ_PYTHON" - "$WORK/outliers.safetensors" <<'PY'
import json, struct, sys
import numpy as np
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
t = h["model.layers.0.mlp.up_proj.weight"]
off = 8 + n + t["data_offsets"][0]
b[off:off + 4] = np.float32(1e6).tobytes()
open(p, "wb").write(bytes(b))
PY
expect_error fp16-overflow 4 "beyond the float16 range" 3 "$WORK/outliers.safetensors" --scheme fp16 -o "$OUT/o.safetensors"
# A cast converts biases and norms too, so an overflow there is the same error, naming the tensor.
make_model "$WORK/bias-big.safetensors" --seed 11 --dtype F32
"$MQ_PYTHON" - "$WORK/bias-big.safetensors" <<'PY'
import json, struct, sys
import numpy as np
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])["model.layers.0.self_attn.q_proj.bias"]
off = 8 + n + t["data_offsets"][0] + 4 * 5
b[off:off + 4] = np.float32(-7e4).tobytes()
open(p, "wb").write(bytes(b))
PY
expect_error fp16-overflow-bias 4 "q_proj.bias': a value beyond the float16 range" 2 "$WORK/bias-big.safetensors" \
    --scheme fp16 -o "$OUT/o.safetensors"

# Shards: a shard outside the index's folder, a tensor missing from its shard.
mkdir -p "$WORK/shard"
make_model "$WORK/shard/model.safetensors.index.json" --shards 2 --seed 11
sed 's/"model-00001-of-00002.safetensors"/"..\/model-00001-of-00002.safetensors"/' \
    "$WORK/shard/model.safetensors.index.json" >"$WORK/shard/outside.index.json"
expect_error shard-outside 3 "not a file in the index's folder" 2 "$WORK/shard/outside.index.json" -o "$OUT/o.safetensors"
"$MQ_PYTHON" - "$WORK/shard/model.safetensors.index.json" "$WORK/shard/ghost.index.json" <<'PY'
import json, sys
ix = json.load(open(sys.argv[1]))
first = sorted(ix["weight_map"].values())[0]
ix["weight_map"]["model.ghost.weight"] = first
json.dump(ix, open(sys.argv[2], "w"))
PY
expect_error shard-missing-tensor 3 "model.ghost.weight" 3 "$WORK/shard/ghost.index.json" -o "$OUT/o.safetensors"

# Output problems.
expect_error no-folder 5 "cannot create the output in folder" 2 "$WORK/good.safetensors" -o "$OUT/missing/o.safetensors"
cp "$WORK/good.safetensors" "$OUT/exists.safetensors"
mq 2 "$WORK/good.safetensors" -o "$OUT/exists.safetensors"
rc=$?
if [ $rc -eq 5 ] && grep -q "use --force" "$WORK/last.err" && cmp -s "$WORK/good.safetensors" "$OUT/exists.safetensors"; then
    pass "existing output refused without --force, left untouched"
else
    fail "existing output: exit $rc $(cat "$WORK/last.err")"
fi
mq 2 "$WORK/good.safetensors" -o "$OUT/exists.safetensors" --force
[ $? -eq 0 ] && ! cmp -s "$WORK/good.safetensors" "$OUT/exists.safetensors" && pass "--force overwrites" || fail "--force"
rm -f "$OUT/exists.safetensors"
cp "$WORK/good.safetensors" "$OUT/in.safetensors"
sum=$(sha256sum "$OUT/in.safetensors")
mq 2 "$OUT/in.safetensors" -o "$OUT/../out/in.safetensors" --force
rc=$?
if [ $rc -eq 5 ] && grep -q "is the input" "$WORK/last.err" && [ "$sum" = "$(sha256sum "$OUT/in.safetensors")" ]; then
    pass "output equal to the input refused, even with --force"
else
    fail "output equal to input: exit $rc $(cat "$WORK/last.err")"
fi
rm -f "$OUT/in.safetensors"

# Terminated (as scancel signals every task): the temporary output goes too, unless a unit was
# journaled by then: then it stays with its journal, as after a crash (test_faults.sh).
make_model "$WORK/slow.safetensors" --dtype F32 --size-mib 300 --hidden 1024 --seed 12
env $MQ_OMPI_DEFAULT_TEARDOWN "$MQ_MPIEXEC" -n 2 "$MQ_DIST" "$WORK/slow.safetensors" -o "$OUT/o.safetensors" -q \
    </dev/null >/dev/null 2>&1 &
mpid=$!
for _ in $(seq 1 400); do
    ls -A "$OUT" | grep -q '^\.o\.safetensors\.tmp' && break
    sleep 0.02
done
pkill -TERM -f "^$MQ_DIST $WORK/slow.safetensors"
wait $mpid
rc=$?
if [ -e "$OUT/o.safetensors" ]; then
    echo "skip - the run finished before the signal arrived"
elif [ $rc -ne 0 ] && [ -z "$(ls -A "$OUT")" ]; then
    pass "terminated run: exit $rc, nothing left behind"
elif [ $rc -ne 0 ] && [ -f "$OUT/.o.safetensors.tmp" ] &&
    [ "$(stat -c %s "$OUT/.o.safetensors.tmp.journal" 2>/dev/null || echo 0)" -gt 58 ]; then
    pass "terminated run: exit $rc, units were journaled: partial output and journal kept"
else
    fail "terminated run: exit $rc, left: $(ls -A "$OUT" | tr '\n' ' ')"
fi
rm -rf "${OUT:?}"/* "$OUT"/.[!.]* 2>/dev/null

# A read-only folder and a full disk need mounts (root); skipped elsewhere.
if mkdir -p "$WORK/ro" "$WORK/full" && mount -t tmpfs -o size=64k tmpfs "$WORK/full" 2>/dev/null; then
    mount -t tmpfs -o ro,size=64k tmpfs "$WORK/ro"
    mq 2 "$WORK/good.safetensors" -o "$WORK/ro/o.safetensors"
    rc=$?
    if [ $rc -eq 5 ] && grep -q "Read-only file system" "$WORK/last.err"; then
        pass "read-only folder: exit 5"
    else
        fail "read-only folder: exit $rc $(cat "$WORK/last.err")"
    fi
    mq 3 "$WORK/good.safetensors" -o "$WORK/full/o.safetensors"
    rc=$?
    if [ $rc -eq 5 ] && grep -q "no space left" "$WORK/last.err" && [ -z "$(ls -A "$WORK/full")" ]; then
        pass "full disk: exit 5, nothing left behind"
    else
        fail "full disk: exit $rc $(cat "$WORK/last.err"); left: $(ls -A "$WORK/full")"
    fi
    umount "$WORK/full" "$WORK/ro"
else
    echo "skip - read-only and full-disk cases need tmpfs mounts (run as root)"
fi


# Hostile sizes from a few hundred bytes of .pt: zero-stride views (torch's expand) are legal
# tensors, but one that needs more bytes than its whole file is refused before anything is
# planned (a [2^20, 2^20] view: a 1 TiB output), and so are two [2^31, 2^30] views of 2^63 bytes
# each (their sum would wrap 64 bits), each named with its size. Sums of tensors that each fit
# are checked by the plan (unit_plan).
"$MQ_PYTHON" - "$WORK" <<'PY'
import sys

import torch

w = sys.argv[1]
torch.save({"w.weight": torch.zeros(1).expand(2**20, 2**20)}, w + "/expand-1t.pt")
z = torch.zeros(1).expand(2**31, 2**30)
torch.save({"a.weight": z, "b.weight": z}, w + "/expand-2e64.pt")
PY
for n in 1 3; do
    expect_error expand-1tib 3 "tensor 'w.weight': its view of record 'expand-1t/data/0' (1099511627776 elements, strides that repeat elements) needs 4398046511104 bytes, more than the whole" \
        "$n" "$WORK/expand-1t.pt" -o "$OUT/o.safetensors"
done
expect_error expand-sum-2e64 3 "tensor 'a.weight': its view of record 'expand-2e64/data/0' (2305843009213693952 elements, strides that repeat elements) needs 9223372036854775808 bytes" \
    2 "$WORK/expand-2e64.pt" -o "$OUT/o.safetensors"


# Tensor names with control characters (the header's JSON escapes \u001b and \n are legal): every
# message, progress line, plan line and inspect line shows them escaped, as \x1b and \n, on one
# line; no raw control byte reaches the terminal. One tensor holds a NaN, for an error message.
"$MQ_PYTHON" - "$WORK/ctl.safetensors" <<'PY'
import json
import struct
import sys

import numpy as np

names = {"ok\u001b[31m\nred.weight": np.ones((4, 4), np.float32),
         "nan\u001b]0;title\u0007\u0085.weight": np.full((4, 4), np.nan, np.float32)}
header, data = {}, b""
for k, v in sorted(names.items()):
    header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [len(data), len(data) + v.nbytes]}
    data += v.tobytes()
h = json.dumps(header).encode()  # json.dumps writes \u001b, \n, \u0007 and \u0085 escaped
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
PY
# raw_free FILE: no control byte but newline (and no C1 control) in FILE.
raw_free() { ! LC_ALL=C grep -qP '[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]' "$1"; }
expect_error control-names 4 'nan\x1b]0;title\x07\xc2\x85.weight' 2 "$WORK/ctl.safetensors" -o "$OUT/o.safetensors"
raw_free "$WORK/last.err" && pass "control-names: the error has no raw control byte" ||
    fail "control-names: raw control bytes in: $(od -c "$WORK/last.err" | head -5)"
mq 2 "$WORK/ctl.safetensors" -o "$OUT/o.safetensors" -x nan --dry-run
if raw_free "$WORK/last.out" && grep -qF 'ok\x1b[31m\nred.weight' "$WORK/last.out" &&
    [ "$(grep -c 'red.weight' "$WORK/last.out")" -eq 1 ]; then
    pass "control-names: the dry-run plan shows the name escaped, on one line"
else
    fail "control-names: dry-run plan: $(od -c "$WORK/last.out" | grep -m3 -B1 -A1 'r   e   d')"
fi
mq 2 "$WORK/ctl.safetensors" -o "$OUT/o.safetensors" -x nan
rc=$?
if [ $rc -eq 0 ] && raw_free "$WORK/last.out" && grep -q '^\[ *[0-9]/2\] ok\\x1b\[31m\\nred\.weight \[4, 4\]' "$WORK/last.out"; then
    pass "control-names: progress lines escaped, one line per tensor"
else
    fail "control-names: run exit $rc: $(head -c 400 "$WORK/last.out")"
fi
rm -rf "${OUT:?}"/* "$OUT"/.[!.]* 2>/dev/null
timeout 60 "$MQ_DIST" inspect "$WORK/ctl.safetensors" >"$WORK/last.out" 2>"$WORK/last.err"
rc=$?
if [ $rc -eq 0 ] && raw_free "$WORK/last.out" && grep -qF 'ok\x1b[31m\nred.weight' "$WORK/last.out"; then
    pass "control-names: inspect escapes them, each tensor on one line"
else
    fail "control-names: inspect exit $rc: $(od -c "$WORK/last.out" | head -20)"
fi

finish
