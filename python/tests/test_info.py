import os
import subprocess
import sys

import pytest

import pagedkv

# Where the package under test was imported from (this checkout's python/, or an installation).
PYDIR = os.path.dirname(os.path.dirname(os.path.abspath(pagedkv.__file__)))
SOURCE_TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_version_and_features():
    v = pagedkv.version()
    assert isinstance(v, str) and len(v.split(".")) == 3
    assert all(part.isdigit() for part in v.split("."))
    feats = pagedkv.features()
    assert "cpu" in feats
    targets = pagedkv.gpu_targets()
    assert isinstance(targets, list)
    if "cuda" not in feats and "rocm" not in feats:
        assert targets == []
    else:
        assert targets and all(targets)


def test_error_is_value_error_with_status():
    with pytest.raises(pagedkv.Error) as e:
        pagedkv.split_kv_cache(None, 2, 64)
    assert isinstance(e.value, ValueError)
    assert e.value.status == 100 and e.value.status_name == "PKV_STATUS_NULL_ARGUMENT"
    assert "kv_cache" in e.value.message


def _run(code, env_extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = PYDIR
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.environ.get("PKV_TEST_INSTALLED") != "1", reason="tests this checkout's package")
def test_installed_package_and_library_are_used():
    # The installed-package stage of scripts/test.sh: neither the package nor the library may come
    # from this checkout (its python/ or the cargo target directory).
    root = os.path.realpath(os.environ["PKV_TEST_INSTALL_ROOT"]) + os.sep
    assert os.environ.get("PAGEDKV_LIBRARY") is None
    assert os.path.realpath(pagedkv.__file__).startswith(root), pagedkv.__file__
    assert not os.path.realpath(pagedkv.__file__).startswith(SOURCE_TREE + os.sep)
    pagedkv.version()  # loads the library
    with open("/proc/self/maps") as maps:
        mapped = {line.split()[-1] for line in maps if "libpagedkv" in line}
    assert mapped and all(os.path.realpath(m).startswith(root) for m in mapped), mapped


def test_library_from_env_variable():
    path = pagedkv.library_path()
    r = _run("import pagedkv; print(pagedkv.library_path()); print(pagedkv.version())",
             {"PAGEDKV_LIBRARY": os.path.abspath(path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == os.path.abspath(path)


def test_bad_env_variable_is_a_clear_error():
    r = _run("import pagedkv\ntry:\n    pagedkv.version()\nexcept OSError as e:\n    print('OSERROR', e)",
             {"PAGEDKV_LIBRARY": "/nonexistent/libpagedkv.so"})
    assert r.returncode == 0, r.stderr
    assert "OSERROR" in r.stdout and "/nonexistent/libpagedkv.so" in r.stdout


def test_device_limits_without_gpu_backend():
    feats = pagedkv.features()
    if "cuda" in feats or "rocm" in feats:
        pytest.skip("library has a GPU backend")
    with pytest.raises(pagedkv.Error) as e:
        pagedkv.device_limits(0)
    assert e.value.status_name == "PKV_STATUS_GPU_BACKEND_NOT_BUILT"
    assert "--features" in e.value.message
    with pytest.raises(pagedkv.Error) as e:
        pagedkv.device_limits("cpu")
    assert e.value.status_name == "PKV_STATUS_UNSUPPORTED_DEVICE"
