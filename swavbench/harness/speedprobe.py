"""Machine-speed probe: a fixed single-thread workload, timed in CPU seconds, independent of Paddle.

What it is for: this VM's speed drifts by several % for minutes at a time (docs/verdicts.md). A probe taken
next to a run says whether the MACHINE was fast or slow then. It is measured in work per CPU second of its
own process, so a competing job on another core (which slows a run's wall clock) leaves it unchanged, and it
uses numpy, not Paddle, so a slower Paddle or trainer leaves it unchanged too.

`probe()` runs the workload in a fresh subprocess with one thread, so the caller's thread pools and the
training ranks' environment do not leak in. `python -m swavbench.harness.speedprobe [seconds]` prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Callable

WORKLOADS = ("matmul", "copy")  # compute-bound (160x160 float32 matmul), memory-bound (16 MiB copy)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls of fn per CPU second of this process, over `seconds` of wall time."""
    fn()
    n, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        fn()
        n += 1
    return n / max(time.process_time() - cpu0, 1e-9)


def measure(seconds: float = 0.5) -> dict[str, float]:
    """Each workload's calls per CPU second (run in this process: `probe` is the isolated form)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((160, 160)).astype(np.float32)
    src = np.ones(4 << 20, np.float32)
    dst = np.empty_like(src)
    return {
        "matmul": _rate(lambda: a @ a, seconds),
        "copy": _rate(lambda: np.copyto(dst, src), seconds),
    }


def probe(seconds: float = 0.5, timeout_s: float = 60.0) -> dict[str, float]:
    """`measure` in a one-thread subprocess; raises RuntimeError when the subprocess exits non-zero."""
    env = {**os.environ, **ONE_THREAD}
    proc = subprocess.run(
        [sys.executable, "-m", "swavbench.harness.speedprobe", str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"speed probe failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(measure(float(sys.argv[1]) if len(sys.argv) > 1 else 0.5)))
