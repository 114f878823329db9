# Sourced by the sbatch scripts in this folder: runs mq-dist with the job's tasks and turns a
# time limit or a preemption into a requeue that resumes where the run stopped.
#
# Slurm sends SIGUSR1 to this batch shell before the end (#SBATCH --signal=B:USR1@SECONDS);
# the trap passes it on to mq-dist, whose ranks finish the work units in hand, keep the partial
# output with its journal, and exit with status 7. The script then asks Slurm to requeue the
# job; the rerun resumes and writes a file byte-identical to an uninterrupted run. A crash, or
# scancel's SIGTERM once a unit is finished, leaves the partial output and journal too:
# resubmitting resumes from them.
#
# Environment: MQ_DIST (the binary; default: build/mq-dist of this checkout, else mq-dist on
# PATH), MQ_LAUNCHER (srun, the default, with --mpi=pmix; or mpirun).
mq_launch() {
    local home=${MQ_HOME:-${SLURM_SUBMIT_DIR:-.}}
    local bin=${MQ_DIST:-}
    if [ -z "$bin" ]; then
        if [ -x "$home/build/mq-dist" ]; then bin=$home/build/mq-dist; else bin=mq-dist; fi
    fi
    local launcher=${MQ_LAUNCHER:-srun}
    local cmd
    if [ "$launcher" = mpirun ]; then
        [ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        cmd=(mpirun -n "${SLURM_NTASKS:-1}" "$bin" "$@")
    else
        cmd=(srun --mpi=pmix "$bin" "$@")
    fi
    export OPENBLAS_NUM_THREADS=1
    echo "mq-dist job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname -s) at $(date -Is): ${cmd[*]}"
    "${cmd[@]}" </dev/null &
    local pid=$!
    trap 'echo "$(date -Is): SIGUSR1 (time limit or preemption): asking mq-dist to stop"; kill -USR1 "$pid" 2>/dev/null' USR1
    local rc
    wait "$pid"
    rc=$?
    while kill -0 "$pid" 2>/dev/null; do # wait was cut short by the trapped signal
        wait "$pid"
        rc=$?
    done
    trap - USR1
    if [ "$rc" -eq 7 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
        echo "$(date -Is): mq-dist stopped early (status 7): requeueing job $SLURM_JOB_ID to resume"
        scontrol requeue "$SLURM_JOB_ID"
        exit 0
    fi
    echo "$(date -Is): mq-dist exited with status $rc"
    exit "$rc"
}
