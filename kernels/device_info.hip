// Device identification that must be compiled against the installed runtime headers.
//
// AMD only: hipDeviceProp_t changed layout in ROCm 6 (hipGetDeviceProperties became
// hipGetDevicePropertiesR0600), so reading gcnArchName through Rust bindings generated for
// another ROCm version would read the wrong bytes. Compiled here, the header in use decides.
// The NVIDIA build reads the compute capability through cudaDeviceGetAttribute from Rust and
// needs nothing from this file.

#include "pkv_compat.h"

#if defined(PKV_HIP)
// Writes the device's architecture name (e.g. "gfx942:sramecc+:xnack-") into `out`
// ([capacity] bytes, NUL-terminated, truncated if longer). Returns the runtime's error code.
extern "C" int pkv_kernel_device_arch(int device, char* out, int capacity) {
    hipDeviceProp_t prop;
    const hipError_t e = hipGetDeviceProperties(&prop, device);
    if (e != hipSuccess) return static_cast<int>(e);
    int i = 0;
    for (; i + 1 < capacity && prop.gcnArchName[i] != '\0'; ++i) out[i] = prop.gcnArchName[i];
    if (capacity > 0) out[i] = '\0';
    return 0;
}
#endif
