"""Builders of attention test batches: caches filled slot by slot through NumPy indexing
(not through pagedkv), unwritten memory poisoned with NaN."""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np

import reference as R

DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


@dataclasses.dataclass
class Batch:
    query: np.ndarray
    key_cache: np.ndarray
    value_cache: np.ndarray
    block_table: np.ndarray
    seq_lens: np.ndarray
    query_start_loc: np.ndarray
    keys: list  # per sequence [seq_len, H, D] float64 (dequantised)
    values: list
    num_kv_heads: int
    layout: str
    kv_cache_dtype: str = "auto"
    k_scale: float = 1.0
    v_scale: float = 1.0
    raws: tuple = ()  # the 1-D allocations the caches view (to rebuild them elsewhere)


def build(rng, *, seqs, block_size, num_kv_heads, gqa, head_size, dtype="float32", cache_kind="kv_first",
          kv_fp8=None, k_scale=1.0, v_scale=1.0, extra_blocks=1, pad_tokens=0, table_extra_cols=1, poison=True):
    """seqs: list of (seq_len, q_len). cache_kind: "kv_first", "hybrid", "padded" (split
    layout through split_kv_cache) or "nhd" / "nhd_padded". kv_fp8: None or a CPU fp8 format
    name (caches uint8). pad_tokens: extra query rows past query_start_loc[-1]."""
    import pagedkv

    bs, h, d = block_size, num_kv_heads, head_size
    hq = h * gqa
    mdt = DTYPES[dtype]
    cache_dt = np.uint8 if kv_fp8 else mdt
    need = [(sl + bs - 1) // bs for sl, _ in seqs]
    nb = sum(need) + extra_blocks
    if kv_fp8:
        fill = R.NAN_CODE[R.CPU_FORMAT[kv_fp8]] if poison else 0
    else:
        fill = np.nan if poison else 0
    if cache_kind in ("kv_first", "hybrid", "padded"):
        kv, raw, _, _, _ = R.make_kv_cache(cache_kind, nb, bs, h, d, cache_dt, pad=24, fill=fill)
        kc, vc = pagedkv.split_kv_cache(kv, h, d)
        raws = (raw,)
        layout = "split"
    else:
        page = bs * h * d + (40 if cache_kind == "nhd_padded" else 0)
        raw_k = np.full(nb * page, fill, dtype=cache_dt)
        raw_v = np.full(nb * page, fill, dtype=cache_dt)
        it = np.dtype(cache_dt).itemsize
        strides = (page * it, h * d * it, d * it, it)
        kc = np.lib.stride_tricks.as_strided(raw_k, (nb, bs, h, d), strides)
        vc = np.lib.stride_tricks.as_strided(raw_v, (nb, bs, h, d), strides)
        raws = (raw_k, raw_v)
        layout = "nhd"
    perm = rng.permutation(nb)
    width = max(need) + table_extra_cols if need else 1
    # Columns past a sequence's blocks hold ids far outside the cache: they must never be read.
    table = np.full((len(seqs), width), 10**6, dtype=np.int32)
    keys, values = [], []
    nxt = 0
    for i, (sl, _) in enumerate(seqs):
        blocks = perm[nxt:nxt + need[i]]
        nxt += need[i]
        table[i, :need[i]] = blocks
        k = rng.standard_normal((sl, h, d)).astype(np.float32)
        v = rng.standard_normal((sl, h, d)).astype(np.float32)
        if kv_fp8:
            fmt = R.CPU_FORMAT[kv_fp8]
            k = k * 3.0  # spread over the fp8 range
            ks, vs = R.quantize(k, k_scale, fmt), R.quantize(v, v_scale, fmt)
            keys.append(R.dequantize(ks, k_scale, fmt))
            values.append(R.dequantize(vs, v_scale, fmt))
        else:
            ks, vs = k.astype(mdt), v.astype(mdt)
            keys.append(ks.astype(np.float64))
            values.append(vs.astype(np.float64))
        for j in range(sl):
            R.set_slot(layout, kc, vc, int(blocks[j // bs]), j % bs, ks[j], vs[j])
    qlens = [ql for _, ql in seqs]
    qsl = np.concatenate([[0], np.cumsum(qlens)]).astype(np.int32)
    q = rng.standard_normal((int(qsl[-1]) + pad_tokens, hq, d)).astype(np.float32).astype(mdt)
    return Batch(q, kc, vc, table, np.array([sl for sl, _ in seqs], np.int32), qsl, keys, values, h, layout,
                 kv_fp8 or "auto", k_scale, v_scale, raws)


def reference(batch: Batch, **kw):
    return R.attention(batch.query.astype(np.float64), batch.keys, batch.values, batch.seq_lens,
                       batch.query_start_loc, batch.num_kv_heads, **kw)


def run(batch: Batch, **kw):
    import pagedkv

    kw.setdefault("kv_layout", batch.layout)
    if batch.kv_cache_dtype != "auto":
        kw.setdefault("kv_cache_dtype", batch.kv_cache_dtype)
        kw.setdefault("k_scale", np.array([batch.k_scale], np.float32))
        kw.setdefault("v_scale", np.array([batch.v_scale], np.float32))
    return pagedkv.paged_attention(batch.query, batch.key_cache, batch.value_cache, batch.block_table,
                                   batch.seq_lens, batch.query_start_loc, **kw)
