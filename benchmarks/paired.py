"""Alternating paired measurements for a shared, noisy machine: A B, B A, A B, ... and the ratio per pair.

On a machine other processes load, two variants measured one after the other see different loads; run in
alternating pairs, both members of a pair see about the same. What is reported is the median of each side
and the median (and range) of the per-pair ratios B / A. Used by the benchmarks in this folder.
"""

from __future__ import annotations

import os
import statistics
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def alternate(measure_a: Callable[[], T], measure_b: Callable[[], T], pairs: int) -> list[tuple[T, T]]:
    """`pairs` pairs (a, b), the order swapped every pair (AB, BA, AB, ...) so neither always goes first."""
    out = []
    for i in range(pairs):
        if i % 2 == 0:
            a = measure_a()
            b = measure_b()
        else:
            b = measure_b()
            a = measure_a()
        out.append((a, b))
    return out


def summary(results: Sequence[tuple[float, float]], name_a: str = "A", name_b: str = "B") -> str:
    """`A median x | B median y | B/A median r (pairs lo-hi)`."""
    a = statistics.median(r[0] for r in results)
    b = statistics.median(r[1] for r in results)
    ratios = [r[1] / r[0] for r in results if r[0]]
    return (f"{name_a} median {a:.3f} | {name_b} median {b:.3f} | {name_b}/{name_a} median "
            f"{statistics.median(ratios):.3f} (pairs {min(ratios):.3f}-{max(ratios):.3f}, n={len(ratios)})")


def load_note() -> str:
    """The 1-minute load average and core count, printed beside every shared-machine number."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus"
