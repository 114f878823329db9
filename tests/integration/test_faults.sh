#!/usr/bin/env bash
# Faults in the middle of a run on 3 ranks, end to end (README, "Resuming an interrupted run").
# kill -9 of rank 1 or 2 (mpirun then stops the others with SIGCONT and SIGTERM) or of rank 0
# leaves the partial output and its journal, and the rerun (on 2 ranks) resumes to the bytes of
# an uninterrupted run. A user's cancel: Ctrl-C of mpirun (the ranks get SIGTERM) and SIGTERM
# keep them once a unit is journaled, and rank 0 says where; SIGTERM before any unit is
# journaled, and SIGINT to the ranks, remove them. A mixed-precision run killed mid-way resumes
# on another rank count to the uninterrupted bytes.
# No timing assumptions: rank 0 stops itself once the journal holds N units (MQ_TEST_STOP_AT), so
# the run cannot end before the fault is fired on it.
. "$(dirname "$0")/lib.sh"
# Crashes and signals: Open MPI's default teardown (SIGTERM, a second, then SIGKILL), as a
# user's mpirun has it.
export $MQ_OMPI_DEFAULT_TEARDOWN

F="$WORK/f"
O="$F/o"
mkdir -p "$O"
make_model "$F/in.safetensors" --size-mib 96 --hidden 512 --seed 51
mq 2 "$F/in.safetensors" -o "$F/ref.safetensors" -q || fail "reference run: $(head -c 300 "$WORK/last.err")"
X="$O/x.safetensors"
TMP="$O/.x.safetensors.tmp"
JOURNAL_HEADER=58 # magic line, identity, unit count: a larger journal holds a finished unit

# start STOP N ARGS...: mq-dist on N ranks in the background (MP is mpirun's pid), with rank 0
# stopping itself once STOP units are journaled (0: once the partial output exists; the
# MQ_TEST_STOP_AT seam in src/pipeline/collect.h). Then waits (60 s at most) until rank 0 is stopped: STOPPED=1,
# or 0 if the run ended first (a failure: it cannot end without rank 0).
start() {
    local stop=$1 n=$2 i
    shift 2
    MQ_TEST_STOP_AT=$stop timeout -k 5 180 "$MQ_MPIEXEC" -n "$n" "$MQ_DIST" "$@" </dev/null \
        >"$WORK/bg.out" 2>"$WORK/bg.err" &
    MP=$!
    STOPPED=0
    for i in $(seq 1 1200); do
        if [ "$(ranks | wc -l)" -eq "$n" ] && [ "$(state "$(pid_of 0)")" = T ]; then
            STOPPED=1
            return
        fi
        kill -0 "$MP" 2>/dev/null || break
        sleep 0.05
    done
    fail "rank 0 did not stop at $stop journaled units: $(head -c 300 "$WORK/bg.err")"
}
# ranks: "RANK PID" of each mq-dist process writing $X.
ranks() {
    local p r
    for p in $(pgrep -f "^$MQ_DIST .*-o $X"); do
        r=$( { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
        [ -n "$r" ] && echo "$r $p"
    done
}
pid_of() { ranks | awk -v r="$1" '$1 == r { print $2 }'; }
all_pids() { ranks | awk '{ print $2 }'; }
# state PID: the process state letter (T: stopped).
state() { [ -n "$1" ] && sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1; }
journal_size() { stat -c %s "$TMP.journal" 2>/dev/null || echo 0; }
# end_run: mpirun's exit code in RC, once no rank of the run is left (after a Ctrl-C, mpirun may
# exit while a rank is still finishing its last unit or its rename).
end_run() {
    local i
    wait "$MP"
    RC=$?
    for i in $(seq 1 600); do
        [ -z "$(ranks)" ] && return
        sleep 0.05
    done
    fail "ranks still running 30 s after mpirun exited: $(ranks | tr '\n' ' ')"
}
resumed() { sed -n 's/.*resuming an interrupted run: \([0-9]*\) of \([0-9]*\) work units verified.*/\1/p' "$WORK/last.out"; }
listing() { ls -A "$O" | tr '\n' ' '; }
kept() { [ -f "$TMP" ] && [ -f "$TMP.journal" ] && [ "$(journal_size)" -gt "$JOURNAL_HEADER" ]; }

# rerun NAME: the same command on 2 ranks resumes at least one unit, gives the reference bytes
# and leaves nothing else.
rerun() {
    mq 2 "$F/in.safetensors" -o "$X"
    local rc=$? k
    k=$(resumed)
    [ $rc -eq 0 ] && pass "$1: rerun exit 0" || fail "$1: rerun exit $rc: $(head -c 300 "$WORK/last.err")"
    [ "${k:-0}" -ge 1 ] && pass "$1: rerun resumed $k units" || fail "$1: rerun resumed '${k:-no resuming line}' units"
    cmp -s "$X" "$F/ref.safetensors" && pass "$1: rerun = uninterrupted run" || fail "$1: rerun differs from the reference"
    [ "$(listing)" = "x.safetensors " ] && pass "$1: rerun left nothing else" || fail "$1: rerun left: $(listing)"
    rm -f "$X" "$O"/.x*
}

# kill_rank K: kill -9 of rank K with 2 units journaled; the partial and journal stay.
kill_rank() {
    local name="kill -9 of rank $1"
    start 2 3 "$F/in.safetensors" -o "$X" -q
    if [ "$STOPPED" = 1 ]; then
        p0=$(pid_of 0)
        kill -KILL "$(pid_of "$1")"
        kill -CONT "$p0" 2>/dev/null
        end_run
        [ $RC -ne 0 ] && pass "$name: mpirun exit $RC" || fail "$name: mpirun exit 0"
        [ ! -e "$X" ] && kept && pass "$name: partial output and journal kept" || fail "$name: folder: $(listing)"
        rerun "$name"
    fi
    end_run
    rm -f "$X" "$O"/.x*
}

kill_rank 1
kill_rank 2
kill_rank 0

# Ctrl-C: SIGINT to mpirun, which stops the ranks with SIGCONT, then (a second later) SIGTERM:
# kept. The run may also finish within that second; then the output is whole and nothing else
# is left. (The SIGTERM case below does not depend on that second.)
start 1 3 "$F/in.safetensors" -o "$X" -q
if [ "$STOPPED" = 1 ]; then
    kill -INT "$MP"
    end_run
    if [ -e "$X" ]; then
        cmp -s "$X" "$F/ref.safetensors" && [ "$(listing)" = "x.safetensors " ] &&
            pass "Ctrl-C of mpirun: the run finished before SIGTERM came; whole output, nothing else left" ||
            fail "Ctrl-C of mpirun: folder: $(listing)"
        rm -f "$X"
    else
        [ $RC -ne 0 ] && kept && pass "Ctrl-C of mpirun: exit $RC, partial output and journal kept" ||
            fail "Ctrl-C of mpirun: exit $RC, folder: $(listing)"
        rerun "Ctrl-C of mpirun"
    fi
fi
end_run

# SIGINT sent to the ranks themselves: the run was cancelled, nothing is left.
start 1 3 "$F/in.safetensors" -o "$X" -q
if [ "$STOPPED" = 1 ]; then
    p0=$(pid_of 0)
    kill -INT $(all_pids)
    kill -CONT "$p0" 2>/dev/null
    end_run
    [ $RC -ne 0 ] && [ -z "$(listing)" ] && pass "SIGINT to the ranks: exit $RC, nothing left" ||
        fail "SIGINT to the ranks: exit $RC, left: $(listing)"
fi
end_run
rm -f "$X" "$O"/.x*

# SIGTERM (as scancel sends it) before any unit is journaled: nothing to keep, nothing left.
start 0 3 "$F/in.safetensors" -o "$X" -q
if [ "$STOPPED" = 1 ]; then
    [ -e "$TMP" ] && [ "$(journal_size)" -le "$JOURNAL_HEADER" ] ||
        fail "stopped at 0 units: partial $(listing), journal $(journal_size) bytes"
    p0=$(pid_of 0)
    kill -TERM $(all_pids)
    kill -CONT "$p0" 2>/dev/null
    end_run
    [ $RC -ne 0 ] && [ -z "$(listing)" ] && pass "SIGTERM before any unit: exit $RC, nothing left" ||
        fail "SIGTERM before any unit: exit $RC, left: $(listing)"
fi
end_run
rm -f "$X" "$O"/.x*

# SIGTERM to the ranks with a unit journaled: kept, and the rerun resumes.
start 1 3 "$F/in.safetensors" -o "$X" -q
if [ "$STOPPED" = 1 ]; then
    p0=$(pid_of 0)
    kill -TERM $(all_pids)
    kill -CONT "$p0" 2>/dev/null
    end_run
    [ ! -e "$X" ] && kept && pass "SIGTERM after a unit: kept" || fail "SIGTERM after a unit: folder: $(listing)"
    grep -qF "SIGTERM: the finished work units are kept in '$TMP' with its journal" "$WORK/bg.err" &&
        pass "SIGTERM after a unit: rank 0 says where they are kept" || fail "SIGTERM after a unit: stderr: $(head -c 300 "$WORK/bg.err")"
    rerun "SIGTERM after a unit"
fi
end_run
rm -f "$X" "$O"/.x*


# A model folder with packed zero points (int4-asym per channel: a word holds 8 rows' zero points)
# and tensors of several units: SIGTERM once 10 of its 15 units are journaled keeps the partial folder; the
# rerun verifies all 3 (none redone: their packed zero points are checked at their own offset) and
# gives the uninterrupted folder, file for file.
FD="$WORK/fd"
mkdir -p "$FD"
"$MQ_PYTHON" "$MQ_SCRIPTS/make_hf_model.py" --dtype F32 --hidden 1024 --intermediate 8192 --layers 1 "$FD/in" \
    >/dev/null || fail "folder input not made"
mq 2 "$FD/in" -s int4-asym --group-size channel -o "$FD/ref" -q || fail "folder reference run: $(head -c 300 "$WORK/last.err")"
X="$FD/x"
start 10 2 "$FD/in" -s int4-asym --group-size channel -o "$X" -q
if [ "$STOPPED" = 1 ]; then
    p0=$(pid_of 0)
    kill -TERM $(all_pids)
    kill -CONT "$p0" 2>/dev/null
    end_run
    [ $RC -ne 0 ] && [ -d "$FD/.x.tmp" ] && [ -f "$FD/.x.tmp.journal" ] && [ ! -e "$X" ] &&
        pass "folder, SIGTERM after 10 units: exit $RC, the partial folder and its journal kept" ||
        fail "folder, SIGTERM after 10 units: exit $RC, left: $(ls -A "$FD" | tr '\n' ' ')"
    mq 2 "$FD/in" -s int4-asym --group-size channel -o "$X"
    rc=$?
    k=$(resumed)
    [ $rc -eq 0 ] && [ "${k:-0}" -eq 10 ] && pass "folder rerun: every journaled unit verified (10), exit 0" ||
        fail "folder rerun: exit $rc, resumed '${k:-no resuming line}' of the 10 journaled units"
    diff -r "$X" "$FD/ref" >/dev/null && pass "folder rerun = uninterrupted run, file for file" ||
        fail "folder rerun differs from the uninterrupted run"
    [ "$(ls -A "$FD" | tr '\n' ' ')" = "in ref x " ] && pass "folder rerun left nothing else" ||
        fail "folder rerun left: $(ls -A "$FD" | tr '\n' ' ')"
fi
end_run
# GPTQ: SIGUSR1 once 14 of 22 units are journaled (the 12 of the kept tensors go first, so the
# stop falls among the GPTQ layers' units, sent in waves from their owners) ends the run with
# exit 7 and keeps the partial output; the rerun verifies the journaled units, sweeps the others
# with their factors built again, and gives the bytes of an uninterrupted run.
FG="$WORK/fg"
mkdir -p "$FG"
make_model "$FG/in.safetensors" --layers 1 --hidden 2048 --seed 5 >/dev/null
"$MQ_PYTHON" "$MQ_SCRIPTS/make_calibration.py" "$FG/in.safetensors" "$FG/cal.h5" --rows 512 --seed 2 >/dev/null
GQ=(-s int4 --method gptq --calib "$FG/cal.h5")
mq 2 "$FG/in.safetensors" "${GQ[@]}" -o "$FG/ref.safetensors" -q || fail "gptq reference run: $(head -c 300 "$WORK/last.err")"
X="$FG/x.safetensors"
start 14 2 "$FG/in.safetensors" "${GQ[@]}" -o "$X" -q
if [ "$STOPPED" = 1 ]; then
    p0=$(pid_of 0)
    kill -USR1 $(all_pids)
    kill -CONT "$p0" 2>/dev/null
    end_run
    [ $RC -eq 7 ] && [ -f "$FG/.x.safetensors.tmp" ] && [ -f "$FG/.x.safetensors.tmp.journal" ] && [ ! -e "$X" ] &&
        pass "gptq, SIGUSR1 after 14 units: exit 7, partial output and journal kept" ||
        fail "gptq, SIGUSR1 after 14 units: exit $RC, left: $(ls -A "$FG" | tr '\n' ' '); $(head -c 300 "$WORK/bg.err")"
    mq 2 "$FG/in.safetensors" "${GQ[@]}" -o "$X"
    rc=$?
    k=$(resumed)
    [ $rc -eq 0 ] && [ "${k:-0}" -ge 14 ] && [ "${k:-0}" -lt 22 ] &&
        pass "gptq rerun: $k journaled units verified, the rest redone, exit 0" ||
        fail "gptq rerun: exit $rc, resumed '${k:-no resuming line}' units: $(head -c 300 "$WORK/last.err")"
    cmp -s "$X" "$FG/ref.safetensors" && pass "gptq rerun = uninterrupted run" ||
        fail "gptq rerun differs from the uninterrupted run"
fi
end_run
# Mixed precision (--target-bpw): kill -9 of rank 1 once 2 units are journaled, on 3 ranks; the
# rerun on 2 ranks measures the candidates again (the same rows for any rank count, so the same
# choice and the same fingerprint), verifies the journaled units and gives the bytes of an
# uninterrupted run.
X="$O/x.safetensors"
MIXED=(--target-bpw 6)
mq 2 "$F/in.safetensors" "${MIXED[@]}" -o "$F/ref-mixed.safetensors" -q ||
    fail "mixed reference run: $(head -c 300 "$WORK/last.err")"
start 2 3 "$F/in.safetensors" "${MIXED[@]}" -o "$X" -q
if [ "$STOPPED" = 1 ]; then
    p0=$(pid_of 0)
    kill -KILL "$(pid_of 1)"
    kill -CONT "$p0" 2>/dev/null
    end_run
    [ $RC -ne 0 ] && [ ! -e "$X" ] && kept && pass "mixed, kill -9 of rank 1: exit $RC, partial output and journal kept" ||
        fail "mixed, kill -9 of rank 1: exit $RC, folder: $(listing)"
    mq 2 "$F/in.safetensors" "${MIXED[@]}" -o "$X"
    rc=$?
    k=$(resumed)
    [ $rc -eq 0 ] && [ "${k:-0}" -ge 2 ] && pass "mixed rerun: $k journaled units verified, exit 0" ||
        fail "mixed rerun: exit $rc, resumed '${k:-no resuming line}' units: $(head -c 300 "$WORK/last.err")"
    cmp -s "$X" "$F/ref-mixed.safetensors" && pass "mixed rerun = uninterrupted run" ||
        fail "mixed rerun differs from the uninterrupted run"
    [ "$(listing)" = "x.safetensors " ] && pass "mixed rerun left nothing else" || fail "mixed rerun left: $(listing)"
fi
end_run
# The input shrinks during the run: rank 0 (the only rank) stops itself once 2 units are
# journaled, the test cuts a copy of the input to a quarter, and rank 0 goes on. Read in place (the
# default: its next touch of a page past the new end raises SIGBUS) or copied (MQ_READ=pread: a
# short read), the run fails with exit 3, says which file and tensor and what happened, and leaves
# no output.
X="$O/x.safetensors"
rm -f "$X" "$O"/.x*
for rd in map pread; do
    cp "$F/in.safetensors" "$F/shrink.safetensors"
    if [ $rd = pread ]; then export MQ_READ=pread; fi
    start 2 1 "$F/shrink.safetensors" -o "$X" -q
    unset MQ_READ
    if [ "$STOPPED" = 1 ]; then
        truncate -s $(($(stat -c %s "$F/shrink.safetensors") / 4)) "$F/shrink.safetensors"
        kill -CONT "$(pid_of 0)" 2>/dev/null
        end_run
        why="the file is shorter than when the run began"
        [ $rd = pread ] && why="unexpected end of file"
        [ $RC -eq 3 ] && grep -qF "'$F/shrink.safetensors': tensor '" "$WORK/bg.err" &&
            grep -qF "$why" "$WORK/bg.err" && [ ! -e "$X" ] &&
            pass "input cut during the run ($rd): exit 3, file, tensor and cause named, no output" ||
            fail "input cut during the run ($rd): exit $RC, left: $(listing), $(head -c 400 "$WORK/bg.err")"
    fi
    end_run
    rm -f "$X" "$O"/.x* "$F/shrink.safetensors"
done

finish
