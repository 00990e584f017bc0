"""The one-file HTML report, built only from the history database.

Layout: a summary table (latest verdict per case and profile), then per case+profile the trend charts and
each run as a collapsible section (message, failure and log tail, checks, environment, step charts, ranks).
Every piece of text from records, logs and configs goes through `esc` (html.escape).
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import pandas as pd

from swavbench.harness.drift import DEFAULT_DRIFT_PCT, find_drift
from swavbench.report.ab import ab_section  # issue 12: the A/B part of a run (its own module)
from swavbench.report.assets import CSS, JS
from swavbench.report.charts import (
    STATUS_LABELS,
    group_anchor,
    long_time,
    run_anchor,
    run_charts,
    short_time,
    trend_charts,
)
from swavbench.report.tables import (
    attempts_table,
    badge,
    checks_table,
    env_table,
    esc,
    failure_box,
    ranks_table,
    run_summary_line,
    summary_table,
)
from swavbench.store.history import History


def _figures(charts: list[tuple[str, str]], kind: str) -> str:
    return (
        f'<div class="charts {kind}">'
        + "".join(f"<figure><figcaption>{esc(c)}</figcaption>{svg}</figure>" for c, svg in charts)
        + "</div>"
    )


class _Builder:
    """Collects what the page needs from one History (caches the baseline runs' step curves)."""

    def __init__(self, history: History, runs: pd.DataFrame) -> None:
        self.h, self.runs = history, runs
        self.ids = set(runs["run_id"])
        self.started = dict(zip(runs["run_id"], runs["started_utc"]))
        self.baseline_ids = set(runs["baseline_run_id"].dropna())
        self._steps: dict[str, pd.DataFrame] = {}  # baseline runs' steps, reused by every run against them

    def steps(self, run_id: str) -> pd.DataFrame:
        """Steps of a run that is some run's baseline (cached)."""
        if run_id not in self._steps:
            self._steps[run_id] = self.h.steps(run_id)
        return self._steps[run_id]

    def checks(self, run_id: str) -> dict[str, dict]:
        return {c["metric"]: c for c in self.h.checks(run_id).to_dict("records")}

    def baseline_curve(self, r: pd.Series) -> tuple[Optional[pd.DataFrame], str]:
        """The steps of the run this run's baseline came from (if stored), and its legend label."""
        base_id = r["baseline_run_id"] or ""
        if not base_id or base_id == r["run_id"] or self.steps(base_id).empty:
            return None, ""
        when = self.started.get(base_id)
        return self.steps(base_id), f"baseline run {short_time(when)}" if when else "baseline run"

    def run(self, r: pd.Series, is_open: bool) -> str:
        """One run's collapsible section (anchor `run_anchor(run_id)`)."""
        rid = r["run_id"]
        rec, ranks, checks = self.h.record(rid) or {}, self.h.ranks(rid), self.h.checks(rid)
        steps = self.steps(rid) if rid in self.baseline_ids else self.h.steps(rid)
        base_steps, label = self.baseline_curve(r)
        advice = f'<p class="msg advice">{esc(r["advice"])}</p>' if r["advice"] else ""
        command = esc(" ".join(map(str, rec.get("command") or []))) or "—"
        body = (
            f'<p class="msg">{esc(r["message"])}</p>{advice}{failure_box(r, rec, ranks)}{attempts_table(rec)}'
            f"{ab_section(rec)}"
            f'<div class="row"><div>{checks_table(checks)}{ranks_table(ranks, r)}</div>{env_table(r, rec)}</div>'
            f"<h3>Steps {self._baseline_note(r['baseline_run_id'] or '')}</h3>"
            f"{_figures(run_charts(steps, base_steps, label), 'steps')}"
            f'<p class="muted">command: <code>{command}</code></p>'
        )
        return (
            f'<details class="run" id="{run_anchor(rid)}"{" open" if is_open else ""}>'
            f'<summary>{run_summary_line(r)}</summary><div class="run-body">{body}</div></details>'
        )

    def _baseline_note(self, base_id: str) -> str:
        if not base_id:
            return '<span class="muted">(no baseline)</span>'
        if base_id in self.ids:
            return f'<span class="muted">(dashed: <a href="#{run_anchor(base_id)}">baseline run</a>)</span>'
        where = "outside the filter" if not self.steps(base_id).empty else "not in history"
        return f'<span class="muted">(baseline run {esc(base_id)} {where})</span>'

    def group(self, case: str, profile: str, trend: pd.DataFrame) -> str:
        """A case+profile section: trend charts, then its runs newest first (the newest open)."""
        runs = "".join(self.run(r, i == 0) for i, (_, r) in enumerate(trend.iloc[::-1].iterrows()))
        first, last = long_time(trend.iloc[0]["started_utc"]), long_time(trend.iloc[-1]["started_utc"])
        found = find_drift(self.h, trend, DEFAULT_DRIFT_PCT)
        drift = f'<p class="msg advice drift">{esc(found.line())}</p>' if found else ""
        return (
            f'<section class="card" id="{group_anchor(case, profile)}">'
            f'<h2>{esc(case)} <span class="muted">· {esc(profile)}</span></h2>'
            f"<p>{len(trend)} run(s) from {esc(first)} to {esc(last)} UTC; latest {badge(trend.iloc[-1]['status'])}. "
            "Points are coloured by verdict and link to their run; a cross marks a run without a value.</p>"
            f"{drift}{_figures(trend_charts(trend), 'trend')}<h3>Runs (newest first)</h3>{runs}</section>"
        )


def render_report(history: History, since: Optional[str] = None, case_pattern: Optional[str] = None) -> str:
    """The whole report as one HTML string (pure given the database contents, apart from the time stamp)."""
    runs = history.runs(since, case_pattern)
    latest = history.latest(since, case_pattern)
    runs = runs.assign(profile=runs["profile"].fillna(""))
    builder = _Builder(history, runs)
    groups = [(key, frame.reset_index(drop=True)) for key, frame in runs.groupby(["case", "profile"], sort=True)]
    sections = "".join(builder.group(case, profile, trend) for (case, profile), trend in groups)
    checks = {rid: builder.checks(rid) for rid in latest["run_id"]}
    nav = "".join(f'<a href="#{group_anchor(c, p)}">{esc(c)}{" · " + esc(p) if p else ""}</a>' for (c, p), _ in groups)
    filters = ", ".join(f"{k} {esc(v)}" for k, v in (("since", since), ("case", case_pattern)) if v) or "none"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    counts = ", ".join(
        f"{n} {STATUS_LABELS.get(s, s)}" for s, n in latest["status"].value_counts().sort_index().items()
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>swavbench report</title><style>{CSS}</style></head><body>"
        f"<header><h1>swavbench performance report</h1><p>generated {stamp} from {esc(os.path.basename(history.path))}"
        f" · {len(runs)} run(s), {len(groups)} case/profile(s) · filters: {filters}</p>"
        f'<nav><a href="#summary">Summary</a>{nav}</nav></header><main><section class="card" id="summary">'
        f"<h2>Latest verdict per case and profile</h2><p>{esc(counts) or 'no runs'}</p>{summary_table(latest, checks)}"
        f"</section>{sections}</main><script>{JS}</script></body></html>"
    )


def build_report(
    history: Union[History, str, Path],
    out_path: Union[str, Path],
    since: Optional[str] = None,
    case_pattern: Optional[str] = None,
) -> Path:
    """Write the report for `history` (a History, path or sqlite URL) to `out_path` atomically; return it."""
    out = Path(out_path)
    own = not isinstance(history, History)
    h = History(history) if own else history
    try:
        text = render_report(h, since, case_pattern)
    finally:
        if own:
            h.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
