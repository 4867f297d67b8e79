//! The C ABI's contract, called the way a C program calls it: every argument check of
//! issue 2 item 8 returns its own status and a message naming the argument and the value;
//! a failing call writes nothing (outputs, caches and out-parameters stay as poisoned);
//! status strings, version, features; split / native-layout / DLPack helpers; the planner's
//! answers for GPUs described by hand; and the struct layouts the header promises.

mod common;

use std::ffi::{CStr, CString, c_char, c_void};
use std::mem::{align_of, offset_of, size_of};
use std::ptr;

use common::*;
use pagedkv::Status;
use pagedkv::capi::attention::*;
use pagedkv::capi::info::*;
use pagedkv::capi::layout::*;
use pagedkv::capi::write::*;
use pagedkv::capi::*;

/// Asserts a status and that the last error message contains every needle.
#[track_caller]
fn expect(got: Status, want: Status, needles: &[&str]) {
    let msg = last_error();
    assert_eq!(got, want, "message: {msg}");
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} does not mention {n:?}");
    }
}

fn null_tensor() -> *const pkv_tensor {
    ptr::null()
}

// ---------------------------------------------------------------------------------------------
// Attention fixture: a small valid call (2 sequences, one decode, one prefill chunk)

const T: i64 = 3;
const HQ: i64 = 4;
const HKV: i64 = 2;
const D: i64 = 16;
const BS: i64 = 16;
const NB: i64 = 4;

struct Attn {
    _q: Owned,
    _cache: Cache,
    bt: Owned,
    sl: Owned,
    qsl: Owned,
    out: Owned,
    scale: Owned,
    heads: Owned,
    tq: pkv_tensor,
    tk: pkv_tensor,
    tv: pkv_tensor,
    tbt: pkv_tensor,
    tsl: pkv_tensor,
    tqsl: pkv_tensor,
    tout: pkv_tensor,
    tks: Option<pkv_tensor>,
    tvs: Option<pkv_tensor>,
    talibi: Option<pkv_tensor>,
    tsinks: Option<pkv_tensor>,
    tos: Option<pkv_tensor>,
    struct_size: u32,
    kv_layout: u32,
    kv_cache_dtype: u32,
    sm_scale: f32,
    window: i32,
    soft_cap: f32,
    max_query_len: u32,
}

impl Attn {
    fn new() -> Self {
        let mut rng = Rng::new(1);
        let mut q = Owned::new(Dt::F32, &[T, HQ, D]);
        for i in 0..T * HQ * D {
            q.buf.set_f(Dt::F32, i, rng.uniform(-1.0, 1.0));
        }
        let mut cache = Cache::new(Layout::SplitSeparate, Dt::F32, NB, BS, HKV, D, &[0]);
        for b in 0..NB {
            for h in 0..HKV {
                for d in 0..D {
                    for t in 0..BS {
                        cache.put(true, b, h, d, t, rng.uniform(-1.0, 1.0));
                        cache.put(false, b, h, d, t, rng.uniform(-1.0, 1.0));
                    }
                }
            }
        }
        let bt = Owned::i32_table(&[vec![0, 1], vec![2, 3]]);
        let sl = Owned::i32s(&[20, 5]);
        let qsl = Owned::i32s(&[0, 1, 3]);
        let mut out = Owned::new(Dt::F32, &[T, HQ, D]);
        out.buf.fill(&Dt::F32.poison_bytes());
        let scale = Owned::f32s(&[0.5]);
        let heads = Owned::f32s(&[0.1, 0.2, -0.3, 0.4]);
        let (tq, tk, tv) = (q.t(), cache.key_t(), cache.value_t());
        let (tbt, tsl, tqsl, tout) = (bt.t(), sl.t(), qsl.t(), out.t());
        Attn {
            _q: q,
            _cache: cache,
            bt,
            sl,
            qsl,
            out,
            scale,
            heads,
            tq,
            tk,
            tv,
            tbt,
            tsl,
            tqsl,
            tout,
            tks: None,
            tvs: None,
            talibi: None,
            tsinks: None,
            tos: None,
            struct_size: size_of::<pkv_paged_attention_args>() as u32,
            kv_layout: PKV_KV_LAYOUT_SPLIT,
            kv_cache_dtype: PKV_KV_CACHE_DTYPE_AUTO,
            sm_scale: 0.0,
            window: 0,
            soft_cap: 0.0,
            max_query_len: 0,
        }
    }

    /// A fresh fixture changed by `mutate`: one case of a test.
    fn with(mutate: impl FnOnce(&mut Self)) -> Self {
        let mut fixture = Self::new();
        mutate(&mut fixture);
        fixture
    }

    fn args(&self) -> pkv_paged_attention_args {
        let opt = |t: &Option<pkv_tensor>| t.as_ref().map_or(ptr::null(), |t| t as *const pkv_tensor);
        pkv_paged_attention_args {
            struct_size: self.struct_size,
            kv_layout: self.kv_layout,
            query: &self.tq,
            key_cache: &self.tk,
            value_cache: &self.tv,
            block_table: &self.tbt,
            seq_lens: &self.tsl,
            query_start_loc: &self.tqsl,
            output: &self.tout,
            kv_cache_dtype: self.kv_cache_dtype,
            causal: 1,
            k_scale: opt(&self.tks),
            v_scale: opt(&self.tvs),
            alibi_slopes: opt(&self.talibi),
            sinks: opt(&self.tsinks),
            output_scale: opt(&self.tos),
            sm_scale: self.sm_scale,
            sliding_window: self.window,
            logits_soft_cap: self.soft_cap,
            max_query_len: self.max_query_len,
        }
    }

    fn call_with(&self, args: &pkv_paged_attention_args) -> Status {
        // SAFETY: every tensor describes live host memory owned by self.
        unsafe { pkv_paged_attention(args, ptr::null_mut(), 0, ptr::null_mut()) }
    }

    fn call(&self) -> Status {
        self.call_with(&self.args())
    }

    fn output_untouched(&self) -> bool {
        self.out.buf.bytes().chunks(4).all(|c| c == Dt::F32.poison_bytes().as_slice())
    }

    /// The call fails with `want`, names every needle, and writes nothing.
    #[track_caller]
    fn fails(&self, want: Status, needles: &[&str]) {
        let st = self.call();
        expect(st, want, needles);
        assert!(self.output_untouched(), "a failing call wrote to the output");
    }
}

#[test]
fn attention_fixture_is_valid() {
    let a = Attn::new();
    assert_eq!(a.call(), Status::Ok, "{}", last_error());
    assert!(a.out.buf.bytes().chunks(4).all(|c| c != Dt::F32.poison_bytes().as_slice()), "every row is written");
    assert_eq!(last_error(), "", "a success clears the message");
}

#[test]
fn attention_null_arguments() {
    let a = Attn::new();
    // SAFETY: NULL args is the case under test.
    let st = unsafe { pkv_paged_attention(ptr::null(), ptr::null_mut(), 0, ptr::null_mut()) };
    expect(st, Status::NullArgument, &["args is NULL"]);
    let names = ["query", "key_cache", "value_cache", "block_table", "seq_lens", "query_start_loc", "output"];
    for (i, name) in names.iter().enumerate() {
        let mut args = a.args();
        match i {
            0 => args.query = null_tensor(),
            1 => args.key_cache = null_tensor(),
            2 => args.value_cache = null_tensor(),
            3 => args.block_table = null_tensor(),
            4 => args.seq_lens = null_tensor(),
            5 => args.query_start_loc = null_tensor(),
            _ => args.output = null_tensor(),
        }
        expect(a.call_with(&args), Status::NullArgument, &[&format!("{name} is NULL")]);
        assert!(a.output_untouched());
    }
    // A NULL data pointer on a tensor with elements.
    for which in ["query", "output", "seq_lens"] {
        let mut b = Attn::new();
        match which {
            "query" => b.tq.data = ptr::null_mut(),
            "output" => b.tout.data = ptr::null_mut(),
            _ => b.tsl.data = ptr::null_mut(),
        }
        b.fails(Status::NullArgument, &[&format!("{which}.data is NULL")]);
    }
}

#[test]
fn attention_struct_size() {
    let mut a = Attn::new();
    let full = size_of::<pkv_paged_attention_args>() as u32;
    for small in [0, 4, full - 4, full - 1] {
        a.struct_size = small;
        a.fails(Status::InvalidStructSize, &["args->struct_size", &small.to_string(), &full.to_string()]);
    }
    // A caller compiled against a newer, larger struct is fine.
    a.struct_size = full + 64;
    assert_eq!(a.call(), Status::Ok, "{}", last_error());
}

#[test]
fn attention_dtypes_and_enum_values() {
    Attn::with(|a| a.tq.dtype = PKV_DTYPE_INT32).fails(Status::InvalidDtype, &["query.dtype = int32", "float32"]);
    for bad in [0u32, 10, 42] {
        Attn::with(|a| a.tq.dtype = bad).fails(Status::InvalidEnum, &["query.dtype", &bad.to_string()]);
    }
    Attn::with(|a| {
        a.tout.dtype = PKV_DTYPE_FLOAT16;
        a.tout.strides = a.tq.strides;
    })
    .fails(Status::InvalidDtype, &["output.dtype = float16", "float32"]);
    Attn::with(|a| a.tbt.dtype = PKV_DTYPE_INT64).fails(Status::InvalidDtype, &["block_table.dtype = int64", "int32"]);
    Attn::with(|a| a.tsl.dtype = PKV_DTYPE_FLOAT32).fails(Status::InvalidDtype, &["seq_lens.dtype = float32"]);
    Attn::with(|a| a.tqsl.dtype = PKV_DTYPE_UINT8).fails(Status::InvalidDtype, &["query_start_loc.dtype = uint8"]);
    Attn::with(|a| {
        a.tk.dtype = PKV_DTYPE_INT32;
        a.tv.dtype = PKV_DTYPE_INT32;
    })
    .fails(Status::InvalidDtype, &["key_cache.dtype = int32"]);
    Attn::with(|a| a.tv.dtype = PKV_DTYPE_FLOAT16)
        .fails(Status::InvalidDtype, &["value_cache.dtype = float16", "float32"]);
    // "auto" stores the model dtype; an fp8 kv_cache_dtype needs a byte cache.
    Attn::with(|a| a.kv_cache_dtype = PKV_KV_CACHE_DTYPE_FP8)
        .fails(Status::InvalidDtype, &["key_cache.dtype = float32", "fp8"]);
    Attn::with(|a| {
        a.talibi = Some(a.heads.t());
        a.talibi.as_mut().unwrap().dtype = PKV_DTYPE_INT32;
    })
    .fails(Status::InvalidDtype, &["alibi_slopes.dtype = int32"]);
    Attn::with(|a| {
        a.tks = Some(a.scale.t());
        a.tks.as_mut().unwrap().dtype = PKV_DTYPE_INT32;
    })
    .fails(Status::InvalidDtype, &["k_scale.dtype = int32"]);
    // output_scale needs an fp8 (or uint8) output.
    Attn::with(|a| a.tos = Some(a.scale.t())).fails(Status::InvalidDtype, &["output.dtype = float32", "output_scale"]);
    // Unknown kv_cache_dtype and kv_layout enum values.
    for bad in [6u32, 99, u32::MAX] {
        Attn::with(|a| a.kv_cache_dtype = bad).fails(Status::InvalidEnum, &["kv_cache_dtype", &bad.to_string()]);
    }
    for bad in [2u32, 7] {
        Attn::with(|a| a.kv_layout = bad).fails(Status::InvalidEnum, &["kv_layout", &bad.to_string()]);
    }
    Attn::with(|a| a.tq.device_type = 3).fails(Status::InvalidEnum, &["query.device_type = 3"]);
}

#[test]
fn attention_ndim() {
    Attn::with(|a| a.tq.ndim = 2).fails(Status::InvalidNdim, &["query.ndim = 2", "expected 3"]);
    Attn::with(|a| a.tq.ndim = 7).fails(Status::InvalidNdim, &["query.ndim = 7"]);
    Attn::with(|a| a.tk.ndim = 4).fails(Status::InvalidNdim, &["key_cache.ndim = 4", "expected 5"]);
    Attn::with(|a| a.kv_layout = PKV_KV_LAYOUT_NHD).fails(Status::InvalidNdim, &["key_cache.ndim = 5", "nhd"]);
    Attn::with(|a| a.tv.ndim = 5).fails(Status::InvalidNdim, &["value_cache.ndim = 5"]);
    Attn::with(|a| a.tbt.ndim = 1).fails(Status::InvalidNdim, &["block_table.ndim = 1"]);
    Attn::with(|a| {
        a.tsl.ndim = 2;
        a.tsl.shape[1] = 1;
    })
    .fails(Status::InvalidNdim, &["seq_lens.ndim = 2"]);
    Attn::with(|a| a.tqsl.ndim = 0).fails(Status::InvalidNdim, &["query_start_loc.ndim = 0"]);
    Attn::with(|a| a.tout.ndim = 2).fails(Status::InvalidNdim, &["output.ndim = 2"]);
    Attn::with(|a| {
        let mut s = a.heads.t();
        s.ndim = 2;
        s.shape[1] = 1;
        a.tsinks = Some(s);
    })
    .fails(Status::InvalidNdim, &["sinks.ndim = 2"]);
}

#[test]
fn attention_shapes_that_disagree() {
    Attn::with(|a| a.tout.shape[2] = D - 8).fails(Status::ShapeMismatch, &["output.shape[2] = 8", "16"]);
    Attn::with(|a| a.tout.shape[0] = T - 1).fails(Status::ShapeMismatch, &["output.shape[0] = 2", "3"]);
    Attn::with(|a| a.tv.shape[1] = HKV - 1).fails(Status::ShapeMismatch, &["value_cache.shape[1] = 1", "num_kv_heads"]);
    Attn::with(|a| a.tv.shape[3] = BS - 1).fails(Status::ShapeMismatch, &["value_cache.shape[3] = 15", "block_size"]);
    Attn::with(|a| {
        a.tk.shape[4] = 8;
        a.tk.shape[2] = D / 8;
    })
    .fails(Status::ShapeMismatch, &["key_cache.shape[4] = 8", "x"]);
    Attn::with(|a| {
        a.tq.shape[2] = 8;
        a.tout.shape[2] = 8;
    })
    .fails(Status::ShapeMismatch, &["query.shape[2] = 8", "head_size = 16"]);
    Attn::with(|a| a.tsl.shape[0] = 1).fails(Status::ShapeMismatch, &["seq_lens.shape[0] = 1", "num_seqs"]);
    Attn::with(|a| a.tqsl.shape[0] = 2).fails(Status::ShapeMismatch, &["query_start_loc.shape[0] = 2", "num_seqs + 1"]);
    Attn::with(|a| {
        let mut s = a.heads.t();
        s.shape[0] = 3;
        a.talibi = Some(s);
    })
    .fails(Status::ShapeMismatch, &["alibi_slopes.shape[0] = 3", "num_q_heads"]);
    Attn::with(|a| {
        let mut s = a.heads.t();
        s.shape[0] = 2;
        a.tvs = Some(s);
    })
    .fails(Status::ShapeMismatch, &["v_scale has 2 elements", "exactly 1"]);
    Attn::with(|a| a.tq.shape[0] = -1).fails(Status::ShapeMismatch, &["query.shape[0] = -1"]);
}

#[test]
fn attention_strides() {
    Attn::with(|a| a.tq.strides[1] = -16).fails(Status::InvalidStride, &["query.strides[1] = -16"]);
    Attn::with(|a| a.tout.strides[0] = 0).fails(Status::InvalidStride, &["output.strides[0] = 0"]);
    Attn::with(|a| a.tk.strides[3] = 0).fails(Status::InvalidStride, &["key_cache.strides[3] = 0"]);
    Attn::with(|a| a.tbt.strides[0] = -2).fails(Status::InvalidStride, &["block_table.strides[0] = -2"]);
    // A broadcast (stride 0) query is only read, so it is accepted.
    let mut a = Attn::new();
    a.tq.strides[0] = 0;
    assert_eq!(a.call(), Status::Ok, "{}", last_error());
}

#[test]
fn attention_device_mismatch() {
    type Mutation = Box<dyn Fn(&mut Attn)>;
    let cases: Vec<(&str, Mutation, Vec<&str>)> = vec![
        (
            "key_cache",
            Box::new(|a| {
                a.tk.device_type = PKV_DEVICE_CUDA;
                a.tv.device_type = PKV_DEVICE_CUDA;
            }),
            vec!["key_cache is on cuda:0", "cpu"],
        ),
        ("value_cache", Box::new(|a| a.tv.device_id = 1), vec!["value_cache is on cpu", "key_cache"]),
        ("block_table", Box::new(|a| a.tbt.device_type = PKV_DEVICE_ROCM), vec!["block_table is on rocm:0"]),
        ("seq_lens", Box::new(|a| a.tsl.device_type = PKV_DEVICE_CUDA), vec!["seq_lens is on cuda:0"]),
        ("query_start_loc", Box::new(|a| a.tqsl.device_type = PKV_DEVICE_CUDA), vec!["query_start_loc is on cuda:0"]),
        (
            "output",
            Box::new(|a| {
                a.tout.device_type = PKV_DEVICE_ROCM;
                a.tout.device_id = 3;
            }),
            vec!["output is on rocm:3"],
        ),
        (
            "alibi_slopes",
            Box::new(|a| {
                let mut s = a.heads.t();
                s.device_type = PKV_DEVICE_CUDA;
                a.talibi = Some(s);
            }),
            vec!["alibi_slopes is on cuda:0"],
        ),
        (
            "k_scale",
            Box::new(|a| {
                let mut s = a.scale.t();
                s.device_type = PKV_DEVICE_CUDA;
                a.tks = Some(s);
            }),
            vec!["k_scale is on cuda:0"],
        ),
    ];
    for (name, mutate, needles) in cases {
        let mut a = Attn::new();
        mutate(&mut a);
        let st = a.call();
        assert_eq!(st, Status::DeviceMismatch, "{name}: {}", last_error());
        for n in needles {
            assert!(last_error().contains(n), "{name}: {:?} lacks {n:?}", last_error());
        }
        assert!(a.output_untouched());
    }
}

#[test]
fn attention_head_size_and_gqa_ratio() {
    // head_size 12 (not a multiple of 8) and 264 (> 256), through the NHD layout.
    for d in [12i64, 264] {
        let mut rng = Rng::new(2);
        let cache =
            Cache::new(Layout::NhdPadded { tok_pad: 0, head_pad: 0, blk_pad: 0 }, Dt::F32, NB, BS, HKV, d, &[0]);
        let q = Owned::new(Dt::F32, &[T, HQ, d]);
        Attn::with(|a| {
            let _ = rng.next_u64();
            a.kv_layout = PKV_KV_LAYOUT_NHD;
            a.tk = cache.key_t();
            a.tv = cache.value_t();
            a.tq = q.t();
            a.tout.shape[2] = d;
        })
        .fails(Status::UnsupportedHeadSize, &[&format!("head_size = {d}")]);
    }
    // 3 query heads over 2 kv heads.
    Attn::with(|a| {
        a.tq.shape[1] = 3;
        a.tout.shape[1] = 3;
    })
    .fails(Status::GqaRatioNotIntegral, &["num_q_heads = 3", "num_kv_heads = 2"]);
}

#[test]
fn attention_batch_values() {
    // A sequence longer than its block-table row: 40 tokens need 3 blocks of 16, the row has 2.
    Attn::with(|a| a.sl.buf.set_i32(0, 40))
        .fails(Status::BlockTableTooShort, &["seq_lens[0] = 40", "3 blocks", "2 columns"]);
    // Block ids outside [0, num_blocks), in the second sequence (the first is fine).
    for bad in [NB as i32, -1, i32::MAX] {
        Attn::with(|a| a.bt.buf.set_i32(2, bad))
            .fails(Status::BlockIdOutOfRange, &[&format!("block_table[1][0] = {bad}"), "num_blocks = 4"]);
    }
    // seq_len shorter than the sequence's query tokens.
    Attn::with(|a| a.sl.buf.set_i32(1, 1)).fails(Status::InvalidSeqLen, &["seq_lens[1] = 1", "2 query tokens"]);
    Attn::with(|a| a.sl.buf.set_i32(1, -3)).fails(Status::InvalidSeqLen, &["seq_lens[1] = -3"]);
    // query_start_loc not starting at 0, decreasing, or past num_tokens.
    Attn::with(|a| a.qsl.buf.set_i32(0, 1))
        .fails(Status::InvalidQueryStartLoc, &["query_start_loc[0] = 1", "expected 0"]);
    Attn::with(|a| {
        a.qsl.buf.set_i32(1, 2);
        a.qsl.buf.set_i32(2, 1);
    })
    .fails(Status::InvalidQueryStartLoc, &["query_start_loc[2] = 1", "query_start_loc[1] = 2"]);
    Attn::with(|a| a.qsl.buf.set_i32(2, 4))
        .fails(Status::InvalidQueryStartLoc, &["query_start_loc[2] = 4", "num_tokens", "3"]);
    // A query longer than the caller's max_query_len (the second sequence has 2 tokens).
    Attn::with(|a| a.max_query_len = 1).fails(
        Status::InvalidValue,
        &["query_start_loc[2] - query_start_loc[1] = 2 query tokens", "max_query_len = 1"],
    );
    for fine in [2, 3, u32::MAX] {
        let a = Attn::with(|a| a.max_query_len = fine);
        assert_eq!(a.call(), Status::Ok, "max_query_len = {fine}: {}", last_error());
    }
}

#[test]
fn attention_scalar_values() {
    for bad in [f32::NAN, -0.5, f32::INFINITY, -f32::INFINITY] {
        Attn::with(|a| a.sm_scale = bad).fails(Status::InvalidValue, &[&format!("sm_scale = {bad}")]);
    }
    for bad in [f32::NAN, -1.0, f32::INFINITY] {
        Attn::with(|a| a.soft_cap = bad).fails(Status::InvalidValue, &[&format!("logits_soft_cap = {bad}")]);
    }
    // A misaligned element pointer.
    Attn::with(|a| a.tq.byte_offset = 2).fails(Status::InvalidValue, &["query", "not aligned"]);
}

/// A value error found late (the second sequence) still leaves the output untouched, and
/// the previous message is replaced by each new call's.
#[test]
fn late_errors_write_nothing_and_messages_follow_the_last_call() {
    let mut a = Attn::new();
    // The second sequence grows to 2 blocks; its second block id is bad.
    a.sl.buf.set_i32(1, 17);
    a.bt.buf.set_i32(3, 99);
    a.fails(Status::BlockIdOutOfRange, &["block_table[1][1] = 99"]);
    a.bt.buf.set_i32(3, 3);
    assert_eq!(a.call(), Status::Ok);
    assert_eq!(last_error(), "");
    // Columns past a sequence's blocks are never read: garbage there is fine.
    let mut a = Attn::new();
    a.bt.buf.set_i32(3, -12345);
    assert_eq!(a.call(), Status::Ok, "{}", last_error());
    // The message is per thread.
    let mut b = Attn::new();
    b.sm_scale = -1.0;
    assert_eq!(b.call(), Status::InvalidValue);
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "", "another thread sees its own (empty) message");
    assert!(last_error().contains("sm_scale"));
}

// ---------------------------------------------------------------------------------------------
// Write fixture

struct Wr {
    key: Owned,
    cache: Cache,
    slots: Owned,
    scale: Owned,
    tkey: pkv_tensor,
    tval: pkv_tensor,
    tk: pkv_tensor,
    tv: pkv_tensor,
    tslots: pkv_tensor,
    tks: Option<pkv_tensor>,
    struct_size: u32,
    kv_layout: u32,
    kv_cache_dtype: u32,
    before: Vec<Vec<u8>>,
}

impl Wr {
    fn new() -> Self {
        let mut key = Owned::new(Dt::F16, &[4, HKV, D]);
        let mut rng = Rng::new(3);
        for i in 0..4 * HKV * D {
            key.buf.set_f(Dt::F16, i, rng.uniform(-2.0, 2.0));
        }
        let cache = Cache::new(Layout::SplitKvFirst, Dt::F16, NB, BS, HKV, D, &Dt::F16.poison_bytes());
        let slots = Owned::i64s(&[5, -1, 40, 63]);
        let scale = Owned::f32s(&[0.5]);
        let (tkey, tk, tv, tslots) = (key.t(), cache.key_t(), cache.value_t(), slots.t());
        let before = cache.snapshot();
        Wr {
            tval: tkey,
            key,
            cache,
            slots,
            scale,
            tkey,
            tk,
            tv,
            tslots,
            tks: None,
            struct_size: size_of::<pkv_write_kv_cache_args>() as u32,
            kv_layout: PKV_KV_LAYOUT_SPLIT,
            kv_cache_dtype: PKV_KV_CACHE_DTYPE_AUTO,
            before,
        }
    }

    /// A fresh fixture changed by `mutate`: one case of a test.
    fn with(mutate: impl FnOnce(&mut Self)) -> Self {
        let mut fixture = Self::new();
        mutate(&mut fixture);
        fixture
    }

    fn args(&self) -> pkv_write_kv_cache_args {
        pkv_write_kv_cache_args {
            struct_size: self.struct_size,
            kv_layout: self.kv_layout,
            key: &self.tkey,
            value: &self.tval,
            key_cache: &self.tk,
            value_cache: &self.tv,
            slot_mapping: &self.tslots,
            kv_cache_dtype: self.kv_cache_dtype,
            reserved: 0,
            k_scale: self.tks.as_ref().map_or(ptr::null(), |t| t as *const pkv_tensor),
            v_scale: ptr::null(),
        }
    }

    fn call_with(&self, args: *const pkv_write_kv_cache_args, path: *mut u32) -> Status {
        // SAFETY: live host tensors owned by self.
        unsafe { pkv_write_kv_cache(args, ptr::null_mut(), path) }
    }

    /// Fails with `want`, naming every needle; caches and `path_taken` untouched.
    #[track_caller]
    fn fails(&self, want: Status, needles: &[&str]) {
        let mut path = 0x5A5A_5A5Au32;
        let st = self.call_with(&self.args(), &mut path);
        expect(st, want, needles);
        assert_eq!(path, 0x5A5A_5A5A, "path_taken written on error");
        assert!(self.cache.snapshot() == self.before, "a failing write changed the cache");
    }
}

#[test]
fn write_fixture_is_valid() {
    let w = Wr::new();
    let mut path = 0u32;
    assert_eq!(w.call_with(&w.args(), &mut path), Status::Ok, "{}", last_error());
    assert_eq!(path, PKV_WRITE_PATH_NATIVE);
    assert!(w.cache.snapshot() != w.before);
    // path_taken may be NULL.
    assert_eq!(w.call_with(&w.args(), ptr::null_mut()), Status::Ok);
    let _ = (&w.key, &w.scale);
}

#[test]
fn write_null_arguments_and_struct_size() {
    let w = Wr::new();
    let mut path = 7u32;
    expect(w.call_with(ptr::null(), &mut path), Status::NullArgument, &["args is NULL"]);
    assert_eq!(path, 7);
    for (i, name) in ["key", "value", "key_cache", "value_cache", "slot_mapping"].iter().enumerate() {
        let mut args = w.args();
        match i {
            0 => args.key = null_tensor(),
            1 => args.value = null_tensor(),
            2 => args.key_cache = null_tensor(),
            3 => args.value_cache = null_tensor(),
            _ => args.slot_mapping = null_tensor(),
        }
        expect(w.call_with(&args, &mut path), Status::NullArgument, &[&format!("{name} is NULL")]);
        assert_eq!(path, 7);
        assert!(w.cache.snapshot() == w.before);
    }
    Wr::with(|w| w.tk.data = ptr::null_mut()).fails(Status::NullArgument, &["key_cache.data is NULL"]);
    let full = size_of::<pkv_write_kv_cache_args>() as u32;
    for small in [0, full - 8, full - 1] {
        Wr::with(|w| w.struct_size = small)
            .fails(Status::InvalidStructSize, &["args->struct_size", &small.to_string(), &full.to_string()]);
    }
}

#[test]
fn write_bad_arguments() {
    Wr::with(|w| w.tkey.dtype = PKV_DTYPE_INT32).fails(Status::InvalidDtype, &["key.dtype = int32"]);
    Wr::with(|w| w.tval.dtype = PKV_DTYPE_BFLOAT16).fails(Status::InvalidDtype, &["value.dtype = bfloat16", "float16"]);
    Wr::with(|w| w.tslots.dtype = PKV_DTYPE_INT32)
        .fails(Status::InvalidDtype, &["slot_mapping.dtype = int32", "int64"]);
    // An "auto" cache must hold the model dtype: a float32 cache for float16 keys.
    let f32_cache = Cache::new(Layout::SplitKvFirst, Dt::F32, NB, BS, HKV, D, &[0]);
    Wr::with(|w| {
        w.tk = f32_cache.key_t();
        w.tv = f32_cache.value_t();
    })
    .fails(Status::InvalidDtype, &["key_cache.dtype = float32", "float16"]);
    // A float16 cache whose key view claims another element type is caught by its shape (x).
    Wr::with(|w| {
        w.tk.dtype = PKV_DTYPE_FLOAT32;
        w.tv.dtype = PKV_DTYPE_FLOAT32;
    })
    .fails(Status::ShapeMismatch, &["key_cache.shape[4] = 8", "x"]);
    Wr::with(|w| w.kv_cache_dtype = PKV_KV_CACHE_DTYPE_FP8_E5M2)
        .fails(Status::InvalidDtype, &["key_cache.dtype = float16", "fp8_e5m2"]);
    // "fp8" means OCP e4m3fn on the CPU: a typed fnuz cache disagrees.
    let fnuz = Cache::new(Layout::SplitKvFirst, Dt::E4M3FNUZ, NB, BS, HKV, D, &[0]);
    Wr::with(|w| {
        w.tk = fnuz.key_t();
        w.tv = fnuz.value_t();
        w.kv_cache_dtype = PKV_KV_CACHE_DTYPE_FP8;
    })
    .fails(Status::InvalidDtype, &["key_cache.dtype = float8_e4m3fnuz", "fp8_e4m3fn"]);
    Wr::with(|w| w.kv_cache_dtype = 6).fails(Status::InvalidEnum, &["kv_cache_dtype = 6"]);
    Wr::with(|w| w.kv_layout = 2).fails(Status::InvalidEnum, &["kv_layout = 2"]);
    Wr::with(|w| w.tkey.ndim = 2).fails(Status::InvalidNdim, &["key.ndim = 2"]);
    Wr::with(|w| {
        w.tslots.ndim = 2;
        w.tslots.shape[1] = 1;
    })
    .fails(Status::InvalidNdim, &["slot_mapping.ndim = 2"]);
    Wr::with(|w| w.kv_layout = PKV_KV_LAYOUT_NHD).fails(Status::InvalidNdim, &["key_cache.ndim = 5"]);
    Wr::with(|w| w.tval.shape[1] = 1).fails(Status::ShapeMismatch, &["value.shape[1] = 1"]);
    Wr::with(|w| w.tslots.shape[0] = 5)
        .fails(Status::ShapeMismatch, &["slot_mapping.shape[0] = 5", "key.shape[0] = 4"]);
    Wr::with(|w| {
        w.tkey.shape[1] = 1;
        w.tval.shape[1] = 1;
    })
    .fails(Status::ShapeMismatch, &["key.shape[1] = 1", "num_kv_heads"]);
    Wr::with(|w| {
        w.tkey.shape[2] = 8;
        w.tval.shape[2] = 8;
    })
    .fails(Status::ShapeMismatch, &["key.shape[2] = 8", "head_size = 16"]);
    Wr::with(|w| w.tkey.strides[0] = -32).fails(Status::InvalidStride, &["key.strides[0] = -32"]);
    Wr::with(|w| w.tv.strides[3] = 0).fails(Status::InvalidStride, &["value_cache.strides[3] = 0"]);
    Wr::with(|w| w.tval.device_type = PKV_DEVICE_CUDA).fails(Status::DeviceMismatch, &["value is on cuda:0"]);
    Wr::with(|w| w.tslots.device_type = PKV_DEVICE_ROCM).fails(Status::DeviceMismatch, &["slot_mapping is on rocm:0"]);
    Wr::with(|w| {
        w.tk.device_type = PKV_DEVICE_CUDA;
        w.tv.device_type = PKV_DEVICE_CUDA;
    })
    .fails(Status::DeviceMismatch, &["key_cache is on cuda:0"]);
    Wr::with(|w| {
        let mut s = w.scale.t();
        s.shape[0] = 0;
        w.tks = Some(s);
    })
    .fails(Status::ShapeMismatch, &["k_scale has 0 elements"]);
    Wr::with(|w| {
        let mut s = w.scale.t();
        s.dtype = PKV_DTYPE_FLOAT16;
        w.tks = Some(s);
    })
    .fails(Status::InvalidDtype, &["k_scale.dtype = float16"]);
    Wr::with(|w| {
        let mut s = w.scale.t();
        s.device_type = PKV_DEVICE_CUDA;
        w.tks = Some(s);
    })
    .fails(Status::DeviceMismatch, &["k_scale is on cuda:0"]);
}

/// A slot past the cache fails before anything is written, even when earlier slots are fine.
#[test]
fn write_slot_out_of_range_writes_nothing() {
    for bad in [NB * BS, NB * BS + 1, i64::MAX] {
        Wr::with(|w| w.slots.buf.set_i64(3, bad))
            .fails(Status::SlotOutOfRange, &[&format!("slot_mapping[3] = {bad}"), "64"]);
    }
    // The last valid slot is accepted.
    let mut w = Wr::new();
    w.slots.buf.set_i64(3, NB * BS - 1);
    assert_eq!(w.call_with(&w.args(), ptr::null_mut()), Status::Ok, "{}", last_error());
}

// ---------------------------------------------------------------------------------------------
// GPU tensors in a CPU-only build

#[cfg(not(any(feature = "cuda", feature = "rocm")))]
#[test]
fn gpu_tensors_in_a_cpu_only_build() {
    let how = ["CPU-only", "--features rocm", "--features cuda"];
    let mut a = Attn::new();
    for t in [&mut a.tq, &mut a.tk, &mut a.tv, &mut a.tbt, &mut a.tsl, &mut a.tqsl, &mut a.tout] {
        t.device_type = PKV_DEVICE_CUDA;
    }
    a.fails(Status::GpuBackendNotBuilt, &how);
    let mut bytes = 77u64;
    // SAFETY: valid args (never dereferenced on the device), writable out.
    let st = unsafe { pkv_paged_attention_workspace_size(&a.args(), &mut bytes) };
    expect(st, Status::GpuBackendNotBuilt, &how);
    assert_eq!(bytes, 77);
    let mut plan = plan_out();
    let before = plan_bytes(&plan);
    // SAFETY: as above.
    let st = unsafe { pkv_paged_attention_plan(&a.args(), &mut plan) };
    expect(st, Status::GpuBackendNotBuilt, &how);
    assert_eq!(plan_bytes(&plan), before);

    let mut w = Wr::new();
    for t in [&mut w.tkey, &mut w.tval, &mut w.tk, &mut w.tv, &mut w.tslots] {
        t.device_type = PKV_DEVICE_ROCM;
    }
    w.fails(Status::GpuBackendNotBuilt, &["rocm:0", "--features rocm"]);

    for dev in [PKV_DEVICE_CUDA, PKV_DEVICE_ROCM] {
        let mut limits = limits_out();
        // SAFETY: writable out.
        let st = unsafe { pkv_device_limits_query(dev, 0, &mut limits) };
        expect(st, Status::GpuBackendNotBuilt, &how);
        assert_eq!(limits.wave_size, 0xEE, "limits written on error");
    }
}

fn limits_out() -> pkv_device_limits {
    pkv_device_limits {
        struct_size: size_of::<pkv_device_limits>() as u32,
        wave_size: 0xEE,
        shared_mem_per_block: 0xEE,
        shared_mem_per_block_optin: 0xEE,
        multiprocessor_count: 0xEE,
        reserved: 0,
        arch: [0x41; PKV_ARCH_NAME_LEN],
    }
}

#[test]
fn device_limits_query_argument_checks() {
    let mut limits = limits_out();
    // SAFETY: writable out / NULL under test.
    unsafe {
        expect(pkv_device_limits_query(PKV_DEVICE_CUDA, 0, ptr::null_mut()), Status::NullArgument, &["limits is NULL"]);
        expect(
            pkv_device_limits_query(PKV_DEVICE_CPU, 0, &mut limits),
            Status::UnsupportedDevice,
            &["device_type = 1"],
        );
        expect(pkv_device_limits_query(5, 0, &mut limits), Status::InvalidEnum, &["device_type = 5"]);
        limits.struct_size = 8;
        expect(
            pkv_device_limits_query(PKV_DEVICE_CUDA, 0, &mut limits),
            Status::InvalidStructSize,
            &["limits->struct_size = 8"],
        );
    }
    assert_eq!(limits.wave_size, 0xEE);
}

// ---------------------------------------------------------------------------------------------
// Status strings, version, features, kv_cache_dtype names

/// Every assigned status value and its name; values are ABI and are never reused.
const STATUSES: &[(u32, &str)] = &[
    (0, "PKV_STATUS_OK"),
    (100, "PKV_STATUS_NULL_ARGUMENT"),
    (101, "PKV_STATUS_INVALID_STRUCT_SIZE"),
    (102, "PKV_STATUS_INVALID_ENUM"),
    (103, "PKV_STATUS_INVALID_DTYPE"),
    (104, "PKV_STATUS_INVALID_NDIM"),
    (105, "PKV_STATUS_SHAPE_MISMATCH"),
    (106, "PKV_STATUS_INVALID_STRIDE"),
    (107, "PKV_STATUS_DEVICE_MISMATCH"),
    (108, "PKV_STATUS_HEAD_SIZE_NOT_DIVISIBLE"),
    (109, "PKV_STATUS_GQA_RATIO_NOT_INTEGRAL"),
    (110, "PKV_STATUS_BLOCK_TABLE_TOO_SHORT"),
    (111, "PKV_STATUS_SLOT_OUT_OF_RANGE"),
    (112, "PKV_STATUS_BLOCK_ID_OUT_OF_RANGE"),
    (113, "PKV_STATUS_INVALID_SEQ_LEN"),
    (114, "PKV_STATUS_INVALID_QUERY_START_LOC"),
    (115, "PKV_STATUS_INVALID_VALUE"),
    (116, "PKV_STATUS_WORKSPACE_TOO_SMALL"),
    (117, "PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE"),
    (118, "PKV_STATUS_BUFFER_TOO_SMALL"),
    (200, "PKV_STATUS_UNSUPPORTED_HEAD_SIZE"),
    (201, "PKV_STATUS_UNSUPPORTED_CONFIGURATION"),
    (202, "PKV_STATUS_GPU_BACKEND_NOT_BUILT"),
    (203, "PKV_STATUS_UNSUPPORTED_DEVICE"),
    (204, "PKV_STATUS_SHARED_MEMORY_EXCEEDED"),
    (300, "PKV_STATUS_DEVICE_ERROR"),
    (301, "PKV_STATUS_LAUNCH_FAILED"),
    (302, "PKV_STATUS_NO_DEVICE"),
    (900, "PKV_STATUS_INTERNAL"),
    (901, "PKV_STATUS_PANIC"),
];

fn c_str(p: *const c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: the library returns static NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
}

#[test]
fn status_strings() {
    for &(v, name) in STATUSES {
        assert_eq!(c_str(pkv_status_string(v)), name, "status {v}");
        assert_eq!(Status::from_u32(v).map(|s| s as u32), Some(v));
    }
    assert_eq!(Status::all().len(), STATUSES.len(), "a status was added: list it here with its value");
    for unknown in [1u32, 7, 99, 119, 199, 205, 299, 303, 899, 902, 1000, u32::MAX] {
        assert_eq!(c_str(pkv_status_string(unknown)), "PKV_STATUS_UNKNOWN", "value {unknown}");
    }
    // Ranges: 1xx arguments, 2xx unsupported, 3xx device, 9xx internal.
    let mut seen = std::collections::HashSet::new();
    for &(v, _) in STATUSES {
        assert!(seen.insert(v));
        assert!(matches!(v, 0 | 100..=199 | 200..=299 | 300..=399 | 900..=999));
    }
}

#[test]
fn version_agrees_with_cargo_toml() {
    let v = env!("CARGO_PKG_VERSION");
    let parts: Vec<u32> = v.split(['.', '-', '+']).take(3).map(|p| p.parse().unwrap()).collect();
    let (major, minor, patch) = (parts[0], parts[1], parts[2]);
    assert_eq!((PKV_VERSION_MAJOR, PKV_VERSION_MINOR, PKV_VERSION_PATCH), (major, minor, patch));
    assert_eq!(PKV_VERSION_NUMBER, major * 10000 + minor * 100 + patch);
    assert_eq!(pkv_version_number(), major * 10000 + minor * 100 + patch);
    assert_eq!(c_str(pkv_version_string()), v);
    assert_eq!(pagedkv::VERSION, v);
}

#[test]
fn features_and_targets() {
    let f = pkv_features();
    assert_ne!(f & PKV_FEATURE_CPU, 0, "the CPU backend is always built");
    assert!(!(f & PKV_FEATURE_CUDA != 0 && f & PKV_FEATURE_ROCM != 0), "one GPU backend at most");
    assert_eq!(f & !(PKV_FEATURE_CPU | PKV_FEATURE_CUDA | PKV_FEATURE_ROCM), 0, "unknown feature bits {f:#x}");
    let targets = c_str(pkv_gpu_targets());
    if cfg!(any(feature = "cuda", feature = "rocm")) {
        assert_ne!(f & !PKV_FEATURE_CPU, 0);
    } else {
        assert_eq!(f, PKV_FEATURE_CPU);
        assert_eq!(targets, "");
    }
}

#[test]
fn kv_cache_dtype_names() {
    let names = [
        ("auto", PKV_KV_CACHE_DTYPE_AUTO),
        ("fp8", PKV_KV_CACHE_DTYPE_FP8),
        ("fp8_e4m3", PKV_KV_CACHE_DTYPE_FP8_E4M3),
        ("fp8_e4m3fn", PKV_KV_CACHE_DTYPE_FP8_E4M3FN),
        ("fp8_e4m3fnuz", PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ),
        ("fp8_e5m2", PKV_KV_CACHE_DTYPE_FP8_E5M2),
    ];
    for (name, want) in names {
        let c = CString::new(name).unwrap();
        let mut out = 0xABu32;
        // SAFETY: valid string and out.
        assert_eq!(unsafe { pkv_kv_cache_dtype_from_string(c.as_ptr(), &mut out) }, Status::Ok);
        assert_eq!(out, want, "{name}");
    }
    for bad in ["fp8_e4m3fnx", "float16", "bfloat16", "AUTO", "", "fp8 "] {
        let c = CString::new(bad).unwrap();
        let mut out = 0xABu32;
        // SAFETY: as above.
        let st = unsafe { pkv_kv_cache_dtype_from_string(c.as_ptr(), &mut out) };
        expect(st, Status::UnknownKvCacheDtype, &[&format!("\"{bad}\""), "fp8_e5m2"]);
        assert_eq!(out, 0xAB, "out written on error");
    }
    let mut out = 0xABu32;
    let c = CString::new("auto").unwrap();
    // SAFETY: NULLs under test.
    unsafe {
        expect(pkv_kv_cache_dtype_from_string(ptr::null(), &mut out), Status::NullArgument, &["name is NULL"]);
        expect(pkv_kv_cache_dtype_from_string(c.as_ptr(), ptr::null_mut()), Status::NullArgument, &["out is NULL"]);
        let bad_utf8 = [0xFFu8, 0xFE, 0];
        expect(
            pkv_kv_cache_dtype_from_string(bad_utf8.as_ptr() as *const c_char, &mut out),
            Status::InvalidValue,
            &["name", "UTF-8"],
        );
    }
    assert_eq!(out, 0xAB);
}

// ---------------------------------------------------------------------------------------------
// Split, native layout, DLPack

fn combined_desc(buf: &Buf, dt: Dt, shape: &[i64], strides: &[i64], elem_offset: i64) -> pkv_tensor {
    tensor(buf, dt, shape, strides, elem_offset)
}

fn addr(t: &pkv_tensor) -> usize {
    t.data as usize + t.byte_offset as usize
}

fn poisoned_tensor() -> pkv_tensor {
    pkv_tensor {
        data: 0x1234 as *mut c_void,
        byte_offset: 0x77,
        device_type: 99,
        device_id: 99,
        dtype: 99,
        ndim: 99,
        shape: [-9; PKV_MAX_DIMS],
        strides: [-9; PKV_MAX_DIMS],
    }
}

fn same_view(got: &pkv_tensor, want: &pkv_tensor) -> bool {
    let n = (want.ndim as usize).min(PKV_MAX_DIMS);
    got.ndim == want.ndim
        && got.dtype == want.dtype
        && got.device_type == want.device_type
        && got.device_id == want.device_id
        && addr(got) == addr(want)
        && got.shape[..n] == want.shape[..n]
        && got.strides[..n] == want.strides[..n]
}

fn split(kv: &pkv_tensor, h: i64, d: i64) -> (Status, pkv_tensor, pkv_tensor) {
    let (mut k, mut v) = (poisoned_tensor(), poisoned_tensor());
    // SAFETY: valid descriptor and writable outs.
    let st = unsafe { pkv_split_kv_cache(kv, h, d, &mut k, &mut v) };
    (st, k, v)
}

/// The split views equal the spec's layouts (§2.2, §2.3) built independently by `Cache`.
#[test]
fn split_kv_cache_views() {
    for (dt, nb, bs, h, d) in
        [(Dt::F16, 3, 16, 2, 64), (Dt::BF16, 2, 544, 2, 32), (Dt::F32, 2, 32, 1, 8), (Dt::U8, 2, 16, 2, 32)]
    {
        let hidden = bs * h * d;
        for layout in [Layout::SplitKvFirst, Layout::SplitHybrid] {
            let cache = Cache::new(layout, dt, nb, bs, h, d, &[0]);
            let (s0, s1) = if layout == Layout::SplitHybrid { (hidden, 2 * hidden) } else { (nb * hidden, hidden) };
            let kv = combined_desc(&cache.bufs[0], dt, &[2, nb, bs, h, d], &[s0, s1, h * d, d, 1], cache.k_at.1);
            let (st, k, v) = split(&kv, h, d);
            assert_eq!(st, Status::Ok, "{}", last_error());
            assert!(same_view(&k, &cache.key_t()), "{layout:?} {dt:?}: key view {k:?}");
            assert!(same_view(&v, &cache.value_t()), "{layout:?} {dt:?}: value view {v:?}");
            assert_eq!(k.shape[4], dt.x());
            // The split's own views pass the native-layout predicate exactly when native.
            let mut flag = 0x5Au8;
            // SAFETY: valid descriptors, writable flag.
            let st = unsafe { pkv_has_native_layout(&k, &v, &mut flag as *mut u8 as *mut bool) };
            assert_eq!(st, Status::Ok);
            assert_eq!(flag, (layout == Layout::SplitKvFirst) as u8, "{layout:?}");
        }
    }
    // A 3-D combined view [2, num_blocks, block] and blocks-first [num_blocks, 2, ...] permuted.
    let buf = Buf::zeroed(2 * 4 * 16 * 2 * 16 * 2);
    let hidden = 16 * 2 * 16;
    let kv = combined_desc(&buf, Dt::F16, &[2, 4, hidden], &[4 * hidden, hidden, 1], 0);
    let (st, k, v) = split(&kv, 2, 16);
    assert_eq!(st, Status::Ok, "{}", last_error());
    assert_eq!(&k.shape[..5], &[4, 2, 2, 16, 8]);
    assert_eq!(&v.shape[..4], &[4, 2, 16, 16]);
    assert_eq!(addr(&v) - addr(&k), (4 * hidden * 2) as usize);
    let kv = combined_desc(&buf, Dt::F16, &[2, 4, 16, 2, 16], &[hidden, 2 * hidden, 32, 16, 1], 0);
    let (st, k, _) = split(&kv, 2, 16);
    assert_eq!(st, Status::Ok);
    assert_eq!(k.strides[0], 2 * hidden, "block stride preserved");
    // byte_offset of the input is honoured.
    let kv = combined_desc(&buf, Dt::F16, &[2, 2, 16, 2, 16], &[2 * hidden, hidden, 32, 16, 1], 8);
    let (st, k, v) = split(&kv, 2, 16);
    assert_eq!(st, Status::Ok);
    assert_eq!(addr(&k), buf.ptr() as usize + 16);
    assert_eq!(addr(&v), buf.ptr() as usize + 16 + 2 * hidden as usize * 2);
}

#[test]
fn split_kv_cache_errors_leave_outputs_alone() {
    let buf = Buf::zeroed(2 * 4 * 16 * 2 * 64 * 2);
    let good = combined_desc(&buf, Dt::F16, &[2, 4, 16, 2, 64], &[4 * 2048, 2048, 128, 64, 1], 0);
    let check = |kv: &pkv_tensor, h: i64, d: i64, want: Status, needles: &[&str]| {
        let (st, k, v) = split(kv, h, d);
        expect(st, want, needles);
        assert!(same_view(&k, &poisoned_tensor()) && same_view(&v, &poisoned_tensor()), "outputs written on error");
    };
    let mut t = good;
    t.ndim = 2;
    check(&t, 2, 64, Status::InvalidNdim, &["kv_cache.ndim = 2"]);
    let mut t = good;
    t.shape[0] = 3;
    check(&t, 2, 64, Status::ShapeMismatch, &["kv_cache.shape[0] = 3", "2"]);
    check(&good, 2, 60, Status::HeadSizeNotDivisible, &["head_size = 60", "x = 8"]);
    check(&good, 3, 64, Status::ShapeMismatch, &["num_kv_heads", "3"]);
    check(&good, 0, 64, Status::InvalidValue, &["num_kv_heads = 0"]);
    check(&good, 2, -64, Status::InvalidValue, &["head_size = -64"]);
    let mut t = good;
    t.strides[3] = 65;
    check(&t, 2, 64, Status::InvalidStride, &["kv_cache.strides[3] = 65"]);
    let mut t = good;
    t.dtype = PKV_DTYPE_INT32;
    check(&t, 2, 64, Status::InvalidDtype, &["kv_cache.dtype = int32"]);
    let mut t = good;
    t.dtype = 77;
    check(&t, 2, 64, Status::InvalidEnum, &["kv_cache.dtype = 77"]);
    let mut t = good;
    t.strides[1] = -2048;
    check(&t, 2, 64, Status::InvalidStride, &["kv_cache.strides[1] = -2048"]);
    // NULLs.
    let (mut k, mut v) = (poisoned_tensor(), poisoned_tensor());
    // SAFETY: NULLs under test.
    unsafe {
        expect(pkv_split_kv_cache(ptr::null(), 2, 64, &mut k, &mut v), Status::NullArgument, &["kv_cache is NULL"]);
        expect(pkv_split_kv_cache(&good, 2, 64, ptr::null_mut(), &mut v), Status::NullArgument, &["key_cache is NULL"]);
        expect(
            pkv_split_kv_cache(&good, 2, 64, &mut k, ptr::null_mut()),
            Status::NullArgument,
            &["value_cache is NULL"],
        );
    }
    assert!(same_view(&k, &poisoned_tensor()) && same_view(&v, &poisoned_tensor()));
}

#[test]
fn has_native_layout_cases() {
    let native_of = |k: &pkv_tensor, v: &pkv_tensor| -> (Status, u8) {
        let mut flag = 0x5Au8;
        // SAFETY: valid descriptors, writable flag.
        let st = unsafe { pkv_has_native_layout(k, v, &mut flag as *mut u8 as *mut bool) };
        (st, flag)
    };
    for (layout, want) in [
        (Layout::SplitSeparate, 1u8),
        (Layout::SplitKvFirst, 1),
        (Layout::SplitHybrid, 0),
        (Layout::SplitPadded(8), 0),
        (Layout::NhdPadded { tok_pad: 0, head_pad: 0, blk_pad: 0 }, 1),
        (Layout::NhdPadded { tok_pad: 0, head_pad: 0, blk_pad: 4 }, 0),
        (Layout::NhdBlocksFirst, 0),
    ] {
        let c = Cache::new(layout, Dt::F16, 3, 16, 2, 32, &[0]);
        assert_eq!(native_of(&c.key_t(), &c.value_t()), (Status::Ok, want), "{layout:?}");
    }
    // Only the value cache padded: not native (both must be packed).
    let c = Cache::new(Layout::SplitSeparate, Dt::F16, 3, 16, 2, 32, &[0]);
    let mut v = c.value_t();
    v.strides[0] += 16;
    v.shape[0] = 2;
    let mut k = c.key_t();
    k.shape[0] = 2;
    assert_eq!(native_of(&k, &v), (Status::Ok, 0));
    // Errors: the flag is not written.
    let mut k1 = c.key_t();
    k1.ndim = 1;
    let (st, flag) = native_of(&k1, &c.value_t());
    expect(st, Status::InvalidNdim, &["key_cache.ndim = 1"]);
    assert_eq!(flag, 0x5A);
    let mut vg = c.value_t();
    vg.device_type = PKV_DEVICE_CUDA;
    let (st, flag) = native_of(&c.key_t(), &vg);
    expect(st, Status::DeviceMismatch, &["value_cache is on cuda:0"]);
    assert_eq!(flag, 0x5A);
    let mut flag = 0x5Au8;
    // SAFETY: NULLs under test.
    unsafe {
        let fp = &mut flag as *mut u8 as *mut bool;
        expect(pkv_has_native_layout(ptr::null(), &c.value_t(), fp), Status::NullArgument, &["key_cache is NULL"]);
        expect(pkv_has_native_layout(&c.key_t(), ptr::null(), fp), Status::NullArgument, &["value_cache is NULL"]);
        expect(
            pkv_has_native_layout(&c.key_t(), &c.value_t(), ptr::null_mut()),
            Status::NullArgument,
            &["is_native is NULL"],
        );
    }
    assert_eq!(flag, 0x5A);
}

/// DLPack's `DLTensor` as dlpack.h declares it.
#[repr(C)]
struct DlTensor {
    data: *mut c_void,
    device_type: i32,
    device_id: i32,
    ndim: i32,
    code: u8,
    bits: u8,
    lanes: u16,
    shape: *const i64,
    strides: *const i64,
    byte_offset: u64,
}

#[test]
fn tensor_from_dlpack_cases() {
    let buf = Buf::zeroed(4096);
    let shape = [2i64, 3, 4];
    let strides = [24i64, 8, 2];
    let dl = |code: u8, bits: u8, lanes: u16, device_type: i32, ndim: i32, with_strides: bool| DlTensor {
        data: buf.ptr(),
        device_type,
        device_id: 0,
        ndim,
        code,
        bits,
        lanes,
        shape: shape.as_ptr(),
        strides: if with_strides { strides.as_ptr() } else { ptr::null() },
        byte_offset: 64,
    };
    let convert = |t: &DlTensor| -> (Status, pkv_tensor) {
        let mut out = poisoned_tensor();
        // SAFETY: a valid DLTensor and a writable out.
        let st = unsafe { pkv_tensor_from_dlpack(t as *const DlTensor as *const c_void, &mut out) };
        (st, out)
    };
    // Contiguous (NULL strides): row-major.
    let (st, t) = convert(&dl(2, 16, 1, 1, 3, false));
    assert_eq!(st, Status::Ok, "{}", last_error());
    assert_eq!((t.dtype, t.ndim, t.device_type), (PKV_DTYPE_FLOAT16, 3, PKV_DEVICE_CPU));
    assert_eq!(&t.shape[..3], &shape);
    assert_eq!(&t.strides[..3], &[12, 4, 1]);
    assert_eq!(addr(&t), buf.ptr() as usize + 64);
    // Pinned host memory (kDLCUDAHost = 3, kDLROCMHost = 11) is host memory.
    for pinned in [3, 11] {
        let (st, t) = convert(&dl(2, 16, 1, pinned, 3, false));
        assert_eq!((st, t.device_type, t.device_id), (Status::Ok, PKV_DEVICE_CPU, 0), "device {pinned}");
    }
    // Explicit strides are kept.
    let (st, t) = convert(&dl(4, 16, 1, 1, 3, true));
    assert_eq!(st, Status::Ok);
    assert_eq!((t.dtype, &t.strides[..3]), (PKV_DTYPE_BFLOAT16, &strides[..]));
    for (code, bits, want) in [
        (2u8, 32u8, PKV_DTYPE_FLOAT32),
        (1, 8, PKV_DTYPE_UINT8),
        (0, 32, PKV_DTYPE_INT32),
        (0, 64, PKV_DTYPE_INT64),
        (10, 8, PKV_DTYPE_FLOAT8_E4M3FN),
        (11, 8, PKV_DTYPE_FLOAT8_E4M3FNUZ),
        (12, 8, PKV_DTYPE_FLOAT8_E5M2),
    ] {
        let (st, t) = convert(&dl(code, bits, 1, 1, 3, false));
        assert_eq!((st, t.dtype), (Status::Ok, want), "code {code} bits {bits}");
    }
    // GPU device codes are carried (CUDA 2, ROCm 10).
    let (st, t) = convert(&dl(2, 16, 1, 10, 3, false));
    assert_eq!((st, t.device_type), (Status::Ok, PKV_DEVICE_ROCM));
    // Errors: out untouched.
    let bad = [
        (dl(2, 16, 1, 1, 7, false), Status::InvalidNdim, "dl_tensor.ndim = 7"),
        (dl(2, 16, 1, 1, -1, false), Status::InvalidNdim, "dl_tensor.ndim = -1"),
        (dl(2, 16, 2, 1, 3, false), Status::InvalidDtype, "lanes = 2"),
        (dl(2, 64, 1, 1, 3, false), Status::InvalidDtype, "code 2, bits 64"),
        (dl(2, 16, 1, 4, 3, false), Status::InvalidEnum, "device_type = 4"),
    ];
    for (t, want, needle) in bad {
        let (st, out) = convert(&t);
        expect(st, want, &[needle]);
        assert!(same_view(&out, &poisoned_tensor()));
    }
    let mut t = dl(2, 16, 1, 1, 3, false);
    t.shape = ptr::null();
    let (st, out) = convert(&t);
    expect(st, Status::NullArgument, &["dl_tensor.shape is NULL"]);
    assert!(same_view(&out, &poisoned_tensor()));
    let mut t = dl(2, 16, 1, 1, 3, false);
    t.data = ptr::null_mut();
    let (st, _) = convert(&t);
    expect(st, Status::NullArgument, &["data is NULL"]);
    let neg = [-4i64, 8, 2];
    let mut t = dl(2, 16, 1, 1, 3, true);
    t.strides = neg.as_ptr();
    let (st, _) = convert(&t);
    expect(st, Status::InvalidStride, &["strides[0] = -4"]);
    let mut out = poisoned_tensor();
    // SAFETY: NULLs under test.
    unsafe {
        expect(pkv_tensor_from_dlpack(ptr::null(), &mut out), Status::NullArgument, &["dl_tensor is NULL"]);
        let ok = dl(2, 16, 1, 1, 3, false);
        expect(
            pkv_tensor_from_dlpack(&ok as *const DlTensor as *const c_void, ptr::null_mut()),
            Status::NullArgument,
            &["out is NULL"],
        );
    }
    assert!(same_view(&out, &poisoned_tensor()));
}

// ---------------------------------------------------------------------------------------------
// Planning

fn plan_out() -> pkv_attention_plan {
    pkv_attention_plan {
        struct_size: size_of::<pkv_attention_plan>() as u32,
        path: 0xEE,
        tile_size: 0xEE,
        block_q: 0xEE,
        num_splits: 0xEE,
        threads: 0xEE,
        shared_mem_bytes: 0xEE,
        workspace_bytes: 0xEE,
        reason: [0x41; PKV_PLAN_REASON_LEN],
    }
}

fn plan_bytes(p: &pkv_attention_plan) -> Vec<u8> {
    // SAFETY: a plain-old-data struct read as bytes (its padding is initialised: plan_out and
    // the library write whole structs).
    unsafe { std::slice::from_raw_parts(p as *const pkv_attention_plan as *const u8, size_of::<pkv_attention_plan>()) }
        .to_vec()
}

fn limits(arch: &str, wave: u32, smem: u64, cus: u32) -> pkv_device_limits {
    let mut l = limits_out();
    l.wave_size = wave;
    l.shared_mem_per_block = smem;
    l.shared_mem_per_block_optin = smem;
    l.multiprocessor_count = cus;
    l.arch = [0; PKV_ARCH_NAME_LEN];
    for (i, b) in arch.bytes().enumerate() {
        l.arch[i] = b as c_char;
    }
    l
}

/// A decode batch of `batch` sequences of up to `context` tokens, for planning only (one
/// physical block shared by every table entry; the planner never reads the values).
struct PlanCall {
    _q: Owned,
    _cache: Cache,
    _bt: Owned,
    sl: Owned,
    _qsl: Owned,
    _out: Owned,
    ts: [pkv_tensor; 7],
}

impl PlanCall {
    fn new(qdt: Dt, batch: i64, context: i64, bs: i64, hq: i64, hkv: i64, d: i64) -> Self {
        let q = Owned::new(qdt, &[batch, hq, d]);
        let cache = Cache::new(Layout::SplitKvFirst, qdt, 1, bs, hkv, d, &[0]);
        let cols = ceil_div(context, bs);
        let bt = Owned::i32_table(&vec![vec![0; cols as usize]; batch as usize]);
        let sl = Owned::i32s(&vec![context as i32; batch as usize]);
        let qsl = Owned::i32s(&(0..=batch as i32).collect::<Vec<_>>());
        let out = Owned::new(qdt, &[batch, hq, d]);
        let ts = [q.t(), cache.key_t(), cache.value_t(), bt.t(), sl.t(), qsl.t(), out.t()];
        PlanCall { _q: q, _cache: cache, _bt: bt, sl, _qsl: qsl, _out: out, ts }
    }

    fn args(&self) -> pkv_paged_attention_args {
        let [q, k, v, bt, sl, qsl, out] = &self.ts;
        pkv_paged_attention_args {
            struct_size: size_of::<pkv_paged_attention_args>() as u32,
            kv_layout: PKV_KV_LAYOUT_SPLIT,
            query: q,
            key_cache: k,
            value_cache: v,
            block_table: bt,
            seq_lens: sl,
            query_start_loc: qsl,
            output: out,
            kv_cache_dtype: PKV_KV_CACHE_DTYPE_AUTO,
            causal: 1,
            k_scale: ptr::null(),
            v_scale: ptr::null(),
            alibi_slopes: ptr::null(),
            sinks: ptr::null(),
            output_scale: ptr::null(),
            sm_scale: 0.0,
            sliding_window: 0,
            logits_soft_cap: 0.0,
            max_query_len: 0,
        }
    }

    fn plan_for(&self, l: &pkv_device_limits) -> (Status, pkv_attention_plan) {
        let mut p = plan_out();
        // SAFETY: valid args and limits, writable plan.
        let st = unsafe { pkv_paged_attention_plan_for_device(&self.args(), l, &mut p) };
        (st, p)
    }
}

#[test]
fn plan_for_gfx942_and_gfx1100() {
    let devices = [limits("gfx942", 64, 65536, 304), limits("gfx1100", 32, 65536, 96)];
    for l in &devices {
        let arch = c_text(&l.arch);
        for bs in [16i64, 544, 2048] {
            for qdt in [Dt::F16, Dt::BF16, Dt::F32] {
                // Batch 1, 32k context, head 256, GQA 8.
                let call = PlanCall::new(qdt, 1, 32768, bs, 16, 2, 256);
                let (st, p) = call.plan_for(l);
                assert_eq!(st, Status::Ok, "{arch} bs {bs}: {}", last_error());
                let what = format!("{arch} bs {bs} {qdt:?}: {p:?} reason {:?}", c_text(&p.reason));
                assert!(p.tile_size >= 1, "{what}");
                assert!(!(bs > 128 && p.tile_size as i64 == bs), "tile equals a large block size: {what}");
                assert!(p.shared_mem_bytes > 0 && p.shared_mem_bytes <= 65536, "{what}");
                assert!(p.threads > 0 && p.threads % l.wave_size == 0, "{what}");
                let reason = c_text(&p.reason);
                assert!(!reason.is_empty());
                if bs > p.tile_size as i64 {
                    assert!(reason.contains("decoupled"), "{what}");
                }
                // One long sequence cannot fill the GPU: split KV, with scratch for the partials.
                assert!(p.num_splits > 1, "{what}");
                assert_eq!(p.path, PKV_ATTENTION_PATH_GPU_SPLIT_KV, "{what}");
                assert!(p.workspace_bytes >= p.num_splits as u64 * 16 * 256 * 4, "{what}");
                assert_eq!(p.struct_size, size_of::<pkv_attention_plan>() as u32);
                // The workspace query agrees with the plan on a device... on the CPU it is 0.
                let mut ws = 1u64;
                // SAFETY: valid args, writable out.
                assert_eq!(unsafe { pkv_paged_attention_workspace_size(&call.args(), &mut ws) }, Status::Ok);
                assert_eq!(ws, 0, "host tensors need no workspace");
            }
        }
    }
}

/// Splits (and the whole plan) depend only on shapes, never on `seq_lens` values, so a plan
/// made at graph capture (seq_lens = 1) holds at replay.
#[test]
fn plan_does_not_depend_on_seq_lens_values() {
    let l = limits("gfx942", 64, 65536, 304);
    for bs in [16i64, 544, 2048] {
        let mut call = PlanCall::new(Dt::BF16, 2, 32768, bs, 16, 2, 128);
        let (st, long) = call.plan_for(&l);
        assert_eq!(st, Status::Ok);
        for v in [1, 0, 17, 32768] {
            call.sl.buf.set_i32(0, v);
            call.sl.buf.set_i32(1, v);
            let (st, p) = call.plan_for(&l);
            assert_eq!(st, Status::Ok);
            assert_eq!(plan_bytes(&p), plan_bytes(&long), "bs {bs} seq_lens {v}");
        }
        // More sequences never need more splits.
        let big = PlanCall::new(Dt::BF16, 256, 32768 / 32, bs, 16, 2, 128);
        let (st, bp) = big.plan_for(&l);
        assert_eq!(st, Status::Ok);
        assert!(bp.num_splits <= long.num_splits, "bs {bs}: {} > {}", bp.num_splits, long.num_splits);
    }
}

#[test]
fn plan_on_the_cpu_and_plan_errors() {
    let call = PlanCall::new(Dt::F16, 2, 100, 16, 4, 2, 64);
    let mut p = plan_out();
    // SAFETY: valid args, writable plan.
    assert_eq!(unsafe { pkv_paged_attention_plan(&call.args(), &mut p) }, Status::Ok, "{}", last_error());
    assert_eq!(p.path, PKV_ATTENTION_PATH_CPU_REFERENCE);
    assert_eq!((p.num_splits, p.workspace_bytes), (1, 0));
    assert!(!c_text(&p.reason).is_empty());
    // A struct_size larger than this version's is accepted and echoed.
    let mut p = plan_out();
    p.struct_size += 32;
    // SAFETY: as above (the library writes only sizeof(pkv_attention_plan) bytes).
    assert_eq!(unsafe { pkv_paged_attention_plan(&call.args(), &mut p) }, Status::Ok);

    let check_untouched = |p: &pkv_attention_plan, small: Option<u32>| {
        let mut fresh = plan_out();
        if let Some(s) = small {
            fresh.struct_size = s;
        }
        assert_eq!(plan_bytes(p), plan_bytes(&fresh), "plan written on error");
    };
    let l = limits("gfx942", 64, 65536, 304);
    // SAFETY: NULLs and bad sizes under test; everything else valid.
    unsafe {
        let mut p = plan_out();
        expect(pkv_paged_attention_plan(ptr::null(), &mut p), Status::NullArgument, &["args is NULL"]);
        check_untouched(&p, None);
        expect(pkv_paged_attention_plan(&call.args(), ptr::null_mut()), Status::NullArgument, &["plan is NULL"]);
        p.struct_size = 16;
        expect(pkv_paged_attention_plan(&call.args(), &mut p), Status::InvalidStructSize, &["plan->struct_size = 16"]);
        check_untouched(&p, Some(16));
        let mut p = plan_out();
        expect(pkv_paged_attention_plan_for_device(ptr::null(), &l, &mut p), Status::NullArgument, &["args is NULL"]);
        expect(
            pkv_paged_attention_plan_for_device(&call.args(), ptr::null(), &mut p),
            Status::NullArgument,
            &["limits is NULL"],
        );
        expect(
            pkv_paged_attention_plan_for_device(&call.args(), &l, ptr::null_mut()),
            Status::NullArgument,
            &["plan is NULL"],
        );
        check_untouched(&p, None);
        let mut small = l;
        small.struct_size = 4;
        expect(
            pkv_paged_attention_plan_for_device(&call.args(), &small, &mut p),
            Status::InvalidStructSize,
            &["limits->struct_size = 4"],
        );
        let mut bad = l;
        bad.wave_size = 16;
        expect(
            pkv_paged_attention_plan_for_device(&call.args(), &bad, &mut p),
            Status::InvalidValue,
            &["wave_size = 16"],
        );
        let mut bad = l;
        bad.multiprocessor_count = 0;
        expect(
            pkv_paged_attention_plan_for_device(&call.args(), &bad, &mut p),
            Status::InvalidValue,
            &["multiprocessor_count = 0"],
        );
        check_untouched(&p, None);
        // No tile fits 4 KiB of shared memory with head 256 in f32.
        let big = PlanCall::new(Dt::F32, 1, 4096, 16, 8, 1, 256);
        let tiny = limits("gfx942", 64, 4096, 304);
        expect(
            pkv_paged_attention_plan_for_device(&big.args(), &tiny, &mut p),
            Status::SharedMemoryExceeded,
            &["4096"],
        );
        check_untouched(&p, None);
        // Bad arguments are reported by the planning functions as by the call itself.
        let mut args = call.args();
        args.kv_cache_dtype = 9;
        expect(pkv_paged_attention_plan_for_device(&args, &l, &mut p), Status::InvalidEnum, &["kv_cache_dtype = 9"]);
        let mut ws = 5u64;
        expect(pkv_paged_attention_workspace_size(&args, &mut ws), Status::InvalidEnum, &["kv_cache_dtype = 9"]);
        assert_eq!(ws, 5);
        expect(pkv_paged_attention_workspace_size(ptr::null(), &mut ws), Status::NullArgument, &["args is NULL"]);
        expect(
            pkv_paged_attention_workspace_size(&call.args(), ptr::null_mut()),
            Status::NullArgument,
            &["bytes is NULL"],
        );
        assert_eq!(ws, 5);
        check_untouched(&p, None);
    }
}

/// On the CPU no workspace is needed: NULL with 0 bytes is accepted. (WORKSPACE_TOO_SMALL can
/// only happen with device tensors, which a CPU-only build rejects first.)
#[test]
fn cpu_attention_needs_no_workspace() {
    let a = Attn::new();
    let mut ws = 99u64;
    // SAFETY: valid args and out.
    assert_eq!(unsafe { pkv_paged_attention_workspace_size(&a.args(), &mut ws) }, Status::Ok);
    assert_eq!(ws, 0);
    let mut scratch = [0u8; 64];
    // SAFETY: valid args; a workspace that is not needed is ignored.
    let st = unsafe { pkv_paged_attention(&a.args(), scratch.as_mut_ptr() as *mut c_void, 64, ptr::null_mut()) };
    assert_eq!(st, Status::Ok);
    assert!(scratch.iter().all(|&b| b == 0), "an unneeded workspace was written");
}

// ---------------------------------------------------------------------------------------------
// ABI layout: the numbers the header promises (ctests check the same from C)

#[test]
fn abi_layout_of_public_structs() {
    // 8 (data) + 8 (byte_offset) + 4 * 4 (device_type, device_id, dtype, ndim) + 2 * 6 * 8.
    assert_eq!((size_of::<pkv_tensor>(), align_of::<pkv_tensor>()), (128, 8));
    assert_eq!(offset_of!(pkv_tensor, data), 0);
    assert_eq!(offset_of!(pkv_tensor, byte_offset), 8);
    assert_eq!(offset_of!(pkv_tensor, device_type), 16);
    assert_eq!(offset_of!(pkv_tensor, device_id), 20);
    assert_eq!(offset_of!(pkv_tensor, dtype), 24);
    assert_eq!(offset_of!(pkv_tensor, ndim), 28);
    assert_eq!(offset_of!(pkv_tensor, shape), 32);
    assert_eq!(offset_of!(pkv_tensor, strides), 80);

    assert_eq!((size_of::<pkv_write_kv_cache_args>(), align_of::<pkv_write_kv_cache_args>()), (72, 8));
    assert_eq!(offset_of!(pkv_write_kv_cache_args, struct_size), 0);
    assert_eq!(offset_of!(pkv_write_kv_cache_args, kv_layout), 4);
    assert_eq!(offset_of!(pkv_write_kv_cache_args, key), 8);
    assert_eq!(offset_of!(pkv_write_kv_cache_args, value), 16);
    assert_eq!(offset_of!(pkv_write_kv_cache_args, key_cache), 24);
    assert_eq!(offset_of!(pkv_write_kv_cache_args, value_cache), 32);
    assert_eq!(offset_of!(pkv_write_kv_cache_args, slot_mapping), 40);
    assert_eq!(offset_of!(pkv_write_kv_cache_args, kv_cache_dtype), 48);
    assert_eq!(offset_of!(pkv_write_kv_cache_args, reserved), 52);
    assert_eq!(offset_of!(pkv_write_kv_cache_args, k_scale), 56);
    assert_eq!(offset_of!(pkv_write_kv_cache_args, v_scale), 64);

    assert_eq!((size_of::<pkv_paged_attention_args>(), align_of::<pkv_paged_attention_args>()), (128, 8));
    assert_eq!(offset_of!(pkv_paged_attention_args, struct_size), 0);
    assert_eq!(offset_of!(pkv_paged_attention_args, kv_layout), 4);
    assert_eq!(offset_of!(pkv_paged_attention_args, query), 8);
    assert_eq!(offset_of!(pkv_paged_attention_args, key_cache), 16);
    assert_eq!(offset_of!(pkv_paged_attention_args, value_cache), 24);
    assert_eq!(offset_of!(pkv_paged_attention_args, block_table), 32);
    assert_eq!(offset_of!(pkv_paged_attention_args, seq_lens), 40);
    assert_eq!(offset_of!(pkv_paged_attention_args, query_start_loc), 48);
    assert_eq!(offset_of!(pkv_paged_attention_args, output), 56);
    assert_eq!(offset_of!(pkv_paged_attention_args, kv_cache_dtype), 64);
    assert_eq!(offset_of!(pkv_paged_attention_args, causal), 68);
    assert_eq!(offset_of!(pkv_paged_attention_args, k_scale), 72);
    assert_eq!(offset_of!(pkv_paged_attention_args, v_scale), 80);
    assert_eq!(offset_of!(pkv_paged_attention_args, alibi_slopes), 88);
    assert_eq!(offset_of!(pkv_paged_attention_args, sinks), 96);
    assert_eq!(offset_of!(pkv_paged_attention_args, output_scale), 104);
    assert_eq!(offset_of!(pkv_paged_attention_args, sm_scale), 112);
    assert_eq!(offset_of!(pkv_paged_attention_args, sliding_window), 116);
    assert_eq!(offset_of!(pkv_paged_attention_args, logits_soft_cap), 120);
    assert_eq!(offset_of!(pkv_paged_attention_args, max_query_len), 124);

    assert_eq!((size_of::<pkv_attention_plan>(), align_of::<pkv_attention_plan>()), (296, 8));
    assert_eq!(offset_of!(pkv_attention_plan, struct_size), 0);
    assert_eq!(offset_of!(pkv_attention_plan, path), 4);
    assert_eq!(offset_of!(pkv_attention_plan, tile_size), 8);
    assert_eq!(offset_of!(pkv_attention_plan, block_q), 12);
    assert_eq!(offset_of!(pkv_attention_plan, num_splits), 16);
    assert_eq!(offset_of!(pkv_attention_plan, threads), 20);
    assert_eq!(offset_of!(pkv_attention_plan, shared_mem_bytes), 24);
    assert_eq!(offset_of!(pkv_attention_plan, workspace_bytes), 32);
    assert_eq!(offset_of!(pkv_attention_plan, reason), 40);
    assert_eq!(PKV_PLAN_REASON_LEN, 256);

    assert_eq!((size_of::<pkv_device_limits>(), align_of::<pkv_device_limits>()), (64, 8));
    assert_eq!(offset_of!(pkv_device_limits, struct_size), 0);
    assert_eq!(offset_of!(pkv_device_limits, wave_size), 4);
    assert_eq!(offset_of!(pkv_device_limits, shared_mem_per_block), 8);
    assert_eq!(offset_of!(pkv_device_limits, shared_mem_per_block_optin), 16);
    assert_eq!(offset_of!(pkv_device_limits, multiprocessor_count), 24);
    assert_eq!(offset_of!(pkv_device_limits, reserved), 28);
    assert_eq!(offset_of!(pkv_device_limits, arch), 32);
    assert_eq!(PKV_ARCH_NAME_LEN, 32);
    assert_eq!(PKV_MAX_DIMS, 6);

    // Enum values are ABI too.
    assert_eq!(
        [PKV_DTYPE_FLOAT32, PKV_DTYPE_FLOAT16, PKV_DTYPE_BFLOAT16, PKV_DTYPE_UINT8, PKV_DTYPE_INT32, PKV_DTYPE_INT64],
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!([PKV_DTYPE_FLOAT8_E4M3FN, PKV_DTYPE_FLOAT8_E4M3FNUZ, PKV_DTYPE_FLOAT8_E5M2], [7, 8, 9]);
    assert_eq!([PKV_DEVICE_CPU, PKV_DEVICE_CUDA, PKV_DEVICE_ROCM], [1, 2, 10]);
    assert_eq!([PKV_KV_LAYOUT_SPLIT, PKV_KV_LAYOUT_NHD], [0, 1]);
    assert_eq!([PKV_WRITE_PATH_NATIVE, PKV_WRITE_PATH_STRIDED], [1, 2]);
    assert_eq!(
        [PKV_ATTENTION_PATH_CPU_REFERENCE, PKV_ATTENTION_PATH_GPU_SINGLE_PASS, PKV_ATTENTION_PATH_GPU_SPLIT_KV],
        [1, 2, 3]
    );
    assert_eq!([PKV_FEATURE_CPU, PKV_FEATURE_CUDA, PKV_FEATURE_ROCM], [1, 2, 4]);
    assert_eq!(
        [
            PKV_KV_CACHE_DTYPE_AUTO,
            PKV_KV_CACHE_DTYPE_FP8,
            PKV_KV_CACHE_DTYPE_FP8_E4M3,
            PKV_KV_CACHE_DTYPE_FP8_E4M3FN,
            PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ,
            PKV_KV_CACHE_DTYPE_FP8_E5M2
        ],
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(size_of::<Status>(), 4);
}

/// Host scales must be finite and > 0 (a zero scale would saturate every value); checked
/// before anything is written, for the writer and for attention.
#[test]
fn scale_values_are_checked_before_writing() {
    for bad in [0.0f32, -0.5, f32::NAN, f32::INFINITY] {
        Wr::with(|w| {
            w.scale.buf.set_f32(0, bad);
            w.tks = Some(w.scale.t());
            w.kv_cache_dtype = PKV_KV_CACHE_DTYPE_AUTO;
        })
        .fails(Status::InvalidValue, &[&format!("k_scale[0] = {bad}")]);

        Attn::with(|a| {
            a.scale.buf.set_f32(0, bad);
            a.tvs = Some(a.scale.t());
        })
        .fails(Status::InvalidValue, &[&format!("v_scale[0] = {bad}")]);
    }
}

/// Sizes whose products overflow int64 are argument errors, never a panic at the boundary.
#[test]
fn overflowing_sizes_are_errors_not_panics() {
    let buf = Buf::zeroed(4096);
    let mut kv = combined_desc(&buf, Dt::F16, &[2, 1, 64], &[64, 64, 1], 0);
    let (st, _, _) = split(&kv, 1 << 40, 1 << 40);
    expect(st, Status::ShapeMismatch, &["num_kv_heads * head_size = 1099511627776 * 1099511627776", "overflows"]);
    // An empty combined cache (a zero dim) whose other block dims multiply past int64.
    kv.ndim = 5;
    kv.shape = [2, 1, 0, 1 << 40, 1 << 40, 0];
    kv.strides = [1, 1, 1, 1 << 40, 1, 0];
    let (st, _, _) = split(&kv, 2, 64);
    expect(st, Status::ShapeMismatch, &["overflows"]);
}

/// A DLPack shape whose element count
/// overflows int64 is an error, never a panic or a wrapped size.
#[test]
fn dlpack_shape_overflow_is_an_error() {
    let buf = Buf::zeroed(64);
    let shape = [1i64 << 40, 1 << 40];
    let t = DlTensor {
        data: buf.ptr(),
        device_type: 1,
        device_id: 0,
        ndim: 2,
        code: 2,
        bits: 16,
        lanes: 1,
        shape: shape.as_ptr(),
        strides: ptr::null(),
        byte_offset: 0,
    };
    let mut out = poisoned_tensor();
    // SAFETY: a valid DLTensor and a writable out.
    let st = unsafe { pkv_tensor_from_dlpack(&t as *const DlTensor as *const c_void, &mut out) };
    expect(st, Status::ShapeMismatch, &["overflows"]);
}

/// Empty calls (no tokens, no sequences, NULL data on empty tensors) succeed and touch nothing.
#[test]
fn empty_calls_succeed() {
    let empty = |dt: Dt, shape: &[i64]| {
        let b = Buf::zeroed(8);
        let mut t = tensor(&b, dt, shape, &contiguous_strides(shape), 0);
        t.data = ptr::null_mut();
        t
    };
    let cache = Cache::new(Layout::SplitSeparate, Dt::F16, 2, 16, 1, 16, &Dt::F16.poison_bytes());
    let before = cache.snapshot();
    let (kc, vc) = (cache.key_t(), cache.value_t());
    let (q, out) = (empty(Dt::F16, &[0, 2, 16]), empty(Dt::F16, &[0, 2, 16]));
    let (bt, sl) = (empty(Dt::I32, &[0, 4]), empty(Dt::I32, &[0]));
    let qsl_o = Owned::i32s(&[0]);
    let qsl = qsl_o.t();
    let args = pkv_paged_attention_args {
        struct_size: size_of::<pkv_paged_attention_args>() as u32,
        kv_layout: PKV_KV_LAYOUT_SPLIT,
        query: &q,
        key_cache: &kc,
        value_cache: &vc,
        block_table: &bt,
        seq_lens: &sl,
        query_start_loc: &qsl,
        output: &out,
        kv_cache_dtype: PKV_KV_CACHE_DTYPE_AUTO,
        causal: 1,
        k_scale: ptr::null(),
        v_scale: ptr::null(),
        alibi_slopes: ptr::null(),
        sinks: ptr::null(),
        output_scale: ptr::null(),
        sm_scale: 0.0,
        sliding_window: 0,
        logits_soft_cap: 0.0,
        max_query_len: 0,
    };
    // SAFETY: valid (empty) host tensors.
    assert_eq!(
        unsafe { pkv_paged_attention(&args, ptr::null_mut(), 0, ptr::null_mut()) },
        Status::Ok,
        "{}",
        last_error()
    );
    // One graph-padding sequence and no tokens: its garbage row and length are never read.
    let (bt_o, sl_o, qsl2_o) = (Owned::i32_table(&[vec![-1]]), Owned::i32s(&[7]), Owned::i32s(&[0, 0]));
    let (bt2, sl2, qsl2) = (bt_o.t(), sl_o.t(), qsl2_o.t());
    let args2 = pkv_paged_attention_args { block_table: &bt2, seq_lens: &sl2, query_start_loc: &qsl2, ..args };
    // SAFETY: as above.
    assert_eq!(
        unsafe { pkv_paged_attention(&args2, ptr::null_mut(), 0, ptr::null_mut()) },
        Status::Ok,
        "{}",
        last_error()
    );
    let (key, slots) = (empty(Dt::F16, &[0, 1, 16]), empty(Dt::I64, &[0]));
    let w = pkv_write_kv_cache_args {
        struct_size: size_of::<pkv_write_kv_cache_args>() as u32,
        kv_layout: PKV_KV_LAYOUT_SPLIT,
        key: &key,
        value: &key,
        key_cache: &kc,
        value_cache: &vc,
        slot_mapping: &slots,
        kv_cache_dtype: PKV_KV_CACHE_DTYPE_AUTO,
        reserved: 0,
        k_scale: ptr::null(),
        v_scale: ptr::null(),
    };
    let mut path = 0;
    // SAFETY: as above.
    assert_eq!(unsafe { pkv_write_kv_cache(&w, ptr::null_mut(), &mut path) }, Status::Ok, "{}", last_error());
    assert_eq!(path, PKV_WRITE_PATH_NATIVE);
    assert!(cache.snapshot() == before);
}

/// A written tensor whose elements overlap (here every stride 1) would have two writers for
/// one address; it is refused before anything runs.
#[test]
fn overlapping_output_strides_are_rejected() {
    Attn::with(|a| a.tout.strides[..3].copy_from_slice(&[1, 1, 1]))
        .fails(Status::InvalidStride, &["output.strides", "overlap"]);
}
