"""Inline SVG line charts, pure (data in, SVG text out) and readable without hovering.

Every chart has axes with tick labels, a legend, and the last value of each series written at the right
edge. Points may link to an anchor (`href`) and carry a native `<title>` tooltip. All text is escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Optional, Sequence

STATUS_COLORS = {"pass": "#2e7d32", "regression": "#d84315", "failed": "#b71c1c", "no_baseline": "#757575"}
CHAR_W = 6.3  # approximate width of one 11px character, for layout


@dataclass(frozen=True)
class Series:
    """One line (and/or points). `step=True` draws each value as a flat segment x-0.5..x+0.5."""

    label: str
    xs: Sequence[float]
    ys: Sequence[Optional[float]]
    color: str = "#1565c0"
    dashed: bool = False
    line: bool = True
    points: bool = False
    step: bool = False
    hrefs: Sequence[Optional[str]] = ()
    tips: Sequence[str] = ()
    point_colors: Sequence[str] = ()


@dataclass(frozen=True)
class Band:
    """A shaded tolerance band, drawn step-wise like a `step` series (or through its points: step=False)."""

    label: str
    xs: Sequence[float]
    lows: Sequence[Optional[float]]
    highs: Sequence[Optional[float]]
    color: str = "#2e7d32"
    step: bool = True


@dataclass(frozen=True)
class Mark:
    """A run without a value (e.g. a crash): a cross on the x axis, linked to its run (when href is not '')."""

    x: float
    href: str
    tip: str
    color: str = STATUS_COLORS["failed"]


@dataclass(frozen=True)
class Chart:
    """A whole chart; `x_ticks` gives categorical labels (runs), else numeric ticks are chosen."""

    title: str
    series: Sequence[Series]
    band: Optional[Band] = None
    marks: Sequence[Mark] = ()
    x_label: str = ""
    y_label: str = ""
    x_ticks: Optional[Sequence[tuple[float, str]]] = None
    width: int = 560
    height: int = 240
    digits: int = 4  # significant digits of the value labels at the right edge


def nice_step(span: float, target: int = 5) -> float:
    """A 1/2/5 x 10^k step giving about `target` intervals over `span`."""
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def nice_range(lo: float, hi: float, target: int = 5) -> tuple[float, float, float]:
    """(lo, hi, step) widened to whole steps; a flat range is padded by 2% (or 1)."""
    if hi - lo < 1e-12 * max(abs(lo), abs(hi), 1):
        pad = abs(lo) * 0.02 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, target)
    return math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step, step


def fmt(value: float, step: Optional[float] = None, digits: int = 4) -> str:
    """A short number: decimals to match a tick `step`, else `digits` significant digits."""
    if value == 0:
        return "0"
    if step is not None:
        return f"{value:.{max(0, -math.floor(math.log10(step) + 1e-9))}f}"
    mag = abs(value)
    if mag >= 1e6 or mag < 1e-3:
        return f"{value:.3g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(mag)))
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{value:.0f}"


def _text(x: float, y: float, text: str, anchor: str = "", extra: str = "") -> str:
    """An escaped SVG <text>; anchor 'middle' or 'end' when given."""
    where = f' text-anchor="{anchor}"' if anchor else ""
    return f'<text x="{_px(x)}" y="{_px(y)}"{where}{extra}>{escape(text)}</text>'


def decimate(xs: Sequence[float], ys: Sequence[Optional[float]], max_points: int) -> tuple[list, list]:
    """Drop None values and keep at most ~max_points, keeping each bucket's min and max (order kept)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    if len(pairs) <= max_points:
        return [p[0] for p in pairs], [p[1] for p in pairs]
    buckets = max(1, max_points // 2 - 1)
    size = (len(pairs) - 2) / buckets
    keep = {0, len(pairs) - 1}
    for b in range(buckets):
        chunk = range(1 + int(b * size), 1 + int((b + 1) * size))
        if chunk:
            keep.add(min(chunk, key=lambda i: pairs[i][1]))
            keep.add(max(chunk, key=lambda i: pairs[i][1]))
    picked = [pairs[i] for i in sorted(keep)]
    return [p[0] for p in picked], [p[1] for p in picked]


def _step_points(xs: Sequence[float], ys: Sequence[Optional[float]]) -> list[list[tuple[float, float]]]:
    """Runs of (x, y) for a step series; a None value breaks the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys):
        if y is None:
            runs.append([])
        else:
            runs[-1] += [(x - 0.5, y), (x + 0.5, y)]
    return [r for r in runs if r]


def _line_runs(s: Series) -> list[list[tuple[float, float]]]:
    """The connected pieces of a series; a None value breaks the line."""
    if s.step:
        return _step_points(s.xs, s.ys)
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(s.xs, s.ys):
        if y is None:
            runs.append([])
        else:
            runs[-1].append((x, y))
    return [r for r in runs if r]


class _Frame:
    """Maps data to pixels inside the plot area."""

    def __init__(self, chart: Chart, x0: float, x1: float, y0: float, y1: float, top: float) -> None:
        self.left, self.right, self.top, self.bottom = 64.0, chart.width - 78.0, top, chart.height - 40.0
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def x(self, value: float) -> float:
        return self.left + (value - self.x0) / ((self.x1 - self.x0) or 1) * (self.right - self.left)

    def y(self, value: float) -> float:
        return self.bottom - (value - self.y0) / ((self.y1 - self.y0) or 1) * (self.bottom - self.top)

    def pts(self, points: Sequence[tuple[float, float]]) -> str:
        """Pixel coordinates as 'x,y x,y' (0.1 px)."""
        return " ".join(f"{_px(self.x(x))},{_px(self.y(y))}" for x, y in points)

    def path(self, points: Sequence[tuple[float, float]]) -> str:
        """A compact path 'M x y l dx dy ...' in 0.1 px steps (relative moves keep long series small)."""
        tenths = [(round(self.x(x) * 10), round(self.y(y) * 10)) for x, y in points]
        (x0, y0), out = tenths[0], []
        for (xa, ya), (xb, yb) in zip(tenths, tenths[1:]):
            dx, dy = _px((xb - xa) / 10), _px((yb - ya) / 10)
            out.append(dx + ("" if dy.startswith("-") else " ") + dy)
        return f"M{_px(x0 / 10)} {_px(y0 / 10)}" + ("l" + " ".join(out) if out else "")


def _px(v: float) -> str:
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _legend(chart: Chart) -> tuple[list[str], float]:
    """Legend items laid out in rows above the plot; returns (svg parts, height used)."""
    items = [(s.label, s.color, s.dashed, s.points and not s.line) for s in chart.series if s.label]
    if chart.band is not None:
        items.append((chart.band.label, chart.band.color, False, None))
    parts, x, y = [], 64.0, 14.0
    for label, color, dashed, dot in items:
        width = 26 + len(label) * CHAR_W + 14
        if x + width > chart.width - 8 and x > 64:
            x, y = 64.0, y + 16
        if dot is None:
            parts.append(f'<rect x="{x:.0f}" y="{y - 6:.0f}" width="18" height="10" fill="{color}" opacity=".2"/>')
        elif dot:
            parts.append(f'<circle cx="{x + 9:.0f}" cy="{y - 1:.0f}" r="4" fill="{color}"/>')
        else:
            dash = ' stroke-dasharray="5 3"' if dashed else ""
            parts.append(f'<path d="M{x:.0f} {y - 1:.0f}h18" stroke="{color}" stroke-width="2"{dash}/>')
        parts.append(_text(x + 24, y + 3, label))
        x += width
    return parts, y + 10


def _extent(chart: Chart) -> tuple[list[float], list[float]]:
    """All x and y values the axes must show."""
    xs: list[float] = [m.x for m in chart.marks]
    ys: list[float] = []
    for s in chart.series:
        for run in _line_runs(s):
            xs += [p[0] for p in run]
            ys += [p[1] for p in run]
    if chart.band is not None:
        for run in _band_points(chart.band, chart.band.lows) + _band_points(chart.band, chart.band.highs):
            ys += [p[1] for p in run]
    return xs, ys


def _band_points(band: Band, ys: Sequence[Optional[float]]) -> list[list[tuple[float, float]]]:
    """The connected pieces of one edge of a band."""
    return _line_runs(Series("", band.xs, ys, step=band.step))


def _x_axis(chart: Chart, f: _Frame) -> list[str]:
    """Tick marks and labels along the bottom: categorical (thinned to fit) or numeric."""
    if chart.x_ticks is not None:
        ticks = list(chart.x_ticks)
        widest = max((len(label) for _, label in ticks), default=1) * CHAR_W + 10
        every = max(1, math.ceil(len(ticks) / max(1, (f.right - f.left) // widest)))
        shown = ticks[::-1][::every][::-1]
        labels = [(x, label) for x, label in shown]
    else:
        lo, hi, step = nice_range(f.x0, f.x1, 6)
        count = int(round((hi - lo) / step))
        labels = [(lo + i * step, fmt(lo + i * step, step)) for i in range(count + 1) if f.x0 <= lo + i * step <= f.x1]
    marks = "".join(f"M{_px(f.x(x))} {_px(f.bottom)}v4" for x, _ in labels)
    texts = "".join(_text(f.x(x), f.bottom + 15, label) for x, label in labels)
    return [f'<path d="{marks}" stroke="#888"/><g text-anchor="middle">{texts}</g>']


def _y_axis(f: _Frame, step: float) -> list[str]:
    values = [f.y0 + i * step for i in range(int(round((f.y1 - f.y0) / step)) + 1)]
    grid = "".join(f"M{_px(f.left)} {_px(f.y(v))}H{_px(f.right)}" for v in values)
    texts = "".join(_text(f.left - 6, f.y(v) + 4, fmt(v, step)) for v in values)
    return [f'<path d="{grid}" stroke="#e3e3e3"/><g text-anchor="end">{texts}</g>']


def _band(band: Band, f: _Frame) -> list[str]:
    out = []
    for low_run, high_run in zip(_band_points(band, band.lows), _band_points(band, band.highs)):
        outline = low_run + high_run[::-1]
        out.append(f'<polygon points="{f.pts(outline)}" fill="{band.color}" fill-opacity=".13"/>')
    return out


def _series(s: Series, f: _Frame, n_points: int) -> list[str]:
    out = []
    if s.line:
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        for run in _line_runs(s):
            out.append(f'<path d="{f.path(run)}" fill="none" stroke="{s.color}" stroke-width="1.8"{dash}/>')
    if s.points:
        radius = 4 if n_points <= 40 else 3
        for i, (x, y) in enumerate(zip(s.xs, s.ys)):
            if y is None:
                continue
            color = s.point_colors[i] if i < len(s.point_colors) else s.color
            tip = f"<title>{escape(s.tips[i])}</title>" if i < len(s.tips) else ""
            where = f'cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="{radius}"'
            dot = f'<circle class="pt" {where} fill="{color}">{tip}</circle>'
            href = s.hrefs[i] if i < len(s.hrefs) else None
            out.append(f'<a href="{escape(href)}">{dot}</a>' if href else dot)
    return out


MAX_VALUE_LABELS = 6  # more last values than this at the right edge: only the highest and the lowest


def _value_labels(chart: Chart, f: _Frame) -> list[str]:
    """The last value of each series at the right edge, nudged apart so they never overlap."""
    labels = []
    for s in chart.series:
        runs = _line_runs(s) if s.label and s.line else []
        if runs:
            labels.append([f.y(runs[-1][-1][1]), fmt(runs[-1][-1][1], digits=chart.digits), s.color])
    labels.sort(key=lambda item: item[0])
    if len(labels) > MAX_VALUE_LABELS:
        labels = [labels[0], labels[-1]]
    for i in range(1, len(labels)):
        labels[i][0] = max(labels[i][0], labels[i - 1][0] + 12)
    return [
        f'<text x="{f.right + 6:.0f}" y="{py + 4:.1f}" fill="{color}" class="val">{escape(text)}</text>'
        for py, text, color in labels
    ]


def render(chart: Chart) -> str:
    """The chart as one `<svg class="chart">` element (no external references)."""
    head = (
        f'<svg class="chart" viewBox="0 0 {chart.width} {chart.height}" width="{chart.width}" '
        f'height="{chart.height}" role="img" aria-label="{escape(chart.title)}">'
    )
    legend, top = _legend(chart)
    xs, ys = _extent(chart)
    if not ys and not chart.marks:
        return head + _text(chart.width / 2, chart.height / 2, "no data", "middle") + "</svg>"
    lo, hi = min(ys, default=0.0), max(ys, default=1.0)
    pad = (hi - lo) * 0.05  # keep points off the frame, but never below 0 for non-negative data
    y0, y1, ystep = nice_range(lo - pad if lo - pad >= 0 or lo < 0 else 0.0, hi + pad)
    if chart.x_ticks is not None:
        x0, x1 = min(xs) - 0.5 if xs else -0.5, max(xs) + 0.5 if xs else 0.5
        x0, x1 = (
            min(x0, min(x for x, _ in chart.x_ticks) - 0.5),
            max(x1, max(x for x, _ in chart.x_ticks) + 0.5),
        )
    else:
        x0, x1 = (min(xs), max(xs)) if min(xs) < max(xs) else (min(xs) - 1, max(xs) + 1)
    f = _Frame(chart, x0, x1, y0, y1, top + 8)
    n_points = max((len(s.xs) for s in chart.series), default=0)
    parts = [head, *legend, *_y_axis(f, ystep), *_x_axis(chart, f)]
    parts.append(f'<path d="M{f.left:.0f} {f.top:.0f}V{f.bottom:.0f}H{f.right:.0f}" stroke="#666" fill="none"/>')
    if chart.band is not None:
        parts += _band(chart.band, f)
    for s in chart.series:
        parts += _series(s, f, n_points)
    for m in chart.marks:
        cross = (
            f'<path class="mark" d="M{f.x(m.x) - 5:.1f} {f.bottom - 13:.0f}l10 10m0 -10l-10 10" '
            f'stroke="{m.color}" stroke-width="2.5"><title>{escape(m.tip)}</title></path>'
        )
        parts.append(f'<a href="{escape(m.href)}">{cross}</a>' if m.href else cross)
    parts += _value_labels(chart, f)
    if chart.y_label:
        mid = (f.top + f.bottom) / 2
        turn = f' transform="rotate(-90 13 {mid:.0f})"'
        parts.append(_text(13, mid, chart.y_label, "middle", turn))
    if chart.x_label:
        parts.append(_text((f.left + f.right) / 2, chart.height - 6, chart.x_label, "middle"))
    parts.append("</svg>")
    return "".join(parts)
