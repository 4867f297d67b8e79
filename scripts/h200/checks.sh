# Correctness stages shared by the H200 scripts (sourced by run.sh, attention_pass.sh and
# write_pass.sh; needs $OUT). Both run scripts/h200/check.py against the CPU backend:
#
#   run_matrix ONLY TAG LIMITS SECONDS    the full matrix
#   run_memcheck ONLY TAG LIMITS SECONDS  the reduced matrix under compute-sanitizer memcheck
#                                         (PKV_SANITIZER_TOOL: racecheck, synccheck, .. instead)
#
# ONLY: check.py's --only (write, attention; empty: every part). TAG names the outputs:
# $OUT/summary-TAG.txt and matrix-TAG.log, or summary-reduced-TAG.txt, memcheck-TAG.txt and
# memcheck-run-TAG.log. LIMITS: the device limits the planner plans for
# (PKV_TEST_DEVICE_LIMITS, e.g. arch=gfx942,smem=65536,cus=304; empty: this GPU's own).
# SECONDS: a time limit, so that a stage cannot eat a lease. Each prints the failures and the
# summary and returns check.py's status (memcheck: 86 when the sanitizer found errors).

run_matrix() {
    local only=$1 tag=$2 limits=$3 seconds=$4
    PKV_TEST_DEVICE_LIMITS=$limits timeout "$seconds" python3 scripts/h200/check.py --suite full \
        ${only:+--only "$only"} --tag "$tag" --out "$OUT" > "$OUT/matrix-$tag.log" 2>&1
    local s=$?
    grep FAIL "$OUT/matrix-$tag.log" | head -20
    cat "$OUT/summary-$tag.txt" 2>/dev/null || tail -30 "$OUT/matrix-$tag.log"
    return $s
}

# Without torch's caching allocator every tensor is its own allocation, so an access past a
# tensor's end is outside any allocation and memcheck sees it.
run_memcheck() {
    local only=$1 tag=$2 limits=$3 seconds=$4
    PKV_TEST_DEVICE_LIMITS=$limits PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$seconds" \
        compute-sanitizer --tool "${PKV_SANITIZER_TOOL:-memcheck}" --error-exitcode 86 --log-file "$OUT/memcheck-$tag.txt" \
        python3 scripts/h200/check.py --suite reduced ${only:+--only "$only"} --tag "reduced-$tag" \
        --out "$OUT" > "$OUT/memcheck-run-$tag.log" 2>&1
    local s=$?
    tail -4 "$OUT/memcheck-run-$tag.log"
    grep -E "ERROR SUMMARY|Invalid|Program hit" "$OUT/memcheck-$tag.txt" | sort | uniq -c | head -20
    return $s
}
