#!/usr/bin/env bash
# The command line: help, version, usage errors, dry run, report, inspect, default names.
. "$(dirname "$0")/lib.sh"

make_model "$WORK/m.safetensors" --seed 21 --outliers

"$MQ_DIST" --help >"$WORK/help" 2>&1 && grep -q -- "--exclude REGEX" "$WORK/help" && grep -q 'lm_head' "$WORK/help" \
    && grep -q 'exit codes' "$WORK/help" && pass "--help lists options, default exclusions, exit codes" || fail "--help"
"$MQ_DIST" --version | grep -qE '^mq-dist [0-9]+\.[0-9]+\.[0-9]+$' && pass "--version" || fail "--version"
mq 2 --scheme int3 "$WORK/m.safetensors"
[ $? -eq 2 ] && grep -q "unknown scheme" "$WORK/last.err" && pass "bad option: exit 2 on every rank" || fail "bad option"

# Dry run: prints the plan per rank and writes nothing.
before=$(ls -A "$WORK")
mq 3 "$WORK/m.safetensors" --dry-run
rc=$?
if [ $rc -eq 0 ] && grep -q "dry run" "$WORK/last.out" && grep -qE '^  2 ' "$WORK/last.out" \
    && grep -q "compression" "$WORK/last.out" && grep -q "peak est" "$WORK/last.out" \
    && [ "$before" = "$(ls -A "$WORK")" ]; then
    pass "--dry-run prints the plan and writes nothing"
else
    fail "--dry-run: exit $rc"
    cat "$WORK/last.out" "$WORK/last.err"
fi

# Default output name, progress lines, summary, and the run report.
mq 2 "$WORK/m.safetensors" --report "$WORK/report.json"
rc=$?
if [ $rc -eq 0 ] && [ -f "$WORK/m.int8.safetensors" ]; then
    pass "default output name beside the input"
else
    fail "default output: exit $rc $(cat "$WORK/last.err")"
fi
n_tensors=$(grep -c '^\[ *[0-9]*/' "$WORK/last.out")
grep -q 'worst layers' "$WORK/last.out" && grep -q 'aggregate SQNR' "$WORK/last.out" && [ "$n_tensors" -gt 5 ] \
    && pass "progress line per tensor ($n_tensors) and summary" || fail "progress/summary: $(cat "$WORK/last.out")"
"$MQ_PYTHON" - "$WORK/report.json" <<'PY' && pass "run report has per-rank figures" || fail "run report"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["ranks"] == 2 and len(r["per_rank"]) == 2, r
for p in r["per_rank"]:
    for k in ("read_s", "quantize_s", "write_s", "bytes_read", "bytes_written", "peak_rss_bytes"):
        assert k in p, k
assert sum(p["bytes_read"] for p in r["per_rank"]) >= r["bytes_in"] - 1
assert r["load_imbalance"] >= 1.0
PY
mq 1 "$WORK/m.safetensors" -q
[ $? -eq 5 ] && pass "second run refuses to overwrite" || fail "second run"
mq 1 "$WORK/m.safetensors" -q --force
[ $? -eq 0 ] && [ ! -s "$WORK/last.out" ] && pass "--quiet prints nothing" || fail "--quiet"

# Output names: .bin (Hugging Face's torch name) writes a torch archive like .pt and .pth; a name
# whose extension mq-dist does not write is refused before anything runs.
mkdir -p "$WORK/hf"
mq 2 "$WORK/m.safetensors" -o "$WORK/hf/pytorch_model.bin" -q
rc=$?
if [ $rc -eq 0 ] && "$MQ_PYTHON" "$HERE/pt_check.py" compare "$WORK/hf/pytorch_model.bin" "$WORK/m.int8.safetensors" \
    >"$WORK/ptc" 2>&1; then
    pass "-o pytorch_model.bin writes a torch archive holding the .safetensors output's tensors"
else
    fail "-o pytorch_model.bin: exit $rc: $(tail -n 3 "$WORK/ptc" 2>/dev/null) $(head -c 300 "$WORK/last.err")"
fi
"$MQ_PYTHON" - "$WORK/hf/pytorch_model.bin" <<'PY' && pass "torch.load(pytorch_model.bin, weights_only=True)" || fail "torch.load of the .bin output"
import sys
import torch
sd = torch.load(sys.argv[1], weights_only=True)
w = sd["model.layers.0.mlp.down_proj.weight"]
assert w.dtype == torch.int8 and tuple(w.shape) == (64, 128), (w.dtype, w.shape)
assert sd["model.layers.0.mlp.down_proj.weight_scale"].dtype == torch.float32
PY
# refused NAME NEEDLE ARGS...: exit 2 on 2 ranks, one error line naming --output and NEEDLE, nothing written.
refused() {
    local name=$1 needle=$2 before line
    shift 2
    before=$(ls -A "$WORK" "$WORK/hf")
    mq 2 "$@"
    local rc=$?
    line=$(grep 'mq-dist: error' "$WORK/last.err")
    if [ $rc -eq 2 ] && [ "$(printf '%s\n' "$line" | grep -c .)" -eq 1 ] && grep -qF -- "$needle" <<<"$line" \
        && [ "$before" = "$(ls -A "$WORK" "$WORK/hf")" ]; then
        pass "$name: exit 2, '$needle', nothing written"
    else
        fail "$name: exit $rc: $(head -c 300 "$WORK/last.err"); new: $(comm -13 <(echo "$before") <(ls -A "$WORK" "$WORK/hf") | tr '\n' ' ')"
    fi
}
refused "-o x.gguf" "--output '$WORK/hf/x.gguf': mq-dist does not write '.gguf' files: end the name in .safetensors, or in .pt, .pth or .bin" \
    "$WORK/m.safetensors" -o "$WORK/hf/x.gguf"
refused "-o x.PT (case matters)" "extensions are case-sensitive: '.PT' is not '.pt'" "$WORK/m.safetensors" -o "$WORK/hf/x.PT"
refused "-o without an extension" "--output '$WORK/hf/model': the name has no extension" "$WORK/m.safetensors" -o "$WORK/hf/model"
refused "-n 3 (mpirun's option)" "-n is not an mq-dist option: --dry-run prints the plan; the rank count goes to mpirun -n" \
    -n 3 "$WORK/m.safetensors"
refused "--json on a run" "--json applies to inspect only" "$WORK/m.safetensors" --json

# --help: 80 columns, and the lines that were cut or wrong say what the code does.
width=$(awk '{ if (length($0) > m) m = length($0) } END { print m }' "$WORK/help")
flat=$(tr -s ' \n' ' ' <"$WORK/help")
if [ "$width" -lt 80 ] && grep -qF "weights-only (quantize its weights without activation scales)" <<<"$flat" \
    && grep -qF "mq-dist inspect [--observer NAME] [--act TYPE] [--calib-samples N] FILE.h5" <<<"$flat" \
    && grep -qF "mq-dist inspect [--verbose | --json] MODEL" <<<"$flat" && grep -qF "STEM.SCHEME.safetensors" <<<"$flat" \
    && ! grep -qF -- "-n, --dry-run" <<<"$flat"; then
    pass "--help: at most $width columns, --calib-missing in full, inspect's options in the usage"
else
    fail "--help: $width columns or a line missing"
fi

# inspect: any file the project reads or writes.
"$MQ_DIST" inspect "$WORK/m.int8.safetensors" >"$WORK/inspect" 2>&1
grep -q 'quantization_dtype: int8' "$WORK/inspect" && grep -q 'weight_scale' "$WORK/inspect" \
    && grep -q '"action"' "$WORK/inspect" && pass "inspect shows tensors and metadata" || fail "inspect: $(cat "$WORK/inspect")"
mkdir -p "$WORK/sh"
make_model "$WORK/sh/model.safetensors.index.json" --shards 2 --seed 22
"$MQ_DIST" inspect "$WORK/sh/model.safetensors.index.json" >"$WORK/inspect2" 2>&1 \
    && grep -q '2 shards' "$WORK/inspect2" && pass "inspect reads a shard index" || fail "inspect index"
"$MQ_DIST" inspect "$WORK/missing.safetensors" >/dev/null 2>&1
[ $? -eq 3 ] && pass "inspect of a missing file: exit 3" || fail "inspect missing"

finish
