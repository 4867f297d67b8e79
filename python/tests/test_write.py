"""write_kv_cache against placement by vLLM's formulas and ml_dtypes' fp8 casts."""

import ml_dtypes
import numpy as np
import pytest

import pagedkv
import reference as R

BF16 = ml_dtypes.bfloat16


def _bytes_equal(a, b):
    return np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))


def _slots(rng, n, nb, bs, negatives=2):
    s = rng.choice(nb * bs, size=n, replace=False).astype(np.int64)
    s[rng.choice(n, size=negatives, replace=False)] = -1
    s[0] = nb * bs - 1  # the last slot of the cache
    return s


@pytest.mark.parametrize(
    "kind,bs,path",
    [("kv_first", 16, "native"), ("kv_first", 32, "native"), ("kv_first", 64, "strided"),
     ("hybrid", 16, "strided"), ("hybrid", 544, "strided"), ("padded", 32, "strided"),
     ("blocks_first", 544, "strided"), ("kv_first", 544, "strided")],
)
@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32])
def test_write_split_layouts(kind, bs, path, dtype):
    rng = np.random.default_rng(bs + len(kind))
    nb, h, d = 4, 2, 64
    kv, raw, kb, vb, sb = R.make_kv_cache(kind, nb, bs, h, d, dtype, pad=16, fill=np.nan)
    kc, vc = pagedkv.split_kv_cache(kv, h, d)
    n = 9
    key = rng.standard_normal((n + 3, h, d)).astype(dtype)  # 3 padding rows past slot_mapping
    value = rng.standard_normal((n + 3, h, d)).astype(dtype)
    slots = _slots(rng, n, nb, bs)
    want = R.expected_split_writes(raw, kb, vb, sb, h, d, bs, key, value, slots)
    got = pagedkv.write_kv_cache(key, value, kc, vc, slots)
    assert got == path
    assert _bytes_equal(raw, want)  # written slots right, nothing else touched (NaN kept)


@pytest.mark.parametrize("padded", [False, True])
def test_write_nhd(padded):
    rng = np.random.default_rng(7)
    nb, bs, h, d = 3, 544, 2, 32
    page = bs * h * d + (24 if padded else 0)
    raw_k = np.full(nb * page, np.nan, np.float16)
    raw_v = np.full(nb * page, np.nan, np.float16)
    strides = (page * 2, h * d * 2, d * 2, 2)
    kc = np.lib.stride_tricks.as_strided(raw_k, (nb, bs, h, d), strides)
    vc = np.lib.stride_tricks.as_strided(raw_v, (nb, bs, h, d), strides)
    key = rng.standard_normal((6, h, d)).astype(np.float16)
    value = rng.standard_normal((6, h, d)).astype(np.float16)
    slots = np.array([0, 543, -5, 1000, nb * bs - 1], np.int64)  # shorter than key
    wk, wv = raw_k.copy(), raw_v.copy()
    for t, s in enumerate(slots):
        if s < 0:
            continue
        b, o = divmod(int(s), bs)
        base = b * page + o * h * d
        wk[base:base + h * d] = key[t].ravel()
        wv[base:base + h * d] = value[t].ravel()
    assert pagedkv.write_kv_cache(key, value, kc, vc, slots, kv_layout="nhd") == "strided"
    assert _bytes_equal(raw_k, wk) and _bytes_equal(raw_v, wv)


def test_native_and_strided_writers_agree():
    """A packed split cache written natively holds the bytes the formula (= strided) gives."""
    rng = np.random.default_rng(3)
    nb, bs, h, d = 5, 16, 4, 128
    kv, raw, kb, vb, sb = R.make_kv_cache("kv_first", nb, bs, h, d, np.float16)
    kc, vc = pagedkv.split_kv_cache(kv, h, d)
    key = rng.standard_normal((20, h, d)).astype(np.float16)
    slots = rng.permutation(nb * bs)[:20].astype(np.int64)
    assert pagedkv.write_kv_cache(key, -key, kc, vc, slots) == "native"
    assert _bytes_equal(raw, R.expected_split_writes(np.zeros_like(raw), kb, vb, sb, h, d, bs, key, -key, slots))


def _fp8_inputs(rng, n, h, d, fmt, scale):
    m = R.fp8_max(fmt)
    x = rng.standard_normal((n, h, d)).astype(np.float32) * (m * scale / 8)
    x[0, 0, :8] = np.array([1e9, -1e9, 1.01 * m * scale, -1.5 * m * scale, 0.0, -0.0, 1e-30, -1e-30])
    return x


@pytest.mark.parametrize("kv_cache_dtype", ["fp8", "fp8_e4m3", "fp8_e4m3fn", "fp8_e4m3fnuz", "fp8_e5m2"])
@pytest.mark.parametrize("kind,bs", [("kv_first", 16), ("hybrid", 544)])
@pytest.mark.parametrize("src_dtype", [np.float32, BF16])
def test_write_fp8_quantisation(kv_cache_dtype, kind, bs, src_dtype):
    rng = np.random.default_rng(11)
    fmt = R.CPU_FORMAT[kv_cache_dtype]
    nb, h, d = 3, 2, 64
    k_scale, v_scale = 0.37, 2.5
    kv, raw, kb, vb, sb = R.make_kv_cache(kind, nb, bs, h, d, np.uint8, fill=0xAB)
    kc, vc = pagedkv.split_kv_cache(kv, h, d)
    n = 7
    key = _fp8_inputs(rng, n, h, d, fmt, k_scale).astype(src_dtype)
    value = _fp8_inputs(rng, n, h, d, fmt, v_scale).astype(src_dtype)
    slots = _slots(rng, n, nb, bs, negatives=1)
    want = R.expected_split_writes(raw, kb, vb, sb, h, d, bs, key, value, slots,
                                   stored_k=R.quantize(key, k_scale, fmt), stored_v=R.quantize(value, v_scale, fmt))
    path = pagedkv.write_kv_cache(key, value, kc, vc, slots, kv_cache_dtype,
                                  np.array([k_scale], np.float32), np.array([v_scale], np.float32))
    assert path == ("native" if kind == "kv_first" else "strided")
    assert np.array_equal(raw, want)


def test_fp8_rounding_is_nearest_even_and_saturating():
    """Values on and around every rounding boundary of each format, compared code for code."""
    h, d = 1, 16
    for kv_cache_dtype, fmt in [("fp8_e4m3fn", "fp8_e4m3fn"), ("fp8_e4m3fnuz", "fp8_e4m3fnuz"),
                                ("fp8_e5m2", "fp8_e5m2")]:
        codes = np.arange(256, dtype=np.uint8).view(R.FP8[fmt]).astype(np.float32)
        codes = np.unique(codes[np.isfinite(codes)])
        mids = (codes[:-1] + codes[1:]) / 2  # exact halfway points (ties)
        vals = np.concatenate([codes, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
                               [np.inf, -np.inf, 1e38, -1e38]]).astype(np.float32)
        vals = np.concatenate([vals, np.zeros((-len(vals)) % d, np.float32)])
        key = vals.reshape(-1, h, d)
        n = key.shape[0]
        nb, bs = (n + 15) // 16, 16
        kv = np.zeros((2, nb, bs, h, d), np.uint8)
        kc, vc = pagedkv.split_kv_cache(kv, h, d)
        slots = np.arange(n, dtype=np.int64)
        pagedkv.write_kv_cache(key, key, kc, vc, slots, kv_cache_dtype)  # scales None = 1.0
        got = kc.transpose(0, 3, 1, 2, 4).reshape(nb * bs, h, d)[:n]
        assert np.array_equal(got, R.quantize(key, 1.0, fmt)), fmt


def test_scales_as_python_floats_and_typed_fp8_caches():
    rng = np.random.default_rng(5)
    nb, bs, h, d = 2, 32, 2, 32
    key = rng.standard_normal((4, h, d)).astype(np.float16) * 10
    slots = np.array([3, 40, -1, 63], np.int64)
    a = np.zeros((2, nb, bs, h, d), np.uint8)
    b = np.zeros((2, nb, bs, h, d), ml_dtypes.float8_e5m2)
    ka, va = pagedkv.split_kv_cache(a, h, d)
    kb, vb = pagedkv.split_kv_cache(b, h, d)
    pagedkv.write_kv_cache(key, key, ka, va, slots, "fp8_e5m2", np.array([0.5], np.float32),
                           np.array([4.0], np.float32))
    pagedkv.write_kv_cache(key, key, kb, vb, slots, "fp8_e5m2", 0.5, 4.0)  # floats + typed cache
    assert np.array_equal(a, b.view(np.uint8))
    assert a.any()
    # A typed cache whose format disagrees with kv_cache_dtype is refused.
    with pytest.raises(pagedkv.Error) as e:
        pagedkv.write_kv_cache(key, key, kb, vb, slots, "fp8_e4m3fn")
    assert e.value.status_name == "PKV_STATUS_INVALID_DTYPE"


def test_write_through_dlpack_objects():
    """Objects exposing only __dlpack__/__dlpack_device__ take the DLPack import path."""

    class Wrapped:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    rng = np.random.default_rng(9)
    nb, bs, h, d = 2, 16, 2, 64
    kv1 = np.zeros((2, nb, bs, h, d), np.float32)
    kv2 = np.zeros_like(kv1)
    key = rng.standard_normal((5, h, d)).astype(np.float32)
    slots = np.array([0, 7, 31, -1, 16], np.int64)
    k1, v1 = pagedkv.split_kv_cache(kv1, h, d)
    k2, v2 = pagedkv.split_kv_cache(Wrapped(kv2), h, d)
    assert np.shares_memory(k2, kv2)
    pagedkv.write_kv_cache(key, key * 2, k1, v1, slots)
    pagedkv.write_kv_cache(Wrapped(key), Wrapped(key * 2), Wrapped(k2), Wrapped(v2), Wrapped(slots))
    assert np.array_equal(kv1, kv2) and kv1.any()


def test_write_errors_write_nothing():
    rng = np.random.default_rng(1)
    nb, bs, h, d = 2, 16, 2, 64
    kv = np.full((2, nb, bs, h, d), 3.0, np.float16)
    kc, vc = pagedkv.split_kv_cache(kv, h, d)
    key = rng.standard_normal((4, h, d)).astype(np.float16)
    before = kv.copy()

    with pytest.raises(pagedkv.Error) as e:  # slot past the cache, after valid ones
        pagedkv.write_kv_cache(key, key, kc, vc, np.array([0, 5, nb * bs, 1], np.int64))
    assert e.value.status == 111 and e.value.status_name == "PKV_STATUS_SLOT_OUT_OF_RANGE"
    assert "slot_mapping[2]" in e.value.message and str(nb * bs) in e.value.message
    assert np.array_equal(kv, before)

    with pytest.raises(pagedkv.Error) as e:  # slot_mapping longer than key
        pagedkv.write_kv_cache(key, key, kc, vc, np.arange(5, dtype=np.int64))
    assert e.value.status_name == "PKV_STATUS_SHAPE_MISMATCH" and "slot_mapping" in e.value.message

    with pytest.raises(pagedkv.Error) as e:  # int32 slots
        pagedkv.write_kv_cache(key, key, kc, vc, np.arange(4, dtype=np.int32))
    assert e.value.status_name == "PKV_STATUS_INVALID_DTYPE" and "slot_mapping" in e.value.message

    with pytest.raises(pagedkv.Error) as e:  # model dtype differs from an "auto" cache
        pagedkv.write_kv_cache(key.astype(np.float32), key.astype(np.float32), kc, vc, np.arange(4, dtype=np.int64))
    assert e.value.status_name == "PKV_STATUS_INVALID_DTYPE" and "key_cache" in e.value.message

    with pytest.raises(pagedkv.Error) as e:  # float64 is not a pagedkv dtype
        pagedkv.write_kv_cache(key.astype(np.float64), key, kc, vc, np.arange(4, dtype=np.int64))
    assert e.value.status == 103 and "float64" in e.value.message

    with pytest.raises(pagedkv.Error) as e:  # head count disagrees
        k3 = rng.standard_normal((4, 3, d)).astype(np.float16)
        pagedkv.write_kv_cache(k3, k3, kc, vc, np.arange(4, dtype=np.int64))
    assert e.value.status_name == "PKV_STATUS_SHAPE_MISMATCH" and "key.shape[1]" in e.value.message

    with pytest.raises(pagedkv.Error) as e:
        pagedkv.write_kv_cache(key, key, kc, vc, np.arange(4, dtype=np.int64), kv_cache_dtype="fp8_e4m3fnx")
    assert e.value.status == 117 and "fp8_e4m3fnx" in e.value.message

    with pytest.raises(pagedkv.Error) as e:  # fp8 into a float16 cache
        pagedkv.write_kv_cache(key, key, kc, vc, np.arange(4, dtype=np.int64), kv_cache_dtype="fp8")
    assert e.value.status_name == "PKV_STATUS_INVALID_DTYPE"

    with pytest.raises(pagedkv.Error) as e:
        pagedkv.write_kv_cache(key, key, kc, vc, np.arange(4, dtype=np.int64), kv_layout="hnd")
    assert e.value.status_name == "PKV_STATUS_INVALID_ENUM" and "hnd" in e.value.message

    with pytest.raises(pagedkv.Error) as e:  # a 2-element scale
        kv8 = np.zeros((2, nb, bs, h, d), np.uint8)
        k8, v8 = pagedkv.split_kv_cache(kv8, h, d)
        pagedkv.write_kv_cache(key, key, k8, v8, np.arange(4, dtype=np.int64), "fp8",
                               np.ones(2, np.float32), None)
    assert e.value.status_name == "PKV_STATUS_SHAPE_MISMATCH" and "k_scale" in e.value.message

    with pytest.raises(ValueError):  # negative strides (reversed view)
        pagedkv.write_kv_cache(key[::-1], key, kc, vc, np.arange(4, dtype=np.int64))
    assert np.array_equal(kv, before)

    ro = kv.copy()
    ro.setflags(write=False)
    kr, vr = pagedkv.split_kv_cache(ro, h, d)
    with pytest.raises(pagedkv.Error) as e:
        pagedkv.write_kv_cache(key, key, kr, vr, np.arange(4, dtype=np.int64))
    assert "read-only" in e.value.message
