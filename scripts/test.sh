#!/usr/bin/env bash
# Sets up, then builds and runs every test twice: a release build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup-debian.sh"
JOBS=$(nproc)
export OPENBLAS_NUM_THREADS=1
# Open MPI's own allocations are reported as leaks by LeakSanitizer; ours are not suppressed
# (unit_lsan_canary checks that a leak of ours is still reported).
export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0"
# At MPI_Init, hwloc dlopens its OpenCL plugin, which loads libOpenCL.so.1 (ocl-icd); its thread-local
# variable is then a dynamic TLS block that glibc allocates with malloc. The LeakSanitizer of GCC 12
# and clang 14 guesses such a block's bounds from the 16 bytes before it when its address is 16 mod
# 4096, and then scans a bogus range ("DTLS 10 at ...", "Tracer caught signal 11"). Where the block
# lands depends on the allocations before it, so on the machine. mq-dist needs no OpenCL devices:
# the plugin stays unloaded, and every other thread-local block is still scanned.
export HWLOC_PLUGINS_BLACKLIST=hwloc_opencl
# Full unwinding lets the suppressions see through Open MPI's dlopened components.
export ASAN_OPTIONS="fast_unwind_on_malloc=0:detect_odr_violation=0"
status=0
for variant in release sanitize; do
    dir="$ROOT/build-$variant"
    flags=(-DCMAKE_BUILD_TYPE=Release)
    [ $variant = sanitize ] && flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQ_SANITIZE=ON)
    echo "== $variant build"
    cmake -S "$ROOT" -B "$dir" "${flags[@]}" >/dev/null
    cmake --build "$dir" -j "$JOBS" >/dev/null
    echo "== $variant tests"
    (cd "$dir" && ctest --output-on-failure --timeout 1200) || status=1
done
exit $status
