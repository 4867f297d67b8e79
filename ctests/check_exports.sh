#!/bin/sh
# Checks the shared library's ELF face: only pkv_ symbols exported, exactly the functions the
# header declares; the SONAME; no RPATH/RUNPATH; a non-executable stack; the SONAME symlink
# next to the library (and the dev symlink in an installed tree); a program linked through the
# CMake package records the SONAME as DT_NEEDED.
#
#   check_exports.sh <library> <pagedkv.h> <expected SONAME> <linked program>
set -eu
lib=$1 header=$2 soname=$3 program=$4
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }
for tool in nm readelf; do
  command -v "$tool" >/dev/null || { echo "FAIL: '$tool' not found (apt-get install binutils)" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pkv-exports.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "library: $lib"
nm -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' | sort -u >"$tmp/exported"
count=$(wc -l <"$tmp/exported")
[ "$count" -gt 0 ] || err "nm -D --defined-only lists no symbols"
if grep -v '^pkv_' "$tmp/exported" >"$tmp/foreign"; then
  err "symbols without the pkv_ prefix are exported:"; sed 's/^/    /' "$tmp/foreign" >&2
fi
# Function declarations of the header: "<type> pkv_name(" outside comments.
grep -v '^[[:space:]]*\(\*\|/\*\|//\)' "$header" | grep -o '\bpkv_[a-z0-9_]*(' | tr -d '(' | sort -u >"$tmp/declared"
if ! cmp -s "$tmp/exported" "$tmp/declared"; then
  err "exported symbols differ from the header's functions (< exported only, > declared only):"
  diff "$tmp/exported" "$tmp/declared" | grep '^[<>]' | sed 's/^/    /' >&2 || true
fi
echo "exported: $count defined dynamic symbols; $(basename "$header") declares $(wc -l <"$tmp/declared") functions"

readelf -d "$lib" >"$tmp/dynamic"
actual=$(sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p' "$tmp/dynamic")
[ "$actual" = "$soname" ] || err "SONAME is '$actual', expected '$soname'"
if grep -q '(RPATH)\|(RUNPATH)' "$tmp/dynamic"; then err "the library carries an RPATH/RUNPATH"; fi
echo "SONAME $actual; NEEDED: $(sed -n 's/.*Shared library: \[\(.*\)\].*/\1/p' "$tmp/dynamic" | tr '\n' ' ')"
if readelf -lW "$lib" | grep GNU_STACK | grep -q 'RWE'; then err "the library asks for an executable stack"; fi

dir=$(dirname "$lib")
real=$(readlink -f "$lib")
[ -e "$dir/$soname" ] && [ "$(readlink -f "$dir/$soname")" = "$real" ] ||
  err "$dir/$soname does not lead to $real (the loader looks the library up by its SONAME)"
case "$(basename "$lib")" in
  libpagedkv.so) ;;
  *) # installed tree: libpagedkv.so.X.Y.Z with the SONAME link and the dev link
     [ ! -L "$lib" ] || err "$lib should be the real file, not a link"
     [ -L "$dir/$soname" ] || err "$dir/$soname should be a symlink"
     [ -L "$dir/libpagedkv.so" ] && [ "$(readlink -f "$dir/libpagedkv.so")" = "$real" ] ||
       err "$dir/libpagedkv.so should be a symlink leading to $real"
     echo "links: libpagedkv.so -> $(readlink "$dir/libpagedkv.so"), $soname -> $(readlink "$dir/$soname")" ;;
esac

needed=$(readelf -d "$program" | sed -n 's/.*Shared library: \[\(libpagedkv[^]]*\)\].*/\1/p')
[ "$needed" = "$soname" ] || err "$(basename "$program") records DT_NEEDED '$needed', expected '$soname'"
echo "$(basename "$program") needs $needed"
[ "$fail" = 0 ] && echo "PASS"
exit "$fail"
