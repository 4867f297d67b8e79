"""paged_attention against a float64 softmax over the visible keys (reference.attention)."""

import math

import ml_dtypes
import numpy as np
import pytest

import pagedkv
import reference as R
import scenarios as S

# A mixed batch: decode, a prefill chunk on top of context, a full prefill, a q_len-0
# (graph padding) sequence in the middle, decode at exact block multiples and at length 1.
MIXED = [(37, 1), (50, 13), (16, 16), (20, 0), (1, 1), (32, 1)]

TOL = {"float32": (2e-5, 2e-5), "float16": (2e-3, 2e-3), "bfloat16": (1.6e-2, 1.6e-2)}


def _check(out, want, batch, dtype="float32", pad_rows_value=None):
    rtol, atol = TOL[dtype]
    owned = ~np.isnan(want[:, 0, 0])
    got = np.asarray(out).astype(np.float64)
    assert np.isfinite(got[owned]).all()
    np.testing.assert_allclose(got[owned], want[owned], rtol=rtol, atol=atol)
    if pad_rows_value is not None:
        # Rows no sequence owns (past query_start_loc[-1]) are untouched.
        rest = got[~owned]
        assert np.array_equal(rest, np.full_like(rest, pad_rows_value), equal_nan=True)


@pytest.mark.parametrize("block_size", [1, 16, 544, 2048])
@pytest.mark.parametrize("cache_kind", ["kv_first", "hybrid", "nhd"])
def test_block_sizes_and_layouts(block_size, cache_kind):
    rng = np.random.default_rng(block_size)
    seqs = MIXED if block_size < 544 else [(600, 1), (30, 7), (0, 0), (1100, 3)]
    if block_size == 2048:
        seqs = [(2100, 1), (30, 7), (2048, 2)]
    b = S.build(rng, seqs=seqs, block_size=block_size, num_kv_heads=2, gqa=2, head_size=64, cache_kind=cache_kind)
    out = S.run(b)
    assert out.dtype == b.query.dtype and out.shape == b.query.shape
    _check(out, S.reference(b), b)


@pytest.mark.parametrize("num_kv_heads,gqa", [(4, 1), (2, 4), (1, 8), (3, 5)])
def test_gqa_and_mqa(num_kv_heads, gqa):
    rng = np.random.default_rng(gqa)
    b = S.build(rng, seqs=MIXED, block_size=16, num_kv_heads=num_kv_heads, gqa=gqa, head_size=32,
                cache_kind="padded")
    _check(S.run(b), S.reference(b), b)


@pytest.mark.parametrize("head_size", [32, 80, 96, 128, 256])
def test_head_sizes(head_size):
    rng = np.random.default_rng(head_size)
    b = S.build(rng, seqs=[(40, 1), (19, 5)], block_size=32, num_kv_heads=1, gqa=2, head_size=head_size)
    _check(S.run(b), S.reference(b), b)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_queries(dtype):
    rng = np.random.default_rng(21)
    b = S.build(rng, seqs=MIXED, block_size=16, num_kv_heads=2, gqa=2, head_size=64, dtype=dtype,
                cache_kind="hybrid")
    out = S.run(b)
    assert out.dtype == S.DTYPES[dtype]
    _check(out, S.reference(b), b, dtype)


@pytest.mark.parametrize("window", [1, 5, 16, 10_000])
@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_and_causality(window, causal):
    rng = np.random.default_rng(window)
    b = S.build(rng, seqs=MIXED, block_size=16, num_kv_heads=2, gqa=2, head_size=32)
    out = S.run(b, sliding_window=window, causal=causal)
    _check(out, S.reference(b, sliding_window=window, causal=causal), b)


def test_non_causal_prefill_differs_from_causal():
    rng = np.random.default_rng(2)
    b = S.build(rng, seqs=[(20, 20)], block_size=16, num_kv_heads=1, gqa=1, head_size=32)
    a, c = S.run(b, causal=True), S.run(b, causal=False)
    _check(c, S.reference(b, causal=False), b)
    assert np.allclose(a[-1], c[-1]) and not np.allclose(a[0], c[0])  # last row sees everything either way


def _alibi(hq):
    return np.array([2 ** (-8 * (i + 1) / hq) for i in range(hq)], np.float32)


def test_alibi_sinks_softcap_sm_scale():
    rng = np.random.default_rng(8)
    h, g, d = 2, 3, 64
    b = S.build(rng, seqs=MIXED, block_size=544, num_kv_heads=h, gqa=g, head_size=d, cache_kind="hybrid")
    slopes = _alibi(h * g)
    sinks = rng.standard_normal(h * g).astype(np.float32) * 2
    for kw in [dict(alibi_slopes=slopes), dict(sinks=sinks), dict(logits_soft_cap=3.0),
               dict(sm_scale=0.3), dict(alibi_slopes=slopes, sinks=sinks, logits_soft_cap=5.0, sliding_window=9,
                                        sm_scale=0.2)]:
        out = S.run(b, **kw)
        ref_kw = {k: v for k, v in kw.items()}
        _check(out, S.reference(b, **ref_kw), b)


def test_sinks_only_enlarge_the_denominator():
    rng = np.random.default_rng(4)
    b = S.build(rng, seqs=[(9, 1)], block_size=16, num_kv_heads=1, gqa=2, head_size=32)
    base = S.run(b)
    very_negative = S.run(b, sinks=np.full(2, -1e30, np.float32))
    assert np.allclose(base, very_negative, rtol=1e-6, atol=1e-7)
    huge = S.run(b, sinks=np.full(2, 1e4, np.float32))
    assert np.abs(huge).max() < 1e-30  # the sink takes all the weight, its value is zero


@pytest.mark.parametrize("kv_fp8", ["fp8", "fp8_e4m3fnuz", "fp8_e5m2"])
def test_fp8_kv_cache(kv_fp8):
    rng = np.random.default_rng(len(kv_fp8))
    b = S.build(rng, seqs=MIXED, block_size=16, num_kv_heads=2, gqa=2, head_size=64, kv_fp8=kv_fp8,
                k_scale=0.05, v_scale=1.7, cache_kind="hybrid")
    _check(S.run(b), S.reference(b), b)
    # Scales as Python floats give the same result.
    out = S.run(b, k_scale=0.05, v_scale=1.7)
    _check(out, S.reference(b), b)


@pytest.mark.parametrize("block_size", [16, 544])
def test_fp8_output(block_size):
    rng = np.random.default_rng(17)
    b = S.build(rng, seqs=MIXED, block_size=block_size, num_kv_heads=2, gqa=2, head_size=64)
    scale = 0.004
    out = S.run(b, output_scale=np.array([scale], np.float32))
    assert out.dtype == np.uint8 and out.shape == b.query.shape
    want = S.reference(b)
    owned = ~np.isnan(want[:, 0, 0])
    # pagedkv: fp8(out * (1/scale)) saturated, e4m3fn on the CPU. Compare dequantised values
    # with the quantised reference: equal up to one rounding step near ties.
    ref_scaled = want[owned] * np.float64(np.float32(1.0) / np.float32(scale))
    got = R.dequantize(out[owned], 1.0, "fp8_e4m3fn")
    exact = R.dequantize(R.quantize(ref_scaled, 1.0, "fp8_e4m3fn"), 1.0, "fp8_e4m3fn")
    assert np.isfinite(got).all()
    assert np.mean(got == exact) > 0.99
    np.testing.assert_allclose(got, np.clip(ref_scaled, -448, 448), rtol=2 ** -3, atol=2 ** -9)
    assert np.abs(ref_scaled).max() > 448  # saturation exercised
    # A caller-provided typed fp8 output.
    typed = np.zeros(b.query.shape, ml_dtypes.float8_e4m3fn)
    S.run(b, output=typed, output_scale=scale)
    assert np.array_equal(typed.view(np.uint8)[owned], out[owned])


def test_poisoned_output_rows_and_unwritten_slots():
    """NaN-filled output: every owned row fully written, rows past query_start_loc[-1] (and
    of q_len-0 sequences) untouched. NaN-filled unwritten cache slots never matter."""
    rng = np.random.default_rng(99)
    for block_size in (16, 544):
        b = S.build(rng, seqs=MIXED + [(5, 0)], block_size=block_size, num_kv_heads=2, gqa=2, head_size=32,
                    pad_tokens=3, poison=True)
        out = np.full(b.query.shape, np.nan, np.float32)
        ret = S.run(b, output=out)
        assert ret is out
        _check(out, S.reference(b), b, pad_rows_value=np.nan)
        sentinel = np.full(b.query.shape, 12345.0, np.float32)
        S.run(b, output=sentinel)
        _check(sentinel, S.reference(b), b, pad_rows_value=12345.0)


def test_strided_query_and_output():
    rng = np.random.default_rng(12)
    b = S.build(rng, seqs=MIXED, block_size=16, num_kv_heads=2, gqa=2, head_size=32)
    t, hq, d = b.query.shape
    qbig = np.zeros((t, hq + 3, d * 2), np.float32)
    qv = qbig[:, 1:hq + 1, ::2]  # non-contiguous view
    qv[...] = b.query
    obig = np.full((t, hq, d + 8), -5.0, np.float32)
    ov = obig[:, :, :d]
    pagedkv.paged_attention(qv, b.key_cache, b.value_cache, b.block_table, b.seq_lens, b.query_start_loc,
                            output=ov)
    _check(ov, S.reference(b), b)
    assert (obig[:, :, d:] == -5.0).all()


def test_empty_and_zero_length_sequences():
    rng = np.random.default_rng(0)
    b = S.build(rng, seqs=[(0, 0), (3, 1), (0, 0)], block_size=16, num_kv_heads=1, gqa=1, head_size=32)
    _check(S.run(b), S.reference(b), b)


def test_defaults_match_contract():
    """sm_scale None = 1/sqrt(D); sliding_window None/0 = off; causal default True."""
    rng = np.random.default_rng(6)
    b = S.build(rng, seqs=[(30, 6)], block_size=16, num_kv_heads=1, gqa=1, head_size=64)
    a = S.run(b)
    np.testing.assert_allclose(a, S.run(b, sm_scale=1 / math.sqrt(64), sliding_window=0, causal=True), rtol=1e-6)
    np.testing.assert_allclose(a, S.run(b, sliding_window=-3), rtol=1e-6)


def test_attention_errors_write_nothing():
    rng = np.random.default_rng(3)
    b = S.build(rng, seqs=[(40, 1), (20, 4)], block_size=16, num_kv_heads=2, gqa=2, head_size=32,
                table_extra_cols=0)
    out = np.full(b.query.shape, 7.0, np.float32)
    args = (b.query, b.key_cache, b.value_cache)

    def call(**kw):
        bt = kw.pop("block_table", b.block_table)
        sl = kw.pop("seq_lens", b.seq_lens)
        qsl = kw.pop("query_start_loc", b.query_start_loc)
        q = kw.pop("query", b.query)
        with pytest.raises(pagedkv.Error) as e:
            pagedkv.paged_attention(q, b.key_cache, b.value_cache, bt, sl, qsl, output=out, **kw)
        assert (out == 7.0).all(), "nothing may be written on error"
        return e.value

    e = call(block_table=np.ascontiguousarray(b.block_table[:, :2]))  # seq 0 needs 3 blocks
    assert e.status == 110 and e.status_name == "PKV_STATUS_BLOCK_TABLE_TOO_SHORT"
    assert "seq_lens[0] = 40" in e.message and "3 blocks" in e.message
    bad = b.block_table.copy()
    bad[1, 0] = 10_000
    e = call(block_table=bad)
    assert e.status_name == "PKV_STATUS_BLOCK_ID_OUT_OF_RANGE" and "block_table[1][0]" in e.message
    e = call(seq_lens=np.array([40, 3], np.int32))
    assert e.status_name == "PKV_STATUS_INVALID_SEQ_LEN"
    e = call(query_start_loc=np.array([0, 3, 2], np.int32))
    assert e.status_name == "PKV_STATUS_INVALID_QUERY_START_LOC"
    e = call(block_table=b.block_table.astype(np.int64))
    assert e.status_name == "PKV_STATUS_INVALID_DTYPE" and "block_table" in e.message
    e = call(query=np.zeros((5, 4, 64), np.float32))  # head size disagrees with the cache
    assert e.status_name == "PKV_STATUS_SHAPE_MISMATCH" and "query.shape[2]" in e.message
    e = call(query=np.zeros((5, 3, 32), np.float32))  # 3 q heads over 2 kv heads
    assert e.status_name == "PKV_STATUS_GQA_RATIO_NOT_INTEGRAL"
    e = call(query=np.zeros((5, 4, 32), np.float64))
    assert e.status == 103 and "query" in e.message and "float64" in e.message
    e = call(kv_cache_dtype="fp16")
    assert e.status_name == "PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE"
    e = call(kv_cache_dtype="fp8")  # float caches are not fp8 storage
    assert e.status_name == "PKV_STATUS_INVALID_DTYPE"
    e = call(kv_layout="nhd")  # split caches described as nhd
    assert e.status_name == "PKV_STATUS_INVALID_NDIM"
    e = call(alibi_slopes=np.zeros(3, np.float32))
    assert e.status_name == "PKV_STATUS_SHAPE_MISMATCH" and "alibi_slopes" in e.message
    e = call(sm_scale=float("nan"))
    assert e.status_name == "PKV_STATUS_INVALID_VALUE" and "sm_scale" in e.message
    e = call(logits_soft_cap=-1.0)
    assert e.status_name == "PKV_STATUS_INVALID_VALUE"
    e = call(output_scale=np.array([0.5], np.float32))  # float32 output with output_scale
    assert e.status_name == "PKV_STATUS_INVALID_DTYPE" and "output" in e.message
    with pytest.raises(pagedkv.Error) as ei:  # wrong output dtype without output_scale
        pagedkv.paged_attention(*args, b.block_table, b.seq_lens, b.query_start_loc,
                                output=np.zeros(b.query.shape, np.float16))
    assert ei.value.status_name == "PKV_STATUS_INVALID_DTYPE"


def test_max_query_len_bound():
    """max_query_len is the caller's bound on any sequence's query tokens: a true bound changes
    no output; one a query exceeds is refused by name where the offsets are readable (here, the
    CPU backend) and nothing is written."""
    rng = np.random.default_rng(11)
    decode = S.build(rng, seqs=[(40, 1), (17, 1), (20, 0), (33, 1)], block_size=16, num_kv_heads=2, gqa=2,
                     head_size=32)
    free = S.run(decode)
    for bound in (1, 2, 64):
        bounded = S.run(decode, max_query_len=bound)
        assert np.array_equal(np.asarray(bounded), np.asarray(free), equal_nan=True)
    assert "no general kernel" not in pagedkv.paged_attention_plan(
        decode.query, decode.key_cache, decode.value_cache, decode.block_table, decode.seq_lens,
        decode.query_start_loc, max_query_len=1)["reason"]  # (CPU: one reference path)
    mixed = S.build(rng, seqs=[(40, 1), (20, 4)], block_size=16, num_kv_heads=2, gqa=2, head_size=32)
    _check(S.run(mixed, max_query_len=4), S.reference(mixed), mixed)
    for bound in (1, 3):
        needle = f"= 4 query tokens, more than max_query_len = {bound}"
        out = np.full(mixed.query.shape, 7.0, np.float32)
        with pytest.raises(pagedkv.Error) as e:
            S.run(mixed, output=out, max_query_len=bound)
        assert e.value.status_name == "PKV_STATUS_INVALID_VALUE" and needle in e.value.message, e.value.message
        assert (out == 7.0).all(), "nothing may be written on error"
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(pagedkv.Error) as e:
            S.run(mixed, max_query_len=bad)
        assert e.value.status_name == "PKV_STATUS_INVALID_VALUE" and "max_query_len" in e.value.message


def test_empty_batch_and_empty_write():
    h, d = 2, 64
    kv = np.zeros((2, 4, 16, h, d), np.float32)
    k, v = pagedkv.split_kv_cache(kv, h, d)
    out = pagedkv.paged_attention(np.zeros((0, 4, d), np.float32), k, v, np.zeros((0, 1), np.int32),
                                  np.zeros(0, np.int32), np.zeros(1, np.int32))
    assert out.shape == (0, 4, d)
    e = np.zeros((0, h, d), np.float32)
    assert pagedkv.write_kv_cache(e, e, k, v, np.zeros(0, np.int64)) == "native"
    assert not kv.any()
