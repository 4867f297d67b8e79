/* Prints the layout of every public struct and the value of every ABI constant as this
 * compiler sees them through pagedkv.h, and compares with ctests/abi_layout.txt (argv[1]),
 * the one list of expected numbers (worked out from the #[repr(C)] structs in
 * src/capi/types.rs). Built twice, as C11 and as C++17. */

#include <pagedkv.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
#define PKV_ALIGNOF(T) alignof(T)
#define PKV_LANGUAGE_NAME "C++"
#else
#define PKV_ALIGNOF(T) _Alignof(T)
#define PKV_LANGUAGE_NAME "C"
#endif

#define STRUCT(T) {#T, " size ", sizeof(T), " align ", PKV_ALIGNOF(T)},
#define FIELD(T, f) {#T "." #f, " offset ", offsetof(T, f), " size ", sizeof(((T *)NULL)->f)},
#define CONSTANT(c) {#c, " value ", (size_t)(c), "", 0},

typedef struct line {
  const char *name;
  const char *what1;
  size_t value1;
  const char *what2;
  size_t value2;
} line;

static const line actual[] = {
    STRUCT(pkv_status)

    STRUCT(pkv_tensor)
    FIELD(pkv_tensor, data)
    FIELD(pkv_tensor, byte_offset)
    FIELD(pkv_tensor, device_type)
    FIELD(pkv_tensor, device_id)
    FIELD(pkv_tensor, dtype)
    FIELD(pkv_tensor, ndim)
    FIELD(pkv_tensor, shape)
    FIELD(pkv_tensor, strides)

    STRUCT(pkv_write_kv_cache_args)
    FIELD(pkv_write_kv_cache_args, struct_size)
    FIELD(pkv_write_kv_cache_args, kv_layout)
    FIELD(pkv_write_kv_cache_args, key)
    FIELD(pkv_write_kv_cache_args, value)
    FIELD(pkv_write_kv_cache_args, key_cache)
    FIELD(pkv_write_kv_cache_args, value_cache)
    FIELD(pkv_write_kv_cache_args, slot_mapping)
    FIELD(pkv_write_kv_cache_args, kv_cache_dtype)
    FIELD(pkv_write_kv_cache_args, reserved)
    FIELD(pkv_write_kv_cache_args, k_scale)
    FIELD(pkv_write_kv_cache_args, v_scale)

    STRUCT(pkv_paged_attention_args)
    FIELD(pkv_paged_attention_args, struct_size)
    FIELD(pkv_paged_attention_args, kv_layout)
    FIELD(pkv_paged_attention_args, query)
    FIELD(pkv_paged_attention_args, key_cache)
    FIELD(pkv_paged_attention_args, value_cache)
    FIELD(pkv_paged_attention_args, block_table)
    FIELD(pkv_paged_attention_args, seq_lens)
    FIELD(pkv_paged_attention_args, query_start_loc)
    FIELD(pkv_paged_attention_args, output)
    FIELD(pkv_paged_attention_args, kv_cache_dtype)
    FIELD(pkv_paged_attention_args, causal)
    FIELD(pkv_paged_attention_args, k_scale)
    FIELD(pkv_paged_attention_args, v_scale)
    FIELD(pkv_paged_attention_args, alibi_slopes)
    FIELD(pkv_paged_attention_args, sinks)
    FIELD(pkv_paged_attention_args, output_scale)
    FIELD(pkv_paged_attention_args, sm_scale)
    FIELD(pkv_paged_attention_args, sliding_window)
    FIELD(pkv_paged_attention_args, logits_soft_cap)
    FIELD(pkv_paged_attention_args, max_query_len)

    STRUCT(pkv_attention_plan)
    FIELD(pkv_attention_plan, struct_size)
    FIELD(pkv_attention_plan, path)
    FIELD(pkv_attention_plan, tile_size)
    FIELD(pkv_attention_plan, block_q)
    FIELD(pkv_attention_plan, num_splits)
    FIELD(pkv_attention_plan, threads)
    FIELD(pkv_attention_plan, shared_mem_bytes)
    FIELD(pkv_attention_plan, workspace_bytes)
    FIELD(pkv_attention_plan, reason)

    STRUCT(pkv_device_limits)
    FIELD(pkv_device_limits, struct_size)
    FIELD(pkv_device_limits, wave_size)
    FIELD(pkv_device_limits, shared_mem_per_block)
    FIELD(pkv_device_limits, shared_mem_per_block_optin)
    FIELD(pkv_device_limits, multiprocessor_count)
    FIELD(pkv_device_limits, reserved)
    FIELD(pkv_device_limits, arch)

    CONSTANT(PKV_MAX_DIMS)
    CONSTANT(PKV_PLAN_REASON_LEN)
    CONSTANT(PKV_ARCH_NAME_LEN)
    CONSTANT(PKV_DTYPE_FLOAT32)
    CONSTANT(PKV_DTYPE_FLOAT16)
    CONSTANT(PKV_DTYPE_BFLOAT16)
    CONSTANT(PKV_DTYPE_UINT8)
    CONSTANT(PKV_DTYPE_INT32)
    CONSTANT(PKV_DTYPE_INT64)
    CONSTANT(PKV_DTYPE_FLOAT8_E4M3FN)
    CONSTANT(PKV_DTYPE_FLOAT8_E4M3FNUZ)
    CONSTANT(PKV_DTYPE_FLOAT8_E5M2)
    CONSTANT(PKV_DEVICE_CPU)
    CONSTANT(PKV_DEVICE_CUDA)
    CONSTANT(PKV_DEVICE_ROCM)
    CONSTANT(PKV_KV_CACHE_DTYPE_AUTO)
    CONSTANT(PKV_KV_CACHE_DTYPE_FP8)
    CONSTANT(PKV_KV_CACHE_DTYPE_FP8_E4M3)
    CONSTANT(PKV_KV_CACHE_DTYPE_FP8_E4M3FN)
    CONSTANT(PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ)
    CONSTANT(PKV_KV_CACHE_DTYPE_FP8_E5M2)
    CONSTANT(PKV_KV_LAYOUT_SPLIT)
    CONSTANT(PKV_KV_LAYOUT_NHD)
    CONSTANT(PKV_WRITE_PATH_NATIVE)
    CONSTANT(PKV_WRITE_PATH_STRIDED)
    CONSTANT(PKV_ATTENTION_PATH_CPU_REFERENCE)
    CONSTANT(PKV_ATTENTION_PATH_GPU_SINGLE_PASS)
    CONSTANT(PKV_ATTENTION_PATH_GPU_SPLIT_KV)
    CONSTANT(PKV_FEATURE_CPU)
    CONSTANT(PKV_FEATURE_CUDA)
    CONSTANT(PKV_FEATURE_ROCM)
    CONSTANT(PKV_STATUS_OK)
    CONSTANT(PKV_STATUS_NULL_ARGUMENT)
    CONSTANT(PKV_STATUS_INVALID_STRUCT_SIZE)
    CONSTANT(PKV_STATUS_INVALID_ENUM)
    CONSTANT(PKV_STATUS_INVALID_DTYPE)
    CONSTANT(PKV_STATUS_INVALID_NDIM)
    CONSTANT(PKV_STATUS_SHAPE_MISMATCH)
    CONSTANT(PKV_STATUS_INVALID_STRIDE)
    CONSTANT(PKV_STATUS_DEVICE_MISMATCH)
    CONSTANT(PKV_STATUS_HEAD_SIZE_NOT_DIVISIBLE)
    CONSTANT(PKV_STATUS_GQA_RATIO_NOT_INTEGRAL)
    CONSTANT(PKV_STATUS_BLOCK_TABLE_TOO_SHORT)
    CONSTANT(PKV_STATUS_SLOT_OUT_OF_RANGE)
    CONSTANT(PKV_STATUS_BLOCK_ID_OUT_OF_RANGE)
    CONSTANT(PKV_STATUS_INVALID_SEQ_LEN)
    CONSTANT(PKV_STATUS_INVALID_QUERY_START_LOC)
    CONSTANT(PKV_STATUS_INVALID_VALUE)
    CONSTANT(PKV_STATUS_WORKSPACE_TOO_SMALL)
    CONSTANT(PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE)
    CONSTANT(PKV_STATUS_BUFFER_TOO_SMALL)
    CONSTANT(PKV_STATUS_UNSUPPORTED_HEAD_SIZE)
    CONSTANT(PKV_STATUS_UNSUPPORTED_CONFIGURATION)
    CONSTANT(PKV_STATUS_GPU_BACKEND_NOT_BUILT)
    CONSTANT(PKV_STATUS_UNSUPPORTED_DEVICE)
    CONSTANT(PKV_STATUS_SHARED_MEMORY_EXCEEDED)
    CONSTANT(PKV_STATUS_DEVICE_ERROR)
    CONSTANT(PKV_STATUS_LAUNCH_FAILED)
    CONSTANT(PKV_STATUS_NO_DEVICE)
    CONSTANT(PKV_STATUS_INTERNAL)
    CONSTANT(PKV_STATUS_PANIC)
};

enum { NUM_ACTUAL = sizeof(actual) / sizeof(actual[0]), MAX_LINES = 512, LINE_LEN = 160 };

static void render(const line *l, char *out, size_t n) {
  if (l->what2[0] != '\0') {
    snprintf(out, n, "%s%s%zu%s%zu", l->name, l->what1, l->value1, l->what2, l->value2);
  } else {
    snprintf(out, n, "%s%s%zu", l->name, l->what1, l->value1);
  }
}

/* Collapses runs of blanks to one space and trims the ends, so the file's spacing is free. */
static void normalise(char *s) {
  char *w = s;
  int blank = 1;
  for (const char *r = s; *r != '\0'; ++r) {
    if (*r == ' ' || *r == '\t' || *r == '\r' || *r == '\n') {
      if (!blank) *w++ = ' ';
      blank = 1;
    } else {
      *w++ = *r;
      blank = 0;
    }
  }
  if (w > s && w[-1] == ' ') --w;
  *w = '\0';
}

int main(int argc, char **argv) {
  static char expected[MAX_LINES][LINE_LEN];
  static int seen[MAX_LINES];
  char mine[LINE_LEN];
  int num_expected = 0;
  int failures = 0;

  if (argc != 2) {
    fprintf(stderr, "usage: %s ctests/abi_layout.txt\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(argv[1], "r");
  if (f == NULL) {
    perror(argv[1]);
    return 2;
  }
  char buf[LINE_LEN];
  while (fgets(buf, sizeof buf, f) != NULL) {
    normalise(buf);
    if (buf[0] == '\0' || buf[0] == '#') continue;
    if (num_expected == MAX_LINES) {
      fprintf(stderr, "%s: more than %d lines\n", argv[1], MAX_LINES);
      fclose(f);
      return 2;
    }
    memcpy(expected[num_expected++], buf, sizeof buf);
  }
  fclose(f);

  printf("# layout seen by %s\n", PKV_LANGUAGE_NAME);
  for (int i = 0; i < NUM_ACTUAL; ++i) {
    render(&actual[i], mine, sizeof mine);
    printf("%s\n", mine);
    /* The entry with the same name (first word) in the expected list. */
    size_t name_len = strlen(actual[i].name);
    int found = -1;
    for (int j = 0; j < num_expected; ++j) {
      if (strncmp(expected[j], actual[i].name, name_len) == 0 && expected[j][name_len] == ' ') {
        found = j;
        break;
      }
    }
    if (found < 0) {
      fprintf(stderr, "MISSING from %s: %s\n", argv[1], mine);
      ++failures;
    } else {
      seen[found] = 1;
      if (strcmp(expected[found], mine) != 0) {
        fprintf(stderr, "MISMATCH: expected '%s', %s has '%s'\n", expected[found], PKV_LANGUAGE_NAME, mine);
        ++failures;
      }
    }
  }
  for (int j = 0; j < num_expected; ++j) {
    if (!seen[j]) {
      fprintf(stderr, "NOT CHECKED: '%s' in %s is not known to this test\n", expected[j], argv[1]);
      ++failures;
    }
  }
  printf("%d entries checked, %d failure(s)\n", NUM_ACTUAL, failures);
  return failures == 0 ? 0 : 1;
}
