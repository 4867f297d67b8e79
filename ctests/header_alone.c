/* pagedkv.h compiled on its own (no other include, included twice to exercise the guard),
 * built as C11 and as C++17 with -Wall -Wextra -Werror -pedantic and more (ctests/CMakeLists.txt).
 * The asserts only make sure the macros are integer constant expressions. */
#include <pagedkv.h>
#include <pagedkv.h>

#ifdef __cplusplus
#define HEADER_ALONE_ASSERT(c, m) static_assert(c, m)
#else
#define HEADER_ALONE_ASSERT(c, m) _Static_assert(c, m)
#endif

HEADER_ALONE_ASSERT(PKV_VERSION_NUMBER == PKV_VERSION_MAJOR * 10000 + PKV_VERSION_MINOR * 100 + PKV_VERSION_PATCH,
                    "composite version");
HEADER_ALONE_ASSERT(PKV_MAX_DIMS > 0 && PKV_PLAN_REASON_LEN > 0 && PKV_ARCH_NAME_LEN > 0, "array lengths");
HEADER_ALONE_ASSERT(sizeof(pkv_status) == 4, "pkv_status is 32 bits");

int main(void) { return PKV_STATUS_OK; }
