#!/bin/sh
# Builds and runs a tiny program with `cc $(pkg-config --cflags pagedkv) ... $(pkg-config --libs
# pagedkv)`, using PKG_CONFIG_PATH (and PKG_CONFIG_SYSROOT_DIR for a DESTDIR-staged tree) from
# the environment, and checks the .pc's version and the program's DT_NEEDED.
#
#   pkgconfig_consumer.sh <cc> <pkgconfig_main.c> <work dir> <expected version> <expected SONAME>
set -eu
cc=$1 source=$2 work=$3 version=$4 soname=$5
command -v pkg-config >/dev/null || { echo "FAIL: pkg-config not found (apt-get install pkg-config)" >&2; exit 1; }
echo "PKG_CONFIG_PATH=${PKG_CONFIG_PATH:-} PKG_CONFIG_SYSROOT_DIR=${PKG_CONFIG_SYSROOT_DIR:-}"
pkg-config --exists --print-errors pagedkv
actual=$(pkg-config --modversion pagedkv)
[ "$actual" = "$version" ] || { echo "FAIL: pagedkv.pc says version $actual, expected $version" >&2; exit 1; }
minor=$(echo "$version" | cut -d. -f1,2)
pkg-config --exists "pagedkv >= $minor" || { echo "FAIL: 'pagedkv >= $minor' not satisfied" >&2; exit 1; }
cflags=$(pkg-config --cflags pagedkv)
libs=$(pkg-config --libs pagedkv)
echo "cflags: $cflags"
echo "libs:   $libs"
mkdir -p "$work"
# shellcheck disable=SC2086 # word splitting of the flags is intended
"$cc" -std=c11 -Wall -Wextra -Werror $cflags "$source" -o "$work/pkgconfig_consumer" $libs
needed=$(readelf -d "$work/pkgconfig_consumer" | sed -n 's/.*Shared library: \[\(libpagedkv[^]]*\)\].*/\1/p')
[ "$needed" = "$soname" ] || { echo "FAIL: DT_NEEDED '$needed', expected '$soname'" >&2; exit 1; }
# The run-time search path: the -L directories of the .pc.
libpath=
for flag in $libs; do
  case "$flag" in -L*) libpath=${libpath:+$libpath:}${flag#-L} ;; esac
done
LD_LIBRARY_PATH=$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$work/pkgconfig_consumer"
echo "PASS"
