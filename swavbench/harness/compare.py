"""Summary + Baseline -> Verdict: PASSL's check_result rules, without its defects (pure).

Rules (tests/CI/case.sh `check_result`):
- loss: the marker-line string must equal the baseline string.
- ips: diff% = (measured - baseline) / baseline * 100, ROUNDED TO 2 DECIMALS (bash: awk printf "%0.2f"),
  must lie strictly inside (-tol, +tol): exactly +-5.00% fails, 4.99% passes, a speed-up fails too.
  We compute the diff in decimal arithmetic on the printed values and round half-even to 2 decimals, so
  float noise (5.000000000000004) cannot flip the boundary and the diff shown is the diff judged.
- ips, robust: when the run has per-step records (steps.0.jsonl) and the baseline an `ips_steady`, the
  verdict is judged on the steady-state ips (`ips_steady`: warm-up detected from the data, then images over
  time of the steady steps with the slowest and fastest 10% left out; swavbench.harness.stats) with the same band
  and rounding; PASSL's mean-of-lines ips stays in the table as an "info" row. A few slow steps on a shared
  machine move the mean of lines but not the steady figure.
- max mem: exact string compare; a baseline may instead give an absolute tolerance in GB (inclusive:
  |diff| <= tol passes) or "ignore". A missing field on both sides counts as equal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Optional

from swavbench.errors import EXIT_OK, EXIT_REGRESSION, EXIT_RUN_FAILED, EXIT_USAGE, BaselineError, RunFailed
from swavbench.harness.baselines import Baseline
from swavbench.harness.metrics import Summary

DIFF_DECIMALS = Decimal("0.01")  # ips diff% is judged at 2 decimals, like bash's printf "%0.2f"


@dataclass
class Check:
    metric: str
    baseline: str
    measured: str
    diff: str
    tolerance: str
    verdict: str  # "pass" | "fail"
    message: str = ""


@dataclass
class Verdict:
    status: str  # "pass" | "regression" | "failed" | "no_baseline"
    checks: list[Check]
    message: str
    advice: str
    exit_code: int  # 0 pass, 1 regression, 2 failed, 3 usage/baseline
    case: str = ""
    failure_kind: Optional[str] = None
    details: list[str] = field(default_factory=list)  # e.g. the last lines of a dead rank's log


def _dec(value: object) -> Decimal:
    """Exact decimal of a printed value (floats via their shortest repr)."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def ips_diff_pct(measured: float, baseline: float) -> Decimal:
    """(measured - baseline) / baseline * 100, rounded half-even to 2 decimals."""
    b = _dec(baseline)
    return ((_dec(measured) - b) / b * 100).quantize(DIFF_DECIMALS, rounding=ROUND_HALF_EVEN)


def _num(v: float, places: int = 4) -> str:
    s = f"{v:.{places}f}".rstrip("0").rstrip(".")
    return s or "0"


def _pct(d: Decimal) -> str:
    return f"{d:+.2f}%"


def _str_diff(measured: Optional[str], base: Optional[str]) -> str:
    try:
        d = Decimal(measured) - Decimal(base)
    except (InvalidOperation, TypeError):
        return "-"
    return "0" if d == 0 else f"{d:+f}"


def _check_loss(s: Summary, b: Baseline, tol: object) -> Check:
    base, got = str(b.metrics["loss"]), s.loss
    ok = got == base
    if not ok and tol != "exact":
        try:
            ok = abs(Decimal(got) - Decimal(base)) <= _dec(tol)
        except InvalidOperation:
            ok = False
    msg = "" if ok else (
        f"{s.metric} changed at {s.marker} (epoch {s.marker_epoch}, step {s.marker_step}): measured {got}, "
        f"baseline {base}; the loss is deterministic, so code, config or data changed")
    tol_text = "exact" if tol == "exact" else f"±{tol}"
    return Check(s.metric, base, got, _str_diff(got, base), tol_text, "pass" if ok else "fail", msg)


def _check_ips(s: Summary, b: Baseline, tol: float, judges: bool = True) -> Check:
    """PASSL's mean-of-lines ips; informational (verdict "info") when the steady-state ips judges."""
    base = float(b.metrics["ips"])
    if not judges:
        d = ips_diff_pct(s.ips, base) if math.isfinite(s.ips) else None
        return Check("ips", _num(base), _num(s.ips) if d is not None else str(s.ips),
                     _pct(d) if d is not None else "n/a", "info (mean of lines)", "info")
    return _band_check("ips", s.ips, base, tol, s)


def _check_steady(s: Summary, b: Baseline, tol: float) -> Check:
    """The steady-state ips (trimmed rate of the per-step records after the warm-up): judges the verdict."""
    return _band_check("ips_steady", s.steady.rate, float(b.metrics["ips_steady"]), tol, s)


def _band_check(metric: str, got: float, base: float, tol: float, s: Summary) -> Check:
    if not math.isfinite(got):
        return Check(metric, _num(base), str(got), "n/a", f"±{_num(tol)}%", "fail",
                     f"{metric} is {got}: a logged ips value is not a finite number")
    d = ips_diff_pct(got, base)
    t = _dec(tol)
    ok = -t < d < t
    msg = ""
    if not ok:
        word = "slower" if d < 0 else "faster"
        shown = f"{abs(d):.2f}" if abs(abs(d) - t) < 1 else f"{abs(d):.1f}"
        edge = ", the band is exclusive as in check_result" if abs(d) == t else ""
        what = "ips" if metric == "ips" else "steady-state ips"
        msg = (f"{what} {shown}% {word} than baseline (measured {got:.1f} vs {base:.1f} img/s, "
               f"allowed ±{_num(tol)}%{edge})")
    return Check(metric, _num(base), _num(got), _pct(d), f"±{_num(tol)}%", "pass" if ok else "fail", msg)


def robust_judges(s: Summary, b: Baseline) -> bool:
    """True when the steady-state ips judges (both the run and the baseline have it)."""
    return s.steady is not None and isinstance(b.metrics.get("ips_steady"), (int, float))


def _check_mem(s: Summary, b: Baseline, tol: object) -> Optional[Check]:
    if tol == "ignore":
        return None
    base, got = b.metrics.get("max_mem"), s.max_mem
    shown_b, shown_m = base if base is not None else "(absent)", got if got is not None else "(absent)"
    if tol == "exact" or base is None or got is None:
        ok = got == base
    else:
        try:
            ok = abs(Decimal(got) - Decimal(base)) <= _dec(tol)
        except InvalidOperation:
            ok = False
    msg = ""
    if not ok and got is None:
        msg = (f"max mem is absent from the log but the baseline has {base} GB (PASSL CPU builds drop the "
               "field): use a baseline recorded on this profile")
    elif not ok:
        msg = f"max mem changed: measured {shown_m} GB, baseline {shown_b} GB"
    tol_text = "exact" if tol == "exact" else f"±{tol} GB"
    return Check("max_mem", shown_b, shown_m, _str_diff(got, base), tol_text, "pass" if ok else "fail", msg)


def _spread(s: Summary) -> float:
    return s.steady.iqr_pct if s.steady else s.ips_spread_pct


def _advice(failed: list[Check], ips: Check, b: Baseline, case: str, s: Summary) -> str:
    commit = b.provenance.get("commit")
    since = f" since the baseline commit {commit}" if commit else " since the baseline was recorded"
    update = f"swavbench update-baseline {case}"
    names = {"ips" if c.metric == "ips_steady" else c.metric for c in failed}
    if s.metric in names:
        return f"find what changed{since} (code, config, data, paddle); if intended, run {update}"
    if "ips" in names and ips.diff == "n/a":
        return "rank 0 logged a non-finite ips: read the step lines (swavbench parse LOGDIR)"
    if "ips" in names:
        pct = abs(Decimal(ips.diff.rstrip("%")))
        if ips.diff.startswith("+"):
            return f"{pct:.1f}% faster than baseline: if intended, run {update}"
        return (f"{pct:.1f}% slower than baseline: look for a slowdown{since}, check nothing else ran on the "
                f"machine (ips spread this run: IQR {_spread(s):.1f}%), rerun to confirm")
    if "max_mem" in names:
        return f"check model, batch size or precision changes{since}; if intended, run {update}"
    return ""


def compare(summary: Summary, baseline: Baseline, case_id: str) -> Verdict:
    """Judge a run's summary against its baseline (check_result's rules; see module doc)."""
    if str(baseline.metrics["marker"]) != summary.marker:
        want = baseline.metrics["marker"]
        raise BaselineError(f"baseline {baseline.case} is for marker {want} but the log was read at "
                            f"{summary.marker}: use --marker {want} or the baseline of this profile")
    tol = baseline.tolerances
    band = float(tol.get("ips_pct", 5.0))
    robust = robust_judges(summary, baseline)
    checks = [_check_loss(summary, baseline, tol.get("loss", "exact")), _check_ips(summary, baseline, band, not robust)]
    if robust:
        checks.append(_check_steady(summary, baseline, band))
    ips = checks[-1]
    mem = _check_mem(summary, baseline, tol.get("max_mem", "exact"))
    if mem:
        checks.append(mem)
    failed = [c for c in checks if c.verdict == "fail"]
    if failed:
        return Verdict("regression", checks, "; ".join(c.message for c in failed),
                       _advice(failed, ips, baseline, case_id, summary), EXIT_REGRESSION, case_id)
    d = Decimal(ips.diff.rstrip("%"))
    advice = ""
    if abs(d) * 2 >= _dec(float(tol.get("ips_pct", 5.0))):
        word = "faster" if d > 0 else "slower"
        advice = f"{abs(d):.1f}% {word} than baseline (within tolerance)"
        if d > 0:
            advice += f": if intended, run swavbench update-baseline {case_id}"
    which = "steady-state ips" if robust else "ips"
    message = (f"all checks pass: {summary.metric} {summary.loss} at {summary.marker}, {which} {ips.diff} "
               f"vs baseline" + (f", max mem {summary.max_mem} GB" if summary.max_mem else ""))
    return Verdict("pass", checks, message, advice, EXIT_OK, case_id)


_FAILURE_ADVICE = {
    "nan_loss": "training diverged: check lr, precision (fp16 loss scaling) and data changes; the loss is "
                "deterministic, so a rerun reproduces it",
    "missing_marker": "the run stopped before the marker: read the log tail, check max_train_step and that "
                      "the baseline's marker fits this profile",
    "missing_field": "the log lacks a field check_result reads: is this the right case/metric (--metric)?",
    "no_records": "rank 0 logged no step: read the log tail for the startup error",
    "too_few_lines": "raise max_train_step or lower print_batch_step so lines follow the warm-up",
    "rank_died": "read the dead rank's log tail below; check dmesg for the OOM killer",
    "terminated": "the job was stopped from outside: check the watchdog/timeout and rerun",
    "malformed_line": "the log is corrupt (two ranks writing one file, a full disk, an edit): rerun the case; a "
                      "corrupt line is never judged as a measurement",
    "malformed_header": "the log is corrupt: rerun the case, or remove the run header line to judge without it",
    "malformed_steps": "the steps file is corrupt: rerun the case, or remove it to judge the worker log alone",
    "malformed_log": "the log dir holds a file launch never writes: remove or rename it",
}


def verdict_from_failure(err: RunFailed, case_id: str = "") -> Verdict:
    """A RunFailed as a Verdict(status="failed", exit_code=2); its `details` (log tail) are kept."""
    return Verdict("failed", [], f"run failed ({err.kind}): {err}",
                   _FAILURE_ADVICE.get(err.kind, "read the log tail"), EXIT_RUN_FAILED, case_id, err.kind,
                   list(getattr(err, "details", []) or []))


def no_baseline_verdict(case_id: str, path: str) -> Verdict:
    """A case with no baseline on this profile: fail with the command that records one."""
    return Verdict("no_baseline", [], f"no baseline for {case_id} at {path}",
                   f"record one: swavbench update-baseline {case_id}", EXIT_USAGE, case_id)


def verdict_to_dict(v: Verdict) -> dict:
    return asdict(v)


COLUMNS = ("metric", "baseline", "measured", "diff", "tolerance", "verdict")


def format_table(verdict: Verdict) -> str:
    """One aligned text table of the checks."""
    rows = [COLUMNS] + [tuple(getattr(c, k) for k in COLUMNS) for c in verdict.checks]
    if len(rows) == 1:
        return f"(no checks: {verdict.status})"
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)
