#!/usr/bin/env bash
# Self-test of the AMD resource proof: compiles small kernels of ours with both AMD compiler
# configurations and asserts that check_resources.py accepts the good ones and rejects the bad
# ones (static LDS over the limit, scratch, spills), and that it refuses to pass when it finds
# nothing or misses a target.
#
#   bash .ci/amd/selftest.sh          (expects setup.sh to have run; PKV_AMD_DEVLIBS overrides
#                                      the device-lib folder, default build/amd-devlibs)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ -f "$AMD_DEVLIBS/oclc_isa_version_942.bc" ] || { echo "selftest: run .ci/amd/setup.sh first ($AMD_DEVLIBS)"; exit 2; }

W="$(mktemp -d /tmp/pkv-amd-selftest.XXXXXX)"
trap 'rm -rf "$W"' EXIT
cd "$W"
fails=0
pass() { echo "  PASS: $*"; }
fail() { echo "  FAIL: $*"; fails=$((fails + 1)); }

# expect RC PATTERN -- check_resources args...: run the checker, assert exit code and output.
expect() {
  local want="$1" pat="$2"; shift 3
  local rc=0
  python3 "$AMD_CHECK" "$@" >out.txt 2>&1 || rc=$?
  if [ "$rc" = "$want" ] && grep -Eq -- "$pat" out.txt; then
    pass "check_resources $* -> rc=$rc, /$pat/"
  else
    fail "check_resources $* -> rc=$rc (want $want), pattern /$pat/"; sed 's/^/      /' out.txt
  fi
}

cat > good.hip <<'EOF'
#include <hip/hip_runtime.h>
// Block reduction: static shared memory, wave shuffles, barriers, launch bounds.
template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) good_reduce(const float* __restrict__ x, float* __restrict__ y, int n) {
  __shared__ float partial[BLOCK];
  const int i = blockIdx.x * BLOCK + threadIdx.x;
  float v = i < n ? x[i] : 0.0f;
  for (int o = warpSize / 2; o > 0; o >>= 1) v += __shfl_xor(v, o);
  partial[threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (int w = 0; w < BLOCK; w += warpSize) s += partial[w];
    y[blockIdx.x] = s;
  }
}
template __global__ void good_reduce<256>(const float*, float*, int);
extern "C" hipError_t good_launch(const float* x, float* y, int n, hipStream_t s) {
  hipLaunchKernelGGL(good_reduce<256>, dim3((n + 255) / 256), dim3(256), 0, s, x, y, n);
  return hipGetLastError();
}
EOF

cat > lds64k.hip <<'EOF'
#include <hip/hip_runtime.h>
// Exactly 64 KiB of static LDS: the largest amount allowed.
__global__ void lds_64k(float* y) {
  __shared__ float buf[16384];
  buf[(threadIdx.x * 79u) % 16384u] = y[threadIdx.x];
  __syncthreads();
  y[threadIdx.x] = buf[(threadIdx.x * 13u) % 16384u];
}
EOF

cat > lds80k.hip <<'EOF'
#include <hip/hip_runtime.h>
// 80 KiB of static LDS: more than any of our AMD targets has.
__global__ void lds_80k(float* y) {
  __shared__ float buf[20480];
  buf[(threadIdx.x * 79u) % 20480u] = y[threadIdx.x];
  __syncthreads();
  y[threadIdx.x] = buf[(threadIdx.x * 13u) % 20480u];
}
EOF

cat > scratch.hip <<'EOF'
#include <hip/hip_runtime.h>
// A dynamically indexed private array cannot live in registers: it goes to scratch.
__global__ void uses_scratch(const int* idx, float* y) {
  float a[512];
  for (int i = 0; i < 512; ++i) a[i] = y[i * blockDim.x + threadIdx.x];
  float s = 0.0f;
  for (int i = 0; i < 64; ++i) s += a[idx[i] & 511];
  y[threadIdx.x] = s;
}
EOF

cat > spill.hip <<'EOF'
#include <hip/hip_runtime.h>
// 48 live values squeezed into 16 VGPRs: register spills.
__global__ void __attribute__((amdgpu_num_vgpr(16))) spills(const float* x, float* y) {
  float v[48];
#pragma unroll
  for (int i = 0; i < 48; ++i) v[i] = x[i * 256 + threadIdx.x];
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 48; ++i) s += v[i] * v[47 - i] + v[(i * 7) % 48];
  y[threadIdx.x] = s;
}
EOF

echo "[selftest] compiling (hipcc: $(amd_cfg_targets hipcc); $AMD_CLANG: $(amd_cfg_targets clang19))"
# The two configurations compile side by side (2 cores); the 80 KiB kernel is expected to fail.
for f in good lds64k scratch spill lds80k; do
  for cfg in hipcc clang19; do
    ( amd_compile "$cfg" "$f.hip" "$f.$cfg.o" -Wno-unused-result 2>"$f.$cfg.log"; echo $? >"$f.$cfg.rc" ) &
  done
  wait
done
for f in good lds64k scratch spill; do
  for cfg in hipcc clang19; do
    [ "$(cat "$f.$cfg.rc")" = 0 ] || { fail "compile $f ($cfg)"; cat "$f.$cfg.log"; }
  done
done

echo "[selftest] 80 KiB static LDS must not even compile:"
for cfg in hipcc clang19; do
  if [ "$(cat "lds80k.$cfg.rc")" = 0 ]; then
    fail "80 KiB LDS kernel compiled with $cfg"
  elif grep -q "local memory (81920) exceeds limit (65536)" lds80k.$cfg.log; then
    pass "$cfg rejects 80 KiB static LDS: $(grep -m1 -o 'local memory (81920) exceeds limit (65536)' lds80k.$cfg.log)"
  else
    fail "80 KiB LDS kernel failed to compile with $cfg for another reason"; cat lds80k.$cfg.log
  fi
done

# Since the compilers stop at 64 KiB, prove the checker's own LDS test on a code object whose
# metadata says 80 KiB: the 64 KiB kernel's `.group_segment_fixed_size` (msgpack uint32 65536)
# is rewritten in place to 81920 (same encoding length, so the bundle stays valid).
python3 - <<'EOF'
key = b"\xb9.group_segment_fixed_size"
for cfg in ("hipcc", "clang19"):
    data = open(f"lds64k.{cfg}.o", "rb").read()
    old, new = key + b"\xce\x00\x01\x00\x00", key + b"\xce\x00\x01\x40\x00"
    n = data.count(old)
    assert n >= 1, f"{cfg}: LDS metadata pattern not found"
    open(f"lds80k-patched.{cfg}.o", "wb").write(data.replace(old, new))
    print(f"  patched {n} code object(s) in lds64k.{cfg}.o -> lds80k-patched.{cfg}.o")
EOF

echo "[selftest] checker verdicts:"
ALL="gfx90a,gfx942,gfx1100"
expect 0 "check_resources: OK"              -- --expect-targets "$ALL" good.hipcc.o good.clang19.o
expect 0 "lds_64k +gfx1100 +65536 .* ok"    -- --expect-targets "$ALL" lds64k.hipcc.o lds64k.clang19.o
expect 1 "static LDS 81920 > 65536"         -- lds80k-patched.hipcc.o lds80k-patched.clang19.o
expect 1 "gfx90a +lds_64k .*static LDS 65536 > 32768" -- --max-lds 32768 lds64k.hipcc.o lds64k.clang19.o
expect 1 "gfx942 +uses_scratch .*scratch [1-9]"  -- scratch.hipcc.o scratch.clang19.o
expect 1 "gfx1100 +spills .*VGPR spills"    -- spill.hipcc.o spill.clang19.o
expect 1 "gfx90a +spills .*scratch [1-9]"   -- spill.hipcc.o
expect 1 "FAIL: 1 kernel"                   -- --allow-target-mismatch good.hipcc.o scratch.hipcc.o
expect 2 "expected target gfx90a has no kernels" -- --expect-targets "$ALL" good.clang19.o
cc -x c -c -o plain.o - <<<'int f(void){return 1;}'
expect 2 "no AMDGPU kernels found"          -- plain.o
# A linked shared library holds one bundle per HIP object; all must be found.
cc -shared -o libmix.so good.clang19.o scratch.clang19.o
expect 1 "gfx1100 +uses_scratch .*scratch"  -- --expect-targets gfx942,gfx1100 libmix.so
ar rcs libmix.a good.hipcc.o lds64k.hipcc.o
expect 0 "gfx90a: 2 kernels"                -- libmix.a

if [ "$fails" != 0 ]; then echo "[selftest] $fails assertion(s) FAILED"; exit 1; fi
echo "[selftest] all assertions passed"
