"""Triage of the history (pure: the runs DataFrame in, plain rows out).

A series is one (case, profile, host): what one machine measured night after night. Its state is the
latest run, and when that run is bad (regression or failed) the run where the bad streak began and the
last passing run before it, so "last good -> first bad" gives the commit range to search. A roll-up per
(case, profile) counts the hosts by their latest verdict ("3 of 10 hosts regressed"), so a regression on
most hosts cannot hide behind one host that passed. Everything is sorted worst first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

SEVERITY = {"failed": 0, "regression": 1, "no_baseline": 2, "pass": 3}  # unknown statuses sort after failed
BAD = ("failed", "regression")
UNKNOWN_HOST = "unknown host"


def severity(status: str) -> int:
    """Sort key of a verdict: failed < regression < no_baseline < pass; an unknown status right after failed."""
    return SEVERITY.get(status, 0.5)  # type: ignore[return-value]


def with_host(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with `profile` and `host` filled ('' and 'unknown host' for records that lack them)."""
    host = runs["host"] if "host" in runs else pd.Series([None] * len(runs), index=runs.index, dtype=object)
    return runs.assign(profile=runs["profile"].fillna(""), host=host.fillna(UNKNOWN_HOST).replace("", UNKNOWN_HOST))


def _none_if_nan(v: object) -> object:
    return None if v != v else v  # only NaN differs from itself


def records(frame: pd.DataFrame) -> list[dict]:
    """The rows as dicts, missing values (NaN) as None (column by column: far faster than to_dict per row)."""
    cols = list(frame.columns)
    columns = [[_none_if_nan(v) for v in frame[c].tolist()] for c in cols]
    return [dict(zip(cols, values)) for values in zip(*columns)]


@dataclass
class SeriesState:
    """One (case, profile, host): its latest run, and where its current bad streak began."""

    case: str
    profile: str
    host: str
    latest: dict
    runs: int
    first_bad: Optional[dict] = None  # oldest bad run of the streak the latest run belongs to
    last_good: Optional[dict] = None  # the passing run just before that streak (None: no pass before it)

    @property
    def status(self) -> str:
        return str(self.latest["status"])


def streak_bounds(statuses: list[str]) -> tuple[Optional[int], Optional[int]]:
    """(index of the last good run, index of the first bad run) of one series oldest first, when its latest
    run is bad; else (None, None).

    The streak is the newest runs that did not pass; its first bad run is the oldest regression or failure
    in it (a no_baseline run before it is not where the regression began).
    """
    if not statuses or statuses[-1] not in BAD:
        return None, None
    start = len(statuses) - 1
    while start > 0 and statuses[start - 1] != "pass":
        start -= 1
    first_bad = next(i for i in range(start, len(statuses)) if statuses[i] in BAD)
    return (start - 1 if start > 0 else None), first_bad


def series_states(runs: pd.DataFrame) -> list[SeriesState]:
    """A state per (case, profile, host), worst verdict first, then by case, profile, host."""
    ordered = with_host(runs).sort_values(["started_utc", "run_id"], na_position="first")
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in records(ordered):
        groups.setdefault((row["case"], row["profile"], row["host"]), []).append(row)
    out = []
    for (case, profile, host), rows in sorted(groups.items()):
        good, bad = streak_bounds([r["status"] for r in rows])
        first_bad = rows[bad] if bad is not None else None
        last_good = rows[good] if good is not None else None
        out.append(SeriesState(case, profile, host, rows[-1], len(rows), first_bad, last_good))
    return sorted(out, key=lambda s: (severity(s.status), s.case, s.profile, s.host))


@dataclass
class Rollup:
    """One (case, profile) over its hosts: how many hosts' latest runs have each verdict."""

    case: str
    profile: str
    hosts: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def worst(self) -> str:
        return min(self.counts, key=severity) if self.counts else "pass"

    def line(self) -> str:
        """'3 of 10 hosts regressed, 1 failed, 6 passed' (worst first)."""
        words = {"regression": "regressed", "failed": "failed", "no_baseline": "without baseline", "pass": "passed"}
        parts = [(n, words.get(status, status)) for status, n in sorted(self.counts.items(), key=_worst_first)]
        if not parts:
            return "no hosts"
        (n, word), rest = parts[0], parts[1:]
        head = f"{n} of {self.hosts} {'host' if self.hosts == 1 else 'hosts'} {word}"
        return ", ".join([head] + [f"{m} {w}" for m, w in rest])


def _worst_first(item: tuple[str, int]) -> tuple[float, str]:
    return severity(item[0]), item[0]


def rollups(states: list[SeriesState]) -> list[Rollup]:
    """A roll-up per (case, profile) of the series states, worst first, then by case and profile."""
    groups: dict[tuple[str, str], Rollup] = {}
    for s in states:
        roll = groups.setdefault((s.case, s.profile), Rollup(s.case, s.profile, 0))
        roll.hosts += 1
        roll.counts[s.status] = roll.counts.get(s.status, 0) + 1
    return sorted(groups.values(), key=lambda r: (severity(r.worst), r.case, r.profile))


def page_runs(runs: pd.DataFrame, states: list[SeriesState], last_n: Optional[int]) -> set[str]:
    """The run ids that get a per-run page: the last `last_n` of every series (all when None), every run
    that did not pass, the runs of each "last good -> first bad", and the baseline runs of those."""
    runs = with_host(runs)
    if last_n is None:
        chosen = set(runs["run_id"])
    else:
        ordered = runs.sort_values(["started_utc", "run_id"], na_position="first")
        recent = ordered.groupby(["case", "profile", "host"], sort=False).tail(max(last_n, 0))
        chosen = set(recent["run_id"]) | set(runs.loc[runs["status"] != "pass", "run_id"])
    for s in states:
        chosen |= {r["run_id"] for r in (s.first_bad, s.last_good) if r}
    known = set(runs["run_id"])
    bases = runs.loc[runs["run_id"].isin(chosen), "baseline_run_id"].dropna()
    return chosen | (set(bases) & known)
