#!/usr/bin/env python3
"""The read ceiling of the decode benchmark's access patterns (docs/performance.md).

Builds scripts/h200/paged_read.cu with nvcc, lays out the benchmark's caches (bench.py's
build_attention: split layout, blocks or hybrid pages [K_b | V_b], random block permutation) and times
read-only kernels over exactly the bytes each decode case reads, in the decode kernel's order (a
work-group per head), with a token's heads read together, and as one dense span, against the
copy bandwidth measured in the same run. Timed like bench.py (graph replays, events, L2 flushed
by a read, median).

  PYTHONPATH=python python3 scripts/h200/paged_read_ceiling.py [--out DIR]   (needs torch, nvcc)

PKV_CEIL_ONLY: a substring of the case names to run (default: all). PKV_CEIL_RUNS: the runs per
case as order:threads:split-multiplier words (orders: 0 per head, 1 heads together, 2 dense
span, 3 per head in lockstep, 4/5 lockstep with values through shared memory by cp.async
.cg/.ca, 6/7 the same with free warps, 8/9 order 3 paced (warps within one round) by an
mbarrier's test_wait spin / try_wait, 10/11 orders 4/6 with the L2 prefetch hint of 256 bytes, 12
order 6 with 128 bytes, 13 order 4 with 128 bytes (the decode kernel's order at blocks longer
than a tile), 14 / 15 orders 13 / 12 without the hint on a block's first and last tile where
value rows are not whole 128-byte lines; default: orders 0-2 at 96 and 128 threads, and 96 with 4x splits).
"""
import argparse
import ctypes
import math
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench import DEV, L2_FLUSH_BYTES, copy_bandwidth, timed_call  # noqa: E402


class Pattern(ctypes.Structure):
    _fields_ = [("k", ctypes.c_void_p), ("v", ctypes.c_void_p), ("table", ctypes.c_void_p),
                ("blk", ctypes.c_int64), ("head_stride", ctypes.c_int64), ("elem", ctypes.c_int),
                ("head_size", ctypes.c_int), ("table_width", ctypes.c_int), ("bs", ctypes.c_int),
                ("seqs", ctypes.c_int), ("heads", ctypes.c_int), ("seq_len", ctypes.c_int),
                ("splits", ctypes.c_int), ("sink", ctypes.c_void_p)]


def build(out_dir: str) -> ctypes.CDLL:
    so = os.path.join(out_dir, "paged_read.so")
    nvcc = os.environ.get("NVCC", "nvcc")
    # 168 registers (four 96-thread work-groups per SM, as the decode kernel): with fewer, ptxas
    # interleaves the uses with the loads and keeps only a few loads in flight.
    subprocess.run([nvcc, "-O3", "-arch=sm_90", "-maxrregcount=168", "-shared", "-Xcompiler", "-fPIC", "-cudart", "static",
                    "-o", so, os.path.join(HERE, "paged_read.cu")], check=True)
    lib = ctypes.CDLL(so)
    lib.paged_read.argtypes = [ctypes.c_int, Pattern, ctypes.c_int, ctypes.c_void_p]
    lib.paged_read.restype = ctypes.c_int
    return lib


def layout(seqs, seq_len, bs, heads, head_size, elem, hybrid):
    """The cache bench.py builds for a uniform batch: (base, k address, v address, block stride,
    table). split_kv_cache views each block as [heads, ..] of keys and of values."""
    blocks = math.ceil(seq_len / bs)
    num_blocks = seqs * blocks
    hidden = bs * heads * head_size * elem  # bytes of one block of keys
    perm = torch.randperm(num_blocks, device=DEV, dtype=torch.int64).to(torch.int32)
    table = perm.view(seqs, blocks).contiguous()
    base = torch.empty(2 * num_blocks * hidden, dtype=torch.uint8, device=DEV).random_(0, 255)
    if hybrid:  # page b = [K_b | V_b]
        k, v, blk = base.data_ptr(), base.data_ptr() + hidden, 2 * hidden
    else:  # [2, num_blocks, bs, heads, d]
        k, v, blk = base.data_ptr(), base.data_ptr() + num_blocks * hidden, hidden
    return base, k, v, blk, table


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp"))
    args = ap.parse_args()
    lib = build(args.out)
    ceiling = copy_bandwidth()
    print(f"copy: {ceiling:.0f} GB/s (read + written, 4 GiB)")
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device=DEV)
    sink = torch.empty(1 << 22, dtype=torch.int32, device=DEV)
    cases = [  # name, seqs, seq_len, bs, elem, hybrid, decode splits (the benchmark's plan)
        ("B64 L4k bs16", 64, 4096, 16, 2, False, 1),
        ("B64 L4k bs2048", 64, 4096, 2048, 2, False, 1),
        ("B64 L4k bs544 hybrid", 64, 4096, 544, 2, True, 1),
        ("B8 L32k bs2048 hybrid", 8, 32768, 2048, 2, True, 8),
        ("B64 L4k bs16 fp8", 64, 4096, 16, 1, False, 1),
        ("B1 L32k bs16", 1, 32768, 16, 2, False, 64),
        # Block 544's neighbours (value rows of 1024 and 1152 bytes: whole 128-byte lines; 544's
        # are 1088), to test whether the row alignment is what slows block 544's pattern.
        ("B64 L4k bs512 hybrid", 64, 4096, 512, 2, True, 1),
        ("B64 L4k bs576 hybrid", 64, 4096, 576, 2, True, 1),
    ]
    heads, head_size = 8, 128
    labels = {0: "per head", 1: "heads together", 2: "contiguous", 3: "per head, lockstep",
              4: "lockstep, V by cp.async.cg", 5: "lockstep, V by cp.async.ca", 6: "free, V by cp.async.cg",
              7: "free, V by cp.async.ca", 8: "paced, test_wait spin", 9: "paced, try_wait",
              10: "lockstep, V .cg L2::256B", 11: "free, V .cg L2::256B", 12: "free, V .cg L2::128B",
              13: "lockstep, V .cg L2::128B", 14: "lockstep, 128B not at row ends", 15: "free, 128B not at row ends"}
    default_runs = " ".join(f"{o}:{t}:{m}" for o in (0, 1, 2) for t, m in ((96, 1), (128, 1), (96, 4)))
    runs = [tuple(int(x) for x in w.split(":")) for w in os.environ.get("PKV_CEIL_RUNS", default_runs).split()]
    only = os.environ.get("PKV_CEIL_ONLY", "")
    for name, seqs, seq_len, bs, elem, hybrid, splits in cases:
        if only not in name:
            continue
        base, k, v, blk, table = layout(seqs, seq_len, bs, heads, head_size, elem, hybrid)
        row = head_size * elem
        nbytes = 2 * seqs * seq_len * heads * row
        for order, threads, mult in runs:
            label, sp = labels[order], mult * splits
            if order >= 4 and elem != 2:
                continue  # (orders 4 and up, staged or paced, are 16-bit only)
            # The dense span: the first and second halves of the same buffer.
            pk, pv = (base.data_ptr(), base.data_ptr() + nbytes // 2) if order == 2 else (k, v)
            p = Pattern(pk, pv, table.data_ptr(), blk, bs * row, elem, head_size, table.shape[1], bs, seqs, heads,
                        seq_len, sp, sink.data_ptr())
            if order == 1:
                p.splits = sp * heads  # as many work-groups as per head
            # Timed as bench.py times the decode kernel (events captured in the graph around the
            # call; a launch's overhead would count against a short case such as B1): the
            # stream is the capturing one.
            call = lambda: lib.paged_read(  # noqa: E731
                order, p, threads, ctypes.c_void_p(torch.cuda.current_stream().cuda_stream))
            assert call() == 0
            torch.cuda.synchronize()
            t = timed_call(call, 30, flush).inside_us
            gbps = nbytes / (t * 1e-6) / 1e9
            print(f"{name:24s} {label:15s} threads {threads:3d} splits {sp:2d}: {t:8.1f} us "
                  f"{gbps:6.0f} GB/s {100 * gbps / ceiling:6.1f}% of copy", flush=True)
        del base
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
