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
#   PKV_NV_SKIP_SELFTEST=1  skip .ci/nvidia/selftest.sh (proves the spill check fails when it must)
#   PKV_NV_MODE          auto (default) | cargo | direct
#                        cargo : cargo build --release --features cuda (through build.rs)
#                        direct: nvcc -x cu each kernels/*.hip (no Rust build)
#                        auto  : cargo when build.rs handles the cuda feature, else direct
#
# Stages (each timed): install nvcc -> self-test of the spill check ->
# cargo build --release --features cuda -vv -> ptxas table (also printed after a failed build).
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
  echo "[nvidia] NVCC=$NVCC CUDA_HOME=$CUDA_HOME CARGO_TARGET_DIR=$TD cargo build --release --features cuda -vv"
  CARGO_TARGET_DIR="$TD" cargo build --release --features cuda -vv >"$LOG_DIR/cargo-build.log" 2>&1 || rc=$?
  if [ $rc != 0 ]; then
    echo "[nvidia] cargo build failed (rc=$rc); last lines of $LOG_DIR/cargo-build.log:"
    grep -v '^\s*Running `\|^\s*Fresh \|^\s*Compiling \|^\s*Dirty \|^\s*process didn.t exit successfully: `CARGO=' \
      "$LOG_DIR/cargo-build.log" | tail -n 60
  else
    ls -l "$TD/release/libpagedkv.so"
  fi
  # build.rs keeps nvcc's output (the `ptxas -v` report) per kernel file in
  # OUT_DIR/kernels/<file>.log of its latest run; that holds the report even when this cargo
  # invocation found the build script fresh and did not rerun nvcc. Fall back to the -vv log.
  local d="" x t bt=0
  for x in "$TD"/release/build/pagedkv-*/; do
    [ -d "$x/out/kernels" ] || continue  # (cargo writes `output` only after a successful run)
    t=$(stat -c %Y "$x/out/kernels"); if [ "$t" -ge "$bt" ]; then bt=$t; d="${x%/}"; fi
  done
  : >"$LOG_DIR/ptxas.log"
  if [ -n "$d" ] && compgen -G "$d/out/kernels/*.log" >/dev/null; then
    echo "[nvidia] ptxas reports from $d/out/kernels/*.log"
    cat "$d"/out/kernels/*.log >>"$LOG_DIR/ptxas.log"
  else
    grep -h "ptxas\|bytes stack frame" "$LOG_DIR/cargo-build.log" >>"$LOG_DIR/ptxas.log" || true
    [ -n "$d" ] && cat "$d/stderr" "$d/output" 2>/dev/null | grep -h "ptxas\|bytes stack frame" >>"$LOG_DIR/ptxas.log" || true
  fi
  grep -h "cargo:warning=pagedkv kernel spill" "$d/output" 2>/dev/null || true
  return $rc
}

direct() { # same sources, compiled as CUDA, one nvcc invocation per file
  local od="$TD/direct" f rc=0 archs="${PKV_CUDA_ARCHS:-sm_90}" a gen=()
  rm -rf "$od"; mkdir -p "$od"
  IFS=';, ' read -ra al <<<"$archs"
  for a in "${al[@]}"; do [ -n "$a" ] && gen+=("-gencode=arch=compute_${a#sm_},code=$a"); done
  : >"$LOG_DIR/ptxas.log"
  shopt -s nullglob; local srcs=(kernels/*.hip); shopt -u nullglob
  [ ${#srcs[@]} -gt 0 ] || { echo "[nvidia] no kernels/*.hip"; return 1; }
  for f in "${srcs[@]}"; do
    local b; b="$(basename "$f" .hip)"
    echo "[nvidia]   nvcc -x cu ${gen[*]} -O3 -std=c++17 -Xcompiler -fPIC -Xptxas -v -Ikernels -c $f -o $od/$b.o"
    "$NVCC" -x cu "${gen[@]}" -O3 -std=c++17 -Xcompiler -fPIC -Xptxas -v -Ikernels -c "$f" -o "$od/$b.o" \
      2>"$od/$b.log" || { rc=1; cat "$od/$b.log"; }
    cat "$od/$b.log" >>"$LOG_DIR/ptxas.log"
  done
  return $rc
}

report() {
  local extra=()
  [ "${PKV_NV_FAIL_ON_STACK:-0}" = 1 ] && extra+=(--fail-on-stack)
  "$PY" "$REPO_ROOT/.ci/nvidia/ptxas_report.py" "${extra[@]}" --markdown "$LOG_DIR/ptxas-table.md" "$LOG_DIR/ptxas.log"
}

MODE="${PKV_NV_MODE:-auto}"
if [ "$MODE" = auto ]; then
  if grep -q "PKV_CUDA_ARCHS" build.rs 2>/dev/null; then MODE=cargo; else MODE=direct; fi
  echo "[nvidia] mode: $MODE (auto)"
fi

stage "install nvcc 13.0 (PyPI)" install_nvcc
rc=0
if [ "${PKV_NV_SKIP_SELFTEST:-0}" != 1 ]; then
  stage "spill-check self-test" bash "$REPO_ROOT/.ci/nvidia/selftest.sh" || rc=1
fi
case "$MODE" in
  cargo) stage "cargo build --release --features cuda" build || rc=1 ;;
  direct) stage "nvcc kernels/*.hip (direct)" direct || rc=1 ;;
  *) echo "[nvidia] unknown PKV_NV_MODE=$MODE"; exit 2 ;;
esac
# The launch-argument code (src/gpu/params.rs: access shapes the kernels rely on) compiles only
# with a GPU feature; its unit tests need no GPU and reuse the build above.
unit_tests() {
  CARGO_TARGET_DIR="$TD" cargo test --release --features cuda --lib gpu:: 2>&1 | tail -n 15
  return "${PIPESTATUS[0]}"
}
if [ "$MODE" = cargo ] && [ $rc = 0 ]; then
  stage "cargo test --features cuda --lib gpu:: (no GPU needed)" unit_tests || rc=1
fi
# The table is printed even after a failed build (a spilling kernel stops build.rs), as long
# as the compiler reports exist.
stage "ptxas register/smem/spill table" report || rc=1
exit $rc
