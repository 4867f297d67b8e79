"""pytest setup: import the package from this checkout (or, with PKV_TEST_INSTALLED=1, the one
installed on sys.path: scripts/test.sh's installed-package stage) and report why GPU tests skip."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("PKV_TEST_INSTALLED") != "1":
    sys.path.insert(0, os.path.dirname(HERE))  # python/ (the package)
sys.path.insert(0, HERE)  # reference.py, scenarios.py


def gpu_skip_reason():
    """None when torch GPU tests can run, else why not."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch sees no CUDA/ROCm device"
    import pagedkv

    feats = pagedkv.features()
    if "cuda" not in feats and "rocm" not in feats:
        return f"libpagedkv at {pagedkv.library_path()} was built CPU-only (features {feats})"
    return None


def pytest_report_header(config):
    import pagedkv

    reason = gpu_skip_reason()
    gpu = "GPU tests: run" if reason is None else f"GPU tests: SKIPPED ({reason})"
    return [f"pagedkv {pagedkv.version()} ({os.path.dirname(pagedkv.__file__)}) from {pagedkv.library_path()}; "
            f"features {pagedkv.features()}", gpu]


def pytest_terminal_summary(terminalreporter):
    reason = gpu_skip_reason()
    if reason is not None:
        terminalreporter.write_line(f"pagedkv GPU (torch) tests skipped: {reason}")
