#!/usr/bin/env bash
# Builds the NVIDIA release library on the build machine (no GPU needed) for the H200 proof:
# $CARGO_TARGET_DIR (default target)/release/libpagedkv.so, which `run.sh` loads on the GPU machine (carry it there).
# nvcc: $NVCC, else the PyPI CUDA 13 toolchain if installed, else the one on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${NVCC:-}" ]]; then
    pip_nvcc=$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "bin", "nvcc"))' 2>/dev/null || true)
    if [[ -n "$pip_nvcc" && -x "$pip_nvcc" ]]; then export NVCC=$pip_nvcc; fi
fi
export PKV_CUDA_ARCHS=${PKV_CUDA_ARCHS:-sm_90}
cargo build --release --features cuda
ls -l "${CARGO_TARGET_DIR:-target}/release/libpagedkv.so"
