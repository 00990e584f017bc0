"""Report charts from history DataFrames (pure): per-case trends over runs, per-run step curves."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Optional

import pandas as pd

from swavbench.report.svg import STATUS_COLORS, Band, Chart, Mark, Series, decimate, fmt, render

MAX_STEP_POINTS = 80  # per series in a run's step charts; keeps the file small
BLUE, GREY, PURPLE, TEAL = "#1565c0", "#6d6d6d", "#6a1b9a", "#00897b"
STATUS_LABELS = {"pass": "pass", "regression": "regression", "failed": "failed", "no_baseline": "no baseline"}


def value(x: Any) -> Optional[float]:
    """A finite float, or None for missing/NaN/text."""
    try:
        out = float(x)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _slug(text: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", text)
    return clean if clean == text else f"{clean}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def run_anchor(run_id: str) -> str:
    """The HTML id of a run's section (safe characters only, unique per run_id)."""
    return "run-" + _slug(str(run_id))


def group_anchor(case: str, profile: str) -> str:
    """The HTML id of a case+profile section."""
    return "case-" + _slug(f"{case}--{profile}")


def short_time(utc: Any) -> str:
    """'2026-11-28T20:01:02Z' -> '11-28 20:01' (tick labels); other text unchanged."""
    text = "" if utc is None or (isinstance(utc, float) and math.isnan(utc)) else str(utc)
    match = re.match(r"\d{4}-(\d\d-\d\d)T(\d\d:\d\d)", text)
    return f"{match.group(1)} {match.group(2)}" if match else text


def long_time(utc: Any) -> str:
    """'2026-11-28T20:01:02Z' -> '2026-11-28 20:01' (tables); other text unchanged."""
    text = short_time(utc)
    match = re.match(r"(\d{4})-\d\d-\d\dT", "" if utc is None else str(utc))
    return f"{match.group(1)}-{text}" if match else text


def _tip(row: pd.Series, what: str, unit: str = "", digits: int = 4) -> str:
    v = value(row[what])
    shown = "no value" if v is None else f"{fmt(v, digits=digits)}{unit}"
    status = STATUS_LABELS.get(row["status"], row["status"])
    return f"{long_time(row['started_utc'])} · {row['run_id']} · {status}: {shown}"


def _trend_chart(
    trend: pd.DataFrame, title: str, col: str, base_col: str, label: str, unit: str, band=None, digits: int = 4
) -> str:
    xs = list(range(len(trend)))
    rows = [row for _, row in trend.iterrows()]
    hrefs = ["#" + run_anchor(r["run_id"]) for r in rows]
    measured = Series(
        label, xs, [value(r[col]) for r in rows], BLUE, points=True,
        hrefs=hrefs, tips=[_tip(r, col, unit, digits) for r in rows],
        point_colors=[STATUS_COLORS.get(r["status"], BLUE) for r in rows],
    )  # fmt: skip
    baseline = Series("baseline", xs, [value(r[base_col]) for r in rows], GREY, dashed=True, step=True)
    marks = [Mark(x, h, _tip(r, col)) for x, h, r in zip(xs, hrefs, rows) if value(r[col]) is None]
    days = [short_time(r["started_utc"])[:5] for r in rows]
    labels = days if len(set(days)) == len(days) else [short_time(r["started_utc"]) for r in rows]  # same-day runs
    ticks = list(zip(xs, labels))
    series = [baseline, measured] if any(v is not None for v in baseline.ys) else [measured]
    y_label = unit.strip() or label
    return render(Chart(title, series, band, marks, "run (UTC)", y_label, ticks, 440, 250, digits))


def trend_charts(trend: pd.DataFrame) -> list[tuple[str, str]]:
    """(caption, svg) for one case+profile over runs: ips with baseline band, loss at marker, max memory."""
    xs = list(range(len(trend)))
    base = [value(b) for b in trend["baseline_ips"]]
    tol = [value(t) for t in trend["ips_tol_pct"]]
    lows = [b * (1 - t / 100) if b is not None and t is not None else None for b, t in zip(base, tol)]
    highs = [b * (1 + t / 100) if b is not None and t is not None else None for b, t in zip(base, tol)]
    tols = sorted({fmt(t) for t in tol if t is not None})
    band = Band(f"tolerance ±{'/'.join(tols)}%", xs, lows, highs) if tols else None
    markers = sorted({str(m) for m in trend["marker"].dropna()})
    loss_label = f"loss at {'/'.join(markers)}" if markers else "loss at marker"
    return [
        (
            "Throughput (ips, images/s)",
            _trend_chart(trend, "ips", "ips", "baseline_ips", "ips", " img/s", band),
        ),
        (
            loss_label.capitalize(),
            _trend_chart(trend, "loss", "loss_value", "baseline_loss_value", "loss", "", None, 6),
        ),
        (
            "Max memory (GB)",
            _trend_chart(trend, "max mem", "max_mem_value", "baseline_max_mem_value", "max mem", " GB"),
        ),
    ]


def _curve(frame: Optional[pd.DataFrame], col: str) -> tuple[list, list]:
    if frame is None or frame.empty:
        return [], []
    return decimate(list(frame["step"]), [value(v) for v in frame[col]], MAX_STEP_POINTS)


def run_charts(
    steps: pd.DataFrame, baseline_steps: Optional[pd.DataFrame], baseline_label: str
) -> list[tuple[str, str]]:
    """(caption, svg) for one run: loss per step against the baseline run's curve, batch/reader cost."""
    loss = [Series("this run", *_curve(steps, "loss"), BLUE)]
    bx, by = _curve(baseline_steps, "loss")
    if bx:
        loss.insert(0, Series(baseline_label, bx, by, GREY, dashed=True))
    costs = [
        Series("batch_cost", *_curve(steps, "batch_cost"), PURPLE),
        Series("reader_cost", *_curve(steps, "reader_cost"), TEAL),
    ]
    return [
        ("Loss per step", render(Chart("loss per step", loss, x_label="step", y_label="loss", width=600, digits=5))),
        (
            "batch_cost / reader_cost per step",
            render(Chart("cost per step", costs, x_label="step", y_label="seconds", width=600)),
        ),
    ]
