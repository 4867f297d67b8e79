"""pagedkv: paged KV-cache store and paged attention (vLLM ROCm semantics), through ctypes.

The library is found through ``PAGEDKV_LIBRARY``, then the build tree
(``<repo>/target/release/libpagedkv.so``), then the system (``libpagedkv.so.0.1``).

Arrays: NumPy arrays (host memory; bfloat16 and typed float8 through ``ml_dtypes``; fp8
caches as uint8) run on the CPU backend; torch tensors (CPU or GPU) and any object with
``__dlpack__`` or ``__cuda_array_interface__`` are described without copying. Strides are
honoured (no copies are made); negative strides are rejected.

Every failure raises :class:`pagedkv.Error` (``.status``, ``.status_name``, ``.message``).
"""

from __future__ import annotations

import ctypes
import numbers

import numpy as np

from . import _lib as L
from . import _tensors as T
from ._lib import Error, library_path

__all__ = [
    "Error",
    "version",
    "features",
    "gpu_targets",
    "device_limits",
    "split_kv_cache",
    "has_native_layout",
    "write_kv_cache",
    "paged_attention",
    "paged_attention_plan",
    "paged_attention_workspace_size",
    "library_path",
]

__version__ = "0.1.0"

# The C constants, under their C names (pagedkv.PKV_STATUS_SLOT_OUT_OF_RANGE, PKV_DTYPE_*, ...).
globals().update({k: v for k, v in vars(L).items() if k.startswith("PKV_")})


# ---------------------------------------------------------------------------------------------
# Information
# ---------------------------------------------------------------------------------------------
def version() -> str:
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return L.lib().pkv_version_string().decode()


def features() -> list:
    """Backends compiled into the library: ``["cpu"]``, plus ``"cuda"`` or ``"rocm"``."""
    bits = L.lib().pkv_features()
    names = [(L.PKV_FEATURE_CPU, "cpu"), (L.PKV_FEATURE_CUDA, "cuda"), (L.PKV_FEATURE_ROCM, "rocm")]
    return [n for b, n in names if bits & b]


def gpu_targets() -> list:
    """GPU targets the kernels were built for (e.g. ``["gfx90a", "gfx942"]``); ``[]`` if CPU-only."""
    text = L.lib().pkv_gpu_targets().decode()
    return [t for t in text.split(";") if t]


def _parse_device(device):
    """(device_type, device_id) from an int, "cuda:N"/"rocm:N"/"hip:N", a torch.device,
    a tensor, or a (device_type, device_id) tuple."""
    if isinstance(device, tuple) and len(device) == 2:
        return int(device[0]), int(device[1])
    if isinstance(device, bool):
        raise Error(L.PKV_STATUS_INVALID_VALUE, f"device = {device!r} is not a device")
    if isinstance(device, numbers.Integral):
        return T._gpu_device_type(), int(device)
    if isinstance(device, np.ndarray):
        return L.PKV_DEVICE_CPU, 0
    if T.is_torch_tensor(device) or hasattr(device, "__dlpack__") or hasattr(device, "__cuda_array_interface__"):
        ref = T.describe(device, "device")
        return ref.device_type, ref.device_id
    torch = T._torch()
    if torch is not None and isinstance(device, torch.device):
        device = str(device)
    if isinstance(device, str):
        kind, _, index = device.partition(":")
        dev_id = int(index) if index else 0
        kind = kind.strip().lower()
        if kind == "cpu":
            return L.PKV_DEVICE_CPU, dev_id
        if kind in ("rocm", "hip"):
            return L.PKV_DEVICE_ROCM, dev_id
        if kind == "cuda":
            if torch is not None and getattr(torch.version, "hip", None):
                return L.PKV_DEVICE_ROCM, dev_id
            return T._gpu_device_type(), dev_id
    raise Error(L.PKV_STATUS_INVALID_VALUE, f"device = {device!r}: expected an int, 'cuda:N', 'rocm:N' or a tensor")


_LIMIT_KEYS = ("arch", "wave_size", "shared_mem_per_block", "shared_mem_per_block_optin", "multiprocessor_count")


def device_limits(device=0) -> dict:
    """The planner's view of a GPU (``pkv_device_limits_query``): a dict with "arch",
    "wave_size", "shared_mem_per_block", "shared_mem_per_block_optin", "multiprocessor_count".
    The dict can be passed as ``device_limits=`` to :func:`paged_attention_plan`."""
    dev_type, dev_id = _parse_device(device)
    out = L.pkv_device_limits()
    out.struct_size = ctypes.sizeof(L.pkv_device_limits)
    L.check(L.lib().pkv_device_limits_query(dev_type, dev_id, ctypes.byref(out)))
    return {
        "arch": out.arch.decode(errors="replace"),
        "wave_size": out.wave_size,
        "shared_mem_per_block": out.shared_mem_per_block,
        "shared_mem_per_block_optin": out.shared_mem_per_block_optin,
        "multiprocessor_count": out.multiprocessor_count,
    }


def _limits_struct(limits) -> L.pkv_device_limits:
    if not isinstance(limits, dict):
        raise Error(L.PKV_STATUS_INVALID_VALUE, f"device_limits = {limits!r}, expected a dict")
    unknown = set(limits) - set(_LIMIT_KEYS)
    if unknown:
        raise Error(
            L.PKV_STATUS_INVALID_VALUE,
            f"device_limits has unknown keys {sorted(unknown)}, expected some of {list(_LIMIT_KEYS)}",
        )
    missing = [k for k in ("arch", "shared_mem_per_block", "multiprocessor_count", "wave_size") if k not in limits]
    if missing:
        raise Error(L.PKV_STATUS_INVALID_VALUE, f"device_limits is missing {missing}")
    s = L.pkv_device_limits()
    s.struct_size = ctypes.sizeof(L.pkv_device_limits)
    s.wave_size = int(limits["wave_size"])
    s.shared_mem_per_block = int(limits["shared_mem_per_block"])
    s.shared_mem_per_block_optin = int(limits.get("shared_mem_per_block_optin", limits["shared_mem_per_block"]))
    s.multiprocessor_count = int(limits["multiprocessor_count"])
    arch = str(limits["arch"]).encode()
    if len(arch) >= L.PKV_ARCH_NAME_LEN:
        raise Error(L.PKV_STATUS_INVALID_VALUE, f"device_limits['arch'] = {limits['arch']!r} is too long")
    s.arch = arch
    return s


# ---------------------------------------------------------------------------------------------
# Argument helpers
# ---------------------------------------------------------------------------------------------
def _kv_cache_dtype(value) -> int:
    if isinstance(value, str):
        out = ctypes.c_uint32()
        L.check(L.lib().pkv_kv_cache_dtype_from_string(value.encode(), ctypes.byref(out)))
        return out.value
    raise Error(
        L.PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE,
        f"kv_cache_dtype = {value!r}, expected a string: auto, fp8, fp8_e4m3, fp8_e4m3fn, fp8_e4m3fnuz, fp8_e5m2",
    )


def _kv_layout(value) -> int:
    if isinstance(value, str) and value in L.KV_LAYOUTS:
        return L.KV_LAYOUTS[value]
    raise Error(L.PKV_STATUS_INVALID_ENUM, f"kv_layout = {value!r}, expected \"split\" or \"nhd\"")


def _max_query_len(value) -> int:
    """The C field is unsigned 32-bit: None (unknown) is 0; anything else must fit."""
    if value is None:
        return 0
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)) \
            or not 0 <= int(value) < 2**32:
        raise Error(L.PKV_STATUS_INVALID_VALUE,
                    f"max_query_len = {value!r}, expected None (unknown) or an integer from 0 to 2^32 - 1")
    return int(value)


def _is_scalar(v) -> bool:
    return isinstance(v, (numbers.Real, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_))


def _scale(value, name: str, data: T.Ref, keep: list):
    """None -> NULL; a Python/NumPy number -> a 1-element float32 array on the data's device;
    anything else is described as given (must be a 1-element float32 array there)."""
    if value is None:
        return None
    if _is_scalar(value):
        value = T.full_like_scalar(data, float(value), name)
    ref = T.describe(value, name)
    keep.append(ref)
    return ref


def _per_head(value, name: str, data: T.Ref, keep: list):
    """alibi_slopes / sinks: an array, or a list/tuple made into float32 on the data's device."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        arr = np.asarray(value, dtype=np.float32)
        if data.is_gpu or data.kind == "torch":
            torch = T._torch()
            if torch is None:
                raise Error(L.PKV_STATUS_DEVICE_MISMATCH, f"{name}: pass a float32 array on the data's device")
            value = torch.from_numpy(arr).to(T.torch_device_of(data))
        else:
            value = arr
    ref = T.describe(value, name)
    keep.append(ref)
    return ref


def _p(ref):
    return ctypes.pointer(ref.c) if ref is not None else None


def _stream_for(data: T.Ref, stream) -> int:
    if not data.is_gpu:
        return 0
    return T.stream_handle(stream) if stream is not None else T.default_stream(data)


# ---------------------------------------------------------------------------------------------
# Cache views
# ---------------------------------------------------------------------------------------------
def split_kv_cache(kv_cache, num_kv_heads: int, head_size: int):
    """Splits vLLM's combined ROCm cache ``(2, num_blocks, block_size, num_kv_heads, head_size)``
    (or any strided view of it: K/V-first, blocks-first permuted, hybrid interleaved) into
    ``key_cache [num_blocks, H, D//x, block_size, x]`` and ``value_cache [num_blocks, H, D,
    block_size]``, x = 16 // itemsize. Both are views sharing ``kv_cache``'s memory (same array
    kind) and keep its block stride."""
    ref = T.describe(kv_cache, "kv_cache")
    k, v = L.pkv_tensor(), L.pkv_tensor()
    L.check(L.lib().pkv_split_kv_cache(ref.ptr(), int(num_kv_heads), int(head_size), ctypes.byref(k), ctypes.byref(v)))
    return T.view_like(ref, k), T.view_like(ref, v)


def has_native_layout(key_cache, value_cache) -> bool:
    """vLLM's ``has_native_kv_cache_layout``: ``stride(0) == prod(shape[1:])`` for both caches."""
    k = T.describe(key_cache, "key_cache")
    v = T.describe(value_cache, "value_cache")
    out = ctypes.c_bool()
    L.check(L.lib().pkv_has_native_layout(k.ptr(), v.ptr(), ctypes.byref(out)))
    return bool(out.value)


# ---------------------------------------------------------------------------------------------
# Cache write
# ---------------------------------------------------------------------------------------------
def write_kv_cache(
    key,
    value,
    key_cache,
    value_cache,
    slot_mapping,
    kv_cache_dtype="auto",
    k_scale=None,
    v_scale=None,
    kv_layout="split",
    *,
    stream=None,
) -> str:
    """Scatters ``key``/``value`` ``[num_tokens, H, D]`` into the caches at ``slot_mapping``
    (int64 ``[n]``, ``n <= num_tokens``; negative slots skipped). Returns the path taken:
    ``"native"`` (split layout, block size 16/32, native layout) or ``"strided"``.

    ``kv_layout``: ``"split"`` (5-D key / 4-D value) or ``"nhd"`` (``[num_blocks, block_size, H,
    D]``). fp8 ``kv_cache_dtype`` stores ``saturate(rne(x / scale))`` into uint8 (or typed fp8)
    caches. ``k_scale``/``v_scale``: 1-element float32 arrays on the data's device, ``None``
    for 1.0, or a Python float (made into such an array here). ``stream``: GPU stream (int
    handle or torch/cupy stream); default: the current torch stream. Host data is written
    before return; GPU work is only enqueued.
    """
    keep = []
    kr = T.describe(key, "key")
    handle = _stream_for(kr, stream)
    refs = [
        kr,
        T.describe(value, "value", stream=handle),
        T.describe(key_cache, "key_cache", writable=True, stream=handle),
        T.describe(value_cache, "value_cache", writable=True, stream=handle),
        T.describe(slot_mapping, "slot_mapping", stream=handle),
    ]
    a = L.pkv_write_kv_cache_args()
    a.struct_size = ctypes.sizeof(L.pkv_write_kv_cache_args)
    a.kv_layout = _kv_layout(kv_layout)
    a.kv_cache_dtype = _kv_cache_dtype(kv_cache_dtype)
    with T.stream_context(kr, stream, handle):
        ks = _scale(k_scale, "k_scale", kr, keep)
        vs = _scale(v_scale, "v_scale", kr, keep)
    a.key, a.value, a.key_cache, a.value_cache, a.slot_mapping = (r.ptr() for r in refs)
    a.k_scale, a.v_scale = _p(ks), _p(vs)
    path = ctypes.c_uint32()
    L.check(L.lib().pkv_write_kv_cache(ctypes.byref(a), ctypes.c_void_p(handle or None), ctypes.byref(path)))
    del keep, refs
    return L.WRITE_PATH_NAMES[path.value]


# ---------------------------------------------------------------------------------------------
# Paged attention
# ---------------------------------------------------------------------------------------------
class _AttentionCall:
    """The described arguments of one attention call (kept alive for its duration)."""

    def __init__(self, query, key_cache, value_cache, block_table, seq_lens, query_start_loc, *,
                 kv_layout, output, kv_cache_dtype, k_scale, v_scale, sm_scale, sliding_window,
                 alibi_slopes, sinks, logits_soft_cap, output_scale, causal, max_query_len, stream,
                 allocate_output):
        self.keep = []
        q = T.describe(query, "query")
        self.q = q
        self.handle = _stream_for(q, stream)
        h = self.handle
        self.refs = [
            q,
            T.describe(key_cache, "key_cache", stream=h),
            T.describe(value_cache, "value_cache", stream=h),
            T.describe(block_table, "block_table", stream=h),
            T.describe(seq_lens, "seq_lens", stream=h),
            T.describe(query_start_loc, "query_start_loc", stream=h),
        ]
        a = L.pkv_paged_attention_args()
        a.struct_size = ctypes.sizeof(L.pkv_paged_attention_args)
        a.kv_layout = _kv_layout(kv_layout)
        a.kv_cache_dtype = _kv_cache_dtype(kv_cache_dtype)
        a.causal = 1 if causal else 0
        a.sm_scale = 0.0 if sm_scale is None else float(sm_scale)
        a.sliding_window = 0 if sliding_window is None else int(sliding_window)
        a.logits_soft_cap = 0.0 if logits_soft_cap is None else float(logits_soft_cap)
        a.max_query_len = _max_query_len(max_query_len)
        out_dtype = L.PKV_DTYPE_UINT8 if output_scale is not None else q.dtype
        self.context = T.stream_context(q, stream, h)
        with self.context:
            ks = _scale(k_scale, "k_scale", q, self.keep)
            vs = _scale(v_scale, "v_scale", q, self.keep)
            osc = _scale(output_scale, "output_scale", q, self.keep)
            al = _per_head(alibi_slopes, "alibi_slopes", q, self.keep)
            sk = _per_head(sinks, "sinks", q, self.keep)
            if output is None and allocate_output:
                output = T.allocate_like(q, q.shape, out_dtype)
        if output is not None:
            self.output = output
            out_ref = T.describe(output, "output", writable=True, stream=h)
        else:
            # Planning only: describe a would-be output (never written).
            self.output = None
            c = L.pkv_tensor.from_buffer_copy(q.c)
            c.dtype = out_dtype
            acc = 1
            for i in reversed(range(c.ndim)):
                c.strides[i] = acc
                acc *= c.shape[i]
            out_ref = T.Ref(c, None, q.kind)
        self.refs.append(out_ref)
        a.query, a.key_cache, a.value_cache, a.block_table, a.seq_lens, a.query_start_loc, a.output = (
            r.ptr() for r in self.refs
        )
        a.k_scale, a.v_scale, a.output_scale = _p(ks), _p(vs), _p(osc)
        a.alibi_slopes, a.sinks = _p(al), _p(sk)
        self.args = a

    def workspace_size(self) -> int:
        n = ctypes.c_uint64()
        L.check(L.lib().pkv_paged_attention_workspace_size(ctypes.byref(self.args), ctypes.byref(n)))
        return n.value

    def plan(self, limits=None) -> dict:
        p = L.pkv_attention_plan()
        p.struct_size = ctypes.sizeof(L.pkv_attention_plan)
        if limits is None:
            L.check(L.lib().pkv_paged_attention_plan(ctypes.byref(self.args), ctypes.byref(p)))
        else:
            lim = _limits_struct(limits)
            L.check(L.lib().pkv_paged_attention_plan_for_device(ctypes.byref(self.args), ctypes.byref(lim),
                                                                ctypes.byref(p)))
        return {
            "path": L.ATTENTION_PATH_NAMES.get(p.path, str(p.path)),
            "tile_size": p.tile_size,
            "block_q": p.block_q,
            "num_splits": p.num_splits,
            "threads": p.threads,
            "shared_mem_bytes": p.shared_mem_bytes,
            "workspace_bytes": p.workspace_bytes,
            "reason": p.reason.decode(errors="replace"),
        }


# The arrays and the keyword options (with their defaults) of paged_attention,
# paged_attention_plan and paged_attention_workspace_size. The first two spell them out in their
# signatures too, for help() and editors, and pass their locals() to _attention_call.
_ATTN_ARRAYS = ("query", "key_cache", "value_cache", "block_table", "seq_lens", "query_start_loc")
_ATTN_OPTIONS = dict(kv_layout="split", output=None, kv_cache_dtype="auto", k_scale=None, v_scale=None,
                     sm_scale=None, sliding_window=None, alibi_slopes=None, sinks=None, logits_soft_cap=None,
                     output_scale=None, causal=True, max_query_len=None)


def _attention_call(arguments: dict, *, allocate_output: bool) -> _AttentionCall:
    """The described call for an entry point's arguments by parameter name (its ``locals()``
    before anything else is assigned): the arrays, the options and ``stream``; other names such
    as ``workspace`` are the entry point's own and ignored here."""
    return _AttentionCall(*(arguments[k] for k in _ATTN_ARRAYS), stream=arguments["stream"],
                          allocate_output=allocate_output, **{k: arguments[k] for k in _ATTN_OPTIONS})


_ATTN_DOC = """
    query ``[num_tokens, Hq, D]`` (float32/float16/bfloat16); ``key_cache``/``value_cache``: the
    split layout (``kv_layout="split"``: key ``[num_blocks, H, D//x, block_size, x]``, value
    ``[num_blocks, H, D, block_size]``) or ``"nhd"`` (both ``[num_blocks, block_size, H, D]``);
    ``block_table`` int32 ``[num_seqs, max_blocks]``; ``seq_lens`` int32 ``[num_seqs]`` (cached
    tokens including this step's, written first); ``query_start_loc`` int32 ``[num_seqs + 1]``.
    Query token t of sequence i sits at ``p = seq_lens[i] - q_len_i + t``; causal: keys 0..p,
    non-causal: all keys; ``sliding_window`` W > 0 keeps keys with ``p - j < W``; ``sm_scale``
    default ``1/sqrt(D)``; ``logits_soft_cap`` c: ``c*tanh(s/c)``; ``alibi_slopes`` [Hq]:
    ``+ slope[h]*(j - p)``; ``sinks`` [Hq] float32: an extra zero-valued logit per head.
    ``max_query_len``: the most query tokens of any one sequence (vLLM's ``max_query_len``), or
    None when unknown; the CPU backend refuses a longer query; with 1 (a decode-only batch) the
    GPU backend launches only its decode kernel, and a longer query's output rows are NaN there.
    Scales (``k_scale``, ``v_scale``, ``output_scale``): 1-element float32 arrays on the data's
    device, None for 1.0, or Python floats (made into such arrays here).
"""


def paged_attention(
    query,
    key_cache,
    value_cache,
    block_table,
    seq_lens,
    query_start_loc,
    *,
    kv_layout="split",
    output=None,
    kv_cache_dtype="auto",
    k_scale=None,
    v_scale=None,
    sm_scale=None,
    sliding_window=None,
    alibi_slopes=None,
    sinks=None,
    logits_soft_cap=None,
    output_scale=None,
    causal=True,
    max_query_len=None,
    workspace=None,
    stream=None,
):
    call = _attention_call(locals(), allocate_output=True)
    needed = call.workspace_size()
    ws_ptr, ws_bytes, ws_keep = None, 0, None
    if workspace is None:
        if needed > 0:
            with call.context:
                ws_keep = T.allocate_like(call.q, (needed,), L.PKV_DTYPE_UINT8, zero=False)
            workspace = ws_keep
    if workspace is not None:
        wr = T.describe(workspace, "workspace", writable=True, stream=call.handle)
        ws_keep = wr
        item = _itemsize(wr.dtype)
        span = 0 if 0 in wr.shape else 1 + sum((n - 1) * s for n, s in zip(wr.shape, wr.strides))
        ws_bytes = span * item
        ws_ptr = ((wr.c.data or 0) + wr.c.byte_offset) or None
    L.check(L.lib().pkv_paged_attention(ctypes.byref(call.args), ctypes.c_void_p(ws_ptr), ws_bytes,
                                         ctypes.c_void_p(call.handle or None)))
    del ws_keep
    return call.output


paged_attention.__doc__ = (
    """Paged attention with vLLM's ``chunked_prefill_paged_decode`` semantics (decode tokens and
    prefill chunks in one call). Writes and returns ``output`` (allocated, zero-filled, when None:
    query's dtype, or uint8 fp8 codes when ``output_scale`` is given). ``workspace``: scratch of
    ``paged_attention_workspace_size(...)`` bytes on the data's device, allocated when None.
    ``stream``: GPU stream (int handle or torch/cupy stream); default: the current torch stream.
"""
    + _ATTN_DOC
)


def _itemsize(code: int) -> int:
    return {1: 4, 2: 2, 3: 2, 4: 1, 5: 4, 6: 8, 7: 1, 8: 1, 9: 1}[code]


def paged_attention_plan(
    query,
    key_cache,
    value_cache,
    block_table,
    seq_lens,
    query_start_loc,
    *,
    kv_layout="split",
    output=None,
    kv_cache_dtype="auto",
    k_scale=None,
    v_scale=None,
    sm_scale=None,
    sliding_window=None,
    alibi_slopes=None,
    sinks=None,
    logits_soft_cap=None,
    output_scale=None,
    causal=True,
    max_query_len=None,
    workspace=None,
    stream=None,
    device_limits=None,
) -> dict:
    return _attention_call(locals(), allocate_output=False).plan(device_limits)


paged_attention_plan.__doc__ = (
    """What :func:`paged_attention` would do for these arguments, without running anything: a
    dict with "path" ("cpu_reference", "gpu_single_pass" or "gpu_split_kv"), "tile_size",
    "block_q", "num_splits", "threads", "shared_mem_bytes", "workspace_bytes" and "reason".
    ``device_limits``: plan for a GPU described by a dict instead of the data's own device
    (keys "arch", "shared_mem_per_block", "multiprocessor_count", "wave_size", optional
    "shared_mem_per_block_optin"; e.g. the result of :func:`device_limits`). Nothing is
    allocated; ``workspace`` and ``stream`` are accepted for symmetry and ignored.
"""
    + _ATTN_DOC
)


def paged_attention_workspace_size(query, key_cache, value_cache, block_table, seq_lens, query_start_loc,
                                   **kwargs) -> int:
    """Bytes of workspace :func:`paged_attention` needs for these arguments (same keywords);
    depends only on shapes and the device, so one allocation serves a captured graph."""
    kwargs.pop("workspace", None)
    kwargs.pop("stream", None)
    unknown = set(kwargs) - set(_ATTN_OPTIONS)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
    arrays = dict(zip(_ATTN_ARRAYS, (query, key_cache, value_cache, block_table, seq_lens, query_start_loc)))
    arguments = {**_ATTN_OPTIONS, **kwargs, **arrays, "stream": None}
    return _attention_call(arguments, allocate_output=False).workspace_size()
