//! Per-architecture tuning numbers, kept apart from the planning algorithm so that a new GPU
//! is one row here, not an edit of the planner.

/// Tuning for one architecture family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Architecture name prefix this row matches ("gfx94", "sm_90", ...); "" matches anything.
    pub arch_prefix: &'static str,
    /// Largest compute tile (keys per inner iteration) worth trying.
    pub max_tile: u32,
    /// Smallest tile the planner may fall back to when shared memory is short.
    pub min_tile: u32,
    /// Query rows (query tokens x query heads of one kv head) one work-group serves.
    pub rows_per_cta: u32,
    /// Threads per work-group for the attention kernel (a multiple of every wave size). The
    /// kernel is compiled for `plan::KERNEL_THREADS`; every row must say that number.
    pub attention_threads: u32,
    /// Work-groups per compute unit the split-KV heuristic aims for.
    pub target_ctas_per_cu: u32,
    /// Upper bound on KV splits (also bounds the workspace).
    pub max_splits: u32,
    /// Work-groups per compute unit the decode kernel's split heuristic aims for (its
    /// work-groups are 128 threads; on Hopper four are resident per SM under its register cap).
    pub decode_ctas_per_cu: u32,
    /// Keep dynamic shared memory at or under this many bytes when possible (occupancy);
    /// the device's own limit is always the hard ceiling.
    pub preferred_shared_mem: u32,
}

/// Rows are matched in order; the last row is the fallback.
pub const TUNING_TABLE: &[Tuning] = &[
    // MI300X/MI325X: 64 KiB LDS per work-group, 304 CUs, 64-wide waves.
    Tuning {
        arch_prefix: "gfx94",
        max_tile: 64,
        min_tile: 16,
        rows_per_cta: 16,
        attention_threads: 256,
        target_ctas_per_cu: 2,
        max_splits: 64,
        decode_ctas_per_cu: 4,
        preferred_shared_mem: 64 * 1024,
    },
    // MI200: 64 KiB LDS, 64-wide waves.
    Tuning {
        arch_prefix: "gfx90a",
        max_tile: 64,
        min_tile: 16,
        rows_per_cta: 16,
        attention_threads: 256,
        target_ctas_per_cu: 2,
        max_splits: 64,
        decode_ctas_per_cu: 4,
        preferred_shared_mem: 64 * 1024,
    },
    // RDNA3: 64 KiB LDS, 32-wide waves.
    Tuning {
        arch_prefix: "gfx11",
        max_tile: 32,
        min_tile: 16,
        rows_per_cta: 16,
        attention_threads: 256,
        target_ctas_per_cu: 2,
        max_splits: 32,
        decode_ctas_per_cu: 4,
        preferred_shared_mem: 64 * 1024,
    },
    // Hopper: 227 KiB of opt-in shared memory per block, 132 SMs (H200). Two work-groups per SM
    // fit the kernel's register budget (PKV_LAUNCH_BOUNDS), so each may take 96 KiB.
    Tuning {
        arch_prefix: "sm_90",
        max_tile: 64,
        min_tile: 16,
        rows_per_cta: 16,
        attention_threads: 256,
        target_ctas_per_cu: 4,
        max_splits: 64,
        decode_ctas_per_cu: 4,
        preferred_shared_mem: 96 * 1024,
    },
    // Anything else: conservative.
    Tuning {
        arch_prefix: "",
        max_tile: 32,
        min_tile: 16,
        rows_per_cta: 16,
        attention_threads: 256,
        target_ctas_per_cu: 2,
        max_splits: 32,
        decode_ctas_per_cu: 4,
        preferred_shared_mem: 48 * 1024,
    },
];

pub fn tuning_for(arch: &str) -> &'static Tuning {
    TUNING_TABLE.iter().find(|t| arch.starts_with(t.arch_prefix)).unwrap_or(&TUNING_TABLE[TUNING_TABLE.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_sane_and_fallback_is_last() {
        assert_eq!(TUNING_TABLE.last().unwrap().arch_prefix, "");
        for t in TUNING_TABLE {
            assert!(t.min_tile.is_power_of_two() && t.max_tile.is_power_of_two() && t.min_tile <= t.max_tile);
            assert_eq!(t.attention_threads % 64, 0, "threads must be whole 64-wide waves");
            assert_eq!(t.attention_threads, crate::core::plan::KERNEL_THREADS, "the kernel's compiled thread count");
            assert!(
                t.max_tile <= crate::core::plan::KERNEL_MAX_TILE && t.min_tile >= crate::core::plan::KERNEL_MIN_TILE
            );
            assert!(t.rows_per_cta <= crate::core::plan::KERNEL_MAX_ROWS);
            assert!(t.max_splits >= 1 && t.rows_per_cta >= 1 && t.decode_ctas_per_cu >= 1);
            // The decode split reduce serves at most this many (the planner also caps them).
            assert!(t.max_splits as u64 <= crate::core::plan::DECODE_MAX_SPLITS);
        }
        assert_eq!(tuning_for("gfx942").arch_prefix, "gfx94");
        assert_eq!(tuning_for("gfx1100").arch_prefix, "gfx11");
        assert_eq!(tuning_for("sm_90").arch_prefix, "sm_90");
        assert_eq!(tuning_for("gfx803").arch_prefix, "");
    }
}
