#!/usr/bin/env bash
# CI: prove the HIP kernels build for AMD GPUs and stay within hardware limits, without AMD
# hardware. Run from anywhere:  bash .ci/amd/run.sh
#
# Stages (each timed):
#   1. setup      .ci/amd/setup.sh: apt packages (only if missing) + device-lib folder
#   2. selftest   .ci/amd/selftest.sh: the checker rejects LDS/scratch/spill violations
#   3. gfx90a     library build with Debian's hipcc (ROCm 5.2.3)
#                   HIPCC=hipcc PKV_GPU_TARGETS=gfx90a cargo build --release --features rocm
#   4. gfx942+gfx1100  library build with clang-19 and the device-lib folder
#                   HIPCC=clang-19 PKV_GPU_TARGETS="gfx942;gfx1100" \
#                   PKV_HIP_FLAGS="--rocm-path=/usr --rocm-device-lib-path=<devlibs>" cargo build ...
#   each followed by check_resources.py over the build script's objects (OUT_DIR) and the
#   linked libpagedkv.so: per-kernel table; fails on static LDS > 64 KiB, scratch or spills.
#
# Environment (all optional):
#   PKV_AMD_MODE         auto (default) | cargo | direct
#                        cargo : build the library through build.rs (the real proof)
#                        direct: compile kernels/*.hip directly, one invocation per file with all
#                                targets of the configuration (no Rust build)
#                        auto  : cargo when build.rs handles the rocm feature, else direct
#   PKV_AMD_TARGET_ROOT  where builds go (default target/ci-amd; one CARGO_TARGET_DIR per config)
#   PKV_AMD_DEVLIBS      device-lib folder (default build/amd-devlibs)
#   PKV_AMD_SKIP_SELFTEST=1  skip stage 2
#   PKV_AMD_UPDATE_DOCS=1    after a green run, write the per-kernel table into docs/amd.md
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$AMD_REPO_ROOT"

MODE="${PKV_AMD_MODE:-auto}"
ROOT="${PKV_AMD_TARGET_ROOT:-$AMD_REPO_ROOT/target/ci-amd}"
mkdir -p "$ROOT"
ROOT="$(cd "$ROOT" && pwd)"
REPORT="$ROOT/amd-resources.md"

finish() {
  local rc=$?
  amd_print_times
  [ $rc = 0 ] && echo "[amd] OK" || echo "[amd] FAILED (rc=$rc)"
}
trap finish EXIT

if [ "$MODE" = auto ]; then
  if grep -q "PKV_GPU_TARGETS" build.rs 2>/dev/null; then MODE=cargo; else MODE=direct; fi
  echo "[amd] mode: $MODE (auto)"
fi
case "$MODE" in cargo|direct) ;; *) echo "[amd] unknown PKV_AMD_MODE=$MODE"; exit 2;; esac

amd_stage "setup (apt + device-lib folder)" bash .ci/amd/setup.sh "$AMD_DEVLIBS"

if [ "${PKV_AMD_SKIP_SELFTEST:-0}" != 1 ]; then
  amd_stage "checker self-test" bash .ci/amd/selftest.sh
fi

# The build directory of the pagedkv build script's latest run (holds out/ = OUT_DIR). Found by
# its objects, not by cargo's `output` file, which a failed build-script run does not write.
latest_build_dir() {
  local td="$1" d best="" bt=0 t
  for d in "$td"/release/build/pagedkv-*/; do
    [ -d "$d/out/kernels" ] || continue
    t=$(stat -c %Y "$d/out/kernels")
    if [ "$t" -ge "$bt" ]; then bt=$t; best="${d%/}"; fi
  done
  echo "$best"
}

cargo_build() { # CFG
  local cfg="$1" td="$ROOT/$1" rc=0
  local cc targets flags
  cc="$(amd_cfg_compiler "$cfg")"; targets="$(amd_cfg_targets "$cfg")"; flags="$(amd_cfg_flags "$cfg")"
  echo "[amd] HIPCC=$cc PKV_GPU_TARGETS=\"$targets\" PKV_HIP_FLAGS=\"$flags\" CARGO_TARGET_DIR=$td cargo build --release --features rocm"
  HIPCC="$cc" PKV_GPU_TARGETS="$targets" PKV_HIP_FLAGS="$flags" HIP_PATH=/usr CARGO_TARGET_DIR="$td" \
    cargo build --release --features rocm -vv >"$td.build.log" 2>&1 || rc=$?
  local bd; bd="$(latest_build_dir "$td")"
  # The check reads the build script's objects (OUT_DIR/kernels/*.o, libpagedkv_kernels.a)
  # and the linked library; after a failed build it still reads whatever objects exist, so
  # the table shows e.g. the kernel that made build.rs stop.
  if [ -n "$bd" ] && compgen -G "$bd/out/kernels/*.o" >/dev/null; then echo "$bd/out" >"$ROOT/$cfg.objects"; fi
  if [ $rc != 0 ]; then
    echo "[amd] cargo build failed (rc=$rc); last lines of $td.build.log:"
    grep -v '^\s*Running `\|^\s*Fresh \|^\s*Compiling \|^\s*Dirty \|^\s*process didn.t exit successfully: `CARGO=' \
      "$td.build.log" | tail -n 60
    return $rc
  fi
  grep -E '^\[pagedkv [^]]*\] (cargo:)?warning' "$td.build.log" | sort -u | head -n 20 || true
  [ -f "$ROOT/$cfg.objects" ] || { echo "[amd] no kernel objects in the pagedkv build script's OUT_DIR under $td"; return 1; }
  [ -f "$td/release/libpagedkv.so" ] || { echo "[amd] $td/release/libpagedkv.so missing"; return 1; }
  echo "$td/release/libpagedkv.so" >>"$ROOT/$cfg.objects"
}

direct_build() { # CFG: one compiler invocation per kernels/*.hip, all targets at once
  local cfg="$1" od="$ROOT/$1-direct" f rc=0
  rm -rf "$od"; mkdir -p "$od"
  shopt -s nullglob
  local srcs=(kernels/*.hip)
  shopt -u nullglob
  [ ${#srcs[@]} -gt 0 ] || { echo "[amd] no kernels/*.hip to compile"; return 1; }
  echo "[amd] $cfg: ${#srcs[@]} file(s) for $(amd_cfg_targets "$cfg")"
  for f in "${srcs[@]}"; do
    local b; b="$(basename "$f" .hip)"
    echo "[amd]   $(amd_cfg_compiler "$cfg") $(amd_cfg_targets "$cfg" | sed 's/\([^;]*\);*/--offload-arch=\1 /g')${AMD_BASE_FLAGS[*]} $(amd_cfg_flags "$cfg") -Ikernels -c $f -o $od/$b.o"
    amd_compile "$cfg" "$f" "$od/$b.o" -Ikernels || { rc=1; echo "[amd] compile failed: $f ($cfg)"; }
  done
  [ $rc = 0 ] || return 1
  echo "$od" >"$ROOT/$cfg.objects"
}

check() { # CFG
  local cfg="$1" objs=() so
  mapfile -t objs <"$ROOT/$cfg.objects"
  python3 "$AMD_CHECK" --expect-targets "$(amd_cfg_targets "$cfg")" --markdown "$ROOT/$cfg.md" \
    --json "$ROOT/$cfg.json" "${objs[@]}" || return $?
  # The shipped library must carry every kernel that was compiled, for every target.
  so="$(grep 'libpagedkv\.so$' "$ROOT/$cfg.objects" || true)"
  [ -n "$so" ] || return 0
  python3 "$AMD_CHECK" --expect-targets "$(amd_cfg_targets "$cfg")" --json "$ROOT/$cfg.so.json" "$so" >/dev/null || return $?
  python3 - "$ROOT/$cfg.json" "$ROOT/$cfg.so.json" <<'EOF'
import json, sys
every, shipped = ({(r["target"], r["name"]) for r in json.load(open(p))} for p in sys.argv[1:3])
missing = sorted(every - shipped)
for t, n in missing:
    print(f"[amd] kernel compiled but not in libpagedkv.so: {t} {n}")
print(f"[amd] libpagedkv.so carries {len(shipped)} of {len(every)} kernel code objects")
sys.exit(1 if missing else 0)
EOF
}

rc=0
for cfg in hipcc clang19; do
  rm -f "$ROOT/$cfg.objects" "$ROOT/$cfg.md"
  label="$(amd_cfg_targets "$cfg" | tr ';' '+') via $(amd_cfg_compiler "$cfg")"
  if [ "$MODE" = cargo ]; then
    amd_stage "build $label (cargo --release --features rocm)" cargo_build "$cfg" || rc=1
  else
    amd_stage "build $label (direct, kernels/*.hip)" direct_build "$cfg" || rc=1
  fi
  [ -f "$ROOT/$cfg.objects" ] || continue
  amd_stage "resource check $label" check "$cfg" || rc=1
done

{
  echo "_Generated by \`.ci/amd/run.sh\` ($MODE mode) on $(date -u '+%Y-%m-%d %H:%M UTC'), HEAD $(git rev-parse --short HEAD 2>/dev/null || echo '?'); \`kernels/\` and \`build.rs\` as of commit $(git log -1 --format=%h -- kernels build.rs 2>/dev/null || echo '?')$(git diff --quiet HEAD -- kernels build.rs 2>/dev/null || echo ' **plus uncommitted changes**'); $(hipcc --version 2>/dev/null | grep -m1 -o 'HIP version: [^ ]*' || true), $($AMD_CLANG --version | head -n1)._"
  for cfg in hipcc clang19; do
    [ -f "$ROOT/$cfg.md" ] || continue
    echo; echo "**$(amd_cfg_targets "$cfg" | tr ';' ' ') — $(amd_cfg_compiler "$cfg")**"; echo
    cat "$ROOT/$cfg.md"
  done
} >"$REPORT"
echo "[amd] Markdown table: $REPORT"
# PKV_AMD_UPDATE_DOCS=1: put the table into docs/amd.md (between its BEGIN/END markers).
if [ "${PKV_AMD_UPDATE_DOCS:-0}" = 1 ] && [ $rc = 0 ]; then
  python3 - "$AMD_REPO_ROOT/docs/amd.md" "$REPORT" <<'EOF'
import sys
doc, table = sys.argv[1], open(sys.argv[2]).read().strip()
s = open(doc).read()
b, e = "<!-- BEGIN amd-resources -->", "<!-- END amd-resources -->"
i, j = s.index(b) + len(b), s.index(e)
open(doc, "w").write(s[:i] + "\n" + table + "\n" + s[j:])
print(f"[amd] updated {doc}")
EOF
fi
exit $rc
