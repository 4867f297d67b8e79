"""Describing NumPy arrays, torch tensors and DLPack / CUDA-array-interface objects as
`pkv_tensor`, allocating like them, and finding the stream to enqueue on.

torch and cupy are never imported here: they are used only when the caller's objects come
from them (they are then already in ``sys.modules``).
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

from . import _lib as L
from ._lib import Error

try:  # bfloat16 and typed fp8 for NumPy
    import ml_dtypes as _ml
except ImportError:  # pragma: no cover - ml_dtypes is a listed dependency
    _ml = None

# ---------------------------------------------------------------------------------------------
# dtype tables
# ---------------------------------------------------------------------------------------------
_NP_DTYPES = {
    np.dtype(np.float32): L.PKV_DTYPE_FLOAT32,
    np.dtype(np.float16): L.PKV_DTYPE_FLOAT16,
    np.dtype(np.uint8): L.PKV_DTYPE_UINT8,
    np.dtype(np.int32): L.PKV_DTYPE_INT32,
    np.dtype(np.int64): L.PKV_DTYPE_INT64,
}
if _ml is not None:
    _NP_DTYPES[np.dtype(_ml.bfloat16)] = L.PKV_DTYPE_BFLOAT16
    _NP_DTYPES[np.dtype(_ml.float8_e4m3fn)] = L.PKV_DTYPE_FLOAT8_E4M3FN
    _NP_DTYPES[np.dtype(_ml.float8_e4m3fnuz)] = L.PKV_DTYPE_FLOAT8_E4M3FNUZ
    _NP_DTYPES[np.dtype(_ml.float8_e5m2)] = L.PKV_DTYPE_FLOAT8_E5M2

_CODE_NAMES = {
    L.PKV_DTYPE_FLOAT32: "float32",
    L.PKV_DTYPE_FLOAT16: "float16",
    L.PKV_DTYPE_BFLOAT16: "bfloat16",
    L.PKV_DTYPE_UINT8: "uint8",
    L.PKV_DTYPE_INT32: "int32",
    L.PKV_DTYPE_INT64: "int64",
    L.PKV_DTYPE_FLOAT8_E4M3FN: "float8_e4m3fn",
    L.PKV_DTYPE_FLOAT8_E4M3FNUZ: "float8_e4m3fnuz",
    L.PKV_DTYPE_FLOAT8_E5M2: "float8_e5m2",
}
_SUPPORTED = ", ".join(_CODE_NAMES.values())

_CAI_TYPESTRS = {
    "f4": L.PKV_DTYPE_FLOAT32,
    "f2": L.PKV_DTYPE_FLOAT16,
    "u1": L.PKV_DTYPE_UINT8,
    "i4": L.PKV_DTYPE_INT32,
    "i8": L.PKV_DTYPE_INT64,
}


def _torch():
    return sys.modules.get("torch")


def is_torch_tensor(obj) -> bool:
    t = _torch()
    return t is not None and isinstance(obj, t.Tensor)


def _torch_dtype_code(torch, dtype):
    table = getattr(_torch_dtype_code, "table", None)
    if table is None:
        table = {}
        for name, code in [
            ("float32", L.PKV_DTYPE_FLOAT32),
            ("float16", L.PKV_DTYPE_FLOAT16),
            ("bfloat16", L.PKV_DTYPE_BFLOAT16),
            ("uint8", L.PKV_DTYPE_UINT8),
            ("int32", L.PKV_DTYPE_INT32),
            ("int64", L.PKV_DTYPE_INT64),
            ("float8_e4m3fn", L.PKV_DTYPE_FLOAT8_E4M3FN),
            ("float8_e4m3fnuz", L.PKV_DTYPE_FLOAT8_E4M3FNUZ),
            ("float8_e5m2", L.PKV_DTYPE_FLOAT8_E5M2),
        ]:
            dt = getattr(torch, name, None)
            if dt is not None:
                table[dt] = code
        _torch_dtype_code.table = table
    return table.get(dtype)


def _torch_dtype_for_code(torch, code):
    return {
        L.PKV_DTYPE_FLOAT32: torch.float32,
        L.PKV_DTYPE_FLOAT16: torch.float16,
        L.PKV_DTYPE_BFLOAT16: torch.bfloat16,
        L.PKV_DTYPE_UINT8: torch.uint8,
        L.PKV_DTYPE_INT32: torch.int32,
        L.PKV_DTYPE_INT64: torch.int64,
        L.PKV_DTYPE_FLOAT8_E4M3FN: getattr(torch, "float8_e4m3fn", None),
        L.PKV_DTYPE_FLOAT8_E4M3FNUZ: getattr(torch, "float8_e4m3fnuz", None),
        L.PKV_DTYPE_FLOAT8_E5M2: getattr(torch, "float8_e5m2", None),
    }[code]


def _gpu_device_type() -> int:
    """DLPack device type of this library's GPU backend (CUDA unless built for ROCm)."""
    return L.PKV_DEVICE_ROCM if L.lib().pkv_features() & L.PKV_FEATURE_ROCM else L.PKV_DEVICE_CUDA


# ---------------------------------------------------------------------------------------------
# One described tensor
# ---------------------------------------------------------------------------------------------
class Ref:
    """A `pkv_tensor` plus what keeps its memory alive and where it came from."""

    __slots__ = ("c", "obj", "kind", "keep")

    def __init__(self, c: L.pkv_tensor, obj, kind: str, keep=None):
        self.c = c
        self.obj = obj  # the caller's object: holds the memory during the call
        self.kind = kind  # "numpy" | "torch" | "dlpack" | "cai"
        self.keep = keep  # e.g. a DLPack capsule

    @property
    def device_type(self) -> int:
        return self.c.device_type

    @property
    def device_id(self) -> int:
        return self.c.device_id

    @property
    def is_gpu(self) -> bool:
        return self.c.device_type != L.PKV_DEVICE_CPU

    @property
    def dtype(self) -> int:
        return self.c.dtype

    @property
    def shape(self):
        return tuple(self.c.shape[i] for i in range(self.c.ndim))

    @property
    def strides(self):
        return tuple(self.c.strides[i] for i in range(self.c.ndim))

    def ptr(self):
        return ctypes.pointer(self.c)


def _fill(c: L.pkv_tensor, name: str, shape, strides) -> None:
    if len(shape) > L.PKV_MAX_DIMS:
        raise Error(
            L.PKV_STATUS_INVALID_NDIM,
            f"{name}.ndim = {len(shape)} (shape {tuple(shape)}), pagedkv tensors have at most {L.PKV_MAX_DIMS} dims",
        )
    c.ndim = len(shape)
    for i, (n, s) in enumerate(zip(shape, strides)):
        c.shape[i] = int(n)
        c.strides[i] = int(s)


def _from_numpy(a: np.ndarray, name: str, writable: bool) -> Ref:
    code = _NP_DTYPES.get(a.dtype)
    if code is None:
        raise Error(
            L.PKV_STATUS_INVALID_DTYPE,
            f"{name}.dtype = {a.dtype} is not supported by pagedkv (expected one of {_SUPPORTED}; "
            "bfloat16/float8 through ml_dtypes, fp8 caches as uint8)",
        )
    item = a.itemsize
    strides = []
    for i, (n, s) in enumerate(zip(a.shape, a.strides)):
        if n <= 1 and (s < 0 or s % item):
            s = 0  # the stride of a size-0/1 dim is never used
        if s < 0:
            raise Error(
                L.PKV_STATUS_INVALID_STRIDE,
                f"{name}.strides[{i}] = {s} bytes is negative (a reversed NumPy view); expected >= 0: "
                "pass np.ascontiguousarray(...) instead",
            )
        if s % item != 0:
            raise Error(
                L.PKV_STATUS_INVALID_STRIDE,
                f"{name}.strides[{i}] = {s} bytes is not a multiple of the element size {item}",
            )
        strides.append(s // item)
    if a.size == 0:
        # NumPy gives empty arrays zero strides; they address nothing, so describe them as
        # packed (the library rejects zero strides on written tensors).
        strides, acc = [], 1
        for n in reversed(a.shape):
            strides.append(acc)
            acc *= max(int(n), 1)
        strides.reverse()
    if writable and not a.flags.writeable:
        raise Error(L.PKV_STATUS_INVALID_VALUE, f"{name} is a read-only NumPy array but pagedkv writes into it")
    c = L.pkv_tensor()
    c.data = a.__array_interface__["data"][0] or None
    c.byte_offset = 0
    c.device_type = L.PKV_DEVICE_CPU
    c.device_id = 0
    c.dtype = code
    _fill(c, name, a.shape, strides)
    return Ref(c, a, "numpy")


def _from_torch(t, name: str) -> Ref:
    torch = _torch()
    if t.layout != torch.strided:
        raise Error(L.PKV_STATUS_INVALID_STRIDE, f"{name}: torch layout {t.layout} is not strided")
    code = _torch_dtype_code(torch, t.dtype)
    if code is None:
        raise Error(
            L.PKV_STATUS_INVALID_DTYPE, f"{name}.dtype = {t.dtype} is not supported by pagedkv (expected one of {_SUPPORTED})"
        )
    dev = t.device
    c = L.pkv_tensor()
    if dev.type == "cpu":
        c.device_type, c.device_id = L.PKV_DEVICE_CPU, 0
    elif dev.type == "cuda":
        c.device_type = L.PKV_DEVICE_ROCM if getattr(torch.version, "hip", None) else L.PKV_DEVICE_CUDA
        c.device_id = dev.index if dev.index is not None else torch.cuda.current_device()
    else:
        raise Error(L.PKV_STATUS_UNSUPPORTED_DEVICE, f"{name} is on torch device {dev}, expected cpu or cuda")
    # data_ptr() already includes storage_offset * itemsize.
    c.data = t.data_ptr() or None
    c.byte_offset = 0
    c.dtype = code
    _fill(c, name, tuple(t.shape), t.stride())
    return Ref(c, t, "torch")


_PyCapsule_GetPointer = ctypes.pythonapi.PyCapsule_GetPointer
_PyCapsule_GetPointer.restype = ctypes.c_void_p
_PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _from_dlpack(obj, name: str, stream) -> Ref:
    dev_type, _ = obj.__dlpack_device__()
    kwargs = {}
    if int(dev_type) != L.PKV_DEVICE_CPU and stream:
        kwargs["stream"] = int(stream)
    capsule = obj.__dlpack__(**kwargs)
    try:
        managed = _PyCapsule_GetPointer(capsule, b"dltensor")
    except ValueError as e:
        raise Error(L.PKV_STATUS_INVALID_VALUE, f"{name}: __dlpack__() did not return a 'dltensor' capsule: {e}") from e
    c = L.pkv_tensor()
    # DLManagedTensor starts with its DLTensor.
    status = L.lib().pkv_tensor_from_dlpack(managed, ctypes.byref(c))
    if status != L.PKV_STATUS_OK:
        msg = L.last_error_message().replace("dl_tensor", name)
        raise Error(status, msg)
    return Ref(c, obj, "dlpack", keep=capsule)


def _from_cai(obj, name: str) -> Ref:
    cai = obj.__cuda_array_interface__
    typestr = cai["typestr"]
    code = _CAI_TYPESTRS.get(typestr[1:])
    if code is None or typestr[0] not in "<|=":
        raise Error(L.PKV_STATUS_INVALID_DTYPE, f"{name}: __cuda_array_interface__ typestr {typestr!r} is not supported")
    item = int(typestr[2:])
    shape = tuple(cai["shape"])
    if cai.get("strides") is None:
        strides, acc = [], 1
        for n in reversed(shape):
            strides.append(acc)
            acc *= n
        strides = tuple(reversed(strides))
    else:
        strides = []
        for i, s in enumerate(cai["strides"]):
            if s < 0 or s % item:
                raise Error(L.PKV_STATUS_INVALID_STRIDE, f"{name}.strides[{i}] = {s} bytes is not usable")
            strides.append(s // item)
    device = getattr(obj, "device", None)
    dev_id = getattr(device, "id", None)
    c = L.pkv_tensor()
    c.data = cai["data"][0] or None
    c.byte_offset = 0
    c.device_type = _gpu_device_type()
    c.device_id = int(dev_id) if isinstance(dev_id, int) else 0
    c.dtype = code
    _fill(c, name, shape, strides)
    return Ref(c, obj, "cai")


def describe(obj, name: str, *, writable: bool = False, stream=None) -> Ref:
    """Describes one array argument, raising `Error` for anything pagedkv cannot take."""
    if obj is None:
        raise Error(L.PKV_STATUS_NULL_ARGUMENT, f"{name} is None")
    if isinstance(obj, np.ndarray):
        return _from_numpy(obj, name, writable)
    if is_torch_tensor(obj):
        return _from_torch(obj, name)
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        return _from_dlpack(obj, name, stream)
    if hasattr(obj, "__cuda_array_interface__"):
        return _from_cai(obj, name)
    raise Error(
        L.PKV_STATUS_INVALID_VALUE,
        f"{name} is a {type(obj).__name__}, expected a NumPy array or a tensor with __dlpack__ or "
        "__cuda_array_interface__ (e.g. torch)",
    )


def optional(obj, name: str, **kw):
    return None if obj is None else describe(obj, name, **kw)


# ---------------------------------------------------------------------------------------------
# Views and allocation like an existing argument
# ---------------------------------------------------------------------------------------------
def view_like(base: Ref, view: L.pkv_tensor):
    """An array of `base`'s kind over the memory `view` (returned by the library) describes."""
    shape = tuple(view.shape[i] for i in range(view.ndim))
    strides = tuple(view.strides[i] for i in range(view.ndim))
    base_addr = (base.c.data or 0) + base.c.byte_offset
    view_addr = (view.data or 0) + view.byte_offset
    if base.kind == "numpy":
        a = base.obj
        item = a.itemsize
        # as_strided goes through __array_interface__, which cannot spell every ml_dtypes type
        # (float8_e5m2): stride over same-size unsigned integers and view the result back.
        u = a.view(np.dtype(f"u{item}"))
        # A flat window over everything the base addresses (strides >= 0), then the view on it.
        span = 1 + sum((n - 1) * s for n, s in zip(base.shape, base.strides)) if a.size else 0
        flat = np.lib.stride_tricks.as_strided(u, shape=(span,), strides=(item,))
        off = (view_addr - base_addr) // item
        out = np.lib.stride_tricks.as_strided(flat[off:], shape=shape, strides=tuple(s * item for s in strides))
        return out.view(a.dtype)
    if base.kind == "torch":
        torch = _torch()
        t = base.obj
        item = t.element_size()
        storage_base = t.untyped_storage().data_ptr()
        offset = (view_addr - storage_base) // item
        return torch.as_strided(t, shape, strides, offset)
    if base.is_gpu and _torch() is not None:
        # A DLPack/CAI GPU object: view through torch over the same memory.
        torch = _torch()
        t = torch.from_dlpack(base.obj) if base.kind == "dlpack" else torch.as_tensor(base.obj, device="cuda")
        return view_like(_from_torch(t, "kv_cache"), view)
    if not base.is_gpu and base.kind == "dlpack":
        a = np.from_dlpack(base.obj)
        return view_like(_from_numpy(a, "kv_cache", False), view)
    raise Error(
        L.PKV_STATUS_UNSUPPORTED_CONFIGURATION,
        "split_kv_cache views of this array kind need torch (NumPy arrays and torch tensors are supported)",
    )


def torch_device_of(ref: Ref):
    torch = _torch()
    if ref.kind == "torch":
        return ref.obj.device
    if not ref.is_gpu:
        return torch.device("cpu")
    return torch.device("cuda", ref.device_id)


def allocate_like(ref: Ref, shape, dtype_code: int, *, zero: bool = True):
    """A new array on `ref`'s device: NumPy for host data that is not torch, torch for torch
    tensors and for GPU data when torch is importable, cupy as a last resort."""
    torch = _torch()
    if ref.kind == "torch" or (ref.is_gpu and torch is not None):
        dt = _torch_dtype_for_code(torch, dtype_code)
        dev = torch_device_of(ref)
        return torch.zeros(shape, dtype=dt, device=dev) if zero else torch.empty(shape, dtype=dt, device=dev)
    if not ref.is_gpu:
        dt = next(d for d, c in _NP_DTYPES.items() if c == dtype_code)
        return np.zeros(shape, dt) if zero else np.empty(shape, dt)
    cupy = sys.modules.get("cupy")
    names = {L.PKV_DTYPE_FLOAT32: "float32", L.PKV_DTYPE_FLOAT16: "float16", L.PKV_DTYPE_UINT8: "uint8"}
    if cupy is not None and dtype_code in names:
        with cupy.cuda.Device(ref.device_id):
            return cupy.zeros(shape, names[dtype_code]) if zero else cupy.empty(shape, names[dtype_code])
    raise Error(
        L.PKV_STATUS_INVALID_VALUE,
        "cannot allocate on this device without torch: pass output=/workspace= or use torch tensors",
    )


def full_like_scalar(ref: Ref, value: float, name: str):
    """A 1-element float32 array holding `value` on `ref`'s device (a fill, no host sync)."""
    torch = _torch()
    if ref.kind == "torch" or (ref.is_gpu and torch is not None):
        return torch.full((1,), float(value), dtype=torch.float32, device=torch_device_of(ref))
    if not ref.is_gpu:
        return np.array([value], dtype=np.float32)
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        with cupy.cuda.Device(ref.device_id):
            return cupy.full((1,), float(value), dtype="float32")
    raise Error(L.PKV_STATUS_INVALID_VALUE, f"{name}: pass a 1-element float32 array on the data's device")


# ---------------------------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------------------------
def stream_handle(stream) -> int:
    """A raw stream pointer from an int, a torch.cuda.Stream, or a cupy Stream."""
    if stream is None:
        return 0
    if isinstance(stream, int):
        return stream
    for attr in ("cuda_stream", "ptr", "handle"):
        v = getattr(stream, attr, None)
        if isinstance(v, int):
            return v
    raise Error(L.PKV_STATUS_INVALID_VALUE, f"stream = {stream!r}: expected an int handle or a torch/cupy stream")


def default_stream(ref: Ref) -> int:
    """The caller's current stream for GPU data (torch or cupy), or 0 (the default stream)."""
    if not ref.is_gpu:
        return 0
    torch = _torch()
    if torch is not None and ref.kind == "torch":
        return torch.cuda.current_stream(ref.obj.device).cuda_stream
    cupy = sys.modules.get("cupy")
    if cupy is not None and type(ref.obj).__module__.startswith("cupy"):
        return cupy.cuda.get_current_stream().ptr
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.current_stream(torch.device("cuda", ref.device_id)).cuda_stream
    return 0


class stream_context:
    """While active, torch allocations (outputs, workspace, scale tensors) go on the stream the
    call is enqueued on, so the caching allocator orders their reuse after our kernels."""

    def __init__(self, ref: Ref, stream, handle: int):
        self.ctx = None
        torch = _torch()
        if torch is None or not ref.is_gpu or stream is None:
            return
        if isinstance(stream, torch.cuda.Stream):
            s = stream
        else:
            s = torch.cuda.ExternalStream(handle, device=torch_device_of(ref))
        self.ctx = torch.cuda.stream(s)

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self.ctx is not None:
            return self.ctx.__exit__(*exc)
        return False
