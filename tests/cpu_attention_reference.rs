//! `pkv_paged_attention` on the CPU backend against an independent float64 reference written
//! here from the spec (design.md §5, vllm-semantics §7, §12): randomized shapes, GQA ratios,
//! block sizes (1 to 2048, powers of two and not), block-table permutations, sequence lengths
//! at block edges, mixed decode/prefill batches with graph padding, every cache layout, strided
//! inputs and outputs, f32/f16/bf16, fp8 caches in three formats with scales, fp8 output.
//!
//! Every unwritten cache slot, every block-table column past a sequence and every gap between
//! strided elements holds NaN or an invalid block id, so reading one shows up. Outputs are
//! poisoned before each call; every element of a real query row must be written and every
//! other byte of the output buffer must be left alone.

mod common;

use std::ptr;

use common::*;
use pagedkv::Status;
use pagedkv::capi::attention::pkv_paged_attention;
use pagedkv::capi::*;
use pagedkv::core::dtype::Fp8Format;
use pagedkv::core::fp8;

const HEAD_SIZES: [i64; 14] = [8, 16, 24, 32, 40, 64, 80, 96, 112, 128, 160, 192, 224, 256];
const BLOCK_SIZES: [i64; 10] = [1, 2, 3, 16, 32, 64, 544, 784, 1056, 2048];
/// Random cases per run and the work budget of each (see `Case::cost`): about 10 s in debug.
const RANDOM_CASES: u64 = 300;
const RANDOM_BUDGET: i64 = 1_500_000;
const GQA_RATIOS: [i64; 6] = [1, 2, 3, 4, 7, 8];

#[derive(Clone, Copy, Debug, PartialEq)]
struct Fp8Kv {
    format: Fp8Format,
    /// `PKV_KV_CACHE_DTYPE_*` passed in the arguments.
    kv_enum: u32,
    /// Element type of the cache tensors: uint8 or the typed fp8 dtype.
    cache_dt: Dt,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct OutFp8 {
    dt: Dt,
    format: Fp8Format,
    scale: f32,
}

#[derive(Clone, Debug)]
struct Case {
    qdt: Dt,
    fp8: Option<Fp8Kv>,
    layout: Layout,
    hq: i64,
    hkv: i64,
    d: i64,
    bs: i64,
    /// `(seq_len, q_len)` per sequence; `q_len == 0` is graph padding.
    seqs: Vec<(i64, i64)>,
    /// Query rows past `query_start_loc[num_seqs]` (graph padding; never written).
    pad_rows: i64,
    spare_blocks: i64,
    extra_cols: i64,
    causal: bool,
    window: i32,
    alibi: bool,
    sinks: bool,
    /// Put a -inf sink on head 0.
    neg_inf_sink: bool,
    soft_cap: f32,
    sm_scale: f32,
    k_scale: Option<f32>,
    v_scale: Option<f32>,
    out_fp8: Option<OutFp8>,
    /// Random strides (with NaN/garbage gaps) on query, output, block_table, seq_lens, query_start_loc.
    strided_io: bool,
}

impl Case {
    fn base() -> Self {
        Case {
            qdt: Dt::F32,
            fp8: None,
            layout: Layout::SplitKvFirst,
            hq: 4,
            hkv: 2,
            d: 32,
            bs: 16,
            seqs: vec![(37, 1), (21, 4), (16, 16), (1, 1)],
            pad_rows: 1,
            spare_blocks: 2,
            extra_cols: 1,
            causal: true,
            window: 0,
            alibi: false,
            sinks: false,
            neg_inf_sink: false,
            soft_cap: 0.0,
            sm_scale: 0.0,
            k_scale: None,
            v_scale: None,
            out_fp8: None,
            strided_io: false,
        }
    }

    fn cache_dt(&self) -> Dt {
        self.fp8.map(|f| f.cache_dt).unwrap_or(self.qdt)
    }

    fn num_tokens(&self) -> i64 {
        self.seqs.iter().map(|s| s.1).sum::<i64>() + self.pad_rows
    }

    fn blocks_needed(&self) -> i64 {
        self.seqs.iter().filter(|s| s.1 > 0).map(|s| ceil_div(s.0, self.bs)).sum()
    }

    fn num_blocks(&self) -> i64 {
        (self.blocks_needed() + self.spare_blocks).max(1)
    }

    /// Rough work estimate (multiply-adds plus cache bytes touched), to keep debug runs short.
    fn cost(&self) -> i64 {
        let attn: i64 =
            self.seqs.iter().filter(|s| s.1 > 0).map(|&(l, q)| (q * self.hq + 2 * self.hkv) * l * self.d).sum();
        let cache = self.num_blocks() * self.bs * self.hkv * self.d * 2;
        2 * attn + cache / 4
    }

    fn out_dt(&self) -> Dt {
        self.out_fp8.map(|o| o.dt).unwrap_or(self.qdt)
    }
}

/// The logical contents of a call, independent of block size and layout.
struct Data {
    /// `[num_tokens, hq, d]`, already rounded to the query dtype.
    q: Vec<f64>,
    /// Per sequence `[seq_len, hkv, d]`: the values the reference sees (dequantised for fp8).
    k: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
    /// Per sequence, the stored values: model values (auto) or fp8 bytes.
    k_store: Vec<Vec<Stored>>,
    v_store: Vec<Vec<Stored>>,
    slopes: Vec<f32>,
    sinks: Vec<f32>,
}

#[derive(Clone, Copy)]
enum Stored {
    Value(f64),
    Byte(u8),
}

fn make_data(c: &Case, rng: &mut Rng) -> Data {
    let t = c.num_tokens();
    let q: Vec<f64> = (0..t * c.hq * c.d).map(|_| c.qdt.round(rng.uniform(-1.0, 1.0))).collect();
    let mut k = Vec::new();
    let mut v = Vec::new();
    let mut k_store = Vec::new();
    let mut v_store = Vec::new();
    for &(seq_len, q_len) in &c.seqs {
        let n = if q_len > 0 { seq_len * c.hkv * c.d } else { 0 };
        let mut generate = |scale: Option<f32>| -> (Vec<f64>, Vec<Stored>) {
            let mut vals = Vec::with_capacity(n as usize);
            let mut store = Vec::with_capacity(n as usize);
            for _ in 0..n {
                match c.fp8 {
                    None => {
                        let x = c.qdt.round(rng.uniform(-1.0, 1.0));
                        vals.push(x);
                        store.push(Stored::Value(x));
                    }
                    Some(f) => {
                        let s = scale.unwrap_or(1.0);
                        // Realistic magnitudes: about ±2 after dequantisation.
                        let byte = fp8::encode(f.format, (rng.uniform(-2.0, 2.0) / s as f64) as f32);
                        vals.push(dequant(f.format, byte, s as f64));
                        store.push(Stored::Byte(byte));
                    }
                }
            }
            (vals, store)
        };
        let (kv, ks) = generate(c.k_scale);
        let (vv, vs) = generate(c.v_scale);
        k.push(kv);
        v.push(vv);
        k_store.push(ks);
        v_store.push(vs);
    }
    let slopes = (0..c.hq).map(|_| rng.uniform(-0.25, 0.6) as f32).collect();
    let mut sinks: Vec<f32> = (0..c.hq).map(|_| rng.uniform(-2.0, 4.0) as f32).collect();
    if c.neg_inf_sink {
        sinks[0] = f32::NEG_INFINITY;
    }
    Data { q, k, v, k_store, v_store, slopes, sinks }
}

/// The reference: float64 loops straight from the spec. Returns, per query row, the
/// `[hq * d]` output (None for rows no sequence owns).
fn reference(c: &Case, data: &Data) -> Vec<Option<Vec<f64>>> {
    let t_total = c.num_tokens();
    let mut out: Vec<Option<Vec<f64>>> = vec![None; t_total as usize];
    let g = c.hq / c.hkv;
    let sm_scale = if c.sm_scale == 0.0 { 1.0 / (c.d as f64).sqrt() } else { c.sm_scale as f64 };
    let mut row0 = 0i64;
    for (s, &(seq_len, q_len)) in c.seqs.iter().enumerate() {
        for t in 0..q_len {
            let row = row0 + t;
            let p = seq_len - q_len + t;
            let mut res = vec![0f64; (c.hq * c.d) as usize];
            for h in 0..c.hq {
                let kvh = h / g;
                let q = &data.q[((row * c.hq + h) * c.d) as usize..((row * c.hq + h + 1) * c.d) as usize];
                let mut logits: Vec<(f64, Option<i64>)> = Vec::new();
                for j in 0..seq_len {
                    if c.causal && j > p {
                        continue;
                    }
                    if c.window > 0 && p - j >= c.window as i64 {
                        continue;
                    }
                    let kb = ((j * c.hkv + kvh) * c.d) as usize;
                    let k = &data.k[s][kb..kb + c.d as usize];
                    let mut score = sm_scale * q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>();
                    if c.soft_cap > 0.0 {
                        let cap = c.soft_cap as f64;
                        score = cap * (score / cap).tanh();
                    }
                    if c.alibi {
                        score += data.slopes[h as usize] as f64 * (j - p) as f64;
                    }
                    logits.push((score, Some(j)));
                }
                if c.sinks {
                    logits.push((data.sinks[h as usize] as f64, None));
                }
                let m = logits.iter().map(|l| l.0).fold(f64::NEG_INFINITY, f64::max);
                let mut denom = 0.0;
                let mut acc = vec![0f64; c.d as usize];
                for &(score, j) in &logits {
                    let w = if score == f64::NEG_INFINITY { 0.0 } else { (score - m).exp() };
                    denom += w;
                    if let Some(j) = j {
                        let vb = ((j * c.hkv + kvh) * c.d) as usize;
                        for (a, x) in acc.iter_mut().zip(&data.v[s][vb..vb + c.d as usize]) {
                            *a += w * x;
                        }
                    }
                }
                for (d, a) in acc.iter().enumerate() {
                    res[(h * c.d) as usize + d] = a / denom;
                }
            }
            out[row as usize] = Some(res);
        }
        row0 += q_len;
    }
    out
}

/// Garbage block ids for table entries that must never be read.
fn garbage_block(rng: &mut Rng, nb: i64) -> i32 {
    rng.pick(&[-1, i32::MIN, nb as i32, i32::MAX, nb as i32 + 1000, -7])
}

/// A 1-D int32 tensor with a random stride whose gaps hold garbage.
fn i32_vec(rng: &mut Rng, values: &[i32], strided: bool) -> (Buf, pkv_tensor) {
    let stride = if strided { rng.range(1, 3) } else { 1 };
    let lead = if strided { rng.range(0, 2) } else { 0 };
    let n = values.len() as i64;
    let mut buf = Buf::filled(((lead + (n.max(1) - 1) * stride + 1 + 2) * 4) as usize, &0x7A5A_5A5Ai32.to_le_bytes());
    for (i, v) in values.iter().enumerate() {
        buf.set_i32(lead + i as i64 * stride, *v);
    }
    let t = tensor(&buf, Dt::I32, &[n], &[stride], lead);
    (buf, t)
}

fn f32_vec(values: &[f32]) -> (Buf, pkv_tensor) {
    let mut buf = Buf::zeroed(values.len().max(1) * 4);
    for (i, v) in values.iter().enumerate() {
        buf.set_f32(i as i64, *v);
    }
    let t = tensor(&buf, Dt::F32, &[values.len() as i64], &[1], 0);
    (buf, t)
}

/// The output of one call, per query row: `Some([hq * d])` as read back (dequantised for fp8).
type Outputs = Vec<Option<Vec<f64>>>;

/// Builds host memory for `c` with the logical contents `data`, runs `pkv_paged_attention`,
/// and checks the output buffer against the reference. `layout_rng` drives the physical
/// choices (block permutation, strides), so one `data` can be laid out many ways.
fn run(c: &Case, data: &Data, layout_rng: &mut Rng) -> Result<Outputs, String> {
    let rng = layout_rng;
    let nb = c.num_blocks();
    let cache_dt = c.cache_dt();
    let fill = match c.fp8 {
        None => cache_dt.nan_bytes(),
        Some(f) => vec![fp8_nan(f.format)],
    };
    let mut cache = Cache::new(c.layout, cache_dt, nb, c.bs, c.hkv, c.d, &fill);

    // Block table: a random permutation of the physical blocks; garbage past each sequence.
    let mut perm: Vec<i64> = (0..nb).collect();
    rng.shuffle(&mut perm);
    let mut next = 0usize;
    let cols = c.seqs.iter().map(|s| if s.1 > 0 { ceil_div(s.0, c.bs) } else { 0 }).max().unwrap_or(0) + c.extra_cols;
    let cols = cols.max(1);
    let mut table = vec![vec![0i32; cols as usize]; c.seqs.len()];
    for (s, &(seq_len, q_len)) in c.seqs.iter().enumerate() {
        let used = if q_len > 0 { ceil_div(seq_len, c.bs) } else { 0 };
        for col in 0..cols {
            table[s][col as usize] = if col < used {
                next += 1;
                perm[next - 1] as i32
            } else {
                garbage_block(rng, nb)
            };
        }
        if q_len == 0 {
            continue;
        }
        for j in 0..seq_len {
            let blk = table[s][(j / c.bs) as usize] as i64;
            let off = j % c.bs;
            for h in 0..c.hkv {
                for d in 0..c.d {
                    let i = ((j * c.hkv + h) * c.d + d) as usize;
                    for (key, store) in [(true, &data.k_store[s]), (false, &data.v_store[s])] {
                        match store[i] {
                            Stored::Value(x) => {
                                let got = cache.put(key, blk, h, d, off, x);
                                assert!(got == x || x.is_nan(), "test data not representable in the cache dtype");
                            }
                            Stored::Byte(b) => cache.put_byte(key, blk, h, d, off, b),
                        }
                    }
                }
            }
        }
    }
    let table_shape = [c.seqs.len() as i64, cols];
    let table_strides =
        if c.strided_io { random_strides(rng, &table_shape, true, 2) } else { contiguous_strides(&table_shape) };
    let table_span = span(&table_shape, &table_strides).max(1);
    let mut table_buf = Buf::filled((table_span as usize + 4) * 4, &(nb as i32 + 77).to_le_bytes());
    for (s, row) in table.iter().enumerate() {
        for (col, &b) in row.iter().enumerate() {
            table_buf.set_i32(offset(&table_strides, &[s as i64, col as i64]), b);
        }
    }
    let table_t = tensor(&table_buf, Dt::I32, &table_shape, &table_strides, 0);

    let seq_lens: Vec<i32> = c.seqs.iter().map(|s| s.0 as i32).collect();
    let mut qsl = vec![0i32];
    for s in &c.seqs {
        qsl.push(qsl.last().unwrap() + s.1 as i32);
    }
    let (_sl_buf, sl_t) = i32_vec(rng, &seq_lens, c.strided_io);
    let (_qsl_buf, qsl_t) = i32_vec(rng, &qsl, c.strided_io);

    // Query: NaN in every gap.
    let t_total = c.num_tokens();
    let qshape = [t_total, c.hq, c.d];
    let qstrides = if c.strided_io { random_strides(rng, &qshape, true, 3) } else { contiguous_strides(&qshape) };
    let qlead = if c.strided_io { rng.range(0, 3) } else { 0 };
    let mut qbuf = Buf::filled(((qlead + span(&qshape, &qstrides) + 4) as usize) * c.qdt.size(), &c.qdt.nan_bytes());
    for row in 0..t_total {
        for h in 0..c.hq {
            for d in 0..c.d {
                let x = data.q[((row * c.hq + h) * c.d + d) as usize];
                let stored = qbuf.set_f(c.qdt, qlead + offset(&qstrides, &[row, h, d]), x);
                assert_eq!(stored, x);
            }
        }
    }
    let query_t = tensor(&qbuf, c.qdt, &qshape, &qstrides, qlead);

    // Output: poisoned everywhere, with poison before and after the tensor's extent.
    let odt = c.out_dt();
    let ostrides = if c.strided_io { random_strides(rng, &qshape, true, 3) } else { contiguous_strides(&qshape) };
    let olead = if c.strided_io { rng.range(1, 4) } else { 2 };
    let oelems = olead + span(&qshape, &ostrides) + 5;
    let obuf = Buf::filled(oelems as usize * odt.size(), &odt.poison_bytes());
    let out_t = tensor(&obuf, odt, &qshape, &ostrides, olead);

    let (_ks_buf, ks_t) = f32_vec(&[c.k_scale.unwrap_or(1.0)]);
    let (_vs_buf, vs_t) = f32_vec(&[c.v_scale.unwrap_or(1.0)]);
    let (_os_buf, os_t) = f32_vec(&[c.out_fp8.map(|o| o.scale).unwrap_or(1.0)]);
    let (_al_buf, al_t) = f32_vec(&data.slopes);
    let (_sk_buf, sk_t) = f32_vec(&data.sinks);
    let (kc_t, vc_t) = (cache.key_t(), cache.value_t());
    let cache_before = cache.snapshot();
    let q_before = qbuf.bytes().to_vec();

    let args = pkv_paged_attention_args {
        struct_size: std::mem::size_of::<pkv_paged_attention_args>() as u32,
        kv_layout: c.layout.kv_layout(),
        query: &query_t,
        key_cache: &kc_t,
        value_cache: &vc_t,
        block_table: &table_t,
        seq_lens: &sl_t,
        query_start_loc: &qsl_t,
        output: &out_t,
        kv_cache_dtype: c.fp8.map(|f| f.kv_enum).unwrap_or(PKV_KV_CACHE_DTYPE_AUTO),
        causal: c.causal as u32,
        k_scale: if c.k_scale.is_some() { &ks_t } else { ptr::null() },
        v_scale: if c.v_scale.is_some() { &vs_t } else { ptr::null() },
        alibi_slopes: if c.alibi { &al_t } else { ptr::null() },
        sinks: if c.sinks { &sk_t } else { ptr::null() },
        output_scale: if c.out_fp8.is_some() { &os_t } else { ptr::null() },
        sm_scale: c.sm_scale,
        sliding_window: c.window,
        logits_soft_cap: c.soft_cap,
        max_query_len: 0,
    };
    // SAFETY: every tensor describes live host memory owned by this function.
    let status = unsafe { pkv_paged_attention(&args, ptr::null_mut(), 0, ptr::null_mut()) };
    if status != Status::Ok {
        return Err(format!("pkv_paged_attention returned {status:?}: {}", last_error()));
    }
    if cache.snapshot() != cache_before {
        return Err("the call modified the cache".into());
    }
    if qbuf.bytes() != q_before {
        return Err("the call modified the query".into());
    }

    // Every element of a real row: compared with the reference; every other byte: poison.
    let want = reference(c, data);
    let mut covered = vec![false; oelems as usize];
    let mut got_rows: Outputs = vec![None; t_total as usize];
    let mut worst = (0.0f64, String::new());
    for row in 0..t_total {
        let Some(ref_row) = &want[row as usize] else { continue };
        let mut got_row = vec![0f64; (c.hq * c.d) as usize];
        for h in 0..c.hq {
            for d in 0..c.d {
                let e = olead + offset(&ostrides, &[row, h, d]);
                covered[e as usize] = true;
                let r = ref_row[(h * c.d + d) as usize];
                let (got, err, tol) = match c.out_fp8 {
                    None => {
                        let got = obuf.get_f(odt, e);
                        let (atol, rtol) = match odt {
                            Dt::F32 => (2e-5, 2e-5),
                            Dt::F16 => (1e-3, 1e-3),
                            _ => (6e-3, 6e-3),
                        };
                        (got, (got - r).abs(), atol + rtol * r.abs())
                    }
                    Some(o) => {
                        let byte = obuf.get_u8(e);
                        let dec = fp8::decode(o.format, byte) as f64;
                        let target = r / o.scale as f64;
                        let max = fp8_max(o.format);
                        let (mant, sub) = fp8_params(o.format);
                        if target.abs() >= max {
                            // Saturation: exactly the largest finite value with the sign.
                            (dec * o.scale as f64, (dec - max.copysign(target)).abs(), 0.0)
                        } else {
                            // Round to nearest: at most half a unit in the last place.
                            let half_ulp = (target.abs() * 2f64.powi(-mant - 1)).max(sub / 2.0);
                            (dec * o.scale as f64, (dec - target).abs(), half_ulp * 1.0001 + 1e-9 * target.abs())
                        }
                    }
                };
                if !got.is_finite() || err.is_nan() || err > tol {
                    return Err(format!(
                        "output[{row}][{h}][{d}] = {got}, reference {r} (error {err:e} > tolerance {tol:e}); case {c:?}"
                    ));
                }
                if err / tol.max(1e-300) > worst.0 {
                    worst = (err / tol.max(1e-300), format!("[{row}][{h}][{d}]"));
                }
                got_row[(h * c.d + d) as usize] = got;
            }
        }
        got_rows[row as usize] = Some(got_row);
    }
    let poison = odt.poison_bytes();
    for (e, &cov) in covered.iter().enumerate() {
        if !cov && obuf.elem_bytes(odt, e as i64) != poison.as_slice() {
            return Err(format!(
                "output buffer element {e} is not part of any real query row but was written ({:?}); case {c:?}",
                obuf.elem_bytes(odt, e as i64)
            ));
        }
    }
    Ok(got_rows)
}

// ---------------------------------------------------------------------------------------------
// Random cases

fn random_fp8(rng: &mut Rng) -> Fp8Kv {
    match rng.below(3) {
        0 => Fp8Kv {
            format: Fp8Format::E4M3FN,
            kv_enum: rng.pick(&[PKV_KV_CACHE_DTYPE_FP8, PKV_KV_CACHE_DTYPE_FP8_E4M3, PKV_KV_CACHE_DTYPE_FP8_E4M3FN]),
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
    }
}

fn random_layout(rng: &mut Rng) -> Layout {
    match rng.below(6) {
        0 => Layout::SplitSeparate,
        1 => Layout::SplitKvFirst,
        2 => Layout::SplitHybrid,
        3 => Layout::SplitPadded(rng.range(1, 40)),
        4 => Layout::NhdPadded { tok_pad: rng.range(0, 5), head_pad: rng.range(0, 3), blk_pad: rng.range(0, 9) },
        _ => Layout::NhdBlocksFirst,
    }
}

fn random_case(rng: &mut Rng, budget: i64) -> Case {
    loop {
        let qdt = rng.pick(&[Dt::F32, Dt::F16, Dt::BF16]);
        let fp8 = if rng.chance(0.3) { Some(random_fp8(rng)) } else { None };
        let mut layout = random_layout(rng);
        let d = rng.pick(&HEAD_SIZES);
        let cache_dt = fp8.map(|f| f.cache_dt).unwrap_or(qdt);
        if layout.is_split() && d % cache_dt.x() != 0 {
            layout = Layout::NhdPadded { tok_pad: rng.range(0, 3), head_pad: 0, blk_pad: rng.range(0, 5) };
        }
        let (hkv, ratio) =
            if rng.chance(0.2) { (1, rng.pick(&[1, 4, 8])) } else { (rng.range(1, 3), rng.pick(&GQA_RATIOS)) };
        let bs = rng.pick(&BLOCK_SIZES);
        let nseqs = rng.range(1, 4);
        let mut seqs = Vec::new();
        for _ in 0..nseqs {
            let r = rng.unit();
            if r < 0.12 {
                seqs.push((rng.range(0, 3 * bs), 0));
                continue;
            }
            let q_len = if r < 0.55 { 1 } else { rng.range(2, 5) };
            let any = rng.range(1, 3 * bs);
            let l = rng.pick(&[q_len, 1, bs - 1, bs, bs + 1, 2 * bs, 2 * bs + 1, any]);
            seqs.push((l.max(q_len).max(1), q_len));
        }
        let mut case = Case {
            qdt,
            fp8,
            layout,
            hq: hkv * ratio,
            hkv,
            d,
            bs,
            seqs,
            pad_rows: rng.range(0, 2),
            spare_blocks: rng.range(0, 2),
            extra_cols: rng.range(0, 2),
            causal: rng.chance(0.8),
            window: if rng.chance(0.5) {
                0
            } else {
                let (w1, w2) = (rng.range(1, 40) as i32, rng.range(1, 3000) as i32);
                rng.pick(&[1, 2, 3, w1, w2])
            },
            alibi: rng.chance(0.25),
            sinks: rng.chance(0.25),
            neg_inf_sink: rng.chance(0.3),
            soft_cap: if rng.chance(0.2) { rng.pick(&[0.5f32, 2.0, 10.0]) } else { 0.0 },
            sm_scale: if rng.chance(0.6) { 0.0 } else { rng.pick(&[0.05f32, 0.3, 1.0]) },
            k_scale: None,
            v_scale: None,
            out_fp8: None,
            strided_io: rng.chance(0.5),
        };
        if fp8.is_some() || rng.chance(0.2) {
            // Scales are ignored by auto caches, which is itself worth checking.
            case.k_scale = rng.pick(&[None, Some(0.5f32), Some(0.25), Some(1.7), Some(3.0)]);
            case.v_scale = rng.pick(&[None, Some(0.5f32), Some(0.25), Some(1.7), Some(3.0)]);
        }
        if rng.chance(0.2) {
            let (dt, format) = rng.pick(&[
                (Dt::U8, Fp8Format::E4M3FN), // uint8 output: the device's e4m3 (OCP on CPU)
                (Dt::E4M3FN, Fp8Format::E4M3FN),
                (Dt::E4M3FNUZ, Fp8Format::E4M3FNUZ),
                (Dt::E5M2, Fp8Format::E5M2),
            ]);
            case.out_fp8 = Some(OutFp8 { dt, format, scale: rng.pick(&[0.5f32, 0.05, 2.0, 0.003]) });
        }
        let has_real_sequence = case.seqs.iter().any(|s| s.1 > 0);
        if has_real_sequence && case.cost() <= budget {
            return case;
        }
    }
}

#[test]
fn random_cases_match_the_float64_reference() {
    let seeds = seeds(1000, RANDOM_CASES);
    run_seeds("random attention", &seeds, |seed| {
        let mut rng = Rng::new(seed);
        let case = random_case(&mut rng, RANDOM_BUDGET);
        let data = make_data(&case, &mut rng);
        run(&case, &data, &mut rng).map(|_| ())
    });
}

// ---------------------------------------------------------------------------------------------
// Deterministic coverage of each feature

fn check(c: &Case, seed: u64) -> Outputs {
    let mut rng = Rng::new(seed);
    let data = make_data(c, &mut rng);
    match run(c, &data, &mut rng) {
        Ok(o) => o,
        Err(e) => panic!("seed {seed}: {e}"),
    }
}

fn max_diff(a: &Outputs, b: &Outputs) -> f64 {
    let mut m = 0f64;
    for (x, y) in a.iter().zip(b) {
        if let (Some(x), Some(y)) = (x, y) {
            for (p, q) in x.iter().zip(y) {
                m = m.max((p - q).abs());
            }
        }
    }
    m
}

/// Each feature on its own, on one small batch; the feature must change the reference output
/// (otherwise the comparison could not catch it being ignored).
#[test]
fn every_feature_alone_matches_and_matters() {
    let base = Case::base();
    let sm1 = Case { sm_scale: 1.0, ..base.clone() };
    // (name, with the feature, the same without it)
    let variants: Vec<(&str, Case, &Case)> = vec![
        ("window 1 (only the current key)", Case { window: 1, ..base.clone() }, &base),
        ("window 2", Case { window: 2, ..base.clone() }, &base),
        ("window 17", Case { window: 17, ..base.clone() }, &base),
        ("non-causal", Case { causal: false, ..base.clone() }, &base),
        ("non-causal + window 3", Case { causal: false, window: 3, ..base.clone() }, &base),
        ("alibi", Case { alibi: true, ..base.clone() }, &base),
        ("alibi + window 5", Case { alibi: true, window: 5, ..base.clone() }, &base),
        ("sinks", Case { sinks: true, ..base.clone() }, &base),
        ("soft-cap 0.5", Case { soft_cap: 0.5, ..sm1.clone() }, &sm1),
        ("soft-cap + alibi", Case { soft_cap: 1.0, alibi: true, ..sm1.clone() }, &sm1),
        ("sm_scale 1.0", sm1.clone(), &base),
    ];
    for (i, (name, with, without)) in variants.into_iter().enumerate() {
        let seed = 7 + i as u64;
        let data = make_data(&with, &mut Rng::new(seed));
        let r_with = reference(&with, &data);
        let r_without = reference(without, &make_data(without, &mut Rng::new(seed)));
        assert!(max_diff(&r_with, &r_without) > 1e-3, "{name}: the feature does not change this batch's output");
        if let Err(e) = run(&with, &data, &mut Rng::new(seed + 100)) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn sinks_including_negative_infinity() {
    for (neg_inf, alibi) in [(false, false), (true, false), (true, true)] {
        check(&Case { sinks: true, neg_inf_sink: neg_inf, alibi, ..Case::base() }, 11);
    }
}

#[test]
fn fp8_caches_in_every_format_with_scales() {
    let kinds = [
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8, Dt::U8),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3, Dt::E4M3FN),
        (Fp8Format::E4M3FN, PKV_KV_CACHE_DTYPE_FP8_E4M3FN, Dt::U8),
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, Dt::U8),
        (Fp8Format::E4M3FNUZ, PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ, Dt::E4M3FNUZ),
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, Dt::U8),
        (Fp8Format::E5M2, PKV_KV_CACHE_DTYPE_FP8_E5M2, Dt::E5M2),
    ];
    for (i, (format, kv_enum, cache_dt)) in kinds.into_iter().enumerate() {
        for qdt in [Dt::F32, Dt::F16, Dt::BF16] {
            for layout in [Layout::SplitHybrid, Layout::NhdPadded { tok_pad: 3, head_pad: 1, blk_pad: 5 }] {
                let c = Case {
                    qdt,
                    fp8: Some(Fp8Kv { format, kv_enum, cache_dt }),
                    layout,
                    k_scale: Some(0.5),
                    v_scale: Some(0.25),
                    ..Case::base()
                };
                check(&c, 20 + i as u64);
            }
        }
        // Scales matter: dequantising with the wrong scale would be off by 2x.
        let c = Case {
            fp8: Some(Fp8Kv { format, kv_enum, cache_dt }),
            k_scale: Some(3.0),
            v_scale: Some(1.7),
            ..Case::base()
        };
        check(&c, 30 + i as u64);
    }
}

#[test]
fn fp8_output_with_output_scale() {
    for (dt, format) in [
        (Dt::U8, Fp8Format::E4M3FN),
        (Dt::E4M3FN, Fp8Format::E4M3FN),
        (Dt::E4M3FNUZ, Fp8Format::E4M3FNUZ),
        (Dt::E5M2, Fp8Format::E5M2),
    ] {
        for scale in [0.5f32, 0.01, 4.0, 0.0004] {
            for qdt in [Dt::F32, Dt::BF16] {
                let c = Case { qdt, out_fp8: Some(OutFp8 { dt, format, scale }), strided_io: true, ..Case::base() };
                check(&c, 40);
            }
        }
    }
}

#[test]
fn every_layout_and_dtype() {
    let layouts = [
        Layout::SplitSeparate,
        Layout::SplitKvFirst,
        Layout::SplitHybrid,
        Layout::SplitPadded(13),
        Layout::NhdPadded { tok_pad: 0, head_pad: 0, blk_pad: 0 },
        Layout::NhdPadded { tok_pad: 5, head_pad: 3, blk_pad: 11 },
        Layout::NhdBlocksFirst,
    ];
    for layout in layouts {
        for qdt in [Dt::F32, Dt::F16, Dt::BF16] {
            for strided_io in [false, true] {
                check(&Case { layout, qdt, strided_io, ..Case::base() }, 50);
            }
        }
    }
}

#[test]
fn special_head_sizes_and_gqa_ratios() {
    for (i, d) in [80i64, 96, 112, 160, 192, 224, 256, 8].into_iter().enumerate() {
        for (hkv, hq) in [(1, 7), (2, 6), (1, 1), (2, 16)] {
            let c = Case {
                d,
                hkv,
                hq,
                qdt: if i % 2 == 0 { Dt::F16 } else { Dt::BF16 },
                layout: if i % 3 == 0 { Layout::SplitHybrid } else { Layout::SplitSeparate },
                seqs: vec![(18, 1), (5, 3)],
                ..Case::base()
            };
            check(&c, 60 + i as u64);
        }
    }
}

/// Sequence lengths at block edges, for small, odd and large block sizes, decode and prefill.
#[test]
fn sequence_lengths_at_block_edges() {
    for (i, bs) in [1i64, 2, 3, 16, 32, 544, 784, 2048].into_iter().enumerate() {
        let mut seqs = Vec::new();
        for l in [1, bs - 1, bs, bs + 1, 2 * bs] {
            if l >= 1 {
                seqs.push((l, 1));
                if l >= 3 {
                    seqs.push((l, 3));
                }
            }
        }
        let c = Case { bs, seqs, d: 16, hq: 2, hkv: 1, qdt: Dt::F32, layout: Layout::SplitSeparate, ..Case::base() };
        check(&c, 70 + i as u64);
        let c = Case { layout: Layout::NhdPadded { tok_pad: 1, head_pad: 2, blk_pad: 3 }, window: 3, ..c };
        check(&c, 80 + i as u64);
    }
}

/// Graph padding: sequences with no query tokens at the start, middle and end, with garbage
/// `seq_lens` and block-table rows, plus padding rows past `query_start_loc[num_seqs]`.
/// `run` checks that their rows (and only those) stay poisoned.
#[test]
fn padding_sequences_and_rows_are_not_touched() {
    let c = Case {
        seqs: vec![(40, 0), (9, 1), (0, 0), (33, 2), (1000, 0), (17, 1), (5, 0)],
        pad_rows: 3,
        strided_io: true,
        ..Case::base()
    };
    check(&c, 90);
    let only_padding = Case { seqs: vec![(3, 0), (0, 0)], pad_rows: 2, ..Case::base() };
    check(&only_padding, 91);
}

/// Scales on an "auto" cache are ignored: the cache holds model values.
#[test]
fn scales_are_ignored_for_auto_caches() {
    check(&Case { k_scale: Some(3.0), v_scale: Some(0.25), ..Case::base() }, 95);
}

/// A negative window means no window, like 0.
#[test]
fn negative_window_disables_it() {
    let base = Case::base();
    let a = check(&Case { window: -5, ..base.clone() }, 96);
    let b = check(&base, 96);
    assert_eq!(max_diff(&a, &b), 0.0);
}

/// The NaN filling is effective: a NaN in a slot the query does see poisons its row. (If this
/// failed, the "unwritten slots never matter" checks would be vacuous.)
#[test]
fn a_nan_in_a_visible_slot_does_show() {
    let c = Case { seqs: vec![(5, 1)], pad_rows: 0, ..Case::base() };
    let mut rng = Rng::new(97);
    let mut data = make_data(&c, &mut rng);
    // Key 2 of the sequence, dimension 0 of kv head 0.
    let i = (2 * c.hkv * c.d) as usize;
    data.k[0][i] = f64::NAN;
    data.k_store[0][i] = Stored::Value(f64::NAN);
    let e = run(&c, &data, &mut rng).expect_err("NaN in a visible key must reach the output");
    assert!(e.contains("output[0]"), "{e}");
}

/// The same logical cache in block sizes 16, 544 and 2048 (and several layouts) gives the
/// same output: the tile is decoupled from the page.
#[test]
fn results_do_not_depend_on_block_size() {
    let seqs = vec![(2100, 1), (600, 3), (17, 1), (1, 1)];
    let base = Case { seqs, d: 16, hq: 4, hkv: 2, window: 0, qdt: Dt::F32, alibi: true, ..Case::base() };
    let mut rng = Rng::new(98);
    let data = make_data(&base, &mut rng);
    let mut results = Vec::new();
    for (bs, layout) in [
        (16, Layout::SplitSeparate),
        (544, Layout::SplitHybrid),
        (2048, Layout::SplitKvFirst),
        (2048, Layout::NhdPadded { tok_pad: 2, head_pad: 0, blk_pad: 7 }),
        (784, Layout::NhdBlocksFirst),
    ] {
        let c = Case { bs, layout, ..base.clone() };
        let out = run(&c, &data, &mut Rng::new(bs as u64)).unwrap_or_else(|e| panic!("bs {bs}: {e}"));
        results.push((bs, out));
    }
    for (bs, out) in &results[1..] {
        let diff = max_diff(out, &results[0].1);
        assert!(diff <= 1e-6, "block size {bs} differs from block size 16 by {diff}");
    }
}

#[test]
#[ignore]
fn print_random_case_distribution() {
    let mut big = 0;
    let mut fp8 = 0;
    let mut outf = 0;
    let mut bss = std::collections::BTreeMap::new();
    let mut ds = std::collections::BTreeMap::new();
    for seed in seeds(1000, RANDOM_CASES) {
        let mut rng = Rng::new(seed);
        let c = random_case(&mut rng, RANDOM_BUDGET);
        if c.bs >= 544 {
            big += 1;
        }
        if c.fp8.is_some() {
            fp8 += 1;
        }
        if c.out_fp8.is_some() {
            outf += 1;
        }
        *bss.entry(c.bs).or_insert(0) += 1;
        *ds.entry(c.d).or_insert(0) += 1;
        eprintln!(
            "{seed}: cost {} bs {} d {} hq {} hkv {} seqs {:?} layout {:?}",
            c.cost(),
            c.bs,
            c.d,
            c.hq,
            c.hkv,
            c.seqs,
            c.layout
        );
    }
    eprintln!("big {big} fp8 {fp8} outfp8 {outf}\n{bss:?}\n{ds:?}");
}
