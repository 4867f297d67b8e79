/* Small test harness shared by the C and C++ consumers: checks that count failures and keep
 * going, status checks that also read the last-error message, guarded heap buffers (every
 * buffer has poisoned guard zones before and after it, checked after each test, so a write
 * past a tensor is caught), tensor descriptors and a seeded random generator.
 * Header-only, valid C11 and C++17. */
#ifndef PKV_TEST_SUPPORT_H
#define PKV_TEST_SUPPORT_H

#include <pagedkv.h>

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- checks --------------------------------------------------------------------------- */

static int g_failures = 0;
static long g_checks = 0;

static inline int check_impl(int ok, const char *expr, const char *file, int line, const char *fmt, ...) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    fprintf(stderr, "%s:%d: CHECK FAILED: %s", file, line, expr);
    if (fmt != NULL) {
      va_list ap;
      va_start(ap, fmt);
      fputs(" -- ", stderr);
      vfprintf(stderr, fmt, ap);
      va_end(ap);
    }
    fputc('\n', stderr);
  }
  return ok;
}

#define CHECK(cond) check_impl((cond) ? 1 : 0, #cond, __FILE__, __LINE__, NULL)
/* CHECKF(cond, "format", args...): prints the formatted context on failure. */
#define CHECKF(cond, ...) check_impl((cond) ? 1 : 0, #cond, __FILE__, __LINE__, __VA_ARGS__)

/* Checks that `status` is `expected`; for an error also that the last-error message is
 * non-empty and contains `needle` (the argument's name), and for success that it is empty. */
static inline int expect_status_impl(uint32_t status, uint32_t expected, const char *needle, const char *call,
                                     const char *file, int line) {
  const char *msg = pkv_last_error_message();
  int ok = 1;
  if (status != expected) {
    fprintf(stderr, "%s:%d: %s returned %s (%u), expected %s (%u); message: \"%s\"\n", file, line, call,
            pkv_status_string(status), status, pkv_status_string(expected), expected, msg ? msg : "(NULL)");
    ok = 0;
  } else if (msg == NULL) {
    fprintf(stderr, "%s:%d: %s: pkv_last_error_message() returned NULL\n", file, line, call);
    ok = 0;
  } else if (expected != PKV_STATUS_OK && msg[0] == '\0') {
    fprintf(stderr, "%s:%d: %s failed with %s but left an empty message\n", file, line, call,
            pkv_status_string(status));
    ok = 0;
  } else if (expected != PKV_STATUS_OK && needle != NULL && strstr(msg, needle) == NULL) {
    fprintf(stderr, "%s:%d: %s: message \"%s\" does not name \"%s\"\n", file, line, call, msg, needle);
    ok = 0;
  } else if (expected == PKV_STATUS_OK && msg[0] != '\0') {
    fprintf(stderr, "%s:%d: %s succeeded but the last-error message is \"%s\" (expected empty)\n", file, line,
            call, msg);
    ok = 0;
  }
  ++g_checks;
  if (!ok) ++g_failures;
  return ok;
}

#define EXPECT_STATUS(call, expected, needle) \
  expect_status_impl((uint32_t)(call), (uint32_t)(expected), (needle), #call, __FILE__, __LINE__)
#define EXPECT_OK(call) EXPECT_STATUS(call, PKV_STATUS_OK, NULL)

/* ---- guarded buffers ------------------------------------------------------------------ */

enum { GUARD_BYTES = 64, MAX_BUFFERS = 256 };
static const unsigned char GUARD_BYTE = 0xE7;

typedef struct guarded {
  unsigned char *base; /* GUARD_BYTES | payload | GUARD_BYTES */
  size_t bytes;
  const char *name;
} guarded;

static guarded g_buffers[MAX_BUFFERS];
static int g_num_buffers = 0;

/* A zeroed buffer of `bytes` bytes with guard zones on both sides, freed by buffers_release. */
static inline void *buffer_new(size_t bytes, const char *name) {
  if (g_num_buffers == MAX_BUFFERS) {
    fprintf(stderr, "test_support: too many buffers\n");
    exit(2);
  }
  unsigned char *base = (unsigned char *)malloc(bytes + 2 * GUARD_BYTES);
  if (base == NULL) {
    fprintf(stderr, "test_support: out of memory (%zu bytes for %s)\n", bytes, name);
    exit(2);
  }
  memset(base, GUARD_BYTE, GUARD_BYTES);
  memset(base + GUARD_BYTES, 0, bytes);
  memset(base + GUARD_BYTES + bytes, GUARD_BYTE, GUARD_BYTES);
  g_buffers[g_num_buffers].base = base;
  g_buffers[g_num_buffers].bytes = bytes;
  g_buffers[g_num_buffers].name = name;
  ++g_num_buffers;
  return base + GUARD_BYTES;
}

/* Checks every guard zone, then frees every buffer. */
static inline void buffers_release(void) {
  for (int i = 0; i < g_num_buffers; ++i) {
    const guarded *b = &g_buffers[i];
    for (size_t k = 0; k < GUARD_BYTES; ++k) {
      if (b->base[k] != GUARD_BYTE || b->base[GUARD_BYTES + b->bytes + k] != GUARD_BYTE) {
        CHECKF(0, "buffer '%s' (%zu bytes): the library wrote outside it (guard byte %zu %s it)", b->name,
               b->bytes, k, b->base[k] != GUARD_BYTE ? "before" : "after");
        break;
      }
    }
    free(b->base);
  }
  g_num_buffers = 0;
}

/* Index of the first differing byte, or -1 when equal. */
static inline long first_difference(const void *a, const void *b, size_t bytes) {
  const unsigned char *x = (const unsigned char *)a;
  const unsigned char *y = (const unsigned char *)b;
  for (size_t i = 0; i < bytes; ++i) {
    if (x[i] != y[i]) return (long)i;
  }
  return -1;
}

/* ---- tensors -------------------------------------------------------------------------- */

static inline size_t dtype_size(uint32_t dtype) {
  switch (dtype) {
    case PKV_DTYPE_FLOAT32:
    case PKV_DTYPE_INT32:
      return 4;
    case PKV_DTYPE_FLOAT16:
    case PKV_DTYPE_BFLOAT16:
      return 2;
    case PKV_DTYPE_INT64:
      return 8;
    default:
      return 1;
  }
}

/* A host tensor; `strides` NULL means row-major contiguous. */
static inline pkv_tensor host_tensor(void *data, uint32_t dtype, uint32_t ndim, const int64_t *shape,
                                     const int64_t *strides) {
  pkv_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.byte_offset = 0;
  t.device_type = PKV_DEVICE_CPU;
  t.device_id = 0;
  t.dtype = dtype;
  t.ndim = ndim;
  int64_t running = 1;
  for (int i = (int)ndim - 1; i >= 0; --i) {
    t.shape[i] = shape[i];
    t.strides[i] = strides != NULL ? strides[i] : running;
    running *= shape[i];
  }
  return t;
}

static inline pkv_tensor tensor1(void *data, uint32_t dtype, int64_t n0) {
  int64_t shape[1];
  shape[0] = n0;
  return host_tensor(data, dtype, 1, shape, NULL);
}

static inline pkv_tensor tensor2(void *data, uint32_t dtype, int64_t n0, int64_t n1) {
  int64_t shape[2];
  shape[0] = n0;
  shape[1] = n1;
  return host_tensor(data, dtype, 2, shape, NULL);
}

static inline pkv_tensor tensor3(void *data, uint32_t dtype, int64_t n0, int64_t n1, int64_t n2) {
  int64_t shape[3];
  shape[0] = n0;
  shape[1] = n1;
  shape[2] = n2;
  return host_tensor(data, dtype, 3, shape, NULL);
}

/* Address of element 0. */
static inline const unsigned char *tensor_base(const pkv_tensor *t) {
  return (const unsigned char *)t->data + t->byte_offset;
}

/* ---- random numbers (deterministic; the seed is printed on failure) ------------------- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static inline void rng_seed(uint64_t seed) { g_rng = seed * 0x9E3779B97F4A7C15ull + 1; }

static inline uint64_t rng_next(void) {
  /* splitmix64 */
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline float rng_uniform(void) { return (float)((double)(rng_next() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

static inline int64_t rng_below(int64_t n) { return (int64_t)(rng_next() % (uint64_t)n); }

/* Fisher-Yates shuffle of 0..n-1. */
static inline void rng_permutation(int32_t *out, int n) {
  for (int i = 0; i < n; ++i) out[i] = i;
  for (int i = n - 1; i > 0; --i) {
    int j = (int)rng_below(i + 1);
    int32_t t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
}

/* ---- test driver ---------------------------------------------------------------------- */

typedef struct test_case {
  const char *name;
  void (*run)(void);
} test_case;

/* Runs the test named argv[1] (or all); returns the process exit status. */
static inline int run_tests(const test_case *tests, int num_tests, int argc, char **argv) {
  int ran = 0;
  for (int i = 0; i < num_tests; ++i) {
    if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) continue;
    int before = g_failures;
    long checks_before = g_checks;
    tests[i].run();
    buffers_release();
    printf("%s %s (%ld checks)\n", g_failures == before ? "PASS" : "FAIL", tests[i].name, g_checks - checks_before);
    ++ran;
  }
  if (ran == 0) {
    fprintf(stderr, "no test named '%s'; tests:", argc > 1 ? argv[1] : "");
    for (int i = 0; i < num_tests; ++i) fprintf(stderr, " %s", tests[i].name);
    fputc('\n', stderr);
    return 2;
  }
  return g_failures == 0 ? 0 : 1;
}

#endif /* PKV_TEST_SUPPORT_H */
