#!/usr/bin/env bash
# The C/C++ consumer tier, in one command from the repository root:
#
#   ctests/run.sh
#
# 1. cargo build --release
# 2. scripts/install.sh into a DESTDIR staging directory (prefix /usr/local), then configure
#    ctests/ against the staged prefix (CMAKE_PREFIX_PATH; pkg-config through
#    PKG_CONFIG_SYSROOT_DIR), build, and run ctest
# 3. the same against a second install (prefix /opt/pagedkv, libdir lib/x86_64-linux-gnu) whose
#    tree is then moved elsewhere: the CMake package must follow it
# 4. the same against the build tree (scripts/install.sh --build-tree: target/release/cmake and
#    target/release/pkgconfig)
#
# Exits non-zero on the first failure. Needs cargo, cmake, a C and a C++ compiler, pkg-config,
# binutils (nm, readelf); ninja is used when present. PKV_KEEP_TMP=1 keeps the scratch directory.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
for tool in cmake pkg-config nm readelf; do
  command -v "$tool" >/dev/null || { echo "ctests/run.sh: '$tool' is required" >&2; exit 1; }
done
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pagedkv-ctests.XXXXXX")
if [ "${PKV_KEEP_TMP:-0}" = 1 ]; then
  echo "ctests/run.sh: scratch directory $tmp (kept)"
else
  trap 'rm -rf "$tmp"' EXIT
fi

step() { printf '\n=== %s\n' "$*"; }

# Configures ctests/ in $1 with the remaining arguments, builds and runs it.
run_suite() {
  local build=$1
  shift
  cmake -S "$repo/ctests" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$build.configure.log" ||
    { cat "$build.configure.log" >&2; return 1; }
  grep -E '^-- (pagedkv|  IMPORTED|  INTERFACE)' "$build.configure.log" || true
  cmake --build "$build"
  (cd "$build" && ctest --output-on-failure)
}

step "cargo build --release"
"${CARGO:-cargo}" build --release

step "install into a staging directory (DESTDIR, prefix /usr/local) and test against it"
stage=$tmp/stage
DESTDIR=$stage scripts/install.sh --no-build --prefix /usr/local
(cd "$stage" && find . \( -type f -o -type l \) | sort | sed 's/^/  /')
run_suite "$tmp/build-installed" \
  -DCMAKE_PREFIX_PATH="$stage/usr/local" \
  -DPKV_EXPECT_PACKAGE_PREFIX="$stage/usr/local" \
  -DPKV_PKG_CONFIG_PATH="$stage/usr/local/lib/pkgconfig" \
  -DPKV_PKG_CONFIG_SYSROOT_DIR="$stage"

step "install with --prefix /opt/pagedkv --libdir lib/x86_64-linux-gnu, move the tree, test against it"
DESTDIR=$tmp/stage2 scripts/install.sh --no-build --prefix /opt/pagedkv --libdir lib/x86_64-linux-gnu
mv "$tmp/stage2/opt/pagedkv" "$tmp/moved"
# The .pc keeps the absolute prefix it was installed for (as distributions expect), so
# pkg-config cannot follow a moved tree: that test runs in the other two configurations.
run_suite "$tmp/build-moved" \
  -DCMAKE_PREFIX_PATH="$tmp/moved" \
  -DPKV_EXPECT_PACKAGE_PREFIX="$tmp/moved" \
  -DPKV_PKG_CONFIG_PATH=OFF

step "build tree (scripts/install.sh --build-tree) and test against it"
scripts/install.sh --no-build --build-tree
release=${CARGO_TARGET_DIR:-$repo/target}/release
case "$release" in /*) ;; *) release=$repo/$release ;; esac
run_suite "$tmp/build-tree" \
  -DCMAKE_PREFIX_PATH="$release" \
  -DPKV_EXPECT_PACKAGE_PREFIX="$release" \
  -DPKV_PKG_CONFIG_PATH="$release/pkgconfig"

step "ctests: all three configurations passed"
