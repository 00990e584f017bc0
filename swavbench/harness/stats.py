"""Robust throughput and drift statistics (pure): steady-state ips, pooled attempts, step changes.

`steady_ips` turns a rank's per-step `batch_cost` (steps.<rank>.jsonl) into steady-state images/s: the
warm-up is found from the data (the leading steps far slower than the median, at least `min_warmup`), the
rest is summarised by
- `rate`, the figure that judges: images / seconds over the steady steps after dropping the slowest and the
  fastest 10% (a trimmed mean of the step costs). A few odd steps cannot move it, and it uses the time of
  every kept step, so it is steadier run to run than the median: 6 quiet 8-rank CPU runs of
  swav_pt_1n8c_fp16o1 (21 steps) gave a run-to-run stdev of 2.3% for it and 3.6% for the median
  (benchmarks/verdict_quality.py measures the consequence);
- the median, the inter-quartile range and the median absolute deviation (in % of the median) of the
  per-step ips: the spread shown next to it.
`detect_drift` finds a step change in a nightly series that never left the band night by night.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

WARMUP_FACTOR = 1.5  # a leading step slower than this x the median is warm-up
MIN_WARMUP = 1  # step 1 (graph build, first batch) is always warm-up, as PASSL's first line
TRIM = 0.10  # share of the slowest and of the fastest steady steps left out of `rate`


@dataclass(frozen=True)
class Steady:
    """Steady-state throughput of one run (or of several pooled)."""

    rate: float  # images/s over the steady steps, 10% slowest and fastest left out (judges the verdict)
    median: float  # images/s: global batch / median batch_cost
    iqr_pct: float  # inter-quartile range of per-step ips, % of the median
    mad_pct: float  # median absolute deviation of per-step ips, % of the median
    warmup_steps: int
    n_steps: int  # steady steps summarised
    values: tuple[float, ...]  # per-step ips after warm-up (pooled across attempts when combined)

    def as_dict(self) -> dict:
        """JSON-friendly form for result.json (without the per-step values)."""
        return {
            "rate": round(self.rate, 5),
            "median": round(self.median, 5),
            "iqr_pct": round(self.iqr_pct, 3),
            "mad_pct": round(self.mad_pct, 3),
            "warmup_steps": self.warmup_steps,
            "n_steps": self.n_steps,
        }


def find_warmup(costs: Sequence[float], min_warmup: int = MIN_WARMUP, factor: float = WARMUP_FACTOR) -> int:
    """Number of leading warm-up steps: at least `min_warmup`, plus the leading steps > factor x median.

    Never more than half the steps, so a run that is slow throughout keeps its steady part.
    """
    if not costs:
        return 0
    rest = list(costs[min_warmup:]) or list(costs)
    med = statistics.median(rest)
    n = min_warmup
    while n < len(costs) // 2 and costs[n] > factor * med:
        n += 1
    return min(n, max(len(costs) - 1, 0))


def trimmed_rate(values: Sequence[float], trim: float = TRIM) -> float:
    """Images/s over steps of per-step ips `values`, the `trim` share slowest and fastest left out.

    The throughput of the kept steps: their images over their time, i.e. the harmonic mean of their ips.
    """
    vals = sorted(v for v in values if v > 0)
    if not vals:
        raise ValueError("trimmed_rate needs at least one positive ips value")
    k = int(len(vals) * trim)
    kept = vals[k : len(vals) - k]
    return len(kept) / sum(1.0 / v for v in kept)


def summarize_ips(values: Sequence[float], warmup_steps: int = 0) -> Optional[Steady]:
    """Trimmed rate, median, IQR% and MAD% of per-step ips values; None without values."""
    vals = [v for v in values if v > 0]
    if not vals:
        return None
    med = statistics.median(vals)
    iqr = 0.0
    if len(vals) >= 2:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
        iqr = q3 - q1
    mad = statistics.median(abs(v - med) for v in vals)
    return Steady(trimmed_rate(vals), med, iqr / med * 100, mad / med * 100, warmup_steps, len(vals), tuple(vals))


def steady_ips(costs: Sequence[float], global_batch: int, min_warmup: int = MIN_WARMUP) -> Optional[Steady]:
    """Steady-state ips of one rank's per-step batch costs (seconds) at `global_batch` images per step."""
    good = [c for c in costs if c and c > 0]
    if len(good) < 2 or global_batch <= 0:
        return None
    warm = find_warmup(good, min_warmup)
    return summarize_ips([global_batch / c for c in good[warm:]], warm)


def pooled(runs: Sequence[Steady]) -> Steady:
    """One Steady over the steady steps of several attempts (the combined evidence of a confirmation)."""
    values = [v for r in runs for v in r.values]
    out = summarize_ips(values, sum(r.warmup_steps for r in runs))
    assert out is not None, "pooled() needs at least one attempt with values"
    return out


@dataclass(frozen=True)
class Drift:
    """A step change: from point `index` on, the series sits `change_pct` away from the level before."""

    index: int  # first point of the new level
    change_pct: float  # (after - before) / before * 100, medians
    before: float  # median level before the step
    after: float  # median level from the step on
    n_after: int


def detect_drift(
    series: Sequence[float], threshold_pct: float, min_before: int = 3, min_after: int = 2
) -> Optional[Drift]:
    """The step change of at least `threshold_pct` that the newest points of `series` sit on, or None.

    For each split with >= `min_before` points before and >= `min_after` from it on: the reference is the
    median before, the new level the median after. A split counts when the new level is >= threshold away
    AND every point after it lies on the same side of the reference (one odd night is no step). The
    earliest such split is the start of the change: creep of -2% a night for three nights starts at its
    first night.
    """
    xs = [float(x) for x in series]
    for i in range(min_before, len(xs) - min_after + 1):
        ref = statistics.median(xs[:i])
        after = xs[i:]
        if ref <= 0:
            continue
        level = statistics.median(after)
        change = (level - ref) / ref * 100
        same_side = all(x < ref for x in after) if change < 0 else all(x > ref for x in after)
        if abs(change) >= threshold_pct and same_side:
            return Drift(i, change, ref, level, len(after))
    return None
