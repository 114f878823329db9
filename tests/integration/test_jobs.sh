#!/usr/bin/env bash
# Job files and resumable runs end to end.
# Jobs: validation before anything runs (exit 2, one line naming the entry and the key, nothing
# written); option priority (command line > model entry > defaults), paths relative to the job
# file, outputs byte-identical to direct runs and across --groups; a failing model reported and
# skipped over (exit 8); the zoo report (JSON and Markdown) agreeing with each output's metadata;
# the up-to-date skip by fingerprint, and what makes a model redone.
# Resume: SIGUSR1 (exit 7) or kill -9 keep the partial output and its journal; the rerun (any
# rank count) resumes and gives the same bytes; corrupted units are redone; other options or a
# changed input discard the partial; SIGINT leaves nothing, SIGTERM too before a unit is journaled;
# SIGUSR1 inside a job. Crashes of one rank and cancels: test_faults.sh.
# Checks of the reports and outputs: jobs_check.py.
. "$(dirname "$0")/lib.sh"

JC="$HERE/jobs_check.py"
jc() { "$MQ_PYTHON" "$JC" "$@"; }
pt_convert() { "$MQ_PYTHON" "$HERE/pt_fixtures.py" convert "$1" --from "$2"; }

# check NAME CMD...: CMD must succeed (its last output line goes into the message).
check() {
    local name=$1
    shift
    if "$@" >"$WORK/check.log" 2>&1; then
        pass "$name ($(tail -n 1 "$WORK/check.log"))"
    else
        fail "$name: $(tail -n 3 "$WORK/check.log")"
    fi
}

# same NAME A B: the two files are byte-identical.
same() {
    if [ -f "$2" ] && cmp -s "$2" "$3"; then pass "$1"; else fail "$1: ${2##*/} and ${3##*/} differ or are missing"; fi
}

# stamp FILES...: size, content and modification time (ns) of each file.
stamp() {
    local f
    for f in "$@"; do
        if [ -e "$f" ]; then echo "$f $(stat -c '%s %y' "$f") $(sha256sum <"$f")"; else echo "$f absent"; fi
    done
}

# expect_rc NAME CODE: the last mq run exited CODE.
expect_rc() {
    if [ "$RC" -eq "$2" ]; then
        pass "$1: exit $2"
    else
        fail "$1: exit $RC, expected $2: $(grep 'mq-dist' "$WORK/last.err" | head -c 400)"
    fi
}

# ================================================================ job file validation

V="$WORK/v"
mkdir -p "$V"
make_model "$V/a.safetensors" --seed 1
make_model "$V/b.safetensors" --seed 2 --dtype F16

# job_error NAME NEEDLES JSON [ARGS...]: exit 2, exactly one error line, naming the job file and
# holding every |-separated needle, and nothing written (the first model is always a valid one).
job_error() {
    local name=$1 needles=$2 before line why="" nd
    printf '%s\n' "$3" >"$V/j.json"
    before=$(ls -A "$V")
    mq 2 --job "$V/j.json" "${@:4}"
    RC=$?
    line=$(grep 'mq-dist: error' "$WORK/last.err")
    if [ $RC -ne 2 ]; then
        why="exit $RC, expected 2"
    elif [ "$(printf '%s\n' "$line" | grep -c .)" -ne 1 ]; then
        why="expected one error line"
    elif ! grep -qF "'$V/j.json'" <<<"$line"; then
        why="message does not name the job file"
    else
        IFS='|' read -ra nds <<<"$needles"
        for nd in "${nds[@]}"; do
            grep -qF -- "$nd" <<<"$line" || why="$why message lacks \"$nd\""
        done
    fi
    [ -z "$why" ] && [ "$before" != "$(ls -A "$V")" ] && why="wrote: $(comm -13 <(echo "$before") <(ls -A "$V") | tr '\n' ' ')"
    if [ -z "$why" ]; then pass "job error $name: exit 2, '$needles'"; else fail "job error $name: $why: $(head -c 400 "$WORK/last.err")"; fi
    rm -f "$V/j.json"
}

job_error "unknown top-level key" "modls" \
    '{"modls": [], "models": [{"input": "a.safetensors"}]}'
job_error "unknown model key" "models[1]|('x')|optons" \
    '{"models": [{"input": "a.safetensors"}, {"name": "x", "input": "b.safetensors", "optons": {"scheme": "int8-asym"}}]}'
job_error "unknown option in defaults" "defaults|schem" \
    '{"defaults": {"schem": "int8-asym"}, "models": [{"input": "a.safetensors"}]}'
job_error "unknown option in a model" "models[1]|granularty" \
    '{"models": [{"input": "a.safetensors"}, {"input": "b.safetensors", "options": {"granularty": "tensor"}}]}'
job_error "wrong scheme" "models[0]|int3" \
    '{"models": [{"input": "a.safetensors", "options": {"scheme": "int3"}}]}'
job_error "wrong value in a later model" "models[1]|memory-budget" \
    '{"models": [{"input": "a.safetensors"}, {"input": "b.safetensors", "options": {"memory-budget": 2}}]}'
job_error "flag given a string" "models[1]|no_checksum" \
    '{"models": [{"input": "a.safetensors"}, {"input": "b.safetensors", "options": {"no_checksum": "true"}}]}'
job_error "flag given a string in defaults" "defaults|force" \
    '{"defaults": {"force": "yes"}, "models": [{"input": "a.safetensors"}]}'
job_error "output name mq-dist does not write" "models[1]|('b')|--output|b.gguf|.safetensors, or in .pt, .pth or .bin" \
    '{"models": [{"input": "a.safetensors"}, {"input": "b.safetensors", "output": "b.gguf"}]}'
job_error "output extension in capitals" "models[0]|--output|'.PT' is not '.pt'" \
    '{"models": [{"input": "a.safetensors", "options": {"output": "a.PT"}}]}'
job_error "exploding include pattern" "models[1]|--include|stacked quantifiers" \
    '{"models": [{"input": "a.safetensors"}, {"input": "b.safetensors", "options": {"include": ["q_proj", "a++++++++++++++++++++++++"]}}]}'
job_error "exploding exclude in defaults" "models[0]|--exclude|bound 32767" \
    '{"defaults": {"exclude": "x{1,32767}"}, "models": [{"input": "a.safetensors"}]}'
job_error "two models, one name" "models[0]|models[1]|'m'" \
    '{"models": [{"name": "m", "input": "a.safetensors"}, {"name": "m", "input": "b.safetensors"}]}'
job_error "two models, one output" "models[1]|same.safetensors" \
    '{"models": [{"input": "a.safetensors", "output": "same.safetensors"}, {"input": "b.safetensors", "output": "same.safetensors"}]}'
job_error "two models, one default output" "models[1]|a.int8.safetensors" \
    '{"models": [{"input": "a.safetensors"}, {"name": "again", "input": "a.safetensors"}]}'
# One output under two names: the paths are compared as the file system resolves them.
mkdir -p "$V/o"
ln -s o "$V/lnk"
for other in o/./t.safetensors o//t.safetensors o/../o/t.safetensors lnk/t.safetensors "$V/o/t.safetensors"; do
    job_error "one output as '$other'" "models[0] ('a') and models[1] ('b') write the same output|$other" \
        '{"models": [{"input": "a.safetensors", "output": "o/t.safetensors"}, {"input": "b.safetensors", "output": "'"$other"'"}]}'
done
# An output that is an input of the same job, with --force too: refused before anything runs, and
# an output left by an earlier run is not quantized again.
printf '{"models": [{"input": "a.safetensors", "output": "o/t.safetensors"}]}\n' >"$V/first.json"
mq 2 --job "$V/first.json" -q
[ -f "$V/o/t.safetensors" ] || fail "a one-model job: $(head -c 300 "$WORK/last.err")"
s_t=$(stamp "$V/o/t.safetensors")
rm -f "$V/first-report.json" "$V/first-report.md" "$V/first.json"
for f in "" --force; do
    job_error "a model reads another's output ${f:-(no --force)}" "models[1] ('t') reads|o/t.safetensors|which models[0] ('a') writes" \
        '{"models": [{"input": "a.safetensors", "output": "o/t.safetensors"}, {"input": "o/t.safetensors", "output": "o/u.safetensors"}]}' $f
done
job_error "a model reads another's output through a link" "reads|lnk/t.safetensors|which models[0] ('a') writes" \
    '{"models": [{"input": "a.safetensors", "output": "o/t.safetensors"}, {"input": "lnk/t.safetensors", "output": "u.pt"}]}' --force
job_error "a model's output is its own input" "models[0] ('a'): its output|is its own input" \
    '{"models": [{"input": "a.safetensors", "output": "./a.safetensors"}]}' --force
[ "$s_t" = "$(stamp "$V/o/t.safetensors")" ] && pass "the earlier output is untouched" || fail "the earlier output was rewritten"
rm -f "$V/o/t.safetensors"
# \u0000 would cut a path short: refused, naming the entry and the key.
job_error "NUL in an output path" "models[1] ('b')|'output' holds \\u0000" \
    '{"models": [{"input": "a.safetensors"}, {"input": "b.safetensors", "output": "o/nul\u0000.pt"}]}'
job_error "NUL in an include pattern" "models[0] ('a')|'options.include[1]'|NUL" \
    '{"models": [{"input": "a.safetensors", "options": {"include": ["q_proj", "k\u0000"]}}]}'
job_error "NUL in a key" "the key at 'out'" \
    '{"models": [{"input": "a.safetensors", "out\u0000put": "x.pt"}]}'
[ -z "$(ls -A "$V/o")" ] && pass "nothing written in o/" || fail "o/ holds $(ls -A "$V/o")"
rm -rf "$V/o" "$V/lnk"

before=$(ls -A "$V")
mq 2 "$V/a.safetensors" --groups 2 -o "$V/x.safetensors"
RC=$?
if [ $RC -eq 2 ] && grep 'mq-dist: error' "$WORK/last.err" | grep -qF -- "--groups" && [ "$before" = "$(ls -A "$V")" ]; then
    pass "--groups without --job: exit 2, nothing written"
else
    fail "--groups without --job: exit $RC $(head -c 300 "$WORK/last.err")"
fi
printf '{"models": [{"input": "b.safetensors"}]}\n' >"$V/ok.json"
before=$(ls -A "$V")
mq 2 "$V/a.safetensors" --job "$V/ok.json"
RC=$?
if [ $RC -eq 2 ] && [ "$(grep -c 'mq-dist: error' "$WORK/last.err")" -eq 1 ] && [ "$before" = "$(ls -A "$V")" ]; then
    pass "a model and --job: exit 2, nothing written"
else
    fail "a model and --job: exit $RC, $(head -c 300 "$WORK/last.err"); new: $(comm -13 <(echo "$before") <(ls -A "$V") | tr '\n' ' ')"
fi

# ================================================================ a job: priority, paths, report

Z="$WORK/zoo"
EL="$WORK/elsewhere"   # mq-dist runs here: job paths must count from the job file's folder
D="$WORK/direct"
mkdir -p "$Z/in" "$Z/out" "$Z/rep" "$EL" "$D"
make_model "$Z/in/a.safetensors" --seed 11
make_model "$Z/in/b.safetensors" --seed 12 --dtype F16
make_model "$Z/in/c.safetensors" --seed 13 --dtype BF16 --outliers
make_model "$WORK/m-src.safetensors" --seed 14
pt_convert "$Z/in/m.pt" "$WORK/m-src.safetensors"

# defaults: int8-asym, exclude up_proj, budget 64.  a: all defaults.  bee: its own scheme, exclude
# (a string) and granularity.  cee: include (an array), "_" keys, a flag.  m: a .pt input.
cat >"$Z/job.json" <<'EOF'
{
  "report": "rep/zoo",
  "defaults": {"scheme": "int8-asym", "exclude": ["up_proj"], "memory-budget": 64},
  "models": [
    {"input": "in/a.safetensors"},
    {"name": "bee", "input": "in/b.safetensors", "output": "out/bee.pt",
     "options": {"scheme": "int8", "exclude": "down_proj", "granularity": "tensor"}},
    {"name": "cee", "input": "in/c.safetensors", "output": "out/cee.safetensors",
     "options": {"include": ["q_proj", "k_proj"], "memory_budget": 8, "no_default_excludes": true}},
    {"input": "in/m.pt", "options": {"exclude": "gate_proj"}}
  ]
}
EOF
JOB="../zoo/job.json"
OUTS=("$Z/in/a.int8-asym.safetensors" "$Z/out/bee.pt" "$Z/out/cee.safetensors" "$Z/in/m.int8-asym.pt")
REP="$Z/rep/zoo"
cd "$EL" || exit 1

report() { check "$1: report" jc report "$EL" "$REP" "$JOB" "${@:2}"; }
runjob() { mq 2 --job "$JOB" "$@"; RC=$?; }

runjob
expect_rc "job run" 0
missing=""
for f in "${OUTS[@]}"; do [ -f "$f" ] || missing="$missing ${f#"$WORK"/}"; done
[ -z "$missing" ] && pass "outputs where the job file says, relative to its folder" || fail "outputs missing:$missing"
[ -z "$(ls -A "$EL")" ] && pass "nothing written in the working folder" || fail "written in the working folder: $(ls -A "$EL")"
report "job run" a=ok bee=ok cee=ok m=ok

# The same bytes as direct runs with the options each model should get.
mq 2 "$Z/in/a.safetensors" -o "$D/a.safetensors" -s int8-asym -x up_proj -m 64 -q
same "a (defaults only) = direct run with -s int8-asym -x up_proj" "$D/a.safetensors" "${OUTS[0]}"
mq 2 "$Z/in/b.safetensors" -o "$D/bee.pt" -s int8 -x down_proj -g tensor -m 64 -q
same "bee (model options over defaults) = direct run" "$D/bee.pt" "${OUTS[1]}"
mq 2 "$Z/in/c.safetensors" -o "$D/cee.safetensors" -s int8-asym -x up_proj -i q_proj -i k_proj -m 8 --no-default-excludes -q
same "cee (include array, _ keys, flag) = direct run" "$D/cee.safetensors" "${OUTS[2]}"
mq 2 "$Z/in/m.pt" -o "$D/m.pt" -s int8-asym -x gate_proj -m 64 -q
same "m (.pt input, default .pt output) = direct run" "$D/m.pt" "${OUTS[3]}"

# fates: an option is taken whole from the first source that sets it.
fates() {
    local f=$1 got="" want="" t a
    shift
    while [ $# -gt 0 ]; do
        t=$1 a=$2
        shift 2
        want="$want $a"
        got="$got $(jc fate "$f" "model.layers.0.$t.weight")"
    done
    [ "$got" = "$want" ] && pass "fates in ${f##*/}:$want" || fail "fates in ${f##*/}:$got, expected$want"
}
fates "${OUTS[0]}" mlp.up_proj kept mlp.down_proj quantized self_attn.o_proj quantized
fates "${OUTS[1]}" mlp.up_proj quantized mlp.down_proj kept
fates "${OUTS[2]}" self_attn.q_proj quantized self_attn.k_proj quantized self_attn.o_proj kept mlp.up_proj kept
fates "${OUTS[3]}" mlp.up_proj quantized mlp.gate_proj kept
got=""
for f in "${OUTS[@]}"; do got="$got $(jc meta "$f" scheme)/$(jc meta "$f" per_channel)"; done
[ "$got" = " int8-asym/true int8/false int8-asym/true int8-asym/true" ] && pass "schemes and granularities:$got" || fail "schemes:$got"
fp=$(jc meta "${OUTS[0]}" fingerprint)
[[ $fp =~ ^[0-9a-f]{64}$ ]] && pass "fingerprint in the metadata" || fail "fingerprint: '$fp'"

# Up to date: nothing redone, the outputs untouched.
s0=$(stamp "${OUTS[@]}")
runjob
expect_rc "rerun" 0
report "rerun" a="up to date" bee="up to date" cee="up to date" m="up to date"
[ "$s0" = "$(stamp "${OUTS[@]}")" ] && pass "rerun: outputs untouched (bytes and mtime)" || fail "rerun: outputs touched"

# New content, same size, shape and mtime: redone.
touch -r "$Z/in/b.safetensors" "$WORK/b.stamp"
size0=$(stat -c %s "$Z/in/b.safetensors")
make_model "$Z/in/b.safetensors" --seed 99 --dtype F16
touch -r "$WORK/b.stamp" "$Z/in/b.safetensors"
[ "$size0" = "$(stat -c %s "$Z/in/b.safetensors")" ] || fail "the rewritten input changed size"
runjob
expect_rc "changed input" 0
report "changed input" a="up to date" bee=ok cee="up to date" m="up to date"
mq 2 "$Z/in/b.safetensors" -o "$D/bee2.pt" -s int8 -x down_proj -g tensor -m 64 -q
same "changed input: bee redone from the new content" "$D/bee2.pt" "${OUTS[1]}"
[ "$(echo "$s0" | sed -n '1p;3p;4p')" = "$(stamp "${OUTS[0]}" "${OUTS[2]}" "${OUTS[3]}")" ] &&
    pass "changed input: the other outputs untouched" || fail "changed input: other outputs touched"

# Command line over every model: -g tensor.  a and m get new default names; bee already had it.
s1=$(stamp "${OUTS[1]}")
runjob -g tensor
expect_rc "-g tensor" 0
report "-g tensor" a=ok bee="up to date" cee=ok m=ok
[ "$s1" = "$(stamp "${OUTS[1]}")" ] && pass "-g tensor: bee (already per tensor) untouched" || fail "-g tensor: bee touched"
got="$(jc meta "$Z/in/a.int8-asym-per-tensor.safetensors" per_channel) $(jc meta "${OUTS[2]}" per_channel) $(jc meta "$Z/in/m.int8-asym-per-tensor.pt" per_channel)"
[ "$got" = "false false false" ] && pass "-g tensor applied to every model" || fail "-g tensor: per_channel $got"

# Back to the job's own options: cee redone (it was made per tensor), the rest up to date.
runjob
expect_rc "options back" 0
report "options back" a="up to date" bee="up to date" cee=ok m="up to date"
same "options back: cee = the first direct run" "$D/cee.safetensors" "${OUTS[2]}"

# Editing the job file: only the edited model is redone; same options written differently are not.
sed -e 's/"exclude": "down_proj"/"exclude": ["o_proj"]/' \
    -e 's/"exclude": "gate_proj"/"exclude": ["gate_proj"], "granularity": "channel", "no-checksum": false/' \
    "$Z/job.json" >"$Z/job.new" && mv "$Z/job.new" "$Z/job.json"
runjob
expect_rc "edited job" 0
report "edited job" a="up to date" bee=ok cee="up to date" m="up to date"
fates "${OUTS[1]}" self_attn.o_proj kept mlp.down_proj quantized

# A deleted output is redone.
rm -f "${OUTS[2]}"
runjob
expect_rc "deleted output" 0
report "deleted output" a="up to date" bee="up to date" cee=ok m="up to date"
same "deleted output: cee made again" "$D/cee.safetensors" "${OUTS[2]}"

# An output that is not an mq-dist file: that model fails (5), the others go on; --force redoes all.
head -c 4096 /dev/urandom >"${OUTS[0]}"
cp "${OUTS[0]}" "$WORK/random.copy"
runjob
expect_rc "foreign output" 8
report "foreign output" a=failed:5 bee="up to date" cee="up to date" m="up to date"
same "foreign output left as it was" "$WORK/random.copy" "${OUTS[0]}"
grep 'mq-dist: error' "$WORK/last.err" | grep -qF '[a]' && pass "foreign output: the error line names [a]" ||
    fail "foreign output: no [a] error line: $(head -c 300 "$WORK/last.err")"
s2=$(stamp "${OUTS[@]}")
runjob --force
expect_rc "--force" 0
report "--force" a=ok bee=ok cee=ok m=ok
same "--force: a made again" "$D/a.safetensors" "${OUTS[0]}"
n_same=$(comm -12 <(echo "$s2" | sort) <(stamp "${OUTS[@]}" | sort) | wc -l)
[ "$n_same" -eq 0 ] && pass "--force: every output rewritten" || fail "--force: $n_same outputs untouched"

# --dry-run writes nothing: no outputs, no report.
rm -f "$REP.json" "$REP.md" "${OUTS[2]}"
s3=$(stamp "${OUTS[@]}")
runjob --dry-run
expect_rc "--dry-run" 0
if [ ! -e "$REP.json" ] && [ ! -e "$REP.md" ] && [ "$s3" = "$(stamp "${OUTS[@]}")" ] && grep -q "dry run" "$WORK/last.out"; then
    pass "--dry-run: plans printed, no output, no report"
else
    fail "--dry-run wrote something: $(ls "$Z/rep" "$Z/out")"
fi

# -s int8-asym on the command line overrides every model's scheme: bee (int8 in its entry) is redone,
# cee (deleted above) is made, a and m (int8-asym already) are up to date.
runjob -s int8-asym
expect_rc "-s int8-asym" 0
report "-s int8-asym" a="up to date" bee=ok cee=ok m="up to date"
got=""
for f in "${OUTS[@]}"; do got="$got $(jc meta "$f" scheme)"; done
[ "$got" = " int8-asym int8-asym int8-asym int8-asym" ] && pass "-s int8-asym applied to every model" || fail "-s int8-asym: schemes$got"
mq 2 "$Z/in/b.safetensors" -o "$D/bee3.pt" -s int8-asym -x o_proj -g tensor -m 64 -q
same "-s int8-asym: bee = direct run with its other options kept" "$D/bee3.pt" "${OUTS[1]}"
left=$(find "$Z" -name '.*tmp*')
[ -z "$left" ] && pass "no partial files left in the job's folders" || fail "left: $left"
cd "$WORK" || exit 1

# ================================================================ failures and --groups

G="$WORK/grp"
mkdir -p "$G/seq" "$G/g2" "$G/g3" "$G/d"
make_model "$G/g1.safetensors" --seed 21 --layers 3
"$MQ_PYTHON" "$MQ_SCRIPTS/make_calibration.py" "$G/g1.safetensors" "$G/g1.h5" --rows 256 --skip 'q_proj' >/dev/null
make_model "$G/g2.safetensors" --seed 22 --dtype BF16
make_model "$G/nan.safetensors" --corrupt nan --seed 23
make_model "$G/g3.safetensors" --seed 24 --dtype F16 --outliers
make_model "$G/g4.safetensors" --seed 25 --hidden 128
cat >"$G/job.tmpl" <<'EOF'
{"report": "OUT/report", "defaults": {"exclude": ["v_proj"]},
 "models": [
  {"name": "g1", "input": "g1.safetensors", "output": "OUT/g1.safetensors", "calib": "g1.h5",
   "options": {"granularity": "tensor", "calib-missing": "weights-only"}},
  {"name": "bad", "input": "nan.safetensors", "output": "OUT/bad.safetensors"},
  {"name": "g2", "input": "g2.safetensors", "output": "OUT/g2.pt", "options": {"scheme": "int8-asym"}},
  {"name": "g3", "input": "g3.safetensors", "output": "OUT/g3.safetensors", "options": {"scheme": "bf16", "no-checksum": true}},
  {"name": "g4", "input": "g4.safetensors", "output": "OUT/g4.safetensors", "options": {"exclude": ["gate_proj", "o_proj"], "granularity": "tensor"}}
 ]}
EOF
GM="g1.safetensors g2.pt g3.safetensors g4.safetensors"
for o in seq g2 g3; do sed "s/OUT/$o/g" "$G/job.tmpl" >"$G/$o.json"; done

# bad_line NAME: the failed model's error is one stderr line prefixed [bad], naming the NaN.
bad_line() {
    local errs
    errs=$(grep -F '[bad]' "$WORK/last.err")
    if [ "$(printf '%s\n' "$errs" | grep -c .)" -eq 1 ] && grep -q '^mq-dist: error: \[bad\] .*NaN' <<<"$errs"; then
        pass "$1: the failing model's error line is prefixed [bad]"
    else
        fail "$1: no single [bad] error line: $(head -c 400 "$WORK/last.err")"
    fi
}

mq 3 --job "$G/seq.json"
RC=$?
expect_rc "job with a NaN model" 8
check "job with a NaN model: report" jc report "$WORK" "$G/seq/report" "$G/seq.json" g1=ok bad=failed:4 g2=ok g3=ok g4=ok
bad_line "job with a NaN model"
[ "$(ls -A "$G/seq" | tr '\n' ' ')" = "g1.safetensors g2.pt g3.safetensors g4.safetensors report-plots report.html report.json report.md " ] &&
    pass "the job went on after the failure; nothing left of the failed model" || fail "seq folder: $(ls -A "$G/seq" | tr '\n' ' ')"
# The report's pictures: one SVG per model that ran, linked from the Markdown and from the HTML page,
# whose rows carry each model's sparkline (its weakest layer marked with the worst layer's name).
"$MQ_PYTHON" - "$G/seq" <<'PY' && pass "zoo report pictures: a plot per model, linked from the Markdown and the HTML page, a sparkline per row" || fail "zoo report pictures"
import html.parser, json, os, sys
import xml.etree.ElementTree as ET
d = sys.argv[1]
rep = json.load(open(os.path.join(d, "report.json")))
md = open(os.path.join(d, "report.md")).read()
class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.links, self.svgs, self.titles, self.in_title = 0, [], 0, [], False
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.rows += tag == "tr"
        self.svgs += tag == "svg"
        if tag == "a":
            self.links.append(a["href"])
        self.in_title = tag == "title"
    def handle_data(self, data):
        if self.in_title:
            self.titles.append(data)
    def handle_endtag(self, tag):
        self.in_title = False
page = Page()
page.feed(open(os.path.join(d, "report.html")).read())
models = rep["models"]
ran = [m for m in models if m["status"] == "ok"]
assert page.rows == len(models) + 1, page.rows
assert page.svgs == len(ran) == 4, (page.svgs, len(ran))
for m in models:
    if m["status"] != "ok":
        assert "plot" not in m, m
        continue
    link = m["plot"]
    assert link == "report-plots/%s.svg" % m["name"], link
    assert link in page.links and "[plot](%s)" % link in md, link
    root = ET.parse(os.path.join(d, link)).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert any(t.startswith(m["worst_layer"] + ": %.2f dB" % m["worst_layer_sqnr_db"]) for t in page.titles), m["name"]
assert sorted(os.listdir(os.path.join(d, "report-plots"))) == sorted(m["name"] + ".svg" for m in ran)
PY
[ "$(jc meta "$G/seq/g3.safetensors" fingerprint)" = none ] && pass "no-checksum: fingerprint none" ||
    fail "no-checksum fingerprint: $(jc meta "$G/seq/g3.safetensors" fingerprint)"

for k in 2 3; do
    mq 3 --job "$G/g$k.json" --groups $k
    RC=$?
    expect_rc "--groups $k on 3 ranks" 8
    grep -q "on 3 ranks in $k groups" "$WORK/last.out" && pass "--groups $k: 'on 3 ranks in $k groups'" ||
        fail "--groups $k: no 'in $k groups' line: $(head -n 1 "$WORK/last.out")"
    bad_line "--groups $k"
    check "--groups $k: report" jc report "$WORK" "$G/g$k/report" "$G/g$k.json" g1=ok bad=failed:4 g2=ok g3=ok g4=ok
    for m in $GM; do
        same "--groups $k: $m = sequential run" "$G/seq/$m" "$G/g$k/$m"
    done
done
mq 1 "$G/g1.safetensors" -o "$G/d/g1.safetensors" -g tensor -x v_proj -c "$G/g1.h5" --calib-missing weights-only -q
same "g1 = direct run" "$G/d/g1.safetensors" "$G/seq/g1.safetensors"
mq 3 "$G/g2.safetensors" -o "$G/d/g2.pt" -s int8-asym -x v_proj -q
same "g2 = direct run" "$G/d/g2.pt" "$G/seq/g2.pt"
mq 2 "$G/g3.safetensors" -o "$G/d/g3.safetensors" -s bf16 -x v_proj --no-checksum -q
same "g3 = direct run" "$G/d/g3.safetensors" "$G/seq/g3.safetensors"
mq 2 "$G/g4.safetensors" -o "$G/d/g4.safetensors" -g tensor -x gate_proj -x o_proj -q
same "g4 = direct run" "$G/d/g4.safetensors" "$G/seq/g4.safetensors"

# ================================================================ resume

R="$WORK/res"
O="$R/o"
mkdir -p "$O" "$R/snap"
make_model "$R/in.safetensors" --size-mib 400 --hidden 1024 --seed 31
mq 2 "$R/in.safetensors" -o "$R/ref.safetensors" -q || fail "reference run: $(head -c 300 "$WORK/last.err")"
X="$O/x.safetensors"
TMP="$O/.x.safetensors.tmp"

# Signals and crashes: Open MPI's default teardown, as a user's mpirun has it.
export $MQ_OMPI_DEFAULT_TEARDOWN
# bg N ARGS...: mq-dist in the background (BG is its mpirun); output in $WORK/bg.out/.err.
bg() {
    local n=$1
    shift
    timeout -k 5 180 "$MQ_MPIEXEC" -n "$n" "$MQ_DIST" "$@" </dev/null >"$WORK/bg.out" 2>"$WORK/bg.err" &
    BG=$!
}
# wait_for TEST ARG: until [ TEST ARG ] holds (15 s at most).
wait_for() {
    local i
    for i in $(seq 1 1500); do
        [ "$1" "$2" ] && return 0
        sleep 0.01
    done
    return 1
}
# sig SIGNAL PATTERN: the signal to the mq-dist processes whose command line starts with PATTERN.
sig() { pkill "-$1" -f "^$MQ_DIST $2"; }
# stop SIGNAL ARGS...: runs on 2 ranks and signals once the partial output exists; RC, and
# STOPPED=0 when the run had finished before the signal.
stop() {
    local s=$1
    shift
    bg 2 "$@"
    wait_for -e "$TMP"
    sig "$s" "$R/in.safetensors -o $X"
    wait $BG
    RC=$?
    STOPPED=1
    [ -e "$X" ] && STOPPED=0
}
resumed() { sed -n 's/.*resuming an interrupted run: \([0-9]*\) of \([0-9]*\) work units verified.*/\1 \2/p' "$WORK/last.out"; }
nothing_left() { [ "$(ls -A "$O")" = "x.safetensors" ]; }

stop USR1 "$R/in.safetensors" -o "$X" -q
if [ $STOPPED = 0 ]; then
    echo "skip - the run finished before SIGUSR1 arrived: resume checks skipped"
else
    if [ $RC -eq 7 ] && [ -f "$TMP" ] && [ -f "$TMP.journal" ]; then
        pass "SIGUSR1: exit 7, partial output and journal kept"
    else
        fail "SIGUSR1: exit $RC; folder: $(ls -A "$O" | tr '\n' ' '); $(head -c 300 "$WORK/bg.err")"
    fi
    cp -p "$TMP" "$TMP.journal" "$R/snap/"
    mq 1 "$R/in.safetensors" -o "$X"
    RC=$?
    read -r K M <<<"$(resumed)"
    expect_rc "resume on 1 rank" 0
    [ -n "${K:-}" ] && pass "resume: $K of $M units verified" || fail "resume: no 'resuming' line: $(head -c 300 "$WORK/last.out")"
    same "resume on 1 rank = uninterrupted run" "$R/ref.safetensors" "$X"
    nothing_left && pass "resume: partial and journal gone" || fail "resume left: $(ls -A "$O" | tr '\n' ' ')"

    # A byte of a finished unit corrupted: that unit alone is redone.
    rm -f "$X"
    cp -p "$R/snap/".x* "$O/"
    if [ "${K:-0}" -ge 1 ] && off=$(jc flip "$TMP" "$R/ref.safetensors"); then
        mq 3 "$R/in.safetensors" -o "$X"
        RC=$?
        expect_rc "resume of a corrupted partial" 0
        read -r K2 _ <<<"$(resumed)"
        [ "${K2:-x}" = "$((K - 1))" ] && pass "corrupted byte at $off: $K2 of $M units verified, one redone" ||
            fail "corrupted byte at $off: '${K2:-no resuming line}' units verified, expected $((K - 1))"
        same "resume of a corrupted partial on 3 ranks = uninterrupted run" "$R/ref.safetensors" "$X"
    else
        echo "skip - no finished unit in the partial to corrupt (K=${K:-?})"
    fi
fi

# Interrupted with other options: the partial is discarded.
rm -f "$X" "$O"/.x*
stop USR1 "$R/in.safetensors" -o "$X" -q -g tensor
if [ $STOPPED = 0 ]; then
    echo "skip - the -g tensor run finished before SIGUSR1 arrived"
elif [ $RC -ne 7 ] || [ ! -f "$TMP" ]; then
    fail "SIGUSR1 (-g tensor): exit $RC, $(ls -A "$O" | tr '\n' ' ')"
else
    mq 2 "$R/in.safetensors" -o "$X"
    RC=$?
    expect_rc "rerun with other options" 0
    grep -q discarding "$WORK/last.out" && [ -z "$(resumed)" ] && pass "other options: partial discarded" ||
        fail "other options: no 'discarding' line (or resumed): $(grep -i 'resum\|discard' "$WORK/last.out")"
    same "other options: result = uninterrupted run" "$R/ref.safetensors" "$X"
    nothing_left || fail "other options: left $(ls -A "$O" | tr '\n' ' ')"
fi

# Interrupted on a changed input: the partial is discarded.
rm -f "$X" "$O"/.x*
jc patch "$R/in.safetensors" >/dev/null
stop USR1 "$R/in.safetensors" -o "$X" -q
jc patch "$R/in.safetensors" >/dev/null   # the original content again (a new mtime)
if [ $STOPPED = 0 ]; then
    echo "skip - the run on the changed input finished before SIGUSR1 arrived"
elif [ $RC -ne 7 ] || [ ! -f "$TMP" ]; then
    fail "SIGUSR1 (changed input): exit $RC, $(ls -A "$O" | tr '\n' ' ')"
else
    mq 2 "$R/in.safetensors" -o "$X"
    RC=$?
    expect_rc "rerun on the restored input" 0
    grep -q discarding "$WORK/last.out" && [ -z "$(resumed)" ] && pass "changed input: partial discarded" ||
        fail "changed input: no 'discarding' line (or resumed): $(grep -i 'resum\|discard' "$WORK/last.out")"
    same "changed input: result = uninterrupted run" "$R/ref.safetensors" "$X"
fi

# A crash (kill -9 of every rank) once a few units are journaled: the rerun resumes.
rm -f "$X" "$O"/.x*
bg 3 "$R/in.safetensors" -o "$X" -q
for _ in $(seq 1 1500); do
    [ "$(stat -c %s "$TMP.journal" 2>/dev/null || echo 0)" -gt 600 ] && break
    [ -e "$X" ] && break
    sleep 0.01
done
sig KILL "$R/in.safetensors -o $X"
wait $BG
if [ -e "$X" ]; then
    echo "skip - the run finished before kill -9"
elif [ ! -f "$TMP" ] || [ ! -f "$TMP.journal" ]; then
    fail "kill -9: partial or journal missing: $(ls -A "$O" | tr '\n' ' ')"
else
    pass "kill -9: partial output and journal left"
    mq 2 "$R/in.safetensors" -o "$X"
    RC=$?
    read -r K3 _ <<<"$(resumed)"
    expect_rc "resume after kill -9" 0
    [ "${K3:-0}" -ge 1 ] && pass "after kill -9: resumed with $K3 units verified" ||
        fail "after kill -9: '${K3:-no resuming line}' units verified"
    same "after kill -9: result = uninterrupted run" "$R/ref.safetensors" "$X"
    nothing_left && pass "after kill -9: partial and journal gone" || fail "after kill -9 left: $(ls -A "$O" | tr '\n' ' ')"
fi

# SIGTERM on a fresh run: nothing left, unless a unit was journaled by then (then both are kept,
# as after a crash; test_faults.sh checks both cases). SIGINT on a resumed one: nothing left.
rm -f "$X" "$O"/.x*
stop TERM "$R/in.safetensors" -o "$X" -q
if [ $STOPPED = 0 ]; then
    echo "skip - the run finished before SIGTERM arrived"
elif [ $RC -ne 0 ] && [ $RC -ne 7 ] && [ -z "$(ls -A "$O")" ]; then
    pass "SIGTERM: exit $RC, nothing left"
elif [ $RC -ne 0 ] && [ $RC -ne 7 ] && [ "$(stat -c %s "$TMP.journal" 2>/dev/null || echo 0)" -gt 58 ] && [ -f "$TMP" ]; then
    pass "SIGTERM: exit $RC, a unit was journaled: partial and journal kept"
else
    fail "SIGTERM: exit $RC, left: $(ls -A "$O" | tr '\n' ' ')"
fi
rm -f "$X" "$O"/.x*
if [ -f "$R/snap/.x.safetensors.tmp" ]; then
    cp -p "$R/snap/".x* "$O/"
    # once the resumed run appends to the journal (stdout may be buffered)
    jsize=$(stat -c %s "$TMP.journal")
    bg 2 "$R/in.safetensors" -o "$X"
    for _ in $(seq 1 1500); do
        [ "$(stat -c %s "$TMP.journal" 2>/dev/null || echo 0)" -gt "$jsize" ] && break
        [ -e "$X" ] && break
        sleep 0.005
    done
    sig INT "$R/in.safetensors -o $X"
    wait $BG
    RC=$?
    if [ -e "$X" ]; then
        echo "skip - the resumed run finished before SIGINT arrived"
    elif [ $RC -ne 0 ] && [ $RC -ne 7 ] && [ -z "$(ls -A "$O")" ]; then
        pass "SIGINT on a resumed run: exit $RC, partial and journal removed"
    else
        fail "SIGINT on a resumed run: exit $RC, left: $(ls -A "$O" | tr '\n' ' ')"
    fi
fi

# ================================================================ SIGUSR1 in a job

make_model "$R/s1.safetensors" --seed 41
make_model "$R/s2.safetensors" --seed 42 --dtype BF16
mkdir -p "$R/jo"
cat >"$R/jr.json" <<'EOF'
{"models": [
  {"input": "s1.safetensors", "output": "jo/s1.safetensors"},
  {"name": "big", "input": "in.safetensors", "output": "jo/big.safetensors"},
  {"input": "s2.safetensors", "output": "jo/s2.safetensors"}]}
EOF
bg 2 --job "$R/jr.json" -q
wait_for -e "$R/jo/.big.safetensors.tmp"
sig USR1 "--job $R/jr.json"
wait $BG
RC=$?
if [ -e "$R/jo/big.safetensors" ]; then
    echo "skip - the job's big model finished before SIGUSR1 arrived"
else
    [ $RC -eq 7 ] && pass "job + SIGUSR1: exit 7" || fail "job + SIGUSR1: exit $RC $(head -c 300 "$WORK/bg.err")"
    check "job + SIGUSR1: report" jc report "$WORK" "$R/jr-report" "$R/jr.json" s1=ok big=interrupted:7 s2=interrupted
    [ "$(ls -A "$R/jo" | tr '\n' ' ')" = ".big.safetensors.tmp .big.safetensors.tmp.journal s1.safetensors " ] &&
        pass "job + SIGUSR1: stopped after the model in hand, its partial kept" ||
        fail "job + SIGUSR1: folder $(ls -A "$R/jo" | tr '\n' ' ')"
    s=$(stamp "$R/jo/s1.safetensors")
    mq 2 --job "$R/jr.json"
    RC=$?
    expect_rc "job rerun" 0
    check "job rerun: report" jc report "$WORK" "$R/jr-report" "$R/jr.json" s1="up to date" big=ok s2=ok
    grep -q "resuming an interrupted run" "$WORK/last.out" && pass "job rerun resumed the interrupted model" ||
        fail "job rerun: no 'resuming' line"
    same "job rerun: big = uninterrupted run" "$R/ref.safetensors" "$R/jo/big.safetensors"
    [ "$s" = "$(stamp "$R/jo/s1.safetensors")" ] && pass "job rerun: finished model untouched" || fail "job rerun: s1 touched"
    [ -z "$(find "$R/jo" -name '.*')" ] && pass "job rerun: no partial left" || fail "job rerun left: $(ls -A "$R/jo")"
fi

# A mixed-precision model in a job (--target-bpw as a job option): the Markdown and HTML tables
# show the candidates chosen and how many layers each got, as the output's mixed_precision says,
# and the JSON report carries the counts (mixed_chosen).
MZ="$WORK/mz"
mkdir -p "$MZ"
make_model "$MZ/m.safetensors" --seed 31 --hidden 256 >/dev/null
cat >"$MZ/job.json" <<'EOF'
{"report": "report", "models": [
 {"name": "mx", "input": "m.safetensors", "output": "mx.safetensors", "options": {"target-bpw": 6}},
 {"name": "u8", "input": "m.safetensors", "output": "u8.safetensors", "options": {"scheme": "int8"}}]}
EOF
if mq 2 --job "$MZ/job.json" -q; then
    "$MQ_PYTHON" - "$MZ" <<'PY' && pass "job with a mixed model: the tables show its chosen counts, report.json has them" ||
import json, os, struct, sys
d = sys.argv[1]
f = open(os.path.join(d, "mx.safetensors"), "rb")
meta = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
chosen = json.loads(meta["mixed_precision"])["chosen"]
shown = "mixed: " + ", ".join("%s %d" % (k, v) for k, v in chosen.items() if v)
rep = {m["name"]: m for m in json.load(open(os.path.join(d, "report.json")))["models"]}
assert rep["mx"]["scheme"] == "mixed" and rep["mx"]["mixed_chosen"] == chosen, rep["mx"]
assert "mixed_chosen" not in rep["u8"] and rep["u8"]["scheme"] == "int8", rep["u8"]
md = open(os.path.join(d, "report.md")).read()
assert "| mx | ok | %s |" % shown in md and "| u8 | ok | int8 |" in md, md
assert "<td>mx</td><td>ok</td><td>%s</td>" % shown in open(os.path.join(d, "report.html")).read()
PY
        fail "job with a mixed model: the report's scheme cells or mixed_chosen"
else
    fail "job with a mixed model: exit $? ($(grep -m 1 error "$WORK/last.err" | head -c 300))"
fi

finish
