//! Core tier, through the crate's pub API and without touching memory: the attention planner
//! over random shapes and device limits (properties the spec requires: tile decoupled from
//! the block size, shared memory within the device limit, split count from shapes only, no
//! empty splits, workspace for every partial) and the batch-value checks at their edges.

mod common;

use common::Rng;
use pagedkv::Status;
use pagedkv::core::attention::{AttentionArgs, AttentionProblem, BatchValues, check_batch_values, validate_attention};
use pagedkv::core::dtype::{DType, Device, Fp8Format, KvCacheDtype, KvLayout};
use pagedkv::core::plan::{
    AttentionPath, DecodeKernel, DeviceLimits, GeneralKernel, Plan, Target, plan_attention,
    prefill_mma_shared_mem_bytes,
};
use pagedkv::core::tensor::TensorDesc;

/// Descriptors of one attention call at fake (aligned, never dereferenced) addresses.
struct Shapes {
    q: TensorDesc,
    k: TensorDesc,
    v: TensorDesc,
    bt: TensorDesc,
    sl: TensorDesc,
    qsl: TensorDesc,
    out: TensorDesc,
}

#[derive(Clone, Copy, Debug)]
struct Dims {
    qdt: DType,
    num_tokens: i64,
    num_seqs: i64,
    hq: i64,
    hkv: i64,
    d: i64,
    bs: i64,
    nb: i64,
    cols: i64,
}

fn shapes(m: &Dims, cache_dt: DType) -> Shapes {
    let dev = Device::CPU;
    let x = 16 / cache_dt.size_bytes() as i64;
    let c = |addr: usize, dt: DType, shape: &[i64]| TensorDesc::contiguous(addr, dev, dt, shape);
    Shapes {
        q: c(0x1000_0000, m.qdt, &[m.num_tokens, m.hq, m.d]),
        k: c(0x2000_0000, cache_dt, &[m.nb, m.hkv, m.d / x, m.bs, x]),
        v: c(0x3000_0000, cache_dt, &[m.nb, m.hkv, m.d, m.bs]),
        bt: c(0x4000_0000, DType::I32, &[m.num_seqs, m.cols]),
        sl: c(0x5000_0000, DType::I32, &[m.num_seqs]),
        qsl: c(0x6000_0000, DType::I32, &[m.num_seqs + 1]),
        out: c(0x7000_0000, m.qdt, &[m.num_tokens, m.hq, m.d]),
    }
}

fn problem(m: &Dims) -> AttentionProblem {
    problem_with_cache(m, m.qdt, KvCacheDtype::Auto)
}

/// `m` over a cache of `cache_dt` elements (uint8 for the fp8 `kv_cache_dtype`s).
fn problem_with_cache(m: &Dims, cache_dt: DType, kv_cache_dtype: KvCacheDtype) -> AttentionProblem {
    validated(m, cache_dt, kv_cache_dtype, 0).unwrap_or_else(|e| panic!("{m:?}: {e}"))
}

/// `m` validated with the caller's query-length bound `max_query_len` (0: unknown).
fn validated(
    m: &Dims,
    cache_dt: DType,
    kv_cache_dtype: KvCacheDtype,
    max_query_len: u32,
) -> Result<AttentionProblem, pagedkv::Error> {
    let s = shapes(m, cache_dt);
    let args = AttentionArgs {
        kv_layout: KvLayout::Split,
        query: &s.q,
        key_cache: &s.k,
        value_cache: &s.v,
        block_table: &s.bt,
        seq_lens: &s.sl,
        query_start_loc: &s.qsl,
        output: &s.out,
        kv_cache_dtype,
        k_scale: None,
        v_scale: None,
        alibi_slopes: None,
        sinks: None,
        output_scale: None,
        sm_scale: 0.0,
        sliding_window: 0,
        logits_soft_cap: 0.0,
        causal: true,
        max_query_len,
    };
    validate_attention(&args, Fp8Format::E4M3FN)
}

fn gpu(arch: &str, wave: u32, smem: u64, optin: u64, cus: u32) -> Target {
    Target::Gpu(DeviceLimits {
        arch: arch.to_string(),
        wave_size: wave,
        shared_mem_per_block: smem,
        shared_mem_per_block_optin: optin,
        multiprocessor_count: cus,
    })
}

fn devices() -> Vec<Target> {
    vec![
        gpu("gfx942", 64, 65536, 65536, 304),
        gpu("gfx90a", 64, 65536, 65536, 110),
        gpu("gfx1100", 32, 65536, 65536, 96),
        gpu("gfx1201", 32, 65536, 65536, 64),
        gpu("sm_90", 32, 49152, 232448, 132),
        gpu("gfx803", 64, 65536, 65536, 36),
    ]
}

/// A decode batch of the benchmark shape: bf16, 32 q / 8 kv heads, block 16, one
/// query token per sequence, tables `context` keys wide.
fn decode_dims(num_seqs: i64, d: i64, context: i64) -> Dims {
    Dims { qdt: DType::BF16, num_tokens: num_seqs, num_seqs, hq: 32, hkv: 8, d, bs: 16, nb: 8, cols: context / 16 }
}

fn random_dims(rng: &mut Rng) -> Dims {
    let qdt = rng.pick(&[DType::F16, DType::BF16, DType::F32]);
    let d = rng.pick(&[8i64, 16, 32, 64, 80, 96, 112, 128, 160, 192, 224, 256]);
    let hkv = rng.pick(&[1i64, 2, 4, 8]);
    let g = rng.pick(&[1i64, 2, 3, 4, 7, 8, 16]);
    let bs = rng.pick(&[1i64, 16, 32, 64, 128, 256, 544, 784, 1056, 2048]);
    let num_seqs = rng.pick(&[1i64, 2, 7, 64, 256]);
    let num_tokens = num_seqs + rng.pick(&[0i64, 0, 5, 300]);
    let context = rng.pick(&[1i64, 100, 4096, 32768, 131072]);
    Dims { qdt, num_tokens, num_seqs, hq: hkv * g, hkv, d, bs, nb: 8, cols: (context + bs - 1) / bs }
}

/// Properties every GPU plan must have.
fn check_plan(m: &Dims, t: &Target, p: &Plan) -> Result<(), String> {
    let Target::Gpu(l) = t else { unreachable!() };
    let what = format!("{} {m:?}: {p:?}", l.arch);
    let limit = l.shared_mem_per_block.max(l.shared_mem_per_block_optin);
    if p.shared_mem_bytes == 0 || p.shared_mem_bytes > limit {
        return Err(format!("shared memory {} outside (0, {limit}]: {what}", p.shared_mem_bytes));
    }
    if p.tile_size == 0 || (m.bs > 128 && p.tile_size as i64 == m.bs) {
        return Err(format!("tile {} for block size {}: {what}", p.tile_size, m.bs));
    }
    if p.threads == 0 || p.threads % l.wave_size != 0 {
        return Err(format!("threads {} not whole waves of {}: {what}", p.threads, l.wave_size));
    }
    if p.block_q == 0 || p.num_q_blocks == 0 {
        return Err(format!("empty grid: {what}"));
    }
    // A split never has no keys to walk: at most one split per tile of the longest context.
    let max_tiles = ((m.cols * m.bs) as u64).div_ceil(p.tile_size as u64).max(1);
    if p.num_splits == 0 || p.num_splits as u64 > max_tiles {
        return Err(format!("{} splits for {max_tiles} tiles: {what}", p.num_splits));
    }
    let split = p.num_splits > 1;
    if split != (p.path == AttentionPath::GpuSplitKv) || (!split && p.path != AttentionPath::GpuSinglePass) {
        return Err(format!("path {:?} with {} splits: {what}", p.path, p.num_splits));
    }
    // Scratch for every (token, head, split) accumulator in f32, or none.
    let partials = m.num_tokens as u64 * m.hq as u64 * p.num_splits as u64 * m.d as u64 * 4;
    if split && p.workspace_bytes < partials || !split && p.workspace_bytes != 0 {
        return Err(format!(
            "workspace {} for {} splits (partials need {partials}): {what}",
            p.workspace_bytes, p.num_splits
        ));
    }
    let reason = p.reason.describe(&l.arch, p.num_splits);
    if m.bs > p.tile_size as i64 && !reason.contains("decoupled") {
        return Err(format!("reason {reason:?} does not say the tile is decoupled: {what}"));
    }
    Ok(())
}

#[test]
fn random_plans_have_the_required_properties() {
    common::run_seeds("random plans", &common::seeds(9000, 400), |seed| {
        let mut rng = Rng::new(seed);
        let m = random_dims(&mut rng);
        let prob = problem(&m);
        for t in devices() {
            let p = plan_attention(&prob, &t).map_err(|e| format!("{m:?} on {}: {e}", t.arch()))?;
            check_plan(&m, &t, &p)?;
            // Pure and deterministic.
            if plan_attention(&prob, &t).unwrap() != p {
                return Err("planning twice gave two plans".into());
            }
        }
        Ok(())
    });
}

/// The tile depends on the head size, dtype, GQA ratio and device; never on the block size.
#[test]
fn tile_is_independent_of_block_size() {
    let mut rng = Rng::new(1);
    for _ in 0..60 {
        let m = random_dims(&mut rng);
        for t in devices() {
            let tiles: Vec<u32> = [1i64, 16, 32, 544, 784, 1056, 2048]
                .iter()
                .map(|&bs| {
                    let mm = Dims { bs, cols: (m.cols * m.bs + bs - 1) / bs, ..m };
                    plan_attention(&problem(&mm), &t).unwrap().tile_size
                })
                .collect();
            assert!(tiles.windows(2).all(|w| w[0] == w[1]), "{} {m:?}: tiles {tiles:?}", t.arch());
        }
    }
}

/// More work-groups never ask for more splits: a full GPU needs no split, except that the
/// decode kernel bounds the keys one work-group walks (6144 of the longest context, so that
/// one long sequence of a mixed batch does not set its time).
#[test]
fn splits_do_not_grow_with_the_batch() {
    for t in devices() {
        for d in [64i64, 128, 256] {
            let mut last = u32::MAX;
            for num_seqs in [1i64, 2, 8, 32, 128, 512, 2048] {
                let p = plan_attention(&problem(&decode_dims(num_seqs, d, 32768)), &t).unwrap();
                assert!(
                    p.num_splits <= last,
                    "{}: batch {num_seqs} wants {} splits after {last}",
                    t.arch(),
                    p.num_splits
                );
                last = p.num_splits;
            }
            // 32768 keys: the fewest splits of at most 6144 keys each is 6.
            let length_bound = if t.arch().starts_with("sm_") { 6 } else { 1 };
            assert_eq!(last, length_bound, "{}: a batch of 2048 sequences fills any GPU", t.arch());
        }
    }
}

/// A device whose shared memory cannot hold any tile is refused, never over-committed.
#[test]
fn too_little_shared_memory_is_an_error() {
    let m = Dims { qdt: DType::F32, num_tokens: 1, num_seqs: 1, hq: 16, hkv: 1, d: 256, bs: 16, nb: 8, cols: 4 };
    let prob = problem(&m);
    for smem in [1024u64, 4096, 8192] {
        let t = gpu("gfx942", 64, smem, smem, 304);
        match plan_attention(&prob, &t) {
            Ok(p) => assert!(p.shared_mem_bytes <= smem, "{p:?}"),
            Err(e) => {
                assert_eq!(e.status, Status::SharedMemoryExceeded);
                assert!(e.message.contains(&smem.to_string()), "{}", e.message);
            }
        }
    }
    let t = gpu("gfx942", 64, 1024, 1024, 304);
    assert_eq!(plan_attention(&prob, &t).unwrap_err().status, Status::SharedMemoryExceeded);
}

/// e4m3fn caches with 16-bit queries take the tensor-core kernel where the hardware converts
/// fp8 to f16 (sm_89+; 32-key tiles per warp); the FMA kernel before sm_89 and for e5m2.
#[test]
fn fp8_caches_choose_their_decode_kernel() {
    let m = decode_dims(64, 128, 4096);
    let plan = |m: &Dims, kv: KvCacheDtype, arch: &str| {
        let p = plan_attention(&problem_with_cache(m, DType::U8, kv), &gpu(arch, 32, 49152, 232448, 132)).unwrap();
        (p.decode.map(|d| d.kernel), p.tile_size)
    };
    assert_eq!(plan(&m, KvCacheDtype::Fp8E4M3FN, "sm_90"), (Some(DecodeKernel::TensorCores), 3 * 32));
    assert_eq!(
        plan(&Dims { d: 256, ..m }, KvCacheDtype::Fp8E4M3FN, "sm_90"),
        (Some(DecodeKernel::TensorCores), 4 * 32)
    );
    assert_eq!(plan(&m, KvCacheDtype::Fp8E4M3FN, "sm_86"), (Some(DecodeKernel::Fma), 128));
    assert_eq!(plan(&m, KvCacheDtype::Fp8E5M2, "sm_90"), (Some(DecodeKernel::Fma), 128));
    // 16-bit caches: the same kernel and tiles.
    let p = plan_attention(&problem(&m), &gpu("sm_90", 32, 49152, 232448, 132)).unwrap();
    assert_eq!((p.decode.map(|d| d.kernel), p.tile_size), (Some(DecodeKernel::TensorCores), 3 * 32));
}

/// Decode work-groups serve sequences longest first only where their order matters (more than
/// one wave of resident work-groups) and the batch is small enough to rank on the device.
#[test]
fn decode_order_is_longest_first_beyond_one_wave() {
    let h200 = gpu("sm_90", 32, 49152, 232448, 132);
    let order = |num_seqs: i64, context: i64| {
        let d = plan_attention(&problem(&decode_dims(num_seqs, 128, context)), &h200).unwrap().decode.unwrap();
        (d.num_splits, d.longest_first)
    };
    // 64 x 8 work-groups fit one wave of 132 x 4; two splits of 8192 keys do not.
    assert_eq!(order(64, 4096), (1, false));
    assert_eq!(order(64, 8192), (2, true));
    assert_eq!(order(256, 32768), (6, true));
    // One sequence has no order; more than 256 are not ranked.
    assert!(!order(1, 32768).1);
    assert!(!order(512, 32768).1);
}

/// The kernels after the decode kernel overlap its end (programmatic dependent launch) only on
/// devices that have the mechanism (NVIDIA sm_90 and later).
#[test]
fn kernels_after_decode_overlap_on_sm90_only() {
    let overlap = |arch: &str| {
        let d = plan_attention(&problem(&decode_dims(1, 128, 32768)), &gpu(arch, 32, 49152, 232448, 132))
            .unwrap()
            .decode
            .unwrap();
        assert!(d.num_splits > 1);
        d.overlap_next
    };
    assert!(overlap("sm_90") && overlap("sm_90a") && overlap("sm_100"));
    assert!(!overlap("sm_89") && !overlap("sm_80"));
}

/// A caller's `max_query_len` of 1 lets the decode kernel serve every row (the general kernel
/// is not launched); an unknown (0) or larger bound keeps the general kernel, and a bound the
/// shapes already break is refused, naming the argument.
#[test]
fn max_query_len_one_leaves_out_the_general_kernel() {
    let h200 = gpu("sm_90", 32, 49152, 232448, 132);
    let m = decode_dims(64, 128, 4096);
    let plan = |mql: u32| plan_attention(&validated(&m, m.qdt, KvCacheDtype::Auto, mql).unwrap(), &h200).unwrap();
    let covers = |mql: u32| plan(mql).decode.unwrap().covers_all;
    assert!(covers(1));
    assert!(!covers(0) && !covers(2) && !covers(64));
    // The same launch shape either way: only the general kernel's launch differs.
    assert_eq!(plan(1).decode.unwrap().num_splits, plan(0).decode.unwrap().num_splits);
    let reason = |mql: u32| plan(mql).reason.describe("sm_90", plan(mql).num_splits);
    assert!(reason(1).contains("no general kernel"), "{}", reason(1));
    assert!(!reason(0).contains("no general kernel"), "{}", reason(0));
    // Rows past the last sequence's (graph padding: 80 rows for 64 one-token queries) keep the
    // batch decode-shaped under the bound; unknown lengths plan it as a prefill-carried batch.
    let padded = Dims { num_tokens: 80, ..m };
    let plan_padded = |mql: u32| plan_attention(&validated(&padded, m.qdt, KvCacheDtype::Auto, mql).unwrap(), &h200);
    let (bounded, unknown) = (plan_padded(1).unwrap(), plan_padded(0).unwrap());
    assert_eq!((bounded.decode, bounded.tile_size), (plan(1).decode, plan(1).tile_size));
    assert!(!unknown.decode.unwrap().covers_all);
    assert_ne!(unknown.tile_size, plan(0).tile_size);
}

/// Prefill rows take the tensor-core prefill kernel on NVIDIA sm_80+ for f16/bf16 queries over
/// a cache of the same dtype (or, sm_89+, of e4m3fn / e5m2 codes) and head sizes that are multiples of 16 from 64 to 128: 128 rows
/// of 128 threads (every query head of a kv head, for 128 / G tokens), 64-key tiles. Everything
/// else keeps the general FMA kernel, and decode-shaped batches never take it.
#[test]
fn prefill_rows_take_tensor_cores_where_they_can() {
    let h200 = gpu("sm_90", 32, 49152, 232448, 132);
    let prefill = |qdt: DType, d: i64| Dims {
        qdt,
        num_tokens: 8 * 512,
        num_seqs: 8,
        hq: 32,
        hkv: 8,
        d,
        bs: 16,
        nb: 8,
        cols: 4608 / 16,
    };
    let general = |m: &Dims, cache: DType, kv: KvCacheDtype, t: &Target| {
        plan_attention(&problem_with_cache(m, cache, kv), t).unwrap()
    };
    let p = general(&prefill(DType::BF16, 128), DType::BF16, KvCacheDtype::Auto, &h200);
    assert_eq!(p.general.kernel, GeneralKernel::TensorCores, "{p:?}");
    assert_eq!(
        (p.threads, p.block_q, p.tile_size, p.general.heads_per_cta, p.general.head_groups),
        (128, 32, 64, 4, 1)
    );
    assert_eq!(p.shared_mem_bytes, prefill_mma_shared_mem_bytes(128));
    assert!(p.shared_mem_bytes > 49152 && p.shared_mem_bytes <= 232448);
    assert!(p.reason.describe("sm_90", p.num_splits).contains("tensor-core prefill kernel"));
    // Every head size that is a multiple of 16 from 64 to 128, and 192 and 256, in f16 too;
    // above 128, 64-row work-groups (one m-tile per warp) and 32-key tiles.
    for d in [64i64, 80, 96, 112, 128, 192, 256] {
        let p = general(&prefill(DType::F16, d), DType::F16, KvCacheDtype::Auto, &h200);
        assert_eq!(p.general.kernel, GeneralKernel::TensorCores, "head {d}");
        let (rows, tile) = if d > 128 { (64, 32) } else { (128, 64) };
        assert_eq!((p.block_q * p.general.heads_per_cta, p.tile_size), (rows, tile), "head {d}");
        assert_eq!(p.shared_mem_bytes, prefill_mma_shared_mem_bytes(d as u32));
        // Two work-groups per SM: their shared memory and the runtime's reserve fit 227 KiB.
        assert!(2 * (p.shared_mem_bytes + 1024) <= 232448, "head {d}: {} bytes", p.shared_mem_bytes);
    }
    for (hq, hkv, block_q, groups) in [(8i64, 8i64, 128u32, 1u32), (64, 1, 2, 1), (256, 2, 1, 1), (512, 2, 1, 2)] {
        let m = Dims { hq, hkv, ..prefill(DType::BF16, 128) };
        let p = general(&m, DType::BF16, KvCacheDtype::Auto, &h200);
        assert_eq!((p.block_q, p.general.head_groups), (block_q, groups), "{hq}/{hkv}");
        assert!(p.general.heads_per_cta * p.block_q <= 128);
    }
    // fp8 caches of the OCP formats on sm_89 and later (widened in hardware while staged).
    for kv in [KvCacheDtype::Fp8E4M3, KvCacheDtype::Fp8E4M3FN, KvCacheDtype::Fp8E5M2] {
        let p = general(&prefill(DType::BF16, 128), DType::U8, kv, &h200);
        assert_eq!(p.general.kernel, GeneralKernel::TensorCores, "{kv:?}");
    }
    // The general kernel: other head sizes, f32 queries, fnuz fp8 caches and fp8 caches before
    // sm_89, AMD, pre-sm_80 NVIDIA.
    let fma = |m: &Dims, cache: DType, kv: KvCacheDtype, t: &Target| {
        let p = general(m, cache, kv, t);
        assert_eq!(p.general.kernel, GeneralKernel::Fma, "{m:?} {kv:?} on {}", t.arch());
        assert_eq!(p.threads, 256);
    };
    fma(&prefill(DType::BF16, 72), DType::BF16, KvCacheDtype::Auto, &h200);
    fma(&prefill(DType::BF16, 48), DType::BF16, KvCacheDtype::Auto, &h200);
    fma(&prefill(DType::BF16, 160), DType::BF16, KvCacheDtype::Auto, &h200);
    fma(&prefill(DType::F32, 128), DType::F32, KvCacheDtype::Auto, &h200);
    fma(&prefill(DType::BF16, 128), DType::U8, KvCacheDtype::Fp8E4M3FNUZ, &h200);
    fma(&prefill(DType::BF16, 128), DType::U8, KvCacheDtype::Fp8E4M3FN, &gpu("sm_86", 32, 49152, 101376, 84));
    fma(&prefill(DType::BF16, 128), DType::BF16, KvCacheDtype::Auto, &gpu("gfx942", 64, 65536, 65536, 304));
    fma(&prefill(DType::BF16, 128), DType::BF16, KvCacheDtype::Auto, &gpu("sm_75", 32, 49152, 65536, 40));
    // Too little opt-in shared memory for the prefill kernel's stages: the general kernel.
    fma(&prefill(DType::BF16, 128), DType::BF16, KvCacheDtype::Auto, &gpu("sm_90", 32, 49152, 65536, 132));
    // fp8 outputs (16-bit probabilities could move a rounding decision by more than a code).
    let mut fp8_out = problem_with_cache(&prefill(DType::BF16, 128), DType::BF16, KvCacheDtype::Auto);
    fp8_out.out_quant = Some(Fp8Format::E4M3FN);
    assert_eq!(plan_attention(&fp8_out, &h200).unwrap().general.kernel, GeneralKernel::Fma);
    // Decode-shaped batches: the decode kernel carries them; the general plan stays FMA.
    let p = general(&decode_dims(64, 128, 4096), DType::BF16, KvCacheDtype::Auto, &h200);
    assert_eq!(p.general.kernel, GeneralKernel::Fma);
}

#[test]
fn cpu_plan() {
    let m = Dims { qdt: DType::F16, num_tokens: 3, num_seqs: 2, hq: 4, hkv: 2, d: 64, bs: 544, nb: 2, cols: 3 };
    let p = plan_attention(&problem(&m), &Target::Cpu).unwrap();
    assert_eq!(p.path, AttentionPath::CpuReference);
    assert_eq!((p.num_splits, p.workspace_bytes, p.shared_mem_bytes), (1, 0, 0));
    assert!(p.reason.describe("cpu", 1).contains("544"));
}

// ---------------------------------------------------------------------------------------------
// Batch values

struct Batch {
    seq_lens: Vec<i32>,
    qsl: Vec<i32>,
    table: Vec<Vec<i32>>,
}

fn check(m: &Dims, b: &Batch) -> Result<(), pagedkv::Error> {
    let p = problem(m);
    let table = |s: i64, j: i64| b.table[s as usize][j as usize];
    check_batch_values(&p, &BatchValues { seq_lens: &b.seq_lens, query_start_loc: &b.qsl, block_table: &table })
}

/// Where the values are readable (the CPU backend), a query longer than the caller's
/// `max_query_len` is refused by name; one at the bound is fine.
#[test]
fn batch_values_keep_the_query_length_bound() {
    let m = batch_dims(2, 4, 2);
    let b = Batch { seq_lens: vec![32, 3], qsl: vec![0, 1, 4], table: vec![vec![0, 3], vec![2, -1]] };
    let with_bound = |mql: u32| {
        let p = validated(&m, m.qdt, KvCacheDtype::Auto, mql).unwrap();
        let table = |s: i64, j: i64| b.table[s as usize][j as usize];
        check_batch_values(&p, &BatchValues { seq_lens: &b.seq_lens, query_start_loc: &b.qsl, block_table: &table })
    };
    let e = with_bound(2).unwrap_err();
    assert_eq!(e.status, Status::InvalidValue);
    assert!(e.message.contains("= 3 query tokens, more than max_query_len = 2"), "{e}");
    assert!(with_bound(3).is_ok() && with_bound(0).is_ok());
}

fn batch_dims(num_seqs: i64, num_tokens: i64, cols: i64) -> Dims {
    Dims { qdt: DType::F16, num_tokens, num_seqs, hq: 2, hkv: 1, d: 16, bs: 16, nb: 4, cols }
}

#[test]
fn batch_values_at_their_edges() {
    let m = batch_dims(2, 4, 2);
    let ok = |b: &Batch| check(&m, b).unwrap_or_else(|e| panic!("{e}"));
    let err = |b: &Batch, s: Status, needle: &str| {
        let e = check(&m, b).unwrap_err();
        assert_eq!(e.status, s, "{}", e.message);
        assert!(e.message.contains(needle), "{:?} lacks {needle:?}", e.message);
    };
    // Full table: 32 tokens in 2 columns of 16; the last block id is num_blocks - 1.
    ok(&Batch { seq_lens: vec![32, 3], qsl: vec![0, 1, 4], table: vec![vec![0, 3], vec![2, -1]] });
    err(
        &Batch { seq_lens: vec![33, 3], qsl: vec![0, 1, 4], table: vec![vec![0, 3], vec![2, -1]] },
        Status::BlockTableTooShort,
        "seq_lens[0] = 33",
    );
    err(
        &Batch { seq_lens: vec![32, 3], qsl: vec![0, 1, 4], table: vec![vec![0, 4], vec![2, -1]] },
        Status::BlockIdOutOfRange,
        "block_table[0][1] = 4",
    );
    // seq_len == q_len (a whole prefill) is fine; one less is not.
    ok(&Batch { seq_lens: vec![1, 3], qsl: vec![0, 1, 4], table: vec![vec![0, -9], vec![2, -9]] });
    err(
        &Batch { seq_lens: vec![1, 2], qsl: vec![0, 1, 4], table: vec![vec![0, -9], vec![2, -9]] },
        Status::InvalidSeqLen,
        "seq_lens[1] = 2",
    );
    // Graph padding: no query tokens, so neither seq_len (beyond >= 0) nor the row is read.
    ok(&Batch { seq_lens: vec![1_000_000, 3], qsl: vec![0, 0, 3], table: vec![vec![-5, 77], vec![2, -1]] });
    err(
        &Batch { seq_lens: vec![-1, 3], qsl: vec![0, 0, 3], table: vec![vec![0, 0], vec![2, -1]] },
        Status::InvalidSeqLen,
        "seq_lens[0] = -1",
    );
    // query_start_loc: may stop short of num_tokens (padding rows), never past it.
    ok(&Batch { seq_lens: vec![5, 1], qsl: vec![0, 1, 2], table: vec![vec![0, -9], vec![2, -9]] });
    err(
        &Batch { seq_lens: vec![5, 5], qsl: vec![0, 1, 5], table: vec![vec![0, -9], vec![2, -9]] },
        Status::InvalidQueryStartLoc,
        "query_start_loc[2] = 5",
    );
    err(
        &Batch { seq_lens: vec![5, 5], qsl: vec![0, 3, 2], table: vec![vec![0, -9], vec![2, -9]] },
        Status::InvalidQueryStartLoc,
        "query_start_loc[2] = 2",
    );
}

/// Validation never reads memory: `validate_attention` takes descriptors only, so a plan is
/// available for tensors the host cannot read (checked here by never-valid addresses).
#[test]
fn validation_needs_no_memory() {
    let m = batch_dims(3, 9, 5);
    let p = problem(&m);
    assert_eq!((p.num_seqs, p.num_tokens, p.max_blocks_per_seq, p.gqa_ratio()), (3, 9, 5, 2));
    assert_eq!(p.max_context_bound(), 5 * 16);
    assert!((p.sm_scale - 0.25).abs() < 1e-7, "default sm_scale 1/sqrt(16)");
}
