#!/usr/bin/env python3
"""pagedkv GPU benchmark: paged attention and cache writes as a fraction of the device's
measured copy bandwidth.

Run on a machine with a GPU and torch, after building the library with a GPU backend:

    PYTHONPATH=python python3 scripts/bench.py [--json out.json] [--plot out.png] [--quick]

The ceiling is a device-to-device copy of >= 4 GiB measured in the same run (bytes read +
bytes written). Every case is one library call captured in a CUDA/HIP graph together with
two device events around it, so that the time is the call's own GPU time from the moment
its stream reaches it (an engine replays whole steps of many kernels as one graph); the
same replays are also timed by events recorded outside the graph, which add the graph's
launch (0.3-0.5 us on the H200), and both are reported. The L2 is flushed before each replay;
median of many runs, after a quarter second of GPU activity (the previous case's CPU check
leaves the GPU idle). Bandwidth
counts the bytes that must move: K and V of every visible cached token plus query and
output (attention), or inputs read plus cache bytes written (writes). Every case is also
checked against the CPU backend (the oracle) on sampled sequences.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import pagedkv  # noqa: E402

DEV = "cuda"
L2_FLUSH_BYTES = 512 << 20


@dataclass
class Result:
    name: str
    kind: str
    time_us: float
    bytes: int
    gbps: float
    pct_of_copy: float
    plan: str
    check: str
    extra: dict = field(default_factory=dict)


def busy(seconds: float = 0.25, flush: torch.Tensor | None = None) -> None:
    """Keeps the GPU reading memory for about `seconds` before a timing: a long CPU check of the
    previous case (B256 L32k's oracle) leaves the GPU idle for seconds, and the case after it
    measured 5-11 points low without this (docs/performance.md)."""
    work = flush if flush is not None and flush.numel() > 1 << 20 else torch.empty(64 << 20, device=DEV)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            work.sum()
        torch.cuda.synchronize()


def timed(fn, iters: int, flush: torch.Tensor) -> float:
    """Median microseconds of `fn()` (a graph replay), L2 flushed (by a read) before each run."""
    busy(flush=flush)
    start = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        # Read (not write) the flush buffer: it evicts L2 without leaving dirty lines that the
        # timed kernel would then pay to write back.
        flush.sum()
        start[i].record()
        fn()
        end[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1000.0 for s, e in zip(start, end))


@dataclass
class GraphTime:
    inside_us: float  # events captured in the graph around the call: the call's GPU time
    around_us: float  # events recorded outside around the replay: adds the graph launch


def with_launch(gt: GraphTime, nbytes: int, ceiling: float) -> dict:
    """The outer timing of a case, for the JSON and the table (see `timed_call`)."""
    gbps = nbytes / (gt.around_us * 1e-6) / 1e9
    return {"time_us_graph_launch": gt.around_us, "pct_of_copy_graph_launch": 100 * gbps / ceiling}


def timed_call(call, iters: int, flush: torch.Tensor) -> GraphTime:
    """Medians over `iters` graph replays of one library call, L2 flushed (by a read) before
    each. Inside: graphs of [event, call, event] (external events: record nodes, not capture
    dependencies), so that the pair brackets the call alone, one graph per run so that the
    runs queue back to back (a replay records its graph's events again). Around: a graph of
    the call alone between events recorded on the stream, as the benchmark timed before
    session 12; it adds the graph's own launch latency, which an engine pays once per
    captured step of many kernels, not per call."""
    for _ in range(3):  # warm-up: module load, attribute setting, planner caches
        call()
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        call()
    torch.cuda.current_stream().wait_stream(s)
    plain = torch.cuda.CUDAGraph()
    with torch.cuda.graph(plain):
        call()
    graphs, ev_in = [], []
    try:
        for _ in range(iters):
            g = torch.cuda.CUDAGraph()
            ev = [torch.cuda.Event(enable_timing=True, external=True) for _ in range(2)]
            with torch.cuda.graph(g):
                ev[0].record()
                call()
                ev[1].record()
            graphs.append(g)
            ev_in.append(ev)
    except RuntimeError as e:  # a runtime without event nodes in graphs: the outer timing only
        print(f"(events in graphs: {e}; timing around the replay only)", end=" ")
        torch.cuda.synchronize()
        graphs, ev_in = [], []
    for g in graphs + [plain]:  # (a graph's first launch uploads it)
        g.replay()
    torch.cuda.synchronize()
    around = timed(plain.replay, iters, flush)
    for g in graphs:  # (the GPU is still busy from the runs just timed)
        flush.sum()  # a read, as in `timed`
        g.replay()
    torch.cuda.synchronize()
    inside = statistics.median(a.elapsed_time(b) * 1000.0 for a, b in ev_in) if ev_in else around
    del graphs, plain
    return GraphTime(inside, around)


def copy_bandwidth(nbytes: int = 4 << 30, iters: int = 20) -> float:
    src = torch.empty(nbytes, dtype=torch.uint8, device=DEV).random_(0, 255)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    t = timed(lambda: dst.copy_(src), iters, torch.empty(16, device=DEV))
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / (t * 1e-6) / 1e9


# ---------------------------------------------------------------------------------------
# Attention cases
# ---------------------------------------------------------------------------------------

@dataclass
class AttnCase:
    name: str
    seq_lens: list
    q_lens: list
    block_size: int
    num_q_heads: int = 32
    num_kv_heads: int = 8
    head_size: int = 128
    hybrid: bool = False
    kv_cache_dtype: str = "auto"


def attention_cases(quick: bool) -> list:
    rng = np.random.default_rng(7)
    mixed = [int(x) for x in rng.integers(1, 8193, size=64)]
    cases = [
        AttnCase("B64 L4k bs16", [4096] * 64, [1] * 64, 16),
        AttnCase("B256 L32k bs16", [32768] * 256, [1] * 256, 16),
        AttnCase("B64 L4k bs2048", [4096] * 64, [1] * 64, 2048),
        AttnCase("B64 L4k bs544 hybrid", [4096] * 64, [1] * 64, 544, hybrid=True),
        AttnCase("B8 L32k bs2048 hybrid", [32768] * 8, [1] * 8, 2048, hybrid=True),
        AttnCase("B1 L32k bs16", [32768], [1], 16),
        AttnCase("B64 mixed 1..8192 bs16", mixed, [1] * 64, 16),
        AttnCase("B64 L4k bs16 fp8 e4m3", [4096] * 64, [1] * 64, 16, kv_cache_dtype="fp8"),
        AttnCase("B8 L32k bs2048 hybrid head256", [32768] * 8, [1] * 8, 2048, head_size=256, hybrid=True),
        AttnCase("B64 L4k bs16 64q/8kv", [4096] * 64, [1] * 64, 16, num_q_heads=64),
        AttnCase("prefill B8 512 on 4k bs16", [4096 + 512] * 8, [512] * 8, 16),
    ]
    if quick:
        cases = [c for c in cases if "B256" not in c.name]
    return cases


def build_attention(case: AttnCase):
    torch.manual_seed(0)
    bs, h, d, hq = case.block_size, case.num_kv_heads, case.head_size, case.num_q_heads
    fp8 = case.kv_cache_dtype != "auto"
    blocks = [math.ceil(n / bs) for n in case.seq_lens]
    max_blocks = max(blocks)
    num_blocks = sum(blocks)
    perm = torch.randperm(num_blocks, device=DEV, dtype=torch.int64).to(torch.int32)
    table = torch.zeros(len(blocks), max_blocks, dtype=torch.int32, device=DEV)
    starts = np.concatenate([[0], np.cumsum(blocks)])
    for i, n in enumerate(blocks):
        table[i, :n] = perm[starts[i]:starts[i] + n]
    hidden = bs * h * d
    cache_dtype = torch.uint8 if fp8 else torch.bfloat16
    if case.hybrid:
        # Blocks-first K/V interleave: each page is [K_b | V_b]; dim-0/1 strides (hidden, 2*hidden).
        base = torch.empty(num_blocks, 2, hidden, dtype=cache_dtype, device=DEV)
        kv = torch.as_strided(base, (2, num_blocks, bs, h, d), (hidden, 2 * hidden, h * d, d, 1))
    else:
        base = torch.empty(2, num_blocks, bs, h, d, dtype=cache_dtype, device=DEV)
        kv = base
    if fp8:
        # Finite e4m3 codes with both signs (0x00..0x7E, 0x80..0xFE); unwritten tails 0x7F (NaN).
        codes = torch.randint(0, 0x7E, base.shape, device=DEV, dtype=torch.int32)
        sign = torch.randint(0, 2, base.shape, device=DEV, dtype=torch.int32) * 0x80
        base.copy_((codes | sign).to(torch.uint8))
    else:
        base.normal_()
    # Poison the never-written tail of each sequence's last block.
    for i, n in enumerate(case.seq_lens):
        tail = n % bs
        if tail:
            last = int(table[i, blocks[i] - 1])
            if fp8:
                kv[:, last, tail:].fill_(0x7F)
            else:
                kv[:, last, tail:].fill_(float("nan"))
    key_cache, value_cache = pagedkv.split_kv_cache(kv, h, d)
    num_tokens = sum(case.q_lens)
    query = torch.randn(num_tokens, hq, d, dtype=torch.bfloat16, device=DEV)
    qsl = torch.tensor(np.concatenate([[0], np.cumsum(case.q_lens)]), dtype=torch.int32, device=DEV)
    seq_lens = torch.tensor(case.seq_lens, dtype=torch.int32, device=DEV)
    output = torch.full_like(query, float("nan"))
    scales = {}
    if fp8:
        scales = dict(k_scale=torch.tensor([0.02], device=DEV), v_scale=torch.tensor([0.03], device=DEV))
    args = (query, key_cache, value_cache, table, seq_lens, qsl)
    # The longest query, as vLLM passes it (decode-only batches: 1, so only the decode kernel runs).
    kwargs = dict(kv_cache_dtype=case.kv_cache_dtype, max_query_len=max(case.q_lens), **scales)
    return dict(kv=kv, args=args, kwargs=kwargs, output=output, blocks=blocks)


def kv_bytes(case: AttnCase) -> int:
    elem = 1 if case.kv_cache_dtype != "auto" else 2
    tokens = sum(case.seq_lens)
    return 2 * tokens * case.num_kv_heads * case.head_size * elem


def check_attention(case: AttnCase, built, out: torch.Tensor, samples: int = 2) -> str:
    """Recomputes sampled sequences on the CPU backend from a compact copy of their blocks."""
    import ml_dtypes
    idx = sorted({0, len(case.seq_lens) - 1, len(case.seq_lens) // 2})[:max(samples, 1) + 1]
    table = built["args"][3]
    worst = 0.0
    qsl = np.concatenate([[0], np.cumsum(case.q_lens)])
    for i in idx:
        n = built["blocks"][i]
        ids = table[i, :n].long()
        compact = built["kv"][:, ids].contiguous().cpu()
        if compact.dtype == torch.bfloat16:
            kv_np = compact.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            kv_np = compact.numpy()
        k_np, v_np = pagedkv.split_kv_cache(kv_np, case.num_kv_heads, case.head_size)
        rows = slice(qsl[i], qsl[i + 1])
        q_np = built["args"][0][rows].view(torch.int16).cpu().numpy().view(ml_dtypes.bfloat16)
        t_np = np.arange(n, dtype=np.int32)[None, :]
        kw = {}
        if case.kv_cache_dtype != "auto":
            kw = dict(k_scale=np.array([0.02], np.float32), v_scale=np.array([0.03], np.float32))
        ref = pagedkv.paged_attention(q_np, k_np, v_np, t_np, np.array([case.seq_lens[i]], np.int32),
                                      np.array([0, case.q_lens[i]], np.int32),
                                      kv_cache_dtype=case.kv_cache_dtype, **kw)
        got = out[rows].float().cpu().numpy()
        ref32 = ref.astype(np.float32)
        if not np.isfinite(got).all():
            return "FAIL (non-finite output)"
        worst = max(worst, float(np.abs(got - ref32).max() / max(1e-6, np.abs(ref32).max())))
    return f"ok (rel {worst:.1e})" if worst < 2e-2 else f"FAIL (rel {worst:.1e})"


def run_attention(case: AttnCase, ceiling: float, iters: int, flush) -> Result:
    built = build_attention(case)
    args, kwargs, out = built["args"], built["kwargs"], built["output"]
    plan = pagedkv.paged_attention_plan(*args, **kwargs)
    ws = torch.empty(max(plan["workspace_bytes"], 1), dtype=torch.uint8, device=DEV)
    call = lambda: pagedkv.paged_attention(*args, output=out, workspace=ws, **kwargs)  # noqa: E731
    gt = timed_call(call, iters, flush)
    t = gt.inside_us
    call()
    torch.cuda.synchronize()
    check = check_attention(case, built, out)
    q_bytes = 2 * args[0].numel() * 2  # query read + output written (bf16)
    nbytes = kv_bytes(case) + q_bytes
    gbps = nbytes / (t * 1e-6) / 1e9
    desc = f"{plan['path']} tile {plan['tile_size']} splits {plan['num_splits']}"
    extra = with_launch(gt, nbytes, ceiling)
    if max(case.q_lens) > 1:
        flops = 0
        for n, q in zip(case.seq_lens, case.q_lens):
            ctx = n - q
            flops += 4 * case.num_q_heads * case.head_size * sum(ctx + t + 1 for t in range(q))
        extra["tflops"] = flops / (t * 1e-6) / 1e12
    del built
    torch.cuda.empty_cache()
    return Result(case.name, "attention", t, nbytes, gbps, 100 * gbps / ceiling, desc, check, extra)


# ---------------------------------------------------------------------------------------
# Cache-write cases
# ---------------------------------------------------------------------------------------

def run_write(tokens: int, mode: str, ceiling: float, iters: int, flush) -> Result:
    torch.manual_seed(1)
    h, d, bs = 8, 128, 16
    fp8 = mode == "fp8"
    num_blocks = max(2 * tokens // bs, 4)
    hidden = bs * h * d
    cache_dtype = torch.uint8 if fp8 else torch.bfloat16
    if mode == "strided":
        base = torch.empty(num_blocks, 2, hidden, dtype=cache_dtype, device=DEV)
        kv = torch.as_strided(base, (2, num_blocks, bs, h, d), (hidden, 2 * hidden, h * d, d, 1))
    else:
        base = torch.empty(2, num_blocks, bs, h, d, dtype=cache_dtype, device=DEV)
        kv = base
    base.fill_(0x7F if fp8 else float("nan"))
    layout = "nhd" if mode == "nhd" else "split"
    if layout == "nhd":
        kc, vc = kv[0], kv[1]
    else:
        kc, vc = pagedkv.split_kv_cache(kv, h, d)
    key = torch.randn(tokens, h, d, dtype=torch.bfloat16, device=DEV)
    value = torch.randn(tokens, h, d, dtype=torch.bfloat16, device=DEV)
    # As an engine writes a step's tokens: whole runs of consecutive slots inside blocks that
    # the allocator handed out in random order (16-token sequences' worth per block).
    blocks = torch.randperm(num_blocks, device=DEV)[: (tokens + bs - 1) // bs].to(torch.int64)
    slots = (blocks[:, None] * bs + torch.arange(bs, device=DEV)[None, :]).reshape(-1)[:tokens].contiguous()
    kw = dict(kv_cache_dtype="fp8", k_scale=torch.tensor([0.05], device=DEV),
              v_scale=torch.tensor([0.04], device=DEV)) if fp8 else {}
    path = pagedkv.write_kv_cache(key, value, kc, vc, slots, kv_layout=layout, **kw)
    call = lambda: pagedkv.write_kv_cache(key, value, kc, vc, slots, kv_layout=layout, **kw)  # noqa: E731
    gt = timed_call(call, iters, flush)
    t = gt.inside_us
    # Oracle: the CPU backend on host copies of the same inputs must give the same bytes.
    import ml_dtypes
    host = base.cpu()
    host_np = host.view(torch.int16).numpy().view(ml_dtypes.bfloat16) if not fp8 else host.numpy()
    host_np = host_np.copy()
    hkv = np.lib.stride_tricks.as_strided(host_np, kv.shape, [s * host_np.itemsize for s in kv.stride()])
    if layout == "nhd":
        hk, hv = hkv[0], hkv[1]
    else:
        hk, hv = pagedkv.split_kv_cache(hkv, h, d)
    to_np = lambda x: x.view(torch.int16).cpu().numpy().view(ml_dtypes.bfloat16)  # noqa: E731
    hkw = dict(kv_cache_dtype="fp8", k_scale=np.array([0.05], np.float32),
               v_scale=np.array([0.04], np.float32)) if fp8 else {}
    pagedkv.write_kv_cache(to_np(key), to_np(value), hk, hv, slots.cpu().numpy(), kv_layout=layout, **hkw)
    gpu_bytes = base.cpu().view(torch.uint8).numpy().reshape(-1)
    same = np.array_equal(host_np.view(np.uint8).reshape(-1), gpu_bytes)
    elem = 1 if fp8 else 2
    nbytes = 2 * tokens * h * d * 2 + tokens * 8 + 2 * tokens * h * d * elem
    gbps = nbytes / (t * 1e-6) / 1e9
    name = f"write {mode} {tokens} tok"
    extra = with_launch(gt, nbytes, ceiling)
    return Result(name, "write", t, nbytes, gbps, 100 * gbps / ceiling, f"path {path}",
                  "ok (bytes identical)" if same else "FAIL (bytes differ from CPU backend)", extra)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write results as JSON here")
    ap.add_argument("--plot", help="write a PNG/SVG of % of copy bandwidth per case here")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="skip the largest case")
    ap.add_argument("--only", help="run only cases whose name contains this text")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("no GPU visible to torch: nothing to benchmark")
        return 1
    dev = torch.cuda.get_device_properties(0)
    print(f"device: {dev.name}, {dev.multi_processor_count} SMs; pagedkv {pagedkv.version()}")
    ceiling = copy_bandwidth()
    print(f"ceiling: device-to-device copy {ceiling:.0f} GB/s (bytes read + written, 4 GiB)")
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device=DEV)
    results = []
    jobs = [(c.name, lambda c=c: run_attention(c, ceiling, a.iters, flush)) for c in attention_cases(a.quick)]
    for mode in ("native", "strided", "nhd", "fp8"):
        for tokens in (1, 256, 8192, 65536):
            jobs.append((f"write {mode} {tokens} tok",
                         lambda m=mode, n=tokens: run_write(n, m, ceiling, a.iters, flush)))
    if a.only:
        jobs = [j for j in jobs if a.only in j[0]]
    for i, (name, job) in enumerate(jobs):
        print(f"[{i + 1}/{len(jobs)}] {name} ...", end=" ", flush=True)
        try:
            r = job()
            launch = r.extra.get("time_us_graph_launch", 0.0)
            print(f"{r.time_us:9.1f} us {r.gbps:7.0f} GB/s {r.pct_of_copy:5.1f}% (with graph launch {launch:.1f} us, "
                  f"{r.extra.get('pct_of_copy_graph_launch', 0.0):.1f}%) | {r.plan} | {r.check}", flush=True)
            results.append(r)
        except Exception as e:  # a failing case is reported, not fatal for the rest
            print(f"ERROR {type(e).__name__}: {e}", flush=True)
            results.append(Result(name, "error", 0, 0, 0, 0, "", f"ERROR {e}"))
        # Every case starts from an empty allocator cache, as an engine allocates its KV cache
        # once at startup, not in segments carved from the previous case's. (Alone it measured
        # no difference: the low case after B256 L32k was the idle GPU, see `busy`.)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    print("\n| case | time (us) | GB/s | % of copy | with graph launch: us, % | plan | check |")
    print("|---|---:|---:|---:|---:|---|---|")
    for r in results:
        extra = f" ({r.extra['tflops']:.1f} TFLOP/s)" if "tflops" in r.extra else ""
        launch = f"{r.extra.get('time_us_graph_launch', 0.0):.1f}, {r.extra.get('pct_of_copy_graph_launch', 0.0):.1f}%"
        print(f"| {r.name} | {r.time_us:.1f} | {r.gbps:.0f} | {r.pct_of_copy:.1f}%{extra} | {launch} | {r.plan} | {r.check} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"device": dev.name, "copy_gbps": ceiling,
                                            "results": [r.__dict__ for r in results]}, indent=1))
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(10, 0.32 * len(results) + 1.5))
        names = [r.name for r in results][::-1]
        vals = [r.pct_of_copy for r in results][::-1]
        ax.barh(names, vals, color=["tab:red" if "FAIL" in r.check or "ERROR" in r.check else "tab:blue"
                                    for r in results][::-1])
        ax.axvline(100, color="k", lw=0.8)
        ax.set_xlabel(f"% of measured copy bandwidth ({ceiling:.0f} GB/s)")
        ax.set_title(f"pagedkv on {dev.name}")
        fig.tight_layout()
        fig.savefig(a.plot)
    failed = [r for r in results if "FAIL" in r.check or "ERROR" in r.check]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
