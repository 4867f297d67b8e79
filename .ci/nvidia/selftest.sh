#!/usr/bin/env bash
# Self-test of the ptxas spill check: a clean kernel passes, a kernel forced to spill fails,
# and a log without any ptxas report is never a pass. Needs NVCC (set by .ci/nvidia/build.sh,
# or nvcc on PATH).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NVCC="${NVCC:-nvcc}"
W="$(mktemp -d /tmp/pkv-nv-selftest.XXXXXX)"
trap 'rm -rf "$W"' EXIT
cd "$W"
fails=0
expect() { # RC PATTERN LOG...
  local want="$1" pat="$2" rc=0; shift 2
  python3 "$HERE/ptxas_report.py" "$@" >out.txt 2>&1 || rc=$?
  if [ "$rc" = "$want" ] && grep -Eq -- "$pat" out.txt; then echo "  PASS: ptxas_report $* -> rc=$rc, /$pat/"
  else echo "  FAIL: ptxas_report $* -> rc=$rc (want $want), /$pat/"; sed 's/^/      /' out.txt; fails=$((fails + 1)); fi
}
cat > clean.cu <<'CU'
__global__ void __launch_bounds__(256) clean_reduce(const float* x, float* y) {
  __shared__ float s[256];
  s[threadIdx.x] = x[blockIdx.x * 256 + threadIdx.x];
  __syncthreads();
  float v = s[threadIdx.x] + s[255 - threadIdx.x];
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  if (threadIdx.x == 0) y[blockIdx.x] = v;
}
CU
cat > spill.cu <<'CU'
// 64 live values under a 24-register cap: ptxas must spill.
__global__ void spills(const float* x, float* y) {
  float v[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) v[i] = x[i * 1024 + threadIdx.x];
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 64; ++i) s += v[i] * v[63 - i] * v[(i * 7) & 63];
  y[threadIdx.x] = s;
}
CU
"$NVCC" -arch=sm_90 -O3 -Xptxas -v -c clean.cu -o clean.o 2>clean.log
"$NVCC" -arch=sm_90 -O3 -Xptxas -v -maxrregcount=24 -c spill.cu -o spill.o 2>spill.log
sed 's/^/[pagedkv 0.1.0] /' clean.log >clean-cargo.log
: >empty.log
expect 0 "clean_reduce +sm_90 +kernel .* ok$" clean.log
expect 0 "ptxas_report: OK" clean-cargo.log
expect 1 "spills +sm_90 .*FAIL: spills [1-9]" clean.log spill.log
expect 2 "no ptxas report found" empty.log
[ "$fails" = 0 ] || { echo "[nvidia selftest] $fails assertion(s) FAILED"; exit 1; }
echo "[nvidia selftest] all assertions passed"
