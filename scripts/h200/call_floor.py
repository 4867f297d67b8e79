#!/usr/bin/env python3
"""The benchmark's own floor for a short call: `bench.timed_call` (events captured in the graph
around the call, L2 flushed before each run) of calls that do next to nothing: one and two
one-element kernels. A short case's time (B1 L32k's, from bench.py) then splits into its bytes'
time at the copy rate, its kernels' own overheads and this fixed cost.

  PYTHONPATH=python python3 scripts/h200/call_floor.py   (needs torch, a GPU)
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import bench  # noqa: E402


def main() -> int:
    flush = torch.empty(bench.L2_FLUSH_BYTES // 4, dtype=torch.float32, device=bench.DEV)
    x = torch.zeros(1, device=bench.DEV)
    iters = 50
    for name, call in (("one one-element kernel", lambda: x.add_(1.0)),
                       ("two one-element kernels", lambda: (x.add_(1.0), x.mul_(1.0)))):
        t = bench.timed_call(call, iters, flush)
        print(f"{name}: inside {t.inside_us:.2f} us, around {t.around_us:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
