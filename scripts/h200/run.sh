#!/usr/bin/env bash
# The H200 proof, run on the GPU machine (it has python3, torch, numpy, ml_dtypes, nvidia-smi and
# compute-sanitizer, but no Rust): every kernel against the CPU backend over the full matrix,
# then compute-sanitizer memcheck over the reduced matrix (0 errors required).
#
#   scripts/h200/run.sh [full|amd-plans|memcheck|bench|profile|all]
#   (default all = full, amd-plans, memcheck, bench; profile = ncu counters for one call)
#
# Loads $PAGEDKV_LIBRARY (default target/release/libpagedkv.so, built by build.sh and carried
# over). Results go to $OUT (default /tmp/pagedkv-h200): results-*.jsonl, summary-*.txt,
# memcheck.txt, device.txt. Exit status: 0 only if every stage passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PAGEDKV_LIBRARY=${PAGEDKV_LIBRARY:-$PWD/target/release/libpagedkv.so}
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/pagedkv-h200}
mkdir -p "$OUT"
stage=${1:-all}
rc=0

{
    date -u +"date %Y-%m-%dT%H:%M:%SZ"
    echo "commit ${PKV_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
    python3 -c 'import torch, numpy, ml_dtypes; print("torch", torch.__version__, "numpy", numpy.__version__, "ml_dtypes", ml_dtypes.__version__)'
} | tee "$OUT/device.txt"

source scripts/h200/checks.sh
LIMIT_S=${PKV_STAGE_S:-1800}  # per matrix or memcheck stage

if [[ $stage == all || $stage == full ]]; then
    run_matrix "" full "" "$LIMIT_S"
    status=$?
    echo "full matrix: exit $status"
    rc=$((rc | status))
fi

if [[ $stage == all || $stage == amd-plans ]]; then
    # The plans an AMD GPU would get (64 KiB LDS: smaller tiles; other CU counts: other split
    # counts; gfx11's tile cap), run on this GPU through the planner's test hook.
    for spec in "gfx942:arch=gfx942,smem=65536,cus=304" "gfx1100:arch=gfx1100,smem=65536,cus=48"; do
        tag=amd-${spec%%:*}
        run_matrix attention "$tag" "${spec#*:}" "$LIMIT_S"
        status=$?
        echo "$tag plans: exit $status"
        rc=$((rc | status))
    done
fi

if [[ $stage == all || $stage == memcheck ]]; then
    # With this GPU's plans and with a gfx942's (64 KiB LDS: other tiles and split counts).
    for spec in "native:" "amd-gfx942:arch=gfx942,smem=65536,cus=304"; do
        tag=${spec%%:*}
        run_memcheck "" "$tag" "${spec#*:}" "$LIMIT_S"
        status=$?
        echo "memcheck $tag (reduced matrix): exit $status"
        rc=$((rc | status))
    done
fi

if [[ $stage == profile ]]; then
    # Hardware counters for one decode call and one cache write (Nsight Compute, clocks untouched).
    timeout 300 ncu --clock-control none --kernel-name regex:'paged_attention_kernel|write_kv_kernel' \
        --launch-skip 1 --launch-count 2 --section SpeedOfLight --section MemoryWorkloadAnalysis \
        --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
        python3 scripts/h200/profile_one.py > "$OUT/ncu.txt" 2>&1
    echo "ncu: exit $?"
    grep -E "paged_attention_kernel|write_kv_kernel|Memory Throughput|DRAM Throughput|Duration|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Issue Slots Busy|L1/TEX Hit|Mem Busy|Max Bandwidth|Shared Memory Configuration" "$OUT/ncu.txt" | head -60
fi

if [[ $stage == all || $stage == bench ]]; then
    timeout 240 python3 scripts/h200/bench_smoke.py 2>&1 | tee "$OUT/bench.txt"
fi
exit $rc
