#!/usr/bin/env bash
# Writes the small example models that jobs/example.json names, under ROOT/build/example/zoo
# (ROOT: the checkout, or the folder given). Needs Debian's python3-numpy; the .pt model is
# written by mq-dist itself (every tensor kept), so it needs a built mq-dist (MQ_DIST).
# Usage: scripts/make_example_zoo.sh [ROOT]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${1:-$(cd "$HERE/.." && pwd)}
DIR=$ROOT/build/example/zoo
MQ_DIST=${MQ_DIST:-$HERE/../build/mq-dist}
PY=/usr/bin/python3
mkdir -p "$DIR/sharded" "$DIR/out"
"$PY" "$HERE/make_model.py" "$DIR/tiny-llama.safetensors" --dtype BF16 --layers 4 --hidden 256 --outliers --seed 0
"$PY" "$HERE/make_model.py" "$DIR/small-f32.safetensors" --dtype F32 --layers 2 --hidden 128 --seed 1
"$PY" "$HERE/make_model.py" "$DIR/sharded/model.safetensors.index.json" --dtype F16 --shards 3 --layers 3 \
    --hidden 128 --seed 2
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -n 1 "$MQ_DIST" "$DIR/small-f32.safetensors" --exclude '.*' -o "$DIR/small-f32.pt" --force -q </dev/null
echo "example zoo models in $DIR"
