#!/usr/bin/env bash
# Mixed-precision benchmark: on a Llama-shaped model (scripts/make_hf_model.py, F32, about 1.6 GB by
# default, page-cache hot), uniform int8 and int4 g128 runs, then --target-size at 5 budgets from
# int4's size to int8's: each run's tensor bytes, aggregate SQNR and time, so the size/SQNR curve
# can be read off, and the cost of the choice: each mixed run's time (its candidate pass, choose_s,
# included) over the uniform int8 run's. Times leave out the output's fsync (on a virtual disk it
# times the disk) and are the best of 3 runs.
# With MQ_BENCH_CALIB=ROWS, the same with synthetic calibration (scripts/make_calibration.py, ROWS
# rows per layer, made once): uniform int8 (W8A8, static input scales) and int4 with --calib, and
# --target-size at the middle budget with --calib, where every candidate is measured on the layers'
# outputs; the output SQNR as the layers run, and the time over the calibrated int8 run's.
# Usage: scripts/bench_mixed.sh [LAYERS]   (env MQ_BENCH_DIR: where the model goes; MQ_BENCH_RANKS: "1 2";
#        MQ_BENCH_CALIB: calibration rows, 0 (default) for none; MQ_BENCH_WEIGHTS=0 leaves out the weight-space part)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAYERS=${1:-8}
DIR=${MQ_BENCH_DIR:-$ROOT/build-bench/data}
PY=/usr/bin/python3
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$ROOT/build-bench" -j "$(nproc)" --target mq-dist >/dev/null
BIN=$ROOT/build-bench/mq-dist
mkdir -p "$DIR"
model="$DIR/mixed-llama-$LAYERS"
[ -d "$model" ] || "$PY" "$ROOT/scripts/make_hf_model.py" "$model" --dtype F32 --layers "$LAYERS" --hidden 2048 \
    --intermediate 5632 --vocab 4096 --shards 2
in="$model/model.safetensors.index.json"
cat "$model"/*.safetensors >/dev/null
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# model: $LAYERS layers, hidden 2048, F32, $(du -cb "$model"/*.safetensors | tail -1 | cut -f1) bytes"

# One configuration, best of 3: prints "seconds tensor_bytes sqnr_db choose_s".
run() {
    local n=$1 out=$2
    shift 2
    local best="" line
    for rep in 1 2 3; do
        rm -f "$out"
        sync
        mpirun -n "$n" "$BIN" "$in" -o "$out" -q -f --report "$DIR/mixed-report.json" "$@"
        line=$("$PY" - "$DIR/mixed-report.json" "$out" <<'PY'
import json, struct, sys
r = json.load(open(sys.argv[1]))
with open(sys.argv[2], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    meta = json.loads(f.read(n))["__metadata__"]
choose = max(p.get("choose_s", 0.0) for p in r["per_rank"])
wa = meta.get("output_sqnr_db_wa", "nan")
out = wa if wa not in ("nan", "null", "") else meta.get("output_sqnr_db_w", "-")
print("%.3f %s %s %.3f %s" % (r["total_s"] - r["sync_s"], meta["quantized_size_bytes"], meta["sqnr_db"], choose, out))
PY
)
        if [ -z "$best" ] || awk -v a="${line%% *}" -v b="${best%% *}" 'BEGIN { exit !(a < b) }'; then best=$line; fi
    done
    echo "$best"
}

for n in ${MQ_BENCH_RANKS:-1 2}; do
    [ "${MQ_BENCH_WEIGHTS:-1}" = 0 ] && break
    read -r t8 s8 q8 _ < <(run "$n" "$DIR/mixed-u8.safetensors" -s int8)
    read -r t4 s4 q4 _ < <(run "$n" "$DIR/mixed-u4.safetensors" -s int4)
    printf '%-3s %-26s %12s %8s %10s %9s %10s\n' n run "tensor bytes" "SQNR dB" "seconds" "x int8" "choose_s"
    printf '%-3s %-26s %12s %8.2f %10s %9s %10s\n' "$n" "uniform int8" "$s8" "$q8" "$t8" 1.00 -
    printf '%-3s %-26s %12s %8.2f %10s %9.2f %10s\n' "$n" "uniform int4 g128" "$s4" "$q4" "$t4" \
        "$(awk -v a="$t4" -v b="$t8" 'BEGIN { print a / b }')" -
    prev=-1000 mono=1
    for f in 0 0.25 0.5 0.75 1; do
        target=$(awk -v a="$s4" -v b="$s8" -v f="$f" 'BEGIN { printf "%.0f", a + f * (b - a) }')
        read -r t s q c < <(run "$n" "$DIR/mixed-m.safetensors" --target-size "$target")
        printf '%-3s %-26s %12s %8.2f %10s %9.2f %10s\n' "$n" "--target-size $target" "$s" "$q" "$t" \
            "$(awk -v a="$t" -v b="$t8" 'BEGIN { print a / b }')" "$c"
        awk -v a="$q" -v b="$prev" 'BEGIN { exit !(a < b) }' && mono=0
        prev=$q
    done
    [ $mono = 1 ] && echo "n=$n: SQNR rises with the budget (monotone)" || echo "n=$n: SQNR NOT MONOTONE in the budget"
done
ROWS=${MQ_BENCH_CALIB:-0}
if [ "$ROWS" -gt 0 ]; then
    cal="$DIR/mixed-llama-$LAYERS-calib-$ROWS.h5"
    [ -f "$cal" ] || "$PY" "$ROOT/scripts/make_calibration.py" "$in" "$cal" --rows "$ROWS" --seed 7
    echo "# calibration: $ROWS rows per layer ($(du -b "$cal" | cut -f1) bytes)"
    for n in ${MQ_BENCH_RANKS:-1 2}; do
        read -r t8 s8 _ _ o8 < <(run "$n" "$DIR/mixed-u8.safetensors" -s int8 --calib "$cal")
        read -r t4 s4 _ _ o4 < <(run "$n" "$DIR/mixed-u4.safetensors" -s int4 --calib "$cal")
        target=$(( (s4 + s8) / 2 ))
        read -r t s _ c o < <(run "$n" "$DIR/mixed-m.safetensors" --target-size "$target" --calib "$cal")
        printf '%-3s %-34s %12s %14s %10s %9s %10s\n' n run "tensor bytes" "output SQNR dB" "seconds" "x int8" "choose_s"
        printf '%-3s %-34s %12s %14.2f %10s %9s %10s\n' "$n" "--calib uniform int8 (W8A8)" "$s8" "$o8" "$t8" 1.00 -
        printf '%-3s %-34s %12s %14.2f %10s %9.2f %10s\n' "$n" "--calib uniform int4 g128" "$s4" "$o4" "$t4" \
            "$(awk -v a="$t4" -v b="$t8" 'BEGIN { print a / b }')" -
        printf '%-3s %-34s %12s %14.2f %10s %9.2f %10s\n' "$n" "--calib --target-size $target" "$s" "$o" "$t" \
            "$(awk -v a="$t" -v b="$t8" 'BEGIN { print a / b }')" "$c"
    done
fi
rm -f "$DIR"/mixed-u8.safetensors "$DIR"/mixed-u4.safetensors "$DIR"/mixed-m.safetensors "$DIR/mixed-report.json"
