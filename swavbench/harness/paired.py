"""Paired A/B statistics (pure): block rates, pair ratios, an exact Wilcoxon interval, the verdict rule.

An A/B session (swavbench.harness.ab) runs the reference (A) and the candidate (B) in alternating blocks of
steps, in the balanced order A B B A A B B A ...: blocks 1-2 form pair 1 (A then B), blocks 3-4 pair 2 (B
then A), and so on, so a machine that speeds up or slows down during the session favours neither side.
Each pair gives one ratio, candidate rate / reference rate. The verdict is judged on their logarithms:
- the location estimate is the Hodges-Lehmann median of the Walsh averages (x_i + x_j) / 2, i <= j;
- its interval is the exact Wilcoxon signed-rank confidence interval (distribution-free: it assumes the log
  ratios are symmetric about their centre, not that they are normal), from the exact null distribution of
  the signed-rank statistic, so it holds for 6 pairs as well as for 60.
The rule (`decide`), for a band of +-b (ratio 1 - b .. 1 + b):
- regression:  the interval lies below 1 (slower, beyond noise) AND the estimate is at or below 1 - b;
- improvement: the interval lies above 1 AND the estimate is at or above 1 + b;
- no change:   the interval lies inside (1 - b, 1 + b);
- otherwise undecided: more pairs are needed; at the session's maximum that is "inconclusive".
A session looks after every round (2 pairs) from `min_pairs` to `max_pairs`; the overall confidence is
split over those looks (Bonferroni, `look_confidence`: 10 looks from 6 to 24 pairs -> a 99.5% interval at
each), so unchanged code shows a significant interval in a whole session at most 5% of the time; requiring
the estimate beyond the band as well keeps its false alarms far below that. The first look with a 99.5%
interval is at 10 pairs (9 is the fewest that have one).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import cache
from typing import Optional, Sequence

CONFIDENCE = 0.95  # of the Wilcoxon interval
MIN_PAIRS = 6  # the first look (the fewest pairs with a 95% interval: the extreme Walsh averages, 96.9%)
UNDECIDED = "undecided"  # `decide` before the session's end; the session turns it into "inconclusive"


@cache
def signed_rank_counts(n: int) -> tuple[int, ...]:
    """counts[t] = number of subsets of {1..n} summing to t (the exact null distribution of W+, x 2^n)."""
    counts = [1] + [0] * (n * (n + 1) // 2)
    top = 0
    for k in range(1, n + 1):
        top += k
        for t in range(top, k - 1, -1):
            counts[t] += counts[t - k]
    return tuple(counts)


def signed_rank_cdf(n: int, t: int) -> float:
    """P(W+ <= t) under the null hypothesis (no shift), exactly."""
    if t < 0:
        return 0.0
    counts = signed_rank_counts(n)
    return sum(counts[: t + 1]) / 2**n


def critical_count(n: int, confidence: float = CONFIDENCE) -> Optional[int]:
    """The largest c with P(W+ <= c) <= (1 - confidence) / 2, or None when n is too small for it."""
    alpha_half = (1 - confidence) / 2
    counts, total, acc, c = signed_rank_counts(n), 2**n, 0, None
    for t, k in enumerate(counts):
        acc += k
        if acc / total > alpha_half:
            break
        c = t
    return c


def walsh_averages(xs: Sequence[float]) -> list[float]:
    """Sorted (x_i + x_j) / 2 for every i <= j."""
    return sorted((xs[i] + xs[j]) / 2 for i in range(len(xs)) for j in range(i, len(xs)))


def hodges_lehmann(xs: Sequence[float]) -> float:
    """The Hodges-Lehmann location estimate: the median of the Walsh averages."""
    return statistics.median(walsh_averages(xs))


def wilcoxon_interval(xs: Sequence[float], confidence: float = CONFIDENCE) -> Optional[tuple[float, float, float]]:
    """(low, high, achieved confidence) of the exact signed-rank interval for the centre of `xs`, or None.

    The interval is [W_(c+1), W_(M-c)] of the M sorted Walsh averages, c = critical_count; its exact coverage
    1 - 2 P(W+ <= c) is at least `confidence`.
    """
    n = len(xs)
    c = critical_count(n, confidence) if n else None
    if c is None:
        return None
    w = walsh_averages(xs)
    return w[c], w[len(w) - 1 - c], 1 - 2 * signed_rank_cdf(n, c)


@dataclass(frozen=True)
class Decision:
    """The paired verdict on n ratios (candidate / reference)."""

    status: str  # regression | improvement | no_change | undecided
    n: int  # pairs judged
    estimate: Optional[float]  # ratio (Hodges-Lehmann, back from logs); None without pairs
    low: Optional[float]  # interval on the ratio; None when n is too small
    high: Optional[float]
    confidence: Optional[float]  # exact coverage of [low, high]
    band_pct: float

    def as_dict(self) -> dict:
        def r(x: Optional[float]) -> Optional[float]:
            return None if x is None else round(x, 6)

        return {"status": self.status, "pairs": self.n, "ratio": r(self.estimate), "low": r(self.low),
                "high": r(self.high), "confidence": r(self.confidence), "band_pct": self.band_pct}  # fmt: skip

    def interval_text(self) -> str:
        """`-9.8% [-11.2%, -8.1%] (96.9%, 6 pairs)` or why there is no interval yet."""
        if self.estimate is None:
            return "no pairs"
        est = f"{(self.estimate - 1) * 100:+.2f}%"
        if self.low is None or self.high is None:
            return f"{est} (no interval yet: {self.n} pair(s))"
        return (f"{est} [{(self.low - 1) * 100:+.2f}%, {(self.high - 1) * 100:+.2f}%] "
                f"({self.confidence * 100:.1f}% interval, {self.n} pairs)")  # fmt: skip


def decide(
    ratios: Sequence[float], band_pct: float, confidence: float = CONFIDENCE, min_pairs: int = MIN_PAIRS
) -> Decision:
    """The verdict rule of the module docstring on candidate/reference ratios (all > 0)."""
    if any(not (r > 0 and math.isfinite(r)) for r in ratios):
        raise ValueError(f"ratios must be positive and finite, got {list(ratios)}")
    n, b = len(ratios), band_pct / 100
    if n == 0:
        return Decision(UNDECIDED, 0, None, None, None, None, band_pct)
    logs = [math.log(r) for r in ratios]
    est = math.exp(hodges_lehmann(logs))
    ci = wilcoxon_interval(logs, confidence) if n >= max(min_pairs, 1) else None
    if ci is None:
        return Decision(UNDECIDED, n, est, None, None, None, band_pct)
    lo, hi, conf = math.exp(ci[0]), math.exp(ci[1]), ci[2]
    if hi < 1 and est <= 1 - b:
        status = "regression"
    elif lo > 1 and est >= 1 + b:
        status = "improvement"
    elif lo > 1 - b and hi < 1 + b:
        status = "no_change"
    else:
        status = UNDECIDED
    return Decision(status, n, est, lo, hi, conf, band_pct)


def look_confidence(confidence: float, min_pairs: int, max_pairs: int, every: int = 2) -> float:
    """Each look's confidence when a session looks at n = every, 2 every, ... (>= min_pairs, <= max_pairs):
    the overall 1 - confidence split evenly over the looks (Bonferroni)."""
    looks = sum(1 for n in range(every, max_pairs + 1, every) if n >= min_pairs) or 1
    return 1 - (1 - confidence) / looks


def sequential(
    ratios: Sequence[float],
    band_pct: float,
    max_pairs: int,
    min_pairs: int = MIN_PAIRS,
    every: int = 2,
    confidence: float = CONFIDENCE,
) -> Decision:
    """What a session that looks after every `every` pairs (from `min_pairs` on) decides on this stream.

    The first decisive look wins (each at `look_confidence`); a stream that reaches `max_pairs` undecided is
    "inconclusive". The live session judges the same way; benchmarks/verdict_quality.py replays recorded
    streams with it.
    """
    ratios = list(ratios)[:max_pairs]
    conf = look_confidence(confidence, min_pairs, max_pairs, every)
    d = decide([], band_pct, conf, min_pairs)
    for n in range(every, len(ratios) + 1, every):
        d = decide(ratios[:n], band_pct, conf, min_pairs)
        if d.status != UNDECIDED:
            return d
    if len(ratios) % every:
        d = decide(ratios, band_pct, conf, min_pairs)
    if d.status == UNDECIDED and len(ratios) >= max_pairs:
        return Decision("inconclusive", d.n, d.estimate, d.low, d.high, d.confidence, band_pct)
    return d


def block_order(n_blocks: int) -> list[int]:
    """0 (reference) / 1 (candidate) for each block in the balanced order A B B A A B B A ..."""
    return [(0, 1, 1, 0)[i % 4] for i in range(n_blocks)]


def block_rate(ips_values: Sequence[float]) -> float:
    """One block's throughput: images over time of its clean steps (the harmonic mean of per-step ips)."""
    vals = [v for v in ips_values if v > 0]
    if not vals:
        raise ValueError("a block needs at least one step with a positive ips")
    return len(vals) / sum(1.0 / v for v in vals)


def pair_ratios(rates: Sequence[float]) -> list[float]:
    """Candidate / reference ratio of each complete pair of consecutive blocks in `block_order`."""
    order = block_order(len(rates))
    out = []
    for i in range(0, len(rates) - 1, 2):
        ref = rates[i] if order[i] == 0 else rates[i + 1]
        cand = rates[i + 1] if order[i] == 0 else rates[i]
        out.append(cand / ref)
    return out
