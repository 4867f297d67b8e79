"""split_kv_cache views and has_native_layout against vLLM's placement formulas."""

import ml_dtypes
import numpy as np
import pytest

import pagedkv
import reference as R

KINDS = ["kv_first", "blocks_first", "hybrid", "padded"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, ml_dtypes.bfloat16, np.uint8, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2])
@pytest.mark.parametrize("bs", [16, 544])
def test_split_views_match_vllm_formulas(kind, dtype, bs):
    nb, h, d = 3, 2, 32
    kv, raw, k_base, v_base, s_blk = R.make_kv_cache(kind, nb, bs, h, d, dtype, pad=48)
    key, value = pagedkv.split_kv_cache(kv, h, d)
    x = R.x_of(dtype)
    assert x == 16 // np.dtype(dtype).itemsize
    assert key.shape == (nb, h, d // x, bs, x) and value.shape == (nb, h, d, bs)
    assert key.dtype == raw.dtype and value.dtype == raw.dtype
    assert np.shares_memory(key, raw) and np.shares_memory(value, raw)
    it = raw.itemsize
    assert key.strides[0] == s_blk * it and value.strides[0] == s_blk * it  # block stride preserved
    # Every element sits where the formula says.
    b, hh, dhi, t, dlo = np.indices(key.shape)
    want_k = R.split_key_offset(k_base, s_blk, h, d, bs, x, b, hh, dhi * x + dlo, t)
    assert np.array_equal(R.element_offsets(key, raw), want_k)
    b, hh, dd, t = np.indices(value.shape)
    want_v = R.split_value_offset(v_base, s_blk, h, d, bs, b, hh, dd, t)
    assert np.array_equal(R.element_offsets(value, raw), want_v)


@pytest.mark.parametrize("kind", KINDS)
def test_split_views_share_memory_both_ways(kind):
    nb, bs, h, d = 4, 16, 2, 64
    kv, raw, _, _, _ = R.make_kv_cache(kind, nb, bs, h, d, np.float32)
    raw[:] = np.arange(raw.size, dtype=np.float32)
    key, value = pagedkv.split_kv_cache(kv, h, d)
    # The values read through the views are the raw elements at the formula's offsets.
    assert np.array_equal(key, raw[R.element_offsets(key, raw)])
    # K of block 2 is kv[0, 2] reinterpreted; V of block 1 is kv[1, 1] reinterpreted.
    assert np.array_equal(np.sort(key[2].ravel()), np.sort(kv[0, 2].ravel()))
    assert np.array_equal(np.sort(value[1].ravel()), np.sort(kv[1, 1].ravel()))
    # Writes through a view land in the allocation.
    key[1, 1, 3, 5, 2] = -7.0
    value[3, 0, 9, 15] = -9.0
    assert (raw == -7.0).sum() == 1 and (raw == -9.0).sum() == 1
    assert (kv == -7.0).sum() == 1 and (kv == -9.0).sum() == 1


def test_has_native_layout():
    nb, bs, h, d = 3, 16, 2, 64
    for kind, native in [("kv_first", True), ("blocks_first", False), ("hybrid", False), ("padded", False)]:
        kv, *_ = R.make_kv_cache(kind, nb, bs, h, d, np.float16, pad=8)
        k, v = pagedkv.split_kv_cache(kv, h, d)
        assert pagedkv.has_native_layout(k, v) is native, kind
        # vLLM's predicate, computed here.
        want = all(t.strides[0] // t.itemsize == int(np.prod(t.shape[1:])) for t in (k, v))
        assert want is native
    # NHD caches: packed vs padded blocks; one padded cache is enough to be non-native.
    packed = np.zeros((4, 16, 2, 64), np.float16)
    padded = np.zeros((4, 16 * 2 * 64 + 64), np.float16)[:, : 16 * 2 * 64].reshape(4, 16, 2, 64)
    assert pagedkv.has_native_layout(packed, packed) is True
    assert pagedkv.has_native_layout(packed, padded) is False
    assert pagedkv.has_native_layout(padded, packed) is False


def test_split_errors():
    kv = np.zeros((2, 3, 16, 2, 12), np.float16)  # head_size 12, x = 8
    with pytest.raises(pagedkv.Error) as e:
        pagedkv.split_kv_cache(kv, 2, 12)
    assert e.value.status_name == "PKV_STATUS_HEAD_SIZE_NOT_DIVISIBLE"
    with pytest.raises(pagedkv.Error) as e:
        pagedkv.split_kv_cache(np.zeros((3, 3, 16, 2, 64), np.float16), 2, 64)
    assert e.value.status_name == "PKV_STATUS_SHAPE_MISMATCH" and "kv_cache" in e.value.message
    with pytest.raises(pagedkv.Error) as e:
        pagedkv.split_kv_cache(np.zeros((2, 3, 16, 2, 64), np.float16), 4, 64)
    assert e.value.status_name == "PKV_STATUS_SHAPE_MISMATCH"
    with pytest.raises(pagedkv.Error) as e:
        pagedkv.split_kv_cache(np.zeros((2, 3, 16, 2, 64), np.float64), 2, 64)
    assert e.value.status_name == "PKV_STATUS_INVALID_DTYPE" and "float64" in e.value.message
    # A reversed view: negative strides are rejected clearly.
    with pytest.raises(ValueError) as e:
        pagedkv.split_kv_cache(np.zeros((2, 3, 16, 2, 64), np.float16)[:, ::-1], 2, 64)
    assert e.value.status_name == "PKV_STATUS_INVALID_STRIDE" and "negative" in str(e.value)
