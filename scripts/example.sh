#!/usr/bin/env bash
# Sets up, builds, and quantizes a small built-in example model on 4 MPI ranks.
# Usage: scripts/example.sh [extra mq-dist options]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup-debian.sh"
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release -DMQ_BUILD_TESTS=OFF >/dev/null
cmake --build "$ROOT/build" -j "$(nproc)" >/dev/null
mkdir -p "$ROOT/build/example"
/usr/bin/python3 "$ROOT/scripts/make_model.py" "$ROOT/build/example/tiny-llama.safetensors" \
    --dtype BF16 --layers 4 --hidden 256 --outliers --seed 0
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -n 4 --oversubscribe "$ROOT/build/mq-dist" "$ROOT/build/example/tiny-llama.safetensors" \
    -o "$ROOT/build/example/tiny-llama.int8.safetensors" --force --report "$ROOT/build/example/report.json" "$@"
