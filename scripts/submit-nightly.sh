#!/usr/bin/env bash
# Submits the nightly model-zoo run: slurm/zoo.sbatch with a job file, from this checkout.
# - One nightly run at a time: --dependency=singleton makes tonight's job wait while last night's
#   job of the same name is still queued or running (for example, requeued after preemption).
# - Resources: the #SBATCH lines of slurm/zoo.sbatch, overridden by sbatch's own environment
#   variables (SBATCH_PARTITION, SBATCH_TIMELIMIT, SBATCH_ACCOUNT, ...) or by MQ_SBATCH_ARGS.
# - Logs: logs/mq-dist-zoo-JOBID.out here; the zoo report where the job file says.
#
# Usage: scripts/submit-nightly.sh JOB.json [mq-dist options]
#
# Run it every night from cron on a login node (crontab -e):
#   30 1 * * * cd /path/to/mq-dist && scripts/submit-nightly.sh jobs/zoo.json >>logs/submit.log 2>&1
# or let Slurm run it with scrontab (scrontab -e):
#   #SCRON --time=00:05:00 --job-name=mq-dist-submit
#   30 1 * * * cd /path/to/mq-dist && scripts/submit-nightly.sh jobs/zoo.json
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
job=${1:?usage: scripts/submit-nightly.sh JOB.json [mq-dist options]}
shift
[ -f "$job" ] || { echo "submit-nightly: no job file '$job'" >&2; exit 2; }
if [ -z "${MQ_DIST:-}" ] && [ ! -x "$ROOT/build/mq-dist" ] && ! command -v mq-dist >/dev/null; then
    echo "submit-nightly: build mq-dist first (cmake -S . -B build && cmake --build build)" >&2
    exit 2
fi
# the job file is validated before anything is queued: a typo fails now, not at 1 a.m.
bin=${MQ_DIST:-$ROOT/build/mq-dist}
[ -x "$bin" ] || bin=mq-dist
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
check=$(mktemp)
trap 'rm -f "$check"' EXIT
if ! mpirun -n 1 "$bin" --job "$job" --dry-run -q "$@" </dev/null >/dev/null 2>"$check" &&
    grep -q "^mq-dist: error: '" "$check"; then
    grep "^mq-dist: error: '" "$check" >&2
    exit 2
fi
mkdir -p "$ROOT/logs"
cd "$ROOT"
# shellcheck disable=SC2086 # MQ_SBATCH_ARGS holds several sbatch options
id=$(sbatch --parsable --dependency=singleton ${MQ_SBATCH_ARGS:-} slurm/zoo.sbatch "$job" "$@")
echo "submitted nightly zoo job $id ($job); log: logs/mq-dist-zoo-$id.out"
