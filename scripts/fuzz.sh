#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan), writes their seed
# corpora, and runs every target for a fixed time, two at a time. Fails
# (exit 1) on any finding: a crash, a sanitizer report (leaks included), an
# input slower than the timeout, or one that needs more memory than the limit.
# A slow input counts only when it is slow again on replay (see is_stall below).
#
#   scripts/fuzz.sh [-t SECONDS] [-p PARALLEL] [-b BUILD_DIR] [-c CORPUS_DIR]
#                   [--keep-going] [--no-build] [TARGET ...]
#
#   -t SECONDS     time per target (default 60)
#   -p PARALLEL    targets run side by side (default 2)
#   -b BUILD_DIR   the fuzz build (default build-fuzz); seeds, logs and findings go there
#   -c CORPUS_DIR  the growing corpora, one folder per target (default BUILD_DIR/fuzz-corpus);
#                  keep it between runs to fuzz on from where the last run stopped
#   --keep-going   long runs: go on after a finding (libFuzzer -fork=1 with -ignore_crashes,
#                  -ignore_ooms and -ignore_timeouts) and report every finding at the end
#   --no-build     use the targets already built
#   TARGET         safetensors index zip torch pickle journal job options (default: all)
#
# Environment: MQ_FUZZ_RSS_MB (default 2048) and MQ_FUZZ_TIMEOUT (seconds per input,
# default 10). A finding is saved as BUILD_DIR/fuzz-artifacts/TARGET-{crash,leak,timeout,oom}-*;
# replay it with BUILD_DIR/tests/fuzz/fuzz_TARGET FILE.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ALL=(safetensors index zip torch pickle journal job options)
SECONDS_PER=60
PARALLEL=2
BUILD=$ROOT/build-fuzz
CORPUS=
KEEP_GOING=0
BUILD_IT=1
TARGETS=()
while [ $# -gt 0 ]; do
    case $1 in
    -t) SECONDS_PER=$2; shift 2 ;;
    -p) PARALLEL=$2; shift 2 ;;
    -b) BUILD=$(realpath -m "$2"); shift 2 ;;
    -c) CORPUS=$(realpath -m "$2"); shift 2 ;;
    --keep-going) KEEP_GOING=1; shift ;;
    --no-build) BUILD_IT=0; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
    esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
    [[ " ${ALL[*]} " == *" $t "* ]] || { echo "fuzz.sh: no target '$t' (targets: ${ALL[*]})" >&2; exit 2; }
done
CORPUS=${CORPUS:-$BUILD/fuzz-corpus}
RSS_MB=${MQ_FUZZ_RSS_MB:-2048}
TIMEOUT=${MQ_FUZZ_TIMEOUT:-10}
PYTHON=/usr/bin/python3
[ -x $PYTHON ] || PYTHON=python3

if [ $BUILD_IT = 1 ]; then
    CC=${CC:-clang}
    command -v "$CC" >/dev/null || { echo "fuzz.sh: needs clang (Debian: clang-14, libclang-rt-14-dev)" >&2; exit 2; }
    echo "== building the fuzz targets in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER="$CC" -DMQ_FUZZ=ON -DMQ_BUILD_TESTS=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" -j "$PARALLEL" --target mq_fuzz >/dev/null
fi
SEEDS=$BUILD/fuzz-seeds
DICTS=$BUILD/fuzz-dicts
LOGS=$BUILD/fuzz-logs
ART=$BUILD/fuzz-artifacts
rm -rf "$SEEDS" "$DICTS" "$LOGS"
mkdir -p "$SEEDS" "$DICTS" "$LOGS" "$ART"
touch "$LOGS/.start" # findings newer than this are this run's
"$PYTHON" "$ROOT/tests/fuzz/make_seeds.py" "$SEEDS" --repo "$ROOT"
FD=$ROOT/tests/fuzz
for t in safetensors index job; do cp "$FD/json.dict" "$DICTS/$t.dict"; done
cp "$FD/zip.dict" "$DICTS/zip.dict"
cat "$FD/zip.dict" "$FD/pickle.dict" > "$DICTS/torch.dict"
for t in pickle journal options; do cp "$FD/$t.dict" "$DICTS/$t.dict"; done

# One target: its own corpus folder first (new inputs go there), then the seeds.
run_one() {
    local t=$1 bin=$BUILD/tests/fuzz/fuzz_$1
    local args=(-max_total_time="$SECONDS_PER" -rss_limit_mb="$RSS_MB" -malloc_limit_mb="$RSS_MB"
                -timeout="$TIMEOUT" -dict="$DICTS/$t.dict" -artifact_prefix="$ART/$t-"
                -print_final_stats=1 -detect_leaks=1)
    [ $KEEP_GOING = 1 ] && args+=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
    mkdir -p "$CORPUS/$t"
    # a generous outer limit in case the process itself stops answering
    # the targets start no MPI: no suppressions, and the fast unwinder
    ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS= UBSAN_OPTIONS=print_stacktrace=1 timeout -k 10 $((SECONDS_PER + 300)) \
        "$bin" "${args[@]}" "$CORPUS/$t" "$SEEDS/$t" >"$LOGS/$t.log" 2>&1
}

echo "== fuzzing ${TARGETS[*]}: ${SECONDS_PER} s each, $PARALLEL at a time (logs: $LOGS)"
declare -A RC
running=0
for t in "${TARGETS[@]}"; do
    if [ $running -ge "$PARALLEL" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    ( run_one "$t"; echo $? >"$LOGS/$t.rc" ) || true &
    running=$((running + 1))
done
wait || true

# A slow input (libFuzzer's slow-unit-* at 10 s, or a timeout-*) is first run again on its own,
# three times: the targets are deterministic, so an input that is slow in itself is slow again.
# One that replays in under a tenth of the timeout each time was slowed by the machine (another
# process, a paused virtual machine), not by the parser: it is reported and kept, but not a finding.
REPLAY=$LOGS/replay
mkdir -p "$REPLAY"
is_stall() {
    local t=$1 f=$2 name ms max=0 limit_ms=$((TIMEOUT * 100))
    name=$(basename "$f")
    case $name in "$t-slow-unit-"* | "$t-timeout-"*) ;; *) return 1 ;; esac
    for i in 1 2 3; do
        ASAN_OPTIONS=detect_leaks=1 timeout -k 10 $((TIMEOUT * 3)) "$BUILD/tests/fuzz/fuzz_$t" \
            -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" "$f" >"$REPLAY/$name.$i.log" 2>&1 || return 1
        ms=$(grep -aoE 'Executed .* in [0-9]+ ms' "$REPLAY/$name.$i.log" | grep -oE '[0-9]+ ms$' | cut -d' ' -f1 || true)
        [ -n "$ms" ] && [ "$ms" -lt "$limit_ms" ] || return 1
        [ "$ms" -gt "$max" ] && max=$ms
    done
    echo "$name: slow once under fuzzing, at most $max ms in 3 replays (limit $limit_ms ms): not reproduced" \
        >>"$LOGS/stalls"
    return 0
}

status=0
printf '%-12s %12s %8s %8s %8s %10s %9s  %s\n' target execs cov ft corpus corpus_kB seconds result
for t in "${TARGETS[@]}"; do
    log=$LOGS/$t.log
    rc=$(cat "$LOGS/$t.rc" 2>/dev/null || echo 1)
    RC[$t]=$rc
    # the last libFuzzer status line: "#N ... cov: C ft: F corp: ..."
    line=$(grep -aE '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
    execs=$(grep -aoE '^stat::number_of_executed_units: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
    [ -n "$execs" ] || execs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$line")
    cov=$(grep -oE 'cov: [0-9]+' <<<"$line" | awk '{print $2}' || true)
    ft=$(grep -oE 'ft: [0-9]+' <<<"$line" | awk '{print $2}' || true)
    time=$(grep -aoE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 | awk '{print $5}' || true)
    [ -n "$time" ] || time=$(grep -aoE 'time: [0-9]+s' "$log" | tail -1 | grep -oE '[0-9]+' || true)
    n_corpus=$(find "$CORPUS/$t" -type f | wc -l)
    kb=$(du -sk "$CORPUS/$t" | cut -f1)
    findings=0 stalls=0
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        if ! is_stall "$t" "$f"; then
            findings=$((findings + 1))
        else
            stalls=$((stalls + 1))
        fi
    done < <(find "$ART" -maxdepth 1 -type f -name "$t-*" -newer "$LOGS/.start" | sort)
    # a timeout whose input replays fast was a stall: its rc is not a finding either
    timeout_rc=$([ "$rc" = 70 ] && [ "$stalls" -gt 0 ] && [ "$findings" = 0 ] && echo 1 || echo 0)
    result=ok
    [ "$stalls" -gt 0 ] && result="ok ($stalls slow input(s) not reproduced on replay: the machine stalled)"
    if { [ "$rc" != 0 ] && [ "$timeout_rc" = 0 ]; } || [ "$findings" -gt 0 ]; then
        result="FAILED (exit $rc, $findings new finding(s))"
        status=1
    fi
    printf '%-12s %12s %8s %8s %8s %10s %9s  %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$n_corpus" "$kb" \
        "${time:-?}" "$result"
done
if [ -s "$LOGS/stalls" ]; then
    echo "== slow inputs that replay fast (kept in $ART)"
    cat "$LOGS/stalls"
fi
if [ $status != 0 ]; then
    echo "== findings (replay: $BUILD/tests/fuzz/fuzz_TARGET FILE)"
    find "$ART" -maxdepth 1 -type f -newer "$LOGS/.start" | sort
    for t in "${TARGETS[@]}"; do
        if [ "${RC[$t]}" != 0 ]; then
            echo "--- $t: $LOGS/$t.log"
            grep -aE 'ERROR|SUMMARY|runtime error|Test unit written|out-of-memory|Timeout|CRASH' "$LOGS/$t.log" |
                grep -v 'oom/timeout/crash' | head -20
        fi
    done
fi
exit $status
