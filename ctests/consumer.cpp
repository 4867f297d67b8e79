// A C++17 consumer of the installed pagedkv: the header used from C++ (extern "C", the
// pkv_status enum with its fixed underlying type), every exported function called once in a
// realistic order: import a cache through DLPack, split it, write a sequence's tokens with
// pkv_write_kv_cache, then run paged attention for a prefill chunk and a decode token over
// what was written, checked against the double-precision reference.
//
//   consumer_cxx [test-name]      (no name: run all)

#include "reference.h"
#include "test_support.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

static_assert(std::is_same<std::underlying_type<pkv_status>::type, uint32_t>::value,
              "pkv_status is a uint32_t enum in C++");
static_assert(std::is_standard_layout<pkv_tensor>::value && std::is_trivially_copyable<pkv_tensor>::value,
              "pkv_tensor is a plain C struct");
static_assert(std::is_standard_layout<pkv_paged_attention_args>::value, "plain C struct");

namespace {

bool cpu_only() { return (pkv_features() & (PKV_FEATURE_CUDA | PKV_FEATURE_ROCM)) == 0; }

void test_info() {
  const std::string version = pkv_version_string();
  CHECK(version == std::to_string(PKV_VERSION_MAJOR) + "." + std::to_string(PKV_VERSION_MINOR) + "." +
                       std::to_string(PKV_VERSION_PATCH));
  CHECK(version == PKV_EXPECTED_VERSION);
  CHECK(pkv_version_number() == PKV_VERSION_NUMBER);
  CHECK((pkv_features() & PKV_FEATURE_CPU) != 0);
  CHECK(std::string(pkv_gpu_targets()).empty() == cpu_only());
  CHECK(std::string(pkv_status_string(PKV_STATUS_BLOCK_ID_OUT_OF_RANGE)) == "PKV_STATUS_BLOCK_ID_OUT_OF_RANGE");
  CHECK(std::string(pkv_status_string(12345)) == "PKV_STATUS_UNKNOWN");
  uint32_t kind = 99;
  EXPECT_OK(pkv_kv_cache_dtype_from_string("fp8_e4m3fnuz", &kind));
  CHECK(kind == PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ);
  EXPECT_STATUS(pkv_kv_cache_dtype_from_string("fp9", &kind), PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE, "fp9");
  CHECK(std::string(pkv_last_error_message()).find("fp9") != std::string::npos);
  CHECK(kind == PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ);
}

// dlpack.h's DLTensor (see consumer.c for the layout).
struct DLTensorView {
  void *data;
  int32_t device_type;
  int32_t device_id;
  int32_t ndim;
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
};
static_assert(sizeof(DLTensorView) == 48, "DLTensor is 48 bytes on LP64");

void test_end_to_end() {
  constexpr int64_t nb = 4, bs = 16, hkv = 2, hq = 4, d = 64, x = 4;  // float32: x = 16 / 4
  constexpr int seq_len = 20, q_len = 4;                                // a 4-token chunk at the end
  const int32_t blocks[2] = {2, 0};                                     // logical block -> physical

  // The combined cache [2, nb, bs, hkv, d], poisoned with NaN, imported through DLPack.
  const size_t cache_elems = static_cast<size_t>(2 * nb * bs * hkv * d);
  float *cache = static_cast<float *>(buffer_new(cache_elems * sizeof(float), "kv_cache"));
  for (size_t i = 0; i < cache_elems; ++i) cache[i] = NAN;
  int64_t shape[5] = {2, nb, bs, hkv, d};
  DLTensorView dl{cache, 1, 0, 5, 2, 32, 1, shape, nullptr, 0};
  pkv_tensor kv;
  EXPECT_OK(pkv_tensor_from_dlpack(&dl, &kv));
  CHECK(kv.dtype == PKV_DTYPE_FLOAT32 && kv.ndim == 5 && kv.strides[1] == bs * hkv * d);

  pkv_tensor key_cache, value_cache;
  EXPECT_OK(pkv_split_kv_cache(&kv, hkv, d, &key_cache, &value_cache));
  CHECK(key_cache.shape[2] == d / x && key_cache.shape[3] == bs && key_cache.shape[4] == x);
  CHECK(value_cache.shape[2] == d && value_cache.shape[3] == bs);
  bool native = false;
  EXPECT_OK(pkv_has_native_layout(&key_cache, &value_cache, &native));
  CHECK(native);

  // The sequence's keys and values, written with the library's writer.
  std::vector<float> keys(static_cast<size_t>(seq_len * hkv * d)), values(keys.size());
  for (auto &k : keys) k = rng_uniform();
  for (auto &v : values) v = rng_uniform();
  std::vector<int64_t> slots(seq_len);
  for (int p = 0; p < seq_len; ++p) slots[static_cast<size_t>(p)] = blocks[p / bs] * bs + p % bs;
  pkv_tensor tk = tensor3(keys.data(), PKV_DTYPE_FLOAT32, seq_len, hkv, d);
  pkv_tensor tv = tensor3(values.data(), PKV_DTYPE_FLOAT32, seq_len, hkv, d);
  pkv_tensor ts = tensor1(slots.data(), PKV_DTYPE_INT64, seq_len);
  pkv_write_kv_cache_args w{};
  w.struct_size = sizeof w;
  w.kv_layout = PKV_KV_LAYOUT_SPLIT;
  w.key = &tk;
  w.value = &tv;
  w.key_cache = &key_cache;
  w.value_cache = &value_cache;
  w.slot_mapping = &ts;
  w.kv_cache_dtype = PKV_KV_CACHE_DTYPE_AUTO;
  uint32_t path = 0;
  EXPECT_OK(pkv_write_kv_cache(&w, nullptr, &path));
  CHECK(path == PKV_WRITE_PATH_NATIVE);
  // Spot-check the vLLM key layout: key (p = 17, head 1, dim 6) sits in block 0 at slot 1.
  const size_t k_index = static_cast<size_t>(0 * (bs * hkv * d) + 1 * (d * bs) + (6 / x) * (bs * x) + 1 * x + 6 % x);
  CHECK(cache[k_index] == keys[static_cast<size_t>((17 * hkv + 1) * d + 6)]);

  // Attention: sequence 0 is the 4-token chunk, sequence 1 a decode token over the same pages.
  const int num_tokens = q_len + 1;
  std::vector<float> query(static_cast<size_t>(num_tokens * hq * d));
  for (auto &q : query) q = rng_uniform();
  float *output = static_cast<float *>(buffer_new(query.size() * sizeof(float), "output"));
  for (size_t i = 0; i < query.size(); ++i) output[i] = NAN;
  std::vector<int32_t> table = {blocks[0], blocks[1], blocks[0], blocks[1]};
  std::vector<int32_t> seq_lens = {seq_len, seq_len - 3};
  std::vector<int32_t> qsl = {0, q_len, q_len + 1};
  pkv_tensor tq = tensor3(query.data(), PKV_DTYPE_FLOAT32, num_tokens, hq, d);
  pkv_tensor to = tensor3(output, PKV_DTYPE_FLOAT32, num_tokens, hq, d);
  pkv_tensor tt = tensor2(table.data(), PKV_DTYPE_INT32, 2, 2);
  pkv_tensor tl = tensor1(seq_lens.data(), PKV_DTYPE_INT32, 2);
  pkv_tensor tqsl = tensor1(qsl.data(), PKV_DTYPE_INT32, 3);
  pkv_paged_attention_args a{};
  a.struct_size = sizeof a;
  a.kv_layout = PKV_KV_LAYOUT_SPLIT;
  a.query = &tq;
  a.key_cache = &key_cache;
  a.value_cache = &value_cache;
  a.block_table = &tt;
  a.seq_lens = &tl;
  a.query_start_loc = &tqsl;
  a.output = &to;
  a.causal = 1;

  uint64_t workspace = 1;
  EXPECT_OK(pkv_paged_attention_workspace_size(&a, &workspace));
  CHECK(workspace == 0);
  pkv_attention_plan plan{};
  plan.struct_size = sizeof plan;
  EXPECT_OK(pkv_paged_attention_plan(&a, &plan));
  CHECK(plan.path == PKV_ATTENTION_PATH_CPU_REFERENCE);
  EXPECT_OK(pkv_paged_attention(&a, nullptr, 0, nullptr));

  // Reference: both sequences read the same logical keys (the decode one sees the first 17).
  std::vector<float> logical_k(2 * keys.size()), logical_v(2 * values.size());
  std::copy(keys.begin(), keys.end(), logical_k.begin());
  std::copy(keys.begin(), keys.end(), logical_k.begin() + static_cast<std::ptrdiff_t>(keys.size()));
  std::copy(values.begin(), values.end(), logical_v.begin());
  std::copy(values.begin(), values.end(), logical_v.begin() + static_cast<std::ptrdiff_t>(values.size()));
  ref_problem p{};
  p.num_seqs = 2;
  p.seq_lens = seq_lens.data();
  p.query_start_loc = qsl.data();
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  p.head_size = d;
  p.query = query.data();
  p.query_row_stride = hq * d;
  p.keys = logical_k.data();
  p.values = logical_v.data();
  p.max_seq_len = seq_len;
  p.causal = 1;
  std::vector<double> ref(query.size()), logits(seq_len);
  reference_attention(&p, ref.data(), logits.data());
  int bad = 0;
  for (size_t i = 0; i < query.size(); ++i) {
    const double err = std::fabs(static_cast<double>(output[i]) - ref[i]);
    if (!(err <= 1e-4 + 1e-4 * std::fabs(ref[i])) && bad++ < 5) {
      CHECKF(false, "output[%zu] = %.7g, reference %.7g", i, static_cast<double>(output[i]), ref[i]);
    }
  }
  CHECKF(bad == 0, "%d wrong output elements", bad);

  // What a gfx942 would run for the same call, and this build's device query.
  pkv_device_limits limits{};
  limits.struct_size = sizeof limits;
  limits.wave_size = 64;
  limits.shared_mem_per_block = limits.shared_mem_per_block_optin = 65536;
  limits.multiprocessor_count = 304;
  std::strcpy(limits.arch, "gfx942");
  pkv_attention_plan gpu_plan{};
  gpu_plan.struct_size = sizeof gpu_plan;
  EXPECT_OK(pkv_paged_attention_plan_for_device(&a, &limits, &gpu_plan));
  CHECK(gpu_plan.path != PKV_ATTENTION_PATH_CPU_REFERENCE && gpu_plan.shared_mem_bytes <= 65536);
  pkv_device_limits queried{};
  queried.struct_size = sizeof queried;
  const pkv_status s = pkv_device_limits_query(PKV_DEVICE_ROCM, 0, &queried);
  if (cpu_only()) {
    CHECK(s == PKV_STATUS_GPU_BACKEND_NOT_BUILT);
    CHECK(std::string(pkv_last_error_message()).find("GPU backend") != std::string::npos);
  }
}

}  // namespace

int main(int argc, char **argv) {
  static const test_case tests[] = {{"info", test_info}, {"end_to_end", test_end_to_end}};
  rng_seed(7);
  return run_tests(tests, static_cast<int>(sizeof tests / sizeof tests[0]), argc, argv);
}
