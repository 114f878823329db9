#!/usr/bin/env bash
# Golden outputs: the bytes mq-dist writes are pinned by their SHA-256 in tests/golden/outputs.sha256
# (lines "HASH  CASE", sorted, one per case), so that a restructuring which must not change any
# output can prove it did not. The cases cover every scheme (int8, int8-asym, fp16, bf16) and both
# granularities; every output format (.safetensors, .pt, .pth, .bin); every input kind (single F32,
# F16 and BF16 files, a sharded index, torch.save files (.pt, .pth, F64 and views), a hand-built
# .pt, a .bin, an mq-dist .pt read back); --include, --exclude, --no-default-excludes; --no-checksum;
# --digest sha256;
# calibration (every --observer and --act, --calib-samples, --calib-missing weights-only, GPTQ, a .pt
# input, a sharded one); a 4 MiB --memory-budget over tensors of several units; the default output
# names; a job file on 1..4 ranks and with --groups 2 (each output, and its zoo report with the
# times masked); and the text of --dry-run, inspect and --help. A case runs on 1, 2, 3 and 4 ranks
# (at least one per scheme, format, calibration, budget and the job) or on 1 and 3: every rank
# count must write the same bytes (the determinism rule), and those must hash to the recorded value.
# A few cases must equal others (--no-sync, the budget, the output's name). MQ_GOLDEN_UPDATE=1
# rewrites the list instead of comparing, and only when every case ran and its rank counts agreed.
# The inputs come from the project's generators with fixed seeds and file names. The hashes also
# depend on the libraries that write inputs (numpy, h5py/HDF5, torch.save) and on OpenBLAS, whose
# kernel decides the last bits of the calibration SQNRs: it is pinned to Prescott (any x86-64 CPU).
. "$(dirname "$0")/lib.sh"

for mod in torch h5py; do
    if ! "$MQ_PYTHON" -c "import $mod" >/dev/null 2>&1; then
        echo "skip - $MQ_PYTHON cannot import $mod: the inputs cannot be made"
        exit 77
    fi
done

GOLDEN="$HERE/../golden/outputs.sha256"
UPDATE=${MQ_GOLDEN_UPDATE:-0}
# The same kernel, and the same sums, on every machine; one thread, as mq-dist asks for anyway.
export OPENBLAS_CORETYPE=Prescott OPENBLAS_NUM_THREADS=1
# One machine needs no munge authentication between mpirun and its ranks (where munge is
# installed but its daemon is down, PMIx retries it for 2 s at every start).
export PMIX_MCA_psec=native
IN="$WORK/in"
OUT="$WORK/out"
mkdir -p "$IN" "$OUT"
declare -A GOT CMD TRIED
N_RUNS=0
T0=$SECONDS

sha() { sha256sum <"$1" | cut -d' ' -f1; }
# shown: a command line with $WORK written as such.
shown() { local s="$*"; printf '%s' "${s//"$WORK"/\$WORK}"; }

# ---------------------------------------------------------------- cases

# begin NAME: starts a case; take adds one rank count's file, end records the case's hash.
begin() {
    C_NAME=$1 C_REF="" C_REFN="" C_REFFILE="" C_OK=1 C_NS=""
    TRIED[$1]=1
}
# take N FILE: FILE is what -n N wrote; it must equal what the case's first rank count wrote.
take() {
    local n=$1 file=$2 h
    h=$(sha "$file")
    C_NS="$C_NS $n"
    if [ -z "$C_REF" ]; then
        C_REF=$h C_REFN=$n C_REFFILE=$file
    elif [ "$h" != "$C_REF" ]; then
        fail "$C_NAME: -n $n wrote $h, -n $C_REFN wrote $C_REF: rank counts disagree ($(shown "$(cmp "$C_REFFILE" "$file" 2>&1 | head -n 1)"))"
        C_OK=0
    fi
}
# end COMMAND...: records the case (the command is shown on a mismatch).
end() {
    [ "$C_OK" = 1 ] && [ -n "$C_REF" ] || return 0
    if [ -n "${GOT[$C_NAME]+x}" ]; then
        fail "$C_NAME: two cases of one name"
        return
    fi
    GOT[$C_NAME]=$C_REF
    CMD[$C_NAME]="$(shown "$@") (rank counts:$C_NS)"
}
# ran N NAME: the last mq run exited 0, or the case fails.
ran() {
    local rc=$?
    N_RUNS=$((N_RUNS + 1))
    [ $rc -eq 0 ] && return 0
    fail "$2: -n $1 exited $rc: $(grep -m 2 'mq-dist' "$WORK/last.err" | head -c 400)"
    C_OK=0
    return 1
}

# out NAME RANKS EXT INPUT [OPTIONS...]: mq-dist IN/INPUT -o NAME.nN.EXT OPTIONS on each rank count N
# in RANKS ("1234", "13"); the first output stays as $OUT/NAME.EXT.
out() {
    local name=$1 ranks=$2 ext=$3 input=$IN/$4 n k f
    shift 4
    begin "$name"
    for ((k = 0; k < ${#ranks}; k++)); do
        n=${ranks:k:1}
        f="$OUT/$name.n$n.$ext"
        mq "$n" "$input" -o "$f" -q "$@"
        ran "$n" "$name" || return
        take "$n" "$f"
        [ "$k" = 0 ] && mv "$f" "$OUT/$name.$ext" && C_REFFILE="$OUT/$name.$ext"
        [ "$k" = 0 ] || rm -f "$f"
    done
    end mpirun -n N mq-dist "$input" -o "$OUT/$name.$ext" -q "$@"
}

# dflt NAME RANKS INPUT EXPECTED [OPTIONS...]: no -o: the output must appear beside a copy of INPUT
# (a file, or a sharded model's folder when INPUT is FOLDER/FILE) under the name EXPECTED.
dflt() {
    local name=$1 ranks=$2 input=$3 want=$4 n k d="$WORK/dflt/$1"
    shift 4
    mkdir -p "$d"
    if [[ $input == */* ]]; then cp -r "$IN/${input%%/*}" "$d/"; else cp "$IN/$input" "$d/"; fi
    begin "$name"
    for ((k = 0; k < ${#ranks}; k++)); do
        n=${ranks:k:1}
        mq "$n" "$d/$input" -q "$@"
        ran "$n" "$name" || return
        if [ ! -f "$d/$want" ]; then
            fail "$name: -n $n wrote no $want beside $input (found: $(ls "$d/$(dirname "$input")" | tr '\n' ' '))"
            return
        fi
        mv "$d/$want" "$OUT/$name.n$n"
        take "$n" "$OUT/$name.n$n"
    done
    end mpirun -n N mq-dist "$d/$input" -q "$@" "(output $want)"
}

# plan NAME N INPUT [OPTIONS...]: the --dry-run text on N ranks (it names the rank count, so
# each N is a case of its own), run in $WORK with relative paths.
plan() {
    local name=$1 n=$2 input=$3
    shift 3
    begin "$name"
    (cd "$WORK" && mq "$n" "in/$input" -o "out/$name.safetensors" --dry-run "$@")
    ran "$n" "$name" || return
    [ ! -e "$OUT/$name.safetensors" ] || fail "$name: --dry-run wrote its output"
    cp "$WORK/last.out" "$OUT/$name.txt"
    take "$n" "$OUT/$name.txt"
    end mpirun -n "$n" mq-dist "in/$input" -o "out/$name.safetensors" --dry-run "$@" "(in \$WORK)"
}

# text NAME ARGS...: the stdout of mq-dist ARGS, one process (inspect, --help), run in $WORK.
text() {
    local name=$1 rc
    shift
    begin "$name"
    (cd "$WORK" && timeout -k 5 60 "$MQ_DIST" "$@" </dev/null >"$OUT/$name.txt" 2>"$WORK/last.err")
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "$name: mq-dist $* exited $rc: $(head -c 300 "$WORK/last.err")"
        return
    fi
    take 1 "$OUT/$name.txt"
    end mq-dist "$@" "(in \$WORK)"
}

# same NAME OTHER WHY: two cases must have written the same bytes.
same() {
    if [ -z "${GOT[$1]:-}" ] || [ -z "${GOT[$2]:-}" ]; then
        fail "$1 = $2 ($3): a case did not run"
    elif [ "${GOT[$1]}" = "${GOT[$2]}" ]; then
        pass "$1 = $2 ($3)"
    else
        fail "$1 != $2 ($3): ${GOT[$1]} and ${GOT[$2]}"
    fi
}

# ---------------------------------------------------------------- inputs

make_model "$IN/f32.safetensors" --dtype F32 --outliers --seed 1
make_model "$IN/f16.safetensors" --dtype F16 --outliers --seed 2
make_model "$IN/bf16.safetensors" --dtype BF16 --outliers --seed 3
make_model "$IN/shard/model.safetensors.index.json" --dtype F16 --shards 3 --outliers --seed 4
# Tensors of several 16 MiB units: embed_tokens and lm_head [6144, 1536] F32 (3), down_proj
# [1536, 3072] (2). odd: lm_head [5000, 1250] F32 in chunks of 3355 rows.
make_model "$IN/big.safetensors" --dtype F32 --hidden 1536 --layers 1 --outliers --seed 5
make_model "$IN/odd.safetensors" --dtype F32 --hidden 1250 --layers 1 --seed 6
"$MQ_PYTHON" "$HERE/pt_fixtures.py" model-sd "$IN/model-sd.pt" wrapped "$IN/wrapped.pth" views "$IN/views.pt" \
    dtypes "$IN/dtypes.pt" control "$IN/control.pt" --seed 45
cp "$IN/model-sd.pt" "$IN/model-sd.bin"
CAL="$IN/calib.h5"
"$MQ_PYTHON" "$MQ_SCRIPTS/make_calibration.py" "$IN/f32.safetensors" "$CAL" --rows 64 --seed 3
# down_proj left out: --calib-missing weights-only.
"$MQ_PYTHON" "$MQ_SCRIPTS/make_calibration.py" "$IN/f32.safetensors" "$IN/calib-part.h5" --rows 48 --seed 8 \
    --skip 'embed|lm_head|down_proj'
"$MQ_PYTHON" "$MQ_SCRIPTS/make_calibration.py" "$IN/model-sd.safetensors" "$IN/model-sd.h5" --rows 40 --seed 9
for f in f32.safetensors shard/model-00002-of-00003.safetensors big.safetensors model-sd.pt views.pt \
    dtypes.pt control.pt calib.h5 calib-part.h5 model-sd.h5; do
    [ -s "$IN/$f" ] || fail "input $f was not made"
done
[ "$N_FAIL" -eq 0 ] || { finish; exit; }
pass "inputs made ($((SECONDS - T0)) s)"

# ---------------------------------------------------------------- schemes, granularities, formats

out f32-int8                1234 safetensors f32.safetensors
out f32-int8-tensor         13   safetensors f32.safetensors -g tensor
out f32-int8-asym           1234 safetensors f32.safetensors -s int8-asym
out f32-fp16                1234 safetensors f32.safetensors -s fp16
out f32-bf16                1234 safetensors f32.safetensors -s bf16
out f16-int8-asym-tensor    13   safetensors f16.safetensors -s int8-asym -g tensor
out f16-bf16                13   safetensors f16.safetensors -s bf16
out bf16-int8               13   safetensors bf16.safetensors
# the low-bit rows: pack-quantized groups (scales in the model's dtype), fp8, the MSE range search
out f32-int4-keep-unfit     1234 safetensors f32.safetensors -s int4 --keep-unfit
out bf16-int4-asym-g32      13   safetensors bf16.safetensors -s int4-asym --group-size 32
out f16-w8a16-channel       13   safetensors f16.safetensors -s w8a16 --group-size channel
out f32-w8a16-asym-g64      13   safetensors f32.safetensors -s w8a16-asym --group-size 64
out bf16-fp8                13   safetensors bf16.safetensors -s fp8
out f32-fp8-tensor          13   safetensors f32.safetensors -s fp8 -g tensor
out f32-int4-g32-clip       13   safetensors f32.safetensors -s int4 --group-size 32 --clip mse
out f32-int4-asym-clip-pt   13   pt          f32.safetensors -s int4-asym --group-size 32 --clip mse
out bf16-int8-tensor        13   safetensors bf16.safetensors -g tensor
out bf16-fp16               13   safetensors bf16.safetensors -s fp16
out pt-f32-int8             1234 pt          f32.safetensors
out pt-f32-int8-asym-tensor 13   pt          f32.safetensors -s int8-asym -g tensor
out pt-f32-fp16             13   pt          f32.safetensors -s fp16
out pt-f16-bf16             13   pt          f16.safetensors -s bf16
out pth-f16-int8-asym       13   pth         f16.safetensors -s int8-asym
out bin-bf16-int8-tensor    13   bin         bf16.safetensors -g tensor
out shard-int8              13   safetensors shard/model.safetensors.index.json
out shard-int8-asym-tensor  13   pt          shard/model.safetensors.index.json -s int8-asym -g tensor
out shard-bf16              13   safetensors shard/model.safetensors.index.json -s bf16

# ---------------------------------------------------------------- torch inputs

out ptin-model-sd           13   safetensors model-sd.pt
out ptin-model-sd-pt        13   pt          model-sd.pt
out ptin-wrapped-asym       13   pth         wrapped.pth -s int8-asym
out ptin-views              1234 safetensors views.pt
out ptin-dtypes             13   pt          dtypes.pt
out ptin-dtypes-keep-f64    13   safetensors dtypes.pt -x '^f64\.'
out ptin-dtypes-fp16        13   safetensors dtypes.pt -s fp16
out ptin-control-tensor     13   safetensors control.pt -g tensor
cp "$OUT/pt-f32-int8.pt" "$IN/mq-out.pt"
out ptin-mq-out             13   safetensors mq-out.pt

# ---------------------------------------------------------------- selection, checksums

out sel-include             13   safetensors f32.safetensors -i q_proj -i 'mlp\.(up|down)_proj'
out sel-include-embed       13   safetensors f32.safetensors -i embed -i lm_head
out sel-exclude             13   safetensors f32.safetensors -x up_proj -x 'layers\.1\.'
out sel-no-default-excludes 13   safetensors f32.safetensors --no-default-excludes
out sel-nde-asym-tensor     13   pt          f32.safetensors --no-default-excludes -x conv -s int8-asym -g tensor
out sel-cast-exclude        13   safetensors f32.safetensors -s bf16 -x lm_head -x layernorm
out sel-cast-include        13   safetensors f32.safetensors -s fp16 -i q_proj
out nock-f32-int8           13   safetensors f32.safetensors --no-checksum
out nock-pt-asym            13   pt          f16.safetensors -s int8-asym --no-checksum
out nosync-f32-int8         13   safetensors f32.safetensors --no-sync
# --digest sha256: the source digests of earlier versions, whose default it was; these three cases keep
# the hashes the default cases f32-int8, pth-f16-int8-asym and cal had before XXH3-128 became the default.
out sha256-f32-int8         13   safetensors f32.safetensors --digest sha256
out sha256-pth-f16-asym     13   pth         f16.safetensors -s int8-asym --digest sha256
out sha256-cal              13   safetensors f32.safetensors -c "$CAL" --digest sha256

# ---------------------------------------------------------------- memory budget, several units per tensor

out big-m4                  1234 safetensors big.safetensors -m 4
out big-default             13   safetensors big.safetensors
out big-m4-tensor-nde       13   pt          big.safetensors -m 4 -g tensor --no-default-excludes
out big-m4-bf16             13   safetensors big.safetensors -m 4 -s bf16
out odd-m4-tensor-nde       13   safetensors odd.safetensors -m 4 -g tensor --no-default-excludes
rm -f "$OUT"/big-* "$OUT"/odd-*

# ---------------------------------------------------------------- calibration

out cal                     1234 safetensors f32.safetensors -c "$CAL"
out cal-minmax              13   safetensors f32.safetensors -c "$CAL" --observer minmax
out cal-percentile-99.9     13   safetensors f32.safetensors -c "$CAL" --observer percentile:99.9
out cal-mse                 13   safetensors f32.safetensors -c "$CAL" --observer mse
out cal-entropy             13   safetensors f32.safetensors -c "$CAL" --observer entropy
out cal-fp8                 13   safetensors f32.safetensors -c "$CAL" -s fp8
out cal-int4-channel        13   safetensors f32.safetensors -c "$CAL" -s int4 --group-size channel
# GPTQ: the Hessian's sums and the sweep's GEMMs are pinned by the OpenBLAS kernel above
out cal-gptq-int4-g32        1234 safetensors f32.safetensors -c "$CAL" -s int4 --group-size 32 --method gptq
out cal-gptq-w8a16-asym-none 13   safetensors f32.safetensors -c "$CAL" -s w8a16-asym --group-size 32 --method gptq --actorder none --damp 0.05 --block-size 32 --gptq-scales updated
out cal-gptq-int4-clip-pt    13   pt          f32.safetensors -c "$CAL" -s int4-asym --group-size channel --method gptq --clip mse
out cal-act-asym            13   safetensors f32.safetensors -c "$CAL" --act int8-asym
out cal-act-none            13   safetensors f32.safetensors -c "$CAL" --act none
out cal-samples-16          13   safetensors f32.safetensors -c "$CAL" --calib-samples 16
out cal-weights-only        13   safetensors f32.safetensors -c "$IN/calib-part.h5" --calib-missing weights-only
out cal-asym-tensor         13   safetensors f32.safetensors -c "$CAL" -s int8-asym -g tensor --observer minmax --act int8-asym
out cal-pt                  13   pt          f32.safetensors -c "$CAL" --observer entropy
out cal-nock                13   safetensors f32.safetensors -c "$CAL" --no-checksum
out cal-bf16                13   safetensors bf16.safetensors -c "$CAL"
out cal-shard               13   safetensors shard/model.safetensors.index.json -c "$CAL" -g tensor
out cal-ptin                13   pt          model-sd.pt -c "$IN/model-sd.h5"

# ---------------------------------------------------------------- default output names

dflt dflt-f16-asym-tensor 13 f16.safetensors f16.int8-asym-per-tensor.safetensors -s int8-asym -g tensor
dflt dflt-shard-bf16      13 shard/model.safetensors.index.json shard/model.bf16.safetensors -s bf16
dflt dflt-pth             13 wrapped.pth wrapped.int8.pth
dflt dflt-bin-fp16        13 model-sd.bin model-sd.fp16.pt -s fp16

# ---------------------------------------------------------------- a job file

# Each run in a folder of its own: job.json and the two inputs whose outputs go beside them
# (default names); the others come from $IN through relative paths. defaults: int8-asym,
# exclude up_proj, budget 64. "unfit" fails (int4's groups of 128 do not divide its 64 inputs):
# the zoo report's failure row is pinned too; "cal-4m" runs its calibrated layers in 4 MiB.
job_dir() {
    local d=$1
    mkdir -p "$d/out"
    cp "$IN/f32.safetensors" "$d/a.safetensors"
    cp "$IN/model-sd.pt" "$d/model-sd.pt"
    cat >"$d/job.json" <<'EOF'
{
  "defaults": {"scheme": "int8-asym", "exclude": ["up_proj"], "memory-budget": 64},
  "models": [
    {"input": "a.safetensors"},
    {"name": "bee", "input": "../in/f16.safetensors", "output": "out/bee.pt",
     "options": {"scheme": "int8", "granularity": "tensor", "exclude": "down_proj"}},
    {"name": "cal", "input": "a.safetensors", "output": "out/cal.safetensors", "calib": "../in/calib.h5",
     "options": {"scheme": "int8", "observer": "mse", "memory-budget": 256, "no_checksum": true}},
    {"name": "cal-4m", "input": "../in/bf16.safetensors", "output": "out/cal-4m.safetensors",
     "calib": "../in/calib.h5", "options": {"memory_budget": 4}},
    {"name": "unfit", "input": "../in/bf16.safetensors", "output": "out/unfit.safetensors",
     "options": {"scheme": "int4"}},
    {"name": "shard", "input": "../in/shard/model.safetensors.index.json", "output": "out/shard.safetensors",
     "options": {"scheme": "bf16"}},
    {"input": "model-sd.pt", "options": {"include": ["conv", "blocks"], "no_default_excludes": true}}
  ]
}
EOF
}
JOB_FILES="a:a.int8-asym.safetensors bee:out/bee.pt cal:out/cal.safetensors cal-4m:out/cal-4m.safetensors shard:out/shard.safetensors
    model-sd:model-sd.int8-asym.pt report-json:report.json report-md:report.md"   # CASE:FILE
# Times are masked in the zoo report: "time_s" in the JSON, the last column of the Markdown table.
mask_times() {
    sed -E 's/("time_s":[[:space:]]*)[-+0-9.eE]+/\1T/' "$1/job-report.json" >"$1/report.json"
    sed -E 's/\| [0-9]+\.[0-9]+ \|$/| T |/' "$1/job-report.md" >"$1/report.md"
}
JOB_RUNS="1 2 3 4 3:2 4:2"   # N or N:K (--groups K)
for r in $JOB_RUNS; do
    n=${r%%:*}
    d="$WORK/job.${r/:/g}"
    job_dir "$d"
    groups=()
    [[ $r == *:* ]] && groups=(--groups "${r#*:}")
    (cd "$d" && mq "$n" --job job.json -q "${groups[@]}")
    rc=$?
    N_RUNS=$((N_RUNS + 1))
    if [ $rc -ne 8 ]; then
        fail "job: -n $r exited $rc, expected 8 (one model fails): $(grep -m 3 'mq-dist' "$WORK/last.err" | head -c 400)"
    fi
    [ -f "$d/job-report.json" ] && mask_times "$d"
done
for cf in $JOB_FILES; do
    name=job.${cf%%:*} f=${cf#*:}
    begin "$name"
    for r in $JOB_RUNS; do
        d="$WORK/job.${r/:/g}"
        if [ ! -f "$d/$f" ]; then
            fail "$name: the job on -n $r wrote no $f"
            C_OK=0
            continue
        fi
        take "$r" "$d/$f"
    done
    end "(in each run's folder) mpirun -n N mq-dist --job job.json -q [--groups 2]" "($f)"
done

# ---------------------------------------------------------------- plans and inspect

plan plan-f32-int8.n3       3 f32.safetensors
plan plan-big-m4-tensor.n4  4 big.safetensors -m 4 -g tensor --no-default-excludes
plan plan-cal-ptin.n2       2 model-sd.pt -c "in/model-sd.h5"
text inspect-f32-int8                 inspect out/f32-int8.safetensors
text inspect-cal-verbose              inspect out/cal.safetensors --verbose
text inspect-ptin-model-sd-pt-json    inspect out/ptin-model-sd-pt.pt --json
text inspect-torch-save               inspect in/model-sd.pt
text inspect-shard                    inspect in/shard/model.safetensors.index.json
text inspect-calib                    inspect in/calib.h5
text inspect-calib-minmax-asym        inspect in/calib.h5 --observer minmax --act int8-asym
text inspect-calib-mse-16             inspect in/calib.h5 --observer mse --calib-samples 16
text inspect-calib-entropy            inspect in/model-sd.h5 --observer entropy

text help                             --help
text version                          --version

# ---------------------------------------------------------------- cases that must agree

same nosync-f32-int8 f32-int8 "--no-sync changes no byte"
same big-default big-m4 "the budget changes no byte"
same dflt-f16-asym-tensor f16-int8-asym-tensor "the output's name is not in its bytes"
same dflt-shard-bf16 shard-bf16 "the output's name is not in its bytes"

# ---------------------------------------------------------------- against the recorded list

names=$(printf '%s\n' "${!TRIED[@]}" | LC_ALL=C sort)
if [ "$UPDATE" = 1 ]; then
    if [ "$N_FAIL" -ne 0 ]; then
        fail "MQ_GOLDEN_UPDATE=1: $N_FAIL failures above, tests/golden/outputs.sha256 left as it was"
    else
        mkdir -p "$(dirname "$GOLDEN")"
        for name in $names; do printf '%s  %s\n' "${GOT[$name]}" "$name"; done >"$GOLDEN.tmp" &&
            mv "$GOLDEN.tmp" "$GOLDEN"
        pass "recorded $(grep -c '' "$GOLDEN") cases in tests/golden/outputs.sha256"
    fi
elif [ ! -f "$GOLDEN" ]; then
    fail "no recorded list tests/golden/outputs.sha256 (MQ_GOLDEN_UPDATE=1 writes it)"
else
    declare -A WANT
    while read -r h name; do
        [ -n "$name" ] && WANT[$name]=$h
    done <"$GOLDEN"
    n_same=0
    for name in $names; do
        if [ -z "${GOT[$name]+x}" ]; then
            continue # failed above
        elif [ -z "${WANT[$name]+x}" ]; then
            fail "$name: not in the recorded list (a new case? MQ_GOLDEN_UPDATE=1 records it)"
        elif [ "${WANT[$name]}" != "${GOT[$name]}" ]; then
            fail "$name: the output changed
    command:  ${CMD[$name]}
    recorded: ${WANT[$name]}
    now:      ${GOT[$name]}"
        else
            n_same=$((n_same + 1))
        fi
    done
    for name in "${!WANT[@]}"; do
        [ -n "${TRIED[$name]+x}" ] || fail "$name: recorded but no longer run"
    done
    pass "$n_same of ${#WANT[@]} recorded outputs byte-identical"
fi
echo "# ${#TRIED[@]} cases, $N_RUNS mq-dist runs, $((SECONDS - T0)) s"
finish
