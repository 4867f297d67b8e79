#!/usr/bin/env bash
# One device call for cache-write work (issue 4): the exhaustive fp8 hardware-encoder proof,
# the write benchmark, the write part of the correctness matrix and a memcheck of the reduced
# write matrix, each under its own time limit so that the call fits one lease.
#
#   scripts/h200/write_pass.sh [stage ...]   stages: proof bench matrix memcheck base profile
#   (default: proof bench matrix memcheck base)
#
# Loads $PAGEDKV_LIBRARY (default .devbuild/writer/libpagedkv.so) and runs the proof binary
# .devbuild/writer/fp8_cvt_proof (both built on the build machine and carried over:
#   nvcc -x cu -O3 -std=c++17 -arch=sm_90 -I kernels scripts/h200/fp8_cvt_proof.cu -o ...).
# Stage `base` benchmarks the write cases whose names contain $PKV_BASE_ONLY (default "write":
# all of them, for a before/after of every case from one call) with $PKV_BASE_LIBRARY (default
# .devbuild/writer/base/libpagedkv.so: the writer before this change) when that file exists.
# Stage `profile`: Nsight Compute on scripts/h200/profile_write.py's 65536-token writes: the
# details page of all four ($OUT/wprof.txt) and the per-SASS-instruction source counters of the
# fp8 writer ($OUT/wsass-fp8.csv).
# Results under $OUT. Limits in seconds: PKV_PROOF_S (60), PKV_BENCH_S (100), PKV_MATRIX_S (70),
# PKV_MEMCHECK_S (50), PKV_BASE_S (100), PKV_PROFILE_S (90).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PAGEDKV_LIBRARY=${PAGEDKV_LIBRARY:-$PWD/.devbuild/writer/libpagedkv.so}
export PYTHONUNBUFFERED=1 PYTHONPATH=python
OUT=${OUT:-/tmp/pagedkv-h200}
mkdir -p "$OUT"
stages=${*:-proof bench matrix memcheck base}
rc=0
source scripts/h200/checks.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader

for stage in $stages; do
    t0=$(date +%s)
    case $stage in
    proof)
        timeout "${PKV_PROOF_S:-60}" .devbuild/writer/fp8_cvt_proof > "$OUT/proof.txt" 2>&1
        s=$?
        cat "$OUT/proof.txt" ;;
    bench)
        timeout "${PKV_BENCH_S:-100}" python3 scripts/bench.py --only write --json "$OUT/write.json" \
            > "$OUT/bench.txt" 2>&1
        s=$?
        grep -E "^ceiling|^\| write|ERROR" "$OUT/bench.txt" || tail -5 "$OUT/bench.txt" ;;
    matrix) run_matrix write write "" "${PKV_MATRIX_S:-70}"; s=$? ;;
    memcheck) run_memcheck write write "" "${PKV_MEMCHECK_S:-50}"; s=$? ;;
    base)
        base=${PKV_BASE_LIBRARY:-$PWD/.devbuild/writer/base/libpagedkv.so}
        if [[ -f $base ]]; then
            PAGEDKV_LIBRARY=$base timeout "${PKV_BASE_S:-100}" python3 scripts/bench.py --only "${PKV_BASE_ONLY:-write}" \
                --json "$OUT/write-base.json" > "$OUT/bench-base.txt" 2>&1
            s=$?
            grep -E "^ceiling|^\| write|ERROR" "$OUT/bench-base.txt" || tail -5 "$OUT/bench-base.txt"
        else
            echo "no $base: skipped"; s=0
        fi ;;
    profile)
        s=0
        # Launches: four warm-ups, then native, fp8, strided, nhd (one kernel each at head 128).
        timeout "${PKV_PROFILE_S:-90}" ncu --clock-control none --kernel-name regex:write_kv_kernel \
            --launch-skip 4 --launch-count 4 --section SpeedOfLight --section Occupancy \
            --section LaunchStats --section SchedulerStats --section WarpStateStats \
            --section MemoryWorkloadAnalysis python3 scripts/h200/profile_write.py > "$OUT/wprof.txt" 2>&1 || s=1
        timeout "${PKV_PROFILE_S:-90}" ncu --clock-control none --kernel-name regex:write_kv_kernel \
            --launch-skip 5 --launch-count 1 --section SourceCounters --section InstructionStats \
            -f -o "$OUT/wsass-fp8" python3 scripts/h200/profile_write.py > /dev/null 2>&1 || s=1
        ncu -i "$OUT/wsass-fp8.ncu-rep" --page source --csv --print-source sass > "$OUT/wsass-fp8.csv" 2>&1 || s=1
        rm -f "$OUT/wsass-fp8.ncu-rep"
        grep -E "write_kv_kernel|Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible|Warp Cycles Per Issued" \
            "$OUT/wprof.txt" | head -60 ;;
    *) echo "unknown stage $stage"; s=2 ;;
    esac
    echo "== $stage: exit $s in $(( $(date +%s) - t0 ))s"
    rc=$((rc | s))
done
exit $rc
