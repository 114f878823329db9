#!/usr/bin/env bash
# Hugging Face model folders in and out (LOWBIT.md B.3, B.4): config.json, quantization_config,
# shards and index, copied files, determinism over ranks and shard sizes, the refusals, --force,
# and a hub-cache input made of symlinks. The checks are in folder_check.py.
. "$(dirname "$0")/lib.sh"
# One machine needs no munge authentication between mpirun and its ranks (where munge is
# installed but its daemon is down, PMIx retries it for 2 s at every start).
export PMIX_MCA_psec=native

MAKE_HF="$MQ_SCRIPTS/make_hf_model.py"
FCHECK="$HERE/folder_check.py"
hf() { "$MQ_PYTHON" "$MAKE_HF" "$@"; }
fc() { "$MQ_PYTHON" "$FCHECK" "$@"; }

# check NAME IN OUT [folder_check check options...]
check() {
    local name=$1 in=$2 out=$3
    shift 3
    if fc check "$in" "$out" "$@" >"$WORK/check.log" 2>&1; then
        pass "$name: folder check ($(tail -n 1 "$WORK/check.log"))"
    else
        fail "$name: folder check"
        grep -v '^ct_check:' "$WORK/check.log" | tail -n 15
    fi
}

# run NAME N ARGS...: mq-dist must succeed.
run() {
    local name=$1 n=$2 rc=0
    shift 2
    mq "$n" "$@" -q || rc=$?
    [ $rc = 0 ] && return 0
    fail "$name: exited $rc ($(grep -m 3 'mq-dist' "$WORK/last.err" | head -c 600))"
    return 1
}

# same_folder A B: the same file names, every file byte-identical (cmp).
same_folder() {
    local a=$1 b=$2 f
    if ! diff <(cd "$a" && find . -printf '%P %y\n' | sort) <(cd "$b" && find . -printf '%P %y\n' | sort) \
        >"$WORK/diff.log"; then
        echo "  file lists differ: $(head -c 300 "$WORK/diff.log" | tr '\n' ' ')"
        return 1
    fi
    while IFS= read -r f; do
        cmp -s "$a/$f" "$b/$f" || { echo "  $f differs"; return 1; }
    done < <(cd "$a" && find . -type f -printf '%P\n')
}

# refused NAME CODE REGEX PARENT OUTNAME ARGS...: mq-dist on 2 ranks must exit CODE (any non-zero
# for "nz"), print a message matching REGEX, and leave neither PARENT/OUTNAME nor a hidden partial
# (PARENT/.OUTNAME*) behind.
refused() {
    local name=$1 code=$2 re=$3 parent=$4 outname=$5 rc=0 ok=1
    shift 5
    mq 2 "$@" || rc=$?
    if [ "$rc" = 0 ] || { [ "$code" != nz ] && [ "$rc" != "$code" ]; }; then
        fail "$name: exit code $rc, expected $code"
        ok=0
    fi
    if ! grep -E -q -- "$re" "$WORK/last.err"; then
        fail "$name: message does not match /$re/: $(grep -m 1 'mq-dist' "$WORK/last.err")"
        ok=0
    fi
    if [ -e "$parent/$outname" ]; then
        fail "$name: the output $parent/$outname was made"
        ok=0
    fi
    if compgen -G "$parent/.$outname*" >/dev/null; then
        fail "$name: a partial was left behind: $(cd "$parent" && ls -d ".$outname"*)"
        ok=0
    fi
    [ $ok = 1 ] && pass "$name: refused (exit $rc): $(grep -m 1 -o 'error: .*' "$WORK/last.err" | head -c 120)"
}

# listing DIR: every entry below DIR with its kind and checksum, to see that nothing changed.
listing() { (cd "$1" && find . -printf '%P %y %s\n' | sort && find . -type f -exec sha256sum {} + | sort); }

hidden_partials() { (cd "$1" && ls -A | grep '^\.' || true); }

# ---------------------------------------------------------------- the models
# BF16 with what a downloaded folder has besides the weights (README, original/, a stray .bin,
# .pth and .safetensors, hidden files) and a config.json with values a JSON rewriter can get wrong.
hf "$WORK/bf16" --dtype BF16 --shards 2 --seed 11
fc decorate "$WORK/bf16"
hf "$WORK/f32" --dtype F32 --shards 2 --seed 12
before_bf16=$(listing "$WORK/bf16" | sha256sum)
before_f32=$(listing "$WORK/f32" | sha256sum)

# ---------------------------------------------------------------- 1. one folder per scheme
# BF16: default output names (DIR-SCHEME beside the input; the fp8 run gives the input with a
# trailing /), 1MB shards (two or more, with an index). F32: -o, one model.safetensors.
for s in int4 w8a16 int8 fp8; do
    in="$WORK/bf16"
    [ $s = fp8 ] && in="$WORK/bf16/"
    ct=--ct
    [ $s = int8 ] && ct=   # ct_check has no int8 (W8A8) mode
    if run "bf16-$s" 2 "$in" -s $s --max-shard-size 1MB; then
        if [ -d "$WORK/bf16-$s" ]; then
            check "bf16-$s" "$WORK/bf16" "$WORK/bf16-$s" --scheme $s $ct
        else
            fail "bf16-$s: no default output folder $WORK/bf16-$s ($(ls "$WORK" | tr '\n' ' '))"
        fi
    fi
done
# -o names: without an extension, or with one but ending in / (a folder all the same).
declare -A F32_OUT=([int4]="$WORK/f32.int4/" [w8a16]="$WORK/f32-w8a16" [int8]="$WORK/f32_int8" [fp8]="$WORK/f32.fp8.v1/")
for s in int4 w8a16 int8 fp8; do
    ct=--ct
    [ $s = int8 ] && ct=
    out=${F32_OUT[$s]}
    run "f32-$s" 3 "$WORK/f32" -s $s -o "$out" && check "f32-$s" "$WORK/f32" "${out%/}" --scheme $s --single $ct
done
if [ -z "$(hidden_partials "$WORK")" ]; then
    pass "no hidden partial folders left beside the outputs"
else
    fail "hidden entries beside the outputs: $(hidden_partials "$WORK" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- 2 and 4. determinism, many shards
# int4 with 300kB shards (5 of them) on 1..4 ranks: every file byte-identical; -n 2 checked in full.
ref=""
for n in 1 2 3 4; do
    out="$WORK/det-n$n"
    run "det -n $n" "$n" "$WORK/bf16" -s int4 --max-shard-size 300kB -o "$out" || continue
    if [ -z "$ref" ]; then
        ref=$out
    elif same_folder "$ref" "$out"; then
        pass "det: -n $n folder byte-identical to -n 1"
    else
        fail "det: -n $n folder differs from -n 1"
    fi
done
[ -d "$WORK/det-n2" ] && check "det -n 2, >= 4 shards" "$WORK/bf16" "$WORK/det-n2" --scheme int4 --min-shards 4 --ct
# The largest tensor bytes of a shard of several modules, as the limit, cut the same shards as 300kB.
if [ -n "$ref" ]; then
    max=$(fc max-shard "$ref")
    if run "det size $max" 2 "$WORK/bf16" -s int4 --max-shard-size "$max" -o "$WORK/det-max"; then
        if same_folder "$ref" "$WORK/det-max"; then
            pass "det: --max-shard-size $max and 300kB give byte-identical folders"
        else
            fail "det: --max-shard-size $max and 300kB give different folders"
        fi
    fi
fi

# ---------------------------------------------------------------- 3. refusals
refused "-o inside the input" 2 "inside the input folder" "$WORK/bf16" sub \
    "$WORK/bf16" -o "$WORK/bf16/sub/out"
[ "$(listing "$WORK/bf16" | sha256sum)" = "$before_bf16" ] && pass "-o inside: the input folder is unchanged" \
    || fail "-o inside: the input folder changed"

# The default output bf16-int4 exists (from part 1): refused, telling about --force, left as it was.
before=$(listing "$WORK/bf16-int4" | sha256sum)
rc=0
mq 2 "$WORK/bf16" -s int4 || rc=$?
if [ $rc != 0 ] && grep -q -- '--force' "$WORK/last.err"; then
    pass "existing output folder: refused (exit $rc), the message names --force"
else
    fail "existing output folder: exit $rc, message: $(grep -m 1 'mq-dist' "$WORK/last.err") (expected a refusal naming --force)"
fi
[ "$(listing "$WORK/bf16-int4" | sha256sum)" = "$before" ] && pass "existing output folder: left unchanged" \
    || fail "existing output folder: it changed"
compgen -G "$WORK/.bf16-int4*" >/dev/null && fail "existing output folder: a partial was left beside it"

cp -r "$WORK/f32" "$WORK/noconf"
rm "$WORK/noconf/config.json"
refused "no config.json" nz "noconf.*config\.json|config\.json.*noconf" "$WORK" noconf-int8 "$WORK/noconf"

hf --merge "$WORK/f32" "$WORK/merged.safetensors"
refused "folder output from a single file" nz "folder" "$WORK" merged-out \
    "$WORK/merged.safetensors" -o "$WORK/merged-out"

hf "$WORK/bg" --dtype BF16 --shards 2 --seed 13 --break-groups
refused "group size 128 does not divide 200" nz "model\.layers\.[01]\.mlp\.down_proj\.weight" "$WORK" bg-int4 \
    "$WORK/bg" -s int4
if run "bg --keep-unfit" 2 "$WORK/bg" -s int4 --keep-unfit -o "$WORK/bg-keep"; then
    check "bg --keep-unfit (down_proj kept, in ignore)" "$WORK/bg" "$WORK/bg-keep" --scheme int4 --single \
        --keep 'mlp\.down_proj' --ct
fi

refused "--exclude k_proj splits q/k/v" 2 "k_proj\.weight.*q_proj\.weight|q_proj\.weight.*k_proj\.weight" \
    "$WORK" split1 "$WORK/f32" -x k_proj -o "$WORK/split1"
refused "--exclude up_proj splits gate/up" 2 "gate_proj\.weight.*up_proj\.weight|up_proj\.weight.*gate_proj\.weight" \
    "$WORK" split2 "$WORK/f32" -s w8a16 -x up_proj -o "$WORK/split2"
refused "--include q_proj splits q/k/v" 2 "q_proj\.weight.*[kv]_proj\.weight|[kv]_proj\.weight.*q_proj\.weight" \
    "$WORK" split3 "$WORK/f32" -i 'q_proj' -o "$WORK/split3"
# Excluding a whole fused set is fine: layer 1's attention kept, named in ignore.
if run "exclude layer 1 attention" 2 "$WORK/f32" -s fp8 -x 'layers\.1\.self_attn\.' -o "$WORK/f32-fp8-x"; then
    check "exclude layer 1 attention" "$WORK/f32" "$WORK/f32-fp8-x" --scheme fp8 --single \
        --keep 'layers\.1\.self_attn\.' --ct
fi

# ---------------------------------------------------------------- hub cache of symlinks
snap=$(fc hub "$WORK/bf16" "$WORK/hub")
n_links=$(find "$snap" -type l | wc -l)
if [ "$n_links" -gt 10 ] && [ -z "$(find "$snap" -type f)" ]; then
    pass "hub cache: $n_links files, all symlinks into blobs/"
else
    fail "hub cache setup: $n_links links, $(find "$snap" -type f | wc -l) regular files"
fi
if run "hub cache" 2 "$snap" -s int4 --max-shard-size 1MB -o "$WORK/hub-int4"; then
    check "hub cache (copies are real files)" "$snap" "$WORK/hub-int4" --scheme int4 --ct
    if [ -d "$WORK/bf16-int4" ] && cmp -s "$WORK/bf16-int4/config.json" "$WORK/hub-int4/config.json" &&
        cmp -s "$WORK/bf16-int4/tokenizer.json" "$WORK/hub-int4/tokenizer.json"; then
        pass "hub cache: config.json and tokenizer.json as from the plain folder"
    else
        fail "hub cache: config.json or tokenizer.json differ from the plain folder's output"
    fi
fi

# ---------------------------------------------------------------- --force replaces a folder
# bf16-int4 (int4, 2 shards, a stray file added) replaced by a w8a16 folder: nothing of the old
# one stays, nothing hidden is left beside it.
touch "$WORK/bf16-int4/stale.txt"
entries_before=$(ls -A "$WORK" | sort)
if run "--force" 2 "$WORK/bf16" -s w8a16 --max-shard-size 1MB -o "$WORK/bf16-int4" --force; then
    check "--force (the new folder only)" "$WORK/bf16" "$WORK/bf16-int4" --scheme w8a16
    if [ "$(ls -A "$WORK" | sort)" = "$entries_before" ]; then
        pass "--force: nothing left beside the output"
    else
        fail "--force: entries beside the output changed: $(diff <(echo "$entries_before") <(ls -A "$WORK" | sort) | grep '^[<>]' | tr '\n' ' ')"
    fi
fi

# ---------------------------------------------------------------- the inputs are never modified
[ "$(listing "$WORK/bf16" | sha256sum)" = "$before_bf16" ] && [ "$(listing "$WORK/f32" | sha256sum)" = "$before_f32" ] \
    && pass "input folders unchanged" || fail "an input folder was modified"

finish
