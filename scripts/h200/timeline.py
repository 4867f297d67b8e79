#!/usr/bin/env python3
"""Kernel timeline of one attention case: every kernel of a library call (decode, split reduce,
general kernel) with its start and end relative to the first, from CUPTI (torch.profiler),
eager launches with the L2 flushed before each call; the median over the calls.

  PYTHONPATH=python python3 scripts/h200/timeline.py ["B1 L32k bs16"]   (needs torch, a GPU)
"""
import os
import re
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import bench  # noqa: E402
import pagedkv  # noqa: E402


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "B1 L32k bs16"
    case = next(c for c in bench.attention_cases(False) if c.name == name)
    built = bench.build_attention(case)
    args, kwargs, out = built["args"], built["kwargs"], built["output"]
    plan = pagedkv.paged_attention_plan(*args, **kwargs)
    ws = torch.empty(max(plan["workspace_bytes"], 1), dtype=torch.uint8, device=bench.DEV)
    call = lambda: pagedkv.paged_attention(*args, output=out, workspace=ws, **kwargs)  # noqa: E731
    flush = torch.empty(bench.L2_FLUSH_BYTES // 4, dtype=torch.float32, device=bench.DEV)
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    calls = 20
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            flush.sum()
            call()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    kernels.sort(key=lambda e: e.time_range.start)
    # Split into calls: each starts after a flush kernel (torch's reduction).
    groups, cur = [], None
    for e in kernels:
        if "pkv::" in e.name:
            if cur is not None:
                cur.append(e)
        else:
            cur = []
            groups.append(cur)
    groups = [g for g in groups if g]  # (a flush may take more than one kernel)
    rows = {}
    for g in groups:
        t0 = g[0].time_range.start
        for i, e in enumerate(g):
            short = re.search(r"(\w+_kernel)", e.name)
            rows.setdefault((i, short.group(1) if short else e.name[:40]), []).append((e.time_range.start - t0, e.time_range.end - t0))
    print(f"{name}: {len(groups)} calls, kernel start / end (us after the first kernel's start), median")
    for (i, n), v in sorted(rows.items()):
        s = statistics.median(a for a, _ in v)
        t = statistics.median(b for _, b in v)
        print(f"  {i} {n:32s} {s:7.1f} {t:7.1f}  (dur {t - s:6.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
