//! Shared helpers of the Rust test tiers: a deterministic PRNG, 8-byte aligned host buffers
//! with typed element access, `pkv_tensor` builders, cache layouts with their placement
//! formulas written from the spec (never from the library's own layout code), and error
//! message access.
#![allow(dead_code)]

use std::ffi::{CStr, c_void};

use half::{bf16, f16};
use pagedkv::capi::info::pkv_last_error_message;
use pagedkv::capi::*;
use pagedkv::core::dtype::Fp8Format;
use pagedkv::core::fp8;

// ---------------------------------------------------------------------------------------------
// PRNG

/// splitmix64: tiny, deterministic, good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi, "{lo}..={hi}");
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Seeds for a randomized test: `PKV_TEST_SEED=<n>` runs that one seed, otherwise
/// `base..base+count` (`PKV_TEST_CASES` scales the count).
pub fn seeds(base: u64, count: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("PKV_TEST_SEED") {
        return vec![s.parse().expect("PKV_TEST_SEED is a u64")];
    }
    let count = std::env::var("PKV_TEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(count);
    (base..base + count).collect()
}

/// Runs `case` for every seed, collecting failures; panics listing every failing seed.
pub fn run_seeds(name: &str, seeds: &[u64], mut case: impl FnMut(u64) -> Result<(), String>) {
    let mut failures = Vec::new();
    for &seed in seeds {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(seed)));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failures.push(format!("seed {seed}: {msg}")),
            Err(p) => {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("seed {seed}: panicked: {what}"));
            }
        }
    }
    if !failures.is_empty() {
        let shown: Vec<_> = failures.iter().take(8).cloned().collect();
        panic!(
            "{name}: {} of {} seeds failed (rerun one with PKV_TEST_SEED=<seed>):\n{}",
            failures.len(),
            seeds.len(),
            shown.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Element types

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dt {
    F32,
    F16,
    BF16,
    U8,
    I32,
    I64,
    E4M3FN,
    E4M3FNUZ,
    E5M2,
}

impl Dt {
    pub fn code(self) -> u32 {
        match self {
            Dt::F32 => PKV_DTYPE_FLOAT32,
            Dt::F16 => PKV_DTYPE_FLOAT16,
            Dt::BF16 => PKV_DTYPE_BFLOAT16,
            Dt::U8 => PKV_DTYPE_UINT8,
            Dt::I32 => PKV_DTYPE_INT32,
            Dt::I64 => PKV_DTYPE_INT64,
            Dt::E4M3FN => PKV_DTYPE_FLOAT8_E4M3FN,
            Dt::E4M3FNUZ => PKV_DTYPE_FLOAT8_E4M3FNUZ,
            Dt::E5M2 => PKV_DTYPE_FLOAT8_E5M2,
        }
    }

    pub fn size(self) -> usize {
        match self {
            Dt::F32 | Dt::I32 => 4,
            Dt::F16 | Dt::BF16 => 2,
            Dt::I64 => 8,
            Dt::U8 | Dt::E4M3FN | Dt::E4M3FNUZ | Dt::E5M2 => 1,
        }
    }

    /// `x` of the split key layout: elements per 16 bytes.
    pub fn x(self) -> i64 {
        16 / self.size() as i64
    }

    /// A quiet NaN of this float type, as little-endian bytes.
    pub fn nan_bytes(self) -> Vec<u8> {
        match self {
            Dt::F32 => 0x7FC0_0000u32.to_le_bytes().to_vec(),
            Dt::F16 => 0x7E00u16.to_le_bytes().to_vec(),
            Dt::BF16 => 0x7FC0u16.to_le_bytes().to_vec(),
            Dt::E4M3FN | Dt::E5M2 => vec![0x7F],
            Dt::E4M3FNUZ => vec![0x80],
            other => panic!("{other:?} has no NaN"),
        }
    }

    /// A NaN with a recognisable payload, used to poison outputs.
    pub fn poison_bytes(self) -> Vec<u8> {
        match self {
            Dt::F32 => 0x7FC0_A5A5u32.to_le_bytes().to_vec(),
            Dt::F16 => 0x7EA5u16.to_le_bytes().to_vec(),
            Dt::BF16 => 0x7FA5u16.to_le_bytes().to_vec(),
            Dt::E4M3FN | Dt::E5M2 => vec![0xFF],
            Dt::E4M3FNUZ => vec![0x80],
            Dt::U8 => vec![0xA5],
            Dt::I32 => 0x7A5A_5A5Au32.to_le_bytes().to_vec(),
            Dt::I64 => 0x7A5A_5A5A_5A5A_5A5Au64.to_le_bytes().to_vec(),
        }
    }

    pub fn fp8_format(self) -> Option<Fp8Format> {
        match self {
            Dt::E4M3FN => Some(Fp8Format::E4M3FN),
            Dt::E4M3FNUZ => Some(Fp8Format::E4M3FNUZ),
            Dt::E5M2 => Some(Fp8Format::E5M2),
            _ => None,
        }
    }

    /// Rounds a value to this float type (nearest even), as the stored value reads back.
    pub fn round(self, v: f64) -> f64 {
        match self {
            Dt::F32 => v as f32 as f64,
            Dt::F16 => f16::from_f64(v).to_f64(),
            Dt::BF16 => bf16::from_f64(v).to_f64(),
            other => panic!("round to {other:?}"),
        }
    }
}

pub fn fp8_nan(format: Fp8Format) -> u8 {
    match format {
        Fp8Format::E4M3FN | Fp8Format::E5M2 => 0x7F,
        Fp8Format::E4M3FNUZ => 0x80,
    }
}

pub fn fp8_max(format: Fp8Format) -> f64 {
    match format {
        Fp8Format::E4M3FN => 448.0,
        Fp8Format::E4M3FNUZ => 240.0,
        Fp8Format::E5M2 => 57344.0,
    }
}

/// Mantissa bits and the smallest subnormal of a format (from the format definitions).
pub fn fp8_params(format: Fp8Format) -> (i32, f64) {
    match format {
        Fp8Format::E4M3FN => (3, 2f64.powi(-9)),
        Fp8Format::E4M3FNUZ => (3, 2f64.powi(-10)),
        Fp8Format::E5M2 => (2, 2f64.powi(-16)),
    }
}

// ---------------------------------------------------------------------------------------------
// Host buffers

/// Host memory with 8-byte alignment (backed by u64 words).
pub struct Buf {
    words: Vec<u64>,
    len: usize,
}

impl Buf {
    /// `len` bytes filled with a repeating `pattern`.
    pub fn filled(len: usize, pattern: &[u8]) -> Self {
        let mut b = Buf { words: vec![0; len.div_ceil(8).max(1)], len };
        b.fill(pattern);
        b
    }

    pub fn zeroed(len: usize) -> Self {
        Buf::filled(len, &[0])
    }

    pub fn fill(&mut self, pattern: &[u8]) {
        let bytes = self.bytes_mut();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = pattern[i % pattern.len()];
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn ptr(&self) -> *mut c_void {
        self.words.as_ptr() as *mut c_void
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the words hold at least `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, self.len) }
    }

    pub fn elem_bytes(&self, dt: Dt, elem: i64) -> &[u8] {
        let s = dt.size();
        &self.bytes()[elem as usize * s..(elem as usize + 1) * s]
    }

    pub fn set_raw(&mut self, dt: Dt, elem: i64, raw: &[u8]) {
        let s = dt.size();
        self.bytes_mut()[elem as usize * s..(elem as usize + 1) * s].copy_from_slice(raw);
    }

    /// Stores `v` rounded to a float type; returns the stored value.
    pub fn set_f(&mut self, dt: Dt, elem: i64, v: f64) -> f64 {
        let raw: Vec<u8> = match dt {
            Dt::F32 => (v as f32).to_le_bytes().to_vec(),
            Dt::F16 => f16::from_f64(v).to_le_bytes().to_vec(),
            Dt::BF16 => bf16::from_f64(v).to_le_bytes().to_vec(),
            other => panic!("set_f on {other:?}"),
        };
        self.set_raw(dt, elem, &raw);
        self.get_f(dt, elem)
    }

    pub fn get_f(&self, dt: Dt, elem: i64) -> f64 {
        let b = self.elem_bytes(dt, elem);
        match dt {
            Dt::F32 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
            Dt::F16 => f16::from_le_bytes(b.try_into().unwrap()).to_f64(),
            Dt::BF16 => bf16::from_le_bytes(b.try_into().unwrap()).to_f64(),
            other => panic!("get_f on {other:?}"),
        }
    }

    pub fn set_u8(&mut self, elem: i64, v: u8) {
        self.bytes_mut()[elem as usize] = v;
    }

    pub fn get_u8(&self, elem: i64) -> u8 {
        self.bytes()[elem as usize]
    }

    pub fn set_i32(&mut self, elem: i64, v: i32) {
        self.set_raw(Dt::I32, elem, &v.to_le_bytes());
    }

    pub fn get_i32(&self, elem: i64) -> i32 {
        i32::from_le_bytes(self.elem_bytes(Dt::I32, elem).try_into().unwrap())
    }

    pub fn set_i64(&mut self, elem: i64, v: i64) {
        self.set_raw(Dt::I64, elem, &v.to_le_bytes());
    }

    pub fn set_f32(&mut self, elem: i64, v: f32) {
        self.set_raw(Dt::F32, elem, &v.to_le_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// Tensors

pub fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

pub fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut s = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        s[i] = acc;
        acc *= shape[i];
    }
    s
}

/// Elements from the first to one past the last addressed element.
pub fn span(shape: &[i64], strides: &[i64]) -> i64 {
    if shape.contains(&0) {
        return 0;
    }
    shape.iter().zip(strides).map(|(n, s)| (n - 1) * s).sum::<i64>() + 1
}

/// Random strides for `shape`: a random dimension order (if `permute`) and random padding
/// after each dimension, so elements are spread with gaps the library must not touch.
pub fn random_strides(rng: &mut Rng, shape: &[i64], permute: bool, max_pad: i64) -> Vec<i64> {
    let mut order: Vec<usize> = (0..shape.len()).rev().collect(); // innermost first
    if permute {
        rng.shuffle(&mut order);
    }
    let mut strides = vec![0; shape.len()];
    let mut acc = if rng.chance(0.3) { 1 + rng.range(0, 2) } else { 1 };
    for &d in &order {
        strides[d] = acc;
        acc = acc * shape[d] + rng.range(0, max_pad);
    }
    strides
}

/// Offset of a multi-index.
pub fn offset(strides: &[i64], index: &[i64]) -> i64 {
    strides.iter().zip(index).map(|(s, i)| s * i).sum()
}

/// A host `pkv_tensor` over `buf`, whose element 0 is at element `elem_offset` of the buffer
/// (expressed through `byte_offset`).
pub fn tensor(buf: &Buf, dt: Dt, shape: &[i64], strides: &[i64], elem_offset: i64) -> pkv_tensor {
    assert_eq!(shape.len(), strides.len());
    assert!(
        (elem_offset + span(shape, strides)) as usize * dt.size() <= buf.len(),
        "tensor {shape:?}/{strides:?} at {elem_offset} does not fit {} bytes",
        buf.len()
    );
    let mut t = pkv_tensor {
        data: buf.ptr(),
        byte_offset: (elem_offset as usize * dt.size()) as u64,
        device_type: PKV_DEVICE_CPU,
        device_id: 0,
        dtype: dt.code(),
        ndim: shape.len() as u32,
        shape: [0; PKV_MAX_DIMS],
        strides: [0; PKV_MAX_DIMS],
    };
    t.shape[..shape.len()].copy_from_slice(shape);
    t.strides[..shape.len()].copy_from_slice(strides);
    t
}

/// A packed tensor owning its buffer.
pub struct Owned {
    pub buf: Buf,
    pub dt: Dt,
    pub shape: Vec<i64>,
    pub strides: Vec<i64>,
}

impl Owned {
    pub fn new(dt: Dt, shape: &[i64]) -> Self {
        let strides = contiguous_strides(shape);
        let n = span(shape, &strides).max(1) as usize;
        Owned { buf: Buf::zeroed(n * dt.size()), dt, shape: shape.to_vec(), strides }
    }

    pub fn i32s(values: &[i32]) -> Self {
        let mut o = Owned::new(Dt::I32, &[values.len() as i64]);
        for (i, v) in values.iter().enumerate() {
            o.buf.set_i32(i as i64, *v);
        }
        o
    }

    pub fn i64s(values: &[i64]) -> Self {
        let mut o = Owned::new(Dt::I64, &[values.len() as i64]);
        for (i, v) in values.iter().enumerate() {
            o.buf.set_i64(i as i64, *v);
        }
        o
    }

    pub fn f32s(values: &[f32]) -> Self {
        let mut o = Owned::new(Dt::F32, &[values.len() as i64]);
        for (i, v) in values.iter().enumerate() {
            o.buf.set_f32(i as i64, *v);
        }
        o
    }

    pub fn i32_table(rows: &[Vec<i32>]) -> Self {
        let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0) as i64;
        let mut o = Owned::new(Dt::I32, &[rows.len() as i64, cols]);
        for (r, row) in rows.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                o.buf.set_i32(r as i64 * cols + c as i64, *v);
            }
        }
        o
    }

    pub fn t(&self) -> pkv_tensor {
        tensor(&self.buf, self.dt, &self.shape, &self.strides, 0)
    }
}

/// This thread's last error message.
pub fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(pkv_last_error_message()) }.to_string_lossy().into_owned()
}

pub fn c_text(chars: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8(bytes).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Cache layouts

/// How a test cache is laid out in memory. Placement formulas are written here from the
/// semantics spec (§2.2, §2.3, §2.5, §4.2), independently of the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Split layout, key and value in two separate packed allocations.
    SplitSeparate,
    /// vLLM ROCm allocation `(2, num_blocks, bs, H, D)`, K/V-first: native.
    SplitKvFirst,
    /// Hybrid interleave: dim-0/1 strides `(hidden, 2*hidden)`; page b = `[K_b | V_b]`.
    SplitHybrid,
    /// K/V-first with every block padded by `pad` elements (stride(0) = hidden + pad).
    SplitPadded(i64),
    /// `[num_blocks, bs, H, D]` with padded token/head/block strides, K and V separate.
    NhdPadded { tok_pad: i64, head_pad: i64, blk_pad: i64 },
    /// `(num_blocks, 2, bs, H, D)` blocks-first (TRITON_ATTN): K/V interleaved per block.
    NhdBlocksFirst,
}

impl Layout {
    pub fn is_split(self) -> bool {
        matches!(self, Layout::SplitSeparate | Layout::SplitKvFirst | Layout::SplitHybrid | Layout::SplitPadded(_))
    }

    pub fn kv_layout(self) -> u32 {
        if self.is_split() { PKV_KV_LAYOUT_SPLIT } else { PKV_KV_LAYOUT_NHD }
    }

    /// Whether vLLM's `has_native_kv_cache_layout` holds (stride(0) == prod(shape[1:])).
    pub fn is_native(self) -> bool {
        matches!(
            self,
            Layout::SplitSeparate | Layout::SplitKvFirst | Layout::NhdPadded { tok_pad: 0, head_pad: 0, blk_pad: 0 }
        )
    }
}

/// A key/value cache pair in host memory.
pub struct Cache {
    pub layout: Layout,
    pub dt: Dt,
    pub nb: i64,
    pub bs: i64,
    pub h: i64,
    pub d: i64,
    pub x: i64,
    /// One or two buffers; `k_at`/`v_at` = (buffer, element offset of element 0).
    pub bufs: Vec<Buf>,
    pub k_at: (usize, i64),
    pub v_at: (usize, i64),
    pub k_shape: Vec<i64>,
    pub k_strides: Vec<i64>,
    pub v_shape: Vec<i64>,
    pub v_strides: Vec<i64>,
}

impl Cache {
    /// A cache whose every byte is `fill` (repeated), with `lead` poison elements in front of
    /// each tensor (so writes before element 0 would show).
    pub fn new(layout: Layout, dt: Dt, nb: i64, bs: i64, h: i64, d: i64, fill: &[u8]) -> Self {
        let hidden = bs * h * d;
        let lead = 16;
        let x = dt.x();
        let split = layout.is_split();
        if split {
            assert_eq!(d % x, 0, "split layout needs head_size {d} % x {x} == 0");
        }
        let k_shape = if split { vec![nb, h, d / x, bs, x] } else { vec![nb, bs, h, d] };
        let v_shape = if split { vec![nb, h, d, bs] } else { vec![nb, bs, h, d] };
        let split_k = |s0: i64| vec![s0, d * bs, bs * x, x, 1];
        let split_v = |s0: i64| vec![s0, d * bs, bs, 1];
        let (nbufs, k_at, v_at, k_strides, v_strides, total) = match layout {
            Layout::SplitSeparate => {
                (2, (0, lead), (1, lead), split_k(hidden), split_v(hidden), lead + nb * hidden + lead)
            }
            Layout::SplitKvFirst => {
                (1, (0, lead), (0, lead + nb * hidden), split_k(hidden), split_v(hidden), lead + 2 * nb * hidden + lead)
            }
            Layout::SplitHybrid => (
                1,
                (0, lead),
                (0, lead + hidden),
                split_k(2 * hidden),
                split_v(2 * hidden),
                lead + 2 * nb * hidden + lead,
            ),
            Layout::SplitPadded(pad) => {
                let s0 = hidden + pad;
                (1, (0, lead), (0, lead + nb * s0), split_k(s0), split_v(s0), lead + 2 * nb * s0 + lead)
            }
            Layout::NhdPadded { tok_pad, head_pad, blk_pad } => {
                let head = d + head_pad;
                let tok = h * head + tok_pad;
                let blk = bs * tok + blk_pad;
                let s = vec![blk, tok, head, 1];
                (2, (0, lead), (1, lead), s.clone(), s, lead + nb * blk + lead)
            }
            Layout::NhdBlocksFirst => {
                let s = vec![2 * hidden, h * d, d, 1];
                (1, (0, lead), (0, lead + hidden), s.clone(), s, lead + 2 * nb * hidden + lead)
            }
        };
        let bufs = (0..nbufs).map(|_| Buf::filled(total as usize * dt.size(), fill)).collect();
        Cache { layout, dt, nb, bs, h, d, x, bufs, k_at, v_at, k_shape, k_strides, v_shape, v_strides }
    }

    /// Element index (within its buffer) of key `(block, head, d, slot-in-block)`, from the
    /// spec's placement formulas.
    pub fn key_elem(&self, b: i64, h: i64, d: i64, t: i64) -> i64 {
        let (bs, hh, dd, x) = (self.bs, self.h, self.d, self.x);
        let hidden = bs * hh * dd;
        let base = self.k_at.1;
        match self.layout {
            // K(b,h,d,t) = b*S0 + h*(D*bs) + (d div x)*(bs*x) + t*x + (d mod x)
            Layout::SplitSeparate | Layout::SplitKvFirst => {
                base + b * hidden + h * (dd * bs) + (d / x) * (bs * x) + t * x + d % x
            }
            Layout::SplitHybrid => base + b * 2 * hidden + h * (dd * bs) + (d / x) * (bs * x) + t * x + d % x,
            Layout::SplitPadded(pad) => base + b * (hidden + pad) + h * (dd * bs) + (d / x) * (bs * x) + t * x + d % x,
            Layout::NhdPadded { tok_pad, head_pad, blk_pad } => {
                let head = dd + head_pad;
                let tok = hh * head + tok_pad;
                base + b * (bs * tok + blk_pad) + t * tok + h * head + d
            }
            Layout::NhdBlocksFirst => base + b * 2 * hidden + t * hh * dd + h * dd + d,
        }
    }

    /// Element index of value `(block, head, d, slot-in-block)`.
    pub fn value_elem(&self, b: i64, h: i64, d: i64, t: i64) -> i64 {
        let (bs, hh, dd) = (self.bs, self.h, self.d);
        let hidden = bs * hh * dd;
        let base = self.v_at.1;
        match self.layout {
            // V(b,h,d,t) = b*S0 + h*(D*bs) + d*bs + t
            Layout::SplitSeparate | Layout::SplitKvFirst => base + b * hidden + h * (dd * bs) + d * bs + t,
            Layout::SplitHybrid => base + b * 2 * hidden + h * (dd * bs) + d * bs + t,
            Layout::SplitPadded(pad) => base + b * (hidden + pad) + h * (dd * bs) + d * bs + t,
            Layout::NhdPadded { tok_pad, head_pad, blk_pad } => {
                let head = dd + head_pad;
                let tok = hh * head + tok_pad;
                base + b * (bs * tok + blk_pad) + t * tok + h * head + d
            }
            Layout::NhdBlocksFirst => base + b * 2 * hidden + t * hh * dd + h * dd + d,
        }
    }

    pub fn key_t(&self) -> pkv_tensor {
        tensor(&self.bufs[self.k_at.0], self.dt, &self.k_shape, &self.k_strides, self.k_at.1)
    }

    pub fn value_t(&self) -> pkv_tensor {
        tensor(&self.bufs[self.v_at.0], self.dt, &self.v_shape, &self.v_strides, self.v_at.1)
    }

    pub fn kbuf(&mut self) -> &mut Buf {
        &mut self.bufs[self.k_at.0]
    }

    pub fn vbuf(&mut self) -> &mut Buf {
        &mut self.bufs[self.v_at.0]
    }

    /// Stores a model value (auto cache) at key/value `(b, h, d, t)`; returns the stored value.
    pub fn put(&mut self, key: bool, b: i64, h: i64, d: i64, t: i64, v: f64) -> f64 {
        let dt = self.dt;
        let (bi, e) =
            if key { (self.k_at.0, self.key_elem(b, h, d, t)) } else { (self.v_at.0, self.value_elem(b, h, d, t)) };
        self.bufs[bi].set_f(dt, e, v)
    }

    /// Stores a raw byte (fp8 cache) at key/value `(b, h, d, t)`.
    pub fn put_byte(&mut self, key: bool, b: i64, h: i64, d: i64, t: i64, byte: u8) {
        let (bi, e) =
            if key { (self.k_at.0, self.key_elem(b, h, d, t)) } else { (self.v_at.0, self.value_elem(b, h, d, t)) };
        self.bufs[bi].set_u8(e, byte);
    }

    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        self.bufs.iter().map(|b| b.bytes().to_vec()).collect()
    }
}

/// `decode(byte) * scale` in f64, the dequantised value of a cached fp8 byte.
pub fn dequant(format: Fp8Format, byte: u8, scale: f64) -> f64 {
    fp8::decode(format, byte) as f64 * scale
}

/// Human-readable diff of two byte images: the first few differing offsets.
pub fn first_diffs(a: &[u8], b: &[u8], limit: usize) -> String {
    let mut out = Vec::new();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            out.push(format!("byte {i}: {x:#04x} -> {y:#04x}"));
            if out.len() == limit {
                break;
            }
        }
    }
    out.join(", ")
}
