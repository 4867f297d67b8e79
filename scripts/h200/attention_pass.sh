#!/usr/bin/env bash
# One device call for attention work: the decode benchmark, the attention part of the
# correctness matrix, a memcheck of the reduced attention matrix and Nsight Compute counters
# of the decode kernel, each under its own time limit so that one call fits a lease.
#
#   scripts/h200/attention_pass.sh [stage ...]   stages: bench matrix matrix-amd matrix-2cu memcheck
#                                                        memcheck-2cu profile
#   (default: bench matrix memcheck profile)
#
# Loads $PAGEDKV_LIBRARY (default .devbuild/libpagedkv.so, carried over). Results under $OUT.
# Limits in seconds: PKV_BENCH_S (240), PKV_MATRIX_S (300), PKV_MEMCHECK_S (150), PKV_PROFILE_S (90).
# PKV_BENCH_ONLY filters bench cases (default "B": every attention case, no cache writes).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PAGEDKV_LIBRARY=${PAGEDKV_LIBRARY:-$PWD/.devbuild/libpagedkv.so}
export PYTHONUNBUFFERED=1 PYTHONPATH=python
OUT=${OUT:-/tmp/pagedkv-h200}
mkdir -p "$OUT"
stages=${*:-bench matrix memcheck profile}
rc=0
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader

for stage in $stages; do
    t0=$(date +%s)
    case $stage in
    bench)
        timeout "${PKV_BENCH_S:-240}" python3 scripts/bench.py --quick --only "${PKV_BENCH_ONLY:-B}" \
            --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1
        s=$?
        grep -E "^\[|^\| " "$OUT/bench.txt" | grep -v "^\[" ;;
    matrix)
        timeout "${PKV_MATRIX_S:-300}" python3 scripts/h200/check.py --suite full --only attention --tag attention \
            --out "$OUT" > "$OUT/matrix.log" 2>&1
        s=$?
        grep FAIL "$OUT/matrix.log" | head -20
        cat "$OUT/summary-attention.txt" 2>/dev/null || tail -3 "$OUT/matrix.log" ;;
    matrix-amd)
        # The plans a gfx942 gets (FMA decode variant, 64 KiB LDS tiles) on this GPU.
        PKV_TEST_DEVICE_LIMITS=arch=gfx942,smem=65536,cus=304 timeout "${PKV_MATRIX_S:-300}" python3 \
            scripts/h200/check.py --suite full --only attention --tag attention-gfx942 --out "$OUT" \
            > "$OUT/matrix-gfx942.log" 2>&1
        s=$?
        grep FAIL "$OUT/matrix-gfx942.log" | head -20
        cat "$OUT/summary-attention-gfx942.txt" 2>/dev/null || tail -3 "$OUT/matrix-gfx942.log" ;;
    matrix-2cu)
        # Plans for a 2-SM device: decode grids of several sequences exceed one wave of resident
        # work-groups, so they take the longest-first order (decode_item) and its ranking.
        PKV_TEST_DEVICE_LIMITS=cus=2 timeout "${PKV_MATRIX_S:-300}" python3 scripts/h200/check.py --suite full \
            --only attention --tag attention-2cu --out "$OUT" > "$OUT/matrix-2cu.log" 2>&1
        s=$?
        grep FAIL "$OUT/matrix-2cu.log" | head -20
        cat "$OUT/summary-attention-2cu.txt" 2>/dev/null || tail -3 "$OUT/matrix-2cu.log" ;;
    memcheck-2cu)
        PKV_TEST_DEVICE_LIMITS=cus=2 PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "${PKV_MEMCHECK_S:-150}" \
            compute-sanitizer --tool memcheck --error-exitcode 86 --log-file "$OUT/memcheck-2cu.txt" python3 \
            scripts/h200/check.py --suite reduced --only attention --tag reduced-attention-2cu --out "$OUT" \
            > "$OUT/memcheck-2cu-run.log" 2>&1
        s=$?
        tail -3 "$OUT/memcheck-2cu-run.log"
        grep -E "ERROR SUMMARY|Invalid" "$OUT/memcheck-2cu.txt" | sort | uniq -c | head ;;
    memcheck)
        PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "${PKV_MEMCHECK_S:-150}" compute-sanitizer --tool memcheck \
            --error-exitcode 86 --log-file "$OUT/memcheck.txt" python3 scripts/h200/check.py --suite reduced \
            --only attention --tag reduced-attention --out "$OUT" > "$OUT/memcheck-run.log" 2>&1
        s=$?
        tail -3 "$OUT/memcheck-run.log"
        grep -E "ERROR SUMMARY|Invalid" "$OUT/memcheck.txt" | sort | uniq -c | head ;;
    profile)
        timeout "${PKV_PROFILE_S:-90}" ncu --clock-control none --kernel-name regex:'paged_decode' \
            --launch-skip 1 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis \
            --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
            python3 scripts/h200/profile_one.py > "$OUT/ncu.txt" 2>&1
        s=$?
        grep -E "Memory Throughput|DRAM Throughput|Duration|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Issue Slots Busy|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Eligible|Theoretical Occ" "$OUT/ncu.txt" | head -40 ;;
    *) echo "unknown stage $stage"; s=2 ;;
    esac
    echo "== $stage: exit $s in $(( $(date +%s) - t0 ))s"
    rc=$((rc | s))
done
exit $rc
