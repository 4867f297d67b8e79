#!/usr/bin/env python3
"""Cache writes for a profiler (ncu) to look at: the benchmark's 65536-token writes (8 kv heads,
head 128, block 16, consecutive slots in randomly ordered blocks) in the split layout (native
writer, bf16 and fp8 e4m3 with scales 0.05/0.04), the stride-aware writer on blocks-first
pages, and NHD. One warm-up call each, then one profiled call each.

    ncu --clock-control none --kernel-name regex:write_kv_kernel --launch-skip 4 --launch-count 4 \\
        python3 scripts/h200/profile_write.py
"""

from __future__ import annotations

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import pagedkv as pkv  # noqa: E402

dev = torch.device("cuda", 0)
tokens, h, d, bs = 65536, 8, 128, 16
num_blocks = 2 * tokens // bs
hidden = bs * h * d
key = torch.randn(tokens, h, d, device=dev).to(torch.bfloat16)
value = torch.randn(tokens, h, d, device=dev).to(torch.bfloat16)
blocks = torch.randperm(num_blocks, device=dev)[: tokens // bs].to(torch.int64)
slots = (blocks[:, None] * bs + torch.arange(bs, device=dev)[None, :]).reshape(-1).contiguous()
calls = []
for mode in ("native", "fp8", "strided", "nhd"):
    dt = torch.uint8 if mode == "fp8" else torch.bfloat16
    if mode == "strided":
        base = torch.empty(num_blocks, 2, hidden, dtype=dt, device=dev)
        kv = torch.as_strided(base, (2, num_blocks, bs, h, d), (hidden, 2 * hidden, h * d, d, 1))
    else:
        kv = torch.empty(2, num_blocks, bs, h, d, dtype=dt, device=dev)
    layout = "nhd" if mode == "nhd" else "split"
    kc, vc = (kv[0], kv[1]) if layout == "nhd" else pkv.split_kv_cache(kv, h, d)
    kw = dict(kv_cache_dtype="fp8", k_scale=torch.tensor([0.05], device=dev),
              v_scale=torch.tensor([0.04], device=dev)) if mode == "fp8" else {}
    calls.append((mode, lambda kc=kc, vc=vc, layout=layout, kw=kw:
                  pkv.write_kv_cache(key, value, kc, vc, slots, kv_layout=layout, **kw)))
for _, call in calls:  # warm-up (launch-skip these)
    call()
for mode, call in calls:
    print(mode, call())
torch.cuda.synchronize()
