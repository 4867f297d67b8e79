// Launch arguments shared by the Rust runtime layer (src/gpu/params.rs mirrors these structs
// field for field; both sides assert the sizes) and the kernels' extern "C" launchers.
// Everything here was validated by src/core before it is filled in; kernels never validate.
#pragma once

#include <stdint.h>

// Element dtype codes: the values of pkv_dtype (include/pagedkv.h).
#define PKV_DT_F32 1
#define PKV_DT_F16 2
#define PKV_DT_BF16 3
#define PKV_DT_U8 4

// fp8 formats (0 = not fp8).
#define PKV_FP8_NONE 0
#define PKV_FP8_E4M3FN 1
#define PKV_FP8_E4M3FNUZ 2
#define PKV_FP8_E5M2 3

// How the attention kernel stages the value cache: 8-element runs along head_size (NHD and
// generic layouts) or along tokens (the split value layout [.., head_size, block_size]).
#define PKV_V_ALONG_D 0
#define PKV_V_ALONG_TOKENS 1

// Element (block b, kv head h, dim d, slot o) of a cache lives at
// b*blk + h*head + (d >> x_shift)*dhi + o*tok + (d & (2^x_shift - 1))*dlo (elements). The
// split key layout has x = 16 / itemsize; NHD keys and every value layout use x = 1 (shift 0),
// dlo = 0 (dhi = the dim stride). Strides are 32-bit (the host rejects larger ones) to keep
// the kernels' uniform registers few; products with block ids are formed in 64 bits.
typedef struct {
    int32_t blk;
    int32_t head;
    int32_t dhi;
    int32_t tok;
    int32_t dlo;
    int32_t x_shift;
} pkv_cache_addr;

typedef struct {
    const void* key;              // [>= num_tokens, num_kv_heads, head_size], key_strides
    const void* value;            // [>= num_tokens, num_kv_heads, head_size], value_strides
    const int64_t* slot_mapping;  // [num_tokens], slot_stride; < 0 or >= num_slots: skipped
    void* key_cache;              // key_addr; fp8 caches hold bytes
    void* value_cache;            // value_addr
    const float* k_scale;         // [1] or NULL (1.0)
    const float* v_scale;         // [1] or NULL (1.0)
    int64_t key_strides[3];
    int64_t value_strides[3];
    int64_t slot_stride;
    pkv_cache_addr key_addr;
    pkv_cache_addr value_addr;
    int64_t num_tokens;
    int64_t num_slots;  // num_blocks * block_size
    int32_t num_kv_heads;
    int32_t head_size;
    int32_t block_size;
    int32_t src_dtype;   // PKV_DT_F32 / F16 / BF16
    int32_t fp8_format;  // PKV_FP8_*: quantise on the way in
    int32_t packed;      // native writer: addressing from the shapes, strides ignored
    int32_t key_src_contig;    // 8 source elements along head_size are one aligned access
    int32_t value_src_contig;
    int32_t key_run;     // destination elements contiguous along head_size: 8, 4 or 1
    int32_t value_run;
    int32_t value_vec;   // value slot stride 1 and 8-element aligned: 8 consecutive slots are one store
    int32_t work_items;  // threads per tensor: ceil(num_tokens / 16) * num_kv_heads * ceil(head_size / 8) * 2
} pkv_write_params;

typedef struct {
    const void* query;             // [num_tokens, num_q_heads, head_size], query_strides
    void* output;                  // [num_tokens, num_q_heads, head_size], output_strides
    const void* key_cache;         // key_addr
    const void* value_cache;       // value_addr
    const int32_t* block_table;    // [num_seqs, max_blocks_per_seq], block_table_strides
    const int32_t* seq_lens;       // [num_seqs], seq_lens_stride
    const int32_t* query_start_loc;  // [num_seqs + 1], query_start_loc_stride
    const float* k_scale;          // [1] or NULL (1.0)
    const float* v_scale;          // [1] or NULL (1.0)
    const float* output_scale;     // [1] or NULL (1.0)
    const float* alibi_slopes;     // [num_q_heads], alibi_stride, or NULL
    const float* sinks;            // [num_q_heads], sinks_stride, or NULL
    float* workspace;  // split partials: [num_tokens, num_q_heads, num_splits, head_size] then
                       // [num_tokens, num_q_heads, num_splits, 2] (max, sum); NULL if 1 split
    int64_t query_strides[3];
    int64_t output_strides[3];
    int64_t block_table_strides[2];
    int64_t seq_lens_stride;
    int64_t query_start_loc_stride;
    int64_t alibi_stride;
    int64_t sinks_stride;
    pkv_cache_addr key_addr;
    pkv_cache_addr value_addr;
    int64_t num_tokens;
    int64_t num_blocks;
    int32_t num_seqs;
    int32_t num_q_heads;
    int32_t num_kv_heads;
    int32_t head_size;
    int32_t block_size;
    int32_t max_blocks_per_seq;
    int32_t query_dtype;     // PKV_DT_F32 / F16 / BF16 (also the output dtype unless out_fp8)
    int32_t kv_fp8;          // PKV_FP8_* for fp8 caches, PKV_FP8_NONE otherwise
    int32_t out_fp8;         // PKV_FP8_* when the output is fp8 (output_scale applies)
    int32_t sliding_window;  // keys with p - j < W are visible; 0 disables
    int32_t causal;
    float sm_scale;
    float logits_soft_cap;   // 0 disables
    // The plan (src/core/plan.rs).
    int32_t tile;            // keys per inner iteration, power of two in [16, 128]
    int32_t block_q;         // query tokens per work-group
    int32_t heads_per_cta;   // query heads of one kv head per work-group
    int32_t head_groups;     // ceil(G / heads_per_cta)
    int32_t num_q_blocks;    // grid x: an upper bound, never from seq_lens
    int32_t num_splits;      // grid z
    int32_t shared_mem_bytes;
    // Access shapes the host proved (alignment and strides).
    int32_t query_contig;    // 8 query elements along head_size are one aligned access
    int32_t output_contig;
    int32_t key_run;         // key elements contiguous along head_size: 8, 4 or 1
    int32_t key_token_fastest;
    int32_t value_mode;      // PKV_V_ALONG_D or PKV_V_ALONG_TOKENS
    int32_t value_run;       // along d: 8, 4 or 1; along tokens: 8 or 1
    // The decode kernel (kernels/decode.hip) for sequences with exactly one query token.
    float* decode_workspace;  // its split partials: [num_seqs, num_q_heads, decode_splits, head_size]
                              // then [.., 2] (max, sum); NULL if decode_splits == 1
    int32_t decode_kernel;    // 1: decode.hip serves q_len == 1 sequences and this kernel skips them
    int32_t decode_splits;    // its grid z
    int32_t decode_heads_per_cta;  // query heads of one kv head per decode work-group
    int32_t decode_head_groups;    // ceil(G / decode_heads_per_cta)
    int32_t decode_mma;       // 1: its tensor-core variant (NVIDIA, f16/bf16, slots contiguous in values)
    int32_t key_wide;         // 1: 16 bytes of a key along head_size (16 fp8 codes) are one aligned access
    int32_t decode_order;     // 1: decode work-groups serve sequences longest first (decode.hip decode_item)
    int32_t key_fast;         // 1: the decode tensor-core kernel's run-folded twin serves these keys (decode.hip kFast)
    int32_t overlap_after_decode;  // 1: the decode reduce and the general kernel are programmatic dependents (sm_90+)
    int32_t decode_covers_all;  // 1: max_query_len = 1, no general kernel: decode.hip sets longer queries' rows to NaN
    int32_t general_mma;        // 1: the tensor-core prefill kernel (prefill.hip) runs in the general kernel's place
} pkv_attention_params;

#ifdef __cplusplus
static_assert(sizeof(pkv_cache_addr) == 24, "mirror of src/gpu/params.rs");
static_assert(sizeof(pkv_write_params) == 56 + 56 + 48 + 16 + 48, "mirror of src/gpu/params.rs");
static_assert(sizeof(pkv_attention_params) == 104 + 96 + 48 + 16 + 104 + 56, "mirror of src/gpu/params.rs");
#endif
