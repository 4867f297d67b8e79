//! Device descriptions for `plan --arch`: what the planner would do on GPUs that are not
//! here. Numbers are the vendors' published per-work-group limits.

use pagedkv::capi::{PKV_ARCH_NAME_LEN, pkv_device_limits};

/// (arch, wave size, shared memory per work-group, opt-in limit, compute units)
const PRESETS: [(&str, u32, u64, u64, u32); 5] = [
    ("gfx90a", 64, 65536, 65536, 110),
    ("gfx942", 64, 65536, 65536, 304),
    ("gfx1100", 32, 65536, 65536, 48),
    ("sm_90", 32, 49152, 232448, 132),
    ("sm_80", 32, 49152, 166912, 108),
];

pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.0).collect()
}

pub fn limits(arch: &str) -> Option<pkv_device_limits> {
    let &(name, wave, smem, optin, cus) = PRESETS.iter().find(|p| p.0 == arch)?;
    let mut l = pkv_device_limits {
        struct_size: std::mem::size_of::<pkv_device_limits>() as u32,
        wave_size: wave,
        shared_mem_per_block: smem,
        shared_mem_per_block_optin: optin,
        multiprocessor_count: cus,
        reserved: 0,
        arch: [0; PKV_ARCH_NAME_LEN],
    };
    for (d, s) in l.arch.iter_mut().zip(name.bytes()) {
        *d = s as std::ffi::c_char;
    }
    Some(l)
}
