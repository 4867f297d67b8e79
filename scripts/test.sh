#!/usr/bin/env bash
# Runs every test tier that needs no GPU: Rust (core, CPU backend, C-ABI contract, header),
# C/C++ consumers through CTest against the installed package, Python ctypes tests, and the
# cache writer's kernel source run on the CPU.
# The GPU tier runs on a machine with a GPU through scripts/h200/run.sh; here it is skipped
# with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n==== %s ====\n' "$1"; STAGE_START=$(date +%s); }
done_stage() { printf '==== %s: %ss ====\n' "$1" "$(( $(date +%s) - STAGE_START ))"; }

stage "rust: cargo test"
cargo test --all-targets
done_stage "rust"

stage "c/c++: ctest against the installed package"
bash ctests/run.sh
done_stage "c/c++"

stage "python: pytest (ctypes binding)"
cargo build --release --quiet
# Test the library just built, wherever CARGO_TARGET_DIR puts it.
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PAGEDKV_LIBRARY="$target_dir/release/libpagedkv.so" PYTHONPATH=python python3 -m pytest -q -rs python/tests
done_stage "python"

stage "python: pytest against the installed package"
# The library staged by scripts/install.sh, the package by pip, both outside this checkout; the
# tests run from elsewhere, found by the loader's search path only (PAGEDKV_LIBRARY unset).
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
DESTDIR="$root/stage" CARGO_TARGET_DIR="$target_dir" bash scripts/install.sh --no-build --prefix /usr >/dev/null
# (from a copy: setuptools builds in the source directory, which stays untouched this way)
cp -r python "$root/src"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-deps --no-build-isolation --target "$root/site" "$root/src"
tests=$PWD/python/tests
(cd "$root" && env -u PAGEDKV_LIBRARY PKV_TEST_INSTALLED=1 PKV_TEST_INSTALL_ROOT="$root" PYTHONPATH="$root/site" \
    LD_LIBRARY_PATH="$root/stage/usr/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    python3 -m pytest -q -rs -p no:cacheprovider "$tests")
done_stage "python (installed)"

stage "kernels on the CPU: the cache writer's source against a reference loop"
# kernels/write_kv.hip compiled as plain C++ (lanes in groups of four on host threads, meeting
# at every exchange and vote): the fp8 quantiser over every bf16/f16 input for many scales, and
# 1000 random writes (layouts, block sizes, slot patterns, strides) byte for byte.
bash scripts/h200/write_emu/run.sh --fp8
bash scripts/h200/write_emu/run.sh --writer 1000
done_stage "kernels on the CPU"

stage "gpu"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "GPU present: run 'bash scripts/h200/run.sh' for the GPU tier (kernels against the CPU backend)."
else
    echo "SKIPPED: no GPU on this machine; the GPU tier (every kernel against the CPU backend,"
    echo "compute-sanitizer) runs on the H200 via scripts/h200/run.sh, results in docs/validation.md."
fi
