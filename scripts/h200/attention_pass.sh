#!/usr/bin/env bash
# One device call for attention work: the decode benchmark, the attention part of the
# correctness matrix, a memcheck of the reduced attention matrix and Nsight Compute counters
# of the decode kernel, each under its own time limit so that one call fits a lease.
#
#   scripts/h200/attention_pass.sh [stage ...]   stages: bench matrix matrix-amd matrix-2cu memcheck
#                                                        memcheck-2cu profile sass pipes ceiling ab
#   (default: bench matrix memcheck profile)
#
# Loads $PAGEDKV_LIBRARY (default .devbuild/libpagedkv.so, carried over). Results under $OUT.
# Limits in seconds: PKV_BENCH_S (240), PKV_MATRIX_S (300), PKV_MEMCHECK_S (150), PKV_PROFILE_S (90).
# PKV_BENCH_ONLY filters bench cases (default "B": every attention case, no cache writes).
# Stage ab: same-call A/B of the libraries named in PKV_AB_LIBS (folders under .devbuild holding
# libpagedkv.so or libpagedkv.so.xz, carried compressed to stay under the carry limit), their
# quick benches alternating PKV_AB_ROUNDS (2) times; one % column per library and round.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PAGEDKV_LIBRARY=${PAGEDKV_LIBRARY:-$PWD/.devbuild/libpagedkv.so}
export PYTHONUNBUFFERED=1 PYTHONPATH=python
OUT=${OUT:-/tmp/pagedkv-h200}
mkdir -p "$OUT"
stages=${*:-bench matrix memcheck profile}
rc=0
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader

source scripts/h200/checks.sh

for stage in $stages; do
    t0=$(date +%s)
    case $stage in
    bench)
        timeout "${PKV_BENCH_S:-240}" python3 scripts/bench.py --quick --only "${PKV_BENCH_ONLY:-B}" \
            --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1
        s=$?
        grep -E "^\[|^\| " "$OUT/bench.txt" | grep -v "^\[" ;;
    matrix) run_matrix attention attention "" "${PKV_MATRIX_S:-300}"; s=$? ;;
    # The plans a gfx942 gets (FMA decode variant, 64 KiB LDS tiles) on this GPU.
    matrix-amd) run_matrix attention attention-gfx942 arch=gfx942,smem=65536,cus=304 "${PKV_MATRIX_S:-300}"; s=$? ;;
    # Plans for a 2-SM device: decode grids of several sequences exceed one wave of resident
    # work-groups, so they take the longest-first order (decode_item) and its ranking.
    matrix-2cu) run_matrix attention attention-2cu cus=2 "${PKV_MATRIX_S:-300}"; s=$? ;;
    memcheck) run_memcheck attention attention "" "${PKV_MEMCHECK_S:-150}"; s=$? ;;
    memcheck-2cu) run_memcheck attention attention-2cu cus=2 "${PKV_MEMCHECK_S:-150}"; s=$? ;;
    profile)
        timeout "${PKV_PROFILE_S:-90}" ncu --clock-control none --kernel-name regex:'paged_decode' \
            --launch-skip 1 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis \
            --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
            python3 scripts/h200/profile_one.py > "$OUT/ncu.txt" 2>&1
        s=$?
        grep -E "Memory Throughput|DRAM Throughput|Duration|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Issue Slots Busy|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Eligible|Theoretical Occ" "$OUT/ncu.txt" | head -40 ;;
    # Per-instruction execution counts and stall reasons of the decode kernel, bf16 and fp8
    # caches (B64 L4k bs16; PKV_SASS_FP8="0 1" picks them): $OUT/sass-{bf16,fp8}$PKV_SASS_TAG.csv
    # (ncu's source page), stalls and counts in $OUT/sass-*.txt.
    sass)
        s=0
        for f8 in ${PKV_SASS_FP8:-0 1}; do
            tag=$([[ $f8 == 1 ]] && echo fp8 || echo bf16)${PKV_SASS_TAG:-}
            PKV_PROFILE_FP8=$f8 timeout "${PKV_PROFILE_S:-90}" ncu --clock-control none --kernel-name regex:'paged_decode' \
                --launch-skip 1 --launch-count 1 --section SourceCounters --section WarpStateStats \
                --section InstructionStats --section ComputeWorkloadAnalysis -f -o "$OUT/sass-$tag" \
                python3 scripts/h200/profile_one.py > "$OUT/sass-$tag.log" 2>&1 || s=1
            ncu -i "$OUT/sass-$tag.ncu-rep" --page source --csv --print-source sass > "$OUT/sass-$tag.csv" 2>&1 || s=1
            ncu -i "$OUT/sass-$tag.ncu-rep" --page details > "$OUT/sass-$tag.txt" 2>&1 || s=1
            rm -f "$OUT/sass-$tag.ncu-rep"
            grep -E "Executed Instructions|Issued Instructions|Duration|Pipe|Stall" "$OUT/sass-$tag.txt" | head -20
        done ;;
    # Pipe utilisation, shared-memory wavefronts and every stall reason of the decode kernel, fp8
    # and bf16 caches (B64 L4k bs16): what binds a kernel that is neither at the DRAM limit nor
    # issue-bound. $OUT/pipes-{fp8,bf16}.txt
    pipes)
        s=0
        m=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sectors.sum,lts__t_requests.sum
        m=$m,smsp__inst_executed.sum,smsp__average_warp_latency_per_inst_issued.ratio,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum
        m=$m,l1tex__data_pipe_lsu_wavefronts.avg.pct_of_peak_sustained_elapsed,l1tex__lsu_writeback_active.avg.pct_of_peak_sustained_elapsed
        for pipe in alu fma fmaheavy lsu xu uniform cbu adu; do m=$m,sm__inst_executed_pipe_$pipe.avg.pct_of_peak_sustained_active; done
        m=$m,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
        for r in mio_throttle lg_throttle short_scoreboard long_scoreboard wait math_pipe_throttle no_instruction \
            branch_resolving barrier membar dispatch_stall drain imc_miss not_selected selected sleeping tex_throttle; do
            m=$m,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio
        done
        for f8 in 1 0; do
            tag=$([[ $f8 == 1 ]] && echo fp8 || echo bf16)
            PKV_PROFILE_FP8=$f8 timeout "${PKV_PROFILE_S:-90}" ncu --clock-control none --kernel-name regex:'paged_decode' \
                --launch-skip 1 --launch-count 1 --metrics "$m" python3 scripts/h200/profile_one.py > "$OUT/pipes-$tag.txt" 2>&1 || s=1
            echo "== $tag"; grep -E "^ +(sm|l1|smsp|dram|lts|gpu)__" "$OUT/pipes-$tag.txt"
        done ;;
    # Read-only kernels with the decode cases' access patterns against the copy (paged_read.cu).
    ceiling)
        timeout "${PKV_BENCH_S:-240}" python3 scripts/h200/paged_read_ceiling.py --out "$OUT" > "$OUT/ceiling.txt" 2>&1
        s=$?
        cat "$OUT/ceiling.txt" ;;
    ab)
        s=0
        for lib in ${PKV_AB_LIBS:?PKV_AB_LIBS names the libraries}; do
            src=.devbuild/$lib/libpagedkv.so
            mkdir -p "$OUT/lib-$lib"
            if [[ -f $src.xz ]]; then python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())" \
                "$src.xz" > "$OUT/lib-$lib/libpagedkv.so"; else cp "$src" "$OUT/lib-$lib/"; fi
        done
        for r in $(seq "${PKV_AB_ROUNDS:-2}"); do
            for lib in $PKV_AB_LIBS; do
                PAGEDKV_LIBRARY=$OUT/lib-$lib/libpagedkv.so timeout "${PKV_BENCH_S:-240}" python3 scripts/bench.py --quick \
                    --only "${PKV_BENCH_ONLY:-B}" --json "$OUT/ab-$lib-$r.json" > "$OUT/ab-$lib-$r.txt" 2>&1 || s=1
            done
        done
        rm -rf "$OUT"/lib-*
        python3 - "$OUT" $PKV_AB_LIBS <<'PY'
import json, sys, glob, os
out, libs = sys.argv[1], sys.argv[2:]
cols, table = [], {}
for lib in libs:
    for f in sorted(glob.glob(os.path.join(out, f"ab-{lib}-*.json"))):
        col = os.path.basename(f)[3:-5]
        cols.append(col)
        for r in json.load(open(f))["results"]:
            launch = r.get("extra", {}).get("pct_of_copy_graph_launch", 0.0)
            table.setdefault(r["name"], {})[col] = (r["pct_of_copy"], r["check"][:2], launch)
for title, k in (("% of copy (the call's GPU time)", 0), ("% of copy with the graph's launch", 2)):
    print(f"{title}\n| case | " + " | ".join(cols) + " |")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join("%.1f%s" % (row[c][k], "" if row[c][1] == "ok" else "!") if c in row else "-"
                                          for c in cols) + " |")
PY
        ;;
    *) echo "unknown stage $stage"; s=2 ;;
    esac
    echo "== $stage: exit $s in $(( $(date +%s) - t0 ))s"
    rc=$((rc | s))
done
exit $rc
