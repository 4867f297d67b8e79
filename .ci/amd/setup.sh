#!/usr/bin/env bash
# Prepare a Debian 12 (bookworm) machine for the AMD compile + resource proof.
#
#   bash .ci/amd/setup.sh [DEVLIB_DIR]        (default: build/amd-devlibs under the repo root)
#
# 1. Installs (only if missing) Debian's ROCm 5.2 HIP compiler and device libraries plus
#    LLVM/Clang 19 from bookworm main. `apt-get update` runs once, only when something is missing.
# 2. Creates DEVLIB_DIR holding Debian's ROCm device-lib bitcode plus oclc_isa_version_942.bc and
#    oclc_isa_version_1100.bc, which Debian's ROCm 5.2 does not ship. They are made from
#    oclc_isa_version_940.bc by changing its single constant (9400 -> 9402 / 11000).
#    This is a build-machine workaround for the CI only; build.rs knows nothing about it.
#
# Prints the absolute DEVLIB_DIR as the last line of stdout. Idempotent; non-interactive.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEVLIB_DIR="${1:-$REPO_ROOT/build/amd-devlibs}"

PKGS=(hipcc libamdhip64-dev rocm-device-libs clang-19 lld-19 clang-tools-19 llvm-19)

log() { echo "[amd/setup] $*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    log "not root and no sudo; cannot install packages"; fi
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "packages already installed: ${PKGS[*]}"
fi

for tool in hipcc clang-19 llvm-dis-19 llvm-as-19 llvm-readelf-19 llvm-objcopy-19 clang-offload-bundler-19; do
  command -v "$tool" >/dev/null 2>&1 || { log "missing tool after install: $tool"; exit 1; }
done

# Where rocm-device-libs put its bitcode (Debian: /usr/lib/x86_64-linux-gnu/amdgcn/bitcode).
src_bc="$(dpkg -L rocm-device-libs 2>/dev/null | grep '/oclc_isa_version_940\.bc$' | head -n1 || true)"
if [ -z "$src_bc" ]; then
  for d in /usr/lib/x86_64-linux-gnu/amdgcn/bitcode /usr/lib/amdgcn/bitcode /usr/amdgcn/bitcode; do
    [ -f "$d/oclc_isa_version_940.bc" ] && src_bc="$d/oclc_isa_version_940.bc" && break
  done
fi
[ -n "$src_bc" ] || { log "cannot find oclc_isa_version_940.bc from rocm-device-libs"; exit 1; }
SRC_DIR="$(dirname "$src_bc")"

mkdir -p "$DEVLIB_DIR"
DEVLIB_DIR="$(cd "$DEVLIB_DIR" && pwd)"
# Copy (not link) so the folder is self-contained; -u keeps it cheap on re-runs.
cp -u "$SRC_DIR"/*.bc "$DEVLIB_DIR"/

# Derive an ISA-version library from the gfx940 one. The module defines exactly one constant,
# `@__oclc_ISA_version = ... constant i32 9400`; anything else means the input changed, so stop.
derive_isa() { # $1 = name suffix (942), $2 = value (9402)
  local out="$DEVLIB_DIR/oclc_isa_version_$1.bc"
  if [ -f "$out" ] && llvm-dis-19 "$out" -o - | grep -q "@__oclc_ISA_version = .* constant i32 $2,"; then
    log "up to date: $out"
    return 0
  fi
  local ll
  ll="$(llvm-dis-19 "$DEVLIB_DIR/oclc_isa_version_940.bc" -o -)"
  local n
  n="$(grep -c 'constant i32 9400,' <<<"$ll" || true)"
  if [ "$n" != 1 ]; then
    log "oclc_isa_version_940.bc does not hold exactly one 'constant i32 9400' (found $n)"; exit 1
  fi
  sed "s/constant i32 9400,/constant i32 $2,/" <<<"$ll" | llvm-as-19 -o "$out.tmp" -
  llvm-dis-19 "$out.tmp" -o - | grep -q "@__oclc_ISA_version = .* constant i32 $2," \
    || { log "verification of generated $out failed"; exit 1; }
  mv -f "$out.tmp" "$out"
  log "generated: $out (__oclc_ISA_version = $2)"
}
derive_isa 942 9402
derive_isa 1100 11000

log "device-lib folder ready: $DEVLIB_DIR ($(ls "$DEVLIB_DIR" | wc -l) bitcode files)"
echo "$DEVLIB_DIR"
