#!/usr/bin/env bash
# CI: build the NVIDIA variant of the library with nvcc 13.0 from PyPI and fail on ptxas spills.
#
#   bash .ci/nvidia/build.sh
#
# Environment (all optional):
#   PKV_NVCC_PREFIX      where the nvcc wheels are pip-installed (default build/nvcc-13; reused
#                        when it already holds nvcc 13.0; a python site-packages that already has
#                        nvidia/cu13/bin/nvcc 13.0 is reused too)
#   PKV_NV_TARGET_DIR    CARGO_TARGET_DIR of this build (default target/ci-nvidia)
#   PKV_CUDA_ARCHS       passed through to build.rs (its default: sm_90)
#   PKV_NV_FAIL_ON_STACK=1  also fail on a nonzero ptxas stack frame
#
# Stages (each timed): install nvcc -> cargo build --release --features cuda -vv -> ptxas table.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
NVCC_PREFIX="${PKV_NVCC_PREFIX:-$REPO_ROOT/build/nvcc-13}"
TD="${PKV_NV_TARGET_DIR:-$REPO_ROOT/target/ci-nvidia}"
LOG_DIR="$TD/ci-logs"
mkdir -p "$LOG_DIR"
PY="${PYTHON:-python3}"

TIMES=()
stage() {
  local name="$1"; shift
  local t0 t1 rc=0 dt
  t0=$(date +%s.%N); echo "[nvidia] ---- $name ----"
  "$@" || rc=$?
  t1=$(date +%s.%N); dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  TIMES+=("$(printf '%-40s %7ss  %s' "$name" "$dt" "$([ $rc = 0 ] && echo ok || echo "FAILED rc=$rc")")")
  echo "[nvidia] stage '$name': ${dt}s (rc=$rc)"
  return $rc
}
finish() {
  local rc=$?
  echo "[nvidia] ==== stage times ===="
  local l; for l in "${TIMES[@]}"; do echo "[nvidia]   $l"; done
  [ $rc = 0 ] && echo "[nvidia] OK" || echo "[nvidia] FAILED (rc=$rc)"
}
trap finish EXIT

PKGS=("nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*"
      "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*")

is_nvcc13() { [ -x "$1/bin/nvcc" ] && "$1/bin/nvcc" --version 2>/dev/null | grep -q "release 13\.0"; }

install_nvcc() {
  CU=""
  if is_nvcc13 "$NVCC_PREFIX/nvidia/cu13"; then
    CU="$NVCC_PREFIX/nvidia/cu13"; echo "[nvidia] reusing $CU"
  else
    # An existing site-packages install (e.g. from an earlier pip install) is fine too.
    local sp
    sp="$("$PY" - <<'EOF' 2>/dev/null || true
import importlib.util, os
s = importlib.util.find_spec("nvidia")
for p in (list(s.submodule_search_locations) if s else []):
    if os.path.isfile(os.path.join(p, "cu13", "bin", "nvcc")):
        print(os.path.join(p, "cu13")); break
EOF
)"
    if [ -n "$sp" ] && is_nvcc13 "$sp" && [ -f "$sp/lib/libcudart_static.a" ] && [ -d "$sp/include/cccl" ] \
       && [ -d "$sp/nvvm/bin" ] && [ -f "$sp/include/crt/host_config.h" ]; then
      CU="$sp"; echo "[nvidia] reusing site-packages install $CU"
    else
      echo "[nvidia] pip install --target $NVCC_PREFIX ${PKGS[*]}"
      mkdir -p "$NVCC_PREFIX"
      "$PY" -m pip install -q --disable-pip-version-check --no-warn-script-location --upgrade \
          --target "$NVCC_PREFIX" "${PKGS[@]}" 2>&1 | grep -v "Running pip as the 'root' user" || true
      CU="$NVCC_PREFIX/nvidia/cu13"
      is_nvcc13 "$CU" || { echo "[nvidia] nvcc 13.0 not found under $CU after pip install"; return 1; }
    fi
  fi
  export CUDA_HOME="$CU" CUDA_PATH="$CU" NVCC="$CU/bin/nvcc" PATH="$CU/bin:$PATH"
  # The PyPI layout has lib/ (not lib64/); make the static cudart findable by any linker search.
  export LIBRARY_PATH="$CU/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
  "$NVCC" --version | tail -n 2
}

build() {
  # -vv echoes the build script's output (and nvcc's `ptxas -v` report) into the log.
  local rc=0
  CARGO_TARGET_DIR="$TD" cargo build --release --features cuda -vv >"$LOG_DIR/cargo-build.log" 2>&1 || rc=$?
  if [ $rc != 0 ]; then
    echo "[nvidia] cargo build failed (rc=$rc); last lines of $LOG_DIR/cargo-build.log:"
    grep -v '^\s*Running `\|^\s*Fresh \|^\s*Compiling \|^\s*Dirty ' "$LOG_DIR/cargo-build.log" | tail -n 60
    return $rc
  fi
  ls -l "$TD/release/libpagedkv.so"
  # The build script's own saved stdout/stderr of its latest run: holds the ptxas report even
  # when this cargo invocation found the build script fresh and did not rerun nvcc.
  local d
  d="$(ls -td "$TD"/release/build/pagedkv-*/ 2>/dev/null | while read -r x; do [ -f "$x/output" ] && echo "$x" && break; done)"
  : >"$LOG_DIR/ptxas.log"
  grep -h "ptxas\|bytes stack frame" "$LOG_DIR/cargo-build.log" >>"$LOG_DIR/ptxas.log" || true
  if ! grep -q "ptxas info" "$LOG_DIR/ptxas.log" && [ -n "$d" ]; then
    cat "$d/stderr" "$d/output" 2>/dev/null | grep -h "ptxas\|bytes stack frame" >>"$LOG_DIR/ptxas.log" || true
  fi
}

report() {
  local extra=()
  [ "${PKV_NV_FAIL_ON_STACK:-0}" = 1 ] && extra+=(--fail-on-stack)
  "$PY" "$REPO_ROOT/.ci/nvidia/ptxas_report.py" "${extra[@]}" --markdown "$LOG_DIR/ptxas-table.md" "$LOG_DIR/ptxas.log"
}

stage "install nvcc 13.0 (PyPI)" install_nvcc
stage "cargo build --release --features cuda" build
stage "ptxas register/smem/spill table" report
