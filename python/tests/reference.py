"""Independent float64 NumPy references for the pagedkv tests.

Nothing here calls pagedkv: cache placement follows the vLLM formulas (semantics §2.2/§2.3),
quantisation uses ml_dtypes' float8 casts (after clipping, since pagedkv saturates), and
attention is a direct softmax over the visible keys in float64.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

FP8 = {
    "fp8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "fp8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
    "fp8_e5m2": ml_dtypes.float8_e5m2,
}
# kv_cache_dtype spellings -> concrete format on the CPU (OCP e4m3fn for "fp8"/"fp8_e4m3").
CPU_FORMAT = {
    "fp8": "fp8_e4m3fn",
    "fp8_e4m3": "fp8_e4m3fn",
    "fp8_e4m3fn": "fp8_e4m3fn",
    "fp8_e4m3fnuz": "fp8_e4m3fnuz",
    "fp8_e5m2": "fp8_e5m2",
}
NAN_CODE = {"fp8_e4m3fn": 0x7F, "fp8_e4m3fnuz": 0x80, "fp8_e5m2": 0x7F}


def fp8_max(fmt: str) -> float:
    return float(ml_dtypes.finfo(FP8[fmt]).max)


def quantize(x, scale: float, fmt: str) -> np.ndarray:
    """uint8 codes of saturate(rne(x / scale)), the division in float32."""
    v = np.asarray(x, dtype=np.float32) / np.float32(scale)
    m = np.float32(fp8_max(fmt))
    return np.clip(v, -m, m).astype(FP8[fmt]).view(np.uint8)


def dequantize(codes, scale: float, fmt: str) -> np.ndarray:
    return np.asarray(codes, dtype=np.uint8).view(FP8[fmt]).astype(np.float64) * np.float64(np.float32(scale))


def x_of(dtype) -> int:
    return 16 // np.dtype(dtype).itemsize


# ---------------------------------------------------------------------------------------------
# Combined-cache allocations (vLLM ROCm: (2, num_blocks, block_size, H, D) and strided views)
# ---------------------------------------------------------------------------------------------
def make_kv_cache(kind: str, nb: int, bs: int, h: int, d: int, dtype, pad: int = 0, fill=0):
    """Returns (kv_cache view [2, nb, bs, h, d], raw 1-D buffer, k_base, v_base, block_stride),
    offsets in elements of the raw buffer.

    kind: "kv_first" (vLLM's allocation), "blocks_first" ((nb, 2, ...) permuted to (2, nb, ...)),
    "hybrid" (K/V-first memory restrided to dim-0/1 strides (hidden, 2*hidden)),
    "padded" (hybrid pages with `pad` extra elements after each page)."""
    hidden = bs * h * d
    it = np.dtype(dtype).itemsize
    inner = (h * d * it, d * it, it)
    if kind == "kv_first":
        raw = np.full(2 * nb * hidden, fill, dtype=dtype)
        s0, s1 = nb * hidden, hidden
    elif kind == "blocks_first":
        raw = np.full(2 * nb * hidden, fill, dtype=dtype)
        s0, s1 = hidden, 2 * hidden
        kv = raw.reshape(nb, 2, bs, h, d).transpose(1, 0, 2, 3, 4)
        assert kv.strides == (s0 * it, s1 * it) + inner
        return kv, raw, 0, s0, s1
    elif kind == "hybrid":
        raw = np.full(2 * nb * hidden, fill, dtype=dtype)
        s0, s1 = hidden, 2 * hidden
    elif kind == "padded":
        page = 2 * hidden + pad
        raw = np.full(nb * page, fill, dtype=dtype)
        s0, s1 = hidden, page
    else:
        raise ValueError(kind)
    u = raw.view(np.dtype(f"u{it}"))  # as_strided cannot spell every ml_dtypes type
    kv = np.lib.stride_tricks.as_strided(u, (2, nb, bs, h, d), (s0 * it, s1 * it) + inner).view(raw.dtype)
    return kv, raw, 0, s0, s1


def split_key_offset(k_base, s_blk, h, d, bs, x, b, head, dim, t):
    """vLLM §2.2: K(b, h, d, t) = b*S0 + h*(D*bs) + (d div x)*(bs*x) + t*x + (d mod x)."""
    return k_base + b * s_blk + head * (d * bs) + (dim // x) * (bs * x) + t * x + (dim % x)


def split_value_offset(v_base, s_blk, h, d, bs, b, head, dim, t):
    """vLLM §2.2: V(b, h, d, t) = b*S0 + h*(D*bs) + d*bs + t."""
    return v_base + b * s_blk + head * (d * bs) + dim * bs + t


def element_offsets(view: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Offset (in elements of raw) of every element of `view`, from its own strides."""
    it = raw.itemsize
    base = (view.__array_interface__["data"][0] - raw.__array_interface__["data"][0]) // it
    idx = np.indices(view.shape)
    off = np.full(view.shape, base, dtype=np.int64)
    for axis, s in enumerate(view.strides):
        off += idx[axis] * (s // it)
    return off


def expected_split_writes(raw, k_base, v_base, s_blk, h, d, bs, key, value, slots, stored_k=None, stored_v=None):
    """The raw buffer after writing `key`/`value` rows at `slots` into split-layout caches.
    `stored_k`/`stored_v` override the stored values (e.g. fp8 codes)."""
    out = raw.copy()
    x = x_of(raw.dtype)
    sk = key if stored_k is None else stored_k
    sv = value if stored_v is None else stored_v
    for t, slot in enumerate(slots):
        if slot < 0:
            continue
        b, o = divmod(int(slot), bs)
        for head in range(h):
            dims = np.arange(d)
            out[split_key_offset(k_base, s_blk, h, d, bs, x, b, head, dims, o)] = sk[t, head]
            out[split_value_offset(v_base, s_blk, h, d, bs, b, head, dims, o)] = sv[t, head]
    return out


# ---------------------------------------------------------------------------------------------
# Reading / filling caches by logical position
# ---------------------------------------------------------------------------------------------
def set_slot(layout: str, key_cache, value_cache, block: int, offset: int, k, v):
    """Stores k, v [H, D] (already in the cache's dtype) at one slot."""
    if layout == "split":
        h, dx, _, x = key_cache.shape[1], key_cache.shape[2], key_cache.shape[3], key_cache.shape[4]
        key_cache[block, :, :, offset, :] = k.reshape(h, dx, x)
        value_cache[block, :, :, offset] = v
    else:
        key_cache[block, offset] = k
        value_cache[block, offset] = v


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------
def attention(q, keys, values, seq_lens, query_start_loc, num_kv_heads, *, sm_scale=None, sliding_window=None,
              alibi_slopes=None, sinks=None, logits_soft_cap=None, causal=True):
    """float64 reference. q [T, Hq, D]; keys/values: per sequence [seq_len, H, D] float64.
    Returns [T, Hq, D] with NaN in rows no sequence owns."""
    q = np.asarray(q, dtype=np.float64)
    t_total, hq, d = q.shape
    g = hq // num_kv_heads
    scale = 1.0 / math.sqrt(d) if sm_scale is None else float(sm_scale)
    out = np.full((t_total, hq, d), np.nan)
    heads = np.arange(hq) // g
    for i, sl in enumerate(seq_lens):
        start, end = int(query_start_loc[i]), int(query_start_loc[i + 1])
        ql = end - start
        if ql == 0:
            continue
        kh = keys[i][:, heads, :]  # [sl, Hq, D]
        vh = values[i][:, heads, :]
        j = np.arange(sl)
        for t in range(ql):
            p = sl - ql + t
            row = start + t
            vis = np.ones(sl, dtype=bool)
            if causal:
                vis &= j <= p
            if sliding_window is not None and sliding_window > 0:
                vis &= (p - j) < sliding_window
            s = scale * np.einsum("hd,jhd->hj", q[row], kh)
            if logits_soft_cap:
                c = float(logits_soft_cap)
                s = c * np.tanh(s / c)
            if alibi_slopes is not None:
                s = s + np.asarray(alibi_slopes, np.float64)[:, None] * (j - p)[None, :]
            s = np.where(vis[None, :], s, -np.inf)
            m = s.max(axis=1) if sl else np.full(hq, -np.inf)
            if sinks is not None:
                m = np.maximum(m, np.asarray(sinks, np.float64))
            safe_m = np.where(np.isfinite(m), m, 0.0)
            w = np.where(vis[None, :], np.exp(s - safe_m[:, None]), 0.0)
            denom = w.sum(axis=1)
            if sinks is not None:
                denom = denom + np.exp(np.asarray(sinks, np.float64) - safe_m)
            acc = np.einsum("hj,jhd->hd", w, vh)
            out[row] = np.where(denom[:, None] > 0, acc / np.where(denom > 0, denom, 1.0)[:, None], 0.0)
    return out
