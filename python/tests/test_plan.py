"""paged_attention_plan: the CPU plan and planning for hypothetical GPUs."""

import numpy as np
import pytest

import pagedkv
import scenarios as S

GFX942 = {"arch": "gfx942", "shared_mem_per_block": 65536, "multiprocessor_count": 304, "wave_size": 64}
GFX1100 = {"arch": "gfx1100", "shared_mem_per_block": 65536, "multiprocessor_count": 48, "wave_size": 32}
H200 = {"arch": "sm_90", "shared_mem_per_block": 49152, "shared_mem_per_block_optin": 232448,
        "multiprocessor_count": 132, "wave_size": 32}
KEYS = {"path", "tile_size", "num_splits", "shared_mem_bytes", "workspace_bytes", "reason", "block_q", "threads"}


def _plan(b, **kw):
    return pagedkv.paged_attention_plan(b.query, b.key_cache, b.value_cache, b.block_table, b.seq_lens,
                                        b.query_start_loc, kv_layout=b.layout, **kw)


def test_cpu_plan():
    rng = np.random.default_rng(0)
    b = S.build(rng, seqs=[(40, 1), (20, 4)], block_size=544, num_kv_heads=2, gqa=2, head_size=64)
    p = _plan(b)
    assert KEYS <= set(p)
    assert p["path"] == "cpu_reference"
    assert p["num_splits"] == 1 and p["workspace_bytes"] == 0
    assert isinstance(p["reason"], str) and p["reason"]
    assert pagedkv.paged_attention_workspace_size(b.query, b.key_cache, b.value_cache, b.block_table, b.seq_lens,
                                                  b.query_start_loc) == 0


@pytest.mark.parametrize("limits", [GFX942, GFX1100, H200], ids=lambda l: l["arch"])
@pytest.mark.parametrize("block_size", [16, 544, 2048])
def test_plan_for_hypothetical_devices(limits, block_size):
    rng = np.random.default_rng(block_size)
    seqs = [(block_size * 2 + 5, 1), (block_size + 3, 1)]
    b = S.build(rng, seqs=seqs, block_size=block_size, num_kv_heads=2, gqa=4, head_size=128, dtype="float16",
                poison=False)
    p = _plan(b, device_limits=limits)
    assert KEYS <= set(p)
    assert p["path"] in ("gpu_single_pass", "gpu_split_kv")
    allowed = max(limits["shared_mem_per_block"], limits.get("shared_mem_per_block_optin", 0))
    assert 0 < p["shared_mem_bytes"] <= allowed
    assert 0 < p["tile_size"] <= 256
    if block_size > p["tile_size"]:
        assert "decoupled" in p["reason"] or "per-token" in p["reason"]
    assert limits["arch"] in p["reason"]
    if p["path"] == "gpu_split_kv":
        assert p["num_splits"] > 1 and p["workspace_bytes"] > 0
    else:
        assert p["num_splits"] == 1 and p["workspace_bytes"] == 0


def test_split_kv_is_shape_based_not_length_based():
    """Graph safety: the split count depends on the table width, not on seq_lens values."""
    rng = np.random.default_rng(1)
    b = S.build(rng, seqs=[(4000, 1)], block_size=16, num_kv_heads=1, gqa=8, head_size=128, poison=False)
    p1 = _plan(b, device_limits=GFX942)
    b.seq_lens[:] = 1
    p2 = _plan(b, device_limits=GFX942)
    assert p1 == p2
    assert p1["path"] == "gpu_split_kv"


def test_plan_arguments_and_errors():
    rng = np.random.default_rng(2)
    b = S.build(rng, seqs=[(40, 1)], block_size=16, num_kv_heads=2, gqa=2, head_size=64, kv_fp8="fp8_e5m2",
                poison=False)
    # Same keywords as paged_attention, scales as floats, fp8 output, output never allocated.
    p = _plan(b, kv_cache_dtype="fp8_e5m2", k_scale=0.5, v_scale=2.0, output_scale=0.1, sliding_window=8,
              alibi_slopes=np.ones(4, np.float32), sinks=np.zeros(4, np.float32), logits_soft_cap=30.0,
              causal=False, device_limits=dict(GFX942))
    assert p["path"].startswith("gpu_")
    with pytest.raises(pagedkv.Error) as e:
        _plan(b, kv_cache_dtype="fp8_e5m2", device_limits=dict(GFX942, wave_size=48))
    assert e.value.status_name == "PKV_STATUS_INVALID_VALUE" and "wave_size" in e.value.message
    with pytest.raises(pagedkv.Error) as e:
        _plan(b, kv_cache_dtype="fp8_e5m2", device_limits=dict(GFX942, lds=1))
    assert "lds" in e.value.message
    # A uint8 cache may be read as any fp8 format; a typed output must match the device's e4m3.
    assert _plan(b, kv_cache_dtype="fp8_e4m3fnuz")["path"] == "cpu_reference"
    with pytest.raises(pagedkv.Error) as e:
        _plan(b, kv_cache_dtype="nope")
    assert e.value.status_name == "PKV_STATUS_UNKNOWN_KV_CACHE_DTYPE"
