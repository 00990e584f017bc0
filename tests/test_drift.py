"""Drift over stored history: `swavbench history check` and the report flag a creep that each night passed."""

from __future__ import annotations

from pathlib import Path

import pytest

from swavbench.cli import main
from swavbench.report import build_report
from swavbench.store.history import History

CASE = "swav_pt_1n8c_fp16o1"


def record(day: int, ips: float, base_ips: float = 100.0, status: str = "pass", steady: bool = True) -> dict:
    rid = f"202611{day:02d}T200000Z-{CASE}-{day:04x}"
    rec = {
        "schema_version": 1,
        "run_id": rid,
        "case": CASE,
        "profile": "cpu-test-1t",
        "status": status,
        "started_utc": f"2026-11-{day:02d}T20:00:00Z",
        "message": "all checks pass",
        "metrics": {"marker": "20/46", "loss": "5.1", "ips": ips * 0.97, "max_mem": "0.01"},
        "baseline": {"metrics": {"ips": base_ips * 0.97, "ips_steady": base_ips}, "tolerances": {"ips_pct": 5.0}},
    }
    if steady:
        rec["ips_steady"] = {"median": ips, "iqr_pct": 3.0, "mad_pct": 1.5, "warmup_steps": 1, "n_steps": 20}
    return rec


def render_report(h: History) -> str:
    """The index and every run page of the report, as one text."""
    out = build_report(h, Path(h.path).parent / "site" / "index.html", run_pages=None)
    return "".join(p.read_text() for p in [out, *sorted((out.parent / "run").glob("*.html"))])


def db_with(tmp_path: Path, series: list[float], **kw) -> Path:
    path = tmp_path / "h.sqlite"
    with History(path) as h:
        for day, ips in enumerate(series, start=1):
            h.add_record(record(day, ips, **kw))
    return path


def test_creep_inside_the_band_is_flagged(tmp_path, capsys):
    db = db_with(tmp_path, [100, 101, 99, 100, 98, 96, 94])  # -2% a night, each night inside +-5%
    assert main(["history", "check", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert f"DRIFT {CASE} [cpu-test-1t]: ips 4.0% slower since run 20261105T200000Z" in out
    assert "median 100.0 -> 96.0 img/s over the last 3 of 7 passing runs" in out
    with History(db) as h:
        assert "DRIFT swav_pt_1n8c_fp16o1" in render_report(h)


def test_steady_history_passes_and_a_new_baseline_acknowledges(tmp_path, capsys):
    assert main(["history", "check", "--db", str(db_with(tmp_path / "a", [100, 101, 99, 100, 101, 99]))]) == 0
    assert "no drift of 3% or more" in capsys.readouterr().out
    db = db_with(tmp_path / "b", [100, 101, 99, 100, 95, 94])
    assert main(["history", "check", "--db", str(db)]) == 1
    with History(db) as h:  # re-recorded at the new level: the series restarts
        for day in (7, 8, 9):
            h.add_record(record(day, 94.5, base_ips=94.5))
    assert main(["history", "check", "--db", str(db)]) == 0
    with History(db) as h:
        assert "DRIFT" not in render_report(h)


def test_threshold_and_mean_fallback(tmp_path, capsys):
    db = db_with(tmp_path, [100, 101, 99, 100, 98, 97], steady=False)  # old records: mean of lines
    assert main(["history", "check", "--db", str(db)]) == 0
    assert main(["history", "check", "--db", str(db), "--threshold", "2"]) == 1
    assert "2.5% slower" in capsys.readouterr().out


@pytest.mark.parametrize("status", ["regression", "failed"])
def test_only_passing_runs_make_the_series(tmp_path, status):
    path = tmp_path / "h.sqlite"
    with History(path) as h:
        for day, ips in enumerate([100, 101, 99, 100], start=1):
            h.add_record(record(day, ips))
        h.add_record(record(5, 80, status=status))
        h.add_record(record(6, 79, status=status))
    assert main(["history", "check", "--db", str(path)]) == 0


def test_report_shows_both_attempts_of_a_confirmation(tmp_path):
    rec = record(1, 90.0)
    rec["message"] = "not confirmed over 2 runs (ips 80.0, 100.0; a regression needs every run outside ...): ..."
    rec["attempts"] = [
        {"attempt": 1, "status": "regression", "ips": 78.0, "steady": {"median": 80.0, "iqr_pct": 4.0},
         "checks": [{"metric": "ips_steady", "diff": "-20.00%", "verdict": "fail"}], "log_dir": "log"},
        {"attempt": 2, "status": "pass", "ips": 97.0, "steady": {"median": 100.0, "iqr_pct": 2.0},
         "checks": [{"metric": "ips_steady", "diff": "+0.00%", "verdict": "pass"}], "log_dir": "attempts/2/log"},
    ]  # fmt: skip
    with History(tmp_path / "h.sqlite") as h:
        h.add_record(rec)
        page = render_report(h)
    assert "Attempts (ips outside its band: rerun, judged on all steady steps pooled)" in page
    assert "<td>80.00</td>" in page and "<td>100.00</td>" in page and "attempts/2/log" in page
    assert "ips_steady -20.00%" in page
