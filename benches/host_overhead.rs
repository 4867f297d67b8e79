//! Host overhead of one attention call: reading the C argument struct, validating every
//! argument and planning for a GPU (everything `pkv_paged_attention` does before the launch).
//! Target: <= 2 us. Run: `cargo bench --bench host_overhead`.

use std::hint::black_box;
use std::time::Instant;

use pagedkv::capi::attention::validate_and_plan;
use pagedkv::capi::*;
use pagedkv::core::plan::{DeviceLimits, Target};

fn tensor(dtype: u32, shape: &[i64]) -> pkv_tensor {
    let mut t = pkv_tensor {
        data: 0x1000_0000usize as *mut std::ffi::c_void,
        byte_offset: 0,
        device_type: PKV_DEVICE_CUDA,
        device_id: 0,
        dtype,
        ndim: shape.len() as u32,
        shape: [0; PKV_MAX_DIMS],
        strides: [0; PKV_MAX_DIMS],
    };
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        t.shape[i] = shape[i];
        t.strides[i] = acc;
        acc *= shape[i];
    }
    t
}

fn main() {
    // B64 L4k bs16, 32 q / 8 kv heads, head 128, bf16: the benchmark's first decode case.
    let (b, blocks, bs, h, hq, d) = (64i64, 256i64, 16i64, 8i64, 32i64, 128i64);
    let q = tensor(PKV_DTYPE_BFLOAT16, &[b, hq, d]);
    let kc = tensor(PKV_DTYPE_BFLOAT16, &[b * blocks, h, d / 8, bs, 8]);
    let vc = tensor(PKV_DTYPE_BFLOAT16, &[b * blocks, h, d, bs]);
    let table = tensor(PKV_DTYPE_INT32, &[b, blocks]);
    let lens = tensor(PKV_DTYPE_INT32, &[b]);
    let qsl = tensor(PKV_DTYPE_INT32, &[b + 1]);
    let args = pkv_paged_attention_args::new(PKV_KV_LAYOUT_SPLIT, &q, &kc, &vc, &table, &lens, &qsl, &q);
    let target = Target::Gpu(DeviceLimits {
        arch: "sm_90".into(),
        wave_size: 32,
        shared_mem_per_block: 49152,
        shared_mem_per_block_optin: 232448,
        multiprocessor_count: 132,
    });
    let run = |n: u32| {
        let t0 = Instant::now();
        for _ in 0..n {
            // SAFETY: `args` and its tensors are valid; nothing is dereferenced on the device.
            let plan = unsafe { validate_and_plan(black_box(&args), &target) }.expect("valid arguments");
            black_box(plan);
        }
        t0.elapsed().as_secs_f64() * 1e9 / n as f64
    };
    run(20_000); // warm-up
    let mut samples: Vec<f64> = (0..15).map(|_| run(20_000)).collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = samples[samples.len() / 2];
    println!(
        "host overhead (read args + validate + plan, B64 L4k bs16 bf16, sm_90 limits): median {:.0} ns, min {:.0} ns, max {:.0} ns per call (target <= 2000 ns)",
        median,
        samples[0],
        samples[samples.len() - 1]
    );
}
