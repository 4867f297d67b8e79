//! Paged attention on host memory. Straightforward by design (it is the oracle): for each
//! (sequence, kv head) the visible keys and values are gathered through the block table one
//! token at a time, dequantised, and every query row of that kv head is computed in f64.

use crate::core::attention::{AttentionProblem, BatchValues, check_batch_values};
use crate::core::fp8;
use crate::core::status::Result;
use crate::cpu::host_memory::{HostTensor, read_scale};

/// Scalars resolved once per call.
struct Scalars {
    k_scale: f32,
    v_scale: f32,
    out_inv_scale: f32,
}

pub fn paged_attention(p: &AttentionProblem) -> Result<()> {
    // SAFETY: the C API's contract: every described tensor is valid host memory for the call.
    let (seq_lens_t, qsl_t, table_t) =
        unsafe { (HostTensor::new(&p.seq_lens), HostTensor::new(&p.query_start_loc), HostTensor::new(&p.block_table)) };
    let seq_lens: Vec<i32> = (0..p.num_seqs).map(|i| seq_lens_t.read_i32(i * p.seq_lens.strides[0])).collect();
    let qsl: Vec<i32> = (0..=p.num_seqs).map(|i| qsl_t.read_i32(i * p.query_start_loc.strides[0])).collect();
    let bt = p.block_table;
    let table = |s: i64, j: i64| table_t.read_i32(s * bt.strides[0] + j * bt.strides[1]);
    // Every value is checked before anything is written.
    check_batch_values(p, &BatchValues { seq_lens: &seq_lens, query_start_loc: &qsl, block_table: &table })?;

    // SAFETY: validated 1-element float32 host tensors.
    let scalars = unsafe {
        Scalars {
            k_scale: read_scale(p.k_scale, "k_scale")?,
            v_scale: read_scale(p.v_scale, "v_scale")?,
            out_inv_scale: 1.0f32 / read_scale(p.output_scale, "output_scale")?,
        }
    };
    let work: Vec<(usize, i64)> = (0..p.num_seqs as usize)
        .filter(|&s| qsl[s + 1] > qsl[s])
        .flat_map(|s| (0..p.num_kv_heads).map(move |h| (s, h)))
        .collect();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(work.len()).max(1);
    let chunk = work.len().div_ceil(threads).max(1);
    let ctx = Context { p, seq_lens: &seq_lens, qsl: &qsl, table: &table, scalars: &scalars };
    if threads == 1 {
        work.iter().for_each(|&(s, h)| ctx.run(s, h));
    } else {
        std::thread::scope(|scope| {
            for part in work.chunks(chunk) {
                let ctx = &ctx;
                scope.spawn(move || part.iter().for_each(|&(s, h)| ctx.run(s, h)));
            }
        });
    }
    Ok(())
}

struct Context<'a> {
    p: &'a AttentionProblem,
    seq_lens: &'a [i32],
    qsl: &'a [i32],
    table: &'a (dyn Fn(i64, i64) -> i32 + Sync),
    scalars: &'a Scalars,
}

// SAFETY: the raw pointers inside `HostTensor`s reached through `table` only read host memory
// that outlives the call; workers write disjoint output rows (each (sequence, kv head) pair
// owns the rows of its query tokens and heads, and query_start_loc ranges do not overlap).
unsafe impl Sync for Context<'_> {}
unsafe impl Sync for HostTensor {}
unsafe impl Send for HostTensor {}

impl Context<'_> {
    /// Computes every output row of sequence `s` for the query heads of kv head `kvh`.
    fn run(&self, s: usize, kvh: i64) {
        let p = self.p;
        let g = &p.geometry;
        let d_count = p.head_size as usize;
        let seq_len = self.seq_lens[s] as i64;
        let q_start = self.qsl[s] as i64;
        let q_len = self.qsl[s + 1] as i64 - q_start;
        // SAFETY: the C API's contract (as in `paged_attention`).
        let (query, output) = unsafe { (HostTensor::new(&p.query), HostTensor::new(&p.output)) };
        let (kc, vc) = unsafe {
            (
                HostTensor::new(&p.geometry.extent_desc(true, p.device)),
                HostTensor::new(&p.geometry.extent_desc(false, p.device)),
            )
        };
        let (alibi, sinks) = unsafe {
            (
                p.alibi_slopes.as_ref().map(|t| (HostTensor::new(t), *t)),
                p.sinks.as_ref().map(|t| (HostTensor::new(t), *t)),
            )
        };
        // Gather this sequence's keys and values once: [seq_len, head_size] each.
        let mut keys = vec![0f64; seq_len as usize * d_count];
        let mut values = vec![0f64; seq_len as usize * d_count];
        for j in 0..seq_len {
            let block = (self.table)(s as i64, j / g.block_size) as i64;
            let off = j % g.block_size;
            for d in 0..d_count as i64 {
                let (ko, vo) = (g.key.offset(block, kvh, d, off), g.value.offset(block, kvh, d, off));
                let (kv, vv) = match p.kv_quant {
                    None => (kc.read_f32(ko), vc.read_f32(vo)),
                    Some(f) => (
                        fp8::dequantize(f, kc.read_u8(ko), self.scalars.k_scale),
                        fp8::dequantize(f, vc.read_u8(vo), self.scalars.v_scale),
                    ),
                };
                keys[j as usize * d_count + d as usize] = kv as f64;
                values[j as usize * d_count + d as usize] = vv as f64;
            }
        }
        let group = p.gqa_ratio();
        let mut q = vec![0f64; d_count];
        let mut scores = vec![0f64; seq_len as usize];
        let mut acc = vec![0f64; d_count];
        for t in 0..q_len {
            let row = q_start + t;
            let pos = seq_len - q_len + t;
            let last_key = if p.causal { pos } else { seq_len - 1 };
            let first_key = if p.sliding_window > 0 { (pos - p.sliding_window as i64 + 1).max(0) } else { 0 };
            for qh in kvh * group..(kvh + 1) * group {
                for (d, qd) in q.iter_mut().enumerate() {
                    *qd = query.read_f32(p.query.offset(&[row, qh, d as i64])) as f64;
                }
                let slope = alibi.map(|(t, desc)| t.read_f32(qh * desc.strides[0]) as f64);
                let sink = sinks.map(|(t, desc)| t.read_f32(qh * desc.strides[0]) as f64);
                let mut max = sink.unwrap_or(f64::NEG_INFINITY);
                for j in first_key..=last_key {
                    let k = &keys[j as usize * d_count..(j as usize + 1) * d_count];
                    let mut sc = p.sm_scale as f64 * q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>();
                    if p.logits_soft_cap > 0.0 {
                        let c = p.logits_soft_cap as f64;
                        sc = c * (sc / c).tanh();
                    }
                    if let Some(slope) = slope {
                        sc += slope * (j - pos) as f64;
                    }
                    scores[j as usize] = sc;
                    max = max.max(sc);
                }
                acc.iter_mut().for_each(|a| *a = 0.0);
                let mut denom = match sink {
                    Some(sk) if max > f64::NEG_INFINITY => (sk - max).exp(),
                    _ => 0.0,
                };
                if max > f64::NEG_INFINITY {
                    for j in first_key..=last_key {
                        let w = (scores[j as usize] - max).exp();
                        denom += w;
                        let v = &values[j as usize * d_count..(j as usize + 1) * d_count];
                        acc.iter_mut().zip(v).for_each(|(a, vv)| *a += w * vv);
                    }
                }
                for (d, a) in acc.iter().enumerate() {
                    let out = if denom > 0.0 { a / denom } else { 0.0 };
                    let off = p.output.offset(&[row, qh, d as i64]);
                    match p.out_quant {
                        None => output.write_f32(off, out as f32),
                        Some(f) => output.write_u8(off, fp8::encode(f, out as f32 * self.scalars.out_inv_scale)),
                    }
                }
            }
        }
    }
}
