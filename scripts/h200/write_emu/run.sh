#!/usr/bin/env bash
# Runs kernels/write_kv.hip on the CPU (no GPU needed): builds it as plain C++ against the host
# stand-in pkv_compat.h beside this script and checks every byte of randomly configured writes
# against a reference loop, plus the fp8 quantiser exhaustively over bf16/f16 inputs.
#
#   scripts/h200/write_emu/run.sh [--fp8 | --writer [N] | --full-f32]
#   (--full-f32 adds every f32 input for a few scales: minutes)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$root/kernels/pkv_common.h" "$root/kernels/pkv_params.h" "$here/pkv_compat.h" "$work/"
# kernel<<<grid, threads, 0, stream>>>(args) -> pkv_emu_launch(kernel, grid, threads, args)
sed -E 's/([A-Za-z_][A-Za-z0-9_]*<[^;]*>)<<<([^,]*), *([^,]*), *[^,]*, *[^>]*>>>\(([^)]*)\)/pkv_emu_launch(\1, \2, \3, \4)/' \
    "$root/kernels/write_kv.hip" > "$work/write_kv.hip"
grep -q pkv_emu_launch "$work/write_kv.hip" || { echo "launch rewrite failed"; exit 1; }
g++ -std=c++17 -O2 -march=native -ffp-contract=off -fno-fast-math -fsanitize=alignment -fno-sanitize-recover=alignment \
    -I"$work" -o "$work/write_emu" "$here/write_emu.cpp"
"$work/write_emu" "$@"
