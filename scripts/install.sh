#!/usr/bin/env bash
# Builds libpagedkv (cargo build --release) and installs it in the usual layout:
#
#   <prefix>/<libdir>/libpagedkv.so.X.Y.Z, libpagedkv.so.0.Y -> (SONAME), libpagedkv.so -> .so.0.Y
#   <prefix>/include/pagedkv.h
#   <prefix>/<libdir>/cmake/pagedkv/pagedkvConfig.cmake, ...ConfigVersion.cmake, ...Targets.cmake
#   <prefix>/<libdir>/pkgconfig/pagedkv.pc
#
# or, with --build-tree, writes a CMake config and a .pc for using the library from the build
# tree without installing (see docs/packaging.md). DESTDIR is honoured for staged installs.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/install.sh [--prefix P] [--libdir DIR] [--no-build] [--build-tree]

  --prefix P      install prefix (default /usr/local); DESTDIR=<dir> stages under <dir>/P
  --libdir DIR    library directory relative to the prefix (default lib; e.g. lib64,
                  lib/x86_64-linux-gnu)
  --no-build      do not run `cargo build --release`; package the library already built
  --build-tree    install nothing: write target/release/cmake/pagedkvConfig.cmake and
                  target/release/pkgconfig/pagedkv.pc pointing at target/release and include/
                  (use with CMAKE_PREFIX_PATH=<repo>/target/release or
                  PKG_CONFIG_PATH=<repo>/target/release/pkgconfig)

Environment: DESTDIR (staging root), CARGO_TARGET_DIR (where cargo builds), CARGO (cargo binary).
USAGE
}

prefix=/usr/local
libdir=lib
build=1
build_tree=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { usage >&2; exit 2; }; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --libdir) [ $# -ge 2 ] || { usage >&2; exit 2; }; libdir=$2; shift 2 ;;
    --libdir=*) libdir=${1#--libdir=}; shift ;;
    --no-build) build=0; shift ;;
    --build-tree) build_tree=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
case "$target_dir" in /*) ;; *) target_dir=$repo/$target_dir ;; esac
library=$target_dir/release/libpagedkv.so

# The prefix must be absolute for the package files; a relative one means relative to here.
case "$prefix" in /*) ;; *) prefix=$(pwd)/$prefix ;; esac
prefix=${prefix%/}
[ -n "$prefix" ] || prefix=/
case "$libdir" in
  "$prefix"/*) libdir=${libdir#"$prefix"/} ;;
  /*) echo "install.sh: --libdir $libdir is not under the prefix $prefix; give it relative to the prefix" >&2
      exit 2 ;;
esac

# cmake --install reads DESTDIR from the environment; make a relative one absolute first.
if [ -n "${DESTDIR:-}" ]; then
  case "$DESTDIR" in /*) ;; *) DESTDIR=$(pwd)/$DESTDIR ;; esac
  export DESTDIR
fi

if [ "$build" = 1 ]; then
  (cd "$repo" && "${CARGO:-cargo}" build --release)
fi
if [ ! -f "$library" ]; then
  echo "install.sh: $library does not exist; run without --no-build (or cargo build --release)" >&2
  exit 1
fi

for tool in cmake; do
  command -v "$tool" >/dev/null || { echo "install.sh: '$tool' is required (apt-get install cmake)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/pagedkv-install.XXXXXX")
trap 'rm -rf "$work"' EXIT

configure=(cmake -S "$repo/cmake" -B "$work" -DPKV_LIBRARY="$library" -DPKV_HEADER="$repo/include/pagedkv.h")
if [ "$build_tree" = 1 ]; then
  "${configure[@]}" -DPKV_BUILD_TREE=ON >"$work/configure.log" || { cat "$work/configure.log" >&2; exit 1; }
  sed -n 's/^-- //p' "$work/configure.log" | grep -v '^\(Configuring\|Generating\|Build files\)' || true
  exit 0
fi

"${configure[@]}" -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR="$libdir" \
  -DCMAKE_INSTALL_INCLUDEDIR=include >"$work/configure.log" || { cat "$work/configure.log" >&2; exit 1; }
# `cmake --install` honours DESTDIR from the environment.
cmake --install "$work"
echo "installed pagedkv into ${DESTDIR:-}$prefix (libdir $libdir)"
