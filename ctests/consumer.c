/* A C11 consumer of the installed pagedkv: calls every exported function on host tensors and
 * checks the results against values computed here (cache addresses from the layout
 * definitions, fp8 bytes worked out by hand, attention in double precision), plus the error
 * paths. Outputs are poisoned before each call and every buffer has guard zones, so a
 * missing write, a stray write or a write past a tensor fails the test.
 *
 *   consumer_c [test-name]      (no name: run all)
 */

#include "reference.h"
#include "test_support.h"

#include <stdbool.h>

#ifndef PKV_EXPECTED_VERSION
#error "PKV_EXPECTED_VERSION (the CMake package's version) must be defined by the build"
#endif

static int cpu_only(void) { return (pkv_features() & (PKV_FEATURE_CUDA | PKV_FEATURE_ROCM)) == 0; }

/* ===== version, features, status strings, kv-cache dtype names ========================== */

static void test_version(void) {
  char expect[32];
  snprintf(expect, sizeof expect, "%d.%d.%d", PKV_VERSION_MAJOR, PKV_VERSION_MINOR, PKV_VERSION_PATCH);
  const char *v = pkv_version_string();
  CHECK(v != NULL);
  if (v == NULL) return;
  CHECKF(strcmp(v, expect) == 0, "pkv_version_string() = \"%s\", header macros say %s", v, expect);
  CHECKF(strcmp(v, PKV_EXPECTED_VERSION) == 0, "library %s, CMake package %s", v, PKV_EXPECTED_VERSION);
  CHECK(PKV_VERSION_NUMBER == PKV_VERSION_MAJOR * 10000 + PKV_VERSION_MINOR * 100 + PKV_VERSION_PATCH);
  CHECKF(pkv_version_number() == PKV_VERSION_NUMBER, "pkv_version_number() = %u, PKV_VERSION_NUMBER = %d",
         pkv_version_number(), PKV_VERSION_NUMBER);
  CHECK(v == pkv_version_string()); /* static storage */
}

static void test_features(void) {
  const uint32_t f = pkv_features();
  CHECKF((f & PKV_FEATURE_CPU) != 0, "features = %u", f);
  CHECKF((f & ~(uint32_t)(PKV_FEATURE_CPU | PKV_FEATURE_CUDA | PKV_FEATURE_ROCM)) == 0, "unknown bits in %u", f);
  CHECKF((f & PKV_FEATURE_CUDA) == 0 || (f & PKV_FEATURE_ROCM) == 0, "both GPU backends in %u", f);
  const char *targets = pkv_gpu_targets();
  CHECK(targets != NULL);
  if (targets == NULL) return;
  if (cpu_only()) {
    CHECKF(targets[0] == '\0', "CPU-only build lists GPU targets \"%s\"", targets);
  } else {
    CHECKF(targets[0] != '\0', "GPU build lists no GPU targets");
  }
  printf("  features = %u, gpu targets = \"%s\"\n", f, targets);
}

#define STATUS_ENTRY(s) {s, #s}

static void test_status_strings(void) {
  static const struct {
    uint32_t value;
    const char *name;
  } statuses[] = {
      STATUS_ENTRY(PKV_STATUS_OK),
      STATUS_ENTRY(PKV_STATUS_NULL_ARGUMENT),
      STATUS_ENTRY(PKV_STATUS_INVALID_STRUCT_SIZE),
      STATUS_ENTRY(PKV_STATUS_INVALID_ENUM),
      STATUS_ENTRY(PKV_STATUS_INVALID_DTYPE),
      STATUS_ENTRY(PKV_STATUS_INVALID_NDIM),
      STATUS_ENTRY(PKV_STATUS_SHAPE_MISMATCH),
      STATUS_ENTRY(PKV_STATUS_INVALID_STRIDE),
      STATUS_ENTRY(PKV_STATUS_DEVICE_MISMATCH),
      STATUS_ENTRY(PKV_STATUS_HEAD_SIZE_NOT_DIVISIBLE),
      STATUS_ENTRY(PKV_STATUS_GQA_RATIO_NOT_INTEGRAL),
      STATUS_ENTRY(PKV_STATUS_BLOCK_TABLE_TOO_SHORT),
      STATUS_ENTRY(PKV_STATUS_SLOT_OUT_OF_RANGE),
      STATUS_ENTRY(PKV_STATUS_BLOCK_ID_OUT_OF_RANGE),
      STATUS_ENTRY(PKV_STATUS_INVALID_SEQ_LEN),
      STATUS_ENTRY(PKV_STATUS_INVALID_QUERY_START_LOC),
      STATUS_ENTRY(PKV_STATUS_INVALID_VALUE),
      STATUS_ENTRY(PKV_STATUS_WORKSPACE_TOO_SMALL),
      STATUS_ENTRY(PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE),
      STATUS_ENTRY(PKV_STATUS_BUFFER_TOO_SMALL),
      STATUS_ENTRY(PKV_STATUS_UNSUPPORTED_HEAD_SIZE),
      STATUS_ENTRY(PKV_STATUS_UNSUPPORTED_CONFIGURATION),
      STATUS_ENTRY(PKV_STATUS_GPU_BACKEND_NOT_BUILT),
      STATUS_ENTRY(PKV_STATUS_UNSUPPORTED_DEVICE),
      STATUS_ENTRY(PKV_STATUS_SHARED_MEMORY_EXCEEDED),
      STATUS_ENTRY(PKV_STATUS_DEVICE_ERROR),
      STATUS_ENTRY(PKV_STATUS_LAUNCH_FAILED),
      STATUS_ENTRY(PKV_STATUS_NO_DEVICE),
      STATUS_ENTRY(PKV_STATUS_INTERNAL),
      STATUS_ENTRY(PKV_STATUS_PANIC),
  };
  const size_t n = sizeof statuses / sizeof statuses[0];
  for (size_t i = 0; i < n; ++i) {
    const char *s = pkv_status_string(statuses[i].value);
    CHECKF(s != NULL && strcmp(s, statuses[i].name) == 0, "pkv_status_string(%u) = \"%s\", expected \"%s\"",
           statuses[i].value, s ? s : "(NULL)", statuses[i].name);
    /* Groups: 0 ok, 1xx arguments, 2xx unsupported, 3xx device, 9xx internal. */
    const uint32_t v = statuses[i].value;
    CHECKF(v == 0 || (v >= 100 && v < 400) || (v >= 900 && v < 1000), "%s = %u outside the status ranges",
           statuses[i].name, v);
    for (size_t j = 0; j < i; ++j) CHECKF(statuses[j].value != v, "%s reuses %u", statuses[i].name, v);
  }
  static const uint32_t unknown[] = {1, 99, 119, 199, 205, 303, 899, 902, 1000, 0xFFFFFFFFu};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; ++i) {
    const char *s = pkv_status_string(unknown[i]);
    CHECKF(s != NULL && strcmp(s, "PKV_STATUS_UNKNOWN") == 0, "pkv_status_string(%u) = \"%s\"", unknown[i],
           s ? s : "(NULL)");
  }
}

static void test_kv_cache_dtype(void) {
  static const struct {
    const char *name;
    uint32_t value;
  } known[] = {
      {"auto", PKV_KV_CACHE_DTYPE_AUTO},
      {"fp8", PKV_KV_CACHE_DTYPE_FP8},
      {"fp8_e4m3", PKV_KV_CACHE_DTYPE_FP8_E4M3},
      {"fp8_e4m3fn", PKV_KV_CACHE_DTYPE_FP8_E4M3FN},
      {"fp8_e4m3fnuz", PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ},
      {"fp8_e5m2", PKV_KV_CACHE_DTYPE_FP8_E5M2},
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; ++i) {
    uint32_t out = 0xDEADu;
    EXPECT_OK(pkv_kv_cache_dtype_from_string(known[i].name, &out));
    CHECKF(out == known[i].value, "\"%s\" -> %u, expected %u", known[i].name, out, known[i].value);
  }
  static const char *const unknown[] = {"", "FP8", "fp8 ", "fp8-e4m3", "e4m3", "int4", "auto\t"};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; ++i) {
    uint32_t out = 0xDEADu;
    EXPECT_STATUS(pkv_kv_cache_dtype_from_string(unknown[i], &out), PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE,
                  "kv_cache_dtype");
    CHECKF(out == 0xDEADu, "out written on error for \"%s\"", unknown[i]);
  }
  uint32_t out = 0xDEADu;
  EXPECT_STATUS(pkv_kv_cache_dtype_from_string(NULL, &out), PKV_STATUS_NULL_ARGUMENT, "name");
  EXPECT_STATUS(pkv_kv_cache_dtype_from_string("auto", NULL), PKV_STATUS_NULL_ARGUMENT, "out");
  CHECK(out == 0xDEADu);
  /* A success clears the thread's last error. */
  EXPECT_OK(pkv_kv_cache_dtype_from_string("fp8", &out));
  CHECK(strcmp(pkv_last_error_message(), "") == 0);
}

/* ===== DLPack import ==================================================================== */

/* dlpack.h's DLTensor, written out by hand from its definition (v0.8 and later, v1.x):
 * DLDevice {DLDeviceType (a C enum, int-sized) device_type; int32_t device_id}, DLDataType
 * {uint8_t code; uint8_t bits; uint16_t lanes}. */
typedef struct dl_device {
  int32_t device_type; /* kDLCPU 1, kDLCUDA 2, kDLCUDAHost 3, kDLROCM 10 */
  int32_t device_id;
} dl_device;

typedef struct dl_data_type {
  uint8_t code; /* kDLInt 0, kDLUInt 1, kDLFloat 2, kDLBfloat 4, float8: 10 e4m3fn, 11 e4m3fnuz, 12 e5m2 */
  uint8_t bits;
  uint16_t lanes;
} dl_data_type;

typedef struct dl_tensor {
  void *data;
  dl_device device;
  int32_t ndim;
  dl_data_type dtype;
  int64_t *shape;
  int64_t *strides; /* NULL: row-major contiguous */
  uint64_t byte_offset;
} dl_tensor;

static dl_tensor make_dl(void *data, int32_t device_type, int32_t ndim, uint8_t code, uint8_t bits, int64_t *shape,
                         int64_t *strides, uint64_t byte_offset) {
  dl_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = device_type;
  t.device.device_id = 0;
  t.ndim = ndim;
  t.dtype.code = code;
  t.dtype.bits = bits;
  t.dtype.lanes = 1;
  t.shape = shape;
  t.strides = strides;
  t.byte_offset = byte_offset;
  return t;
}

static void test_dlpack(void) {
  CHECK(sizeof(dl_tensor) == 48 && offsetof(dl_tensor, byte_offset) == 40);
  unsigned char *mem = (unsigned char *)buffer_new(4096, "dlpack data");
  int64_t shape[3] = {4, 3, 8};

  /* float16, contiguous (strides NULL), with a byte offset. */
  dl_tensor dl = make_dl(mem, 1, 3, 2, 16, shape, NULL, 64);
  pkv_tensor t;
  EXPECT_OK(pkv_tensor_from_dlpack(&dl, &t));
  CHECK(t.dtype == PKV_DTYPE_FLOAT16 && t.ndim == 3 && t.device_type == PKV_DEVICE_CPU && t.device_id == 0);
  CHECK(tensor_base(&t) == mem + 64);
  CHECK(t.shape[0] == 4 && t.shape[1] == 3 && t.shape[2] == 8);
  CHECKF(t.strides[0] == 24 && t.strides[1] == 8 && t.strides[2] == 1, "strides %lld %lld %lld",
         (long long)t.strides[0], (long long)t.strides[1], (long long)t.strides[2]);

  /* Explicit (transposed) strides are kept. */
  int64_t strides[3] = {1, 32, 4};
  dl = make_dl(mem, 1, 3, 2, 32, shape, strides, 0);
  EXPECT_OK(pkv_tensor_from_dlpack(&dl, &t));
  CHECK(t.dtype == PKV_DTYPE_FLOAT32 && t.strides[0] == 1 && t.strides[1] == 32 && t.strides[2] == 4);
  CHECK(tensor_base(&t) == mem);

  /* Every dtype pagedkv knows. */
  static const struct {
    uint8_t code, bits;
    uint32_t dtype;
  } types[] = {{2, 32, PKV_DTYPE_FLOAT32},         {2, 16, PKV_DTYPE_FLOAT16},
               {4, 16, PKV_DTYPE_BFLOAT16},        {1, 8, PKV_DTYPE_UINT8},
               {0, 32, PKV_DTYPE_INT32},           {0, 64, PKV_DTYPE_INT64},
               {10, 8, PKV_DTYPE_FLOAT8_E4M3FN},   {11, 8, PKV_DTYPE_FLOAT8_E4M3FNUZ},
               {12, 8, PKV_DTYPE_FLOAT8_E5M2}};
  int64_t shape1[1] = {16};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; ++i) {
    dl = make_dl(mem, 1, 1, types[i].code, types[i].bits, shape1, NULL, 0);
    EXPECT_OK(pkv_tensor_from_dlpack(&dl, &t));
    CHECKF(t.dtype == types[i].dtype, "(code %u, bits %u) -> dtype %u, expected %u", types[i].code, types[i].bits,
           t.dtype, types[i].dtype);
  }
  /* GPU device codes pass through (described only, nothing is read). */
  dl = make_dl(mem, 10, 1, 2, 16, shape1, NULL, 0);
  dl.device.device_id = 3;
  EXPECT_OK(pkv_tensor_from_dlpack(&dl, &t));
  CHECK(t.device_type == PKV_DEVICE_ROCM && t.device_id == 3);
  dl = make_dl(mem, 2, 1, 2, 16, shape1, NULL, 0);
  EXPECT_OK(pkv_tensor_from_dlpack(&dl, &t));
  CHECK(t.device_type == PKV_DEVICE_CUDA);

  /* Errors leave *out alone. */
  pkv_tensor sentinel;
  memset(&sentinel, 0x5C, sizeof sentinel);
  t = sentinel;
  dl = make_dl(mem, 1, 1, 2, 64, shape1, NULL, 0); /* float64 */
  EXPECT_STATUS(pkv_tensor_from_dlpack(&dl, &t), PKV_STATUS_INVALID_DTYPE, "dtype");
  dl = make_dl(mem, 1, 1, 2, 16, shape1, NULL, 0);
  dl.dtype.lanes = 2;
  EXPECT_STATUS(pkv_tensor_from_dlpack(&dl, &t), PKV_STATUS_INVALID_DTYPE, "lanes");
  int64_t shape7[7] = {1, 1, 1, 1, 1, 1, 2};
  dl = make_dl(mem, 1, 7, 2, 16, shape7, NULL, 0);
  EXPECT_STATUS(pkv_tensor_from_dlpack(&dl, &t), PKV_STATUS_INVALID_NDIM, "ndim");
  dl = make_dl(mem, 1, -1, 2, 16, shape1, NULL, 0);
  EXPECT_STATUS(pkv_tensor_from_dlpack(&dl, &t), PKV_STATUS_INVALID_NDIM, "ndim");
  dl = make_dl(mem, 4, 1, 2, 16, shape1, NULL, 0); /* kDLOpenCL: not ours */
  EXPECT_STATUS(pkv_tensor_from_dlpack(&dl, &t), PKV_STATUS_INVALID_ENUM, "device");
  dl = make_dl(mem, 1, 1, 2, 16, NULL, NULL, 0);
  EXPECT_STATUS(pkv_tensor_from_dlpack(&dl, &t), PKV_STATUS_NULL_ARGUMENT, "shape");
  EXPECT_STATUS(pkv_tensor_from_dlpack(NULL, &t), PKV_STATUS_NULL_ARGUMENT, "dl_tensor");
  dl = make_dl(mem, 1, 1, 2, 16, shape1, NULL, 0);
  EXPECT_STATUS(pkv_tensor_from_dlpack(&dl, NULL), PKV_STATUS_NULL_ARGUMENT, "out");
  CHECK(memcmp(&t, &sentinel, sizeof t) == 0);
}

/* ===== combined caches: split and native-layout detection =============================== */

/* vLLM's ROCm allocation [2, num_blocks, block_size, H, D], K/V-first (strides
 * (nb*hidden, hidden, H*D, D, 1)) or hybrid blocks-first interleaved ((hidden, 2*hidden, ...)),
 * hidden = block_size*H*D. After the classic split, K element (b, h, d, t) is at
 * kbase(b) + h*D*bs + (d/x)*bs*x + t*x + d%x and V at vbase(b) + h*D*bs + d*bs + t. */
typedef struct combined {
  unsigned char *data;
  size_t bytes;
  size_t elem;
  uint32_t dtype;
  int64_t nb, bs, h, d, x;
  int64_t s0, s1; /* element strides of dims 0 (K/V) and 1 (block) */
  pkv_tensor kv;
} combined;

static combined combined_new(uint32_t dtype, int64_t nb, int64_t bs, int64_t h, int64_t d, int hybrid,
                             unsigned char poison) {
  combined c;
  memset(&c, 0, sizeof c);
  c.dtype = dtype;
  c.elem = dtype_size(dtype);
  c.nb = nb;
  c.bs = bs;
  c.h = h;
  c.d = d;
  c.x = 16 / (int64_t)c.elem;
  const int64_t hidden = bs * h * d;
  c.s0 = hybrid ? hidden : nb * hidden;
  c.s1 = hybrid ? 2 * hidden : hidden;
  c.bytes = (size_t)(2 * nb * hidden) * c.elem;
  c.data = (unsigned char *)buffer_new(c.bytes, hybrid ? "hybrid kv_cache" : "kv_cache");
  memset(c.data, poison, c.bytes);
  int64_t shape[5] = {2, nb, bs, h, d};
  int64_t strides[5] = {c.s0, c.s1, h * d, d, 1};
  c.kv = host_tensor(c.data, dtype, 5, shape, strides);
  return c;
}

static int64_t combined_key_offset(const combined *c, int64_t b, int64_t h, int64_t d, int64_t t) {
  return b * c->s1 + h * c->d * c->bs + (d / c->x) * c->bs * c->x + t * c->x + d % c->x;
}

static int64_t combined_value_offset(const combined *c, int64_t b, int64_t h, int64_t d, int64_t t) {
  return c->s0 + b * c->s1 + h * c->d * c->bs + d * c->bs + t;
}

static void check_split_views(const combined *c, const pkv_tensor *k, const pkv_tensor *v) {
  const int64_t x = c->x, bs = c->bs, d = c->d;
  CHECK(k->ndim == 5 && v->ndim == 4);
  CHECK(k->dtype == c->dtype && v->dtype == c->dtype);
  CHECK(k->device_type == PKV_DEVICE_CPU && v->device_type == PKV_DEVICE_CPU);
  const int64_t kshape[5] = {c->nb, c->h, d / x, bs, x};
  const int64_t kstrides[5] = {c->s1, d * bs, bs * x, x, 1};
  const int64_t vshape[4] = {c->nb, c->h, d, bs};
  const int64_t vstrides[4] = {c->s1, d * bs, bs, 1};
  for (int i = 0; i < 5; ++i) {
    CHECKF(k->shape[i] == kshape[i] && k->strides[i] == kstrides[i], "key dim %d: shape %lld stride %lld, expected %lld %lld",
           i, (long long)k->shape[i], (long long)k->strides[i], (long long)kshape[i], (long long)kstrides[i]);
  }
  for (int i = 0; i < 4; ++i) {
    CHECKF(v->shape[i] == vshape[i] && v->strides[i] == vstrides[i], "value dim %d: shape %lld stride %lld, expected %lld %lld",
           i, (long long)v->shape[i], (long long)v->strides[i], (long long)vshape[i], (long long)vstrides[i]);
  }
  CHECKF(tensor_base(k) == tensor_base(&c->kv), "key view starts %td bytes into the cache",
         tensor_base(k) - tensor_base(&c->kv));
  CHECKF(tensor_base(v) == tensor_base(&c->kv) + c->s0 * (int64_t)c->elem,
         "value view starts %td bytes into the cache, expected %lld", tensor_base(v) - tensor_base(&c->kv),
         (long long)(c->s0 * (int64_t)c->elem));
}

static void test_split(void) {
  pkv_tensor k, v;
  bool native = false;

  /* K/V-first float16 (x = 8): packed, native. */
  combined c = combined_new(PKV_DTYPE_FLOAT16, 3, 16, 2, 64, 0, 0);
  EXPECT_OK(pkv_split_kv_cache(&c.kv, 2, 64, &k, &v));
  check_split_views(&c, &k, &v);
  EXPECT_OK(pkv_has_native_layout(&k, &v, &native));
  CHECK(native == true);

  /* Hybrid interleaved float32 (x = 4), block 544: block stride doubled, value page offset by
   * hidden; not native. A byte offset on the input moves both views. */
  c = combined_new(PKV_DTYPE_FLOAT32, 2, 544, 2, 32, 1, 0);
  EXPECT_OK(pkv_split_kv_cache(&c.kv, 2, 32, &k, &v));
  check_split_views(&c, &k, &v);
  native = true;
  EXPECT_OK(pkv_has_native_layout(&k, &v, &native));
  CHECK(native == false);
  pkv_tensor shifted = c.kv;
  shifted.shape[1] = 1; /* one block fewer, so the shifted view stays inside the allocation */
  shifted.byte_offset = (uint64_t)(c.s1 * 4);
  EXPECT_OK(pkv_split_kv_cache(&shifted, 2, 32, &k, &v));
  CHECK(tensor_base(&k) == c.data + c.s1 * 4);
  CHECK(tensor_base(&v) == c.data + (c.s1 + c.s0) * 4);
  CHECK(k.shape[0] == 1 && k.strides[0] == c.s1);

  /* uint8 (fp8) caches: x = 16. */
  c = combined_new(PKV_DTYPE_UINT8, 4, 32, 1, 128, 0, 0);
  EXPECT_OK(pkv_split_kv_cache(&c.kv, 1, 128, &k, &v));
  check_split_views(&c, &k, &v);
  CHECK(k.shape[4] == 16);

  /* A 3-D [2, num_blocks, block elements] view is split by element count. */
  c = combined_new(PKV_DTYPE_BFLOAT16, 2, 16, 2, 64, 0, 0);
  int64_t shape3[3] = {2, 2, 16 * 2 * 64};
  int64_t strides3[3] = {c.s0, c.s1, 1};
  pkv_tensor flat = host_tensor(c.data, PKV_DTYPE_BFLOAT16, 3, shape3, strides3);
  EXPECT_OK(pkv_split_kv_cache(&flat, 2, 64, &k, &v));
  check_split_views(&c, &k, &v);

  /* Errors: nothing written. */
  pkv_tensor ks, vs;
  memset(&ks, 0x5C, sizeof ks);
  memset(&vs, 0x5C, sizeof vs);
  k = ks;
  v = vs;
  c = combined_new(PKV_DTYPE_FLOAT16, 2, 16, 2, 64, 0, 0);
  EXPECT_STATUS(pkv_split_kv_cache(&c.kv, 2, 60, &k, &v), PKV_STATUS_HEAD_SIZE_NOT_DIVISIBLE, "head_size");
  EXPECT_STATUS(pkv_split_kv_cache(&c.kv, 3, 64, &k, &v), PKV_STATUS_SHAPE_MISMATCH, "kv_cache");
  EXPECT_STATUS(pkv_split_kv_cache(&c.kv, 0, 64, &k, &v), PKV_STATUS_INVALID_VALUE, "num_kv_heads");
  pkv_tensor bad = c.kv;
  bad.shape[0] = 3;
  EXPECT_STATUS(pkv_split_kv_cache(&bad, 2, 64, &k, &v), PKV_STATUS_SHAPE_MISMATCH, "kv_cache");
  bad = c.kv;
  bad.strides[3] = 65; /* padded head: a block is not packed */
  EXPECT_STATUS(pkv_split_kv_cache(&bad, 2, 64, &k, &v), PKV_STATUS_INVALID_STRIDE, "kv_cache.strides");
  bad = c.kv;
  bad.ndim = 2;
  EXPECT_STATUS(pkv_split_kv_cache(&bad, 2, 64, &k, &v), PKV_STATUS_INVALID_NDIM, "kv_cache");
  bad = c.kv;
  bad.dtype = PKV_DTYPE_INT32;
  EXPECT_STATUS(pkv_split_kv_cache(&bad, 2, 64, &k, &v), PKV_STATUS_INVALID_DTYPE, "kv_cache");
  bad = c.kv;
  bad.dtype = 0;
  EXPECT_STATUS(pkv_split_kv_cache(&bad, 2, 64, &k, &v), PKV_STATUS_INVALID_ENUM, "kv_cache");
  bad = c.kv;
  bad.dtype = 42;
  EXPECT_STATUS(pkv_split_kv_cache(&bad, 2, 64, &k, &v), PKV_STATUS_INVALID_ENUM, "kv_cache");
  bad = c.kv;
  bad.device_type = 5;
  EXPECT_STATUS(pkv_split_kv_cache(&bad, 2, 64, &k, &v), PKV_STATUS_INVALID_ENUM, "kv_cache");
  bad = c.kv;
  bad.ndim = PKV_MAX_DIMS + 1;
  EXPECT_STATUS(pkv_split_kv_cache(&bad, 2, 64, &k, &v), PKV_STATUS_INVALID_NDIM, "kv_cache");
  bad = c.kv;
  bad.strides[1] = -1;
  EXPECT_STATUS(pkv_split_kv_cache(&bad, 2, 64, &k, &v), PKV_STATUS_INVALID_STRIDE, "kv_cache");
  bad = c.kv;
  bad.data = NULL;
  EXPECT_STATUS(pkv_split_kv_cache(&bad, 2, 64, &k, &v), PKV_STATUS_NULL_ARGUMENT, "kv_cache");
  CHECK(memcmp(&k, &ks, sizeof k) == 0 && memcmp(&v, &vs, sizeof v) == 0);

  /* has_native_layout errors. */
  EXPECT_OK(pkv_split_kv_cache(&c.kv, 2, 64, &k, &v));
  native = true;
  pkv_tensor one_d = tensor1(c.data, PKV_DTYPE_FLOAT16, 8);
  EXPECT_STATUS(pkv_has_native_layout(&one_d, &v, &native), PKV_STATUS_INVALID_NDIM, "key_cache");
  pkv_tensor gpu_v = v;
  gpu_v.device_type = PKV_DEVICE_ROCM;
  EXPECT_STATUS(pkv_has_native_layout(&k, &gpu_v, &native), PKV_STATUS_DEVICE_MISMATCH, "value_cache");
  CHECK(native == true);
  /* Only stride(0) matters: a padded block stride on either side makes it non-native. */
  pkv_tensor padded_v = v;
  padded_v.strides[0] += 16;
  EXPECT_OK(pkv_has_native_layout(&k, &padded_v, &native));
  CHECK(native == false);
}

/* ===== cache writes ===================================================================== */

/* Random finite bit patterns of a model dtype (the cache must receive them bit for bit). */
static void fill_model_values(void *dst, uint32_t dtype, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (dtype == PKV_DTYPE_FLOAT32) {
      ((float *)dst)[i] = rng_uniform() * 4.0f;
    } else {
      uint16_t b = (uint16_t)rng_next();
      if (dtype == PKV_DTYPE_FLOAT16 && ((b >> 10) & 0x1F) == 0x1F) b = (uint16_t)(b & ~0x4000);
      if (dtype == PKV_DTYPE_BFLOAT16 && ((b >> 7) & 0xFF) == 0xFF) b = (uint16_t)(b & ~0x4000);
      ((uint16_t *)dst)[i] = b;
    }
  }
}

/* `n` (>= 5) distinct slots in [0, num_slots): the first and last slot, -1 (skipped), a block
 * boundary, then random ones. */
static void make_slots(int64_t *slots, int n, int64_t num_slots, int64_t bs) {
  const int64_t fixed[5] = {0, num_slots - 1, -1, bs, bs - 1};
  for (int i = 0; i < n; ++i) {
    int64_t s = i < 5 ? fixed[i] : rng_below(num_slots);
    for (int j = 0; j < i; ++j) {
      if (slots[j] == s) {
        s = rng_below(num_slots);
        j = -1; /* start over */
      }
    }
    slots[i] = s;
  }
}

static void report_cache_difference(const char *label, const combined *c, const unsigned char *expected) {
  long diff = first_difference(c->data, expected, c->bytes);
  if (diff < 0) return;
  const int64_t e = diff / (long)c->elem;
  const int hybrid = c->s0 < c->s1;
  const int is_value = hybrid ? (e % c->s1) >= c->s0 : e >= c->s0;
  CHECKF(0, "%s: cache byte %ld (element %lld, in a %s page) is 0x%02x, expected 0x%02x", label, diff,
         (long long)e, is_value ? "value" : "key", c->data[diff], expected[diff]);
}

/* Writes `n` tokens (key has n + 1 rows: the last is past slot_mapping and must be ignored)
 * into a split cache made from a combined allocation, and compares the whole allocation with
 * the image computed here. */
static void split_write_case(const char *label, uint32_t dtype, int64_t nb, int64_t bs, int64_t h, int64_t d,
                             int hybrid, uint32_t expected_path) {
  const int n = 9;
  combined c = combined_new(dtype, nb, bs, h, d, hybrid, 0xA5);
  pkv_tensor kc, vc;
  EXPECT_OK(pkv_split_kv_cache(&c.kv, h, d, &kc, &vc));

  const size_t row = (size_t)(h * d);
  const size_t es = c.elem;
  unsigned char *key = (unsigned char *)buffer_new((size_t)(n + 1) * row * es, "key");
  unsigned char *value = (unsigned char *)buffer_new((size_t)(n + 1) * row * es, "value");
  int64_t *slots = (int64_t *)buffer_new((size_t)n * sizeof(int64_t), "slot_mapping");
  fill_model_values(key, dtype, (size_t)(n + 1) * row);
  fill_model_values(value, dtype, (size_t)(n + 1) * row);
  make_slots(slots, n, nb * bs, bs);

  unsigned char *expected = (unsigned char *)buffer_new(c.bytes, "expected cache");
  memcpy(expected, c.data, c.bytes);
  for (int i = 0; i < n; ++i) {
    if (slots[i] < 0) continue;
    const int64_t b = slots[i] / bs, t = slots[i] % bs;
    for (int64_t hh = 0; hh < h; ++hh) {
      for (int64_t dd = 0; dd < d; ++dd) {
        const size_t src = ((size_t)i * row + (size_t)(hh * d + dd)) * es;
        memcpy(expected + (size_t)combined_key_offset(&c, b, hh, dd, t) * es, key + src, es);
        memcpy(expected + (size_t)combined_value_offset(&c, b, hh, dd, t) * es, value + src, es);
      }
    }
  }
  unsigned char *key_copy = (unsigned char *)buffer_new((size_t)(n + 1) * row * es, "key copy");
  memcpy(key_copy, key, (size_t)(n + 1) * row * es);

  pkv_tensor tk = tensor3(key, dtype, n + 1, h, d);
  pkv_tensor tv = tensor3(value, dtype, n + 1, h, d);
  pkv_tensor ts = tensor1(slots, PKV_DTYPE_INT64, n);
  pkv_write_kv_cache_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.kv_layout = PKV_KV_LAYOUT_SPLIT;
  a.key = &tk;
  a.value = &tv;
  a.key_cache = &kc;
  a.value_cache = &vc;
  a.slot_mapping = &ts;
  a.kv_cache_dtype = PKV_KV_CACHE_DTYPE_AUTO;
  uint32_t path = 0;
  EXPECT_OK(pkv_write_kv_cache(&a, NULL, &path));
  CHECKF(path == expected_path, "%s: path %u, expected %u", label, path, expected_path);
  report_cache_difference(label, &c, expected);
  CHECKF(memcmp(key, key_copy, (size_t)(n + 1) * row * es) == 0, "%s: the key input was modified", label);
  /* path_taken may be NULL. */
  EXPECT_OK(pkv_write_kv_cache(&a, NULL, NULL));
  report_cache_difference(label, &c, expected);
}

static void test_write_native(void) {
  /* vLLM's ROCm writer case: packed split layout, block 16 and 32. */
  split_write_case("f16 block 16 K/V-first", PKV_DTYPE_FLOAT16, 6, 16, 2, 64, 0, PKV_WRITE_PATH_NATIVE);
  split_write_case("bf16 block 32 K/V-first", PKV_DTYPE_BFLOAT16, 3, 32, 4, 32, 0, PKV_WRITE_PATH_NATIVE);
}

static void test_write_strided(void) {
  /* Hybrid blocks-first interleaved pages with the Qwen3-Next block size. */
  split_write_case("f32 block 544 hybrid", PKV_DTYPE_FLOAT32, 3, 544, 1, 16, 1, PKV_WRITE_PATH_STRIDED);
  /* Block 16 but stride-padded: the packed writer would hit the wrong page. */
  split_write_case("f16 block 16 hybrid", PKV_DTYPE_FLOAT16, 5, 16, 2, 64, 1, PKV_WRITE_PATH_STRIDED);
  /* Packed but block 48: not a native-writer block size. */
  split_write_case("f16 block 48 K/V-first", PKV_DTYPE_FLOAT16, 3, 48, 2, 32, 0, PKV_WRITE_PATH_STRIDED);
}

static void test_write_nhd(void) {
  /* [num_blocks, block_size, H, D] with a padded block stride (pad elements stay untouched). */
  const int64_t nb = 5, bs = 48, h = 2, d = 24, pad = 40, n = 11;
  const int64_t sblk = bs * h * d + pad;
  const size_t bytes = (size_t)(nb * sblk) * 2;
  unsigned char *kbuf = (unsigned char *)buffer_new(bytes, "nhd key_cache");
  unsigned char *vbuf = (unsigned char *)buffer_new(bytes, "nhd value_cache");
  memset(kbuf, 0x5A, bytes);
  memset(vbuf, 0xC3, bytes);
  unsigned char *kexp = (unsigned char *)buffer_new(bytes, "expected key_cache");
  unsigned char *vexp = (unsigned char *)buffer_new(bytes, "expected value_cache");
  memcpy(kexp, kbuf, bytes);
  memcpy(vexp, vbuf, bytes);
  uint16_t *key = (uint16_t *)buffer_new((size_t)(n * h * d) * 2, "key");
  uint16_t *value = (uint16_t *)buffer_new((size_t)(n * h * d) * 2, "value");
  int64_t *slots = (int64_t *)buffer_new((size_t)n * 8, "slot_mapping");
  fill_model_values(key, PKV_DTYPE_BFLOAT16, (size_t)(n * h * d));
  fill_model_values(value, PKV_DTYPE_BFLOAT16, (size_t)(n * h * d));
  make_slots(slots, (int)n, nb * bs, bs);
  for (int64_t i = 0; i < n; ++i) {
    if (slots[i] < 0) continue;
    const int64_t b = slots[i] / bs, t = slots[i] % bs;
    for (int64_t e = 0; e < h * d; ++e) {
      const size_t dst = (size_t)(b * sblk + t * h * d + e) * 2;
      memcpy(kexp + dst, key + i * h * d + e, 2);
      memcpy(vexp + dst, value + i * h * d + e, 2);
    }
  }
  int64_t shape[4] = {nb, bs, h, d};
  int64_t strides[4] = {sblk, h * d, d, 1};
  pkv_tensor kc = host_tensor(kbuf, PKV_DTYPE_BFLOAT16, 4, shape, strides);
  pkv_tensor vc = host_tensor(vbuf, PKV_DTYPE_BFLOAT16, 4, shape, strides);
  pkv_tensor tk = tensor3(key, PKV_DTYPE_BFLOAT16, n, h, d);
  pkv_tensor tv = tensor3(value, PKV_DTYPE_BFLOAT16, n, h, d);
  pkv_tensor ts = tensor1(slots, PKV_DTYPE_INT64, n);
  pkv_write_kv_cache_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.kv_layout = PKV_KV_LAYOUT_NHD;
  a.key = &tk;
  a.value = &tv;
  a.key_cache = &kc;
  a.value_cache = &vc;
  a.slot_mapping = &ts;
  uint32_t path = 0;
  EXPECT_OK(pkv_write_kv_cache(&a, NULL, &path));
  CHECK(path == PKV_WRITE_PATH_STRIDED);
  long dk = first_difference(kbuf, kexp, bytes), dv = first_difference(vbuf, vexp, bytes);
  CHECKF(dk < 0, "nhd key_cache byte %ld differs", dk);
  CHECKF(dv < 0, "nhd value_cache byte %ld differs", dv);

  /* A packed NHD cache with block 16 still takes the stride-aware writer. */
  int64_t shape16[4] = {nb, 16, h, d};
  kc = host_tensor(kbuf, PKV_DTYPE_BFLOAT16, 4, shape16, NULL);
  vc = host_tensor(vbuf, PKV_DTYPE_BFLOAT16, 4, shape16, NULL);
  for (int64_t i = 0; i < n; ++i) slots[i] = i == 3 ? -1 : (i * 7) % (nb * 16);
  EXPECT_OK(pkv_write_kv_cache(&a, NULL, &path));
  CHECK(path == PKV_WRITE_PATH_STRIDED);
  CHECK(memcmp(kbuf + (size_t)(7 * h * d) * 2, key + 1 * h * d, (size_t)(h * d) * 2) == 0);
}

/* fp8: each element of a key row takes the next pair of a table of (input, expected byte),
 * worked out by hand from the formats (value / scale, round to nearest even, saturate). */
typedef struct fp8_pair {
  float in;
  uint8_t out;
} fp8_pair;

/* OCP e4m3fn (bias 7, max 448 = 0x7E, 0x7F NaN) with k_scale 2: the byte encodes in / 2. */
static const fp8_pair E4M3FN_K_SCALE2[] = {
    {2.0f, 0x38},       /* 1.0 */
    {3.0f, 0x3C},       /* 1.5 */
    {-2.5f, 0xBA},      /* -1.25 */
    {2.125f, 0x38},     /* 1.0625: tie between 1.0 and 1.125, even mantissa -> 1.0 */
    {2.375f, 0x3A},     /* 1.1875: tie between 1.125 and 1.25 -> 1.25 */
    {1000.0f, 0x7E},    /* 500 saturates to 448 */
    {-1000.0f, 0xFE},   /* -448 */
    {0.0f, 0x00},       /* +0 */
    {0.00390625f, 0x01}, /* 2^-9: the smallest subnormal */
    {0.5f, 0x28},       /* 0.25 = 2^-2 */
    {896.0f, 0x7E},     /* exactly 448 */
    {0.005859375f, 0x02}, /* 1.5 * 2^-9: tie between subnormals 1 and 2 -> 2 */
    {40.0f, 0x5A},      /* 20 = 1.25 * 16 */
    {-0.1f, 0x95},      /* -0.05 -> -13 * 2^-8 */
    {460.0f, 0x76},     /* 230 -> 224 */
    {-1e-4f, 0x80},     /* -5e-5 rounds to -0 */
};

/* e4m3fn with v_scale 0.5: the byte encodes in * 2. */
static const fp8_pair E4M3FN_V_SCALE_HALF[] = {
    {0.75f, 0x3C},  /* 1.5 */
    {100.0f, 0x74}, /* 200: tie between 192 and 208 -> 192 */
    {300.0f, 0x7E}, /* 600 saturates */
    {-0.5f, 0xB8},  /* -1.0 */
    {0.3f, 0x32},   /* 0.6 -> 0.625 */
    {7.0f, 0x56},   /* 14 */
    {0.001f, 0x01}, /* 0.002 -> 2^-9 */
    {-224.0f, 0xFE}, /* -448 */
    {232.0f, 0x7E}, /* 464: tie between 448 and 480 -> 448 */
    {240.0f, 0x7E}, /* 480 is not finite in e4m3fn: saturates */
};

/* e4m3fnuz (bias 8, max 240 = 0x7F, 0x80 NaN, no -0), scale 1. */
static const fp8_pair E4M3FNUZ_SCALE1[] = {
    {1.0f, 0x40}, {1.5f, 0x44}, {-1.0f, 0xC0}, {300.0f, 0x7F}, {-300.0f, 0xFF}, {240.0f, 0x7F},
    {-1e-6f, 0x00}, /* rounds to zero: fnuz has no negative zero */
    {0.0009765625f, 0x01}, /* 2^-10 */
};

/* OCP e5m2 (bias 15, max 57344 = 0x7B), scale 1: saturates instead of producing infinity. */
static const fp8_pair E5M2_SCALE1[] = {
    {1.0f, 0x3C}, {1.5f, 0x3E}, {-2.0f, 0xC0}, {1e6f, 0x7B}, {1.125f, 0x3C}, {1.375f, 0x3E},
    {1.52587890625e-05f, 0x01}, /* 2^-16 */
    {-57344.0f, 0xFB},
};

static void fp8_write_case(const char *label, uint32_t kv_cache_dtype, uint32_t cache_dtype, const fp8_pair *ktab,
                           size_t nk, float k_scale, const fp8_pair *vtab, size_t nv, float v_scale) {
  /* Packed split uint8 cache (x = 16): D = 32, one head, block 16, two blocks. */
  const int64_t nb = 2, bs = 16, h = 1, d = 32;
  const int n = 3;
  const int64_t slots_in[3] = {3, -1, 16 + 9};
  combined c = combined_new(PKV_DTYPE_UINT8, nb, bs, h, d, 0, 0xA5);
  c.kv.dtype = cache_dtype;
  c.dtype = cache_dtype;
  pkv_tensor kc, vc;
  EXPECT_OK(pkv_split_kv_cache(&c.kv, h, d, &kc, &vc));
  float *key = (float *)buffer_new((size_t)(n * d) * 4, "key");
  float *value = (float *)buffer_new((size_t)(n * d) * 4, "value");
  int64_t *slots = (int64_t *)buffer_new((size_t)n * 8, "slot_mapping");
  float *scales = (float *)buffer_new(2 * 4, "scales");
  scales[0] = k_scale;
  scales[1] = v_scale;
  memcpy(slots, slots_in, sizeof slots_in);
  unsigned char *expected = (unsigned char *)buffer_new(c.bytes, "expected cache");
  memcpy(expected, c.data, c.bytes);
  for (int i = 0; i < n; ++i) {
    for (int64_t dd = 0; dd < d; ++dd) {
      const fp8_pair kp = ktab[(size_t)(i * d + dd) % nk];
      const fp8_pair vp = vtab[(size_t)(i * d + dd) % nv];
      key[i * d + dd] = kp.in;
      value[i * d + dd] = vp.in;
      if (slots[i] < 0) continue;
      expected[combined_key_offset(&c, slots[i] / bs, 0, dd, slots[i] % bs)] = kp.out;
      expected[combined_value_offset(&c, slots[i] / bs, 0, dd, slots[i] % bs)] = vp.out;
    }
  }
  pkv_tensor tk = tensor3(key, PKV_DTYPE_FLOAT32, n, h, d);
  pkv_tensor tv = tensor3(value, PKV_DTYPE_FLOAT32, n, h, d);
  pkv_tensor ts = tensor1(slots, PKV_DTYPE_INT64, n);
  pkv_tensor tks = tensor1(&scales[0], PKV_DTYPE_FLOAT32, 1);
  pkv_tensor tvs = tensor1(&scales[1], PKV_DTYPE_FLOAT32, 1);
  pkv_write_kv_cache_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.kv_layout = PKV_KV_LAYOUT_SPLIT;
  a.key = &tk;
  a.value = &tv;
  a.key_cache = &kc;
  a.value_cache = &vc;
  a.slot_mapping = &ts;
  a.kv_cache_dtype = kv_cache_dtype;
  a.k_scale = k_scale == 1.0f ? NULL : &tks;
  a.v_scale = v_scale == 1.0f ? NULL : &tvs;
  uint32_t path = 0;
  EXPECT_OK(pkv_write_kv_cache(&a, NULL, &path));
  CHECKF(path == PKV_WRITE_PATH_NATIVE, "%s: path %u", label, path);
  for (size_t i = 0; i < c.bytes; ++i) {
    if (c.data[i] != expected[i]) {
      const int64_t half = (int64_t)i >= c.s0 ? 1 : 0;
      const int64_t within = ((int64_t)i - half * c.s0) % (bs * d);
      const int64_t dim = half ? within / bs : (within / (bs * 16)) * 16 + within % 16;
      const int64_t token = half ? within % bs : (within / 16) % bs;
      CHECKF(0, "%s: %s cache byte %zu (dim %lld, slot offset %lld) is 0x%02x, expected 0x%02x", label,
             half ? "value" : "key", i, (long long)dim, (long long)token, c.data[i], expected[i]);
      break;
    }
  }
}

#define TABLE(t) t, sizeof t / sizeof t[0]

static void test_write_fp8(void) {
  fp8_write_case("e4m3fn scales 2 / 0.5", PKV_KV_CACHE_DTYPE_FP8_E4M3FN, PKV_DTYPE_UINT8, TABLE(E4M3FN_K_SCALE2), 2.0f,
                 TABLE(E4M3FN_V_SCALE_HALF), 0.5f);
  /* "fp8" and "fp8_e4m3" mean OCP e4m3fn on the CPU. */
  fp8_write_case("fp8 (CPU: e4m3fn)", PKV_KV_CACHE_DTYPE_FP8, PKV_DTYPE_UINT8, TABLE(E4M3FN_K_SCALE2), 2.0f,
                 TABLE(E4M3FN_V_SCALE_HALF), 0.5f);
  fp8_write_case("fp8_e4m3 (CPU: e4m3fn)", PKV_KV_CACHE_DTYPE_FP8_E4M3, PKV_DTYPE_UINT8, TABLE(E4M3FN_K_SCALE2),
                 2.0f, TABLE(E4M3FN_V_SCALE_HALF), 0.5f);
  /* A typed float8 cache of the matching format. */
  fp8_write_case("e4m3fn typed cache", PKV_KV_CACHE_DTYPE_FP8_E4M3FN, PKV_DTYPE_FLOAT8_E4M3FN,
                 TABLE(E4M3FN_K_SCALE2), 2.0f, TABLE(E4M3FN_V_SCALE_HALF), 0.5f);
  fp8_write_case("e4m3fnuz, no scales", PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, PKV_DTYPE_UINT8, TABLE(E4M3FNUZ_SCALE1),
                 1.0f, TABLE(E4M3FNUZ_SCALE1), 1.0f);
  fp8_write_case("e5m2, no scales", PKV_KV_CACHE_DTYPE_FP8_E5M2, PKV_DTYPE_UINT8, TABLE(E5M2_SCALE1), 1.0f,
                 TABLE(E5M2_SCALE1), 1.0f);
}

/* A small valid write (f16, block 16, packed split) for the error tests. */
typedef struct write_fixture {
  combined c;
  unsigned char *image; /* the cache before the call */
  pkv_tensor kc, vc, key, value, slots, scale;
  int64_t *slot_values;
  pkv_write_kv_cache_args args;
} write_fixture;

static void write_fixture_init(write_fixture *f) {
  memset(f, 0, sizeof *f);
  f->c = combined_new(PKV_DTYPE_FLOAT16, 4, 16, 2, 64, 0, 0xA5);
  if (pkv_split_kv_cache(&f->c.kv, 2, 64, &f->kc, &f->vc) != PKV_STATUS_OK) CHECK(!"split failed");
  f->image = (unsigned char *)buffer_new(f->c.bytes, "cache image");
  memcpy(f->image, f->c.data, f->c.bytes);
  void *key = buffer_new(4 * 2 * 64 * 2, "key");
  void *value = buffer_new(4 * 2 * 64 * 2, "value");
  fill_model_values(key, PKV_DTYPE_FLOAT16, 4 * 2 * 64);
  fill_model_values(value, PKV_DTYPE_FLOAT16, 4 * 2 * 64);
  f->slot_values = (int64_t *)buffer_new(4 * 8, "slot_mapping");
  f->slot_values[0] = 0;
  f->slot_values[1] = 5;
  f->slot_values[2] = -1;
  f->slot_values[3] = 63;
  float *scale = (float *)buffer_new(4, "scale");
  scale[0] = 1.0f;
  f->key = tensor3(key, PKV_DTYPE_FLOAT16, 4, 2, 64);
  f->value = tensor3(value, PKV_DTYPE_FLOAT16, 4, 2, 64);
  f->slots = tensor1(f->slot_values, PKV_DTYPE_INT64, 4);
  f->scale = tensor1(scale, PKV_DTYPE_FLOAT32, 1);
  f->args.struct_size = sizeof f->args;
  f->args.kv_layout = PKV_KV_LAYOUT_SPLIT;
  f->args.key = &f->key;
  f->args.value = &f->value;
  f->args.key_cache = &f->kc;
  f->args.value_cache = &f->vc;
  f->args.slot_mapping = &f->slots;
  f->args.kv_cache_dtype = PKV_KV_CACHE_DTYPE_AUTO;
}

/* The call must fail with `status`, naming `needle`, and write nothing. */
static void expect_write_rejected(write_fixture *f, const pkv_write_kv_cache_args *a, uint32_t status,
                                  const char *needle, const char *what) {
  uint32_t path = 0xABCDu;
  if (!EXPECT_STATUS(pkv_write_kv_cache(a, NULL, &path), status, needle)) fprintf(stderr, "  (case: %s)\n", what);
  CHECKF(path == 0xABCDu, "%s: path_taken written on error", what);
  CHECKF(memcmp(f->c.data, f->image, f->c.bytes) == 0, "%s: the cache was modified by a failed call", what);
}

static void test_write_errors(void) {
  static write_fixture f;
  write_fixture_init(&f);
  pkv_write_kv_cache_args a;

  /* Sanity: the fixture is valid. */
  a = f.args;
  uint32_t path = 0;
  EXPECT_OK(pkv_write_kv_cache(&a, NULL, &path));
  memcpy(f.image, f.c.data, f.c.bytes);

  expect_write_rejected(&f, NULL, PKV_STATUS_NULL_ARGUMENT, "args", "args NULL");
  a = f.args;
  a.struct_size = (uint32_t)sizeof a - 8;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_STRUCT_SIZE, "struct_size", "struct_size too small");
  a.struct_size = 0;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_STRUCT_SIZE, "struct_size", "struct_size 0");
  a = f.args;
  a.kv_layout = 2;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_ENUM, "kv_layout", "kv_layout 2");
  a = f.args;
  a.kv_cache_dtype = 6;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_ENUM, "kv_cache_dtype", "kv_cache_dtype 6");

  /* A slot past the cache: nothing is written, not even the valid slots before it. */
  f.slot_values[3] = 4 * 16;
  a = f.args;
  expect_write_rejected(&f, &a, PKV_STATUS_SLOT_OUT_OF_RANGE, "slot_mapping[3]", "slot 64 of 64");
  f.slot_values[3] = 1000000;
  expect_write_rejected(&f, &a, PKV_STATUS_SLOT_OUT_OF_RANGE, "slot_mapping", "slot 1000000");
  f.slot_values[3] = 63;

  pkv_tensor t;
  a = f.args;
  t = f.key;
  t.dtype = PKV_DTYPE_INT32;
  a.key = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_DTYPE, "key", "int32 key");
  a = f.args;
  t = f.key;
  t.dtype = 0;
  a.key = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_ENUM, "key", "dtype 0");
  a = f.args;
  t = f.value;
  t.dtype = PKV_DTYPE_FLOAT32;
  a.value = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_DTYPE, "value", "value dtype differs from key");
  a = f.args;
  t = f.key;
  t.shape[1] = 3;
  a.key = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_SHAPE_MISMATCH, "key", "key heads differ from the cache");
  a = f.args;
  t = f.slots;
  t.shape[0] = 5;
  a.slot_mapping = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_SHAPE_MISMATCH, "slot_mapping", "slot_mapping longer than key");
  a = f.args;
  t = f.slots;
  t.dtype = PKV_DTYPE_INT32;
  a.slot_mapping = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_DTYPE, "slot_mapping", "int32 slot_mapping");
  a = f.args;
  t = f.key;
  t.ndim = 2;
  a.key = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_NDIM, "key", "2-D key");
  a = f.args;
  t = f.kc;
  t.device_type = PKV_DEVICE_ROCM;
  a.key_cache = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_DEVICE_MISMATCH, "key_cache", "key_cache on a GPU");
  a = f.args;
  a.kv_cache_dtype = PKV_KV_CACHE_DTYPE_FP8;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_DTYPE, "key_cache", "fp8 into a float16 cache");
  a = f.args;
  t = f.scale;
  t.dtype = PKV_DTYPE_FLOAT16;
  a.k_scale = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_DTYPE, "k_scale", "float16 k_scale");
  a = f.args;
  t = f.scale;
  t.shape[0] = 2;
  a.v_scale = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_SHAPE_MISMATCH, "v_scale", "2-element v_scale");
  a = f.args;
  t = f.kc;
  t.strides[1] = 0;
  a.key_cache = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_INVALID_STRIDE, "key_cache", "broadcast key_cache");
  a = f.args;
  t = f.key;
  t.data = NULL;
  a.key = &t;
  expect_write_rejected(&f, &a, PKV_STATUS_NULL_ARGUMENT, "key", "key.data NULL");
  /* An fp8 cache whose float8 dtype disagrees with kv_cache_dtype. */
  {
    static combined c8;
    c8 = combined_new(PKV_DTYPE_FLOAT8_E4M3FN, 2, 16, 2, 64, 0, 0x11);
    pkv_tensor k8, v8;
    EXPECT_OK(pkv_split_kv_cache(&c8.kv, 2, 64, &k8, &v8));
    unsigned char *before = (unsigned char *)buffer_new(c8.bytes, "fp8 image");
    memcpy(before, c8.data, c8.bytes);
    a = f.args;
    a.key_cache = &k8;
    a.value_cache = &v8;
    a.kv_cache_dtype = PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ;
    EXPECT_STATUS(pkv_write_kv_cache(&a, NULL, NULL), PKV_STATUS_INVALID_DTYPE, "key_cache");
    CHECK(memcmp(before, c8.data, c8.bytes) == 0);
  }

  /* GPU tensors in a CPU-only build. */
  if (cpu_only()) {
    pkv_tensor g[5] = {f.key, f.value, f.kc, f.vc, f.slots};
    for (int i = 0; i < 5; ++i) g[i].device_type = PKV_DEVICE_CUDA;
    a = f.args;
    a.key = &g[0];
    a.value = &g[1];
    a.key_cache = &g[2];
    a.value_cache = &g[3];
    a.slot_mapping = &g[4];
    expect_write_rejected(&f, &a, PKV_STATUS_GPU_BACKEND_NOT_BUILT, "GPU backend", "CUDA tensors, CPU-only build");
  }

  /* A larger struct_size (a newer caller's struct) is accepted. */
  struct {
    pkv_write_kv_cache_args args;
    unsigned char future[16];
  } bigger;
  memset(&bigger, 0, sizeof bigger);
  bigger.args = f.args;
  bigger.args.struct_size = sizeof bigger;
  EXPECT_OK(pkv_write_kv_cache(&bigger.args, NULL, &path));
}

/* ===== paged attention ================================================================== */

enum { NUM_SEQS = 3, HQ = 4, HKV = 2, HEAD = 32, MAX_LEN = 37 };
static const int32_t Q_LENS[NUM_SEQS] = {1, 5, 0}; /* a decode token, a prefill chunk, graph padding */
static const int32_t SEQ_LENS[NUM_SEQS] = {37, 29, 10};

typedef struct attn_config {
  const char *label;
  uint32_t layout;
  int64_t bs;
  int hybrid;        /* split layout: blocks-first K/V-interleaved pages */
  int64_t pad_block; /* nhd layout: extra elements per block */
  int64_t pad_row;   /* extra elements per query/output token row */
  int causal;
  float sm_scale;
  int32_t window;
  float soft_cap;
  int alibi, sinks;
  int padding; /* garbage in unused block_table columns and 2 token rows past the last sequence */
} attn_config;

typedef struct attn_fixture {
  attn_config cfg;
  int64_t nb, width, num_tokens, row_stride;
  int32_t *table, *seq_lens, *qsl;
  float *keys, *values; /* logical [seq][pos][HKV][HEAD] */
  float *query, *output, *alibi, *sinks;
  float *kbuf, *vbuf; /* cache memory (for split: vbuf == kbuf, one combined allocation) */
  size_t kbytes, vbytes, out_bytes;
  pkv_tensor t_query, t_key, t_value, t_table, t_seq_lens, t_qsl, t_output, t_alibi, t_sinks;
  pkv_paged_attention_args args;
} attn_fixture;

static void attn_fixture_init(attn_fixture *f, const attn_config *cfg) {
  memset(f, 0, sizeof *f);
  f->cfg = *cfg;
  const int64_t bs = cfg->bs, x = 4; /* float32 caches */
  int64_t used = 0, max_blocks = 0;
  for (int s = 0; s < NUM_SEQS; ++s) {
    const int64_t blocks = (SEQ_LENS[s] + bs - 1) / bs;
    used += blocks;
    if (blocks > max_blocks) max_blocks = blocks;
  }
  f->nb = used + 2; /* two spare blocks, never referenced by a used column */
  f->width = max_blocks + 1;
  f->num_tokens = cfg->padding ? 2 : 0; /* rows past query_start_loc[num_seqs]: never written */
  for (int s = 0; s < NUM_SEQS; ++s) f->num_tokens += Q_LENS[s];

  /* Batch description: a random permutation of physical blocks; unused columns point at a
   * NaN-filled spare block (valid id, never to be read). */
  f->table = (int32_t *)buffer_new((size_t)(NUM_SEQS * f->width) * 4, "block_table");
  f->seq_lens = (int32_t *)buffer_new(NUM_SEQS * 4, "seq_lens");
  f->qsl = (int32_t *)buffer_new((NUM_SEQS + 1) * 4, "query_start_loc");
  int32_t *perm = (int32_t *)buffer_new((size_t)f->nb * 4, "permutation");
  rng_permutation(perm, (int)f->nb);
  int next = 0;
  f->qsl[0] = 0;
  for (int s = 0; s < NUM_SEQS; ++s) {
    f->seq_lens[s] = SEQ_LENS[s];
    f->qsl[s + 1] = f->qsl[s] + Q_LENS[s];
    const int64_t blocks = (SEQ_LENS[s] + bs - 1) / bs;
    for (int64_t j = 0; j < f->width; ++j) {
      /* Columns past a sequence's blocks must never be read: garbage there with `padding`. */
      const int32_t unused = cfg->padding ? (j % 2 ? -1 : 0x7FFFFFFF) : perm[f->nb - 1];
      f->table[s * f->width + j] = j < blocks ? perm[next++] : unused;
    }
  }

  /* Logical keys/values and the query. */
  const size_t logical = (size_t)NUM_SEQS * MAX_LEN * HKV * HEAD;
  f->keys = (float *)buffer_new(logical * 4, "logical keys");
  f->values = (float *)buffer_new(logical * 4, "logical values");
  for (size_t i = 0; i < logical; ++i) {
    f->keys[i] = rng_uniform();
    f->values[i] = rng_uniform();
  }
  f->row_stride = HQ * HEAD + cfg->pad_row;
  const size_t rows_bytes = (size_t)(f->num_tokens * f->row_stride) * 4;
  f->query = (float *)buffer_new(rows_bytes, "query");
  f->output = (float *)buffer_new(rows_bytes, "output");
  f->out_bytes = rows_bytes;
  for (int64_t i = 0; i < f->num_tokens * f->row_stride; ++i) {
    f->query[i] = (i % f->row_stride) < HQ * HEAD ? rng_uniform() * 2.0f : NAN;
    f->output[i] = NAN;
  }
  f->alibi = (float *)buffer_new(HQ * 4, "alibi_slopes");
  f->sinks = (float *)buffer_new(HQ * 4, "sinks");
  for (int h = 0; h < HQ; ++h) {
    f->alibi[h] = 0.5f / (float)(1 << h);
    f->sinks[h] = (float)h - 1.5f;
  }

  /* The cache, NaN everywhere, then each sequence's tokens at its pages. */
  int64_t kstride[5], vstride[4], kshape[5], vshape[4];
  int64_t voff = 0;
  const int64_t hidden = bs * HKV * HEAD;
  if (cfg->layout == PKV_KV_LAYOUT_SPLIT) {
    const int64_t s0 = cfg->hybrid ? hidden : f->nb * hidden, s1 = cfg->hybrid ? 2 * hidden : hidden;
    f->kbytes = (size_t)(2 * f->nb * hidden) * 4;
    f->kbuf = (float *)buffer_new(f->kbytes, "kv_cache");
    f->vbuf = f->kbuf;
    voff = s0;
    const int64_t ks[5] = {f->nb, HKV, HEAD / x, bs, x}, kst[5] = {s1, HEAD * bs, bs * x, x, 1};
    const int64_t vs[4] = {f->nb, HKV, HEAD, bs}, vst[4] = {s1, HEAD * bs, bs, 1};
    memcpy(kshape, ks, sizeof ks);
    memcpy(kstride, kst, sizeof kst);
    memcpy(vshape, vs, sizeof vs);
    memcpy(vstride, vst, sizeof vst);
  } else {
    const int64_t sblk = hidden + cfg->pad_block;
    f->kbytes = f->vbytes = (size_t)(f->nb * sblk) * 4;
    f->kbuf = (float *)buffer_new(f->kbytes, "key_cache");
    f->vbuf = (float *)buffer_new(f->vbytes, "value_cache");
    const int64_t s[4] = {f->nb, bs, HKV, HEAD}, st[4] = {sblk, HKV * HEAD, HEAD, 1};
    memcpy(kshape, s, sizeof s);
    memcpy(kstride, st, sizeof st);
    memcpy(vshape, s, sizeof s);
    memcpy(vstride, st, sizeof st);
  }
  for (size_t i = 0; i < f->kbytes / 4; ++i) f->kbuf[i] = NAN;
  for (size_t i = 0; f->vbuf != f->kbuf && i < f->vbytes / 4; ++i) f->vbuf[i] = NAN;
  for (int s = 0; s < NUM_SEQS; ++s) {
    for (int64_t p = 0; p < SEQ_LENS[s]; ++p) {
      const int64_t b = f->table[s * f->width + p / bs], t = p % bs;
      for (int64_t h = 0; h < HKV; ++h) {
        for (int64_t d = 0; d < HEAD; ++d) {
          const size_t src = (((size_t)s * MAX_LEN + (size_t)p) * HKV + (size_t)h) * HEAD + (size_t)d;
          int64_t ko, vo;
          if (cfg->layout == PKV_KV_LAYOUT_SPLIT) {
            ko = b * kstride[0] + h * kstride[1] + (d / x) * kstride[2] + t * kstride[3] + d % x;
            vo = voff + b * vstride[0] + h * vstride[1] + d * vstride[2] + t;
          } else {
            ko = vo = b * kstride[0] + t * kstride[1] + h * kstride[2] + d;
          }
          f->kbuf[ko] = f->keys[src];
          f->vbuf[vo] = f->values[src];
        }
      }
    }
  }

  const uint32_t layout_ndim = cfg->layout == PKV_KV_LAYOUT_SPLIT ? 5 : 4;
  f->t_key = host_tensor(f->kbuf, PKV_DTYPE_FLOAT32, layout_ndim, kshape, kstride);
  f->t_value = host_tensor(f->vbuf + voff, PKV_DTYPE_FLOAT32, 4, vshape,
                           vstride);
  const int64_t qshape[3] = {f->num_tokens, HQ, HEAD}, qstride[3] = {f->row_stride, HEAD, 1};
  f->t_query = host_tensor(f->query, PKV_DTYPE_FLOAT32, 3, qshape, qstride);
  f->t_output = host_tensor(f->output, PKV_DTYPE_FLOAT32, 3, qshape, qstride);
  f->t_table = tensor2(f->table, PKV_DTYPE_INT32, NUM_SEQS, f->width);
  f->t_seq_lens = tensor1(f->seq_lens, PKV_DTYPE_INT32, NUM_SEQS);
  f->t_qsl = tensor1(f->qsl, PKV_DTYPE_INT32, NUM_SEQS + 1);
  f->t_alibi = tensor1(f->alibi, PKV_DTYPE_FLOAT32, HQ);
  f->t_sinks = tensor1(f->sinks, PKV_DTYPE_FLOAT32, HQ);

  pkv_paged_attention_args *a = &f->args;
  a->struct_size = sizeof *a;
  a->kv_layout = cfg->layout;
  a->query = &f->t_query;
  a->key_cache = &f->t_key;
  a->value_cache = &f->t_value;
  a->block_table = &f->t_table;
  a->seq_lens = &f->t_seq_lens;
  a->query_start_loc = &f->t_qsl;
  a->output = &f->t_output;
  a->kv_cache_dtype = PKV_KV_CACHE_DTYPE_AUTO;
  a->causal = (uint32_t)cfg->causal;
  a->alibi_slopes = cfg->alibi ? &f->t_alibi : NULL;
  a->sinks = cfg->sinks ? &f->t_sinks : NULL;
  a->sm_scale = cfg->sm_scale;
  a->sliding_window = cfg->window;
  a->logits_soft_cap = cfg->soft_cap;
}

static void attention_case(const attn_config *cfg) {
  static attn_fixture f;
  attn_fixture_init(&f, cfg);
  double *ref = (double *)buffer_new((size_t)(f.num_tokens * HQ * HEAD) * sizeof(double), "reference");
  double *scratch = (double *)buffer_new(MAX_LEN * sizeof(double), "logits");
  ref_problem p;
  memset(&p, 0, sizeof p);
  p.num_seqs = NUM_SEQS;
  p.seq_lens = f.seq_lens;
  p.query_start_loc = f.qsl;
  p.num_q_heads = HQ;
  p.num_kv_heads = HKV;
  p.head_size = HEAD;
  p.query = f.query;
  p.query_row_stride = f.row_stride;
  p.keys = f.keys;
  p.values = f.values;
  p.max_seq_len = MAX_LEN;
  p.sm_scale = cfg->sm_scale;
  p.causal = cfg->causal;
  p.sliding_window = cfg->window;
  p.soft_cap = cfg->soft_cap;
  p.alibi_slopes = cfg->alibi ? f.alibi : NULL;
  p.sinks = cfg->sinks ? f.sinks : NULL;
  reference_attention(&p, ref, scratch);

  uint64_t ws = 0xFFFF;
  EXPECT_OK(pkv_paged_attention_workspace_size(&f.args, &ws));
  CHECKF(ws == 0, "%s: host attention asks for %llu workspace bytes", cfg->label, (unsigned long long)ws);
  EXPECT_OK(pkv_paged_attention(&f.args, NULL, 0, NULL));

  double worst = 0.0;
  int bad = 0;
  for (int64_t t = 0; t < f.num_tokens; ++t) {
    for (int64_t i = 0; i < f.row_stride; ++i) {
      const float got = f.output[t * f.row_stride + i];
      if (i >= HQ * HEAD || t >= f.qsl[NUM_SEQS]) { /* padding: must still hold the poison */
        if (!isnan(got) && bad++ < 5) CHECKF(0, "%s: output padding [%lld][%lld] was written", cfg->label,
                                               (long long)t, (long long)i);
        continue;
      }
      const double want = ref[t * HQ * HEAD + i];
      const double err = fabs((double)got - want);
      if (!(err <= 1e-4 + 1e-4 * fabs(want))) {
        if (bad++ < 5) {
          CHECKF(0, "%s: output[token %lld][head %lld][dim %lld] = %.7g, reference %.7g", cfg->label, (long long)t,
                 (long long)(i / HEAD), (long long)(i % HEAD), (double)got, want);
        }
      } else if (err > worst) {
        worst = err;
      }
    }
  }
  CHECKF(bad == 0, "%s: %d output elements wrong (first shown above)", cfg->label, bad);
  printf("  %-44s max |error| %.2e\n", cfg->label, worst);
}

static void test_attention(void) {
  static const attn_config configs[] = {
      /* label, layout, bs, hybrid, pad_block, pad_row, causal, sm_scale, window, soft_cap, alibi, sinks,
       * padding */
      {"split, block 16, K/V-first", PKV_KV_LAYOUT_SPLIT, 16, 0, 0, 0, 1, 0.0f, 0, 0.0f, 0, 0, 0},
      {"split, block 48, hybrid, padded rows", PKV_KV_LAYOUT_SPLIT, 48, 1, 0, 8, 1, 0.0f, 0, 0.0f, 0, 0, 0},
      {"nhd, block 48, padded blocks", PKV_KV_LAYOUT_NHD, 48, 0, 24, 0, 1, 0.0f, 0, 0.0f, 0, 0, 0},
      {"nhd, block 16, non-causal", PKV_KV_LAYOUT_NHD, 16, 0, 0, 4, 0, 0.0f, 0, 0.0f, 0, 0, 0},
      {"split, block 16, window 8, soft-cap 2, sm_scale 0.3", PKV_KV_LAYOUT_SPLIT, 16, 0, 0, 0, 1, 0.3f, 8, 2.0f, 0, 0, 0},
      {"split, block 48, ALiBi and sinks", PKV_KV_LAYOUT_SPLIT, 48, 1, 0, 0, 1, 0.0f, 0, 0.0f, 1, 1, 0},
      {"split, block 16, padded table and token rows", PKV_KV_LAYOUT_SPLIT, 16, 0, 0, 0, 1, 0.0f, 0, 0.0f, 0, 0, 1},
  };
  for (size_t i = 0; i < sizeof configs / sizeof configs[0]; ++i) {
    attention_case(&configs[i]);
    buffers_release();
  }
}

/* OCP e4m3fn decoding (bias 7, 3 mantissa bits, S.1111.111 NaN), written from the format. */
static double e4m3fn_decode(uint8_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return NAN;
  const double v = e == 0 ? m * ldexp(1.0, -9) : (8 + m) * ldexp(1.0, e - 10);
  return (b & 0x80) ? -v : v;
}

/* fp8 end to end on the host: keys and values written into a uint8 e4m3fn cache with scales
 * (unused slots hold 0x7F, an e4m3fn NaN), attention over it with the same scales checked
 * against the reference over the dequantised bytes, then the same with an fp8 output
 * (output_scale): every output byte must be the e4m3fn value nearest to reference / scale. */
static void test_attention_fp8(void) {
  enum { NB = 6, BS = 16, H = 2, Q = 4, D = 32, SEQS = 2, MAXL = 21, T = 4 };
  const int32_t seq_lens[SEQS] = {21, 18}, qsl[SEQS + 1] = {0, 1, 4}, table[SEQS][2] = {{4, 1}, {0, 5}};
  const float k_scale = 0.5f, v_scale = 0.25f, out_scale = 0.05f;
  combined c = combined_new(PKV_DTYPE_UINT8, NB, BS, H, D, 0, 0x7F);
  pkv_tensor kc, vc;
  EXPECT_OK(pkv_split_kv_cache(&c.kv, H, D, &kc, &vc));

  /* Write every token of both sequences. */
  float *key = (float *)buffer_new(SEQS * MAXL * H * D * 4, "key");
  float *value = (float *)buffer_new(SEQS * MAXL * H * D * 4, "value");
  int64_t *slots = (int64_t *)buffer_new(SEQS * MAXL * 8, "slot_mapping");
  float *scalars = (float *)buffer_new(3 * 4, "scales");
  scalars[0] = k_scale;
  scalars[1] = v_scale;
  scalars[2] = out_scale;
  for (int i = 0; i < SEQS * MAXL * H * D; ++i) {
    key[i] = rng_uniform();
    value[i] = rng_uniform();
  }
  for (int s = 0; s < SEQS; ++s) {
    for (int p = 0; p < MAXL; ++p) slots[s * MAXL + p] = p < seq_lens[s] ? table[s][p / BS] * BS + p % BS : -1;
  }
  pkv_tensor tk = tensor3(key, PKV_DTYPE_FLOAT32, SEQS * MAXL, H, D);
  pkv_tensor tv = tensor3(value, PKV_DTYPE_FLOAT32, SEQS * MAXL, H, D);
  pkv_tensor ts = tensor1(slots, PKV_DTYPE_INT64, SEQS * MAXL);
  pkv_tensor tks = tensor1(&scalars[0], PKV_DTYPE_FLOAT32, 1);
  pkv_tensor tvs = tensor1(&scalars[1], PKV_DTYPE_FLOAT32, 1);
  pkv_tensor tos = tensor1(&scalars[2], PKV_DTYPE_FLOAT32, 1);
  pkv_write_kv_cache_args w;
  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  w.kv_layout = PKV_KV_LAYOUT_SPLIT;
  w.key = &tk;
  w.value = &tv;
  w.key_cache = &kc;
  w.value_cache = &vc;
  w.slot_mapping = &ts;
  w.kv_cache_dtype = PKV_KV_CACHE_DTYPE_FP8_E4M3FN;
  w.k_scale = &tks;
  w.v_scale = &tvs;
  EXPECT_OK(pkv_write_kv_cache(&w, NULL, NULL));

  /* What the cache now holds, dequantised by hand; each byte within half an fp8 step. */
  float *kdq = (float *)buffer_new(SEQS * MAXL * H * D * 4, "dequantised keys");
  float *vdq = (float *)buffer_new(SEQS * MAXL * H * D * 4, "dequantised values");
  int far = 0;
  for (int s = 0; s < SEQS; ++s) {
    for (int p = 0; p < seq_lens[s]; ++p) {
      const int64_t b = table[s][p / BS], t = p % BS;
      for (int h = 0; h < H; ++h) {
        for (int d = 0; d < D; ++d) {
          const int i = ((s * MAXL + p) * H + h) * D + d;
          const double kq = e4m3fn_decode(c.data[combined_key_offset(&c, b, h, d, t)]);
          const double vq = e4m3fn_decode(c.data[combined_value_offset(&c, b, h, d, t)]);
          kdq[i] = (float)(kq * k_scale);
          vdq[i] = (float)(vq * v_scale);
          far += fabs(kq - key[i] / k_scale) > fabs(key[i] / k_scale) / 16 + ldexp(1.0, -10);
          far += fabs(vq - value[i] / v_scale) > fabs(value[i] / v_scale) / 16 + ldexp(1.0, -10);
        }
      }
    }
  }
  CHECKF(far == 0, "%d cached fp8 bytes are not within half a step of value / scale", far);

  float *query = (float *)buffer_new(T * Q * D * 4, "query");
  float *output = (float *)buffer_new(T * Q * D * 4, "output");
  uint8_t *output8 = (uint8_t *)buffer_new(T * Q * D, "fp8 output");
  for (int i = 0; i < T * Q * D; ++i) {
    query[i] = rng_uniform() * 3.0f;
    output[i] = NAN;
  }
  memset(output8, 0x7F, T * Q * D);
  int32_t *ints = (int32_t *)buffer_new(16 * 4, "batch");
  memcpy(ints, table, sizeof table);
  memcpy(ints + 4, seq_lens, sizeof seq_lens);
  memcpy(ints + 6, qsl, sizeof qsl);
  pkv_tensor tq = tensor3(query, PKV_DTYPE_FLOAT32, T, Q, D);
  pkv_tensor to = tensor3(output, PKV_DTYPE_FLOAT32, T, Q, D);
  pkv_tensor to8 = tensor3(output8, PKV_DTYPE_UINT8, T, Q, D);
  pkv_tensor tt = tensor2(ints, PKV_DTYPE_INT32, SEQS, 2);
  pkv_tensor tl = tensor1(ints + 4, PKV_DTYPE_INT32, SEQS);
  pkv_tensor tqsl = tensor1(ints + 6, PKV_DTYPE_INT32, SEQS + 1);
  pkv_paged_attention_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.kv_layout = PKV_KV_LAYOUT_SPLIT;
  a.query = &tq;
  a.key_cache = &kc;
  a.value_cache = &vc;
  a.block_table = &tt;
  a.seq_lens = &tl;
  a.query_start_loc = &tqsl;
  a.output = &to;
  a.kv_cache_dtype = PKV_KV_CACHE_DTYPE_FP8_E4M3FN;
  a.causal = 1;
  a.k_scale = &tks;
  a.v_scale = &tvs;
  EXPECT_OK(pkv_paged_attention(&a, NULL, 0, NULL));

  ref_problem p;
  memset(&p, 0, sizeof p);
  p.num_seqs = SEQS;
  p.seq_lens = seq_lens;
  p.query_start_loc = qsl;
  p.num_q_heads = Q;
  p.num_kv_heads = H;
  p.head_size = D;
  p.query = query;
  p.query_row_stride = Q * D;
  p.keys = kdq;
  p.values = vdq;
  p.max_seq_len = MAXL;
  p.causal = 1;
  double *ref = (double *)buffer_new(T * Q * D * sizeof(double), "reference");
  double *scratch = (double *)buffer_new(MAXL * sizeof(double), "logits");
  reference_attention(&p, ref, scratch);
  int bad = 0;
  for (int i = 0; i < T * Q * D; ++i) {
    if (!(fabs((double)output[i] - ref[i]) <= 1e-4 + 1e-4 * fabs(ref[i])) && bad++ < 5) {
      CHECKF(0, "fp8 cache: output[%d] = %.7g, reference %.7g", i, (double)output[i], ref[i]);
    }
  }
  CHECKF(bad == 0, "fp8 cache: %d output elements wrong", bad);

  /* fp8 output: out byte = e4m3fn(out / output_scale), the nearest value (ties either way). */
  a.output = &to8;
  a.output_scale = &tos;
  EXPECT_OK(pkv_paged_attention(&a, NULL, 0, NULL));
  bad = 0;
  for (int i = 0; i < T * Q * D; ++i) {
    const double r = ref[i] / out_scale, got = e4m3fn_decode(output8[i]);
    const double slack = 1e-4 * fabs(r) + 1e-6;
    int ok = !isnan(got);
    if (ok && fabs(r) >= 448.0) {
      ok = fabs(got) == 448.0 && (got > 0) == (r > 0);
    } else if (ok) {
      for (int delta = -1; delta <= 1; delta += 2) { /* no neighbouring code is nearer */
        const int code = (int)(output8[i] & 0x7F) + delta;
        if (code < 0 || code > 0x7E) continue;
        const double other = e4m3fn_decode((uint8_t)((output8[i] & 0x80) | code));
        ok &= fabs(got - r) <= fabs(other - r) + slack;
      }
      ok &= fabs(got - r) <= fabs(-got - r) + slack; /* and the sign is right */
    }
    if (!ok && bad++ < 5) {
      CHECKF(0, "fp8 output[%d] = 0x%02x (%g), reference / scale = %.7g", i, output8[i], got, r);
    }
  }
  CHECKF(bad == 0, "fp8 output: %d bytes are not the nearest e4m3fn value", bad);
}

static void fill_plan_poison(pkv_attention_plan *plan) {
  memset(plan, 0x77, sizeof *plan);
  plan->struct_size = sizeof *plan;
}

static void test_attention_plan(void) {
  static attn_fixture f;
  static const attn_config cfg = {"plan", PKV_KV_LAYOUT_SPLIT, 16, 0, 0, 0, 1, 0.0f, 0, 0.0f, 0, 0, 0};
  attn_fixture_init(&f, &cfg);
  pkv_attention_plan plan;
  fill_plan_poison(&plan);
  EXPECT_OK(pkv_paged_attention_plan(&f.args, &plan));
  CHECK(plan.struct_size == sizeof plan);
  CHECKF(plan.path == PKV_ATTENTION_PATH_CPU_REFERENCE, "path %u", plan.path);
  CHECK(plan.num_splits == 1 && plan.workspace_bytes == 0);
  CHECK(memchr(plan.reason, '\0', sizeof plan.reason) != NULL && plan.reason[0] != '\0');
  printf("  host plan: path %u, reason \"%s\"\n", plan.path, plan.reason);
  uint64_t ws = 1;
  EXPECT_OK(pkv_paged_attention_workspace_size(&f.args, &ws));
  CHECK(ws == plan.workspace_bytes);

  /* A newer caller's larger plan struct: accepted, bytes past this version's fields untouched. */
  struct {
    pkv_attention_plan plan;
    unsigned char future[32];
  } bigger;
  memset(&bigger, 0x77, sizeof bigger);
  bigger.plan.struct_size = sizeof bigger;
  EXPECT_OK(pkv_paged_attention_plan(&f.args, &bigger.plan));
  CHECK(bigger.plan.struct_size == sizeof bigger);
  int untouched = 1;
  for (size_t i = 0; i < sizeof bigger.future; ++i) untouched &= bigger.future[i] == 0x77;
  CHECK(untouched);

  /* Errors: plan untouched. */
  pkv_attention_plan before;
  fill_plan_poison(&plan);
  plan.struct_size = sizeof plan - 8;
  before = plan;
  EXPECT_STATUS(pkv_paged_attention_plan(&f.args, &plan), PKV_STATUS_INVALID_STRUCT_SIZE, "plan");
  CHECK(memcmp(&plan, &before, sizeof plan) == 0);
  fill_plan_poison(&plan);
  before = plan;
  EXPECT_STATUS(pkv_paged_attention_plan(NULL, &plan), PKV_STATUS_NULL_ARGUMENT, "args");
  EXPECT_STATUS(pkv_paged_attention_plan(&f.args, NULL), PKV_STATUS_NULL_ARGUMENT, "plan");
  CHECK(memcmp(&plan, &before, sizeof plan) == 0);
  ws = 12345;
  EXPECT_STATUS(pkv_paged_attention_workspace_size(NULL, &ws), PKV_STATUS_NULL_ARGUMENT, "args");
  EXPECT_STATUS(pkv_paged_attention_workspace_size(&f.args, NULL), PKV_STATUS_NULL_ARGUMENT, "bytes");
  CHECK(ws == 12345);
}

static pkv_device_limits gfx942_limits(void) {
  pkv_device_limits l;
  memset(&l, 0, sizeof l);
  l.struct_size = sizeof l;
  l.wave_size = 64;
  l.shared_mem_per_block = 65536;
  l.shared_mem_per_block_optin = 65536;
  l.multiprocessor_count = 304;
  strcpy(l.arch, "gfx942");
  return l;
}

/* A planning-only problem (shapes matter, values are never read): `dtype` query/output/cache,
 * split layout with `bs`, 2 sequences. */
typedef struct plan_fixture {
  pkv_tensor q, out, k, v, table, seq_lens, qsl;
  pkv_paged_attention_args args;
} plan_fixture;

static void plan_fixture_init(plan_fixture *f, uint32_t dtype, int64_t bs, int64_t hq, int64_t hkv, int64_t d) {
  memset(f, 0, sizeof *f);
  const size_t es = dtype_size(dtype);
  const int64_t x = 16 / (int64_t)es, nb = 2, tokens = 6;
  void *cache = buffer_new((size_t)(2 * nb * bs * hkv * d) * es, "plan cache");
  void *q = buffer_new((size_t)(tokens * hq * d) * es, "plan query");
  void *out = buffer_new((size_t)(tokens * hq * d) * es, "plan output");
  int32_t *ints = (int32_t *)buffer_new(16 * 4, "plan ints");
  ints[0] = 0;
  ints[1] = 1; /* table [2, 1] */
  ints[2] = 1000;
  ints[3] = (int32_t)bs; /* seq_lens */
  ints[4] = 0;
  ints[5] = 1;
  ints[6] = 6; /* query_start_loc */
  const int64_t ks[5] = {nb, hkv, d / x, bs, x};
  const int64_t vs[4] = {nb, hkv, d, bs};
  f->k = host_tensor(cache, dtype, 5, ks, NULL);
  f->v = host_tensor((unsigned char *)cache + (size_t)(nb * bs * hkv * d) * es, dtype, 4, vs, NULL);
  f->q = tensor3(q, dtype, tokens, hq, d);
  f->out = tensor3(out, dtype, tokens, hq, d);
  f->table = tensor2(ints, PKV_DTYPE_INT32, 2, 1);
  f->seq_lens = tensor1(ints + 2, PKV_DTYPE_INT32, 2);
  f->qsl = tensor1(ints + 4, PKV_DTYPE_INT32, 3);
  f->args.struct_size = sizeof f->args;
  f->args.kv_layout = PKV_KV_LAYOUT_SPLIT;
  f->args.query = &f->q;
  f->args.key_cache = &f->k;
  f->args.value_cache = &f->v;
  f->args.block_table = &f->table;
  f->args.seq_lens = &f->seq_lens;
  f->args.query_start_loc = &f->qsl;
  f->args.output = &f->out;
  f->args.causal = 1;
}

static void check_gpu_plan(const pkv_attention_plan *plan, uint64_t lds, uint32_t wave, int64_t bs, const char *what) {
  CHECKF(plan->path == PKV_ATTENTION_PATH_GPU_SINGLE_PASS || plan->path == PKV_ATTENTION_PATH_GPU_SPLIT_KV,
         "%s: path %u", what, plan->path);
  CHECKF(plan->tile_size > 0 && (int64_t)plan->tile_size < bs, "%s: tile %u with block_size %lld", what,
         plan->tile_size, (long long)bs);
  CHECKF(plan->shared_mem_bytes > 0 && plan->shared_mem_bytes <= lds, "%s: %llu bytes of shared memory, limit %llu",
         what, (unsigned long long)plan->shared_mem_bytes, (unsigned long long)lds);
  CHECKF(plan->threads > 0 && plan->threads % wave == 0, "%s: %u threads, wave %u", what, plan->threads, wave);
  CHECKF(plan->block_q >= 1 && plan->num_splits >= 1, "%s: block_q %u, splits %u", what, plan->block_q,
         plan->num_splits);
  CHECKF((plan->num_splits > 1) == (plan->path == PKV_ATTENTION_PATH_GPU_SPLIT_KV), "%s: %u splits but path %u",
         what, plan->num_splits, plan->path);
  CHECKF((plan->num_splits > 1) == (plan->workspace_bytes > 0), "%s: %u splits, %llu workspace bytes", what,
         plan->num_splits, (unsigned long long)plan->workspace_bytes);
  CHECKF(memchr(plan->reason, '\0', sizeof plan->reason) != NULL && plan->reason[0] != '\0', "%s: no reason", what);
}

static void test_plan_for_device(void) {
  static plan_fixture f;
  plan_fixture_init(&f, PKV_DTYPE_FLOAT16, 2048, 8, 2, 128);
  pkv_device_limits l = gfx942_limits();
  pkv_attention_plan plan;
  fill_plan_poison(&plan);
  EXPECT_OK(pkv_paged_attention_plan_for_device(&f.args, &l, &plan));
  check_gpu_plan(&plan, 65536, 64, 2048, "gfx942, block 2048, f16, D 128");
  CHECKF(strstr(plan.reason, "2048") != NULL, "the reason does not mention block size 2048: \"%s\"", plan.reason);
  printf("  gfx942 block 2048: path %u tile %u block_q %u splits %u threads %u smem %llu ws %llu\n  reason: %s\n",
         plan.path, plan.tile_size, plan.block_q, plan.num_splits, plan.threads,
         (unsigned long long)plan.shared_mem_bytes, (unsigned long long)plan.workspace_bytes, plan.reason);
  /* Same arguments on the host: the CPU path. */
  pkv_attention_plan host;
  fill_plan_poison(&host);
  EXPECT_OK(pkv_paged_attention_plan(&f.args, &host));
  CHECK(host.path == PKV_ATTENTION_PATH_CPU_REFERENCE);

  /* Every head size and dtype fits the device's shared memory: gfx942, gfx1100, sm_90. */
  static const int64_t heads[] = {32, 64, 80, 96, 128, 160, 192, 224, 256};
  static const uint32_t dtypes[] = {PKV_DTYPE_FLOAT16, PKV_DTYPE_BFLOAT16, PKV_DTYPE_FLOAT32};
  pkv_device_limits rdna = l; /* gfx1100: 64 KiB LDS, 32-wide waves */
  rdna.wave_size = 32;
  rdna.multiprocessor_count = 48;
  strcpy(rdna.arch, "gfx1100");
  pkv_device_limits hopper = l; /* sm_90: 48 KiB without opt-in, 227 KiB with it */
  hopper.wave_size = 32;
  hopper.shared_mem_per_block = 49152;
  hopper.shared_mem_per_block_optin = 232448;
  hopper.multiprocessor_count = 132;
  strcpy(hopper.arch, "sm_90");
  for (size_t di = 0; di < 3; ++di) {
    for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; ++hi) {
      static plan_fixture g;
      if (dtypes[di] == PKV_DTYPE_FLOAT32 && heads[hi] % 4 != 0) continue;
      plan_fixture_init(&g, dtypes[di], 544, 4, 1, heads[hi]);
      char what[96];
      snprintf(what, sizeof what, "dtype %u, D %lld, block 544", dtypes[di], (long long)heads[hi]);
      fill_plan_poison(&plan);
      EXPECT_OK(pkv_paged_attention_plan_for_device(&g.args, &l, &plan));
      check_gpu_plan(&plan, 65536, 64, 544, what);
      fill_plan_poison(&plan);
      EXPECT_OK(pkv_paged_attention_plan_for_device(&g.args, &rdna, &plan));
      check_gpu_plan(&plan, 65536, 32, 544, what);
      fill_plan_poison(&plan);
      EXPECT_OK(pkv_paged_attention_plan_for_device(&g.args, &hopper, &plan));
      check_gpu_plan(&plan, 232448, 32, 544, what);
      buffers_release();
    }
  }

  /* Errors: plan untouched. */
  plan_fixture_init(&f, PKV_DTYPE_FLOAT16, 2048, 8, 2, 128);
  pkv_attention_plan before;
  fill_plan_poison(&plan);
  before = plan;
  pkv_device_limits bad = l;
  bad.shared_mem_per_block = bad.shared_mem_per_block_optin = 1024;
  EXPECT_STATUS(pkv_paged_attention_plan_for_device(&f.args, &bad, &plan), PKV_STATUS_SHARED_MEMORY_EXCEEDED,
                "shared memory");
  bad = l;
  bad.wave_size = 48;
  EXPECT_STATUS(pkv_paged_attention_plan_for_device(&f.args, &bad, &plan), PKV_STATUS_INVALID_VALUE, "wave_size");
  bad = l;
  bad.multiprocessor_count = 0;
  EXPECT_STATUS(pkv_paged_attention_plan_for_device(&f.args, &bad, &plan), PKV_STATUS_INVALID_VALUE,
                "multiprocessor_count");
  bad = l;
  bad.struct_size = 8;
  EXPECT_STATUS(pkv_paged_attention_plan_for_device(&f.args, &bad, &plan), PKV_STATUS_INVALID_STRUCT_SIZE,
                "limits");
  EXPECT_STATUS(pkv_paged_attention_plan_for_device(&f.args, NULL, &plan), PKV_STATUS_NULL_ARGUMENT, "limits");
  EXPECT_STATUS(pkv_paged_attention_plan_for_device(NULL, &l, &plan), PKV_STATUS_NULL_ARGUMENT, "args");
  EXPECT_STATUS(pkv_paged_attention_plan_for_device(&f.args, &l, NULL), PKV_STATUS_NULL_ARGUMENT, "plan");
  CHECK(memcmp(&plan, &before, sizeof plan) == 0);
}

static void test_device_limits(void) {
  pkv_device_limits l, before;
  memset(&l, 0x3C, sizeof l);
  l.struct_size = sizeof l;
  before = l;
  if (cpu_only()) {
    EXPECT_STATUS(pkv_device_limits_query(PKV_DEVICE_ROCM, 0, &l), PKV_STATUS_GPU_BACKEND_NOT_BUILT, "GPU backend");
    EXPECT_STATUS(pkv_device_limits_query(PKV_DEVICE_CUDA, 0, &l), PKV_STATUS_GPU_BACKEND_NOT_BUILT, "GPU backend");
    CHECK(memcmp(&l, &before, sizeof l) == 0);
  } else {
    const int32_t kind = (pkv_features() & PKV_FEATURE_ROCM) ? PKV_DEVICE_ROCM : PKV_DEVICE_CUDA;
    const pkv_status s = pkv_device_limits_query(kind, 0, &l);
    CHECKF(s == PKV_STATUS_OK || s == PKV_STATUS_NO_DEVICE || s == PKV_STATUS_DEVICE_ERROR, "status %u", (unsigned)s);
    if (s == PKV_STATUS_OK) {
      CHECK(l.wave_size == 32 || l.wave_size == 64);
      CHECK(l.shared_mem_per_block > 0 && l.multiprocessor_count > 0 && l.arch[0] != '\0');
    }
    l = before;
  }
  EXPECT_STATUS(pkv_device_limits_query(PKV_DEVICE_CPU, 0, &l), PKV_STATUS_UNSUPPORTED_DEVICE, "device_type");
  EXPECT_STATUS(pkv_device_limits_query(7, 0, &l), PKV_STATUS_INVALID_ENUM, "device_type");
  EXPECT_STATUS(pkv_device_limits_query(PKV_DEVICE_ROCM, 0, NULL), PKV_STATUS_NULL_ARGUMENT, "limits");
  l.struct_size = 16;
  before = l;
  EXPECT_STATUS(pkv_device_limits_query(PKV_DEVICE_ROCM, 0, &l), PKV_STATUS_INVALID_STRUCT_SIZE, "limits");
  CHECK(memcmp(&l, &before, sizeof l) == 0);
}

/* The attention call must fail with `status`, naming `needle`, and leave the output alone. */
static void expect_attention_rejected(attn_fixture *f, const pkv_paged_attention_args *a, uint32_t status,
                                      const char *needle, const char *what) {
  unsigned char *before = (unsigned char *)malloc(f->out_bytes);
  memcpy(before, f->output, f->out_bytes);
  if (!EXPECT_STATUS(pkv_paged_attention(a, NULL, 0, NULL), status, needle)) fprintf(stderr, "  (case: %s)\n", what);
  CHECKF(memcmp(before, f->output, f->out_bytes) == 0, "%s: output written by a failed call", what);
  free(before);
}

static void test_attention_errors(void) {
  static attn_fixture f;
  static const attn_config cfg = {"errors", PKV_KV_LAYOUT_SPLIT, 16, 0, 0, 0, 1, 0.0f, 0, 0.0f, 0, 0, 0};
  attn_fixture_init(&f, &cfg);
  pkv_paged_attention_args a;
  pkv_tensor t;

  expect_attention_rejected(&f, NULL, PKV_STATUS_NULL_ARGUMENT, "args", "args NULL");
  a = f.args;
  a.struct_size = (uint32_t)sizeof a - 4;
  expect_attention_rejected(&f, &a, PKV_STATUS_INVALID_STRUCT_SIZE, "struct_size", "struct_size too small");
  a = f.args;
  a.kv_layout = 5;
  expect_attention_rejected(&f, &a, PKV_STATUS_INVALID_ENUM, "kv_layout", "kv_layout 5");
  a = f.args;
  a.kv_cache_dtype = 77;
  expect_attention_rejected(&f, &a, PKV_STATUS_INVALID_ENUM, "kv_cache_dtype", "kv_cache_dtype 77");

  /* Values of the batch description. */
  f.seq_lens[0] = 16 * (int32_t)f.width + 1; /* needs one block more than the row holds */
  expect_attention_rejected(&f, &f.args, PKV_STATUS_BLOCK_TABLE_TOO_SHORT, "block_table", "block table too short");
  f.seq_lens[0] = SEQ_LENS[0];
  const int32_t saved_block = f.table[1];
  f.table[1] = (int32_t)f.nb;
  expect_attention_rejected(&f, &f.args, PKV_STATUS_BLOCK_ID_OUT_OF_RANGE, "block_table[0][1]", "block id = nb");
  f.table[1] = -1;
  expect_attention_rejected(&f, &f.args, PKV_STATUS_BLOCK_ID_OUT_OF_RANGE, "block_table", "block id -1");
  f.table[1] = saved_block;
  f.seq_lens[1] = 2; /* shorter than its 5 query tokens */
  expect_attention_rejected(&f, &f.args, PKV_STATUS_INVALID_SEQ_LEN, "seq_lens[1]", "seq_len < query_len");
  f.seq_lens[1] = SEQ_LENS[1];
  f.qsl[1] = 4;
  f.qsl[2] = 3; /* decreasing */
  expect_attention_rejected(&f, &f.args, PKV_STATUS_INVALID_QUERY_START_LOC, "query_start_loc",
                            "query_start_loc decreasing");
  f.qsl[1] = 1;
  f.qsl[2] = 6;
  f.qsl[3] = 7; /* past num_tokens */
  expect_attention_rejected(&f, &f.args, PKV_STATUS_INVALID_QUERY_START_LOC, "query_start_loc",
                            "query_start_loc past num_tokens");
  f.qsl[3] = 6;

  /* Shapes, dtypes, devices. */
  a = f.args;
  t = f.t_query;
  t.shape[1] = 3;
  pkv_tensor o = f.t_output;
  o.shape[1] = 3;
  a.query = &t;
  a.output = &o;
  expect_attention_rejected(&f, &a, PKV_STATUS_GQA_RATIO_NOT_INTEGRAL, "num_q_heads", "3 q heads over 2 kv heads");
  a = f.args;
  t = f.t_output;
  t.dtype = PKV_DTYPE_FLOAT16;
  a.output = &t;
  expect_attention_rejected(&f, &a, PKV_STATUS_INVALID_DTYPE, "output", "float16 output for float32 query");
  a = f.args;
  t = f.t_output;
  t.device_type = PKV_DEVICE_CUDA;
  a.output = &t;
  expect_attention_rejected(&f, &a, PKV_STATUS_DEVICE_MISMATCH, "output", "output on a GPU");
  a = f.args;
  t = f.t_table;
  t.dtype = PKV_DTYPE_INT64;
  a.block_table = &t;
  expect_attention_rejected(&f, &a, PKV_STATUS_INVALID_DTYPE, "block_table", "int64 block_table");
  a = f.args;
  t = f.t_seq_lens;
  t.shape[0] = 2;
  a.seq_lens = &t;
  expect_attention_rejected(&f, &a, PKV_STATUS_SHAPE_MISMATCH, "seq_lens", "seq_lens of 2 for 3 sequences");
  a = f.args;
  t = f.t_output;
  t.strides[0] = 0;
  a.output = &t;
  expect_attention_rejected(&f, &a, PKV_STATUS_INVALID_STRIDE, "output", "broadcast output");
  a = f.args;
  t = f.t_key;
  t.ndim = 4;
  a.key_cache = &t;
  expect_attention_rejected(&f, &a, PKV_STATUS_INVALID_NDIM, "key_cache", "4-D split key cache");
  a = f.args;
  a.sm_scale = -1.0f;
  expect_attention_rejected(&f, &a, PKV_STATUS_INVALID_VALUE, "sm_scale", "negative sm_scale");
  a = f.args;
  a.logits_soft_cap = NAN;
  expect_attention_rejected(&f, &a, PKV_STATUS_INVALID_VALUE, "logits_soft_cap", "NaN soft cap");
  a = f.args;
  t = f.t_alibi;
  t.shape[0] = HQ - 1;
  a.alibi_slopes = &t;
  expect_attention_rejected(&f, &a, PKV_STATUS_SHAPE_MISMATCH, "alibi_slopes", "alibi_slopes of 3 for 4 heads");
  a = f.args;
  a.kv_cache_dtype = PKV_KV_CACHE_DTYPE_FP8;
  expect_attention_rejected(&f, &a, PKV_STATUS_INVALID_DTYPE, "key_cache", "fp8 kv_cache_dtype on a float32 cache");
  if (cpu_only()) {
    pkv_tensor g[7] = {f.t_query, f.t_key, f.t_value, f.t_table, f.t_seq_lens, f.t_qsl, f.t_output};
    for (int i = 0; i < 7; ++i) g[i].device_type = PKV_DEVICE_ROCM;
    a = f.args;
    a.query = &g[0];
    a.key_cache = &g[1];
    a.value_cache = &g[2];
    a.block_table = &g[3];
    a.seq_lens = &g[4];
    a.query_start_loc = &g[5];
    a.output = &g[6];
    expect_attention_rejected(&f, &a, PKV_STATUS_GPU_BACKEND_NOT_BUILT, "GPU backend", "ROCm tensors, CPU-only");
    pkv_attention_plan plan;
    fill_plan_poison(&plan);
    EXPECT_STATUS(pkv_paged_attention_plan(&a, &plan), PKV_STATUS_GPU_BACKEND_NOT_BUILT, "GPU backend");
    /* ... but planning for a described device works without one. */
    pkv_device_limits l = gfx942_limits();
    EXPECT_OK(pkv_paged_attention_plan_for_device(&a, &l, &plan));
  }
  /* Head size 12 (not a multiple of 8): x = 4 divides it, the kernels do not support it. */
  {
    static attn_fixture g;
    attn_fixture_init(&g, &cfg);
    pkv_tensor q = g.t_query, out = g.t_output, k = g.t_key, v = g.t_value;
    q.shape[2] = out.shape[2] = 12;
    k.shape[2] = 3;
    v.shape[2] = 12;
    a = g.args;
    a.query = &q;
    a.output = &out;
    a.key_cache = &k;
    a.value_cache = &v;
    expect_attention_rejected(&g, &a, PKV_STATUS_UNSUPPORTED_HEAD_SIZE, "head_size", "head_size 12");
  }
  /* Sanity: the fixture itself is valid and the output is then fully written. */
  EXPECT_OK(pkv_paged_attention(&f.args, NULL, 0, NULL));
  int nan_left = 0;
  for (int64_t i = 0; i < f.num_tokens * f.row_stride; ++i) nan_left += isnan(f.output[i]) ? 1 : 0;
  CHECKF(nan_left == 0, "%d output elements left unwritten", nan_left);
}

/* Every pointer argument of every function, NULL in turn: PKV_STATUS_NULL_ARGUMENT and a message
 * naming it. */
static void test_null_arguments(void) {
  static write_fixture w;
  write_fixture_init(&w);
  pkv_write_kv_cache_args wa;
#define NULL_WRITE_FIELD(field)                                                                    \
  wa = w.args;                                                                                     \
  wa.field = NULL;                                                                                 \
  expect_write_rejected(&w, &wa, PKV_STATUS_NULL_ARGUMENT, #field, "write_kv_cache " #field " NULL")
  NULL_WRITE_FIELD(key);
  NULL_WRITE_FIELD(value);
  NULL_WRITE_FIELD(key_cache);
  NULL_WRITE_FIELD(value_cache);
  NULL_WRITE_FIELD(slot_mapping);
#undef NULL_WRITE_FIELD

  static attn_fixture f;
  static const attn_config cfg = {"nulls", PKV_KV_LAYOUT_SPLIT, 16, 0, 0, 0, 1, 0.0f, 0, 0.0f, 0, 0, 0};
  attn_fixture_init(&f, &cfg);
  pkv_paged_attention_args a;
  pkv_attention_plan plan;
  pkv_device_limits limits = gfx942_limits();
  uint64_t ws;
#define NULL_ATTENTION_FIELD(field)                                                                            \
  a = f.args;                                                                                                  \
  a.field = NULL;                                                                                              \
  expect_attention_rejected(&f, &a, PKV_STATUS_NULL_ARGUMENT, #field, "paged_attention " #field " NULL");      \
  fill_plan_poison(&plan);                                                                                     \
  EXPECT_STATUS(pkv_paged_attention_plan(&a, &plan), PKV_STATUS_NULL_ARGUMENT, #field);                        \
  EXPECT_STATUS(pkv_paged_attention_plan_for_device(&a, &limits, &plan), PKV_STATUS_NULL_ARGUMENT, #field);    \
  EXPECT_STATUS(pkv_paged_attention_workspace_size(&a, &ws), PKV_STATUS_NULL_ARGUMENT, #field)
  NULL_ATTENTION_FIELD(query);
  NULL_ATTENTION_FIELD(key_cache);
  NULL_ATTENTION_FIELD(value_cache);
  NULL_ATTENTION_FIELD(block_table);
  NULL_ATTENTION_FIELD(seq_lens);
  NULL_ATTENTION_FIELD(query_start_loc);
  NULL_ATTENTION_FIELD(output);
#undef NULL_ATTENTION_FIELD

  /* Optional tensors may be NULL: k_scale, v_scale, alibi_slopes, sinks, output_scale. */
  a = f.args;
  a.k_scale = a.v_scale = a.alibi_slopes = a.sinks = a.output_scale = NULL;
  EXPECT_OK(pkv_paged_attention(&a, NULL, 0, NULL));

  pkv_tensor k, v;
  bool native;
  EXPECT_STATUS(pkv_split_kv_cache(NULL, 2, 64, &k, &v), PKV_STATUS_NULL_ARGUMENT, "kv_cache");
  EXPECT_STATUS(pkv_split_kv_cache(&w.c.kv, 2, 64, NULL, &v), PKV_STATUS_NULL_ARGUMENT, "key_cache");
  EXPECT_STATUS(pkv_split_kv_cache(&w.c.kv, 2, 64, &k, NULL), PKV_STATUS_NULL_ARGUMENT, "value_cache");
  EXPECT_STATUS(pkv_has_native_layout(NULL, &w.vc, &native), PKV_STATUS_NULL_ARGUMENT, "key_cache");
  EXPECT_STATUS(pkv_has_native_layout(&w.kc, NULL, &native), PKV_STATUS_NULL_ARGUMENT, "value_cache");
  EXPECT_STATUS(pkv_has_native_layout(&w.kc, &w.vc, NULL), PKV_STATUS_NULL_ARGUMENT, "is_native");
  EXPECT_STATUS(pkv_write_kv_cache(NULL, NULL, NULL), PKV_STATUS_NULL_ARGUMENT, "args");
  EXPECT_STATUS(pkv_paged_attention(NULL, NULL, 0, NULL), PKV_STATUS_NULL_ARGUMENT, "args");
  /* The message stays readable until the next call on this thread, and a success clears it. */
  const char *msg = pkv_last_error_message();
  CHECK(msg != NULL && strstr(msg, "args") != NULL);
  EXPECT_OK(pkv_has_native_layout(&w.kc, &w.vc, &native));
  CHECK(pkv_last_error_message()[0] == '\0');
}

int main(int argc, char **argv) {
  static const test_case tests[] = {
      {"version", test_version},
      {"features", test_features},
      {"status_strings", test_status_strings},
      {"kv_cache_dtype", test_kv_cache_dtype},
      {"dlpack", test_dlpack},
      {"split", test_split},
      {"write_native", test_write_native},
      {"write_strided", test_write_strided},
      {"write_nhd", test_write_nhd},
      {"write_fp8", test_write_fp8},
      {"write_errors", test_write_errors},
      {"attention", test_attention},
      {"attention_fp8", test_attention_fp8},
      {"attention_plan", test_attention_plan},
      {"plan_for_device", test_plan_for_device},
      {"device_limits", test_device_limits},
      {"attention_errors", test_attention_errors},
      {"null_arguments", test_null_arguments},
  };
  rng_seed(20240611u);
  printf("pagedkv %s (header %s), seed 20240611\n", pkv_version_string(), PKV_EXPECTED_VERSION);
  return run_tests(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
