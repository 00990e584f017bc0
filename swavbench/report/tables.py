"""HTML tables and boxes of the report (pure: DataFrames/records in, escaped HTML out)."""

from __future__ import annotations

import html
from typing import Any, Optional

import pandas as pd

from swavbench.report.charts import STATUS_LABELS, long_time, value

LOG_TAIL_LINES = 40
METRICS = (("loss", "loss at marker"), ("ips", "ips (img/s)"), ("max_mem", "max mem (GB)"))  # check name, header
NO_CHECK = {"no_baseline": "no baseline yet", "failed": "run failed"}  # why a summary cell has no check


def esc(x: Any) -> str:
    """Escaped text; None and NaN become ''."""
    if x is None or (isinstance(x, float) and x != x):
        return ""
    return html.escape(str(x), quote=True)


def badge(status: str) -> str:
    """A coloured status label (pass / regression / failed / no baseline)."""
    known = status in STATUS_LABELS
    return f'<span class="badge {esc(status) if known else "unknown"}">{esc(STATUS_LABELS.get(status, status))}</span>'


def num_text(x: Any, digits: int = 2) -> str:
    """A number with fixed decimals, '' when missing."""
    v = value(x)
    return "" if v is None else f"{v:.{digits}f}"


def metric_cell(check: Optional[dict], measured: Any, status: str) -> str:
    """measured value, then baseline and diff from the verdict's check (red when the check failed)."""
    if check is None:
        shown = esc(measured) if value(measured) is not None else "—"
        return f'<td class="num metric">{shown}<span class="b">{NO_CHECK.get(status, "not checked")}</span></td>'
    fail = " fail" if check.get("verdict") == "fail" else ""
    return (
        f'<td class="num metric{fail}">{esc(check.get("measured")) or "—"}'
        f'<span class="b">baseline {esc(check.get("baseline")) or "—"}</span>'
        f'<span class="d">diff {esc(check.get("diff")) or "—"} (tol {esc(check.get("tolerance"))})</span></td>'
    )


def env_table(r: pd.Series, rec: dict) -> str:
    """Device, world size, precision requested vs effective, versions; '—' for what the record lacks."""
    env = rec.get("environment") if isinstance(rec.get("environment"), dict) else {}
    world = int_text(r["world_size"])
    if world and env.get("nproc_per_node"):
        world += f" ({esc(env.get('nnodes') or 1)} node × {esc(env['nproc_per_node'])} proc)"
    precision = f"{esc(r['precision_requested']) or '?'} → {esc(r['precision_effective']) or '?'}"
    if r["precision_note"]:
        precision += f' <span class="muted">({esc(r["precision_note"])})</span>'
    threads_seed = " / ".join(esc(env.get(k)) or "—" for k in ("threads", "seed"))
    duration = num_text(r["duration_s"], 1)
    commit = f"<code>{esc(r['commit'])}</code>" if r["commit"] else ""
    paddle_commit = f"<code>{esc(r.get('paddle_commit'))}</code>" if r.get("paddle_commit") else "unknown"
    cuda = " / ".join(esc(env.get(k)) or "—" for k in ("cuda_version", "cudnn_version"))
    items = [
        ("device", esc(r["device"])), ("world size", world), ("precision requested → effective", precision),
        ("paddle version", esc(r["paddle_version"])), ("paddle commit", paddle_commit),
        ("CUDA / cuDNN", cuda if env.get("cuda_version") or env.get("cudnn_version") else ""),
        ("GPU driver", esc(env.get("gpu_driver"))), ("commit", commit),
        ("config", esc(r["config"])), ("threads / seed", threads_seed), ("host", esc(env.get("hostname"))),
        ("project home", esc(rec.get("home"))),
        ("max mem source", esc(env.get("max_mem_source"))), ("duration", f"{duration} s" if duration else ""),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{k}</th><td>{v or '—'}</td></tr>" for k, v in items)
    return f'<div><h3>Environment</h3><table class="env">{rows}</table></div>'


def checks_table(checks: pd.DataFrame) -> str:
    """The verdict's checks (metric, baseline, measured, diff, tolerance, verdict); failed rows marked."""
    if checks.empty:
        return ""
    cols = ("metric", "baseline", "measured", "diff", "tolerance", "verdict")
    rows = "".join(
        ('<tr class="fail">' if r["verdict"] == "fail" else "<tr>")
        + "".join(f"<td>{esc(r[c])}</td>" for c in cols)
        + "</tr>"
        for _, r in checks.iterrows()
    )
    head = "".join(f"<th>{c}</th>" for c in cols)
    return f'<div><h3>Checks</h3><table class="checks"><tr>{head}</tr>{rows}</table></div>'


def _rank_rows(ranks: pd.DataFrame, run_ips: Any) -> list[tuple[str, str, str, str, str]]:
    """(ranks, final step, exit code, reached marker, ips) with neighbouring identical ranks merged ('1-7')."""
    rows: list[list] = []
    for _, k in ranks.iterrows():
        ips = k["ips"] if value(k["ips"]) is not None else (run_ips if k["rank"] == 0 else None)
        marker = {1: "yes", 0: "no"}.get(value(k["reached_marker"]), "")
        cells = (int_text(k["last_step"]), int_text(k["exit_code"]), marker, num_text(ips))
        rank = int(k["rank"])
        if rows and rows[-1][2] == cells and rows[-1][1] == rank - 1:
            rows[-1][1] = rank
        else:
            rows.append([rank, rank, cells])
    return [(str(lo) if lo == hi else f"{lo}-{hi}", *cells) for lo, hi, cells in rows]


def ranks_table(ranks: pd.DataFrame, r: pd.Series) -> str:
    """Per-rank outcome: final step, exit code, whether it reached the marker, ips (rank 0 logs it)."""
    if ranks.empty:
        return ""
    rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in _rank_rows(ranks, r["ips"]))
    head = "<tr><th>rank</th><th>final step</th><th>exit code</th><th>reached marker</th><th>ips</th></tr>"
    return f'<div><h3>Ranks</h3><table class="ranks">{head}{rows}</table></div>'


def int_text(x: Any) -> str:
    """An integer as text, '' when missing."""
    v = value(x)
    return "" if v is None else str(int(v))


def _failing_rank(failure: dict, rec: dict, ranks: pd.DataFrame) -> Optional[int]:
    """The rank the verdict names, else the odd one out among non-zero exits (a -9 among ranks the launcher
    stopped with 1), else the first rank whose status is not 'ok'."""
    if value(failure.get("rank")) is not None:
        return int(value(failure.get("rank")))
    bad = ranks[ranks["exit_code"].fillna(0) != 0] if not ranks.empty else ranks
    if not bad.empty:
        rarity = bad["exit_code"].map(bad["exit_code"].value_counts())
        return int(bad.loc[rarity.idxmin(), "rank"])
    rows = [r for r in rec.get("ranks") or [] if isinstance(r, dict) and r.get("status") not in (None, "ok")]
    return int(value(rows[0].get("rank")) or 0) if rows else None


def failure_box(r: pd.Series, rec: dict, ranks: pd.DataFrame) -> str:
    """The verdict's reason and the last lines of the failing rank's log (failed runs only)."""
    if r["status"] != "failed":
        return ""
    failure = rec.get("failure") if isinstance(rec.get("failure"), dict) else {}
    rank = _failing_rank(failure, rec, ranks)
    match = ranks[ranks["rank"] == rank] if rank is not None and not ranks.empty else ranks.iloc[0:0]
    tail = list(match.iloc[0]["log_tail"]) if not match.empty else []  # the rank's own log first
    if not tail and isinstance(failure.get("log_tail"), list):
        tail = failure["log_tail"]
    reason = " · ".join(esc(x) for x in (failure.get("kind"), failure.get("message")) if x) or esc(r["message"])
    who = f"rank {rank}" if rank is not None else "the failing rank"
    log = "\n".join(str(line) for line in tail[-LOG_TAIL_LINES:])
    return (
        f'<div class="failure"><b>Reason:</b> {reason}<h3>Last lines of {who}\'s log</h3>'
        f'<pre class="log-tail">{esc(log) or "(no log lines recorded)"}</pre></div>'
    )


def run_summary_line(r: pd.Series) -> str:
    """The one-line head of a run page: verdict, time, commits, the three metrics, run id."""
    paddle = esc(r.get("paddle_commit")) or "unknown"
    return (
        f"{badge(r['status'])} <b>{esc(long_time(r['started_utc']))}</b> · commit <code>{esc(r['commit'])}</code>"
        f" · paddle commit <code>{paddle}</code>"
        f" · ips {num_text(r['ips']) or '—'} · loss {esc(r['loss']) or '—'} · mem {esc(r['max_mem']) or '—'}"
        f" · <code>{esc(r['run_id'])}</code>"
    )


def attempts_table(rec: dict) -> str:
    """The runs behind a confirmed (or not confirmed) ips verdict: one row per attempt; '' for one run."""
    attempts = rec.get("attempts") if isinstance(rec.get("attempts"), list) else []
    if len(attempts) < 2:
        return ""
    rows = []
    for a in attempts:
        if not isinstance(a, dict):
            continue
        steady = a.get("steady") if isinstance(a.get("steady"), dict) else {}
        diffs = ", ".join(f"{c.get('metric')} {c.get('diff')}" for c in a.get("checks") or [] if isinstance(c, dict))
        rows.append(
            f"<tr><td>{esc(a.get('attempt'))}</td><td>{badge(str(a.get('status')))}</td>"
            f"<td>{esc(num_text(a.get('ips')))}</td><td>{esc(num_text(steady.get('rate', steady.get('median'))))}</td>"
            f"<td>{esc(num_text(steady.get('median')))}</td><td>{esc(num_text(steady.get('iqr_pct')))}</td><td>{esc(diffs)}</td><td>{esc(a.get('log_dir'))}</td></tr>"
        )
    return (
        "<h3>Attempts (ips outside its band: rerun, judged on all steady steps pooled)</h3>"
        '<table class="attempts"><thead><tr><th>#</th><th>verdict</th><th>ips (mean of lines)</th>'
        "<th>steady ips (judges)</th><th>median ips</th><th>IQR %</th><th>diffs</th><th>logs</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
