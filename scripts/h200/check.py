#!/usr/bin/env python3
"""GPU proof of libpagedkv: every kernel against the CPU backend on identical inputs.

Runs on a machine with an NVIDIA GPU, python3, torch, numpy and ml_dtypes, through the Python
binding (python/pagedkv). The CPU oracle is the same library called on NumPy copies of the
very same bytes (caches are copied after the GPU writer filled them, so attention is compared
on identical cache contents).

- Writers: the whole cache buffer (every byte, touched or not) must be identical to the CPU
  backend's after the same write: bit-exact fp8 quantisation, nothing written outside the slots.
- Attention: NaN-poisoned caches (every slot not written is NaN) and NaN-poisoned outputs; the
  rows the CPU backend leaves untouched must stay poisoned on the GPU, every other element must
  match within the query dtype's rounding (max abs error / max |ref|).

Usage: check.py --suite full|reduced [--out DIR] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
import zlib

import ml_dtypes
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import pagedkv as pkv  # noqa: E402

# PKV_CHECK_CPU=1 runs the harness itself on the CPU (both sides on the CPU backend): a dry run
# of this script's machinery on a machine without a GPU.
DRY = os.environ.get("PKV_CHECK_CPU") == "1"
DEV = torch.device("cpu") if DRY else torch.device("cuda", 0)


def sync():
    if not DRY:
        torch.cuda.synchronize()

TORCH_DT = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16, "u8": torch.uint8}
ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "u8": 1}
# NaN bit patterns used to poison memory nothing should read or write.
NAN_BITS = {"f32": 0x7FC00001, "f16": 0x7E01, "bf16": 0x7FC1}
FP8_NAN = {"fp8_e4m3fn": 0x7F, "fp8_e4m3fnuz": 0x80, "fp8_e5m2": 0x7F}
FP8_ML = {"fp8_e4m3fn": ml_dtypes.float8_e4m3fn, "fp8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
          "fp8_e5m2": ml_dtypes.float8_e5m2}
FP8_TORCH = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e4m3fnuz": torch.float8_e4m3fnuz,
             "fp8_e5m2": torch.float8_e5m2}
# max |gpu - cpu| / max(1, max |cpu|) allowed per query dtype: f32 arithmetic vs f64, then one
# rounding to the output dtype.
TOL = {"f32": 1e-4, "f16": 2e-3, "bf16": 1.6e-2}
BLOCK_SIZES = [1, 2, 16, 32, 64, 128, 256, 544, 784, 1056, 2048, 4096]
HEAD_SIZES = [64, 80, 96, 128, 192, 256]
LAYOUTS = ["kvfirst", "blocksfirst", "hybrid", "nhd"]


# ---------------------------------------------------------------------------------------------
# Memory: GPU tensors and their NumPy twins over the same bytes
# ---------------------------------------------------------------------------------------------
def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A host copy with the same dtype (bf16 through ml_dtypes)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).cpu().numpy().view(ml_dtypes.bfloat16)
    if t.dtype in (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2):
        ml = {torch.float8_e4m3fn: ml_dtypes.float8_e4m3fn, torch.float8_e4m3fnuz: ml_dtypes.float8_e4m3fnuz,
              torch.float8_e5m2: ml_dtypes.float8_e5m2}[t.dtype]
        return t.view(torch.uint8).cpu().numpy().view(ml)
    return t.cpu().numpy()


def poison_(buf: torch.Tensor, dt: str, fp8_name: str | None = None) -> None:
    if dt == "u8":
        buf.view(torch.uint8).fill_(FP8_NAN.get(fp8_name or "fp8_e4m3fn", 0x7F))
    elif dt == "f32":
        buf.view(torch.int32).fill_(NAN_BITS["f32"])
    else:
        buf.view(torch.int16).fill_(NAN_BITS[dt])


def strided(base, offset: int, shape, strides):
    """A view of `base` (torch or NumPy, 1-D) at an element offset with element strides."""
    if isinstance(base, torch.Tensor):
        return torch.as_strided(base, shape, strides, offset)
    item = base.itemsize
    return np.lib.stride_tricks.as_strided(base[offset:], shape, tuple(s * item for s in strides))


class Cache:
    """A paged cache in one of the layouts, allocated as one flat GPU buffer:
    - kvfirst: vLLM ROCm's (2, num_blocks, block_size, H, D), split into the classic views;
    - blocksfirst: a (num_blocks, 2, block_size, H, D) allocation seen as (2, num_blocks, ...);
    - hybrid: blocks-first pages padded to a larger page (attention + Mamba page sharing):
      page stride 2*hidden + pad, so stride(0) differs from every packed product;
    - nhd: K and V as [num_blocks, block_size, H, D] views of a (num_blocks, 2, ...) allocation.
    """

    def __init__(self, layout, num_blocks, block_size, heads, head_size, dt, fp8_name=None):
        self.layout, self.nb, self.bs, self.h, self.d, self.dt = layout, num_blocks, block_size, heads, head_size, dt
        self.fp8_name = fp8_name
        hidden = block_size * heads * head_size
        self.pad = 0
        if layout == "kvfirst":
            size = 2 * num_blocks * hidden
            self.combined = (0, (2, num_blocks, block_size, heads, head_size),
                             (num_blocks * hidden, hidden, heads * head_size, head_size, 1))
        elif layout == "blocksfirst":
            size = 2 * num_blocks * hidden
            self.combined = (0, (2, num_blocks, block_size, heads, head_size),
                             (hidden, 2 * hidden, heads * head_size, head_size, 1))
        elif layout == "hybrid":
            self.pad = 16 * 16 // ITEMSIZE[dt] * 5  # 80 x 16 bytes: keeps 16-byte alignment
            page = 2 * hidden + self.pad
            size = num_blocks * page
            self.combined = (0, (2, num_blocks, block_size, heads, head_size),
                             (hidden, page, heads * head_size, head_size, 1))
        elif layout == "nhd":
            size = 2 * num_blocks * hidden
            self.combined = None
            st = (2 * hidden, heads * head_size, head_size, 1)
            self.nhd = ((0, (num_blocks, block_size, heads, head_size), st),
                        (hidden, (num_blocks, block_size, heads, head_size), st))
        else:
            raise ValueError(layout)
        self.base = torch.empty(size, dtype=TORCH_DT[dt], device=DEV)
        poison_(self.base, dt, fp8_name)
        self.kv_layout = "nhd" if layout == "nhd" else "split"

    def views(self, base):
        if self.layout == "nhd":
            (ko, ks, kst), (vo, vs, vst) = self.nhd
            return strided(base, ko, ks, kst), strided(base, vo, vs, vst)
        off, shape, st = self.combined
        return pkv.split_kv_cache(strided(base, off, shape, st), self.h, self.d)

    def numpy_twin(self):
        return to_numpy(self.base)

    def gpu_views(self):
        return self.views(self.base)


def same_bytes(gpu: torch.Tensor, host: np.ndarray) -> int:
    """Number of differing bytes between a GPU buffer and a host buffer of equal size."""
    g = gpu.view(torch.uint8)
    h = host.view(np.uint8)
    chunk = 1 << 28  # bounded temporaries on caches of several GiB
    diff = 0
    for start in range(0, g.numel(), chunk):
        part = torch.from_numpy(h[start:start + chunk]).to(DEV)
        diff += int((g[start:start + chunk] != part).sum().item())
    return diff


def scalar(v):
    return None if v is None else torch.tensor([v], dtype=torch.float32, device=DEV)


def host(v):
    return None if v is None else to_numpy(v)


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------
def check_write(c, rng):
    layout, bs, h, d, src, kv = c["layout"], c["bs"], c["h"], c["d"], c["src"], c["kv"]
    fp8 = kv != "auto"
    cache_dt = "u8" if fp8 else src
    t = c["tokens"]
    nb = c.get("num_blocks") or max(2, (2 * t + bs - 1) // bs + 1)
    cache = Cache(layout, nb, bs, h, d, cache_dt, kv if fp8 else None)
    # Extra key rows past len(slot_mapping) (graph padding) must be ignored.
    rows = t + 3
    if c.get("src_strided"):
        # Non-contiguous source rows: head_size is not the innermost dimension.
        key = torch.randn(d, rows, h, device=DEV).to(TORCH_DT[src]).permute(1, 2, 0)
        value = (torch.randn(h, d, rows, device=DEV) * 3).to(TORCH_DT[src]).permute(2, 0, 1)
    else:
        key = torch.randn(rows, h, d, device=DEV).to(TORCH_DT[src])
        value = (torch.randn(rows, h, d, device=DEV) * 3).to(TORCH_DT[src])
    if fp8:
        # Some values beyond the format's range after scaling: saturation is checked too.
        key[0, 0, :4] = torch.tensor([1e4, -1e4, 0.0, -0.0], device=DEV).to(key.dtype)
    if c.get("runs"):
        # As an engine writes prefill chunks: runs of consecutive slots, each in a block of its
        # own, starting at offset 0, 8 or anywhere (the writers' whole-vector, lane-pair and
        # element paths), ending anywhere up to the block's end; and a NaN value, which sends
        # fp8 writers through their exact redo.
        perm, out = rng.permutation(nb), []
        for b in perm:
            if len(out) >= t:
                break
            start = int(rng.choice([0, 0, 8 % bs, int(rng.integers(0, bs))]))
            n = int(rng.integers(1, bs - start + 1)) if rng.random() < 0.3 else bs - start
            out.extend(range(int(b) * bs + start, int(b) * bs + start + n))
        assert len(out) >= t, "runs need one block per run"
        slots_all = torch.tensor(out[:t], dtype=torch.int64)
        value[t // 2, 0, 5] = float("nan")
    elif c.get("high_blocks"):
        # Slots in the last blocks of a pool of more than 65,536 blocks (offsets past 4 GiB).
        top = min(nb * bs, 4096)
        slots_all = torch.from_numpy((nb * bs - top + rng.permutation(top)[:t]).astype(np.int64))
    else:
        slots_all = torch.from_numpy(rng.permutation(nb * bs)[:t].astype(np.int64))
    slots_all[torch.from_numpy(rng.random(t) < (0.02 if c.get("runs") else 0.1))] = -1
    gpu_slots = slots_all.clone()
    if c.get("slot_out_of_range") and not DRY:
        # The GPU cannot report it without a sync: the slot is skipped, like a negative one.
        gpu_slots[1] = nb * bs + 5
        slots_all[1] = -1
    ks, vs = (c.get("k_scale"), c.get("v_scale")) if fp8 else (None, None)
    host_base = cache.numpy_twin()
    kc_g, vc_g = cache.gpu_views()
    kc_h, vc_h = cache.views(host_base)
    path_g = pkv.write_kv_cache(key, value, kc_g, vc_g, gpu_slots.to(DEV), kv, scalar(ks), scalar(vs),
                                kv_layout=cache.kv_layout)
    path_h = pkv.write_kv_cache(to_numpy(key), to_numpy(value), kc_h, vc_h, slots_all.numpy(), kv,
                                None if ks is None else np.array([ks], np.float32),
                                None if vs is None else np.array([vs], np.float32), kv_layout=cache.kv_layout)
    sync()
    diff = same_bytes(cache.base, host_base)
    ok = diff == 0 and path_g == path_h
    return {"ok": ok, "path": path_g, "cpu_path": path_h, "bytes": cache.base.numel() * cache.base.element_size(),
            "diff_bytes": diff}


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------
def check_attention(c, rng):
    layout, bs, d, hkv, hq, qdt, kv = c["layout"], c["bs"], c["d"], c["hkv"], c["hq"], c["qdt"], c["kv"]
    fp8 = kv != "auto"
    cache_dt = "u8" if fp8 else qdt
    batch = c["batch"]  # [(q_len, seq_len)]
    blocks_per_seq = [max(1, (sl + bs - 1) // bs) for _, sl in batch]
    need = sum(blocks_per_seq)
    nb = c.get("num_blocks", need + 5)
    cache = Cache(layout, nb, bs, hkv, d, cache_dt, kv if fp8 else None)
    ks, vs = (c.get("k_scale", 0.05), c.get("v_scale", 0.02)) if fp8 else (None, None)

    # Block tables: distinct blocks (from the top of the pool when asked), garbage past the end.
    if c.get("high_blocks"):
        pool = rng.permutation(np.arange(nb - need - 64, nb))[:need]
        pool[0] = 3  # one low block too
    else:
        pool = rng.permutation(nb)[:need]
    width = max(blocks_per_seq) + 2
    table = np.full((len(batch), width), 2 ** 30, dtype=np.int32)  # never read
    k = 0
    for s, nblk in enumerate(blocks_per_seq):
        table[s, :nblk] = pool[k:k + nblk]
        k += nblk

    # Fill every sequence's cached tokens through the (separately checked) GPU writer.
    slots, total = [], 0
    for s, (_, sl) in enumerate(batch):
        pos = np.arange(sl)
        slots.append(table[s, pos // bs].astype(np.int64) * bs + pos % bs)
        total += sl
    if total:
        slots = torch.from_numpy(np.concatenate(slots)).to(DEV)
        knew = torch.randn(total, hkv, d, device=DEV).to(TORCH_DT[qdt])
        vnew = torch.randn(total, hkv, d, device=DEV).to(TORCH_DT[qdt])
        kc_g, vc_g = cache.gpu_views()
        pkv.write_kv_cache(knew, vnew, kc_g, vc_g, slots, kv, scalar(ks), scalar(vs), kv_layout=cache.kv_layout)

    q_lens = [q for q, _ in batch]
    pad = c.get("pad_tokens", 0)
    num_tokens = sum(q_lens) + pad
    query = torch.randn(num_tokens, hq, d, device=DEV).to(TORCH_DT[qdt])
    qsl = np.concatenate([[0], np.cumsum(q_lens)]).astype(np.int32)
    seq_lens = np.array([sl for _, sl in batch], dtype=np.int32)
    alibi = (torch.rand(hq, device=DEV) * 0.2) if c.get("alibi") else None
    sinks = None
    if c.get("sinks"):
        sinks = torch.randn(hq, device=DEV) * 2
        sinks[0] = -math.inf
    out_fp8 = c.get("out_fp8")
    out_scale = c.get("out_scale", 0.03) if out_fp8 else None
    if out_fp8:
        out_g = torch.full((num_tokens, hq, d), FP8_NAN[out_fp8], dtype=torch.uint8, device=DEV)
        # A uint8 output means the device's e4m3 (OCP on NVIDIA and on the CPU); typed fp8 tensors
        # select the format. Under PKV_TEST_DEVICE_LIMITS the planner may think it is on a gfx942
        # (fnuz): then every output is typed, so both sides encode the same format.
        if out_fp8 != "fp8_e4m3fn" or os.environ.get("PKV_TEST_DEVICE_LIMITS"):
            out_g = out_g.view(FP8_TORCH[out_fp8])
    else:
        out_g = torch.empty(num_tokens, hq, d, dtype=TORCH_DT[qdt], device=DEV)
        poison_(out_g, qdt)
    # Every other case gives the batch's longest query as max_query_len (decode-only batches
    # then run the decode kernel alone), the others leave it unknown.
    bound = max(q_lens, default=0) if zlib.crc32(str(c.get("name", c)).encode()) % 2 else None
    opts = dict(kv_layout=cache.kv_layout, kv_cache_dtype=kv, sliding_window=c.get("window"),
                logits_soft_cap=c.get("soft_cap"), causal=c.get("causal", True), max_query_len=bound)

    sync()
    host_base = cache.numpy_twin()
    out_h = to_numpy(out_g)
    kc_g, vc_g = cache.gpu_views()
    kc_h, vc_h = cache.views(host_base)
    g_args = (query, kc_g, vc_g, torch.from_numpy(table).to(DEV), torch.from_numpy(seq_lens).to(DEV),
              torch.from_numpy(qsl).to(DEV))
    plan = pkv.paged_attention_plan(*g_args, output=out_g, k_scale=scalar(ks), v_scale=scalar(vs),
                                    alibi_slopes=alibi, sinks=sinks, output_scale=scalar(out_scale), **opts)
    pkv.paged_attention(*g_args, output=out_g, k_scale=scalar(ks), v_scale=scalar(vs), alibi_slopes=alibi,
                        sinks=sinks, output_scale=scalar(out_scale), **opts)
    pkv.paged_attention(to_numpy(query), kc_h, vc_h, table, seq_lens, qsl, output=out_h,
                        k_scale=None if ks is None else np.array([ks], np.float32),
                        v_scale=None if vs is None else np.array([vs], np.float32),
                        alibi_slopes=host(alibi), sinks=host(sinks),
                        output_scale=None if out_scale is None else np.array([out_scale], np.float32), **opts)
    sync()
    got = to_numpy(out_g)
    res = {"plan": f"{plan['path']} tile {plan['tile_size']} bq {plan['block_q']} splits {plan['num_splits']}"
                   + (f" max_query_len {bound}" if bound else ""),
           "smem": plan["shared_mem_bytes"]}
    if out_fp8:
        g8 = got.view(np.uint8).astype(np.int32)
        h8 = out_h.view(np.uint8).astype(np.int32)
        nan_code = FP8_NAN[out_fp8]
        untouched_g, untouched_h = g8 == nan_code, h8 == nan_code
        # Ordered code distance (sign-magnitude): one step is one fp8 rounding decision.
        def ordered(x):
            return np.where(x & 0x80, -(x & 0x7F), x & 0x7F)
        dist = np.abs(ordered(g8) - ordered(h8))[~untouched_h]
        res.update(ok=bool((untouched_g == untouched_h).all() and (dist.max(initial=0) <= 1)),
                   max_code_dist=int(dist.max(initial=0)), codes_off_by_one=int((dist == 1).sum()),
                   nan_rows_match=bool((untouched_g == untouched_h).all()))
        return res
    g = got.astype(np.float64)
    r = out_h.astype(np.float64)
    mask_g, mask_r = np.isnan(g), np.isnan(r)
    nan_match = bool((mask_g == mask_r).all())
    fin = ~mask_r
    err = np.abs(g[fin] - r[fin]) if fin.any() else np.zeros(1)
    ref_max = float(np.abs(r[fin]).max(initial=0.0))
    max_abs = float(err.max(initial=0.0)) if not np.isnan(err).any() else math.inf
    rel = max_abs / max(1.0, ref_max)
    l2 = float(np.linalg.norm(g[fin] - r[fin]) / max(1e-30, np.linalg.norm(r[fin]))) if fin.any() else 0.0
    # Every element of every sequence's query rows is finite on the CPU (the caches are NaN only
    # where nothing may be read): a NaN there would mean a misplaced write or read.
    expected = sum(q for q, _ in batch) * hq * d
    res.update(ok=bool(nan_match and rel <= TOL[qdt] and math.isfinite(max_abs) and int(fin.sum()) == expected),
               max_abs=max_abs, rel=rel, l2_rel=l2, nan_rows_match=nan_match, written=int(fin.sum()),
               expected_written=expected)
    return res


# ---------------------------------------------------------------------------------------------
# The matrix
# ---------------------------------------------------------------------------------------------
def batch_for(kind, bs, rng, cap=6000, max_q=96):
    """(q_len, seq_len) pairs with lengths that are and are not multiples of the block."""
    lens = sorted({max(1, min(cap, v)) for v in (bs - 1, bs, bs + 1, 2 * bs + 3, 3 * bs, 37)})
    if kind == "decode":
        return [(1, sl) for sl in lens]
    if kind == "prefill":
        # Full prefills of short sequences and chunks on a longer context.
        out = [(min(sl, max_q), sl) for sl in lens]
        return [(q, sl) for q, sl in out if q > 1] or [(2, 2)]
    # mixed: decode, chunked prefill, a graph-padding sequence with q_len 0
    out = []
    for i, sl in enumerate(lens):
        out.append((1, sl) if i % 2 == 0 else (min(sl, max(2, max_q // 2)), sl))
    out.insert(1, (0, lens[-1]))
    return out


def write_cases(suite):
    cases = []
    srcs = ["f16", "bf16", "f32"]
    fp8s = ["fp8_e4m3fn", "fp8_e4m3fnuz", "fp8_e5m2"]
    if suite == "reduced":
        return [
            dict(layout="kvfirst", bs=16, h=4, d=128, src="f16", kv="auto", tokens=70),
            dict(layout="kvfirst", bs=32, h=2, d=64, src="bf16", kv="fp8_e4m3fn", tokens=50, k_scale=0.5,
                 v_scale=0.25),
            dict(layout="hybrid", bs=544, h=2, d=256, src="bf16", kv="auto", tokens=40),
            dict(layout="nhd", bs=64, h=4, d=80, src="f32", kv="fp8_e5m2", tokens=40, k_scale=0.3, v_scale=2.0,
                 src_strided=True),
            dict(layout="blocksfirst", bs=16, h=2, d=96, src="f16", kv="auto", tokens=40, slot_out_of_range=True),
        ]
    # Native writer: K/V-first packed, block 16/32, every source dtype x every cache dtype.
    for bs in (16, 32):
        for src in srcs:
            for kv in ["auto"] + fp8s:
                cases.append(dict(layout="kvfirst", bs=bs, h=8, d=128, src=src, kv=kv, tokens=300,
                                  k_scale=0.37, v_scale=1.9))
    # Stride-aware writer: every layout x every block size, cycling dtypes and head sizes.
    i = 0
    for layout in LAYOUTS:
        for bs in BLOCK_SIZES:
            src = srcs[i % 3]
            kv = (["auto"] + fp8s)[i % 4]
            d = HEAD_SIZES[i % len(HEAD_SIZES)]
            if kv != "auto" and layout != "nhd" and d % 16:
                d = 128  # split fp8 keys need x = 16 | head_size
            cases.append(dict(layout=layout, bs=bs, h=[1, 2, 4, 8][i % 4], d=d, src=src, kv=kv,
                              tokens=min(400, 3 * bs + 17), k_scale=0.7, v_scale=0.05, src_strided=(i % 5 == 0)))
            i += 1
    # Odd shapes: head_size not a multiple of 8 (NHD), fp32 caches (x = 4), out-of-range slots.
    cases.append(dict(layout="nhd", bs=16, h=3, d=20, src="f16", kv="auto", tokens=50))
    cases.append(dict(layout="nhd", bs=16, h=3, d=20, src="bf16", kv="fp8_e4m3fn", tokens=50, k_scale=0.1,
                      v_scale=0.2))
    cases.append(dict(layout="kvfirst", bs=16, h=2, d=64, src="f16", kv="auto", tokens=60, slot_out_of_range=True))
    cases.append(dict(layout="hybrid", bs=48, h=2, d=64, src="f32", kv="auto", tokens=60, src_strided=True))
    # Runs of consecutive slots (prefill): whole 8-slot vectors and fp8 lane pairs, in both
    # writers, every fp8 format and block sizes 8..64 (one block per run).
    for kv in fp8s:
        cases.append(dict(layout="kvfirst", bs=16, h=8, d=128, src="bf16", kv=kv, tokens=600, num_blocks=700,
                          runs=True, k_scale=0.05, v_scale=0.04, name="runs"))
    for layout, bs, src, kv in (("kvfirst", 32, "f16", "fp8_e4m3fn"), ("blocksfirst", 16, "bf16", "fp8_e5m2"),
                                ("hybrid", 64, "bf16", "fp8_e4m3fn"), ("kvfirst", 16, "bf16", "auto"),
                                ("blocksfirst", 8, "f16", "fp8_e4m3fnuz")):
        cases.append(dict(layout=layout, bs=bs, h=4, d=128, src=src, kv=kv, tokens=500, num_blocks=600,
                          runs=True, k_scale=0.3, v_scale=0.02, name="runs"))
    # Over 65,536 blocks and over 4 GiB of cache: 64-bit offsets in both writers.
    cases.append(dict(layout="kvfirst", bs=16, h=8, d=128, src="f16", kv="auto", tokens=500, num_blocks=70000,
                      high_blocks=True, name="large-cache"))
    cases.append(dict(layout="nhd", bs=16, h=8, d=128, src="bf16", kv="fp8_e5m2", tokens=500, num_blocks=140000,
                      high_blocks=True, k_scale=0.2, v_scale=0.4, name="large-cache"))
    return cases


def attention_cases(suite):
    qdts = ["f16", "bf16", "f32"]
    fp8s = ["fp8_e4m3fn", "fp8_e4m3fnuz", "fp8_e5m2"]
    gqas = [(8, 8), (16, 4), (32, 4), (32, 2), (8, 1), (32, 1)]  # (hq, hkv): G 1, 4, 8, 16, MQA 8, MQA 32
    cases = []
    if suite == "reduced":
        return [
            dict(layout="kvfirst", bs=16, d=128, hq=32, hkv=8, qdt="bf16", kv="auto", batch="mixed", pad_tokens=3),
            dict(layout="hybrid", bs=544, d=128, hq=16, hkv=4, qdt="f16", kv="fp8_e4m3fn", batch="mixed",
                 window=100, alibi=True, sinks=True),
            dict(layout="nhd", bs=64, d=96, hq=32, hkv=1, qdt="f32", kv="auto", batch="decode", soft_cap=20.0),
            dict(layout="blocksfirst", bs=2048, d=64, hq=8, hkv=2, qdt="f16", kv="fp8_e5m2", batch="mixed",
                 out_fp8="fp8_e4m3fn"),
            dict(layout="kvfirst", bs=16, d=128, hq=8, hkv=8, qdt="bf16", kv="auto",
                 batch=[(1, 9000)], name="split-kv"),
            # Single-pass plans (padding rows fill the grid): the direct output epilogue.
            dict(layout="kvfirst", bs=16, d=128, hq=32, hkv=8, qdt="bf16", kv="auto", batch="mixed",
                 pad_tokens=2200, name="single-pass"),
            dict(layout="nhd", bs=784, d=80, hq=16, hkv=4, qdt="f16", kv="fp8_e4m3fnuz", batch="prefill",
                 sinks=True, out_fp8="fp8_e5m2", pad_tokens=2200, name="single-pass"),
        ]
    # 1. Every block size, cycling layouts, dtypes, head sizes and GQA ratios; mixed batches.
    for i, bs in enumerate(BLOCK_SIZES):
        hq, hkv = gqas[i % len(gqas)]
        cases.append(dict(layout=LAYOUTS[i % 4], bs=bs, d=HEAD_SIZES[i % 6], hq=hq, hkv=hkv, qdt=qdts[i % 3],
                          kv="auto", batch="mixed", pad_tokens=2))
    # 2. Every layout x every fp8 format (scales != 1), decode and prefill.
    for i, layout in enumerate(LAYOUTS):
        for j, kv in enumerate(fp8s):
            cases.append(dict(layout=layout, bs=[16, 544, 32, 784][i], d=128, hq=16, hkv=4, qdt=qdts[(i + j) % 3],
                              kv=kv, batch=["decode", "prefill", "mixed"][j], k_scale=0.05 * (j + 1),
                              v_scale=0.03 / (j + 1)))
    # 3. Every head size x every query dtype.
    for d in HEAD_SIZES:
        for qdt in qdts:
            cases.append(dict(layout="kvfirst", bs=32, d=d, hq=8, hkv=2, qdt=qdt, kv="auto", batch="mixed"))
    # 4. Every GQA ratio (and MQA), decode and prefill.
    for hq, hkv in gqas:
        for kind in ("decode", "prefill"):
            cases.append(dict(layout="blocksfirst", bs=16, d=128, hq=hq, hkv=hkv, qdt="bf16", kv="auto",
                              batch=kind))
    # 5. Features, alone and together, on decode / prefill / mixed batches.
    feats = [dict(window=1), dict(window=2), dict(window=16), dict(window=300), dict(alibi=True),
             dict(sinks=True), dict(soft_cap=30.0), dict(causal=False),
             dict(window=64, alibi=True, sinks=True, soft_cap=50.0),
             dict(causal=False, window=40, sinks=True)]
    for i, f in enumerate(feats):
        for kind in ("decode", "prefill", "mixed"):
            cases.append(dict(layout=LAYOUTS[i % 4], bs=[16, 784, 64, 1056][i % 4], d=128, hq=16, hkv=4,
                              qdt=qdts[i % 3], kv="auto", batch=kind, **f))
    # 6. fp8 outputs (every format) with fp8 and auto caches.
    for i, of in enumerate(fp8s):
        cases.append(dict(layout="kvfirst", bs=16, d=128, hq=16, hkv=4, qdt=qdts[i], kv=["auto", "fp8_e4m3fn",
                          "fp8_e5m2"][i], batch="mixed", out_fp8=of, out_scale=0.02 * (i + 1)))
    # 7. Split-KV (long contexts, few work-groups): single decodes, with sinks and windows.
    for i, bs in enumerate((16, 544, 4096)):
        cases.append(dict(layout=LAYOUTS[i], bs=bs, d=128, hq=32, hkv=8, qdt="bf16", kv="auto",
                          batch=[(1, 20000 + 7 * i), (1, 5 * bs + 1)], sinks=(i == 1), name="split-kv"))
    cases.append(dict(layout="kvfirst", bs=16, d=256, hq=8, hkv=8, qdt="f16", kv="fp8_e4m3fn",
                      batch=[(1, 30000)], window=5000, name="split-kv"))
    cases.append(dict(layout="nhd", bs=16, d=64, hq=4, hkv=1, qdt="f32", kv="auto",
                      batch=[(3, 12000), (0, 50)], causal=False, pad_tokens=4, name="split-kv"))
    # 8. The same features with a single-pass plan: padding rows (past query_start_loc[-1], never
    # written) raise the graph-safe q-block bound until the work-groups fill the GPU.
    single = [dict(c, pad_tokens=2200, name="single-pass") for c in cases
              if c["kv"] != "auto" or any(k in c for k in ("window", "alibi", "sinks", "soft_cap", "causal",
                                                              "out_fp8"))]
    cases += single
    # 9. Over 65,536 blocks and over 4 GiB of cache: 64-bit offsets.
    cases.append(dict(layout="kvfirst", bs=16, d=128, hq=16, hkv=8, qdt="f16", kv="auto", num_blocks=70000,
                      high_blocks=True, batch=[(1, 1000), (5, 333), (1, 17)], name="large-cache"))
    cases.append(dict(layout="nhd", bs=16, d=128, hq=16, hkv=8, qdt="bf16", kv="auto", num_blocks=70000,
                      high_blocks=True, batch=[(1, 1000), (9, 77)], name="large-cache"))
    return cases


def resolve_batch(c, rng):
    b = c["batch"]
    if isinstance(b, str):
        c = dict(c, batch_kind=b, batch=batch_for(b, c["bs"], rng))
    return c


def describe(kind, c):
    keys = ["layout", "bs", "d", "hq", "hkv", "h", "qdt", "src", "kv", "window", "alibi", "sinks", "soft_cap",
            "causal", "out_fp8", "src_strided", "slot_out_of_range", "runs", "num_blocks", "name", "batch_kind"]
    parts = [f"{k}={c[k]}" for k in keys if k in c and c[k] not in (None, False)]
    return kind + " " + " ".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", choices=["full", "reduced"], default="full")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--seed", type=int, default=20250101)
    ap.add_argument("--only", choices=["write", "attention"], default=None)
    ap.add_argument("--tag", default=None, help="names the output files (default: the suite)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    device = "cpu dry run" if DRY else f"{torch.cuda.get_device_properties(DEV).name} {pkv.device_limits(0)}"
    header = (f"pagedkv {pkv.version()} features {pkv.features()} targets {pkv.gpu_targets()} | "
              f"device {device} | torch {torch.__version__} | seed {args.seed}")
    print(header, flush=True)
    work = []
    if args.only in (None, "write"):
        work += [("write", c) for c in write_cases(args.suite)]
    if args.only in (None, "attention"):
        work += [("attention", c) for c in attention_cases(args.suite)]
    results = []
    tag = args.tag or args.suite
    log = open(os.path.join(args.out, f"results-{tag}.jsonl"), "w")
    t_start = time.time()
    for n, (kind, c) in enumerate(work):
        c = resolve_batch(c, rng) if kind == "attention" else c
        name = describe(kind, c)
        t0 = time.time()
        try:
            r = check_write(c, rng) if kind == "write" else check_attention(c, rng)
        except Exception as e:  # a failure of one case must not hide the others
            r = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=3)}
        r["case"] = name
        r["seconds"] = round(time.time() - t0, 2)
        if kind == "attention":
            r["batch"] = c["batch"]
        results.append((kind, r))
        log.write(json.dumps(r, default=str) + "\n")
        log.flush()
        status = "ok  " if r["ok"] else "FAIL"
        detail = {k: r[k] for k in ("path", "diff_bytes", "plan", "max_abs", "rel", "max_code_dist", "error")
                  if k in r}
        print(f"[{n + 1}/{len(work)}] {status} {name} {detail} ({r['seconds']}s)", flush=True)
        if not DRY:
            torch.cuda.empty_cache()
    elapsed = time.time() - t_start
    summary = summarize(header, tag, results, elapsed)
    with open(os.path.join(args.out, f"summary-{tag}.txt"), "w") as f:
        f.write(summary)
    print(summary)
    return 0 if all(r["ok"] for _, r in results) else 1


def summarize(header, suite, results, elapsed):
    lines = [header, f"suite {suite}: {len(results)} cases in {elapsed:.0f}s"]
    w = [r for k, r in results if k == "write"]
    a = [r for k, r in results if k == "attention"]
    if w:
        native = sum(1 for r in w if r.get("path") == "native")
        lines.append(f"writers: {sum(r['ok'] for r in w)}/{len(w)} bit-identical to the CPU backend "
                     f"({native} native, {len(w) - native} strided; "
                     f"{sum(r.get('bytes', 0) for r in w) / 2**20:.1f} MiB of cache compared byte for byte)")
    if a:
        fl = [r for r in a if "rel" in r]
        f8 = [r for r in a if "max_code_dist" in r]
        plans = {}
        for r in a:
            p = r.get("plan", "?").split(" bq")[0]
            plans[p] = plans.get(p, 0) + 1
        lines.append(f"attention: {sum(r['ok'] for r in a)}/{len(a)} within tolerance; plans: "
                     + ", ".join(f"{k} x{v}" for k, v in sorted(plans.items())))
        if fl:
            worst = max(fl, key=lambda r: r["rel"])
            lines.append(f"  worst float output: max|err|/max(1,|ref|) = {worst['rel']:.3g} "
                         f"(max|err| {worst['max_abs']:.3g}, l2 rel {worst['l2_rel']:.3g}) in {worst['case']}")
            for qdt in ("f32", "f16", "bf16"):
                sub = [r for r in fl if f"qdt={qdt} " in r["case"] + " "]
                if sub:
                    lines.append(f"    {qdt}: {len(sub)} cases, worst rel {max(r['rel'] for r in sub):.3g}, "
                                 f"worst l2 rel {max(r['l2_rel'] for r in sub):.3g} (tolerance {TOL[qdt]})")
        if f8:
            lines.append(f"  fp8 outputs: {len(f8)} cases, max code distance {max(r['max_code_dist'] for r in f8)}, "
                         f"{sum(r['codes_off_by_one'] for r in f8)} codes one step off")
        lines.append(f"  NaN-poisoned rows untouched where the CPU leaves them: "
                     f"{sum(r.get('nan_rows_match', False) for r in a)}/{len(a)}")
    bad = [r for _, r in results if not r["ok"]]
    for r in bad[:20]:
        lines.append(f"FAILED {r['case']}: " + json.dumps({k: v for k, v in r.items() if k not in ('case', 'trace')},
                                                            default=str)[:400])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
