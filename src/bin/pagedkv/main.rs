//! `pagedkv`: the command-line face of the library.
//!
//! - `pagedkv demo`  the main job end to end through the C API (GPU if built and present, else CPU)
//! - `pagedkv info`  version, backend, build targets and device limits
//! - `pagedkv plan`  what paged attention would run for a configuration, and why

mod api;
mod demo;
mod memory;
mod presets;
mod rng;

use std::collections::HashMap;
use std::ffi::CStr;

use pagedkv::capi::info::{pkv_features, pkv_gpu_targets, pkv_version_string};
use pagedkv::capi::*;

const USAGE: &str = "usage: pagedkv <command> [options]

commands:
  demo                 split a cache, write tokens, run paged attention for a mixed batch with
                       block sizes 2048 and 544 (and an fp8 cache), check against float64
  info                 version, backend, GPU build targets and device limits
  plan [options]       explain what paged attention would run
      --batch N            sequences (default 64)
      --seq-len N          tokens per sequence incl. new ones (default 4096)
      --query-len N        new tokens per sequence: 1 = decode (default 1)
      --block-size N       tokens per physical block (default 16)
      --num-q-heads N      (default 32)    --num-kv-heads N (default 8)
      --head-size N        (default 128)   --dtype f32|f16|bf16 (default bf16)
      --kv-cache-dtype S   auto|fp8|fp8_e4m3|fp8_e4m3fn|fp8_e4m3fnuz|fp8_e5m2 (default auto)
      --layout split|nhd   (default split)
      --arch NAME|all      plan for a described GPU instead of this machine
                           (gfx90a, gfx942, gfx1100, sm_90, sm_80, all)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(pick_memory().as_ref()),
        Some("info") => info(),
        Some("plan") => parse_options(&args[1..]).and_then(|o| plan(&o)),
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown or missing command\n\n{USAGE}")),
    };
    if let Err(e) = result {
        eprintln!("pagedkv: {e}");
        std::process::exit(1);
    }
}

/// The GPU when the library has a GPU backend and a device answers, else host memory.
fn pick_memory() -> Box<dyn memory::Memory> {
    #[cfg(any(feature = "cuda", feature = "rocm"))]
    {
        let device_type = if cfg!(feature = "cuda") { PKV_DEVICE_CUDA } else { PKV_DEVICE_ROCM };
        let mut l = presets::limits("sm_90").expect("preset");
        // SAFETY: `l` is a valid, writable struct with struct_size set.
        let status = unsafe { pagedkv::capi::attention::pkv_device_limits_query(device_type, 0, &mut l) };
        match api::check(status, "pkv_device_limits_query") {
            Ok(()) => {
                let arch: Vec<u8> = l.arch.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
                let arch = String::from_utf8_lossy(&arch).into_owned();
                let fp8 = pagedkv::core::plan::fp8_e4m3_for_arch(&arch);
                return Box::new(memory::device::DeviceMemory { arch, fp8 });
            }
            Err(e) => println!("no usable GPU ({e}); running on the CPU backend"),
        }
    }
    Box::new(memory::HostMemory)
}

fn parse_options(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(key) = it.next() {
        let name = key.strip_prefix("--").ok_or_else(|| format!("expected an option, got `{key}`"))?;
        let value = it.next().ok_or_else(|| format!("option --{name} needs a value"))?;
        out.insert(name.to_string(), value.clone());
    }
    Ok(out)
}

fn c_text(p: *const std::ffi::c_char) -> String {
    // SAFETY: the library returns static NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn info() -> Result<(), String> {
    let features = pkv_features();
    let backend = if features & PKV_FEATURE_CUDA != 0 {
        "cpu + cuda"
    } else if features & PKV_FEATURE_ROCM != 0 {
        "cpu + rocm"
    } else {
        "cpu only (build with --features rocm or --features cuda for GPU tensors)"
    };
    println!("pagedkv {} (ABI {})", c_text(pkv_version_string()), PKV_VERSION_NUMBER);
    println!("backend: {backend}");
    let targets = c_text(pkv_gpu_targets());
    println!("gpu build targets: {}", if targets.is_empty() { "none" } else { &targets });
    for device_type in [PKV_DEVICE_CUDA, PKV_DEVICE_ROCM] {
        let mut l = presets::limits("sm_90").expect("preset");
        // SAFETY: `l` is a valid, writable struct with struct_size set.
        let status = unsafe { pagedkv::capi::attention::pkv_device_limits_query(device_type, 0, &mut l) };
        match api::check(status, "pkv_device_limits_query") {
            Ok(()) => {
                let arch: Vec<u8> = l.arch.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
                println!(
                    "device {} 0: {} | wave {} | shared memory {} B (opt-in {} B) | {} compute units",
                    if device_type == PKV_DEVICE_CUDA { "cuda" } else { "rocm" },
                    String::from_utf8_lossy(&arch),
                    l.wave_size,
                    l.shared_mem_per_block,
                    l.shared_mem_per_block_optin,
                    l.multiprocessor_count
                );
            }
            Err(e) => println!("device {}: {e}", if device_type == PKV_DEVICE_CUDA { "cuda" } else { "rocm" }),
        }
    }
    Ok(())
}

fn number(o: &HashMap<String, String>, key: &str, default: i64) -> Result<i64, String> {
    match o.get(key) {
        None => Ok(default),
        Some(v) => v.parse::<i64>().map_err(|_| format!("--{key} {v}: expected an integer")),
    }
}

/// Plans one configuration. Tensors are described but never touched: planning reads shapes
/// only, so the data pointers are placeholders.
fn plan(o: &HashMap<String, String>) -> Result<(), String> {
    let batch = number(o, "batch", 64)?;
    let seq_len = number(o, "seq-len", 4096)?;
    let q_len = number(o, "query-len", 1)?;
    let bs = number(o, "block-size", 16)?;
    let (hq, h, d) = (number(o, "num-q-heads", 32)?, number(o, "num-kv-heads", 8)?, number(o, "head-size", 128)?);
    let (dtype, elem) = match o.get("dtype").map(String::as_str).unwrap_or("bf16") {
        "f32" => (PKV_DTYPE_FLOAT32, 4),
        "f16" => (PKV_DTYPE_FLOAT16, 2),
        "bf16" => (PKV_DTYPE_BFLOAT16, 2),
        other => return Err(format!("--dtype {other}: expected f32, f16 or bf16")),
    };
    let kv_name = o.get("kv-cache-dtype").cloned().unwrap_or_else(|| "auto".into());
    let kv_c = std::ffi::CString::new(kv_name.clone()).map_err(|e| e.to_string())?;
    let mut kv_cache_dtype = 0u32;
    // SAFETY: valid C string and out-pointer.
    api::check(
        unsafe { pagedkv::capi::info::pkv_kv_cache_dtype_from_string(kv_c.as_ptr(), &mut kv_cache_dtype) },
        "kv-cache-dtype",
    )?;
    let (cache_dtype, cache_elem) = if kv_name == "auto" { (dtype, elem) } else { (PKV_DTYPE_UINT8, 1) };
    let layout = o.get("layout").map(String::as_str).unwrap_or("split");
    let blocks_per_seq = (seq_len + bs - 1) / bs;
    let nb = batch * blocks_per_seq;
    let x = 16 / cache_elem;
    let placeholder = 0x1000_0000usize as *mut std::ffi::c_void;
    let dt = PKV_DEVICE_CPU;
    let (kc, vc, kv_layout) = match layout {
        "split" => (
            api::tensor(
                placeholder,
                dt,
                cache_dtype,
                &[nb, h, d / x, bs, x],
                &api::contiguous_strides(&[nb, h, d / x, bs, x]),
            ),
            api::tensor(placeholder, dt, cache_dtype, &[nb, h, d, bs], &api::contiguous_strides(&[nb, h, d, bs])),
            PKV_KV_LAYOUT_SPLIT,
        ),
        "nhd" => {
            let t =
                api::tensor(placeholder, dt, cache_dtype, &[nb, bs, h, d], &api::contiguous_strides(&[nb, bs, h, d]));
            (t, t, PKV_KV_LAYOUT_NHD)
        }
        other => return Err(format!("--layout {other}: expected split or nhd")),
    };
    let tokens = batch * q_len;
    let q = api::tensor(placeholder, dt, dtype, &[tokens, hq, d], &api::contiguous_strides(&[tokens, hq, d]));
    let table = api::tensor(placeholder, dt, PKV_DTYPE_INT32, &[batch, blocks_per_seq], &[blocks_per_seq, 1]);
    let lens = api::tensor(placeholder, dt, PKV_DTYPE_INT32, &[batch], &[1]);
    let qsl = api::tensor(placeholder, dt, PKV_DTYPE_INT32, &[batch + 1], &[1]);
    let mut args = pkv_paged_attention_args::new(kv_layout, &q, &kc, &vc, &table, &lens, &qsl, &q);
    args.kv_cache_dtype = kv_cache_dtype;
    println!(
        "batch {batch} x seq_len {seq_len} (query {q_len}), block {bs}, heads {hq}/{h}, head {d}, kv {kv_name}, layout {layout}"
    );
    let arch = o.get("arch").map(String::as_str);
    let archs: Vec<&str> = match arch {
        Some("all") => presets::names(),
        Some(a) => vec![a],
        None => vec![],
    };
    if archs.is_empty() {
        println!("  this machine: {}", api::describe_plan(&api::plan(&args)?));
    }
    for a in archs {
        let limits =
            presets::limits(a).ok_or_else(|| format!("--arch {a}: expected one of {:?} or all", presets::names()))?;
        println!("  {a}: {}", api::describe_plan(&api::plan_for_device(&args, &limits)?));
    }
    Ok(())
}
