// Host test of kernels/write_kv.hip (see run.sh): the kernel runs on the CPU, four lanes at a
// time on four host threads that meet at every exchange and vote (pkv_compat.h beside this
// file), and must leave every byte of the cache as a direct reference loop does (the semantics of
// src/cpu/write.rs: skip negative and out-of-range slots, tokens = len(slot_mapping), fp8 =
// pkv::fp8_encode(v / scale)). Also checks the fast fp8 quantiser against
// pkv::fp8_encode(format, a / scale) exhaustively over bf16/f16 inputs for many scales, and
// over every f32 input for a few.
//
// This is a logic test (decomposition, slot runs, vector and lane-pair paths, strides,
// quantiser); the GPU proof against the CPU backend itself is scripts/h200/check.py.

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <random>
#include <vector>

#include "write_kv.hip"
#include "../quotient_scales.h"

using namespace pkv;

static int failures = 0;

// ------------------------------------------------------------------------------------------
// fp8 quantiser
// ------------------------------------------------------------------------------------------
template <int F>
static long check_scale(float scale, const std::vector<float>& inputs) {
    const Quotient s = make_quotient(scale);
    long bad = 0;
    for (float a : inputs) {
        const uint32_t want = fp8_encode(F, a / scale);
        const uint32_t got = s.mode == kFast ? quantize_one<F, kFast>(s, a) : quantize_one<F, kDivide>(s, a);
        if (got != want) {
            if (bad < 5)
                printf("  fp8 format %d scale %a (mode %d): a = %a -> %#x, expected %#x\n", F, scale, s.mode, a, got,
                       want);
            ++bad;
        }
    }
    return bad;
}

// The chunk quantiser (word-level signs, NaN chunks) over every 2-byte input, in chunks of 8
// consecutive and of 8 shuffled bit patterns.
template <int kSrc, int F>
static long check_chunks(float scale, const std::vector<uint16_t>& order) {
    const Quotient s = make_quotient(scale);
    long bad = 0;
    for (size_t c = 0; c + 8 <= order.size(); c += 8) {
        Raw8<uint16_t> in;
        for (int i = 0; i < 8; ++i) in.set(i, order[c + i]);
        Raw8<uint8_t> got;
        if (s.mode == kFast) got = quantize8<kSrc, F, kFast>(in, s);
        else got = quantize8<kSrc, F, kDivide>(in, s);
        for (int i = 0; i < 8; ++i) {
            const float a = Elem<kSrc>::to_f32(order[c + i]);
            const uint32_t want = fp8_encode(F, a / scale);
            if (got.get(i) != want) {
                if (bad < 5) printf("  chunk src %d fp8 %d scale %a: a = %a -> %#x, expected %#x\n", kSrc, F, scale, a, got.get(i), want);
                ++bad;
            }
        }
    }
    return bad;
}

template <int F>
static void chunk_suite(const std::vector<float>& scales) {
    std::vector<uint16_t> seq(65536), shuf(65536);
    for (uint32_t i = 0; i < 65536; ++i) seq[i] = shuf[i] = static_cast<uint16_t>(i);
    std::mt19937_64 rng(F);
    std::shuffle(shuf.begin(), shuf.end(), rng);
    long bad = 0, n = 0;
    for (float sc : scales) {
        bad += check_chunks<PKV_DT_BF16, F>(sc, seq) + check_chunks<PKV_DT_BF16, F>(sc, shuf);
        bad += check_chunks<PKV_DT_F16, F>(sc, seq) + check_chunks<PKV_DT_F16, F>(sc, shuf);
        n += 4 * 65536;
    }
    printf("fp8 format %d chunks: %ld of %ld differ\n", F, bad, n);
    failures += bad != 0;
}

template <int F>
static void fp8_suite(const std::vector<float>& small_inputs, const std::vector<float>& scales) {
    long bad = 0, n = 0;
    for (float sc : scales) {
        bad += check_scale<F>(sc, small_inputs);
        n += static_cast<long>(small_inputs.size());
    }
    printf("fp8 format %d: %ld of %ld (scale, input) pairs differ\n", F, bad, n);
    failures += bad != 0;
}

static void fp8_tests(bool full_f32) {
    // Every bf16 and every f16 value, widened.
    std::vector<float> inputs;
    for (uint32_t b = 0; b < 65536; ++b) inputs.push_back(__uint_as_float(b << 16));
    for (uint32_t b = 0; b < 65536; ++b) inputs.push_back(pkv_f16_bits_to_f32(static_cast<uint16_t>(b)));
    // Random f32 inputs around the interesting range.
    std::mt19937_64 rng(7);
    for (int i = 0; i < 200000; ++i) {
        const uint32_t e = 60 + rng() % 140;
        inputs.push_back(__uint_as_float((static_cast<uint32_t>(rng()) & 0x807fffffu) | (e << 23)));
    }
    std::vector<float> scales = quotient_test_scales(rng);
    fp8_suite<PKV_FP8_E4M3FN>(inputs, scales);
    fp8_suite<PKV_FP8_E4M3FNUZ>(inputs, scales);
    fp8_suite<PKV_FP8_E5M2>(inputs, scales);
    chunk_suite<PKV_FP8_E4M3FN>(scales);
    chunk_suite<PKV_FP8_E4M3FNUZ>(scales);
    chunk_suite<PKV_FP8_E5M2>(scales);
    if (full_f32) {
        // Every f32 bit pattern, for a few scales of each mode.
        const float full_scales[] = {0.05f, 1.0f / 3.0f, 0x1.fffffep-1f, 0.5f};
        for (float sc : full_scales) {
            long bad = 0;
            const Quotient s = make_quotient(sc);
            for (uint64_t u = 0; u <= 0xffffffffull; ++u) {
                const float a = __uint_as_float(static_cast<uint32_t>(u));
                const uint32_t want = fp8_encode(PKV_FP8_E4M3FN, a / sc);
                const uint32_t got = quantize_one<PKV_FP8_E4M3FN, kFast>(s, a);
                const uint32_t want5 = fp8_encode(PKV_FP8_E5M2, a / sc);
                const uint32_t got5 = quantize_one<PKV_FP8_E5M2, kFast>(s, a);
                if (got != want || got5 != want5) {
                    if (bad < 5) printf("  full f32 scale %a: a = %a -> %#x/%#x, expected %#x/%#x\n", sc, a, got, got5, want, want5);
                    ++bad;
                }
            }
            printf("fp8 every f32 input, scale %a (mode %d): %ld differ\n", sc, s.mode, bad);
            failures += bad != 0;
        }
    }
}

// ------------------------------------------------------------------------------------------
// Writer
// ------------------------------------------------------------------------------------------
enum Layout { SPLIT_PACKED, SPLIT_BLOCKS_FIRST, NHD };

struct Case {
    Layout layout;
    int bs, h, d, src_dt, fp8;  // fp8: PKV_FP8_* (0 = auto)
    int64_t tokens, rows, nb;
    int pad;          // page padding (elements) for blocks-first / NHD
    int nhd_tok_pad;  // NHD token-stride padding
    int nhd_head_pad; // NHD head-stride padding (heads of an odd number of 8-dim chunks on 16-byte rows)
    int src_mode;     // 0 contiguous, 1 padded rows/heads, 2 strided last dim
    int slot_mode;    // 0 engine runs from block start, 1 unaligned runs, 2 random, 3 mixed with holes
    int slot_stride;
    float k_scale, v_scale;
    bool packed;
};

static int itemsize(int dt) { return dt == PKV_DT_F32 ? 4 : 2; }

static float src_to_f32(int dt, const uint8_t* p) {
    if (dt == PKV_DT_F32) {
        uint32_t u;
        memcpy(&u, p, 4);
        return __uint_as_float(u);
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return dt == PKV_DT_F16 ? pkv_f16_bits_to_f32(h) : __uint_as_float(static_cast<uint32_t>(h) << 16);
}

static bool aligned_all(std::initializer_list<int64_t> v, int64_t a) {
    for (int64_t x : v)
        if (((x % a) + a) % a) return false;
    return true;
}

static int run_along_d(const pkv_cache_addr& a, int64_t base, int64_t es) {
    int64_t contiguous;
    if (a.x_shift == 0)
        contiguous = a.dhi == 1 ? 8 : 1;
    else
        contiguous = a.dlo == 1 ? std::min<int64_t>(1 << a.x_shift, 8) : 1;
    if (contiguous == 1) return 1;
    const int64_t al = std::min<int64_t>(contiguous * es, 16);
    bool ok = aligned_all({base, a.blk * es, a.head * es, a.tok * es}, al);
    if (a.x_shift > 0) ok = ok && aligned_all({a.dhi * es}, al);
    return ok ? static_cast<int>(contiguous) : 1;
}

static void run_case(const Case& c, std::mt19937_64& rng, int index) {
    const int es_src = itemsize(c.src_dt);
    const int es = c.fp8 ? 1 : es_src;
    const int x = 16 / es;
    const int64_t hidden = static_cast<int64_t>(c.bs) * c.h * c.d;
    // Cache addressing (elements) and extents.
    pkv_cache_addr ka{}, va{};
    int64_t key_base = 0, value_base = 0, total = 0;
    if (c.layout == SPLIT_PACKED || c.layout == SPLIT_BLOCKS_FIRST) {
        const int64_t page = c.layout == SPLIT_PACKED ? hidden : 2 * hidden + c.pad;
        key_base = 16 / es;  // keep 16-byte alignment unless a case breaks it through `pad`
        value_base = c.layout == SPLIT_PACKED ? key_base + c.nb * hidden : key_base + hidden;
        total = c.layout == SPLIT_PACKED ? key_base + 2 * c.nb * hidden : key_base + c.nb * page;
        int xs = 0;
        while ((1 << xs) < x) ++xs;
        ka = {static_cast<int32_t>(page), static_cast<int32_t>(c.d * c.bs), c.bs * x, x, 1, xs};
        va = {static_cast<int32_t>(page), static_cast<int32_t>(c.d * c.bs), c.bs, 1, 0, 0};
    } else {
        const int64_t head = c.d + c.nhd_head_pad;
        const int64_t tok = static_cast<int64_t>(c.h) * head + c.nhd_tok_pad;
        const int64_t blk = c.bs * tok;
        const int64_t page = 2 * blk + c.pad;
        key_base = 16 / es;
        value_base = key_base + blk;
        total = key_base + c.nb * page;
        ka = {static_cast<int32_t>(page), static_cast<int32_t>(head), 1, static_cast<int32_t>(tok), 0, 0};
        va = ka;
    }
    const int64_t num_slots = c.nb * c.bs;
    // Source tensors [rows, h, d].
    int64_t sstr[3];
    if (c.src_mode == 0) {
        sstr[0] = static_cast<int64_t>(c.h) * c.d; sstr[1] = c.d; sstr[2] = 1;
    } else if (c.src_mode == 1) {
        sstr[0] = static_cast<int64_t>(c.h) * (c.d + 8) + 8; sstr[1] = c.d + 8; sstr[2] = 1;
    } else {
        sstr[0] = static_cast<int64_t>(c.h) * c.d * 2; sstr[1] = c.d * 2; sstr[2] = 2;
    }
    const int64_t src_elems = (c.rows - 1) * sstr[0] + (c.h - 1) * sstr[1] + (c.d - 1) * sstr[2] + 1;
    std::vector<uint8_t> key(src_elems * es_src + 16), value(src_elems * es_src + 16);
    auto fill = [&](std::vector<uint8_t>& buf) {
        for (int64_t i = 0; i < src_elems; ++i) {
            float v;
            const uint64_t r = rng();
            switch (r % 64) {
                case 0: v = NAN; break;
                case 1: v = -INFINITY; break;
                case 2: v = INFINITY; break;
                case 3: v = -0.0f; break;
                case 4: v = 0.0f; break;
                case 5: v = __uint_as_float(static_cast<uint32_t>(r >> 8) & 0x807fffffu); break;  // subnormal
                case 6: v = __uint_as_float((static_cast<uint32_t>(r >> 8) & 0x807fffffu) | (0xfeu << 23)); break;
                case 7: v = ldexpf(1.0f + (r >> 40) / 16777216.0f, -20 + static_cast<int>((r >> 20) % 30)); break;
                default: {
                    std::normal_distribution<float> n(0.0f, 1.0f);
                    v = n(rng) * ldexpf(1.0f, static_cast<int>(r % 9) - 4);
                }
            }
            uint8_t* p = buf.data() + i * es_src;
            if (c.src_dt == PKV_DT_F32) {
                const uint32_t u = __float_as_uint(v);
                memcpy(p, &u, 4);
            } else {
                const uint16_t h = c.src_dt == PKV_DT_F16 ? pkv_f32_to_f16_bits(v) : Elem<PKV_DT_BF16>::from_f32(v);
                memcpy(p, &h, 2);
            }
        }
    };
    fill(key);
    fill(value);
    // Slots: unique valid slots, some skipped.
    std::vector<int64_t> slots(c.tokens * c.slot_stride + 1, 77);
    {
        std::vector<int64_t> perm(c.nb);
        for (int64_t i = 0; i < c.nb; ++i) perm[i] = i;
        std::shuffle(perm.begin(), perm.end(), rng);
        std::vector<int64_t> s;
        if (c.slot_mode == 0 || c.slot_mode == 3) {
            for (int64_t i = 0; static_cast<int64_t>(s.size()) < c.tokens; ++i)
                for (int o = 0; o < c.bs && static_cast<int64_t>(s.size()) < c.tokens; ++o) s.push_back(perm[i % c.nb] * c.bs + o);
        } else if (c.slot_mode == 1) {
            int64_t i = 0;
            int o = static_cast<int>(rng() % c.bs);
            while (static_cast<int64_t>(s.size()) < c.tokens) {
                s.push_back(perm[i % c.nb] * c.bs + o);
                if (++o == c.bs) { o = 0; ++i; }
            }
        } else {
            std::vector<int64_t> all(num_slots);
            for (int64_t i = 0; i < num_slots; ++i) all[i] = i;
            std::shuffle(all.begin(), all.end(), rng);
            s.assign(all.begin(), all.begin() + c.tokens);
        }
        if (c.slot_mode == 3) {
            for (int64_t t = 0; t < c.tokens; ++t) {
                const uint64_t r = rng() % 16;
                if (r == 0) s[t] = -1;
                else if (r == 1) s[t] = -static_cast<int64_t>(rng() % 1000) - 2;
                else if (r == 2) s[t] = num_slots + static_cast<int64_t>(rng() % 5);
            }
        }
        for (int64_t t = 0; t < c.tokens; ++t) slots[t * c.slot_stride] = s[t];
    }
    // The cache, poisoned.
    std::vector<uint8_t> cache(total * es + 64), ref;
    for (auto& b : cache) b = static_cast<uint8_t>(rng());
    ref = cache;
    const float k_scale = c.k_scale, v_scale = c.v_scale;
    // Reference.
    for (int64_t t = 0; t < c.tokens; ++t) {
        const int64_t slot = slots[t * c.slot_stride];
        if (slot < 0 || slot >= num_slots) continue;
        const int64_t b = slot / c.bs, o = slot % c.bs;
        for (int hh = 0; hh < c.h; ++hh)
            for (int d = 0; d < c.d; ++d) {
                const int64_t src_off = t * sstr[0] + hh * sstr[1] + d * sstr[2];
                for (int tensor = 0; tensor < 2; ++tensor) {
                    const pkv_cache_addr& a = tensor ? va : ka;
                    const int64_t xx = 1 << a.x_shift;
                    const int64_t off = (tensor ? value_base : key_base) + b * a.blk + hh * a.head + (d / xx) * a.dhi +
                                        o * a.tok + (d % xx) * a.dlo;
                    const uint8_t* sp = (tensor ? value : key).data() + src_off * es_src;
                    if (c.fp8) {
                        ref[off] = fp8_encode(c.fp8, src_to_f32(c.src_dt, sp) / (tensor ? v_scale : k_scale));
                    } else {
                        memcpy(ref.data() + off * es, sp, es);
                    }
                }
            }
    }
    // Launch arguments, as src/gpu/params.rs fills them.
    pkv_write_params p{};
    const int64_t cache_addr = reinterpret_cast<int64_t>(cache.data());
    p.key = key.data();
    p.value = value.data();
    p.slot_mapping = slots.data();
    p.key_cache = cache.data() + key_base * es;
    p.value_cache = cache.data() + value_base * es;
    p.k_scale = &k_scale;
    p.v_scale = &v_scale;
    for (int i = 0; i < 3; ++i) p.key_strides[i] = p.value_strides[i] = sstr[i];
    p.slot_stride = c.slot_stride;
    p.key_addr = ka;
    p.value_addr = va;
    p.num_tokens = c.tokens;
    p.num_slots = num_slots;
    p.num_kv_heads = c.h;
    p.head_size = c.d;
    p.block_size = c.bs;
    p.src_dtype = c.src_dt;
    p.fp8_format = c.fp8;
    p.packed = c.packed;
    const int64_t align_src = std::min(8 * es_src, 16);
    const bool src_contig = sstr[2] == 1 && aligned_all({reinterpret_cast<int64_t>(key.data()), sstr[0] * es_src, sstr[1] * es_src}, align_src) && c.d % 8 == 0;
    const bool src_contig_v = sstr[2] == 1 && aligned_all({reinterpret_cast<int64_t>(value.data()), sstr[0] * es_src, sstr[1] * es_src}, align_src) && c.d % 8 == 0;
    p.key_src_contig = src_contig;
    p.value_src_contig = src_contig_v;
    p.key_run = run_along_d(ka, cache_addr + key_base * es, es);
    p.value_run = run_along_d(va, cache_addr + value_base * es, es);
    {
        const int64_t al = std::min(8 * es, 16);
        p.value_vec = va.x_shift == 0 && va.tok == 1 && va.dhi != 1 && c.bs >= 8 &&
                      aligned_all({cache_addr + value_base * es, va.blk * es, va.head * es, va.dhi * es}, al);
    }
    p.work_items = static_cast<int32_t>((c.tokens + 15) / 16 * c.h * ((c.d + 7) / 8) * 2);
    // The 64-bit slot path: claim a huge cache (only when no slot is out of range, which the
    // kernel would then no longer skip).
    if (c.slot_mode != 3 && index % 5 == 0) p.num_slots = 1ll << 40;
    pkv_kernel_write_kv_cache(&p, nullptr);
    int64_t diff = 0, first = -1;
    for (size_t i = 0; i < cache.size(); ++i)
        if (cache[i] != ref[i]) {
            if (first < 0) first = static_cast<int64_t>(i);
            ++diff;
        }
    if (diff) {
        ++failures;
        printf("FAIL case %d: layout %d bs %d h %d d %d src %d fp8 %d tokens %lld slot_mode %d src_mode %d pad %d "
               "packed %d scales %g %g (runs %d/%d, vec %d): %lld bytes differ, first at %lld\n",
               index, c.layout, c.bs, c.h, c.d, c.src_dt, c.fp8, static_cast<long long>(c.tokens), c.slot_mode,
               c.src_mode, c.pad, c.packed, c.k_scale, c.v_scale, p.key_run, p.value_run, p.value_vec,
               static_cast<long long>(diff), static_cast<long long>(first));
    }
}

static void writer_tests(int count) {
    std::mt19937_64 rng(20250101);
    const int bss[] = {1, 2, 4, 8, 12, 16, 20, 32, 48, 64, 544};
    const int ds[] = {8, 16, 20, 24, 64, 80, 128};
    const int dts[] = {PKV_DT_F16, PKV_DT_BF16, PKV_DT_F32};
    const float scales[] = {1.0f, 0.5f, 0.05f, -0.37f, 0.0f, INFINITY, NAN, 1e-30f, 3e20f, 1.9f};
    int run = 0;
    for (int i = 0; i < count; ++i) {
        Case c{};
        c.layout = static_cast<Layout>(rng() % 3);
        c.bs = bss[rng() % 11];
        c.h = 1 + static_cast<int>(rng() % 4);
        c.d = ds[rng() % 7];
        c.src_dt = dts[rng() % 3];
        c.fp8 = (rng() % 2) ? 0 : 1 + static_cast<int>(rng() % 3);
        const int es = c.fp8 ? 1 : itemsize(c.src_dt);
        if (c.layout != NHD && c.d % (16 / es)) {
            c.d = 16 * (1 + c.d / 16);  // split keys need x | head_size
        }
        c.nb = 3 + static_cast<int64_t>(rng() % 40);
        if (c.bs >= 544) c.nb = 3;
        c.tokens = 1 + static_cast<int64_t>(rng() % std::min<int64_t>(c.nb * c.bs, 200));
        c.rows = c.tokens + static_cast<int64_t>(rng() % 3);
        const uint64_t pr = rng() % 4;
        c.pad = pr == 0 ? 0 : (pr == 1 ? 16 : (pr == 2 ? 40 : 3));
        c.nhd_tok_pad = (rng() % 3 == 0) ? 8 : 0;
        c.nhd_head_pad = (rng() % 3 == 0) ? (-c.d & 15) : 0;  // head stride a multiple of 16
        c.src_mode = static_cast<int>(rng() % 3);
        c.slot_mode = static_cast<int>(rng() % 4);
        c.slot_stride = (rng() % 4 == 0) ? 2 : 1;
        c.k_scale = scales[rng() % 10];
        c.v_scale = scales[rng() % 10];
        c.packed = false;
        if (c.layout == SPLIT_PACKED) {
            c.pad = 0;
            c.packed = (c.bs == 16 || c.bs == 32) && (rng() % 2);
        }
        run_case(c, rng, i);
        ++run;
    }
    printf("writer: %d random cases, %d failed\n", run, failures);
}

int main(int argc, char** argv) {
    const bool full = argc > 1 && strcmp(argv[1], "--full-f32") == 0;
    const bool fp8_only = argc > 1 && strcmp(argv[1], "--fp8") == 0;
    const bool writer_only = argc > 1 && strcmp(argv[1], "--writer") == 0;
    if (!writer_only) fp8_tests(full);
    if (!fp8_only) writer_tests(argc > 2 ? atoi(argv[2]) : 3000);
    printf(failures ? "FAILED\n" : "OK\n");
    return failures ? 1 : 0;
}
