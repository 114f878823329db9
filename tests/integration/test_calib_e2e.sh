#!/usr/bin/env bash
# Calibration end to end: a small torch model (Conv and Linear) built here, its calibration
# captured with scripts/capture_calibration.py, quantized with --calib on 1..4 ranks, then run in
# torch with dequantized weights and activations fake-quantized with the stored scales.
. "$(dirname "$0")/lib.sh"
E2E="$HERE/calib_e2e.py"
export MQ_SCRIPTS
D="$WORK/e2e"
mkdir -p "$D"
"$MQ_PYTHON" "$E2E" make "$D" || { fail "building the model and its calibration"; finish; exit 1; }

# calibrate OPTIONS...: quantizes on 1..4 ranks, checks identical outputs, leaves $D/q.safetensors.
calibrate() {
    local name=$1 ok=1
    shift
    for n in 1 2 3 4; do
        if ! mq "$n" "$D/model.safetensors" --calib "$D/calib.h5" -o "$D/q$n.safetensors" --force -q "$@"; then
            fail "$name: -n $n exited $?: $(head -c 300 "$WORK/last.err")"
            return 1
        fi
        [ "$n" = 1 ] || cmp -s "$D/q1.safetensors" "$D/q$n.safetensors" || ok=0
    done
    [ $ok = 1 ] && pass "$name: byte-identical for -n 1..4" || fail "$name: outputs differ across rank counts"
    cp "$D/q1.safetensors" "$D/q.safetensors"
}

# Relative output error of the quantized model against the float one: at most 3% of the float
# output's norm, and smaller than with a scale 10x too small or 10x too large. These are quality
# thresholds, not rounding tolerances (float32 rounding moves the error by about 1e-6): int8
# weights and activations give about 1-2% here, a wrong scale (the 10x cases) 7-40%. The entropy observer
# clips harder on this model's ReLU activations (half of them are exact zeros): it gets 15%, and
# must beat only the scale that clips more than it does.
for variant in "int8-percentile 0.03" "int8-asym-minmax 0.03 --act int8-asym --observer minmax" \
    "int8-entropy 0.15 --observer entropy" "int8-mse 0.03 --observer mse --calib-samples 100" \
    "int8-per-tensor 0.03 --granularity tensor --observer percentile:99.9"; do
    set -- $variant
    name=$1 TOL=$2
    shift 2
    calibrate "$name" "$@" || continue
    read -r err hooks < <("$MQ_PYTHON" "$E2E" eval "$D" "$D/q.safetensors")
    read -r err_small _ < <("$MQ_PYTHON" "$E2E" eval "$D" "$D/q.safetensors" --scale-factor 0.1)
    read -r err_large _ < <("$MQ_PYTHON" "$E2E" eval "$D" "$D/q.safetensors" --scale-factor 10)
    [ "$name" = int8-entropy ] && err_large=1
    if [ "$hooks" = 4 ] && awk -v e="$err" -v t="$TOL" -v a="$err_small" -v b="$err_large" \
        'BEGIN { exit !(e < t && e < a && e < b) }'; then
        pass "$name: output error $err < $TOL, worse with wrong scales ($err_small, $err_large)"
    else
        fail "$name: output error $err (hooks $hooks), wrong scales $err_small / $err_large"
    fi
    if [ "$name" = int8-asym-minmax ]; then
        # compressed-tensors' asymmetric int8: I8 codes and zero points, and the metadata says so.
        "$MQ_PYTHON" - "$D/q.safetensors" <<'PY' && pass "$name: I8 input zero points, activation_symmetric false" \
            || fail "$name: dtypes or metadata"
import json, struct, sys
import numpy as np
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
meta = h.pop("__metadata__")
assert meta["scheme"] == "int8" and meta["activation_dtype"] == "int8", meta
assert meta["activation_symmetric"] == "false", meta["activation_symmetric"]   # the weights stay symmetric int8
layers = json.loads(meta["layers"])
zps = [k for k in h if k.endswith(".input_zero_point")]
assert zps and all(h[k]["dtype"] == "I8" and h[k]["shape"] == [1] for k in zps), zps
for k in zps:
    s, e = h[k]["data_offsets"]
    zp = int(np.frombuffer(b[8 + n + s:8 + n + e], np.int8)[0])
    assert layers[k[:-len("input_zero_point")] + "weight"]["input_zero_point"] == zp, k
PY
    fi
    # Each layer's output SQNR against torch's float64 value, within the bound that float32
    # products allow (gamma_K |X||W| per output, K the reduction length; calib_e2e.py check).
    if dev=$("$MQ_PYTHON" "$E2E" check "$D" "$D/q.safetensors" "$D/calib.h5"); then
        pass "$name: output SQNR matches torch ($(tail -n 1 <<<"$dev"))"
    else
        fail "$name: output SQNR outside the float32 bound: $dev"
    fi
done

# Metadata: the calibration file, its digest, the observer.
"$MQ_PYTHON" - "$D/q.safetensors" "$D/calib.h5" <<'PY' && pass "calibration metadata" || fail "calibration metadata"
import json, struct, sys
import xxhash
b = open(sys.argv[1], "rb").read()
meta = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"]
assert meta["calibration_file"] == "calib.h5", meta["calibration_file"]
# the default digest, XXH3-128, by Debian's python3-xxhash
assert meta["calibration_xxh3_128"] == xxhash.xxh3_128(open(sys.argv[2], "rb").read()).hexdigest(), meta
assert "calibration_sha256" not in meta
assert meta["observer"] == "percentile:99.9" and meta["calibration_samples"] == "256", meta
assert float(meta["output_sqnr_db_wa"]) < float(meta["output_sqnr_db_w"])
PY

# Errors: each names the file and the layer, exits the same on every rank, leaves nothing.
expect() {
    local name=$1 code=$2 needle=$3
    shift 3
    mq 3 "$D/model.safetensors" -o "$D/out/x.safetensors" "$@"
    local rc=$?
    if [ $rc -eq "$code" ] && grep -qF -- "$needle" "$WORK/last.err" && [ -z "$(ls -A "$D/out")" ]; then
        pass "$name: exit $code, '$needle'"
    else
        fail "$name: exit $rc, expected $code and '$needle': $(head -c 400 "$WORK/last.err")"
    fi
}
mkdir -p "$D/out"
expect missing-file 3 "cannot open calibration file" --calib "$D/none.h5"
expect not-hdf5 3 "is not an HDF5 file" --calib "$D/model.safetensors"
expect bad-shape 3 "has shape [128, 1024] but its calibration activations have shape [8, 64]" --calib "$D/bad-shape.h5"
expect nan 4 "layer '7': NaN in the activations" --calib "$D/nan.h5"
expect no-calib-option 2 "need --calib" --observer minmax
expect entropy-int8-asym 2 "minmax and percentile observers only" --calib "$D/calib.h5" --act int8-asym --observer entropy
"$MQ_PYTHON" -c 'import h5py, sys
with h5py.File(sys.argv[1]) as s, h5py.File(sys.argv[2], "w") as d:
    [s.copy(s[k], d, k) for k in s if k != "7"]
    d.create_group("2x")' "$D/calib.h5" "$D/part.h5"
expect missing-layer 3 "no calibration for 1 selected layer: '7'" --calib "$D/part.h5"
mq 2 "$D/model.safetensors" -o "$D/wo.safetensors" --calib "$D/part.h5" --calib-missing=weights-only
if [ $? -eq 0 ] && grep -q "without calibration, quantized weights only: 7.weight" "$WORK/last.out" \
    && grep -q "no calibration: weights only" "$WORK/last.out" \
    && "$MQ_PYTHON" -c 'import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
rec = json.loads(h["__metadata__"]["layers"])["7.weight"]
assert rec["calibration"] == "missing: weights only" and "7.input_scale" not in h and "5.input_scale" in h
assert h["__metadata__"]["weights_only_layers"] == "1"' "$D/wo.safetensors"; then
    pass "--calib-missing=weights-only: recorded per layer and shown in the summary"
else
    fail "--calib-missing=weights-only: $(cat "$WORK/last.err")"
fi

finish
