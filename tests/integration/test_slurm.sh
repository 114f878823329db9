#!/usr/bin/env bash
# A real Slurm on this machine (scripts/setup-slurm.sh): the sbatch scripts of slurm/ submitted
# as they are, one model and a zoo, with srun (PMIx) and with mpirun; then a run interrupted by
# scancel --signal=USR1 and requeued must finish with a byte-identical file.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$HERE/../.." && pwd)
if ! sinfo >/dev/null 2>&1 && [ "$(id -u)" -ne 0 ]; then
    echo "skip - no Slurm here, and setting one up needs root"
    exit 77
fi
if ! "$ROOT/scripts/setup-slurm.sh" >"$WORK/setup.log" 2>&1; then
    cat "$WORK/setup.log"
    fail "scripts/setup-slurm.sh brings up a one-node Slurm"
    finish
    exit 1
fi
pass "scripts/setup-slurm.sh: $(sinfo -h -o '%P %t %c CPUs' | head -1)"
export MQ_HOME=$ROOT MQ_DIST
SUB=$WORK/submit
mkdir -p "$SUB/logs"
cd "$SUB" || exit 1

# waits until job $1 has left the queue (at most $2 seconds)
wait_gone() {
    for _ in $(seq 1 "$2"); do
        squeue -h -j "$1" 2>/dev/null | grep -q . || return 0
        sleep 1
    done
    return 1
}

# One model, srun --mpi=pmix and mpirun: the same bytes as a direct run.
make_model "$WORK/m.safetensors" --dtype BF16 --layers 2 --hidden 128 --seed 5 >/dev/null
mq 2 "$WORK/m.safetensors" -o "$WORK/ref.safetensors"
for launcher in srun mpirun; do
    rm -f "$WORK/m.$launcher.safetensors"
    id=$(MQ_LAUNCHER=$launcher sbatch --parsable --wait --ntasks=2 "$ROOT/slurm/quantize.sbatch" \
        "$WORK/m.safetensors" -o "$WORK/m.$launcher.safetensors" 2>"$WORK/sbatch.err")
    rc=$?
    if [ $rc -eq 0 ] && cmp -s "$WORK/m.$launcher.safetensors" "$WORK/ref.safetensors" &&
        grep -q "exited with status 0" "logs/mq-dist-$id.out"; then
        pass "quantize.sbatch with $launcher: job $id, output identical to a direct run"
    else
        fail "quantize.sbatch with $launcher: exit $rc $(cat "$WORK/sbatch.err") $(tail -5 "logs/mq-dist-$id.out" 2>/dev/null)"
    fi
done

# The example zoo through zoo.sbatch; a second submission finds every model up to date.
mkdir -p "$WORK/jobs"
cp "$ROOT/jobs/example.json" "$WORK/jobs/"
"$ROOT/scripts/make_example_zoo.sh" "$WORK" >/dev/null 2>&1
for round in 1 2; do
    id=$(sbatch --parsable --wait --ntasks=2 "$ROOT/slurm/zoo.sbatch" "$WORK/jobs/example.json" 2>"$WORK/sbatch.err")
    rc=$?
    want=ok
    [ $round -eq 2 ] && want="up to date"
    got=$("$MQ_PYTHON" -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(",".join(sorted(set(m["status"] for m in r["models"]))), len(r["models"]))' \
        "$WORK/build/example/zoo/out/zoo-report.json" 2>/dev/null)
    if [ $rc -eq 0 ] && [ "$got" = "$want 4" ]; then
        pass "zoo.sbatch round $round: 4 models $want"
    else
        fail "zoo.sbatch round $round: exit $rc, statuses '$got' $(tail -5 "logs/mq-dist-zoo-$id.out" 2>/dev/null)"
    fi
done

# Preemption: USR1 to the batch shell (as --signal=B:USR1@120 does), then to the job's steps.
make_model "$WORK/big.safetensors" --dtype F32 --size-mib 1500 --hidden 1024 --seed 9 >/dev/null
mq 2 "$WORK/big.safetensors" -o "$WORK/big.ref.safetensors"
for target in --batch ""; do
    out=$WORK/big.out${target:+-batch}.safetensors
    part=$WORK/.$(basename "$out").tmp
    id=$(sbatch --parsable --ntasks=2 "$ROOT/slurm/quantize.sbatch" "$WORK/big.safetensors" -o "$out")
    for _ in $(seq 1 600); do
        [ -e "$part" ] && break
        sleep 0.05
    done
    sleep 0.5
    # shellcheck disable=SC2086 # an empty $target sends to the steps
    scancel --signal=USR1 $target "$id"
    if ! wait_gone "$id" 300; then
        scancel "$id"
        fail "requeued job $id did not finish in 300 s"
        continue
    fi
    log=logs/mq-dist-$id.out
    if ! grep -q "requeueing job $id" "$log"; then
        echo "skip - job $id finished before the signal (${target:-steps})"
    elif cmp -s "$out" "$WORK/big.ref.safetensors" && grep -q "resuming an interrupted run" "$log" &&
        [ ! -e "$part" ] && [ ! -e "$part.journal" ]; then
        pass "scancel --signal=USR1 ${target:-(steps)}: job $id requeued, resumed ($(grep -o '[0-9]* of [0-9]* work units verified' "$log")), output byte-identical"
    else
        fail "interrupted job $id (${target:-steps}): $(grep -v 'dB\|^\[' "$log" | tail -12)"
    fi
done
finish
