#!/usr/bin/env bash
# Speed and memory benchmark. Makes synthetic models (F32 and BF16, with outliers, 2 GiB each by
# default), then for -n 1 and -n 2 prints the end-to-end input GB/s (page-cache-hot input, output
# written to the page cache; the output's fsync is timed on its own and left out of the GB/s, since
# on a virtual disk it times the disk), the peak RSS per rank and the output SHA-256, next to the
# single-core memory-copy bandwidth, the kernel's own GB/s, a peer (scripts/peer_torch.py:
# per-channel int8 in torch on the same file), the wall-clock GB/s timed around mpirun (start-up
# included, the fsync not) and the I/O floor (the input read once and the output's
# bytes written, by dd, nothing computed: no run can beat it on this machine). Two modes: "durable" is the default command
# (digests of the source, output flushed to disk before the rename); "fast" adds --no-checksum
# --no-sync.
# Dirty pages are flushed (sync) before every run, so runs do not pay for each other's writes.
# The "lowbit" part: int4 g128 and fp8 (and int4 with --clip mse) end to end next to int8, default
# options, F32 and BF16, -n 1 and -n 2.
# The "gptq" part: one 4096 x 4096 layer with 65,536 calibration rows on one rank, part by part
# (bench_gptq: the Hessian, the factor, the sweep and the output-space sums, each in GFLOP/s next to
# the machine's sgemm rate), then end to end a model of 4 such layers at -n 1 and -n 2 (4 GiB of
# calibration inputs on disk).
# Usage: scripts/bench.sh [SIZE_MIB]      (env MQ_BENCH_DIR: where the models go;
#                                          MQ_BENCH_PARTS: "weights lowbit pt calib gptq", the default, or some,
#                                          and "scale" for a model larger than memory, MQ_BENCH_SCALE_GIB;
#                                          MQ_BENCH_FOLIOS=large: rewrite each model with 8 MiB writes first;
#                                          MQ_BENCH_DTYPES: the models' dtypes, "F32 BF16" by default, or with F16)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${1:-2048}
DIR=${MQ_BENCH_DIR:-$ROOT/build-bench/data}
PY=/usr/bin/python3
export OPENBLAS_NUM_THREADS=1
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1

cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$ROOT/build-bench" -j "$(nproc)" --target mq-dist bench_kernel bench_gptq >/dev/null
BIN=$ROOT/build-bench/mq-dist
mkdir -p "$DIR"

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$ROOT/build-bench/tests/bench_kernel" 512 | tee "$DIR/kernel.txt" | sed 's/^/# /'
COPY=$(awk '$1 == "memcpy_gbps" {print $2}' "$DIR/kernel.txt")
ratio() { awk -v a="$1" -v b="$COPY" 'BEGIN { printf "%.3f", a / b }'; }
for k in int8_f32_gbps int8_bf16_gbps int8_asym_f32_gbps int4_g128_f32_gbps int4_g128_bf16_gbps fp8_f32_gbps \
    fp8_bf16_gbps; do
    v=$(awk -v k=$k '$1 == k {print $2}' "$DIR/kernel.txt")
    echo "kernel $k: $v GB/s = $(ratio "$v") x copy bandwidth"
done

# What the output's writes cost before mq-dist does anything: 1 GiB written to a new file (fresh
# page-cache pages: on a virtual machine whose host takes freed memory back, each first touch is a
# host fault) and then over the same, now cached, pages.
probe="$DIR/write-probe.bin"
rm -f "$probe"
sync
new=$(dd if=/dev/zero of="$probe" bs=1M count=1024 2>&1 | awk '/copied/ {print $(NF-1), $NF}')
again=$(dd if=/dev/zero of="$probe" bs=1M count=1024 conv=notrunc 2>&1 | awk '/copied/ {print $(NF-1), $NF}')
rm -f "$probe"
echo "page-cache writes (dd, 1 MiB writes): new pages $new, cached pages $again"
# Start-up, a fixed cost of every run that the report's times leave out (they start after MPI_Init):
# mpirun -n 1 of mq-dist --version, best of 3, with the MPI's default transports and with ob1 (shared
# memory only, enough on one node: it skips the probe of the network devices that UCX makes).
startup() {
    local best=999 t0 t1
    for rep in 1 2 3; do
        t0=$(date +%s.%N)
        mpirun -n 1 "$@" "$BIN" --version >/dev/null
        t1=$(date +%s.%N)
        best=$(awk -v a="$t0" -v b="$t1" -v c="$best" 'BEGIN { d = b - a; printf "%.3f", d < c ? d : c }')
    done
    echo "$best"
}
echo "start-up (mpirun -n 1 mq-dist --version): $(startup) s; with --mca pml ob1: $(startup --mca pml ob1) s"
# Open MPI's PMIx retries munge's socket for about 2 s at every start where the socket outlives its
# daemon (a killed munged on a Slurm machine), then goes on without it.
if [ -S /run/munge/munge.socket.2 ] && [ -z "${PMIX_MCA_psec:-}" ] && ! munge -n >/dev/null 2>&1; then
    echo "note: munge's socket is there but munged is not running: every start above waited for it;" \
        "start munged, or export PMIX_MCA_psec=native"
fi
# The page cache holds a file in folios of up to 2 MiB; the hash reads a mapped window about twice as
# fast from 2 MiB folios as from 4 KiB pages. A file written with large writes (a download, dd) gets
# large folios; one read back in after eviction may not. MQ_BENCH_FOLIOS=large rewrites each model
# with 8 MiB writes first (the same bytes), so that runs compare like with like.
folios() { awk '/FileHugePages/ {printf "%.0f MiB", $2 / 1024}' /proc/meminfo; }
large_folios() {
    [ "${MQ_BENCH_FOLIOS:-}" = large ] || return 0
    dd if="$1" of="$1.tmp" bs=8M status=none && mv "$1.tmp" "$1"
}

# GB/s of input for reading file $1 once (dd to /dev/null) and then writing $2 bytes to a new file, best of 3.
io_floor() {
    local best=0 t0 t1 g
    for rep in 1 2 3; do
        rm -f "$DIR/floor-out.bin"
        sync
        t0=$(date +%s.%N)
        dd if="$1" of=/dev/null bs=8M status=none
        dd if=/dev/zero of="$DIR/floor-out.bin" bs=1M count=$((($2 + 1048575) >> 20)) status=none
        t1=$(date +%s.%N)
        g=$(awk -v n="$(stat -c %s "$1")" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", n / (b - a) / 1e9 }')
        if awk -v a="$g" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$g; fi
    done
    rm -f "$DIR/floor-out.bin"
    echo "$best"
}

PARTS=${MQ_BENCH_PARTS:-weights lowbit pt calib gptq}
gbps_of() { "$PY" -c 'import json, sys; r = json.load(open(sys.argv[1]))
print("%.3f %.1f" % (r["input_gb_per_s_without_sync"], max(q["peak_rss_bytes"] for q in r["per_rank"]) / 2**20))' "$1"; }
DTYPES=${MQ_BENCH_DTYPES:-F32 BF16}
case " $PARTS " in *" weights "*) WEIGHT_DTYPES=$DTYPES ;; *) WEIGHT_DTYPES="" ;; esac
for dtype in $WEIGHT_DTYPES; do
    model="$DIR/bench-$dtype.safetensors"
    [ -f "$model" ] || "$PY" "$ROOT/scripts/make_model.py" "$model" --dtype "$dtype" --size-mib "$SIZE" \
        --hidden 4096 --outliers --seed 42
    cat "$model" >/dev/null # page-cache hot
    large_folios "$model"
    echo "$dtype model: $(($(stat -c %s "$model") >> 20)) MiB; page cache in 2 MiB folios (all files): $(folios)"
    # the peer: per-channel int8 in torch on the same file, best of 3
    PEER=0
    for rep in 1 2 3; do
        rm -f "$DIR/peer-out.pt"
        sync
        g=$(OMP_NUM_THREADS=1 "$PY" "$ROOT/scripts/peer_torch.py" "$model" "$DIR/peer-out.pt" | awk '$1 == "peer_gbps" {print $2}')
        if awk -v a="$g" -v b="$PEER" 'BEGIN { exit !(a > b) }'; then PEER=$g; fi
    done
    rm -f "$DIR/peer-out.pt"
    echo "$dtype peer (torch $("$PY" -c 'import torch; print(torch.__version__)'), per-channel int8, one thread): $PEER GB/s = $(ratio "$PEER") x copy"
    # The I/O floor: reading the input once and writing an int8 output's bytes (one per weight) with
    # nothing computed, best of 3, in the order a run does them. Each write goes to a new file just
    # after the last was deleted, as the runs below do: on a virtual machine that hands freed memory
    # back to its host, the write's speed depends on that (see the page-cache line above).
    esz=4
    [ "$dtype" = BF16 ] && esz=2
    FLOOR=$(io_floor "$model" $(($(stat -c %s "$model") / esz)))
    echo "$dtype I/O floor (dd: the input read once, the output's bytes written): $FLOOR GB/s of input = $(ratio "$FLOOR") x copy"
    printf '%-6s %-3s %-8s %8s %8s %8s %8s %8s %8s %12s  %-16s  %s\n' model n mode "GB/s" "x copy" "x peer" "x floor" \
        "wall" "fsync s" "peak RSS MiB" "output sha256" "time split (slowest rank)"
    for n in 1 2; do
        for mode in durable fast; do
            extra=()
            [ $mode = fast ] && extra=(--no-checksum --no-sync)
            best=0
            out="$DIR/out-$dtype-$n-$mode.safetensors"
            for rep in 1 2 3; do
                rm -f "$out"
                sync
                t0=$(date +%s.%N)
                mpirun -n $n "$BIN" "$model" -o "$out" -q --report "$DIR/report-$rep.json" "${extra[@]}"
                t1=$(date +%s.%N)
                echo "$t0 $t1" >"$DIR/wall-$rep.txt"
                # GB/s without the output's fsync, which on a virtual disk times the disk (its own column)
                gbps=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["input_gb_per_s_without_sync"])' \
                    "$DIR/report-$rep.json")
                if awk -v a="$gbps" -v b="$best" 'BEGIN { exit !(a > b) }'; then
                    best=$gbps
                    cp "$DIR/report-$rep.json" "$DIR/report-best.json"
                    cp "$DIR/wall-$rep.txt" "$DIR/wall-best.txt"
                fi
            done
            # the slowest rank's time split, and the largest peak RSS, of the best run
            # and its wall-clock rate from outside (mpirun's start-up and MPI_Init included), less the fsync
            read -r fsync rss wall split < <("$PY" -c 'import json, sys
r = json.load(open(sys.argv[1]))
t0, t1 = (float(x) for x in open(sys.argv[2]).read().split())
p = max(r["per_rank"], key=lambda p: p["total_s"])
rss = max(q["peak_rss_bytes"] for q in r["per_rank"]) / 2**20
print("%.2f" % r["sync_s"], "%.1f" % rss, "%.3f" % (r["bytes_in"] / (t1 - t0 - r["sync_s"]) / 1e9),
      "read %.2f hash %.2f quant %.2f write %.2f finish %.2f of %.2f s" % (
      p["read_s"], p["hash_s"], p["quantize_s"], p["write_s"], p["finish_s"], p["total_s"]))' \
                "$DIR/report-best.json" "$DIR/wall-best.txt")
            sum=$(sha256sum "$out" | cut -c1-16)
            printf '%-6s %-3s %-8s %8.3f %8s %8s %8s %8s %8s %12s  %s  %s\n' "$dtype" "$n" "$mode" "$best" "$(ratio "$best")" \
                "$(awk -v a="$best" -v b="$PEER" 'BEGIN { printf "%.2f", a / b }')" \
                "$(awk -v a="$best" -v b="$FLOOR" 'BEGIN { printf "%.2f", a / b }')" "$wall" "$fsync" "$rss" "$sum" "$split"
        done
    done
    for mode in durable fast; do
        if cmp -s "$DIR/out-$dtype-1-$mode.safetensors" "$DIR/out-$dtype-2-$mode.safetensors"; then
            echo "$dtype $mode: -n 1 and -n 2 outputs identical"
        else
            echo "$dtype $mode: OUTPUTS DIFFER between -n 1 and -n 2"
        fi
    done
    rm -f "$DIR"/out-"$dtype"-*.safetensors
done
# Low-bit schemes, default options (durable), best of 3, against int8 on the same model.
case " $PARTS " in
*" lowbit "*)
    printf '%-6s %-3s %-22s %8s %8s %12s  %s\n' model n scheme "GB/s" "x copy" "peak RSS MiB" "output sha256"
    for dtype in $DTYPES; do
        model="$DIR/bench-$dtype.safetensors"
        [ -f "$model" ] || "$PY" "$ROOT/scripts/make_model.py" "$model" --dtype "$dtype" --size-mib "$SIZE" \
            --hidden 4096 --outliers --seed 42
        cat "$model" >/dev/null
        for how in "int8" "int4" "int4 --clip mse" "fp8"; do
            for n in 1 2; do
                out="$DIR/lb-out-$n.safetensors"
                best=0 rss=0
                for rep in 1 2 3; do
                    rm -f "$out"
                    sync
                    # shellcheck disable=SC2086 # the scheme and its options, word-split on purpose
                    mpirun -n $n "$BIN" "$model" -s $how -o "$out" -q --report "$DIR/lb-report.json"
                    read -r g r < <(gbps_of "$DIR/lb-report.json")
                    if awk -v a="$g" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$g rss=$r; fi
                done
                printf '%-6s %-3s %-22s %8.3f %8s %12s  %s\n' "$dtype" "$n" "$how" "$best" "$(ratio "$best")" "$rss" \
                    "$(sha256sum "$out" | cut -c1-16)"
                cp "$out" "$DIR/lb-out-$n-keep.safetensors"
            done
            if cmp -s "$DIR/lb-out-1-keep.safetensors" "$DIR/lb-out-2-keep.safetensors"; then
                echo "$dtype $how: -n 1 and -n 2 outputs identical"
            else
                echo "$dtype $how: OUTPUTS DIFFER between -n 1 and -n 2"
            fi
        done
    done
    rm -f "$DIR"/lb-out-*
    ;;
esac
# PyTorch .pt: writing one (CRC-32 per unit, joined by rank 0) and reading one (a .pt copy of the F32
# model, made by keeping every tensor), in the fast mode.
case " $PARTS " in
*" pt "*)
    model="$DIR/bench-F32.safetensors"
    [ -f "$model" ] || "$PY" "$ROOT/scripts/make_model.py" "$model" --dtype F32 --size-mib "$SIZE" \
        --hidden 4096 --outliers --seed 42
    ptmodel="$DIR/bench-F32.pt"
    [ -f "$ptmodel" ] || mpirun -n 2 "$BIN" "$model" --exclude '.*' --no-checksum -o "$ptmodel" -q
    cat "$model" "$ptmodel" >/dev/null
    printf '%-26s %-3s %8s %8s %12s  %s\n' "pt (fast mode)" n "GB/s" "x copy" "peak RSS MiB" "output sha256"
    for what in "safetensors -> safetensors" "safetensors -> pt" "pt -> safetensors"; do
        for n in 1 2; do
            case $what in
            "safetensors -> safetensors") in=$model out="$DIR/st-out-$n.safetensors" ;;
            "safetensors -> pt") in=$model out="$DIR/pt-out-$n.pt" ;;
            *) in=$ptmodel out="$DIR/pt-out-$n.safetensors" ;;
            esac
            best=0 rss=0
            for rep in 1 2 3; do
                rm -f "$out"
                sync
                mpirun -n $n "$BIN" "$in" -o "$out" -q --no-checksum --no-sync --report "$DIR/pt-report.json"
                read -r g r < <(gbps_of "$DIR/pt-report.json")
                if awk -v a="$g" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$g rss=$r; fi
            done
            printf '%-26s %-3s %8.3f %8s %12s  %s\n' "$what" "$n" "$best" "$(ratio "$best")" "$rss" \
                "$(sha256sum "$out" | cut -c1-16)"
        done
    done
    for ext in pt safetensors; do
        if cmp -s "$DIR/pt-out-1.$ext" "$DIR/pt-out-2.$ext"; then echo "pt: .$ext outputs identical for -n 1 and -n 2"
        else echo "pt: .$ext OUTPUTS DIFFER between -n 1 and -n 2"; fi
    done
    rm -f "$DIR"/pt-out-* "$DIR"/st-out-*
    ;;
esac
# GPTQ: one layer part by part, then a model of 4 layers end to end at -n 1 and -n 2.
case " $PARTS " in
*" gptq "*)
    "$ROOT/build-bench/tests/bench_gptq" 4096 4096 65536 >"$DIR/gptq.txt"
    # what a second rank can add to BLAS-bound work here: sgemm on one core, then on two at once
    one=$("$ROOT/build-bench/tests/bench_gptq" sgemm | awk '{print $2}')
    "$ROOT/build-bench/tests/bench_gptq" sgemm >"$DIR/sgemm-a.txt" &
    "$ROOT/build-bench/tests/bench_gptq" sgemm >"$DIR/sgemm-b.txt"
    wait
    two=$(cat "$DIR/sgemm-a.txt" "$DIR/sgemm-b.txt" | awk '{s += $2} END {print s}')
    echo "sgemm: $one GFLOP/s on one core, $two GFLOP/s on two at once: a second rank can add at most $(awk -v a="$one" -v b="$two" 'BEGIN { printf "%.2f", b / a }')x to BLAS-bound work"
    "$PY" - "$DIR/gptq.txt" <<'PY'
import sys
v = dict(l.split() for l in open(sys.argv[1]))
f = lambda k: float(v[k])
print("gptq layer %sx%s, %s calibration rows, 1 rank (OpenBLAS sgemm %.1f GFLOP/s):" % (v["out"], v["in"],
      v["calib_rows"], f("sgemm_gflops")))
for part in ("hessian", "factor", "sweep", "outspace"):
    print("  %-9s %7.2f s  %6.1f GFLOP/s = %.2f x sgemm" % (part, f(part + "_s"), f(part + "_gflops"),
          f(part + "_gflops") / f("sgemm_gflops")))
print("  layer     %7.2f s  (the reference's measured 44 s on this machine class: %.2f x)" % (f("layer_s"),
      f("layer_s") / 44.0))
PY
    gmodel="$DIR/gptq-model.safetensors"
    gcalib="$DIR/gptq-calib.h5"
    [ -f "$gmodel" ] || "$PY" - "$gmodel" <<'PY'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(11)
names = ["model.layers.%d.mlp.up_proj.weight" % i for i in range(4)]
hdr, off = {}, 0
for nm in names:
    hdr[nm] = {"dtype": "F32", "shape": [4096, 4096], "data_offsets": [off, off + 4096 * 4096 * 4]}
    off += 4096 * 4096 * 4
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for nm in names:
        f.write((rng.standard_normal((4096, 4096), dtype=np.float32) * 0.02).tobytes())
PY
    [ -f "$gcalib" ] || "$PY" "$ROOT/scripts/make_calibration.py" "$gmodel" "$gcalib" --rows 65536 --seed 4
    cat "$gmodel" "$gcalib" >/dev/null
    printf '%-3s %9s %9s %13s %12s  %s\n' n "total s" speedup "calibrate s" "peak RSS MiB" "output sha256"
    t1=0
    for n in 1 2; do
        rm -f "$DIR/gptq-out-$n.safetensors"
        sync
        mpirun -n $n "$BIN" "$gmodel" --calib "$gcalib" -s int4 --method gptq -o "$DIR/gptq-out-$n.safetensors" -q \
            --report "$DIR/gptq-report.json"
        read -r tot cal rss < <("$PY" -c 'import json, sys
r = json.load(open(sys.argv[1]))
print("%.2f" % r["total_s"], "%.2f" % max(p["calibrate_s"] for p in r["per_rank"]),
      "%.1f" % (max(p["peak_rss_bytes"] for p in r["per_rank"]) / 2**20))' "$DIR/gptq-report.json")
        [ $n = 1 ] && t1=$tot
        printf '%-3s %9s %9s %13s %12s  %s\n' "$n" "$tot" "$(awk -v a="$t1" -v b="$tot" 'BEGIN { printf "%.2f", a / b }')" \
            "$cal" "$rss" "$(sha256sum "$DIR/gptq-out-$n.safetensors" | cut -c1-16)"
    done
    cmp -s "$DIR/gptq-out-1.safetensors" "$DIR/gptq-out-2.safetensors" && echo "gptq: -n 1 and -n 2 outputs identical" ||
        echo "gptq: OUTPUTS DIFFER between -n 1 and -n 2"
    rm -f "$DIR"/gptq-out-*
    ;;
esac
# Calibration: activations of at least 1 GiB for a model's Linear layers, at two row counts; peak
# RSS must not grow with the rows.
# Scale (only when MQ_BENCH_PARTS names "scale": it needs the disk space): an F32 model larger than
# the machine's memory (MQ_BENCH_SCALE_GIB, 34 by default), read cold, on -n 2 and -n 1, next to the
# disk's own sequential read rate of the same file (dd after eviction), with the peak RSS per rank.
case " $PARTS " in
*" scale "*)
    GIB=${MQ_BENCH_SCALE_GIB:-34}
    smodel="$DIR/scale-$GIB.safetensors"
    [ -f "$smodel" ] || "$PY" "$ROOT/scripts/make_model.py" "$smodel" --dtype F32 --size-mib $((GIB * 1024)) \
        --hidden 8192 --seed 43 >/dev/null
    evict() {
        sync
        "$PY" -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"
    }
    evict "$smodel"
    disk=$(dd if="$smodel" of=/dev/null bs=8M 2>&1 | awk '/copied/ {print $(NF-1), $NF}')
    echo "scale: $(($(stat -c %s "$smodel") >> 30)) GiB F32 model, machine memory $(awk '/MemTotal/ {printf "%.0f", $2 / 2^20}' /proc/meminfo) GiB; the disk reads it cold at $disk (dd, 8 MiB reads)"
    for n in 2 1; do
        out="$DIR/scale-out.safetensors"
        rm -f "$out"
        evict "$smodel"
        mpirun -n $n "$BIN" "$smodel" -o "$out" -q --report "$DIR/scale-report.json"
        "$PY" - "$DIR/scale-report.json" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = max(r["per_rank"], key=lambda q: q["total_s"])
rss = [q["peak_rss_bytes"] / 2**20 for q in r["per_rank"]]
print("scale -n %s: cold %.3f GB/s of input without the fsync (%.3f with it), %.1f s; peak RSS per rank %s MiB; "
      "slowest rank: read %.2f hash %.2f quant %.2f write %.2f, fsync %.2f s" % (sys.argv[2],
      r["input_gb_per_s_without_sync"], r["input_gb_per_s"], p["total_s"], " ".join("%.0f" % x for x in rss),
      p["read_s"], p["hash_s"], p["quantize_s"], p["write_s"], r["sync_s"]))
PY
        rm -f "$out"
    done
    ;;
esac
case " $PARTS " in *" calib "*) ;; *) exit 0 ;; esac
cmodel="$DIR/calib-model.safetensors"
[ -f "$cmodel" ] || "$PY" "$ROOT/scripts/make_model.py" "$cmodel" --dtype F32 --hidden 1024 --layers 2 --seed 7
printf '%-8s %-3s %8s %10s %12s %12s %12s\n' rows n "GiB read" "calib s" "read GB/s" "s per layer" "peak RSS MiB"
for rows in 8192 16384; do
    calib="$DIR/calib-$rows.h5"
    [ -f "$calib" ] || "$PY" "$ROOT/scripts/make_calibration.py" "$cmodel" "$calib" --rows "$rows"
    cat "$calib" >/dev/null
    for n in 1 2; do
        rm -f "$DIR/calib-out.safetensors"
        sync
        mpirun -n $n "$BIN" "$cmodel" --calib "$calib" --exclude 'model\.conv' -o "$DIR/calib-out.safetensors" -q \
            --report "$DIR/calib-report.json"
        sum=$(sha256sum "$DIR/calib-out.safetensors" | cut -c1-16)
        "$PY" - "$DIR/calib-report.json" "$calib" "$rows" "$n" "$sum" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
ranks = r["per_rank"]
slow = max(ranks, key=lambda p: p["calibrate_s"])
act = sum(p["calib_bytes_read"] for p in ranks)
layers = r["quantized"]
rss = max(p["peak_rss_bytes"] for p in ranks) / 2**20
read_s = sum(p["calib_read_s"] for p in ranks)
print("%-8s %-3s %8.2f %10.2f %12.3f %12.3f %12.1f  file %.2f GiB, output %s" % (sys.argv[3], sys.argv[4],
      act / 2**30, slow["calibrate_s"], act / max(read_s, 1e-9) / 1e9,
      sum(p["calibrate_s"] for p in ranks) / layers, rss, os.path.getsize(sys.argv[2]) / 2**30, sys.argv[5]))
PY
    done
done

echo "# figures: best of 3 runs (calibration: one run each); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} (OpenBLAS serial, one thread per rank, used by the calibration's output-space SQNR)"
