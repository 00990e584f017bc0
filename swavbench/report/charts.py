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


HOST_COLORS = ("#1565c0", "#ef6c00", "#6a1b9a", "#00897b", "#5d4037", "#c2185b", "#7cb342", "#3949ab",
               "#00acc1", "#8d6e63", "#546e7a", "#f9a825")  # fmt: skip
TREND_WIDTH, TREND_HEIGHT = 1300, 270
DAY_S = 86400.0


def _tip(row: dict, what: str, unit: str = "", digits: int = 4) -> str:
    v = value(row[what])
    shown = "no value" if v is None else f"{fmt(v, digits=digits)}{unit}"
    status = STATUS_LABELS.get(row["status"], row["status"])
    return f"{long_time(row['started_utc'])} · {row['host']} · {row['run_id']} · {status}: {shown}"


def _days(utc: pd.Series) -> list[float]:
    """Start times as days since the first (x of the trend charts); unparseable times keep their order."""
    stamps = pd.to_datetime(utc, utc=True, errors="coerce")
    if stamps.isna().all():
        return [float(i) for i in range(len(utc))]
    t0 = stamps.min()
    filled = stamps.fillna(t0)
    return [(t - t0).total_seconds() / DAY_S for t in filled]


def _time_ticks(xs: list[float], utc: list[str], count: int = 9) -> list[tuple[float, str]]:
    """About `count` evenly spaced (x, label) ticks: 'MM-DD' over days, 'MM-DD HH:MM' within three days."""
    if not xs:
        return []
    lo, hi = min(xs), max(xs)
    by_x = sorted(zip(xs, utc))
    wanted = [lo + (hi - lo) * i / (count - 1) for i in range(count)] if hi > lo else [lo]
    ticks, seen = [], set()
    for want in wanted:
        x, stamp = min(by_x, key=lambda item: abs(item[0] - want))
        label = short_time(stamp) if hi - lo < 3 else short_time(stamp)[:5]
        if x not in seen:
            seen.add(x)
            ticks.append((x, label))
    return ticks


def _piecewise(xs: list[float], ys: list[Optional[float]]) -> tuple[list[float], list[Optional[float]]]:
    """A value held until it changes, as few points: the level at each change and just before it."""
    out_x: list[float] = []
    out_y: list[Optional[float]] = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        if out_y and y == out_y[-1]:
            continue
        if out_y and out_y[-1] is not None:
            out_x.append(x if y is not None else xs[i - 1])  # hold the old level up to here
            out_y.append(out_y[-1])
        out_x.append(x)
        out_y.append(y)
    if xs and out_x and out_x[-1] != xs[-1] and out_y[-1] is not None:
        out_x.append(xs[-1])
        out_y.append(out_y[-1])
    return out_x, out_y


def _host_series(
    frame: pd.DataFrame, xs: list[float], col: str, unit: str, digits: int, hrefs: dict[str, str]
) -> tuple[list[Series], list[Mark]]:
    """Per host: a line through every run, and a linked, verdict-coloured point for each run with a page."""
    series, marks = [], []
    narrow = frame[["run_id", "started_utc", "status", "host", col]]
    for i, (host, part) in enumerate(narrow.groupby("host", sort=True)):
        color = HOST_COLORS[i % len(HOST_COLORS)]
        px = [xs[k] for k in part.index]
        rows = [dict(zip(part.columns, values)) for values in zip(*(part[c].tolist() for c in part.columns))]
        ys = [value(r[col]) for r in rows]
        series.append(Series(str(host), px, ys, color))
        linked = [(x, y, r) for x, y, r in zip(px, ys, rows) if r["run_id"] in hrefs]
        if linked:
            series.append(
                Series(
                    "", [x for x, _, _ in linked], [y for _, y, _ in linked], color, line=False, points=True,
                    hrefs=[hrefs[r["run_id"]] for _, _, r in linked],
                    tips=[_tip(r, col, unit, digits) for _, _, r in linked],
                    point_colors=[color if r["status"] == "pass" else STATUS_COLORS.get(r["status"], color)
                                  for _, _, r in linked],
                )
            )  # fmt: skip
        marks += [Mark(x, hrefs.get(r["run_id"], ""), _tip(r, col)) for x, y, r in zip(px, ys, rows) if y is None]
    return series, marks


def _trend_chart(frame: pd.DataFrame, xs: list[float], spec: tuple, hrefs: dict[str, str]) -> str:
    title, col, base_col, unit, digits, with_band = spec
    series, marks = _host_series(frame, xs, col, unit, digits, hrefs)
    bx, by = _piecewise(xs, [value(b) for b in frame[base_col]])
    band = None
    if with_band:
        tol = [value(t) for t in frame["ips_tol_pct"]]
        base = [value(b) for b in frame[base_col]]
        lows = [b * (1 - t / 100) if b is not None and t is not None else None for b, t in zip(base, tol)]
        highs = [b * (1 + t / 100) if b is not None and t is not None else None for b, t in zip(base, tol)]
        tols = sorted({fmt(t) for t in tol if t is not None})
        lx, ly = _piecewise(xs, lows)
        hx, hy = _piecewise(xs, highs)
        if tols and lx == hx:
            band = Band(f"tolerance ±{'/'.join(tols)}%", lx, ly, hy, step=False)
    if any(v is not None for v in by):
        series.insert(0, Series("baseline", bx, by, GREY, dashed=True))
    ticks = _time_ticks(xs, list(frame["started_utc"].fillna("")))
    y_label = unit.strip() or title
    chart = Chart(title, series, band, marks, "run start (UTC)", y_label, ticks, TREND_WIDTH, TREND_HEIGHT, digits)
    return render(chart)


TREND_SPECS = (  # (title, column, baseline column, unit, digits, band)
    ("ips", "ips", "baseline_ips", " img/s", 4, True),
    ("loss", "loss_value", "baseline_loss_value", "", 6, False),
    ("max mem", "max_mem_value", "baseline_max_mem_value", " GB", 4, False),
)


def trend_charts(trend: pd.DataFrame, hrefs: dict[str, str]) -> list[tuple[str, str]]:
    """(caption, svg) for one case+profile over time: ips with its band, loss at the marker, max memory.

    One line per host through every run; the runs in `hrefs` (run_id -> link of its page) are points.
    """
    frame = trend.sort_values(["started_utc", "run_id"], na_position="first").reset_index(drop=True)
    xs = _days(frame["started_utc"])
    markers = sorted({str(m) for m in frame["marker"].dropna()})
    loss_label = f"loss at {'/'.join(markers)}" if markers else "loss at marker"
    captions = ("Throughput (ips, images/s)", loss_label.capitalize(), "Max memory (GB)")
    return [(cap, _trend_chart(frame, xs, spec, hrefs)) for cap, spec in zip(captions, TREND_SPECS)]


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
