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

# The attention matrix with the plans of device limits $2 (PKV_TEST_DEVICE_LIMITS, empty: this
# GPU's own), tagged attention$1: log matrix$1.log, summary summary-attention$1.txt.
matrix() {
    PKV_TEST_DEVICE_LIMITS=$2 timeout "${PKV_MATRIX_S:-300}" python3 scripts/h200/check.py --suite full \
        --only attention --tag "attention$1" --out "$OUT" > "$OUT/matrix$1.log" 2>&1
    local s=$?
    grep FAIL "$OUT/matrix$1.log" | head -20
    cat "$OUT/summary-attention$1.txt" 2>/dev/null || tail -3 "$OUT/matrix$1.log"
    return $s
}

# compute-sanitizer memcheck of the reduced attention matrix, limits and suffix as above.
memcheck() {
    PKV_TEST_DEVICE_LIMITS=$2 PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "${PKV_MEMCHECK_S:-150}" \
        compute-sanitizer --tool memcheck --error-exitcode 86 --log-file "$OUT/memcheck$1.txt" python3 \
        scripts/h200/check.py --suite reduced --only attention --tag "reduced-attention$1" --out "$OUT" \
        > "$OUT/memcheck$1-run.log" 2>&1
    local s=$?
    tail -3 "$OUT/memcheck$1-run.log"
    grep -E "ERROR SUMMARY|Invalid" "$OUT/memcheck$1.txt" | sort | uniq -c | head
    return $s
}

for stage in $stages; do
    t0=$(date +%s)
    case $stage in
    bench)
        timeout "${PKV_BENCH_S:-240}" python3 scripts/bench.py --quick --only "${PKV_BENCH_ONLY:-B}" \
            --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1
        s=$?
        grep -E "^\[|^\| " "$OUT/bench.txt" | grep -v "^\[" ;;
    matrix) matrix "" ""; s=$? ;;
    # The plans a gfx942 gets (FMA decode variant, 64 KiB LDS tiles) on this GPU.
    matrix-amd) matrix -gfx942 arch=gfx942,smem=65536,cus=304; s=$? ;;
    # Plans for a 2-SM device: decode grids of several sequences exceed one wave of resident
    # work-groups, so they take the longest-first order (decode_item) and its ranking.
    matrix-2cu) matrix -2cu cus=2; s=$? ;;
    memcheck) memcheck "" ""; s=$? ;;
    memcheck-2cu) memcheck -2cu cus=2; s=$? ;;
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
