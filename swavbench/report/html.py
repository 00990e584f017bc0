"""The report, built only from the history database: `index.html` and the per-run pages beside it.

The index is triage first: one row per (case, profile, host), failed and regressed first, with "last good ->
first bad" (the project and Paddle commits of both runs) and a link to the logs; then a roll-up per (case,
profile) ("3 of 10 hosts regressed"); then per case+profile the trend charts over every run, one line per
host. The runs with a page (runpage.py: the last N of each host, every run that did not pass, and the runs
triage names) are linked points. The index stays small at a year of nightlies because per-run detail lives
on those pages. Every piece of text from records, logs and configs goes through `esc` (html.escape).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import pandas as pd

from swavbench.harness.drift import DEFAULT_DRIFT_PCT, find_drift
from swavbench.report.assets import CSS, JS
from swavbench.report.charts import STATUS_LABELS, group_anchor, long_time, trend_charts
from swavbench.report.runpage import RunPages, page_href
from swavbench.report.tables import METRICS, badge, esc, metric_cell, num_text
from swavbench.report.triage import Rollup, SeriesState, page_runs, rollups, series_states, with_host
from swavbench.store.history import History

DEFAULT_RUN_PAGES = 30  # per-run pages for the last N runs of each (case, profile, host), plus every non-pass


@dataclass
class ReportData:
    """What the index shows: the runs (profile and host filled), the series states and roll-ups, and
    which runs have a page."""

    runs: pd.DataFrame
    states: list[SeriesState]
    rolls: list[Rollup]
    selected: set[str]


def collect(
    history: History, since: Optional[str] = None, case_pattern: Optional[str] = None,
    run_pages: Optional[int] = DEFAULT_RUN_PAGES,
) -> ReportData:  # fmt: skip
    """Read the runs once and derive the triage; `run_pages` None gives every run a page."""
    runs = with_host(history.runs(since, case_pattern))
    states = series_states(runs)
    return ReportData(runs, states, rollups(states), page_runs(runs, states, run_pages))


def _run_ref(r: dict, hrefs: dict[str, str]) -> str:
    when = esc(long_time(r["started_utc"]))
    link = f'<a href="{esc(hrefs[r["run_id"]])}">{when}</a>' if r["run_id"] in hrefs else when
    paddle = esc(r.get("paddle_commit")) or "unknown"
    return f"{link} project <code>{esc(r['commit']) or 'unknown'}</code> · paddle <code>{paddle}</code>"


def streak_cell(s: SeriesState, hrefs: dict[str, str]) -> str:
    """'last good -> first bad' of a series whose latest run is bad, with both runs' commits."""
    if s.first_bad is None:
        return '<td class="streak muted">—</td>'
    bad = f"<b>first bad</b> {_run_ref(s.first_bad, hrefs)}"
    if s.last_good is None:
        return f'<td class="streak">no passing run before it in history<br>{bad}</td>'
    good, first = s.last_good, s.first_bad
    span = ""
    if good.get("commit") and first.get("commit"):
        span = f'<br><span class="muted">git log {esc(good["commit"])}..{esc(first["commit"])}</span>'
    return f'<td class="streak"><b>last good</b> {_run_ref(good, hrefs)}<br>→ {bad}{span}</td>'


def triage_table(states: list[SeriesState], checks: dict[str, dict[str, dict]], hrefs: dict[str, str]) -> str:
    """One row per (case, profile, host), worst first: verdict, latest run, metrics, streak, logs."""
    head = "".join(f"<th>{esc(title)}</th>" for _, title in METRICS)
    rows = []
    for s in states:
        r = s.latest
        run_checks = checks.get(r["run_id"], {})
        measured = {"loss": r["loss"], "ips": num_text(r["ips"]), "max_mem": r["max_mem"]}
        cells = "".join(metric_cell(run_checks.get(key), measured[key], s.status) for key, _ in METRICS)
        href = hrefs.get(r["run_id"])
        when = esc(long_time(r["started_utc"]))
        run = f'<a href="{esc(href)}">{when}</a>' if href else when
        logs = f'<a href="{esc(href)}#logs">logs</a>' if href else ""
        rows.append(
            f'<tr class="status-{esc(s.status)}"><td>{badge(s.status)}</td>'
            f'<td><a href="#{group_anchor(s.case, s.profile)}">{esc(s.case)}</a></td>'
            f'<td class="nowrap">{esc(s.host)}<br><span class="muted">{esc(s.profile)}</span></td>'
            f'<td class="nowrap">{run}<br>{logs}</td>{cells}'
            f'{streak_cell(s, hrefs)}<td class="message">{esc(r["message"])}</td></tr>'
        )
    return (
        '<div class="scroll"><table class="triage"><thead><tr><th>verdict</th><th>case</th>'
        f"<th>host · profile</th><th>latest run (UTC)</th>{head}<th>last good → first bad</th><th>message</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def rollup_table(rolls: list[Rollup]) -> str:
    """One row per (case, profile): the worst verdict over its hosts and how many hosts had each."""
    rows = "".join(
        f'<tr class="status-{esc(r.worst)}"><td>{badge(r.worst)}</td>'
        f'<td><a href="#{group_anchor(r.case, r.profile)}">{esc(r.case)}</a></td><td>{esc(r.profile)}</td>'
        f'<td class="rollup">{esc(r.line())}</td></tr>'
        for r in rolls
    )
    return (
        '<table class="rollup"><thead><tr><th>worst</th><th>case</th><th>profile</th><th>hosts by latest verdict'
        f"</th></tr></thead><tbody>{rows}</tbody></table>"
    )


class _SteadyColumns:
    """What find_drift reads of a run (its steady ips), from the runs frame instead of one record each."""

    def __init__(self, runs: pd.DataFrame) -> None:
        self.rate = dict(zip(runs["run_id"], runs["ips_steady"]))

    def record(self, run_id: str) -> dict:
        rate = self.rate.get(run_id)
        return {"ips_steady": {"rate": float(rate)}} if rate is not None and rate == rate else {}


def _section(case: str, profile: str, trend: pd.DataFrame, roll: Rollup, hrefs: dict[str, str], steady) -> str:
    drifts = []
    narrow = trend[["run_id", "case", "profile", "host", "started_utc", "status", "ips", "baseline_ips"]]
    for host, part in narrow.groupby("host", sort=True):
        found = find_drift(steady, part.reset_index(drop=True), DEFAULT_DRIFT_PCT)
        if found:
            drifts.append(f'<p class="msg advice drift">{esc(host)}: {esc(found.line())}</p>')
    figures = trend_charts(trend, hrefs)
    charts = "".join(f"<figure><figcaption>{esc(c)}</figcaption>{svg}</figure>" for c, svg in figures)
    first, last = long_time(trend["started_utc"].min()), long_time(trend["started_utc"].max())
    return (
        f'<section class="card" id="{group_anchor(case, profile)}">'
        f'<h2>{esc(case)} <span class="muted">· {esc(profile)}</span></h2>'
        f"<p>{len(trend)} run(s) from {esc(first)} to {esc(last)} UTC; {badge(roll.worst)} {esc(roll.line())}. "
        "One line per host through every run; points are the runs with a page (coloured by verdict when not a "
        "pass) and link to it; a cross marks a run without a value.</p>"
        f'{"".join(drifts)}<div class="charts trend">{charts}</div></section>'
    )


def render_index(history: History, data: ReportData, hrefs: dict[str, str], filters: str = "none") -> str:
    """The index page as one HTML string (pure given the database contents, apart from the time stamp)."""
    runs, rolls = data.runs, {(r.case, r.profile): r for r in data.rolls}
    checks = {
        s.latest["run_id"]: {c["metric"]: c for c in history.checks(s.latest["run_id"]).to_dict("records")}
        for s in data.states
    }
    steady = _SteadyColumns(runs)
    frames = dict(iter(runs.groupby(["case", "profile"], sort=True)))
    groups = [((r.case, r.profile), frames[(r.case, r.profile)]) for r in data.rolls]  # worst first, as the roll-up
    sections = "".join(_section(c, p, trend, rolls[(c, p)], hrefs, steady) for (c, p), trend in groups)
    nav = "".join(f'<a href="#{group_anchor(c, p)}">{esc(c)}{" · " + esc(p) if p else ""}</a>' for (c, p), _ in groups)
    counts = pd.Series([s.status for s in data.states], dtype=object).value_counts().sort_index()
    count_text = ", ".join(f"{n} {STATUS_LABELS.get(s, s)}" for s, n in counts.items())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    hosts = runs["host"].nunique() if len(runs) else 0
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>swavbench report</title><style>{CSS}</style></head><body>"
        f"<header><h1>swavbench performance report</h1><p>generated {stamp} from {esc(os.path.basename(history.path))}"
        f" · {len(runs)} run(s), {len(groups)} case/profile(s), {hosts} host(s) · {len(hrefs)} run page(s)"
        f" · filters: {filters}</p><nav><a href=\"#triage\">Triage</a><a href=\"#rollup\">Roll-up</a>{nav}</nav>"
        '</header><main><section class="card" id="triage">'
        "<h2>Latest verdict per case, profile and host (worst first)</h2>"
        f"<p>{esc(count_text) or 'no runs'}</p>{triage_table(data.states, checks, hrefs)}</section>"
        f'<section class="card" id="rollup"><h2>Per case and profile, over its hosts</h2>{rollup_table(data.rolls)}'
        f"</section>{sections}</main><script>{JS}</script></body></html>"
    )


def write_atomic(out: Path, text: str) -> None:
    """Write a file via a temp file in the same folder and a rename (world-readable)."""
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


def build_report(
    history: Union[History, str, Path],
    out_path: Union[str, Path],
    since: Optional[str] = None,
    case_pattern: Optional[str] = None,
    run_pages: Optional[int] = DEFAULT_RUN_PAGES,
) -> Path:
    """Write the index to `out_path` and the run pages into `<its folder>/run/`; return the index path.

    `history` is a History, a path or an sqlite URL; `run_pages` None gives every run a page.
    """
    out = Path(out_path)
    own = not isinstance(history, History)
    h = History(history) if own else history
    try:
        data = collect(h, since, case_pattern, run_pages)
        hrefs = RunPages(h, data.runs, data.selected, out.parent).write()
        filters = ", ".join(f"{k} {esc(v)}" for k, v in (("since", since), ("case", case_pattern)) if v) or "none"
        write_atomic(out, render_index(h, data, hrefs, filters))
    finally:
        if own:
            h.close()
    return out


def index_only(history: History, out_path: Union[str, Path], run_pages: Optional[int] = DEFAULT_RUN_PAGES) -> Path:
    """The index alone, linking the pages `build_report` would write (for timing the index by itself)."""
    data = collect(history, run_pages=run_pages)
    out = Path(out_path)
    write_atomic(out, render_index(history, data, {rid: page_href(rid) for rid in data.selected}))
    return out
