//! Cache write on host memory: the packed ("native") writer and the stride-aware writer.

use crate::core::fp8;
use crate::core::status::Result;
use crate::core::write::{WritePath, WriteProblem, check_slots};
use crate::cpu::host_memory::{HostTensor, read_scale};

pub fn write_kv_cache(p: &WriteProblem) -> Result<()> {
    // SAFETY: the C API's contract: every described tensor is valid host memory for the call.
    let (key, value, slots, kc, vc) = unsafe {
        (
            HostTensor::new(&p.key),
            HostTensor::new(&p.value),
            HostTensor::new(&p.slot_mapping),
            HostTensor::new(&p.geometry.extent_desc(true, p.device)),
            HostTensor::new(&p.geometry.extent_desc(false, p.device)),
        )
    };
    let slot_stride = p.slot_mapping.strides[0];
    let slot_values: Vec<i64> = (0..p.num_tokens).map(|t| slots.read_i64(t * slot_stride)).collect();
    // Check every slot before writing anything.
    check_slots(slot_values.iter().copied(), p.geometry.num_slots(), &p.geometry)?;
    // SAFETY: validated 1-element float32 tensors on the host.
    let (k_scale, v_scale) = unsafe { (read_scale(p.k_scale, "k_scale")?, read_scale(p.v_scale, "v_scale")?) };
    let g = &p.geometry;
    let (h_count, d_count, bs, x) = (g.num_kv_heads, g.head_size, g.block_size, g.key.x);
    for (t, &slot) in slot_values.iter().enumerate() {
        if slot < 0 {
            continue;
        }
        let (b, o) = (slot / bs, slot % bs);
        for h in 0..h_count {
            for d in 0..d_count {
                let (k_off, v_off) = match p.path {
                    // Packed addressing from the shapes, as vLLM's reshape_and_cache computes it.
                    WritePath::Native => {
                        let block = b * h_count * d_count * bs;
                        (
                            block + h * d_count * bs + (d / x) * bs * x + o * x + d % x,
                            block + h * d_count * bs + d * bs + o,
                        )
                    }
                    WritePath::Strided => (g.key.offset(b, h, d, o), g.value.offset(b, h, d, o)),
                };
                let src_k = p.key.offset(&[t as i64, h, d]);
                let src_v = p.value.offset(&[t as i64, h, d]);
                match p.quant {
                    None => {
                        kc.copy_from(k_off, &key, src_k);
                        vc.copy_from(v_off, &value, src_v);
                    }
                    Some(format) => {
                        kc.write_u8(k_off, fp8::quantize(format, key.read_f32(src_k), k_scale));
                        vc.write_u8(v_off, fp8::quantize(format, value.read_f32(src_v), v_scale));
                    }
                }
            }
        }
    }
    Ok(())
}
