"""Loading libpagedkv and declaring its C API with ctypes (mirrors include/pagedkv.h)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

# ---------------------------------------------------------------------------------------------
# Constants (include/pagedkv.h)
# ---------------------------------------------------------------------------------------------
PKV_MAX_DIMS = 6
PKV_PLAN_REASON_LEN = 256
PKV_ARCH_NAME_LEN = 32

PKV_DTYPE_FLOAT32 = 1
PKV_DTYPE_FLOAT16 = 2
PKV_DTYPE_BFLOAT16 = 3
PKV_DTYPE_UINT8 = 4
PKV_DTYPE_INT32 = 5
PKV_DTYPE_INT64 = 6
PKV_DTYPE_FLOAT8_E4M3FN = 7
PKV_DTYPE_FLOAT8_E4M3FNUZ = 8
PKV_DTYPE_FLOAT8_E5M2 = 9

PKV_DEVICE_CPU = 1
PKV_DEVICE_CUDA = 2
PKV_DEVICE_ROCM = 10

PKV_KV_CACHE_DTYPE_AUTO = 0
PKV_KV_CACHE_DTYPE_FP8 = 1
PKV_KV_CACHE_DTYPE_FP8_E4M3 = 2
PKV_KV_CACHE_DTYPE_FP8_E4M3FN = 3
PKV_KV_CACHE_DTYPE_FP8_E4M3FNUZ = 4
PKV_KV_CACHE_DTYPE_FP8_E5M2 = 5

PKV_KV_LAYOUT_SPLIT = 0
PKV_KV_LAYOUT_NHD = 1

PKV_WRITE_PATH_NATIVE = 1
PKV_WRITE_PATH_STRIDED = 2

PKV_ATTENTION_PATH_CPU_REFERENCE = 1
PKV_ATTENTION_PATH_GPU_SINGLE_PASS = 2
PKV_ATTENTION_PATH_GPU_SPLIT_KV = 3

PKV_FEATURE_CPU = 1
PKV_FEATURE_CUDA = 2
PKV_FEATURE_ROCM = 4

# pkv_status values.
PKV_STATUS_OK = 0
PKV_STATUS_NULL_ARGUMENT = 100
PKV_STATUS_INVALID_STRUCT_SIZE = 101
PKV_STATUS_INVALID_ENUM = 102
PKV_STATUS_INVALID_DTYPE = 103
PKV_STATUS_INVALID_NDIM = 104
PKV_STATUS_SHAPE_MISMATCH = 105
PKV_STATUS_INVALID_STRIDE = 106
PKV_STATUS_DEVICE_MISMATCH = 107
PKV_STATUS_HEAD_SIZE_NOT_DIVISIBLE = 108
PKV_STATUS_GQA_RATIO_NOT_INTEGRAL = 109
PKV_STATUS_BLOCK_TABLE_TOO_SHORT = 110
PKV_STATUS_SLOT_OUT_OF_RANGE = 111
PKV_STATUS_BLOCK_ID_OUT_OF_RANGE = 112
PKV_STATUS_INVALID_SEQ_LEN = 113
PKV_STATUS_INVALID_QUERY_START_LOC = 114
PKV_STATUS_INVALID_VALUE = 115
PKV_STATUS_WORKSPACE_TOO_SMALL = 116
PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE = 117
PKV_STATUS_BUFFER_TOO_SMALL = 118
PKV_STATUS_UNSUPPORTED_HEAD_SIZE = 200
PKV_STATUS_UNSUPPORTED_CONFIGURATION = 201
PKV_STATUS_GPU_BACKEND_NOT_BUILT = 202
PKV_STATUS_UNSUPPORTED_DEVICE = 203
PKV_STATUS_SHARED_MEMORY_EXCEEDED = 204
PKV_STATUS_DEVICE_ERROR = 300
PKV_STATUS_LAUNCH_FAILED = 301
PKV_STATUS_NO_DEVICE = 302
PKV_STATUS_INTERNAL = 900
PKV_STATUS_PANIC = 901

_STATUS_NAMES = {v: k for k, v in globals().items() if k.startswith("PKV_STATUS_")}

ATTENTION_PATH_NAMES = {
    PKV_ATTENTION_PATH_CPU_REFERENCE: "cpu_reference",
    PKV_ATTENTION_PATH_GPU_SINGLE_PASS: "gpu_single_pass",
    PKV_ATTENTION_PATH_GPU_SPLIT_KV: "gpu_split_kv",
}
WRITE_PATH_NAMES = {PKV_WRITE_PATH_NATIVE: "native", PKV_WRITE_PATH_STRIDED: "strided"}
KV_LAYOUTS = {"split": PKV_KV_LAYOUT_SPLIT, "nhd": PKV_KV_LAYOUT_NHD}


# ---------------------------------------------------------------------------------------------
# Structs, field for field
# ---------------------------------------------------------------------------------------------
class pkv_tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("byte_offset", ctypes.c_uint64),
        ("device_type", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
        ("dtype", ctypes.c_uint32),
        ("ndim", ctypes.c_uint32),
        ("shape", ctypes.c_int64 * PKV_MAX_DIMS),
        ("strides", ctypes.c_int64 * PKV_MAX_DIMS),
    ]


_TensorP = ctypes.POINTER(pkv_tensor)


class pkv_paged_attention_args(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("kv_layout", ctypes.c_uint32),
        ("query", _TensorP),
        ("key_cache", _TensorP),
        ("value_cache", _TensorP),
        ("block_table", _TensorP),
        ("seq_lens", _TensorP),
        ("query_start_loc", _TensorP),
        ("output", _TensorP),
        ("kv_cache_dtype", ctypes.c_uint32),
        ("causal", ctypes.c_uint32),
        ("k_scale", _TensorP),
        ("v_scale", _TensorP),
        ("alibi_slopes", _TensorP),
        ("sinks", _TensorP),
        ("output_scale", _TensorP),
        ("sm_scale", ctypes.c_float),
        ("sliding_window", ctypes.c_int32),
        ("logits_soft_cap", ctypes.c_float),
        ("max_query_len", ctypes.c_uint32),
    ]


class pkv_attention_plan(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("path", ctypes.c_uint32),
        ("tile_size", ctypes.c_uint32),
        ("block_q", ctypes.c_uint32),
        ("num_splits", ctypes.c_uint32),
        ("threads", ctypes.c_uint32),
        ("shared_mem_bytes", ctypes.c_uint64),
        ("workspace_bytes", ctypes.c_uint64),
        ("reason", ctypes.c_char * PKV_PLAN_REASON_LEN),
    ]


class pkv_device_limits(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("wave_size", ctypes.c_uint32),
        ("shared_mem_per_block", ctypes.c_uint64),
        ("shared_mem_per_block_optin", ctypes.c_uint64),
        ("multiprocessor_count", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("arch", ctypes.c_char * PKV_ARCH_NAME_LEN),
    ]


class pkv_write_kv_cache_args(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("kv_layout", ctypes.c_uint32),
        ("key", _TensorP),
        ("value", _TensorP),
        ("key_cache", _TensorP),
        ("value_cache", _TensorP),
        ("slot_mapping", _TensorP),
        ("kv_cache_dtype", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("k_scale", _TensorP),
        ("v_scale", _TensorP),
    ]


# (name, restype, argtypes) of every exported function.
_status = ctypes.c_uint32
_FUNCTIONS = [
    ("pkv_paged_attention", _status,
     [ctypes.POINTER(pkv_paged_attention_args), ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p]),
    ("pkv_paged_attention_workspace_size", _status,
     [ctypes.POINTER(pkv_paged_attention_args), ctypes.POINTER(ctypes.c_uint64)]),
    ("pkv_paged_attention_plan", _status,
     [ctypes.POINTER(pkv_paged_attention_args), ctypes.POINTER(pkv_attention_plan)]),
    ("pkv_paged_attention_plan_for_device", _status,
     [ctypes.POINTER(pkv_paged_attention_args), ctypes.POINTER(pkv_device_limits),
      ctypes.POINTER(pkv_attention_plan)]),
    ("pkv_device_limits_query", _status,
     [ctypes.c_int32, ctypes.c_int32, ctypes.POINTER(pkv_device_limits)]),
    ("pkv_version_string", ctypes.c_char_p, []),
    ("pkv_version_number", ctypes.c_uint32, []),
    ("pkv_features", ctypes.c_uint32, []),
    ("pkv_gpu_targets", ctypes.c_char_p, []),
    ("pkv_status_string", ctypes.c_char_p, [ctypes.c_uint32]),
    ("pkv_last_error_message", ctypes.c_char_p, []),
    ("pkv_kv_cache_dtype_from_string", _status, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint32)]),
    ("pkv_split_kv_cache", _status,
     [_TensorP, ctypes.c_int64, ctypes.c_int64, _TensorP, _TensorP]),
    ("pkv_has_native_layout", _status, [_TensorP, _TensorP, ctypes.POINTER(ctypes.c_bool)]),
    ("pkv_tensor_from_dlpack", _status, [ctypes.c_void_p, _TensorP]),
    ("pkv_write_kv_cache", _status,
     [ctypes.POINTER(pkv_write_kv_cache_args), ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]),
]


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
class Error(ValueError):
    """A pagedkv call failed.

    ``status`` is the ``pkv_status`` value (int), ``status_name`` its name
    ("PKV_STATUS_SLOT_OUT_OF_RANGE"), ``message`` the library's explanation (naming the argument,
    its value and what was expected). Subclasses ``ValueError`` so generic input-error handlers
    catch it too.
    """

    def __init__(self, status: int, message: str, status_name: str | None = None):
        self.status = int(status)
        self.status_name = status_name or status_name_of(self.status)
        self.message = message
        super().__init__(f"{self.status_name} ({self.status}): {message}")

    def __reduce__(self):
        return (type(self), (self.status, self.message, self.status_name))


def status_name_of(status: int) -> str:
    lib = _LIB if _LIB is not None else None
    if lib is not None:
        return lib.pkv_status_string(int(status)).decode()
    return _STATUS_NAMES.get(int(status), "PKV_STATUS_UNKNOWN")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
_LIB: ctypes.CDLL | None = None
_LIB_PATH: str | None = None
_LOCK = threading.Lock()


def _build_tree_library() -> str:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(repo, "target", "release", "libpagedkv.so")


def _candidates():
    env = os.environ.get("PAGEDKV_LIBRARY")
    if env:
        # An explicit choice is not second-guessed: failing to load it is an error.
        yield env, True
        return
    build = _build_tree_library()
    if os.path.exists(build):
        yield build, False
    found = ctypes.util.find_library("pagedkv")
    if found:
        yield found, False
    yield "libpagedkv.so.0.1", False
    yield "libpagedkv.so", False


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _loaded_file(handle: ctypes.CDLL, name: str) -> str:
    """The file the dynamic loader mapped for `handle` (a bare soname was resolved by its search
    path), from dladdr of one of its functions; `name` where that is unavailable."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        info = _DlInfo()
        addr = ctypes.cast(handle.pkv_version_number, ctypes.c_void_p)
        if dladdr(addr, ctypes.byref(info)) and info.dli_fname:
            return os.path.abspath(info.dli_fname.decode())
    except (AttributeError, OSError):
        pass
    return name


def _declare(lib: ctypes.CDLL) -> None:
    for name, restype, argtypes in _FUNCTIONS:
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def lib() -> ctypes.CDLL:
    """The loaded library (loaded on first use)."""
    global _LIB, _LIB_PATH
    if _LIB is not None:
        return _LIB
    with _LOCK:
        if _LIB is not None:
            return _LIB
        tried = []
        for path, explicit in _candidates():
            try:
                handle = ctypes.CDLL(path)
            except OSError as e:
                if explicit:
                    raise OSError(f"PAGEDKV_LIBRARY={path!r} could not be loaded: {e}") from e
                tried.append(f"{path}: {e}")
                continue
            _declare(handle)
            _LIB_PATH = _loaded_file(handle, path)
            _LIB = handle
            return handle
        raise OSError(
            "libpagedkv.so not found. Set PAGEDKV_LIBRARY to its path, run `cargo build --release` in "
            "the repository (gives target/release/libpagedkv.so), or install it system-wide. Tried:\n  "
            + "\n  ".join(tried)
        )


def library_path() -> str:
    """Path of the library file loaded (its name where the loader cannot tell)."""
    lib()
    return _LIB_PATH  # type: ignore[return-value]


def last_error_message() -> str:
    msg = lib().pkv_last_error_message()
    return msg.decode(errors="replace") if msg else ""


def check(status: int) -> None:
    """Raises `Error` for a non-OK status, with the library's message for this thread."""
    if status != PKV_STATUS_OK:
        l = lib()
        message = last_error_message()
        name = l.pkv_status_string(int(status)).decode()
        raise Error(int(status), message, name)
