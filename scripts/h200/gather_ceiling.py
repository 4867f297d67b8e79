#!/usr/bin/env python3
"""Reference for docs/performance.md: how fast this GPU copies data whose reads visit blocks of
a paged-cache size in a random order, against the contiguous copy that bench.py takes as its
ceiling. Paged decode reads one head's keys (and values) of a block as one span: 4 KiB at block
16 (bf16, head 128), 2 KiB for fp8. Timed by bench.py's own `timed` (events, median, L2
flushed before each run).

  PYTHONPATH=python python3 scripts/h200/gather_ceiling.py      (needs torch with a GPU)
"""
import os
import sys

import torch

# The benchmark's own timing (events, median, L2 flushed by a read before each run).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import DEV, L2_FLUSH_BYTES, timed  # noqa: E402

FLUSH = None


def median_us(fn, iters=20):
    global FLUSH
    if FLUSH is None:
        FLUSH = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device=DEV)
    for _ in range(3):
        fn()
    return timed(fn, iters, FLUSH)


def main():
    nbytes = 2 << 30
    src = torch.empty(nbytes // 8, dtype=torch.int64, device=DEV).random_(0, 1 << 40)
    dst = torch.empty_like(src)
    t = median_us(lambda: dst.copy_(src))
    copy = 2 * nbytes / (t * 1e-6) / 1e9
    print(f"contiguous copy: {copy:.0f} GB/s (read + written, 2 GiB)")
    # Reads only (what decode attention does): a sum and a max over the same 2 GiB.
    for name, fn in (("sum", lambda: src.sum()), ("max", lambda: src.max())):
        t = median_us(fn)
        g = nbytes / (t * 1e-6) / 1e9
        print(f"read-only {name}: {g:.0f} GB/s ({100 * g / copy:.1f}% of copy)")
    for block in (512, 2048, 4096, 16384, 65536):
        rows = src.view(-1, block // 8)
        out = dst.view(-1, block // 8)
        perm = torch.randperm(rows.shape[0], device=DEV)
        ident = torch.arange(rows.shape[0], device=DEV)
        t_perm = median_us(lambda: torch.index_select(rows, 0, perm, out=out))
        t_ident = median_us(lambda: torch.index_select(rows, 0, ident, out=out))
        g_perm = 2 * nbytes / (t_perm * 1e-6) / 1e9
        g_ident = 2 * nbytes / (t_ident * 1e-6) / 1e9
        print(f"blocks of {block:6d} B: random order {g_perm:5.0f} GB/s ({100 * g_perm / copy:5.1f}% of copy), "
              f"in order {g_ident:5.0f} GB/s ({100 * g_ident / copy:5.1f}%) through the same gather kernel")


if __name__ == "__main__":
    main()
