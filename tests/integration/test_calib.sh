#!/usr/bin/env bash
# Calibration end to end: capture_calibration.py's HDF5 layout (library and
# command line), every observer of `mq-dist inspect FILE.h5` on awkward data
# against an independent numpy reference (calib_reference.py), and the inspect
# error paths (exit code, file and layer named).
. "$(dirname "$0")/lib.sh"

CAPTURE="$MQ_SCRIPTS/capture_calibration.py"
REF="$HERE/calib_reference.py"

# inspect FILE ARGS...: mq-dist inspect (one process, no MPI launcher), output in $WORK/last.out/.err.
inspect() {
    timeout -k 5 180 "$MQ_DIST" inspect "$@" </dev/null >"$WORK/last.out" 2>"$WORK/last.err"
}

# inspect_check LABEL FILE ARGS...: runs inspect and compares every layer line with the reference.
inspect_check() {
    local label=$1 file=$2
    shift 2
    inspect "$file" "$@"
    local rc=$?
    if [ $rc -ne 0 ]; then
        fail "$label: inspect exited $rc: $(head -c 400 "$WORK/last.err")"
    elif "$MQ_PYTHON" "$REF" check "$file" "$WORK/last.out" "$@" >"$WORK/ref.log" 2>&1; then
        pass "$label ($(tail -n 1 "$WORK/ref.log"))"
    else
        fail "$label"
        head -n 40 "$WORK/ref.log"
    fi
}

# attrs_check LABEL FILE: inspect prints every root attribute of FILE with its value.
attrs_check() {
    local label=$1 file=$2
    inspect "$file" --observer minmax --act int8
    local rc=$?
    if [ $rc -ne 0 ]; then
        fail "$label: inspect exited $rc: $(head -c 400 "$WORK/last.err")"
    elif "$MQ_PYTHON" "$REF" attrs "$file" "$WORK/last.out" >"$WORK/ref.log" 2>&1; then
        pass "$label ($(tail -n 1 "$WORK/ref.log"))"
    else
        fail "$label"
        cat "$WORK/ref.log"
        sed -n '/^layer /!p' "$WORK/last.out"
    fi
}

# ---- a. capture_calibration.py: library and command line -------------------------------------

cat >"$WORK/calib_model.py" <<'PY'
import torch


class Net(torch.nn.Module):
    """Conv2d(3, 8, 3, padding=1) -> ReLU -> flatten -> Linear -> ReLU -> Linear."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.Linear(8 * 8 * 8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def build():
    torch.manual_seed(1234)
    return Net()


def inputs():
    g = torch.Generator().manual_seed(99)
    return torch.randn(10, 3, 8, 8, generator=g)


def reorder_bounds(model, x):
    """Per element, how far apart two float32 forward passes may land when they sum in different
    orders (torch's kernels pick the order by batch size and CPU). One pass's dot product of n
    terms is off by at most gamma_n * sum|terms|, gamma_n = n*u / (1 - n*u), u = 2**-24; two passes
    differ by twice that. ReLU does not widen a difference; the next layer carries it through
    |W|. Computed in float64 from the model itself, so the bound holds on any CPU, for kernels
    that sum the products (direct or im2col+GEMM; a Winograd or FFT convolution would not be
    covered; torch's CPU convolution asks oneDNN for its direct algorithm)."""
    u = 2.0 ** -24
    gamma = lambda n: n * u / (1 - n * u)
    conv, lin = model.features[0], model.head[0]
    with torch.no_grad():
        x = x.double()
        k0 = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] + 1      # + the bias
        a0 = torch.nn.functional.conv2d(x.abs(), conv.weight.double().abs(), conv.bias.double().abs(),
                                        padding=conv.padding)
        e0 = torch.flatten(gamma(k0) * a0, 1)                  # one pass, head.0's inputs
        h0 = torch.flatten(torch.relu(torch.nn.functional.conv2d(x, conv.weight.double(), conv.bias.double(),
                                                                 padding=conv.padding)), 1)
        w1 = lin.weight.double().abs()
        a1 = (h0.abs() + e0) @ w1.T + lin.bias.double().abs()
        e1 = gamma(lin.in_features + 1) * a1 + e0 @ w1.T       # one pass, head.2's inputs
    return {"head.0": 2 * e0.numpy(), "head.2": 2 * e1.numpy()}
PY
"$MQ_PYTHON" - "$WORK" <<'PY' || fail "could not write the model inputs"
import sys, torch
sys.path.insert(0, sys.argv[1])
import calib_model
torch.save(calib_model.inputs(), sys.argv[1] + "/calib_inputs.pt")
PY

# Library use: three batches of 4, 3 and 3 samples.
if "$MQ_PYTHON" - "$WORK" "$MQ_SCRIPTS" <<'PY'; then
import sys
work, scripts = sys.argv[1], sys.argv[2]
sys.path[:0] = [work, scripts]
import torch
import calib_model
from capture_calibration import capture

model = calib_model.build()
x = calib_model.inputs()
s = capture(model, iter([x[:4], x[4:7], x[7:]]), work + "/calib.h5", model_name="calib-net", dataset="randn-10")
assert s["num_samples"] == 10, s


# Linear inputs with leading dimensions [batch, tokens, in] become rows.
class Tok(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(16, 4)

    def forward(self, t):
        return self.proj(t)


torch.manual_seed(5)
t = torch.randn(2, 5, 16)
capture(Tok(), [t, t[:1]], work + "/tok.h5", dtype="float16")
PY
    pass "capture() as a library"
else
    fail "capture() as a library"
fi

# The layout, exactly as the spec gives it.
"$MQ_PYTHON" - "$WORK" <<'PY' && pass "calib.h5 layout: groups, shapes, dtype, chunks, attributes, values" || fail "calib.h5 layout"
import sys
import h5py
import numpy as np
import torch
work = sys.argv[1]
sys.path.insert(0, work)
import calib_model

MIB = 1 << 20


def check_inputs(ds, shape, dtype, first_rows):
    assert ds.shape == shape, (ds.name, ds.shape, shape)
    assert ds.dtype == np.dtype(dtype), (ds.name, ds.dtype)
    row_bytes = int(np.prod(shape[1:])) * ds.dtype.itemsize
    chunks = (min(first_rows, max(1, MIB // row_bytes)),) + shape[1:]
    assert ds.chunks == chunks, (ds.name, ds.chunks, chunks)
    assert ds.maxshape == (None,) + shape[1:], (ds.name, ds.maxshape)


with h5py.File(work + "/calib.h5", "r") as f:
    assert set(f.attrs) == {"model", "dataset", "num_samples", "mq_calib_version"}, dict(f.attrs)
    assert f.attrs["model"] == "calib-net" and f.attrs["dataset"] == "randn-10", dict(f.attrs)
    for k in ("num_samples", "mq_calib_version"):
        assert f.attrs[k].dtype == np.int64, (k, f.attrs[k].dtype)
    assert f.attrs["num_samples"] == 10 and f.attrs["mq_calib_version"] == 1
    assert sorted(f) == ["features.0", "head.0", "head.2"], list(f)        # direct children, dotted names
    for name in f:
        assert isinstance(f[name], h5py.Group) and list(f[name]) == ["inputs"], (name, list(f[name]))
    check_inputs(f["features.0/inputs"], (10, 3, 8, 8), "float32", 4)
    check_inputs(f["head.0/inputs"], (10, 512), "float32", 4)
    check_inputs(f["head.2/inputs"], (10, 32), "float32", 4)
    conv = f["features.0"].attrs
    assert set(conv) == {"stride", "padding", "dilation", "groups"}, dict(conv)
    for k, want in (("stride", [1, 1]), ("padding", [1, 1]), ("dilation", [1, 1])):
        assert conv[k].dtype == np.int64 and conv[k].shape == (2,) and list(conv[k]) == want, (k, conv[k])
    assert conv["groups"].dtype == np.int64 and conv["groups"] == 1
    assert len(f["head.0"].attrs) == 0 and len(f["head.2"].attrs) == 0
    # the values are the layers' inputs
    model, x = calib_model.build().eval(), calib_model.inputs()
    with torch.no_grad():
        h0 = torch.flatten(model.features(x), 1)
        h2 = torch.relu(model.head[0](h0))
    # captured in batches of 4, 3 and 3, recomputed here in one batch of 10
    bound = calib_model.reorder_bounds(model, x)
    assert np.array_equal(f["features.0/inputs"][:], x.numpy())
    for name, want in (("head.0", h0.numpy()), ("head.2", h2.numpy())):
        diff = np.abs(f[name + "/inputs"][:] - want)
        assert np.all(diff <= bound[name]), (name, float(diff.max()), float(bound[name].max()))

with h5py.File(work + "/tok.h5", "r") as f:
    assert sorted(f) == ["proj"] and f.attrs["num_samples"] == 3
    check_inputs(f["proj/inputs"], (15, 16), "float16", 10)
    torch.manual_seed(5)
    t = torch.randn(2, 5, 16)
    want = torch.cat([t.reshape(10, 16), t[:1].reshape(5, 16)]).numpy().astype(np.float16)
    assert np.array_equal(f["proj/inputs"][:], want)
PY

# Command line: batches of 3 (3, 3, 3, 1), then float16 and a --layers subset.
if "$MQ_PYTHON" "$CAPTURE" --model-module "$WORK/calib_model.py" --model-fn build --inputs "$WORK/calib_inputs.pt" \
    --out "$WORK/calib-cli.h5" --batch-size 3 >"$WORK/cli.out" 2>&1 \
    && "$MQ_PYTHON" "$CAPTURE" --model-module "$WORK/calib_model.py" --model-fn build \
        --inputs "$WORK/calib_inputs.pt" --out "$WORK/calib-cli16.h5" --dtype float16 --layers '^head\.' \
        --model-name net16 --dataset d16 >>"$WORK/cli.out" 2>&1; then
    pass "capture_calibration.py on the command line"
else
    fail "capture_calibration.py on the command line: $(cat "$WORK/cli.out")"
fi
"$MQ_PYTHON" - "$WORK" <<'PY' && pass "command-line files match the library's" || fail "command-line files"
import sys
import h5py
import numpy as np
work = sys.argv[1]
sys.path.insert(0, work)
import calib_model
# calib.h5 was captured in batches of 4, 3 and 3, calib-cli.h5 in 3, 3, 3 and 1, calib-cli16.h5 in one
bound = calib_model.reorder_bounds(calib_model.build().eval(), calib_model.inputs())
bound["features.0"] = 0.0                                # the model's inputs: copied, not computed
with h5py.File(work + "/calib.h5", "r") as lib, h5py.File(work + "/calib-cli.h5", "r") as cli, \
        h5py.File(work + "/calib-cli16.h5", "r") as c16:
    assert sorted(cli) == sorted(lib) and cli.attrs["num_samples"] == 10 and cli.attrs["mq_calib_version"] == 1
    assert isinstance(cli.attrs["model"], str) and isinstance(cli.attrs["dataset"], str)
    for name in lib:
        a, b = lib[name + "/inputs"], cli[name + "/inputs"]
        assert a.shape == b.shape and b.dtype == np.float32 and b.chunks == (3,) + b.shape[1:], (name, b.chunks)
        diff = np.abs(a[:] - b[:])
        assert np.all(diff <= bound[name]), (name, float(diff.max()), float(np.max(bound[name])))
        assert dict(lib[name].attrs).keys() == dict(cli[name].attrs).keys()
    assert sorted(c16) == ["head.0", "head.2"], list(c16)
    assert c16.attrs["model"] == "net16" and c16.attrs["dataset"] == "d16" and c16.attrs["num_samples"] == 10
    for name in c16:                     # the default --batch-size (32): one batch of 10
        b = c16[name + "/inputs"]
        assert b.dtype == np.float16 and b.chunks == (10,) + b.shape[1:], (name, b.dtype, b.chunks)
        # the float32 values differ by the reordering bound; each rounds to float16 (round to nearest),
        # so the two float16 values are at most that plus one float16 spacing apart
        want = lib[name + "/inputs"][:]
        ulp16 = np.spacing((np.abs(want) + bound[name]).astype(np.float16)).astype(np.float64)
        diff = np.abs(b[:].astype(np.float64) - want.astype(np.float16).astype(np.float64))
        assert np.all(diff <= bound[name] + ulp16), (name, float(diff.max()))
PY

# mq-dist reads what the script wrote.
inspect_check "inspect calib.h5 minmax int8" "$WORK/calib.h5" --observer minmax --act int8
inspect_check "inspect calib-cli16.h5 percentile int8-asym" "$WORK/calib-cli16.h5" --observer percentile --act int8-asym
inspect_check "inspect tok.h5 entropy int8" "$WORK/tok.h5" --observer entropy --act int8
attrs_check "inspect calib.h5 prints the root attributes" "$WORK/calib.h5"
attrs_check "inspect calib-cli16.h5 prints the root attributes" "$WORK/calib-cli16.h5"

# ---- b. awkward data: every observer against the reference ------------------------------------

"$MQ_PYTHON" - "$WORK/awkward.h5" <<'PY' || fail "could not write awkward.h5"
import sys
import h5py
import numpy as np

MIB = 1 << 20
rng = np.random.default_rng(20240611)


def put(f, name, a, conv=None):
    a = np.ascontiguousarray(a)
    row_bytes = int(np.prod(a.shape[1:])) * a.itemsize
    g = f.create_group(name)
    g.create_dataset("inputs", data=a, chunks=(min(a.shape[0], max(1, MIB // row_bytes)),) + a.shape[1:],
                     maxshape=(None,) + a.shape[1:])
    if conv:
        for k in ("stride", "padding", "dilation"):
            g.attrs[k] = np.array(conv[k], dtype=np.int64)
        g.attrs["groups"] = np.int64(conv["groups"])


with h5py.File(sys.argv[1], "w") as f:
    f.attrs["model"] = "awkward-model"
    f.attrs["dataset"] = "synthetic-awkward"
    f.attrs["num_samples"] = np.int64(128)
    f.attrs["mq_calib_version"] = np.int64(1)
    # heavy tails: Student t with 1.1 degrees of freedom
    put(f, "awk.heavy", rng.standard_t(1.1, (128, 512)).astype(np.float32))
    # one large outlier and one negative one in a normal layer
    a = (rng.standard_normal((128, 256)) * 0.5).astype(np.float32)
    a[77, 13] = 3000.0
    a[5, 5] = -41.5
    put(f, "awk.outlier", a)
    # constant (negative) and all-zero layers (with some -0.0)
    put(f, "awk.const", np.full((64, 32), -0.375, dtype=np.float32))
    z = np.zeros((16, 64), dtype=np.float32)
    z[3, ::3] = -0.0
    put(f, "awk.zero", z)
    # float16 storage: the extremes of the format, subnormals, zeros
    h = (rng.standard_normal((128, 384)) * 8).astype(np.float16)
    h[0, 0], h[1, 1], h[2, 2] = 65504.0, -65504.0, 60000.0
    h[3, :10] = np.float16(6e-8)
    h[4, :10] = 0
    put(f, "awk.f16", h)
    # a ReLU-like conv input, with conv attributes
    c = np.maximum(rng.standard_normal((40, 4, 6, 6)), 0).astype(np.float32)
    c[::2] *= 3
    put(f, "awk.conv", c, {"stride": [2, 2], "padding": [1, 1], "dilation": [1, 1], "groups": 1})
    # rows past 100 hold huge values: --calib-samples 100 must leave them out
    late = rng.standard_normal((128, 64)).astype(np.float32)
    late[100:] *= 1000.0
    put(f, "awk.late", late)
    # N = 1000 values, all distinct: P = 99.9 hits the float64 rounding of P/100 * N (999.0000000000001)
    e = rng.permutation(np.arange(1, 1001, dtype=np.float32) * np.float32(0.01) - np.float32(4.0))
    put(f, "awk.edge", e.reshape(20, 50))
    # float32 subnormals only
    put(f, "awk.tiny", (rng.standard_normal((32, 32)) * 1e-39).astype(np.float32))
    # mostly zeros, a few exponential spikes
    s = np.zeros((128, 128), dtype=np.float32)
    m = rng.random((128, 128)) < 0.05
    s[m] = rng.exponential(2.0, int(m.sum())).astype(np.float32)
    put(f, "awk.sparse", s)
PY

attrs_check "inspect awkward.h5 prints the root attributes" "$WORK/awkward.h5"
for obs in minmax percentile percentile:99.9 percentile:100 mse entropy; do
    inspect_check "awkward $obs int8" "$WORK/awkward.h5" --observer "$obs" --act int8
    inspect_check "awkward $obs int8, 100 samples" "$WORK/awkward.h5" --observer "$obs" --act int8 --calib-samples 100
done
for obs in minmax percentile percentile:99.9 percentile:100; do
    inspect_check "awkward $obs int8-asym" "$WORK/awkward.h5" --observer "$obs" --act int8-asym
    inspect_check "awkward $obs int8-asym, 37 samples" "$WORK/awkward.h5" --observer "$obs" --act int8-asym --calib-samples 37
done

# ---- c. errors ---------------------------------------------------------------------------------

"$MQ_PYTHON" - "$WORK" <<'PY' || fail "could not write the bad files"
import sys
import h5py
import numpy as np
w = sys.argv[1]


def calib(path, layers):
    with h5py.File(path, "w") as f:
        f.attrs["model"] = "bad"
        f.attrs["dataset"] = "bad"
        f.attrs["num_samples"] = np.int64(4)
        f.attrs["mq_calib_version"] = np.int64(1)
        for name, data in layers:
            g = f.create_group(name)
            if data is not None:
                g.create_dataset("inputs", data=data, chunks=data.shape, maxshape=(None,) + data.shape[1:])


ok = np.ones((4, 8), dtype=np.float32)
open(w + "/not-hdf5.h5", "w").write("this is not an HDF5 file\n" * 40)
calib(w + "/no-inputs.h5", [("layer.ok", ok), ("layer.empty", None)])
with h5py.File(w + "/no-inputs.h5", "a") as f:
    f["layer.empty"].create_dataset("other", data=ok)
calib(w + "/int32.h5", [("layer.ok", ok), ("layer.int32", np.ones((4, 8), dtype=np.int32))])
calib(w + "/rank1.h5", [("layer.rank1", np.ones(16, dtype=np.float32))])
calib(w + "/rank3.h5", [("layer.ok", ok), ("layer.rank3", np.ones((4, 2, 8), dtype=np.float32))])
nan = np.ones((4, 8), dtype=np.float32)
nan[1, 3] = np.nan
calib(w + "/nan.h5", [("layer.ok", ok), ("layer.nan", nan)])
inf = np.ones((4, 8), dtype=np.float16)
inf[2, 0] = np.inf
calib(w + "/inf16.h5", [("layer.inf", inf), ("layer.ok", ok)])
PY

# expect_inspect_error NAME CODE FILE NEEDLES ARGS...: NEEDLES is a '|'-separated list that stderr must contain.
expect_inspect_error() {
    local name=$1 code=$2 file=$3 needle missing="" needles
    IFS='|' read -r -a needles <<<"$4"
    shift 4
    inspect "$file" "$@"
    local rc=$?
    for needle in "${needles[@]}"; do
        grep -qF -- "$needle" "$WORK/last.err" || missing="$missing '$needle'"
    done
    if [ $rc -ne "$code" ]; then
        fail "$name: exit $rc, expected $code: $(head -c 400 "$WORK/last.err")"
    elif [ -n "$missing" ]; then
        fail "$name: message lacks$missing: $(head -c 400 "$WORK/last.err")"
    else
        pass "$name: exit $code, names$(printf " '%s'" "${needles[@]}")"
    fi
}

expect_inspect_error missing-file 3 "$WORK/missing.h5" "missing.h5" --observer minmax --act int8
expect_inspect_error not-hdf5 3 "$WORK/not-hdf5.h5" "not-hdf5.h5" --observer minmax --act int8
expect_inspect_error no-inputs 3 "$WORK/no-inputs.h5" "no-inputs.h5|layer.empty" --observer minmax --act int8
expect_inspect_error int32-inputs 3 "$WORK/int32.h5" "int32.h5|layer.int32" --observer minmax --act int8
expect_inspect_error rank1-inputs 3 "$WORK/rank1.h5" "rank1.h5|layer.rank1" --observer minmax --act int8
expect_inspect_error rank3-inputs 3 "$WORK/rank3.h5" "rank3.h5|layer.rank3" --observer percentile --act int8-asym
expect_inspect_error nan 4 "$WORK/nan.h5" "nan.h5|layer.nan" --observer minmax --act int8
expect_inspect_error nan-entropy 4 "$WORK/nan.h5" "nan.h5|layer.nan" --observer entropy --act int8
expect_inspect_error inf-float16 4 "$WORK/inf16.h5" "inf16.h5|layer.inf" --observer mse --act int8

# ---- the project's own generators fit together ------------------------------------------------
# make_model.py writes a Conv weight (model.conv.weight [8, 4, 3, 3]) that mq-dist quantizes by
# default; make_calibration.py must give it a Conv group ([n, in, h, w] plus stride, padding,
# dilation and groups), so that --calib on such a model succeeds (it exited 3 when the group was
# missing), byte-identical on 1 and 3 ranks, with the Conv layer calibrated.
make_model "$WORK/gen.safetensors" --seed 31 --layers 1
if "$MQ_PYTHON" "$MQ_SCRIPTS/make_calibration.py" "$WORK/gen.safetensors" "$WORK/gen.h5" --rows 48 --seed 3; then
    "$MQ_PYTHON" - "$WORK/gen.h5" <<'PY' && pass "make_calibration.py: a Conv group as README 'Calibration' describes" \
        || fail "make_calibration.py: Conv group layout"
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1], "r") as f:
    g = f["model.conv"]
    assert g["inputs"].shape == (48, 4, 8, 8) and g["inputs"].dtype == np.float32, g["inputs"].shape
    assert g["inputs"].chunks[1:] == (4, 8, 8), g["inputs"].chunks
    for k, want in (("stride", [1, 1]), ("padding", [1, 1]), ("dilation", [1, 1])):
        assert list(g.attrs[k]) == want and g.attrs[k].dtype == np.int64, (k, g.attrs[k])
    assert int(g.attrs["groups"]) == 1
    lin = f["model.layers.0.mlp.down_proj/inputs"]
    assert lin.ndim == 2 and lin.shape[0] == 48, lin.shape
    assert "model.embed_tokens" not in f and "lm_head" not in f
PY
    ok=1
    for n in 1 3; do
        mq "$n" "$WORK/gen.safetensors" --calib "$WORK/gen.h5" -o "$WORK/gen.n$n.safetensors" -q \
            || { fail "mq-dist --calib on a make_model.py model: -n $n exited $?: $(head -c 300 "$WORK/last.err")"; ok=0; }
    done
    if [ $ok = 1 ]; then
        cmp -s "$WORK/gen.n1.safetensors" "$WORK/gen.n3.safetensors" \
            && pass "mq-dist --calib on a make_model.py model with a Conv layer: exit 0, -n 1 = -n 3" \
            || fail "mq-dist --calib on a make_model.py model: -n 1 and -n 3 differ"
        "$MQ_PYTHON" - "$WORK/gen.n1.safetensors" <<'PY' && pass "the Conv layer is calibrated (static input scale)" \
            || fail "the Conv layer's calibration record"
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
rec = json.loads(h["__metadata__"]["layers"])["model.conv.weight"]
assert rec["action"] == "quantized" and rec["calibration"] == "static" and rec["calib_rows"] == 48, rec
assert h["model.conv.input_scale"]["dtype"] == "F32" and rec["input_scale"] > 0, rec
assert h["__metadata__"]["weights_only_layers"] == "0"
PY
    fi
else
    fail "make_calibration.py on a make_model.py model"
fi

# ---- hostile sizes: declared rows that are not stored, overflowing shapes, no rows ----------
# Each fails fast with exit 3 naming the file, the layer and what is wrong: in inspect and on
# every rank of a run (one error line, nothing left in the output folder, no hang).

H="$WORK/hostile"
mkdir -p "$H/out"
make_model "$H/m.safetensors" --seed 5
"$MQ_PYTHON" - "$H" <<'PY'
import sys

import h5py
import numpy as np

h = sys.argv[1]
rng = np.random.default_rng(7)


def calib(path, bad, **kw):
    """model.layers.1.mlp.up_proj is a good layer; model.layers.0.mlp.up_proj is `bad`."""
    with h5py.File(path, "w") as f:
        f.attrs["mq_calib_version"] = np.int64(1)
        f.create_group("model.layers.1.mlp.up_proj").create_dataset(
            "inputs", data=rng.standard_normal((64, 64), dtype=np.float32), chunks=(16, 64))
        g = f.create_group("model.layers.0.mlp.up_proj")
        if bad is None:
            g.create_dataset("inputs", data=rng.standard_normal((256, 64), dtype=np.float32), chunks=(16, 64))
        else:
            d = g.create_dataset("inputs", shape=bad, dtype=np.float32, **kw)
            if "fill" in path:
                d[:16] = 1.0


# 2^40 rows in chunks that were never written: no space on disk, fill values if read
calib(h + "/rows40.h5", (2**40, 64), chunks=(1024, 64))
# 2^60 rows: rows * row values * 4 overflows 64 bits
calib(h + "/rows60.h5", (2**60, 64), chunks=(1024, 64), maxshape=(None, 64))
calib(h + "/rows0.h5", (0, 64), chunks=(16, 64), maxshape=(None, 64))
# 1024 rows declared, the first 16 written: 63 of 64 chunks are fill values
calib(h + "/fill.h5", (1024, 64), chunks=(16, 64))
# one flipped byte in the row count of the dataspace: 256 -> 0 rows, and 256 -> 2^48 + 256
calib(h + "/good.h5", None)
raw = open(h + "/good.h5", "rb").read()
dims = (256).to_bytes(8, "little") + (64).to_bytes(8, "little")
at = raw.find(dims)
assert at > 0, "no dataspace with [256, 64] in good.h5"
for name, pos, xor in (("flip0", at + 1, 0x01), ("flip48", at + 6, 0x01)):
    b = bytearray(raw)
    b[pos] ^= xor
    open(h + "/" + name + ".h5", "wb").write(bytes(b))
# one layer only, and a flipped byte in its float type (the exponent bias: every value reads as
# 0, hence a scale of FLT_EPSILON) or in its chunk shape (16 x 64 -> 16 x 191: chunks read past
# their own bytes)
with h5py.File(h + "/one.h5", "w") as f:
    f.create_group("model.layers.0.mlp.up_proj").create_dataset(
        "inputs", data=rng.standard_normal((256, 64), dtype=np.float32), chunks=(16, 64))
raw = open(h + "/one.h5", "rb").read()
f32 = bytes.fromhex("0000200017080017 7f000000")  # offset, precision, fields, exponent bias 127
chunk = bytes.fromhex("10000000 40000000 04000000")  # chunk dims 16, 64 and the element size
for name, pos in (("flip-type", raw.find(f32) + 10), ("flip-chunk", raw.find(chunk) + 4)):
    assert pos > 10 and raw.count(f32) == 1 and raw.count(chunk) == 1, "one.h5 layout unexpected"
    b = bytearray(raw)
    b[pos] ^= 0xff
    open(h + "/" + name + ".h5", "wb").write(bytes(b))
PY

# hostile NAME FILE NEEDLES: inspect, then a 2-rank run (with --calib-samples 16 too) exit 3
# naming FILE, the layer and NEEDLES (|-separated), with one error line and nothing written.
hostile() {
    local name=$1 file=$H/$2.h5 needles="$2.h5|model.layers.0.mlp.up_proj|$3"
    expect_inspect_error "$name: inspect" 3 "$file" "$needles" --observer minmax --act int8
    local args
    for args in "" "--calib-samples 16"; do
        # shellcheck disable=SC2086
        mq 2 "$H/m.safetensors" -o "$H/out/m.safetensors" --calib "$file" -i up_proj $args
        local rc=$? missing="" needle n
        IFS='|' read -r -a n <<<"$needles"
        for needle in "${n[@]}"; do
            grep -qF -- "$needle" "$WORK/last.err" || missing="$missing '$needle'"
        done
        if [ $rc -ne 3 ] || [ -n "$missing" ]; then
            fail "$name: run ${args:-(all rows)}: exit $rc (expected 3), message lacks$missing: $(head -c 400 "$WORK/last.err")"
        elif [ "$(grep -c '^mq-dist: error' "$WORK/last.err")" -ne 1 ] || [ -n "$(ls -A "$H/out")" ]; then
            fail "$name: run ${args:-(all rows)}: $(grep -c '^mq-dist: error' "$WORK/last.err") error lines, left: $(ls -A "$H/out")"
        else
            pass "$name: run ${args:-(all rows)}: exit 3 on every rank, one message, nothing written"
        fi
    done
}

hostile "2^40 rows not stored" rows40 "needs 1073741824 chunks but 0 are stored"
hostile "2^60 rows" rows60 "declares more than 2^64 bytes"
hostile "0 rows" rows0 "holds no values"
hostile "fill values" fill "needs 64 chunks but 1 are stored"
hostile "flipped byte: 0 rows" flip0 "holds no values"
hostile "flipped byte: 2^48 rows" flip48 "are stored"
hostile "flipped byte: float type" flip-type "has a float type that is not IEEE binary32"
hostile "flipped byte: chunk shape" flip-chunk "unfiltered chunks, which hold 12224 bytes each"
inspect "$H/good.h5" --observer minmax --act int8 &&
    pass "the unflipped file is read (exit 0)" || fail "good.h5: exit $?: $(head -c 300 "$WORK/last.err")"

finish
