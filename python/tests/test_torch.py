"""torch tensors: described from torch metadata (data_ptr, stride, dtype, device), views
through torch.as_strided, the current stream, allocations on the data's device.

CPU-tensor tests need only torch; CUDA-tensor tests need a GPU; tests that run kernels need
a library built with a GPU backend. Each skips with its reason."""

import ml_dtypes
import numpy as np
import pytest

import pagedkv
import reference as R
import scenarios as S

torch = pytest.importorskip("torch", reason="torch is not installed: torch tests skipped")

HAS_CUDA = torch.cuda.is_available()
HAS_BACKEND = bool({"cuda", "rocm"} & set(pagedkv.features()))
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="torch sees no CUDA/ROCm device")
needs_kernels = pytest.mark.skipif(
    not (HAS_CUDA and HAS_BACKEND),
    reason=f"needs a GPU and a GPU-built libpagedkv (library features: {pagedkv.features()})",
)


def to_torch(a, device="cpu"):
    """NumPy (incl. ml_dtypes) -> torch, same values, contiguous copy."""
    a = np.ascontiguousarray(a)
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).to(device)
    for name in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2"):
        if a.dtype == np.dtype(getattr(ml_dtypes, name)):
            return torch.from_numpy(a.view(np.uint8)).view(getattr(torch, name)).to(device)
    return torch.from_numpy(a).to(device)


def to_numpy(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    for name in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2"):
        if t.dtype == getattr(torch, name, None):
            return t.view(torch.uint8).numpy().view(getattr(ml_dtypes, name))
    return t.numpy()


def _kv_hybrid(nb, bs, h, d, dtype, device):
    hidden = bs * h * d
    raw = torch.zeros(2 * nb * hidden + 8, dtype=dtype, device=device)[8:]  # storage_offset 8
    kv = torch.as_strided(raw, (2, nb, bs, h, d), (hidden, 2 * hidden, h * d, d, 1), raw.storage_offset())
    return raw, kv


def _split_checks(device):
    nb, bs, h, d = 3, 544, 2, 64
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.uint8):
        raw, kv = _kv_hybrid(nb, bs, h, d, dtype, device)
        k, v = pagedkv.split_kv_cache(kv, h, d)
        assert isinstance(k, torch.Tensor) and k.device == kv.device and k.dtype == dtype
        x = 16 // kv.element_size()
        assert tuple(k.shape) == (nb, h, d // x, bs, x) and tuple(v.shape) == (nb, h, d, bs)
        assert k.untyped_storage().data_ptr() == raw.untyped_storage().data_ptr()
        hidden = bs * h * d
        assert k.stride() == (2 * hidden, d * bs, bs * x, x, 1)
        assert v.stride() == (2 * hidden, d * bs, bs, 1)
        assert k.storage_offset() == raw.storage_offset()
        assert v.storage_offset() == raw.storage_offset() + hidden
        assert pagedkv.has_native_layout(k, v) is False
        # Writes through the view land in the allocation.
        v[1, 0, 3, 5] = 7
        assert int((raw == 7).sum()) == 1
        kv2 = torch.zeros((2, nb, 16, h, d), dtype=dtype, device=device)
        assert pagedkv.has_native_layout(*pagedkv.split_kv_cache(kv2, h, d)) is True


def test_split_views_on_cpu_tensors():
    _split_checks("cpu")


@needs_cuda
def test_split_views_on_cuda_tensors():
    _split_checks("cuda")


def test_cpu_tensors_match_numpy_path():
    """Write + attention on torch CPU tensors (bf16 cache, hybrid, block 544, strided query with
    a storage offset) gives the same bytes as the NumPy path."""
    rng = np.random.default_rng(1)
    nb, bs, h, d = 3, 544, 2, 64
    kv_np, *_ = R.make_kv_cache("hybrid", nb, bs, h, d, ml_dtypes.bfloat16, fill=np.nan)
    kc_np, vc_np = pagedkv.split_kv_cache(kv_np, h, d)
    raw_t, kv_t = _kv_hybrid(nb, bs, h, d, torch.bfloat16, "cpu")
    raw_t.fill_(float("nan"))
    kc_t, vc_t = pagedkv.split_kv_cache(kv_t, h, d)
    key = rng.standard_normal((32, h, d)).astype(ml_dtypes.bfloat16)
    value = rng.standard_normal((32, h, d)).astype(ml_dtypes.bfloat16)
    # Sequence 0 in block 0 (slots 0..19), sequence 1 in block 1 (slots 544..553), two skipped.
    slots = np.concatenate([np.arange(0, 20), np.arange(544, 554), [-1, -7]]).astype(np.int64)
    assert pagedkv.write_kv_cache(key, value, kc_np, vc_np, slots) == "strided"
    assert pagedkv.write_kv_cache(to_torch(key), to_torch(value), kc_t, vc_t, to_torch(slots)) == "strided"
    assert np.array_equal(to_numpy(kv_t).view(np.uint16), np.ascontiguousarray(kv_np).view(np.uint16))

    q = rng.standard_normal((5, 4, d)).astype(ml_dtypes.bfloat16)
    bt = np.array([[0, 2], [1, 0]], np.int32)
    sl = np.array([20, 10], np.int32)
    qsl = np.array([0, 1, 5], np.int32)
    big = torch.zeros((7, 6, d), dtype=torch.bfloat16)
    qt = big[1:6, 1:5]  # storage_offset != 0, non-contiguous
    qt.copy_(to_torch(q))
    out_np = pagedkv.paged_attention(q, kc_np, vc_np, bt, sl, qsl, sinks=np.zeros(4, np.float32))
    assert np.isfinite(out_np.astype(np.float32)).all()
    out_t = pagedkv.paged_attention(qt, kc_t, vc_t, to_torch(bt), to_torch(sl), to_torch(qsl),
                                    sinks=torch.zeros(4))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.bfloat16 and out_t.shape == qt.shape
    assert np.array_equal(to_numpy(out_t).view(np.uint16), out_np.view(np.uint16))


@pytest.mark.parametrize("name,kv_cache_dtype", [("float8_e4m3fn", "fp8_e4m3fn"), ("float8_e5m2", "fp8_e5m2"),
                                                  ("float8_e4m3fnuz", "fp8_e4m3fnuz")])
def test_typed_fp8_torch_caches(name, kv_cache_dtype):
    tdt = getattr(torch, name, None)
    if tdt is None:
        pytest.skip(f"torch has no {name}")
    rng = np.random.default_rng(2)
    nb, bs, h, d = 2, 16, 2, 32
    kv = torch.zeros((2, nb, bs, h, d), dtype=tdt)
    kc, vc = pagedkv.split_kv_cache(kv, h, d)
    assert kc.dtype == tdt
    key = rng.standard_normal((6, h, d)).astype(np.float32) * 50
    slots = np.array([0, 5, 17, -1, 31, 2], np.int64)
    pagedkv.write_kv_cache(torch.from_numpy(key), torch.from_numpy(key), kc, vc, torch.from_numpy(slots),
                           kv_cache_dtype, 0.25, 0.25)
    fmt = R.CPU_FORMAT[kv_cache_dtype]
    codes = kc.view(torch.uint8).numpy()
    want = R.quantize(key, 0.25, fmt)
    for t, s in enumerate(slots):
        if s >= 0:
            b, o = divmod(int(s), bs)
            assert np.array_equal(codes[b, :, :, o, :].reshape(h, d), want[t])


@needs_cuda
def test_cuda_planning_and_backend_errors():
    nb, bs, h, d = 4, 16, 2, 64
    kv = torch.zeros((2, nb, bs, h, d), dtype=torch.float16, device="cuda")
    kc, vc = pagedkv.split_kv_cache(kv, h, d)
    q = torch.randn((3, 4, d), dtype=torch.float16, device="cuda")
    bt = torch.tensor([[0, 1, 2, 3]], dtype=torch.int32, device="cuda")
    sl = torch.tensor([40], dtype=torch.int32, device="cuda")
    qsl = torch.tensor([0, 3], dtype=torch.int32, device="cuda")
    lim = {"arch": "gfx942", "shared_mem_per_block": 65536, "multiprocessor_count": 304, "wave_size": 64}
    p = pagedkv.paged_attention_plan(q, kc, vc, bt, sl, qsl, k_scale=1.0, device_limits=lim)
    assert p["path"] in ("gpu_single_pass", "gpu_split_kv")
    # Mixing host and device tensors is refused.
    with pytest.raises(pagedkv.Error) as e:
        pagedkv.paged_attention(q, kc, vc, bt.cpu(), sl, qsl)
    assert e.value.status_name in ("PKV_STATUS_DEVICE_MISMATCH", "PKV_STATUS_GPU_BACKEND_NOT_BUILT")
    if not HAS_BACKEND:
        with pytest.raises(pagedkv.Error) as e:
            pagedkv.write_kv_cache(q[:, :2], q[:, :2], kc, vc, torch.arange(3, device="cuda"))
        assert e.value.status_name == "PKV_STATUS_GPU_BACKEND_NOT_BUILT"
        with pytest.raises(pagedkv.Error) as e:
            pagedkv.paged_attention_plan(q, kc, vc, bt, sl, qsl)
        assert e.value.status_name == "PKV_STATUS_GPU_BACKEND_NOT_BUILT"


class _DLPackOnly:
    def __init__(self, t):
        self.t = t

    def __dlpack__(self, **kw):
        return self.t.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.t.__dlpack_device__()


class _CAIOnly:
    def __init__(self, t):
        self.__cuda_array_interface__ = t.__cuda_array_interface__


@needs_cuda
def test_dlpack_and_cuda_array_interface_objects():
    nb, bs, h, d = 3, 32, 2, 64
    kv = torch.zeros((2, nb, bs, h, d), dtype=torch.float16, device="cuda")
    k_ref, v_ref = pagedkv.split_kv_cache(kv, h, d)
    k_dl, v_dl = pagedkv.split_kv_cache(_DLPackOnly(kv), h, d)
    assert k_dl.data_ptr() == k_ref.data_ptr() and v_dl.data_ptr() == v_ref.data_ptr()
    assert k_dl.stride() == k_ref.stride()
    assert pagedkv.has_native_layout(_CAIOnly(k_ref), _CAIOnly(v_ref)) is True
    assert pagedkv.has_native_layout(_DLPackOnly(k_ref), _DLPackOnly(v_ref)) is True


# ---------------------------------------------------------------------------------------------
# Kernels (GPU-built library): GPU results vs the CPU backend on identical inputs
# ---------------------------------------------------------------------------------------------
def _gpu_vs_cpu(batch, dtype, **kw):
    """Runs `batch` through the CPU backend (NumPy) and the GPU (torch, CUDA), compares."""
    out_cpu = S.run(batch, **kw)
    got = _run_gpu(batch, **kw)
    want = np.asarray(out_cpu).astype(np.float64)
    owned = np.zeros(len(want), bool)
    owned[: batch.query_start_loc[-1]] = True
    tol = {"float32": 2e-3, "float16": 1e-2, "bfloat16": 3e-2}[dtype]
    np.testing.assert_allclose(got[owned], want[owned], rtol=tol, atol=tol)


def _run_gpu(batch, **kw):
    """`batch` through the GPU backend (torch, CUDA): the output as float64 NumPy."""
    dev = "cuda"
    kw_t = {}
    for k, v in kw.items():
        kw_t[k] = to_torch(v, dev) if isinstance(v, np.ndarray) else v
    if batch.kv_cache_dtype != "auto":
        kw_t.setdefault("kv_cache_dtype", batch.kv_cache_dtype)
        kw_t.setdefault("k_scale", batch.k_scale)
        kw_t.setdefault("v_scale", batch.v_scale)

    def cache_to_dev(c):
        # The same strides (hybrid/padded pages) over a device copy of the whole allocation.
        addr = c.__array_interface__["data"][0]
        for raw in batch.raws:
            start = raw.__array_interface__["data"][0]
            if start <= addr < start + raw.nbytes:
                flat = to_torch(raw, dev)
                off = (addr - start) // c.itemsize
                return torch.as_strided(flat, c.shape, tuple(s // c.itemsize for s in c.strides), off)
        raise AssertionError("cache outside its allocations")

    kc, vc = cache_to_dev(batch.key_cache), cache_to_dev(batch.value_cache)
    out_gpu = pagedkv.paged_attention(
        to_torch(batch.query, dev), kc, vc, to_torch(batch.block_table, dev), to_torch(batch.seq_lens, dev),
        to_torch(batch.query_start_loc, dev), kv_layout=batch.layout, **kw_t)
    torch.cuda.synchronize()
    return to_numpy(out_gpu).astype(np.float64)


@needs_kernels
@pytest.mark.parametrize("block_size", [1, 16, 544, 2048])
@pytest.mark.parametrize("cache_kind", ["kv_first", "hybrid", "nhd"])
def test_gpu_attention_matches_cpu(block_size, cache_kind):
    rng = np.random.default_rng(block_size)
    seqs = [(37, 1), (50, 13), (16, 16), (20, 0), (1, 1)] if block_size <= 16 else [(600, 1), (30, 7), (2100, 2)]
    b = S.build(rng, seqs=seqs, block_size=block_size, num_kv_heads=2, gqa=4, head_size=128, dtype="float16",
                cache_kind=cache_kind, poison=True)
    _gpu_vs_cpu(b, "float16")


@needs_kernels
@pytest.mark.parametrize("kv_fp8", ["fp8_e4m3fn", "fp8_e5m2"])
def test_gpu_fp8_and_features(kv_fp8):
    rng = np.random.default_rng(3)
    b = S.build(rng, seqs=[(300, 1), (70, 9)], block_size=544, num_kv_heads=2, gqa=2, head_size=64,
                dtype="bfloat16", cache_kind="hybrid", kv_fp8=kv_fp8, k_scale=0.05, v_scale=1.5)
    hq = 4
    _gpu_vs_cpu(b, "bfloat16", sliding_window=50, alibi_slopes=np.linspace(0.01, 0.1, hq).astype(np.float32),
                sinks=np.ones(hq, np.float32), logits_soft_cap=20.0)


@needs_kernels
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_gpu_max_query_len_one(dtype):
    """With max_query_len = 1 the GPU launches only its decode kernel (bf16: tensor cores, f32:
    FMA) and matches the CPU; a query longer than that bound, which only the CPU can see and
    refuse, gets NaN rows on the GPU while the other rows stay right."""
    rng = np.random.default_rng(6)
    kw = dict(block_size=16, num_kv_heads=2, gqa=4, head_size=128, dtype=dtype)
    b = S.build(rng, seqs=[(37, 1), (20, 0), (300, 1), (1, 1)], **kw)
    _gpu_vs_cpu(b, dtype, max_query_len=1)
    bad = S.build(rng, seqs=[(37, 1), (20, 0), (30, 2)], **kw)  # 3 rows for 3 sequences
    got = _run_gpu(bad, max_query_len=1)
    want = np.asarray(S.run(bad)).astype(np.float64)
    assert np.isnan(got[1:3]).all()
    np.testing.assert_allclose(got[0], want[0], rtol=3e-2, atol=3e-2)
    np.testing.assert_allclose(_run_gpu(bad), want, rtol=3e-2, atol=3e-2)  # without the bound


@needs_kernels
def test_gpu_write_matches_cpu_and_uses_given_stream():
    rng = np.random.default_rng(4)
    nb, bs, h, d = 4, 544, 2, 128
    kv_np, *_ = R.make_kv_cache("hybrid", nb, bs, h, d, np.uint8)
    kc_np, vc_np = pagedkv.split_kv_cache(kv_np, h, d)
    key = (rng.standard_normal((64, h, d)) * 4).astype(np.float16)
    slots = rng.permutation(nb * bs)[:60].astype(np.int64)
    slots[5] = -1
    pagedkv.write_kv_cache(key, -key, kc_np, vc_np, slots, "fp8_e4m3fn", 0.5, 2.0)

    raw, kv = _kv_hybrid(nb, bs, h, d, torch.uint8, "cuda")
    kc, vc = pagedkv.split_kv_cache(kv, h, d)
    s = torch.cuda.Stream()
    kt = to_torch(key, "cuda")
    st = to_torch(slots, "cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(s):  # current stream = s: the default for the call
        path = pagedkv.write_kv_cache(kt, -kt, kc, vc, st, "fp8_e4m3fn", 0.5, 2.0)
    assert path == "strided"
    s2 = torch.cuda.Stream()
    pagedkv.write_kv_cache(kt, -kt, kc, vc, st, "fp8_e4m3fn", 0.5, 2.0, stream=s2)  # explicit stream
    pagedkv.write_kv_cache(kt, -kt, kc, vc, st, "fp8_e4m3fn", 0.5, 2.0, stream=s2.cuda_stream)  # raw handle
    torch.cuda.synchronize()
    assert np.array_equal(to_numpy(kv), np.ascontiguousarray(kv_np))


@needs_kernels
def test_gpu_split_kv_workspace_and_device_limits():
    lim = pagedkv.device_limits(torch.device("cuda", 0))
    assert lim["multiprocessor_count"] > 0 and lim["shared_mem_per_block"] > 0 and lim["arch"]
    assert pagedkv.device_limits(0) == lim
    rng = np.random.default_rng(5)
    b = S.build(rng, seqs=[(5000, 1)], block_size=16, num_kv_heads=1, gqa=8, head_size=128, dtype="float16",
                poison=False)
    _gpu_vs_cpu(b, "float16")
