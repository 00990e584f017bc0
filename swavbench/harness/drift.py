"""Drift over the stored history: per case and profile, the passing runs against the current baseline.

Each night may pass inside its band while the level creeps (-2% a night for three nights). The series is
the steady-state ips (trimmed rate) of each passing run (PASSL's mean of lines for records without one), since
the newest baseline; `swavbench.harness.stats.detect_drift` finds the step. Re-recording the baseline
acknowledges a drift (the series starts again), so a finding is always new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from swavbench.harness.stats import Drift, detect_drift
from swavbench.store.history import History

DEFAULT_DRIFT_PCT = 3.0  # a lasting level change this big is worth a look even inside a wider band


@dataclass
class DriftFinding:
    case: str
    profile: str
    drift: Drift
    since_run: str  # first run at the new level
    since_utc: str
    runs: int  # runs in the series

    def line(self) -> str:
        """One line for the CLI and the report."""
        d = self.drift
        word = "slower" if d.change_pct < 0 else "faster"
        return (
            f"DRIFT {self.case} [{self.profile}]: ips {abs(d.change_pct):.1f}% {word} since run {self.since_run} "
            f"({self.since_utc}): median {d.before:.1f} -> {d.after:.1f} img/s over the last {d.n_after} of "
            f"{self.runs} passing runs, each inside its band"
        )


def run_ips(history: History, run_id: str, fallback: float) -> float:
    """The ips a run is judged on: its steady-state ips when recorded, else the mean of lines."""
    rec = history.record(run_id) or {}
    steady = rec.get("ips_steady") if isinstance(rec.get("ips_steady"), dict) else {}
    value = steady.get("rate", steady.get("median"))  # records before the trimmed rate kept the median
    return float(value) if isinstance(value, (int, float)) else float(fallback)


def series_since_baseline(trend: pd.DataFrame) -> pd.DataFrame:
    """The passing runs of one case+profile judged against the newest run's baseline (oldest first)."""
    passing = trend[(trend["status"] == "pass") & trend["ips"].notna()]
    if passing.empty:
        return passing
    key = passing.iloc[-1]["baseline_ips"]
    return passing[passing["baseline_ips"] == key] if pd.notna(key) else passing


def find_drift(history: History, trend: pd.DataFrame, threshold_pct: float) -> Optional[DriftFinding]:
    """A drift in one case+profile's trend (History.trend), or None."""
    series = series_since_baseline(trend)
    if series.empty:
        return None
    values = [run_ips(history, rid, ips) for rid, ips in zip(series["run_id"], series["ips"])]
    d = detect_drift(values, threshold_pct)
    if d is None:
        return None
    first = series.iloc[d.index]
    return DriftFinding(
        str(first["case"]), str(first["profile"] or ""), d, first["run_id"], str(first["started_utc"]), len(values)
    )


def check_history(
    history: History, threshold_pct: float = DEFAULT_DRIFT_PCT, case_pattern: Optional[str] = None
) -> list[DriftFinding]:
    """Every case+profile with a drift in its passing runs since the current baseline."""
    runs = history.runs(case_pattern=case_pattern)
    runs = runs.assign(profile=runs["profile"].fillna(""))
    out = []
    for _, trend in runs.groupby(["case", "profile"], sort=True):
        found = find_drift(history, trend.reset_index(drop=True), threshold_pct)
        if found:
            out.append(found)
    return out
