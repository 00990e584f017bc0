"""The one-file HTML report, built only from the history database.

Layout: a summary table (latest verdict per case and profile), then per case+profile the trend charts and
each run as a collapsible section (message, failure and log tail, checks, environment, step charts, ranks).
Every piece of text from records, logs and configs goes through `esc` (html.escape).
"""

from __future__ import annotations

import html
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

import pandas as pd

from swavbench.history import History
from swavbench.report.assets import CSS, JS
from swavbench.report.charts import (
    STATUS_LABELS,
    group_anchor,
    run_anchor,
    run_charts,
    short_time,
    trend_charts,
    value,
)
from swavbench.report.svg import fmt

LOG_TAIL_LINES = 40
METRICS = (
    ("loss", "loss at marker", "loss"),
    ("ips", "ips (img/s)", "ips"),
    ("max_mem", "max mem (GB)", "max_mem"),
)


def esc(x: Any) -> str:
    """Escaped text; None and NaN become ''."""
    if x is None or (isinstance(x, float) and x != x):
        return ""
    return html.escape(str(x), quote=True)


def badge(status: str) -> str:
    """A coloured status label (pass / regression / failed / no baseline)."""
    known = status in STATUS_LABELS
    return f'<span class="badge {esc(status) if known else "unknown"}">{esc(STATUS_LABELS.get(status, status))}</span>'


def _num_text(x: Any, digits: int = 2) -> str:
    v = value(x)
    return "" if v is None else f"{v:.{digits}f}"


def _metric_cell(check: Optional[dict], measured: Any) -> str:
    """measured value, then baseline and diff from the verdict's check (red when the check failed)."""
    if check is None:
        shown = esc(measured) if measured not in (None, "") and value(measured) is not None else "—"
        return f'<td class="num metric">{shown}<span class="b">no check</span></td>'
    fail = " fail" if check.get("verdict") == "fail" else ""
    return (
        f'<td class="num metric{fail}">{esc(check.get("measured")) or "—"}'
        f'<span class="b">baseline {esc(check.get("baseline")) or "—"}</span>'
        f'<span class="d">diff {esc(check.get("diff")) or "—"} (tol {esc(check.get("tolerance"))})</span></td>'
    )


def _summary(latest: pd.DataFrame, checks: dict[str, dict[str, dict]]) -> str:
    head = "".join(f"<th>{esc(title)}</th>" for _, title, _ in METRICS)
    rows = []
    for _, r in latest.iterrows():
        run_checks = checks.get(r["run_id"], {})
        measured = {"loss": r["loss"], "ips": _num_text(r["ips"]), "max_mem": r["max_mem"]}
        cells = "".join(_metric_cell(run_checks.get(key), measured[col]) for key, _, col in METRICS)
        rows.append(
            f'<tr class="status-{esc(r["status"])}"><td>{badge(r["status"])}</td>'
            f'<td><a href="#{group_anchor(r["case"], r["profile"])}">{esc(r["case"])}</a></td>'
            f'<td>{esc(r["profile"])}</td><td><a href="#{run_anchor(r["run_id"])}">{esc(short_time(r["started_utc"]))}</a>'
            f"</td><td><code>{esc(r['commit'])}</code></td>{cells}<td>{esc(r['message'])}</td></tr>"
        )
    return (
        '<table class="summary"><thead><tr><th>verdict</th><th>case</th><th>profile</th><th>run (UTC)</th>'
        f"<th>commit</th>{head}<th>message</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _figures(charts: list[tuple[str, str]], kind: str) -> str:
    return (
        f'<div class="charts {kind}">'
        + "".join(f"<figure><figcaption>{esc(c)}</figcaption>{svg}</figure>" for c, svg in charts)
        + "</div>"
    )


def _env_table(r: pd.Series, rec: dict) -> str:
    env = rec.get("environment") if isinstance(rec.get("environment"), dict) else {}
    world = esc(r["world_size"] if value(r["world_size"]) is None else int(r["world_size"]))
    layout = (
        f" ({esc(env.get('nnodes'))} node x {esc(env.get('nproc_per_node'))} proc)"
        if env.get("nproc_per_node")
        else ""
    )
    precision = f"{esc(r['precision_requested'])} → {esc(r['precision_effective'])}"
    if r["precision_note"]:
        precision += f' <span class="muted">({esc(r["precision_note"])})</span>'
    items = [
        ("device", esc(r["device"])), ("world size", world + layout), ("precision requested → effective", precision),
        ("paddle version", esc(r["paddle_version"])), ("commit", f"<code>{esc(r['commit'])}</code>"),
        ("config", esc(r["config"])), ("threads / seed", f"{esc(env.get('threads'))} / {esc(env.get('seed'))}"),
        ("host", esc(env.get("hostname"))), ("max mem source", esc(env.get("max_mem_source"))),
        ("duration", f"{_num_text(r['duration_s'], 1)} s"),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    return f'<div><h3>Environment</h3><table class="env">{rows}</table></div>'


def _checks_table(checks: pd.DataFrame) -> str:
    if checks.empty:
        return ""
    cols = ("metric", "baseline", "measured", "diff", "tolerance", "verdict")
    rows = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"fail" if c == "verdict" and r[c] == "fail" else ""}">{esc(r[c])}</td>'
            for c in cols
        )
        + "</tr>"
        for _, r in checks.iterrows()
    )
    return f'<div><h3>Checks</h3><table class="checks"><tr>{"".join(f"<th>{c}</th>" for c in cols)}</tr>{rows}</table></div>'


def _ranks_table(ranks: pd.DataFrame, r: pd.Series) -> str:
    if ranks.empty:
        return ""
    rows = []
    for _, k in ranks.iterrows():
        ips = k["ips"] if value(k["ips"]) is not None else (r["ips"] if k["rank"] == 0 else None)
        marker = {1: "yes", 0: "no"}.get(value(k["reached_marker"]), "")
        rows.append(
            f'<tr><td class="num">{esc(k["rank"])}</td><td class="num">{esc(_int_text(k["last_step"]))}</td>'
            f'<td class="num">{esc(_int_text(k["exit_code"]))}</td><td>{marker}</td><td class="num">{_num_text(ips)}</td></tr>'
        )
    head = "<tr><th>rank</th><th>final step</th><th>exit code</th><th>reached marker</th><th>ips</th></tr>"
    return f'<div><h3>Ranks</h3><table class="ranks">{head}{"".join(rows)}</table></div>'


def _int_text(x: Any) -> str:
    v = value(x)
    return "" if v is None else str(int(v))


def _failure(r: pd.Series, rec: dict, ranks: pd.DataFrame) -> str:
    """The verdict's reason and the last lines of the failing rank's log (failed runs only)."""
    if r["status"] != "failed":
        return ""
    failure = rec.get("failure") if isinstance(rec.get("failure"), dict) else {}
    rank = value(failure.get("rank"))
    bad = ranks[ranks["exit_code"].fillna(0) != 0] if not ranks.empty else ranks
    if rank is None and not bad.empty:
        rank = value(bad.iloc[0]["rank"])
    tail = failure.get("log_tail") if isinstance(failure.get("log_tail"), list) else []
    if not tail and rank is not None and not ranks.empty:
        match = ranks[ranks["rank"] == rank]
        tail = match.iloc[0]["log_tail"] if not match.empty else []
    reason = " · ".join(esc(x) for x in (failure.get("kind"), failure.get("message")) if x) or esc(
        r["message"]
    )
    who = f"rank {int(rank)}" if rank is not None else "the failing rank"
    log = "\n".join(str(line) for line in tail[-LOG_TAIL_LINES:])
    return (
        f'<div class="failure"><b>Reason:</b> {reason}<h3>Last lines of {who}\'s log</h3>'
        f'<pre class="log-tail">{esc(log) or "(no log lines recorded)"}</pre></div>'
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

    def run(self, r: pd.Series, is_open: bool) -> str:
        rec, ranks, checks = (
            self.h.record(r["run_id"]) or {},
            self.h.ranks(r["run_id"]),
            self.h.checks(r["run_id"]),
        )
        base_id = r["baseline_run_id"] or ""
        base_steps = self.steps(base_id) if base_id and base_id != r["run_id"] else None
        if base_steps is not None and base_steps.empty:
            base_steps = None
        when = self.started.get(base_id)
        label = f"baseline run {short_time(when)}" if when else "baseline run"
        steps = self.steps(r["run_id"]) if r["run_id"] in self.baseline_ids else self.h.steps(r["run_id"])
        base_note = self._baseline_note(base_id)
        summary = (
            f"{badge(r['status'])} <b>{esc(short_time(r['started_utc']))}</b> · commit <code>{esc(r['commit'])}</code>"
            f" · ips {_num_text(r['ips']) or '—'} · loss {esc(r['loss']) or '—'} · mem {esc(r['max_mem']) or '—'}"
            f" · <code>{esc(r['run_id'])}</code>"
        )
        advice = f'<p class="msg advice">{esc(r["advice"])}</p>' if r["advice"] else ""
        body = (
            f'<p class="msg">{esc(r["message"])}</p>{advice}{_failure(r, rec, ranks)}'
            f'<div class="row">{_checks_table(checks)}{_env_table(r, rec)}{_ranks_table(ranks, r)}</div>'
            f"<h3>Steps {base_note}</h3>{_figures(run_charts(steps, base_steps, label or 'baseline run'), 'steps')}"
            f'<p class="muted">command: <code>{esc(" ".join(map(str, rec.get("command") or [])))}</code></p>'
        )
        opened = " open" if is_open else ""
        return f'<details class="run" id="{run_anchor(r["run_id"])}"{opened}><summary>{summary}</summary><div class="run-body">{body}</div></details>'

    def _baseline_note(self, base_id: str) -> str:
        if not base_id:
            return '<span class="muted">(no baseline)</span>'
        if base_id in self.ids:
            return f'<span class="muted">(dashed: <a href="#{run_anchor(base_id)}">baseline run</a>)</span>'
        known = not self.steps(base_id).empty
        return f'<span class="muted">(baseline run {esc(base_id)} {"outside the filter" if known else "not in history"})</span>'

    def group(self, case: str, profile: str, trend: pd.DataFrame) -> str:
        runs = [self.run(r, i == 0) for i, (_, r) in enumerate(trend.iloc[::-1].iterrows())]
        first, last = short_time(trend.iloc[0]["started_utc"]), short_time(trend.iloc[-1]["started_utc"])
        return (
            f'<section class="card" id="{group_anchor(case, profile)}"><h2>{esc(case)} <span class="muted">· {esc(profile)}</span></h2>'
            f"<p>{len(trend)} run(s) from {esc(first)} to {esc(last)} UTC; latest {badge(trend.iloc[-1]['status'])}. "
            "Points are coloured by verdict and link to their run; a cross marks a run without a value.</p>"
            f"{_figures(trend_charts(trend), 'trend')}<h3>Runs (newest first)</h3>{''.join(runs)}</section>"
        )


def render_report(history: History, since: Optional[str] = None, case_pattern: Optional[str] = None) -> str:
    """The whole report as one HTML string (pure given the database contents, apart from the time stamp)."""
    runs = history.runs(since, case_pattern)
    latest = history.latest(since, case_pattern)
    runs = runs.assign(profile=runs["profile"].fillna(""))
    builder = _Builder(history, runs)
    groups = [
        (key, frame.reset_index(drop=True)) for key, frame in runs.groupby(["case", "profile"], sort=True)
    ]
    sections = "".join(builder.group(case, profile, trend) for (case, profile), trend in groups)
    checks = {rid: builder.checks(rid) for rid in latest["run_id"]}
    nav = "".join(
        f'<a href="#{group_anchor(c, p)}">{esc(c)}{" · " + esc(p) if p else ""}</a>' for (c, p), _ in groups
    )
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
        f'<nav><a href="#summary">Summary</a>{nav}</nav></header><main>'
        f'<section class="card" id="summary"><h2>Latest verdict per case and profile</h2><p>{esc(counts) or "no runs"}</p>'
        f"{_summary(latest, checks)}</section>{sections}</main><script>{JS}</script></body></html>"
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
