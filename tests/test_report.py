"""HTML report built from a history of the fixture runs: table rows, chart points, links, escaping, offline."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest

from swavbench import cli
from swavbench.report import build_report
from swavbench.report.charts import MAX_STEP_POINTS, group_anchor, run_anchor
from swavbench.report.svg import Chart, Series, decimate, fmt, nice_range, render
from swavbench.store.history import History

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
A, B, C = "swav_pt_1n8c_fp16o1", "swav_pt_1n1c_fp32", "swav_pt_1n2c_fp32"
XEON, EPYC = "cpu-intel-xeon-2t", "cpu-amd-epyc-4t"
CRASH, A_BASE = f"20261123T200102Z-{A}-d41f", f"20261120T200102Z-{A}-a001"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "history.sqlite"
    with History(path) as h:
        assert not h.import_runs(FIXTURES).failed
    return path


@pytest.fixture(scope="module")
def page(db: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = build_report(db, tmp_path_factory.mktemp("report") / "index.html")
    return out.read_text(encoding="utf-8")


def section(page: str, anchor: str) -> str:
    match = re.search(rf'<section class="card" id="{re.escape(anchor)}">(.*?)</section>', page, re.S)
    assert match, anchor
    return match.group(1)


def run_section(page: str, run_id: str) -> str:
    match = re.search(rf'<details class="run" id="{re.escape(run_anchor(run_id))}"[^>]*>(.*?)</details>', page, re.S)
    assert match, run_id
    return match.group(1)


def charts(fragment: str) -> dict[str, str]:
    """aria-label -> svg text of each chart in the fragment."""
    return dict(re.findall(r'<svg class="chart"[^>]*aria-label="([^"]*)">(.*?)</svg>', fragment, re.S))


def trend_charts(page: str, case: str, profile: str) -> dict[str, str]:
    return charts(section(page, group_anchor(case, profile)).split("<h3>Runs (newest first)</h3>")[0])


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def test_summary_table_has_the_latest_verdict_per_case_and_profile(page: str) -> None:
    body = re.search(r'<table class="summary">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = re.findall(r'<tr class="status-(\w+)">(.*?)</tr>', body, re.S)
    got = [(status, *re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[1:3]) for status, row in rows]
    assert [(s, text_of(c).strip(), p) for s, c, p in got] == [
        ("pass", B, EPYC), ("regression", B, XEON), ("no_baseline", C, XEON), ("failed", A, XEON),
    ]  # fmt: skip
    regression = text_of(rows[1][1])
    assert "52.91005" in regression and "baseline 61.53846" in regression and "diff -14.02%" in regression
    assert len(re.findall(r'class="num metric fail"', rows[1][1])) == 2  # ips and max_mem failed their checks
    assert text_of(rows[2][1]).count("no baseline yet") == 3 and "71.10" in text_of(rows[2][1])
    assert text_of(rows[3][1]).count("run failed") == 3 and "rank 3 died" in text_of(rows[3][1])


def test_trend_charts_have_a_point_per_run_and_a_cross_per_crash(page: str) -> None:
    a = trend_charts(page, A, XEON)
    assert set(a) == {"ips", "loss", "max mem"}
    for svg in a.values():
        assert svg.count('class="pt"') == 3  # the crash has no value ...
        assert svg.count('class="mark"') == 1  # ... and is a cross on the axis instead
    b = trend_charts(page, B, XEON)
    assert [svg.count('class="pt"') for svg in b.values()] == [3, 3, 3]
    assert "tolerance ±5%" in b["ips"] and "<polygon" in b["ips"]  # the band
    assert ">baseline<" in b["loss"] and ">52.91<" in b["ips"]  # legend and the last value, readable without hover
    c = trend_charts(page, C, XEON)
    assert [svg.count('class="pt"') for svg in c.values()] == [1, 1, 1] and ">baseline<" not in c["ips"]


def test_points_link_to_their_runs_and_every_anchor_exists(page: str) -> None:
    ips = trend_charts(page, A, XEON)["ips"]
    linked = re.findall(r'<a href="#([^"]+)"><circle class="pt"', ips)
    assert linked == [run_anchor(r) for r in (A_BASE, f"20261121T200102Z-{A}-b7e2", f"20261122T200102Z-{A}-c9d0")]
    assert re.findall(r'<a href="#([^"]+)"><path class="mark"', ips) == [run_anchor(CRASH)]
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    targets = set(re.findall(r'href="#([^"]*)"', page))
    assert targets and targets <= ids
    assert len([i for i in ids if i.startswith("run-")]) == 9


def test_run_section_has_loss_against_baseline_costs_ranks_and_environment(page: str) -> None:
    run = run_section(page, f"20261122T200102Z-{A}-c9d0")
    steps = charts(run)
    assert set(steps) == {"loss per step", "cost per step"}
    assert "baseline run 11-20 20:01" in steps["loss per step"] and steps["loss per step"].count('<path d="M') >= 3
    assert ">batch_cost<" in steps["cost per step"] and ">reader_cost<" in steps["cost per step"]
    text = text_of(run)
    assert "fp16 O1 → fp32" in text and "requested fp16 O1, ran fp32 on cpu" in text and "3.3.1" in text
    assert "8 (1 node × 8 proc)" in text
    assert re.search(r"<td>0-7</td><td>40</td><td>0</td><td>yes</td><td>97.55</td>", run) is None  # rank 0 has ips
    assert "<td>0</td><td>40</td><td>0</td><td>yes</td><td>97.55</td>" in run
    assert "<td>1-7</td><td>40</td><td>0</td><td>yes</td><td></td>" in run
    epyc = run_section(page, f"20261123T090000Z-{B}-e001")
    assert "not in history" in epyc and "baseline run" not in charts(epyc)["loss per step"]


def test_failed_run_shows_reason_and_log_tail_escaped(page: str) -> None:
    run = run_section(page, CRASH)
    assert "Reason:" in run and "rank_died" in run and "Last lines of rank 3" in run
    tail = re.search(r'<pre class="log-tail">(.*?)</pre>', run, re.S).group(1)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in tail and "&amp; &quot;quotes&quot;" in tail
    assert tail.splitlines()[-1] == "Killed"
    assert "<td>3</td><td>12</td><td>-9</td><td>no</td>" in run
    assert "&lt;b&gt;not bold&lt;/b&gt;" in run


def test_failing_rank_is_found_without_a_failure_block(tmp_path: Path) -> None:
    rec = json.loads((FIXTURES / CRASH / "result.json").read_text())
    rec["failure"] = None  # e.g. a NaN loss: the verdict names no rank; rank 3 exited -9
    with History(tmp_path / "h.sqlite") as h:
        h.add_record(rec)
        run = run_section(build_report(h, tmp_path / "r.html").read_text(), CRASH)
    assert "Last lines of rank 3" in run and "rank 3 died" in text_of(run.split("<h3>")[0])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run


def test_all_record_text_is_escaped(page: str) -> None:
    assert page.count("<script") == 1  # the report's own tiny script, nothing from logs
    assert "alert(1)" not in page.replace("&lt;script&gt;alert(1)&lt;/script&gt;", "")
    assert "<b>not bold" not in page and "<yet>" not in page and "&lt;yet&gt;" in page


def test_report_is_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(|<link[^>]+stylesheet|<img|<iframe|<object", page, re.I)
    assert "<style>" in page and page.startswith("<!DOCTYPE html>")


def test_filters_since_and_case(db: Path, tmp_path: Path) -> None:
    only_a = build_report(db, tmp_path / "a.html", case_pattern="*1n8c*").read_text()
    assert group_anchor(A, XEON) in only_a and group_anchor(B, XEON) not in only_a
    recent = build_report(f"sqlite:///{db}", tmp_path / "r.html", since="2026-11-23").read_text()
    shown = re.findall(r'<details class="run" id="run-([^"]+)"', recent)
    assert sorted(shown) == sorted([CRASH, f"20261123T090000Z-{B}-e001", f"20261123T210000Z-{C}-c001"])
    crash = run_section(recent, CRASH)
    assert "outside the filter" in crash and "baseline run" in charts(crash)["loss per step"]


def test_empty_history_gives_a_page_not_a_crash(tmp_path: Path) -> None:
    text = build_report(tmp_path / "empty.sqlite", tmp_path / "e.html").read_text()
    assert "no runs" in text and "0 run(s)" in text


def test_long_step_series_are_decimated(tmp_path: Path) -> None:
    rec = json.loads((FIXTURES / A_BASE / "result.json").read_text())
    rec["steps"] = [{"step": i, "loss": 8 - i / 5000, "batch_cost": 1 + (i % 7) / 10, "reader_cost": 0.01}
                    for i in range(1, 5001)]  # fmt: skip
    with History(tmp_path / "h.sqlite") as h:
        h.add_record(rec)
        text = build_report(h, tmp_path / "r.html").read_text()
    loss = charts(run_section(text, A_BASE))["loss per step"]
    path = re.search(r'<path d="(M[^"]*)" fill="none" stroke="#1565c0"', loss).group(1)
    assert 2 < len(re.findall(r"-?\d+(?:\.\d)?", path)) // 2 <= MAX_STEP_POINTS + 1
    assert len(text) < 60_000


def test_chart_helpers() -> None:
    xs, ys = decimate(list(range(1000)), [float(i % 10) for i in range(1000)], 50)
    assert len(xs) <= 50 and xs == sorted(xs) and (xs[0], xs[-1]) == (0, 999) and max(ys) == 9 and min(ys) == 0
    assert decimate([1, 2, 3], [1.0, None, float("nan")], 10) == ([1], [1.0])
    assert nice_range(97.5, 103.3) == (96, 104, 2) and fmt(0.25, 0.05) == "0.25" and fmt(61.538461) == "61.54"
    empty = render(Chart("nothing", [Series("x", [], [])]))
    assert "no data" in empty
    evil = render(Chart("<t>", [Series("<s>", [0, 1], [1.0, 2.0], tips=["<x>", "&"], points=True, hrefs=["#a", "#b"])]))
    assert "<s>" not in evil and "&lt;s&gt;" in evil and "<title>&lt;x&gt;</title>" in evil
    assert 'aria-label="&lt;t&gt;"' in evil
    assert run_anchor("a b<c>") != run_anchor("a_b_c_") and re.fullmatch(r"run-[\w.-]+", run_anchor("a b<c>"))


def test_report_command_imports_new_runs_then_builds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = Path(shutil.copytree(FIXTURES, tmp_path / "runs"))
    (runs / "junk").mkdir()
    (runs / "junk" / "result.json").write_text("not json")
    out = tmp_path / "site" / "index.html"
    argv = ["report", "--runs", str(runs), "--db", str(tmp_path / "h.sqlite"), "--out", str(out), "--case", "1n2c"]
    assert cli.main(argv) == 0
    stdout, stderr = capsys.readouterr()
    assert stdout.strip().splitlines()[-1] == str(out) and "imported 9 run(s)" in stdout
    assert "junk/result.json" in stderr
    assert group_anchor(C, XEON) in out.read_text() and group_anchor(A, XEON) not in out.read_text()
    assert cli.main(["report", "--db", "mysql://x/y", "--out", str(out)]) == 3
    assert "only sqlite" in capsys.readouterr().err
