#!/usr/bin/env python3
"""Prefill-chunk attention per head size (the benchmark's prefill case, B8, 512 new tokens on a
4096-token prefix, block 16, bf16, 32 q / 8 kv heads, causal, at head sizes 64, 128, 192 and
256): median time of 20 calls (torch events, after two warm-up calls; compute-bound, so the L2
is not flushed) and TFLOP/s, with the plan's reason (which kernel); then head 128 over an fp8
(e4m3) cache. Compares kernels across head sizes and cache dtypes, which the benchmark's grid
(its prefill case: head 128, bf16 cache) does not.

Usage on the GPU machine: PAGEDKV_LIBRARY=... PYTHONPATH=python python3 scripts/h200/prefill_heads.py
"""

from __future__ import annotations

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import pagedkv as pkv  # noqa: E402

dev = torch.device("cuda", 0)
batch, new, ctx, bs, hq, hkv = 8, 512, 4608, 16, 32, 8
for d, fp8 in ((64, False), (128, False), (192, False), (256, False), (128, True)):
    blocks = batch * ctx // bs
    kw = {}
    if fp8:
        # Finite e4m3fn codes (magnitudes below the NaN pattern 0x7f), random signs.
        codes = torch.randint(0, 0x7F, (2, blocks, bs, hkv, d), device=dev, dtype=torch.int32)
        cache = (codes | (torch.randint(0, 2, codes.shape, device=dev, dtype=torch.int32) << 7)).to(torch.uint8)
        kw = dict(kv_cache_dtype="fp8", k_scale=torch.tensor([0.02], device=dev), v_scale=torch.tensor([0.03], device=dev))
    else:
        cache = torch.randn(2, blocks, bs, hkv, d, device=dev).to(torch.bfloat16)
    kc, vc = pkv.split_kv_cache(cache, hkv, d)
    table = torch.randperm(blocks, device=dev, dtype=torch.int32).view(batch, -1)
    seq_lens = torch.full((batch,), ctx, dtype=torch.int32, device=dev)
    qsl = torch.arange(batch + 1, dtype=torch.int32, device=dev) * new
    q = torch.randn(batch * new, hq, d, device=dev).to(torch.bfloat16)
    out = torch.empty_like(q)
    for _ in range(2):
        pkv.paged_attention(q, kc, vc, table, seq_lens, qsl, output=out, **kw)
    times = []
    for _ in range(20):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        pkv.paged_attention(q, kc, vc, table, seq_lens, qsl, output=out, **kw)
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    us = sorted(times)[len(times) // 2]
    # Causal: query token t of a sequence sees ctx - new + t + 1 keys; 4 FLOPs per (head, key, dim).
    keys = sum(ctx - new + t + 1 for t in range(new)) * batch
    tflops = 4 * hq * d * keys / (us * 1e-6) / 1e12
    reason = pkv.paged_attention_plan(q, kc, vc, table, seq_lens, qsl, **kw)["reason"].split(";")[0]
    print(f"head {d:3d}{' fp8' if fp8 else '    '}: {us:9.1f} us  {tflops:6.1f} TFLOP/s  ({reason})", flush=True)
