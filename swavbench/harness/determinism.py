"""Run-to-run comparisons (pure): per-rank losses of two runs, and the ips noise of repeated runs.

`first_difference` walks the per-rank `steps.<rank>.jsonl` records of two runs step by step and returns
where the losses first differ (exact float compare: a deterministic profile repeats bit for bit).
`ips_noise` summarises the steady-state ips of N identical runs for `swavbench calibrate`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

from swavbench.harness.logparse import StepsLog


@dataclass(frozen=True)
class Difference:
    step: int
    rank: int
    first: object  # loss of run 1 (None when run 1 has no record of this step)
    second: object


@dataclass(frozen=True)
class Comparison:
    steps: int  # logged steps compared (the common steps of every rank)
    ranks: int
    difference: Optional[Difference]

    def text(self) -> str:
        """`identical for N logged steps ...` or where the losses first differ, with both values."""
        if self.difference is None:
            return f"identical for {self.steps} logged steps ({self.ranks} rank(s), loss compared exactly)"
        d = self.difference
        return (
            f"losses differ first at step {d.step} on rank {d.rank}: {d.first!r} (run 1) vs {d.second!r} (run 2); "
            f"identical before that"
        )


def _losses(log: Optional[StepsLog]) -> dict[int, object]:
    return {int(s["step"]): s.get("loss") for s in (log.steps if log else [])}


def first_difference(a: dict[int, StepsLog], b: dict[int, StepsLog]) -> Comparison:
    """Compare two runs' per-rank step records: the earliest step (then lowest rank) whose loss differs.

    A step or rank that only one run recorded counts as a difference (shown as None).
    """
    ranks = sorted(set(a) | set(b))
    la, lb = {r: _losses(a.get(r)) for r in ranks}, {r: _losses(b.get(r)) for r in ranks}
    steps = sorted({s for r in ranks for s in la[r]} | {s for r in ranks for s in lb[r]})
    for i, step in enumerate(steps):
        for r in ranks:
            x, y = la[r].get(step), lb[r].get(step)
            if x != y or step not in la[r] or step not in lb[r]:
                return Comparison(i, len(ranks), Difference(step, r, x, y))
    return Comparison(len(steps), len(ranks), None)


def ips_noise(values: Sequence[float]) -> dict:
    """Run-to-run spread of N runs' ips: median, max |deviation| from it and stdev, both in %."""
    vals = [float(v) for v in values]
    med = statistics.median(vals)
    dev = max(abs(v - med) for v in vals) / med * 100
    sd = statistics.stdev(vals) / med * 100 if len(vals) > 1 else 0.0
    return {
        "repeats": len(vals),
        "median": round(med, 4),
        "max_dev_pct": round(dev, 3),
        "stdev_pct": round(sd, 3),
        "values": [round(v, 4) for v in vals],
    }


def band_warning(ips_pct: float, noise: Optional[dict]) -> Optional[str]:
    """A warning when the ips band is not wider than the measured run-to-run noise (None if fine/unknown)."""
    if not isinstance(noise, dict) or not isinstance(noise.get("max_dev_pct"), (int, float)):
        return None
    dev = float(noise["max_dev_pct"])
    if ips_pct > dev:
        return None
    return (
        f"warning: the ips band ±{ips_pct:g}% is narrower than the measured run-to-run noise here "
        f"(max deviation {dev:.1f}% over {noise.get('repeats')} runs, {noise.get('date_utc', '?')}): "
        "identical runs would fail; widen tolerances.ips_pct or calibrate on a quieter machine"
    )
