#!/usr/bin/env python3
"""One decode-attention call (B64, 4k context, block 16, 32 q / 8 kv heads, head 128, bf16)
and one cache write (65536 tokens), for a profiler (ncu) to look at. Usage: under ncu.
PKV_PROFILE_QLEN=512 makes it a prefill chunk instead: that many new query tokens per sequence,
the last ones of its context (the benchmark's prefill case: PKV_PROFILE_BATCH=8
PKV_PROFILE_CTX=4608 PKV_PROFILE_QLEN=512)."""

from __future__ import annotations

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import pagedkv as pkv  # noqa: E402

dev = torch.device("cuda", 0)
# PKV_PROFILE_BS / _BATCH / _CTX pick the block size (16), batch (64) and context (4096), to
# compare layouts and shapes (e.g. B1 L32k); PKV_PROFILE_FP8=1 stores the cache as e4m3fn codes.
env = os.environ.get
batch, ctx, bs = int(env("PKV_PROFILE_BATCH", "64")), int(env("PKV_PROFILE_CTX", "4096")), int(env("PKV_PROFILE_BS", "16"))
hq, hkv, d = 32, 8, 128
blocks = batch * ctx // bs
fp8 = env("PKV_PROFILE_FP8", "0") == "1"
kv_cache = torch.randn(2, blocks, bs, hkv, d, device=dev).to(torch.bfloat16)
kw = {}
if fp8:
    # Finite e4m3fn codes (magnitudes below the NaN pattern 0x7f), random signs.
    kv_cache = torch.randint(0, 0x7F, (2, blocks, bs, hkv, d), device=dev, dtype=torch.int32)
    kv_cache = (kv_cache | (torch.randint(0, 2, kv_cache.shape, device=dev, dtype=torch.int32) << 7)).to(torch.uint8)
    kw = dict(kv_cache_dtype="fp8", k_scale=torch.tensor([0.02], device=dev), v_scale=torch.tensor([0.03], device=dev))
kc, vc = pkv.split_kv_cache(kv_cache, hkv, d)
table = torch.randperm(blocks, device=dev, dtype=torch.int32).view(batch, -1)
qlen = int(env("PKV_PROFILE_QLEN", "1"))
seq_lens = torch.full((batch,), ctx, dtype=torch.int32, device=dev)
qsl = torch.arange(batch + 1, dtype=torch.int32, device=dev) * qlen
q = torch.randn(batch * qlen, hq, d, device=dev).to(torch.bfloat16)
for _ in range(2):
    pkv.paged_attention(q, kc, vc, table, seq_lens, qsl, **kw)
key = torch.randn(65536, hkv, d, device=dev).to(torch.bfloat16)
cache2 = torch.empty(2, 65536 // 16, 16, hkv, d, device=dev, dtype=torch.bfloat16)
k2, v2 = pkv.split_kv_cache(cache2, hkv, d)
slots = torch.arange(65536, dtype=torch.int64, device=dev)
pkv.write_kv_cache(key, key, k2, v2, slots)
torch.cuda.synchronize()
print(pkv.paged_attention_plan(q, kc, vc, table, seq_lens, qsl, **kw))
