# Sourced by .ci/amd/run.sh and .ci/amd/selftest.sh: the two AMD compiler configurations.
#
#   gfx90a          : Debian's hipcc (ROCm 5.2.3, drives clang-15)
#                     hipcc --offload-arch=gfx90a <flags> -c x.hip -o x.o
#   gfx942, gfx1100 : Debian's clang-19 driving HIP against Debian's ROCm 5.2 headers and the
#                     device-lib folder made by setup.sh (which adds the gfx942/gfx1100 ISA libs)
#                     clang-19 --offload-arch=gfx942 --offload-arch=gfx1100 --rocm-path=/usr \
#                              --rocm-device-lib-path=$AMD_DEVLIBS <flags> -c x.hip -o x.o
#
# clang picks HIP mode from the .hip extension; it finds the HIP headers (/usr/include/hip) and
# version (5.2) through --rocm-path=/usr, defines __HIP_PLATFORM_AMD__ itself and builds
# without -fgpu-rdc by default. No -nogpuinc/-nogpulib: the real device libraries are linked.

AMD_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
AMD_DEVLIBS="${PKV_AMD_DEVLIBS:-$AMD_REPO_ROOT/build/amd-devlibs}"
AMD_CLANG="${PKV_AMD_CLANG:-clang-19}"
AMD_CHECK="$AMD_REPO_ROOT/.ci/amd/check_resources.py"

# Flags every direct compile uses: the same as build.rs passes for the library build
# (`-x hip -c -O3 -fPIC --offload-arch=... -I kernels $PKV_HIP_FLAGS`; build.rs also adds
# -Rpass-analysis=kernel-resource-usage, which only prints remarks). Keep them in step.
AMD_BASE_FLAGS=(-x hip -O3 -fPIC)

# Per-configuration: targets, compiler, extra flags (what goes into PKV_HIP_FLAGS).
amd_cfg_targets()  { case "$1" in hipcc) echo "gfx90a";; clang19) echo "gfx942;gfx1100";; esac; }
amd_cfg_compiler() { case "$1" in hipcc) echo "hipcc";; clang19) echo "$AMD_CLANG";; esac; }
amd_cfg_flags()    { case "$1" in hipcc) echo "";; clang19) echo "--rocm-path=/usr --rocm-device-lib-path=$AMD_DEVLIBS";; esac; }

# amd_compile CFG SRC OUT [more flags...]: one invocation, all targets of CFG at once.
amd_compile() {
  local cfg="$1" src="$2" out="$3"; shift 3
  local cc targets flags archs=()
  cc="$(amd_cfg_compiler "$cfg")"; targets="$(amd_cfg_targets "$cfg")"; flags="$(amd_cfg_flags "$cfg")"
  local t; IFS=';' read -ra tl <<<"$targets"
  for t in "${tl[@]}"; do archs+=("--offload-arch=$t"); done
  # shellcheck disable=SC2086
  "$cc" "${archs[@]}" "${AMD_BASE_FLAGS[@]}" $flags "$@" -c "$src" -o "$out"
}

# Timing helpers: amd_stage NAME CMD...  runs CMD, prints and records its wall time.
AMD_TIMES=()
amd_stage() {
  local name="$1"; shift
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  echo "[amd] ---- $name ----"
  "$@" || rc=$?
  t1=$(date +%s.%N)
  local dt; dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  AMD_TIMES+=("$(printf '%-58s %7ss  %s' "$name" "$dt" "$([ $rc = 0 ] && echo ok || echo "FAILED rc=$rc")")")
  echo "[amd] stage '$name': ${dt}s (rc=$rc)"
  return $rc
}
amd_print_times() {
  echo "[amd] ==== stage times ===="
  local l; for l in "${AMD_TIMES[@]}"; do echo "[amd]   $l"; done
}
