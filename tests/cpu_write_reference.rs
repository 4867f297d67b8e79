//! `pkv_write_kv_cache` on host memory against the placement formulas of the spec
//! (vllm-semantics §2.2, §2.3, §4.2, §5): every byte of both caches is compared with an
//! expected image built here (targeted elements replaced, every other byte unchanged).
//! Caches are poisoned with NaN patterns that no valid write produces, so a missed element
//! shows; input gaps and rows past `slot_mapping` hold NaN, so reading one shows.

mod common;

use std::ptr;

use common::*;
use pagedkv::Status;
use pagedkv::capi::write::pkv_write_kv_cache;
use pagedkv::capi::*;
use pagedkv::core::dtype::Fp8Format;
use pagedkv::core::fp8;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Fp8Kv {
    format: Fp8Format,
    kv_enum: u32,
    cache_dt: Dt,
}

#[derive(Clone, Debug)]
struct WCase {
    in_dt: Dt,
    fp8: Option<Fp8Kv>,
    layout: Layout,
    h: i64,
    d: i64,
    bs: i64,
    nb: i64,
    /// Rows of key/value.
    rows: i64,
    /// Length of slot_mapping (<= rows).
    n_slots: i64,
    /// Fraction of slots set negative (padding).
    neg_frac: f64,
    k_scale: Option<f32>,
    v_scale: Option<f32>,
    /// Random strides (NaN gaps) on key, value and slot_mapping.
    strided_in: bool,
}

impl WCase {
    fn base() -> Self {
        WCase {
            in_dt: Dt::F16,
            fp8: None,
            layout: Layout::SplitKvFirst,
            h: 2,
            d: 32,
            bs: 16,
            nb: 5,
            rows: 9,
            n_slots: 7,
            neg_frac: 0.2,
            k_scale: None,
            v_scale: None,
            strided_in: false,
        }
    }

    fn cache_dt(&self) -> Dt {
        self.fp8.map(|f| f.cache_dt).unwrap_or(self.in_dt)
    }

    /// The path the spec's rule picks: native iff split layout, block 16 or 32, native layout.
    fn expected_path(&self) -> u32 {
        if self.layout.is_split() && matches!(self.bs, 16 | 32) && self.layout.is_native() {
            PKV_WRITE_PATH_NATIVE
        } else {
            PKV_WRITE_PATH_STRIDED
        }
    }

    /// Cache poison: a NaN no finite input can encode to.
    fn poison(&self) -> Vec<u8> {
        match self.fp8 {
            None => self.in_dt.poison_bytes(),
            Some(f) => match f.format {
                Fp8Format::E4M3FN | Fp8Format::E5M2 => vec![0xFF],
                Fp8Format::E4M3FNUZ => vec![0x80],
            },
        }
    }
}

/// A model value with a mix of magnitudes: ordinary, tiny (fp8 subnormals), huge (saturation).
fn value(rng: &mut Rng) -> f64 {
    let r = rng.unit();
    if r < 0.75 {
        rng.uniform(-3.0, 3.0)
    } else if r < 0.85 {
        rng.uniform(-1e-3, 1e-3)
    } else if r < 0.95 {
        rng.uniform(-1e5, 1e5)
    } else {
        // Exact binary fractions, some of them fp8 rounding ties.
        rng.range(-64, 64) as f64 / 16.0
    }
}

struct Input {
    buf: Buf,
    t: pkv_tensor,
    strides: Vec<i64>,
    lead: i64,
}

impl Input {
    fn elem(&self, idx: &[i64]) -> i64 {
        self.lead + offset(&self.strides, idx)
    }
}

/// `[rows, h, d]` input with values in the first `n_valid` rows and NaN elsewhere (rows past
/// slot_mapping and every gap).
fn make_input(c: &WCase, rng: &mut Rng, n_valid: i64) -> Input {
    let shape = [c.rows, c.h, c.d];
    let strides = if c.strided_in { random_strides(rng, &shape, true, 3) } else { contiguous_strides(&shape) };
    let lead = if c.strided_in { rng.range(0, 3) } else { 0 };
    let mut buf = Buf::filled(((lead + span(&shape, &strides) + 2) as usize) * c.in_dt.size(), &c.in_dt.nan_bytes());
    for r in 0..n_valid {
        for h in 0..c.h {
            for d in 0..c.d {
                buf.set_f(c.in_dt, lead + offset(&strides, &[r, h, d]), value(rng));
            }
        }
    }
    let t = tensor(&buf, c.in_dt, &shape, &strides, lead);
    Input { buf, t, strides, lead }
}

/// Runs one write and compares both caches byte for byte with the expected image.
/// Returns the cache (after the write) and the path reported.
fn run_write(c: &WCase, rng: &mut Rng) -> Result<(Cache, u32), String> {
    let cache = Cache::new(c.layout, c.cache_dt(), c.nb, c.bs, c.h, c.d, &c.poison());
    let key = make_input(c, rng, c.n_slots);
    let value_in = make_input(c, rng, c.n_slots);

    // Unique slots (a random sample of the cache), some negative.
    let num_slots = c.nb * c.bs;
    let mut all: Vec<i64> = (0..num_slots).collect();
    rng.shuffle(&mut all);
    let mut slots: Vec<i64> = all.into_iter().take(c.n_slots as usize).collect();
    assert_eq!(slots.len() as i64, c.n_slots, "more slots than the cache holds");
    for s in slots.iter_mut() {
        if rng.chance(c.neg_frac) {
            *s = rng.pick(&[-1, -2, -1000, i64::MIN]);
        }
    }
    let sstride = if c.strided_in { rng.range(1, 3) } else { 1 };
    let mut sbuf = Buf::filled(((c.n_slots.max(1) * sstride + 1) * 8) as usize, &(num_slots + 5).to_le_bytes());
    for (i, s) in slots.iter().enumerate() {
        sbuf.set_i64(i as i64 * sstride, *s);
    }
    let slot_t = tensor(&sbuf, Dt::I64, &[c.n_slots], &[sstride], 0);

    let mut ks = Buf::zeroed(8);
    ks.set_f32(0, c.k_scale.unwrap_or(1.0));
    let mut vs = Buf::zeroed(8);
    vs.set_f32(0, c.v_scale.unwrap_or(1.0));
    let ks_t = tensor(&ks, Dt::F32, &[1], &[1], 0);
    let vs_t = tensor(&vs, Dt::F32, &[1], &[1], 0);

    // The expected image: before, with every targeted element replaced.
    let mut expected = cache.snapshot();
    let cdt = c.cache_dt();
    for (t, &slot) in slots.iter().enumerate() {
        if slot < 0 {
            continue;
        }
        let (b, o) = (slot / c.bs, slot % c.bs);
        for h in 0..c.h {
            for d in 0..c.d {
                for (is_key, input, scale) in [(true, &key, c.k_scale), (false, &value_in, c.v_scale)] {
                    let src = input.elem(&[t as i64, h, d]);
                    let raw: Vec<u8> = match c.fp8 {
                        None => input.buf.elem_bytes(c.in_dt, src).to_vec(),
                        Some(f) => {
                            let x = input.buf.get_f(c.in_dt, src) as f32;
                            vec![fp8::encode(f.format, x / scale.unwrap_or(1.0))]
                        }
                    };
                    let (bi, e) = if is_key {
                        (cache.k_at.0, cache.key_elem(b, h, d, o))
                    } else {
                        (cache.v_at.0, cache.value_elem(b, h, d, o))
                    };
                    let sz = cdt.size();
                    expected[bi][e as usize * sz..(e as usize + 1) * sz].copy_from_slice(&raw);
                }
            }
        }
    }

    let (kc_t, vc_t) = (cache.key_t(), cache.value_t());
    let args = pkv_write_kv_cache_args {
        struct_size: std::mem::size_of::<pkv_write_kv_cache_args>() as u32,
        kv_layout: c.layout.kv_layout(),
        key: &key.t,
        value: &value_in.t,
        key_cache: &kc_t,
        value_cache: &vc_t,
        slot_mapping: &slot_t,
        kv_cache_dtype: c.fp8.map(|f| f.kv_enum).unwrap_or(PKV_KV_CACHE_DTYPE_AUTO),
        reserved: 0,
        k_scale: if c.k_scale.is_some() { &ks_t } else { ptr::null() },
        v_scale: if c.v_scale.is_some() { &vs_t } else { ptr::null() },
    };
    let key_before = key.buf.bytes().to_vec();
    let mut path = 0xDEADu32;
    // SAFETY: all tensors describe live host memory owned here.
    let status = unsafe { pkv_write_kv_cache(&args, ptr::null_mut(), &mut path) };
    if status != Status::Ok {
        return Err(format!("pkv_write_kv_cache returned {status:?}: {}; case {c:?}", last_error()));
    }
    if key.buf.bytes() != key_before.as_slice() {
        return Err("the write modified its input".into());
    }
    let got = cache.snapshot();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        if g != e {
            return Err(format!(
                "cache buffer {i} differs from the expected image: {}; case {c:?}",
                first_diffs(e, g, 6)
            ));
        }
    }
    if path != c.expected_path() {
        return Err(format!("path_taken = {path}, expected {}; case {c:?}", c.expected_path()));
    }
    Ok((cache, path))
}

fn random_wcase(rng: &mut Rng) -> WCase {
    let in_dt = rng.pick(&[Dt::F32, Dt::F16, Dt::BF16]);
    let fp8 = if rng.chance(0.4) {
        Some(match rng.below(3) {
            0 => Fp8Kv {
                format: Fp8Format::E4M3FN,
                kv_enum: rng.pick(&[
                    PKV_KV_CACHE_DTYPE_FP8,
                    PKV_KV_CACHE_DTYPE_FP8_E4M3,
                    PKV_KV_CACHE_DTYPE_FP8_E4M3FN,
                ]),
                cache_dt: rng.pick(&[Dt::U8, Dt::E4M3FN]),
            },
            1 => Fp8Kv {
                format: Fp8Format::E4M3FNUZ,
                kv_enum: PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ,
                cache_dt: rng.pick(&[Dt::U8, Dt::E4M3FNUZ]),
            },
            _ => Fp8Kv {
                format: Fp8Format::E5M2,
                kv_enum: PKV_KV_CACHE_DTYPE_FP8_E5M2,
                cache_dt: rng.pick(&[Dt::U8, Dt::E5M2]),
            },
        })
    } else {
        None
    };
    let cache_dt = fp8.map(|f| f.cache_dt).unwrap_or(in_dt);
    let mut layout = match rng.below(6) {
        0 => Layout::SplitSeparate,
        1 => Layout::SplitKvFirst,
        2 => Layout::SplitHybrid,
        3 => Layout::SplitPadded(rng.range(1, 33)),
        4 => Layout::NhdPadded { tok_pad: rng.range(0, 4), head_pad: rng.range(0, 3), blk_pad: rng.range(0, 7) },
        _ => Layout::NhdBlocksFirst,
    };
    let d = rng.pick(&[8i64, 16, 24, 32, 48, 64, 80, 96, 128, 256]);
    if layout.is_split() && d % cache_dt.x() != 0 {
        layout = Layout::NhdPadded { tok_pad: 1, head_pad: 0, blk_pad: 0 };
    }
    let bs = rng.pick(&[1i64, 3, 16, 16, 32, 32, 64, 544, 784, 2048]);
    let h = rng.range(1, 4);
    // Keep caches small: a few blocks of the big sizes, more of the small ones.
    let nb = if bs >= 544 { rng.range(1, 3) } else { rng.range(1, 9) };
    let rows = rng.range(0, 12);
    let n_slots = rng.range(0, rows).min(nb * bs);
    let mut c = WCase {
        in_dt,
        fp8,
        layout,
        h,
        d,
        bs,
        nb,
        rows,
        n_slots,
        neg_frac: rng.pick(&[0.0, 0.2, 0.5]),
        k_scale: None,
        v_scale: None,
        strided_in: rng.chance(0.5),
    };
    if fp8.is_some() || rng.chance(0.2) {
        c.k_scale = rng.pick(&[None, Some(0.5f32), Some(0.1), Some(3.0), Some(1e-3)]);
        c.v_scale = rng.pick(&[None, Some(0.25f32), Some(0.1), Some(7.0), Some(1e-3)]);
    }
    c
}

#[test]
fn random_writes_match_the_placement_formulas() {
    run_seeds("random write", &seeds(5000, 250), |seed| {
        let mut rng = Rng::new(seed);
        let c = random_wcase(&mut rng);
        run_write(&c, &mut rng).map(|_| ())
    });
}

/// The native writer (split, block 16/32, packed) writes exactly vLLM's `reshape_and_cache`
/// placement; the expected image is built from the packed formula of §4.2.
#[test]
fn native_path_writes_the_packed_formula() {
    for (i, bs) in [16i64, 32].into_iter().enumerate() {
        for layout in [Layout::SplitSeparate, Layout::SplitKvFirst] {
            for in_dt in [Dt::F32, Dt::F16, Dt::BF16] {
                for strided_in in [false, true] {
                    let c = WCase { bs, layout, in_dt, strided_in, nb: 4, rows: 12, n_slots: 10, ..WCase::base() };
                    let (_, path) = run_write(&c, &mut Rng::new(100 + i as u64)).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(path, PKV_WRITE_PATH_NATIVE, "{c:?}");
                }
            }
        }
    }
}

/// The stride-aware writer for hybrid pages, big and odd block sizes, padded layouts and NHD.
#[test]
fn strided_path_for_hybrid_big_blocks_and_nhd() {
    let layouts = [
        Layout::SplitHybrid,
        Layout::SplitPadded(7),
        Layout::NhdPadded { tok_pad: 3, head_pad: 2, blk_pad: 9 },
        Layout::NhdPadded { tok_pad: 0, head_pad: 0, blk_pad: 0 },
        Layout::NhdBlocksFirst,
    ];
    for (i, bs) in [16i64, 32, 544, 2048, 3].into_iter().enumerate() {
        for layout in layouts {
            let nb = if bs < 8 { 4 } else { 2 };
            let c = WCase { bs, layout, nb, rows: 8, n_slots: 8, d: 64, ..WCase::base() };
            let (_, path) = run_write(&c, &mut Rng::new(200 + i as u64)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(path, PKV_WRITE_PATH_STRIDED, "{c:?}");
        }
        // Native layout but a block size the packed writer does not serve.
        if bs != 16 && bs != 32 {
            let c = WCase { bs, layout: Layout::SplitKvFirst, nb: 4, rows: 8, n_slots: 8, ..WCase::base() };
            let (_, path) = run_write(&c, &mut Rng::new(300 + i as u64)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(path, PKV_WRITE_PATH_STRIDED, "{c:?}");
        }
    }
}

/// Where both writers apply to the same tokens (block 16: native on a packed cache, strided
/// on a hybrid and on a padded one), every page holds the same bytes.
#[test]
fn native_and_strided_writers_agree_page_by_page() {
    for (in_dt, fp8) in [
        (Dt::BF16, None),
        (Dt::F32, None),
        (Dt::F16, Some(Fp8Kv { format: Fp8Format::E4M3FN, kv_enum: PKV_KV_CACHE_DTYPE_FP8, cache_dt: Dt::U8 })),
    ] {
        let base = WCase {
            in_dt,
            fp8,
            nb: 6,
            rows: 40,
            n_slots: 40,
            neg_frac: 0.1,
            k_scale: Some(0.5),
            v_scale: Some(2.0),
            ..WCase::base()
        };
        let mut results = Vec::new();
        for layout in [Layout::SplitKvFirst, Layout::SplitHybrid, Layout::SplitPadded(40)] {
            // Same seed: same tokens and slots.
            let c = WCase { layout, ..base.clone() };
            let (cache, path) = run_write(&c, &mut Rng::new(400)).unwrap_or_else(|e| panic!("{e}"));
            results.push((layout, cache, path));
        }
        assert_eq!(results[0].2, PKV_WRITE_PATH_NATIVE);
        assert_eq!(results[1].2, PKV_WRITE_PATH_STRIDED);
        let sz = results[0].1.dt.size();
        let page = |cache: &Cache, key: bool, b: i64| -> Vec<u8> {
            let (bi, first) = if key {
                (cache.k_at.0, cache.key_elem(b, 0, 0, 0))
            } else {
                (cache.v_at.0, cache.value_elem(b, 0, 0, 0))
            };
            let n = cache.bs * cache.h * cache.d;
            cache.bufs[bi].bytes()[first as usize * sz..(first + n) as usize * sz].to_vec()
        };
        let poison = base.poison();
        let written_pages =
            (0..base.nb).filter(|&b| page(&results[0].1, true, b).chunks(sz).any(|e| e != poison.as_slice())).count();
        assert!(written_pages >= 4, "only {written_pages} pages written: the comparison would be vacuous");
        for b in 0..base.nb {
            for key in [true, false] {
                let native = page(&results[0].1, key, b);
                for (layout, cache, _) in &results[1..] {
                    assert_eq!(
                        page(cache, key, b),
                        native,
                        "{layout:?} page {b} key={key} differs from the native writer's"
                    );
                }
            }
        }
    }
}

/// Negative slots are skipped; rows past `slot_mapping` (NaN-filled) are ignored.
#[test]
fn negative_slots_and_rows_past_slot_mapping_are_ignored() {
    for layout in [Layout::SplitKvFirst, Layout::SplitHybrid, Layout::NhdPadded { tok_pad: 1, head_pad: 1, blk_pad: 1 }]
    {
        // Every slot negative: nothing may change (run_write compares the whole image).
        let c = WCase { layout, neg_frac: 1.0, rows: 6, n_slots: 6, ..WCase::base() };
        run_write(&c, &mut Rng::new(500)).unwrap_or_else(|e| panic!("{e}"));
        // Many more key rows than slots.
        let c = WCase { layout, neg_frac: 0.3, rows: 12, n_slots: 3, ..WCase::base() };
        run_write(&c, &mut Rng::new(501)).unwrap_or_else(|e| panic!("{e}"));
        // No slots at all.
        let c = WCase { layout, rows: 4, n_slots: 0, ..WCase::base() };
        run_write(&c, &mut Rng::new(502)).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// fp8 in all three formats, through every spelling, in byte and typed caches, with scales.
#[test]
fn fp8_writes_in_every_format_with_scales() {
    let kinds = [
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8, Dt::U8),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3, Dt::U8),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, Dt::E4M3FN),
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, Dt::U8),
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, Dt::E4M3FNUZ),
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, Dt::U8),
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, Dt::E5M2),
    ];
    for (i, (format, kv_enum, cache_dt)) in kinds.into_iter().enumerate() {
        for in_dt in [Dt::F32, Dt::F16, Dt::BF16] {
            for (layout, bs) in [(Layout::SplitKvFirst, 16), (Layout::SplitHybrid, 544), (Layout::NhdBlocksFirst, 32)] {
                let c = WCase {
                    in_dt,
                    fp8: Some(Fp8Kv { format, kv_enum, cache_dt }),
                    layout,
                    bs,
                    nb: 2,
                    rows: 10,
                    n_slots: 9,
                    k_scale: Some(0.37),
                    v_scale: Some(4.5),
                    ..WCase::base()
                };
                run_write(&c, &mut Rng::new(600 + i as u64)).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}

/// Writes one token whose values are chosen by hand and checks bytes worked out by hand from
/// the format definitions (bias, mantissa width, saturation, ties to even, subnormals).
#[test]
fn fp8_bytes_worked_out_by_hand() {
    // (format, kv_cache_dtype, scale, input, expected byte)
    let cases: &[(Fp8Format, u32, f32, f32, u8)] = &[
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 1.0, 1.0, 0x38),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8, 1.0, -2.0, 0xC0),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3, 1.0, 448.0, 0x7E),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 1.0, 1e6, 0x7E),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 1.0, -1e6, 0xFE),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 1.0, f32::INFINITY, 0x7E),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 0.25, 0.5, 0x40), // 0.5 / 0.25 = 2.0
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 1.0, 1.0625, 0x38), // tie -> even mantissa 000
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 1.0, 1.1875, 0x3A), // tie -> even mantissa 010
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 1.0, 0.001953125, 0x01), // 2^-9, smallest subnormal
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 1.0, 0.0009765625, 0x00), // 2^-10: tie -> 0
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 1.0, 0.0029296875, 0x02), // 1.5 * 2^-9: tie -> 0x02
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 1.0, -0.0, 0x80),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, 2.0, 1000.0, 0x7E), // 500 saturates
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, 1.0, 1.0, 0x40),
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, 1.0, 240.0, 0x7F),
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, 1.0, 1e6, 0x7F),
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, 1.0, -1e6, 0xFF),
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, 1.0, -0.0, 0x00), // no negative zero
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, 1.0, 0.0009765625, 0x01), // 2^-10
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, 0.5, -1.0, 0xC8), // -2.0: exp 9
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, 1.0, 1.0, 0x3C),
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, 1.0, 1.25, 0x3D),
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, 1.0, 1.125, 0x3C), // tie -> even
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, 1.0, 1.375, 0x3E), // tie -> even
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, 1.0, 57344.0, 0x7B),
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, 1.0, 1e6, 0x7B), // saturates, not inf
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, 1.0, -1e6, 0xFB),
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, 1.0, 2f32.powi(-16), 0x01), // 2^-16
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, 0.1, 0.4, 0x44),            // 0.4f32 / 0.1f32 = 4.0
    ];
    for &(format, kv_enum, scale, x, want) in cases {
        // One token, H = 1, D = 16; the tested value at d = 5, the others 0.
        let mut kbuf = Buf::zeroed(16 * 4);
        kbuf.set_f32(5, x);
        let key = tensor(&kbuf, Dt::F32, &[1, 1, 16], &[16, 16, 1], 0);
        let mut cache = Cache::new(Layout::SplitKvFirst, Dt::U8, 2, 16, 1, 16, &[0xAA]);
        let slots = Owned::i64s(&[16 + 3]); // block 1, offset 3
        let mut sbuf = Buf::zeroed(8);
        sbuf.set_f32(0, scale);
        let scale_t = tensor(&sbuf, Dt::F32, &[1], &[1], 0);
        let (kc, vc) = (cache.key_t(), cache.value_t());
        let slot_t = slots.t();
        let args = pkv_write_kv_cache_args {
            struct_size: std::mem::size_of::<pkv_write_kv_cache_args>() as u32,
            kv_layout: PKV_KV_LAYOUT_SPLIT,
            key: &key,
            value: &key,
            key_cache: &kc,
            value_cache: &vc,
            slot_mapping: &slot_t,
            kv_cache_dtype: kv_enum,
            reserved: 0,
            k_scale: &scale_t,
            v_scale: &scale_t,
        };
        // SAFETY: live host tensors.
        let st = unsafe { pkv_write_kv_cache(&args, ptr::null_mut(), ptr::null_mut()) };
        assert_eq!(st, Status::Ok, "{}", last_error());
        let (kb, vb) = (cache.key_elem(1, 0, 5, 3), cache.value_elem(1, 0, 5, 3));
        let k = cache.kbuf().get_u8(kb);
        let v = cache.vbuf().get_u8(vb);
        assert_eq!(k, want, "{format:?}: key {x} / {scale} -> {k:#04x}, expected {want:#04x}");
        assert_eq!(v, want, "{format:?}: value {x} / {scale} -> {v:#04x}, expected {want:#04x}");
        // The other dims of that token are 0 -> 0x00.
        let other = cache.key_elem(1, 0, 4, 3);
        assert_eq!(cache.kbuf().get_u8(other), 0x00);
    }
}

/// NaN inputs become the format's NaN in fp8 caches, and are copied as-is into auto caches.
#[test]
fn nan_inputs_are_kept_as_nan() {
    for (format, kv_enum, nan) in [
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, fp8_nan(Fp8Format::E4M3FN)),
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, fp8_nan(Fp8Format::E4M3FNUZ)),
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, fp8_nan(Fp8Format::E5M2)),
    ] {
        let mut kbuf = Buf::zeroed(16 * 4);
        kbuf.set_f32(0, f32::NAN);
        let key = tensor(&kbuf, Dt::F32, &[1, 1, 16], &[16, 16, 1], 0);
        let mut cache = Cache::new(Layout::SplitSeparate, Dt::U8, 1, 16, 1, 16, &[0x11]);
        let slots = Owned::i64s(&[0]);
        let (kc, vc, st) = (cache.key_t(), cache.value_t(), slots.t());
        let args = pkv_write_kv_cache_args {
            struct_size: std::mem::size_of::<pkv_write_kv_cache_args>() as u32,
            kv_layout: PKV_KV_LAYOUT_SPLIT,
            key: &key,
            value: &key,
            key_cache: &kc,
            value_cache: &vc,
            slot_mapping: &st,
            kv_cache_dtype: kv_enum,
            reserved: 0,
            k_scale: ptr::null(),
            v_scale: ptr::null(),
        };
        // SAFETY: live host tensors.
        assert_eq!(unsafe { pkv_write_kv_cache(&args, ptr::null_mut(), ptr::null_mut()) }, Status::Ok);
        let e = cache.key_elem(0, 0, 0, 0);
        let got = cache.kbuf().get_u8(e);
        assert!(fp8::decode(format, got).is_nan(), "{format:?}: NaN stored as {got:#04x}");
        assert_eq!(got, nan);
    }
}

/// The path rule as a table (spec §12.5): native iff split layout, block size 16 or 32 and
/// native (packed block) layout for both caches.
#[test]
fn path_rule_table() {
    let rows: &[(Layout, i64, u32)] = &[
        (Layout::SplitSeparate, 16, PKV_WRITE_PATH_NATIVE),
        (Layout::SplitKvFirst, 32, PKV_WRITE_PATH_NATIVE),
        (Layout::SplitKvFirst, 64, PKV_WRITE_PATH_STRIDED),
        (Layout::SplitKvFirst, 8, PKV_WRITE_PATH_STRIDED),
        (Layout::SplitKvFirst, 544, PKV_WRITE_PATH_STRIDED),
        (Layout::SplitHybrid, 16, PKV_WRITE_PATH_STRIDED),
        (Layout::SplitHybrid, 32, PKV_WRITE_PATH_STRIDED),
        (Layout::SplitPadded(16), 16, PKV_WRITE_PATH_STRIDED),
        (Layout::NhdPadded { tok_pad: 0, head_pad: 0, blk_pad: 0 }, 16, PKV_WRITE_PATH_STRIDED),
        (Layout::NhdBlocksFirst, 32, PKV_WRITE_PATH_STRIDED),
    ];
    for (i, &(layout, bs, want)) in rows.iter().enumerate() {
        let c = WCase { layout, bs, nb: 2, rows: 3, n_slots: 3, ..WCase::base() };
        let (_, path) = run_write(&c, &mut Rng::new(700 + i as u64)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path, want, "{layout:?} block {bs}");
    }
}
