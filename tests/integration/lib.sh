# Shared helpers for the integration tests (sourced). Environment from CTest:
#   MQ_DIST (the binary), MQ_PYTHON (Debian's python3), MQ_SCRIPTS, MQ_MPIEXEC.
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# Shared-memory transport only: the tests run on one machine.
export OMPI_MCA_btl=self,vader
# After a rank exits non-zero, Open MPI waits odls_base_sigkill_timeout (1 s) before and after killing
# the others, 2 s for every failing run. The ranks of a failing mq-dist run have already agreed and
# cleaned up by then, so the tests skip the wait; the tests of signals and crashes set it back to the
# default (MQ_OMPI_DEFAULT_TEARDOWN) to see what a user's mpirun does.
export OMPI_MCA_odls_base_sigkill_timeout=0
MQ_OMPI_DEFAULT_TEARDOWN="OMPI_MCA_odls_base_sigkill_timeout=1"
: "${MQ_PYTHON:=/usr/bin/python3}"
: "${MQ_MPIEXEC:=mpirun}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHECK="$HERE/check_output.py"
MAKE_MODEL="$MQ_SCRIPTS/make_model.py"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mq-integ.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
N_PASS=0
N_FAIL=0

pass() { N_PASS=$((N_PASS + 1)); echo "ok - $*"; }
fail() { N_FAIL=$((N_FAIL + 1)); echo "not ok - $*"; }

# mq N ARGS...: runs mq-dist on N ranks with a time limit, output in $WORK/last.out/.err.
mq() {
    local n=$1
    shift
    timeout -k 5 180 "$MQ_MPIEXEC" -n "$n" "$MQ_DIST" "$@" </dev/null >"$WORK/last.out" 2>"$WORK/last.err"
}

make_model() { "$MQ_PYTHON" "$MAKE_MODEL" "$@"; }

# finish: prints the plain closing line and exits non-zero on any failure.
finish() {
    echo "$N_PASS passed, $N_FAIL failed"
    [ "$N_FAIL" -eq 0 ]
}
