/* Built with `cc $(pkg-config --cflags pagedkv) pkgconfig_main.c $(pkg-config --libs pagedkv)`
 * by ctests/pkgconfig_consumer.sh: the library found through pagedkv.pc links and runs. */
#include <pagedkv.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  char expect[32];
  snprintf(expect, sizeof expect, "%d.%d.%d", PKV_VERSION_MAJOR, PKV_VERSION_MINOR, PKV_VERSION_PATCH);
  uint32_t kind = 0;
  const pkv_status s = pkv_kv_cache_dtype_from_string("fp8_e5m2", &kind);
  printf("pagedkv %s via pkg-config: fp8_e5m2 -> %u (%s)\n", pkv_version_string(), kind, pkv_status_string(s));
  if (strcmp(pkv_version_string(), expect) != 0 || pkv_version_number() != PKV_VERSION_NUMBER) return 1;
  return s == PKV_STATUS_OK && kind == PKV_KV_CACHE_DTYPE_FP8_E5M2 ? 0 : 1;
}
