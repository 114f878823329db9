#!/usr/bin/env bash
# The command line: help, version, usage errors, dry run, report, inspect, default names.
. "$(dirname "$0")/lib.sh"

make_model "$WORK/m.safetensors" --seed 21 --outliers

"$MQ_DIST" --help >"$WORK/help" 2>&1 && grep -q -- "--exclude REGEX" "$WORK/help" && grep -q 'lm_head' "$WORK/help" \
    && grep -q 'exit codes' "$WORK/help" && pass "--help lists options, default exclusions, exit codes" || fail "--help"
"$MQ_DIST" --version | grep -qE '^mq-dist [0-9]+\.[0-9]+\.[0-9]+$' && pass "--version" || fail "--version"
mq 2 --scheme int3 "$WORK/m.safetensors"
[ $? -eq 2 ] && grep -q "unknown scheme" "$WORK/last.err" && pass "bad option: exit 2 on every rank" || fail "bad option"
mq 2 --digest md5 "$WORK/m.safetensors"
[ $? -eq 2 ] && grep -qF -- "--digest 'md5': give xxh3 (the default) or sha256" "$WORK/last.err" && [ ! -e "$WORK/m.int8.safetensors" ] \
    && pass "--digest md5 refused, naming the two algorithms" || fail "--digest md5: $(cat "$WORK/last.err")"
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
# the output's fsync is timed on its own and within the total; the rate without it is at least the total's
assert 0 <= r["sync_s"] <= r["total_s"] and all(0 <= p["sync_s"] <= p["finish_s"] for p in r["per_rank"]), r
assert r["input_gb_per_s_without_sync"] >= r["input_gb_per_s"] > 0, r
PY
# A unit's writes are gathered (unit.h, UNIT_STAGE): with the 16 MiB MLP layers of hidden 1024 (64 blocks
# of 64 KiB of codes each, and a 4 KiB piece of scales per block) the output's requests average well
# over 256 KiB, where block-by-block writes would average under 100 KiB.
make_model "$WORK/w.safetensors" --dtype F32 --hidden 1024 --layers 1 --seed 12
mq 1 "$WORK/w.safetensors" -q --no-sync -o "$WORK/w.int8.safetensors" --report "$WORK/report-w.json"
"$MQ_PYTHON" - "$WORK/report-w.json" <<'PY' && pass "writes gathered: large output requests" || fail "write sizes"
import json, sys
p = json.load(open(sys.argv[1]))["per_rank"][0]
mean = p["bytes_written"] / p["write_calls"]
print("write requests: %d, mean %.0f KiB" % (p["write_calls"], mean / 1024))
assert mean > 256 * 1024, (p["write_calls"], p["bytes_written"])
PY
# Read-ahead (source.c): the windows ahead are asked for only where the page cache lacks some of their
# pages. All pages cached: nothing asked for (on kernels with cachestat, 6.5 and later; older ones ask
# for every window). The second half evicted: the windows that reach into it are asked for, each byte
# at most once. Both outputs are the hot run's bytes.
"$MQ_PYTHON" - "$WORK/w.safetensors" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)  # clean pages, so that the eviction below drops them
while os.read(fd, 1 << 20):
    pass
PY
mq 1 "$WORK/w.safetensors" -q --no-sync -o "$WORK/w.hot.safetensors" --report "$WORK/report-hot.json"
"$MQ_PYTHON" - "$WORK/w.safetensors" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
os.posix_fadvise(fd, size // 2, 0, os.POSIX_FADV_DONTNEED)
PY
mq 1 "$WORK/w.safetensors" -q --no-sync -o "$WORK/w.cold.safetensors" --report "$WORK/report-cold.json"
"$MQ_PYTHON" - "$WORK/report-hot.json" "$WORK/report-cold.json" "$(stat -c %s "$WORK/w.safetensors")" \
    "$(stat -f -c %T "$WORK")" <<'PY' &&
import json, os, sys
hot, cold = (json.load(open(f))["per_rank"][0]["read_ahead_bytes"] for f in sys.argv[1:3])
size = int(sys.argv[3])
print("read-ahead asked for: %d bytes hot, %d bytes with the second half evicted (kernel %s)"
      % (hot, cold, os.uname().release))
# cachestat(2), syscall 451, as mq-dist calls it: absent before Linux 6.5, and a sandbox may refuse it
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
rng, st = (ctypes.c_uint64 * 2)(0, 4096), (ctypes.c_uint64 * 5)()
fd = os.open(sys.argv[1], os.O_RDONLY)
has = os.uname().machine in ("x86_64", "aarch64") and libc.syscall(451, fd, rng, st, 0) == 0
if has:
    assert hot == 0, hot
else:
    print("no cachestat here (errno %d): the hot run asks for every window too" % ctypes.get_errno())
assert cold <= size + (16 << 20), (cold, size)  # two 8 MiB windows past the end at most
if sys.argv[4] in ("tmpfs", "ramfs"):
    print("the work folder is on %s, which keeps its pages: nothing was evicted" % sys.argv[4])
else:
    assert cold > 0, cold
PY
    cmp -s "$WORK/w.hot.safetensors" "$WORK/w.cold.safetensors" && cmp -s "$WORK/w.hot.safetensors" "$WORK/w.int8.safetensors" \
    && pass "read-ahead only where the page cache lacks pages; same output hot and cold" \
    || fail "read-ahead: $(head -c 300 "$WORK/last.err")"
mq 1 "$WORK/m.safetensors" -q --no-sync --force -o "$WORK/nosync.safetensors" --report "$WORK/report-nosync.json"
"$MQ_PYTHON" -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r["sync_s"] == 0, r["sync_s"]' \
    "$WORK/report-nosync.json" && pass "--no-sync: the report's sync_s is 0" ||
    fail "--no-sync sync_s: $(head -c 300 "$WORK/last.err")"
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
refused "-o without an extension from a file input (a model folder needs one)" "output '$WORK/hf/model' is a model folder, which needs a Hugging Face model folder as input" "$WORK/m.safetensors" -o "$WORK/hf/model"
refused "-n 3 (mpirun's option)" "-n is not an mq-dist option: --dry-run prints the plan; the rank count goes to mpirun -n" \
    -n 3 "$WORK/m.safetensors"
refused "--json on a run" "--json applies to inspect only" "$WORK/m.safetensors" --json
# A pattern that would make regcomp take gigabytes is refused before it is compiled.
t0=$(date +%s)
refused "--include a++++... (24 stacked +)" "--include 'a++++++++++++++++++++++++': stacked quantifiers" \
    "$WORK/m.safetensors" --include "a$(printf '+%.0s' $(seq 24))"
refused "--exclude with nested repeats" "more than 2048 copies" "$WORK/m.safetensors" -x '((a{1,64}){1,64})'
refused "--include with a bound over 255" "the repetition bound 1000 is more than the limit of 255" \
    "$WORK/m.safetensors" -i 'a{1,1000}'
[ $(($(date +%s) - t0)) -lt 60 ] && pass "hostile patterns refused in $(($(date +%s) - t0)) s (3 runs)" || fail "hostile patterns: slow"

# --help: 80 columns, and the lines that were cut or wrong say what the code does.
width=$(awk '{ if (length($0) > m) m = length($0) } END { print m }' "$WORK/help")
flat=$(tr -s ' \n' ' ' <"$WORK/help")
if [ "$width" -lt 80 ] && grep -qF "weights-only (quantize its weights without activation scales)" <<<"$flat" \
    && grep -qF "mq-dist inspect [--observer NAME] [--act TYPE] [--calib-samples N] FILE.h5" <<<"$flat" \
    && grep -qF "mq-dist inspect [--verbose | --json | --plot] MODEL" <<<"$flat" && grep -qF "STEM.SCHEME.safetensors" <<<"$flat" \
    && ! grep -qF -- "-n, --dry-run" <<<"$flat"; then
    pass "--help: at most $width columns, --calib-missing in full, inspect's options in the usage"
else
    fail "--help: $width columns or a line missing"
fi

# inspect: any file the project reads or writes.
"$MQ_DIST" inspect "$WORK/m.int8.safetensors" >"$WORK/inspect" 2>&1
n_lines=$(wc -l <"$WORK/inspect")
if head -n 2 "$WORK/inspect" | grep -q '^summary:' && grep -q '^  scheme       int8 (symmetric, per channel)' "$WORK/inspect" \
    && grep -q '^  SQNR  *[0-9.]* dB' "$WORK/inspect" && grep -q 'compression 2\.' "$WORK/inspect" \
    && grep -q '^  dtypes .*I8 ' "$WORK/inspect" && grep -q 'quantization_dtype: int8' "$WORK/inspect" \
    && grep -q 'weight_scale' "$WORK/inspect" && ! grep -q '"action"' "$WORK/inspect" \
    && grep -q 'layers: (a JSON object of .* entries; --verbose shows it)' "$WORK/inspect" \
    && [ "$(grep -n '^summary:' "$WORK/inspect" | cut -d: -f1)" -lt "$(grep -n '^tensors (' "$WORK/inspect" | cut -d: -f1)" ]; then
    pass "inspect: the summary first, then the table, per-layer records left out ($n_lines lines)"
else
    fail "inspect summary: $(head -c 600 "$WORK/inspect")"
fi
"$MQ_DIST" inspect --verbose "$WORK/m.int8.safetensors" >"$WORK/inspect-v" 2>&1
grep -q '"action"' "$WORK/inspect-v" && grep -q '"sqnr_db"' "$WORK/inspect-v" && grep -q '^summary:' "$WORK/inspect-v" \
    && pass "inspect --verbose adds the per-layer records" || fail "inspect --verbose: $(head -c 300 "$WORK/inspect-v")"
if "$MQ_DIST" inspect "$WORK/m.int8.safetensors" --json >"$WORK/inspect.json" 2>"$WORK/inspect.err"; then
    "$MQ_PYTHON" - "$WORK/inspect.json" "$WORK/m.int8.safetensors" <<'PY' && pass "inspect --json: one valid JSON document, its figures the file's own" || fail "inspect --json"
import json, struct, sys
doc = json.load(open(sys.argv[1]))  # the whole stdout: one document
raw = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
meta = header.pop("__metadata__")
assert set(doc) == {"path", "format", "summary", "files", "tensors"}, sorted(doc)
assert doc["format"] == "safetensors" and doc["path"] == sys.argv[2]
s = doc["summary"]
assert s["tensors"] == len(header) == len(doc["tensors"]), (s["tensors"], len(header))
sizes = {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()}
assert s["data_bytes"] == sum(sizes.values())
assert sum(d["tensors"] for d in s["dtypes"].values()) == len(header)
for dt, d in s["dtypes"].items():
    assert d["bytes"] == sum(sizes[k] for k, v in header.items() if v["dtype"] == dt), dt
q = s["mq_dist"]
assert q["scheme"] == meta["scheme"] == "int8" and q["symmetric"] is True and q["per_channel"] is True
assert q["sqnr_db"] == float(meta["sqnr_db"]) and q["compression_ratio"] == float(meta["compression_ratio"])
assert q["original_bytes"] == int(meta["original_size_bytes"]) and q["calibration"] is None
layers = json.loads(meta["layers"])
assert q["quantized_layers"] == sum(r["action"] == "quantized" for r in layers.values())
assert q["kept_layers"] == sum(r["action"] == "kept" for r in layers.values())
f = doc["files"][0]
assert f["bytes"] == len(raw) and f["header_bytes"] == n and f["metadata"]["layers"] == layers
assert f["metadata"]["scheme"] == "int8"
for t in doc["tensors"]:
    h = header[t["name"]]
    assert t["dtype"] == h["dtype"] and t["shape"] == h["shape"] and t["bytes"] == sizes[t["name"]], t
    assert t["contiguous"] is True and t["file"] == "m.int8.safetensors"
PY
else
    fail "inspect --json: exit $?: $(head -c 300 "$WORK/inspect.err")"
fi
# inspect --plot: an SVG whose points and bars are the file's own per-layer records, in depth order.
if "$MQ_DIST" inspect --plot "$WORK/m.int8.safetensors" >"$WORK/plot.svg" 2>"$WORK/plot.err" \
    && "$MQ_DIST" inspect --plot "$WORK/m.int8.safetensors" | cmp -s - "$WORK/plot.svg"; then
    "$MQ_PYTHON" - "$WORK/plot.svg" "$WORK/m.int8.safetensors" <<'PY' && pass "inspect --plot: a well-formed SVG of every quantized layer's SQNR and bits, in depth order, the same bytes twice" || fail "inspect --plot"
import json, math, re, struct, sys
import xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == ns + "svg"
raw = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
meta = json.loads(raw[8:8 + n])["__metadata__"]
layers = {k: r for k, r in json.loads(meta["layers"]).items() if r["action"] == "quantized"}
def natural(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]
order = sorted(layers, key=natural)
bars = [e for e in root.iter(ns + "rect") if e.get("class") == "bits"]
points = [e for e in root.iter(ns + "circle") if e.get("class") == "layer"]
assert len(bars) == len(layers) == len(points), (len(bars), len(points), len(layers))
for e, name in zip(bars, order):
    r = layers[name]
    bpw = r["bytes_out"] * 8 / math.prod(r["shape"])
    assert e.find(ns + "title").text == "%s: %.2f dB, %.3f bits per weight" % (name, r["sqnr_db"], bpw), e.find(ns + "title").text
xs = [float(e.get("cx")) for e in points]
assert xs == sorted(xs)
# a higher SQNR is drawn higher (a smaller y)
by = sorted(zip((layers[nm]["sqnr_db"] for nm in order), (float(e.get("cy")) for e in points)))
assert all(a[1] >= b[1] for a, b in zip(by, by[1:])), by
PY
else
    fail "inspect --plot: exit $?: $(head -c 300 "$WORK/plot.err")"
fi
"$MQ_DIST" inspect --plot "$WORK/m.safetensors" >/dev/null 2>"$WORK/plot-in.err"
rc=$?
[ "$rc" -eq 3 ] && grep -qF "m.safetensors': its metadata has no per-layer records" "$WORK/plot-in.err" \
    && pass "inspect --plot of a file mq-dist did not write: exit 3, the file named" \
    || fail "inspect --plot of the input: exit $rc: $(head -c 300 "$WORK/plot-in.err")"
"$MQ_DIST" inspect "$WORK/hf/pytorch_model.bin" --json >"$WORK/inspect-pt.json" 2>&1 && "$MQ_PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["format"] == "torch" and d["files"][0]["archive"] == "archive" and d["summary"]["mq_dist"]["scheme"] == "int8"
' "$WORK/inspect-pt.json" && pass "inspect --json of a torch archive" || fail "inspect --json .bin: $(head -c 300 "$WORK/inspect-pt.json")"
# inspect_refused NAME NEEDLE ARGS...: exit 2, one error line holding NEEDLE, nothing on stdout.
inspect_refused() {
    local name=$1 needle=$2
    shift 2
    "$MQ_DIST" inspect "$@" >"$WORK/ir.out" 2>"$WORK/ir.err"
    local rc=$?
    if [ $rc -eq 2 ] && [ "$(grep -c 'mq-dist: error' "$WORK/ir.err")" -eq 1 ] && grep -qF -- "$needle" "$WORK/ir.err" \
        && [ ! -s "$WORK/ir.out" ]; then
        pass "inspect $name: exit 2, '$needle'"
    else
        fail "inspect $name: exit $rc: $(head -c 300 "$WORK/ir.err")"
    fi
}
inspect_refused "--observer on a model file" "--observer, --act and --calib-samples apply to HDF5 calibration files" \
    "$WORK/m.int8.safetensors" --observer mse
inspect_refused "--calib-samples on a model file" "apply to HDF5 calibration files" "$WORK/m.int8.safetensors" --calib-samples 5
inspect_refused "--scheme" "inspect does not take --scheme" -s int8-asym "$WORK/m.int8.safetensors"
"$MQ_PYTHON" "$MQ_SCRIPTS/make_calibration.py" "$WORK/m.safetensors" "$WORK/c.h5" --rows 16 >/dev/null 2>&1 || fail "make_calibration"
inspect_refused "--json on a calibration file" "--json applies to model files" "$WORK/c.h5" --json
inspect_refused "--verbose on a calibration file" "--verbose applies to model files" --verbose "$WORK/c.h5"
mkdir -p "$WORK/sh"
make_model "$WORK/sh/model.safetensors.index.json" --shards 2 --seed 22
"$MQ_DIST" inspect "$WORK/sh/model.safetensors.index.json" >"$WORK/inspect2" 2>&1 \
    && grep -q '2 shards' "$WORK/inspect2" && pass "inspect reads a shard index" || fail "inspect index"
"$MQ_DIST" inspect "$WORK/missing.safetensors" >/dev/null 2>&1
[ $? -eq 3 ] && pass "inspect of a missing file: exit 3" || fail "inspect missing"

finish
