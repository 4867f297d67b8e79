#!/usr/bin/env bash
# The main job, end to end through the C API: `pagedkv demo`. Builds the library with the GPU
# backend the machine can build and run (ROCm if hipcc and an AMD GPU are present, CUDA if
# nvcc and an NVIDIA GPU are), else CPU-only; a prebuilt binary (PAGEDKV_BIN) is used as is.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PAGEDKV_BIN:-}" ]; then
    exec "$PAGEDKV_BIN" demo
fi
features=()
if command -v hipcc >/dev/null 2>&1 && [ -e /dev/kfd ]; then
    features=(--features rocm)
elif command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    features=(--features cuda)
fi
echo "building: cargo build --release ${features[*]:-(CPU only)}"
cargo build --release --quiet "${features[@]}"
exec target/release/pagedkv demo
