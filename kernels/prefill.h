// The tensor-core kernel for prefill rows (kernels/prefill.hip), launched by the general
// kernel's launcher (attention.hip) in its place when the plan asks for it (`general_mma`).
#pragma once

#include "pkv_common.h"

namespace pkv {

#if defined(PKV_CUDA)
// Enqueues paged_prefill_mma_kernel for p (f16 or bf16 queries); the split reduce, when the
// plan has splits, is the caller's. Returns the launch's error.
pkv_error_t launch_prefill_mma(const pkv_attention_params& p, pkv_stream_t stream);
#endif

}  // namespace pkv
