#!/usr/bin/env bash
# The command line: help, version, usage errors, dry run, report, inspect, default names.
. "$(dirname "$0")/lib.sh"

make_model "$WORK/m.safetensors" --seed 21 --outliers

"$MQ_DIST" --help >"$WORK/help" 2>&1 && grep -q -- "--exclude REGEX" "$WORK/help" && grep -q 'lm_head' "$WORK/help" \
    && grep -q 'exit codes' "$WORK/help" && pass "--help lists options, default exclusions, exit codes" || fail "--help"
"$MQ_DIST" --version | grep -qE '^mq-dist [0-9]+\.[0-9]+\.[0-9]+$' && pass "--version" || fail "--version"
mq 2 --scheme int3 "$WORK/m.safetensors"
[ $? -eq 2 ] && grep -q "unknown scheme" "$WORK/last.err" && pass "bad option: exit 2 on every rank" || fail "bad option"
# The old unsigned scheme wrote U8 codes and zero points; it is refused and points to int8-asym,
# on the command line and in a job file.
mq 2 -s uint8 "$WORK/m.safetensors"
[ $? -eq 2 ] && grep -q "use int8-asym" "$WORK/last.err" && [ ! -e "$WORK/m.uint8.safetensors" ] \
    && pass "-s uint8 refused, naming int8-asym" || fail "-s uint8: $(cat "$WORK/last.err")"
printf '{"defaults": {"scheme": "uint8"}, "models": [{"input": "m.safetensors"}]}' >"$WORK/old.json"
mq 2 --job "$WORK/old.json"
[ $? -eq 2 ] && grep -q "use int8-asym" "$WORK/last.err" && pass "a job file's scheme uint8 refused, naming int8-asym" \
    || fail "job file uint8: $(cat "$WORK/last.err")"

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
