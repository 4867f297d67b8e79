//! `pagedkv demo`: the main job end to end through the C API. For a hybrid-interleaved cache
//! with 2048-token blocks and a K/V-first cache with 544-token blocks it splits the combined
//! cache, writes a mixed batch's tokens (prefix, then this step's), runs paged attention for
//! decode and prefill-chunk sequences in one call, prints every plan, and checks the output
//! against an independent float64 computation from the original keys and values.

use half::bf16;
use pagedkv::capi::*;
use pagedkv::core::fp8;

use crate::api;
use crate::memory::Memory;
use crate::rng::SplitMix;

const NUM_KV_HEADS: i64 = 2;
const NUM_Q_HEADS: i64 = 8;
const HEAD_SIZE: i64 = 128;
/// (cached context, new query tokens) per sequence; the last one is graph padding.
const SEQUENCES: [(i64, i64); 5] = [(2900, 1), (1100, 37), (0, 1), (4500, 1), (0, 0)];
const TOLERANCE: f64 = 1e-2;

struct Case {
    name: &'static str,
    block_size: i64,
    /// Blocks-first K/V interleave (vLLM's hybrid attention+Mamba layout) vs K/V-first.
    hybrid: bool,
    kv_cache_dtype: &'static str,
}

const CASES: [Case; 3] = [
    Case {
        name: "hybrid-interleaved, block 2048 (Jamba-like)",
        block_size: 2048,
        hybrid: true,
        kv_cache_dtype: "auto",
    },
    Case { name: "K/V-first, block 544 (Qwen3-Next)", block_size: 544, hybrid: false, kv_cache_dtype: "auto" },
    Case {
        name: "hybrid-interleaved, block 544, fp8 e4m3 cache",
        block_size: 544,
        hybrid: true,
        kv_cache_dtype: "fp8",
    },
];

pub fn run(mem: &dyn Memory) -> Result<(), String> {
    println!("pagedkv {} demo on {}", env!("CARGO_PKG_VERSION"), mem.describe());
    let mut failures = 0;
    for case in &CASES {
        println!("\n== {} ==", case.name);
        match run_case(mem, case) {
            Ok(err) => println!("   result: max |out - reference| = {err:.2e} (tolerance {TOLERANCE:.0e}): PASS"),
            Err(e) => {
                failures += 1;
                println!("   result: FAIL: {e}");
            }
        }
    }
    if failures > 0 { Err(format!("{failures} demo case(s) failed")) } else { Ok(()) }
}

fn run_case(mem: &dyn Memory, case: &Case) -> Result<f64, String> {
    let (h, hq, d, bs) = (NUM_KV_HEADS, NUM_Q_HEADS, HEAD_SIZE, case.block_size);
    let fp8 = case.kv_cache_dtype != "auto";
    let mut rng = SplitMix::new(0x5eed ^ bs as u64);
    let seq_lens: Vec<i64> = SEQUENCES.iter().map(|(c, q)| c + q).collect();
    let blocks_needed: Vec<i64> = seq_lens.iter().map(|l| (l + bs - 1) / bs).collect();
    let max_blocks = *blocks_needed.iter().max().unwrap() + 1;
    let num_blocks = blocks_needed.iter().sum::<i64>() + 3;
    // Physical blocks handed out in a random order, as an allocator would.
    let mut free: Vec<i64> = (0..num_blocks).collect();
    rng.shuffle(&mut free);
    let mut table = vec![i32::MAX; (SEQUENCES.len() as i64 * max_blocks) as usize]; // never-read columns
    for (s, &n) in blocks_needed.iter().enumerate() {
        for j in 0..n {
            table[s * max_blocks as usize + j as usize] = free.pop().unwrap() as i32;
        }
    }

    // Combined cache [2, num_blocks, block_size, H, D], every byte poisoned (NaN) so that any
    // read of an unwritten slot would show in the result.
    let hidden = bs * h * d;
    let dtype = if fp8 { PKV_DTYPE_UINT8 } else { PKV_DTYPE_BFLOAT16 };
    let cache_elems = 2 * num_blocks * hidden;
    let poison: Vec<u8> = if fp8 {
        vec![0x7F; cache_elems as usize]
    } else {
        bf16::NAN.to_bits().to_le_bytes().repeat(cache_elems as usize)
    };
    let cache = mem.upload(&poison);
    let (s0, s1) = if case.hybrid { (hidden, 2 * hidden) } else { (num_blocks * hidden, hidden) };
    let kv = api::tensor(cache, mem.device_type(), dtype, &[2, num_blocks, bs, h, d], &[s0, s1, h * d, d, 1]);
    let (key_cache, value_cache) = api::split_kv_cache(&kv, h, d)?;
    let native = api::has_native_layout(&key_cache, &value_cache)?;
    println!(
        "   split: key {:?} strides {:?}, value {:?}; native layout: {native}",
        &key_cache.shape[..5],
        &key_cache.strides[..5],
        &value_cache.shape[..4]
    );

    // Keys and values of every token of every sequence, in bf16.
    let total: i64 = seq_lens.iter().sum();
    let keys: Vec<bf16> = (0..total * h * d).map(|_| bf16::from_f32(rng.normal())).collect();
    let values: Vec<bf16> = (0..total * h * d).map(|_| bf16::from_f32(rng.normal())).collect();
    let starts: Vec<i64> = seq_lens
        .iter()
        .scan(0, |acc, l| {
            let s = *acc;
            *acc += l;
            Some(s)
        })
        .collect();
    let slot = |s: usize, p: i64| table[s * max_blocks as usize + (p / bs) as usize] as i64 * bs + p % bs;

    // Step 1 writes every sequence's cached prefix; step 2 this step's tokens (plus one padding
    // row with slot -1, which must be skipped).
    let (k_scale, v_scale) = (mem.upload(&0.05f32.to_le_bytes()), mem.upload(&0.04f32.to_le_bytes()));
    let k_scale_t = api::tensor(k_scale, mem.device_type(), PKV_DTYPE_FLOAT32, &[1], &[1]);
    let v_scale_t = api::tensor(v_scale, mem.device_type(), PKV_DTYPE_FLOAT32, &[1], &[1]);
    for (step, range_of) in [("prefix", 0usize), ("this step", 1)] {
        let mut rows: Vec<(usize, i64)> = Vec::new();
        for (s, &(ctx, q)) in SEQUENCES.iter().enumerate() {
            let r = if range_of == 0 { 0..ctx } else { ctx..ctx + q };
            rows.extend(r.map(|p| (s, p)));
        }
        let mut slots: Vec<i64> = rows.iter().map(|&(s, p)| slot(s, p)).collect();
        let mut kbuf: Vec<bf16> = Vec::with_capacity(rows.len() * (h * d) as usize);
        let mut vbuf = kbuf.clone();
        for &(s, p) in &rows {
            let base = ((starts[s] + p) * h * d) as usize;
            kbuf.extend_from_slice(&keys[base..base + (h * d) as usize]);
            vbuf.extend_from_slice(&values[base..base + (h * d) as usize]);
        }
        if range_of == 1 {
            slots.push(-1);
            kbuf.extend(std::iter::repeat_n(bf16::from_f32(1e4), (h * d) as usize));
            vbuf.extend(std::iter::repeat_n(bf16::from_f32(1e4), (h * d) as usize));
        }
        let n = slots.len() as i64;
        let (kd, vd, sd) = (mem.upload(as_bytes(&kbuf)), mem.upload(as_bytes(&vbuf)), mem.upload(as_bytes(&slots)));
        let key_t = api::tensor(kd, mem.device_type(), PKV_DTYPE_BFLOAT16, &[n, h, d], &[h * d, d, 1]);
        let value_t = api::tensor(vd, mem.device_type(), PKV_DTYPE_BFLOAT16, &[n, h, d], &[h * d, d, 1]);
        let slot_t = api::tensor(sd, mem.device_type(), PKV_DTYPE_INT64, &[n], &[1]);
        let args = pkv_write_kv_cache_args {
            struct_size: std::mem::size_of::<pkv_write_kv_cache_args>() as u32,
            kv_layout: PKV_KV_LAYOUT_SPLIT,
            key: &key_t,
            value: &value_t,
            key_cache: &key_cache,
            value_cache: &value_cache,
            slot_mapping: &slot_t,
            kv_cache_dtype: if fp8 { PKV_KV_CACHE_DTYPE_FP8 } else { PKV_KV_CACHE_DTYPE_AUTO },
            reserved: 0,
            k_scale: if fp8 { &k_scale_t } else { std::ptr::null() },
            v_scale: if fp8 { &v_scale_t } else { std::ptr::null() },
        };
        let path = api::write_kv_cache(&args, mem.stream())?;
        println!("   write {step}: {n} tokens, path {}", api::write_path_name(path));
        mem.free(kd);
        mem.free(vd);
        mem.free(sd);
    }

    // One attention call for the whole batch.
    let q_lens: Vec<i64> = SEQUENCES.iter().map(|s| s.1).collect();
    let num_tokens: i64 = q_lens.iter().sum();
    let qsl: Vec<i32> = std::iter::once(0)
        .chain(q_lens.iter().scan(0i32, |a, q| {
            *a += *q as i32;
            Some(*a)
        }))
        .collect();
    let query: Vec<bf16> = (0..num_tokens * hq * d).map(|_| bf16::from_f32(rng.normal())).collect();
    let seq_lens32: Vec<i32> = seq_lens.iter().map(|l| *l as i32).collect();
    let out_bytes = (num_tokens * hq * d) as usize * 2;
    let (qd, od) = (mem.upload(as_bytes(&query)), mem.upload(&vec![0xFF; out_bytes]));
    let (td, sld, qsld) = (mem.upload(as_bytes(&table)), mem.upload(as_bytes(&seq_lens32)), mem.upload(as_bytes(&qsl)));
    let dt = mem.device_type();
    let nseq = SEQUENCES.len() as i64;
    let query_t = api::tensor(qd, dt, PKV_DTYPE_BFLOAT16, &[num_tokens, hq, d], &[hq * d, d, 1]);
    let out_t = api::tensor(od, dt, PKV_DTYPE_BFLOAT16, &[num_tokens, hq, d], &[hq * d, d, 1]);
    let table_t = api::tensor(td, dt, PKV_DTYPE_INT32, &[nseq, max_blocks], &[max_blocks, 1]);
    let seq_t = api::tensor(sld, dt, PKV_DTYPE_INT32, &[nseq], &[1]);
    let qsl_t = api::tensor(qsld, dt, PKV_DTYPE_INT32, &[nseq + 1], &[1]);
    let mut args = pkv_paged_attention_args::new(
        PKV_KV_LAYOUT_SPLIT,
        &query_t,
        &key_cache,
        &value_cache,
        &table_t,
        &seq_t,
        &qsl_t,
        &out_t,
    );
    args.kv_cache_dtype = if fp8 { PKV_KV_CACHE_DTYPE_FP8 } else { PKV_KV_CACHE_DTYPE_AUTO };
    args.k_scale = if fp8 { &k_scale_t } else { std::ptr::null() };
    args.v_scale = if fp8 { &v_scale_t } else { std::ptr::null() };
    let plan = api::plan(&args)?;
    println!("   attention plan: {}", api::describe_plan(&plan));
    let gfx942 = crate::presets::limits("gfx942").expect("preset");
    println!("   on a gfx942 it would be: {}", api::describe_plan(&api::plan_for_device(&args, &gfx942)?));
    let ws_bytes = api::workspace_size(&args)?;
    let ws = if ws_bytes > 0 { mem.alloc(ws_bytes as usize) } else { std::ptr::null_mut() };
    api::paged_attention(&args, ws, ws_bytes, mem.stream())?;
    let mut out = vec![0u8; out_bytes];
    mem.download(od, &mut out);
    for p in [cache, k_scale, v_scale, qd, od, td, sld, qsld, ws] {
        if !p.is_null() {
            mem.free(p);
        }
    }

    // Independent float64 attention from the original (bf16, or fp8-rounded) keys/values.
    // "fp8" is the device's e4m3: fnuz on gfx940/gfx942, OCP e4m3fn elsewhere.
    let format = mem.fp8_e4m3();
    let dequant = |x: bf16, scale: f32| -> f64 {
        if fp8 { fp8::dequantize(format, fp8::quantize(format, x.to_f32(), scale), scale) as f64 } else { x.to_f64() }
    };
    let scale = 1.0 / (d as f64).sqrt();
    let mut worst = 0f64;
    for (s, &(ctx, q)) in SEQUENCES.iter().enumerate() {
        for t in 0..q {
            let row = qsl[s] as i64 + t;
            let pos = ctx + t;
            for qh in 0..hq {
                let kvh = qh / (hq / h);
                let qv: Vec<f64> = (0..d).map(|i| query[((row * hq + qh) * d + i) as usize].to_f64()).collect();
                let tok = |j: i64, i: i64| ((starts[s] + j) * h * d + kvh * d + i) as usize;
                let scores: Vec<f64> = (0..=pos)
                    .map(|j| scale * (0..d).map(|i| qv[i as usize] * dequant(keys[tok(j, i)], 0.05)).sum::<f64>())
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = w.iter().sum();
                for i in 0..d {
                    let r: f64 = (0..=pos).map(|j| w[j as usize] * dequant(values[tok(j, i)], 0.04)).sum::<f64>() / z;
                    let o = ((row * hq + qh) * d + i) as usize;
                    let got = bf16::from_le_bytes([out[2 * o], out[2 * o + 1]]).to_f64();
                    if !got.is_finite() {
                        return Err(format!("output[{row}][{qh}][{i}] = {got} (unwritten or poisoned)"));
                    }
                    worst = worst.max((got - r).abs());
                }
            }
        }
    }
    if worst > TOLERANCE {
        return Err(format!("max |out - reference| = {worst:.3e} > {TOLERANCE:.0e}"));
    }
    Ok(worst)
}

fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain-old-data slices (bf16, i32, i64) viewed as their bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}
