// Scales the writer's fp8 quotient encode(v / scale) is checked against, shared by the device
// proof (scripts/h200/fp8_cvt_proof.cu) and the CPU emulation (scripts/h200/write_emu): fixed
// edge values (powers of two, range ends, neighbours of 1 and of 2^+-40, zeros, infinities,
// NaN, a subnormal), then 300 drawn from `rng`: random significands (every third with an
// all-ones tail) at exponents 2^-45 .. 2^45, every seventh negative.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

inline std::vector<float> quotient_test_scales(std::mt19937_64& rng) {
    std::vector<float> scales = {1.0f, 0.5f, 2.0f, 0.25f, 0x1p-126f, 0x1p126f, 0x1p-127f, -1.0f, -0.5f,
                                 0.05f, 0.04f, 0.37f, 1.9f, 0.7f, 0.3f, 0.2f, 0.4f, 0.1f, -0.37f, 1.0f / 3.0f,
                                 0x1.fffffep-1f, 0x1.fffffep0f, 0x1.000002p0f, 0x1p-40f, 0x1p40f, 0x1.fffffep39f,
                                 0x1.000002p-40f, 0x1.fffffep-41f, 0x1p41f, 1e-30f, 3e20f, 0.0f, -0.0f, INFINITY,
                                 -INFINITY, NAN, 1e-40f};
    for (int i = 0; i < 300; ++i) {
        uint32_t m = static_cast<uint32_t>(rng()) & 0x7fffffu;
        if (i % 3 == 0) m |= 0x7fff00u;
        const uint32_t e = 127 - 45 + rng() % 91;
        const uint32_t bits = m | (e << 23) | ((i % 7 == 0) ? 0x80000000u : 0u);
        float f;
        std::memcpy(&f, &bits, 4);
        scales.push_back(f);
    }
    return scales;
}
