#!/usr/bin/env python3
"""A first look at speed on the GPU machine (not the issue-4 benchmark): device-to-device copy
bandwidth as the ceiling, then a few decode-attention and cache-write cases timed with CUDA
events (median of repeats after warm-up; working sets far above L2). Prints one line per case."""

from __future__ import annotations

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import pagedkv as pkv  # noqa: E402

DEV = torch.device("cuda", 0)


def timed(fn, reps=20, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    times.sort()
    return times[len(times) // 2]


def copy_bandwidth():
    n = 4 << 30
    src = torch.empty(n, dtype=torch.uint8, device=DEV)
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src), reps=10)
    del src, dst
    return 2 * n / t


def decode_case(name, batch, ctx, bs, hq=32, hkv=8, d=128, dt=torch.bfloat16, kv="auto", peak=1.0):
    blocks = batch * ((ctx + bs - 1) // bs)
    es = 1 if kv != "auto" else 2
    kv_cache = torch.randn(2, blocks, bs, hkv, d, device=DEV).to(torch.uint8 if kv != "auto" else dt)
    kc, vc = pkv.split_kv_cache(kv_cache, hkv, d)
    table = torch.randperm(blocks, device=DEV, dtype=torch.int32).view(batch, -1)
    seq_lens = torch.full((batch,), ctx, dtype=torch.int32, device=DEV)
    qsl = torch.arange(batch + 1, dtype=torch.int32, device=DEV)
    q = torch.randn(batch, hq, d, device=DEV).to(dt)
    out = torch.empty_like(q)
    ws_bytes = pkv.paged_attention_workspace_size(q, kc, vc, table, seq_lens, qsl, kv_cache_dtype=kv)
    ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8, device=DEV)
    plan = pkv.paged_attention_plan(q, kc, vc, table, seq_lens, qsl, kv_cache_dtype=kv)
    t = timed(lambda: pkv.paged_attention(q, kc, vc, table, seq_lens, qsl, output=out, workspace=ws,
                                          kv_cache_dtype=kv))
    moved = 2 * batch * ctx * hkv * d * es + 2 * q.numel() * q.element_size()
    print(f"{name:28s} {t * 1e6:9.1f} us {moved / t / 1e9:8.1f} GB/s {100 * moved / t / peak:5.1f}% of copy "
          f"| tile {plan['tile_size']} splits {plan['num_splits']} smem {plan['shared_mem_bytes']}", flush=True)


def write_case(name, tokens, layout="split", bs=16, hkv=8, d=128, dt=torch.bfloat16, kv="auto", peak=1.0):
    blocks = (tokens + bs - 1) // bs + 1
    if layout == "nhd":
        kc = torch.empty(blocks, bs, hkv, d, device=DEV, dtype=torch.uint8 if kv != "auto" else dt)
        vc = torch.empty_like(kc)
    else:
        kv_cache = torch.empty(2, blocks, bs, hkv, d, device=DEV, dtype=torch.uint8 if kv != "auto" else dt)
        kc, vc = pkv.split_kv_cache(kv_cache, hkv, d)
    key = torch.randn(tokens, hkv, d, device=DEV).to(dt)
    value = torch.randn(tokens, hkv, d, device=DEV).to(dt)
    slots = torch.arange(tokens, dtype=torch.int64, device=DEV)
    path = pkv.write_kv_cache(key, value, kc, vc, slots, kv, kv_layout=layout)
    t = timed(lambda: pkv.write_kv_cache(key, value, kc, vc, slots, kv, kv_layout=layout))
    moved = 2 * key.numel() * (key.element_size() + (1 if kv != "auto" else key.element_size()))
    print(f"{name:28s} {t * 1e6:9.1f} us {moved / t / 1e9:8.1f} GB/s {100 * moved / t / peak:5.1f}% of copy "
          f"| {path}", flush=True)


def main():
    peak = copy_bandwidth()
    print(f"device-to-device copy: {peak / 1e9:.0f} GB/s (read + write)", flush=True)
    decode_case("decode B64 L4k bs16", 64, 4096, 16, peak=peak)
    decode_case("decode B64 L4k bs2048", 64, 4096, 2048, peak=peak)
    decode_case("decode B256 L32k bs16", 256, 32768, 16, peak=peak)
    decode_case("decode B1 L32k bs16", 1, 32768, 16, peak=peak)
    decode_case("decode B64 L4k fp8", 64, 4096, 16, kv="fp8", peak=peak)
    decode_case("decode B8 L32k d256 bs2048", 8, 32768, 2048, hq=16, hkv=2, d=256, peak=peak)
    write_case("write 65536 split native", 65536, peak=peak)
    write_case("write 65536 split bs544", 65536, bs=544, peak=peak)
    write_case("write 65536 nhd", 65536, layout="nhd", peak=peak)
    write_case("write 65536 split fp8", 65536, kv="fp8", peak=peak)


if __name__ == "__main__":
    main()
