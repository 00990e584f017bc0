"""HTML report from a history of the fixture runs: triage rows, roll-ups, trend points, run pages, logs,
escaping, offline, incremental pages."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from swavbench import cli
from swavbench.report import build_report
from swavbench.report.charts import MAX_STEP_POINTS, group_anchor
from swavbench.report.runpage import page_href, page_name, run_slug
from swavbench.report.svg import Chart, Series, decimate, fmt, nice_range, render
from swavbench.store.history import History

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
A, B, C = "swav_pt_1n8c_fp16o1", "swav_pt_1n1c_fp32", "swav_pt_1n2c_fp32"
XEON, EPYC = "cpu-intel-xeon-2t", "cpu-amd-epyc-4t"
CRASH, A_BASE, A_GOOD = f"20261123T200102Z-{A}-d41f", f"20261120T200102Z-{A}-a001", f"20261122T200102Z-{A}-c9d0"
B_BAD, B_GOOD = f"20261122T203000Z-{B}-b003", f"20261121T203000Z-{B}-b002"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "history.sqlite"
    with History(path) as h:
        assert not h.import_runs(FIXTURES).failed
    return path


@pytest.fixture(scope="module")
def site(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(db, tmp_path_factory.mktemp("report") / "index.html").parent


@pytest.fixture(scope="module")
def page(site: Path) -> str:
    return (site / "index.html").read_text(encoding="utf-8")


def run_page(site: Path, run_id: str) -> str:
    return (site / page_href(run_id)).read_text(encoding="utf-8")


def section(page: str, anchor: str) -> str:
    match = re.search(rf'<section class="card" id="{re.escape(anchor)}">(.*?)</section>', page, re.S)
    assert match, anchor
    return match.group(1)


def charts(fragment: str) -> dict[str, str]:
    """aria-label -> svg text of each chart in the fragment."""
    return dict(re.findall(r'<svg class="chart"[^>]*aria-label="([^"]*)">(.*?)</svg>', fragment, re.S))


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def table_rows(page: str, cls: str) -> list[tuple[str, list[str]]]:
    body = re.search(rf'<table class="{cls}">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = re.findall(r'<tr class="status-(\w+)">(.*?)</tr>', body, re.S)
    return [(status, re.findall(r"(<td[^>]*>.*?</td>)", row, re.S)) for status, row in rows]


def test_triage_has_a_row_per_case_profile_and_host_worst_first(page: str) -> None:
    rows = table_rows(page, "triage")
    got = [(status, text_of(cells[1]).strip(), text_of(cells[2]).split()) for status, cells in rows]
    assert got == [
        ("failed", A, ["ci-runner-3", XEON]), ("regression", B, ["ci-runner-3", XEON]),
        ("no_baseline", C, ["ci-runner-3", XEON]), ("pass", B, ["ci-runner-3", EPYC]),
    ]  # fmt: skip
    regression = text_of("".join(rows[1][1]))
    assert "52.91005" in regression and "baseline 61.53846" in regression and "diff -14.02%" in regression
    assert len(re.findall(r'class="num metric fail"', "".join(rows[1][1]))) == 2  # ips and max_mem failed
    assert text_of("".join(rows[2][1])).count("no baseline yet") == 3
    assert text_of("".join(rows[0][1])).count("run failed") == 3 and "rank 3 died" in text_of("".join(rows[0][1]))


def test_last_good_first_bad_names_both_runs_and_their_commits(page: str) -> None:
    crash, regression, no_base, passing = (cells[7] for _, cells in table_rows(page, "triage"))
    text = " ".join(text_of(crash).split())
    assert "last good 2026-11-22 20:01 project 0f1e2d3 · paddle unknown" in text
    assert "first bad 2026-11-23 20:01 project 7a8b9c0 · paddle unknown" in text and "git log 0f1e2d3..7a8b9c0" in text
    assert f'href="{page_href(A_GOOD)}"' in crash and f'href="{page_href(CRASH)}"' in crash
    assert "last good 2026-11-21 20:30 project d4e5f6a" in " ".join(text_of(regression).split())
    assert text_of(no_base).strip() == "—" and text_of(passing).strip() == "—"


def test_streak_starts_at_the_oldest_bad_run_and_reads_the_paddle_commit(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        for name, status, paddle in [(A_GOOD, "pass", "aaaa111"), ("x1", "regression", "bbbb222"),
                                     ("x2", "no_baseline", None), ("x3", "failed", "cccc333")]:  # fmt: skip
            rec = json.loads((FIXTURES / A_GOOD / "result.json").read_text())
            day = 22 + len(h.runs())
            rec |= {"run_id": name, "status": status, "started_utc": f"2026-12-{day:02d}T20:00:00Z"}
            if paddle:
                rec["paddle_commit"] = paddle
            h.add_record(rec)
        text = build_report(h, tmp_path / "index.html").read_text()
    streak = " ".join(text_of(table_rows(text, "triage")[0][1][7]).split())
    assert "last good 2026-12-22 20:00 project 0f1e2d3 · paddle aaaa111" in streak
    assert "first bad 2026-12-23 20:00 project 0f1e2d3 · paddle bbbb222" in streak


def test_rollup_counts_hosts_so_one_pass_cannot_hide_nine_regressions(tmp_path: Path) -> None:
    base = json.loads((FIXTURES / B_BAD / "result.json").read_text())
    with History(tmp_path / "h.sqlite") as h:
        for host in range(10):
            status = "pass" if host == 9 else ("failed" if host == 8 else "regression")
            rec = base | {"run_id": f"run-{host}", "status": status, "started_utc": f"2026-11-22T2{host}:00:00Z"}
            rec["environment"] = dict(base["environment"], hostname=f"host-{host}")
            h.add_record(rec)
        text = build_report(h, tmp_path / "index.html").read_text()
    rolls = table_rows(text, "rollup")
    assert [(s, text_of(c[3]).strip()) for s, c in rolls] == [("failed", "1 of 10 hosts failed, 8 regressed, 1 passed")]
    triage = table_rows(text, "triage")
    assert [s for s, _ in triage] == ["failed"] + ["regression"] * 8 + ["pass"]
    assert "1 of 10 hosts failed, 8 regressed, 1 passed" in text_of(section(text, group_anchor(B, XEON)))


def test_trend_charts_draw_a_line_per_host_and_link_points_to_run_pages(page: str, site: Path) -> None:
    a = charts(section(page, group_anchor(A, XEON)))
    assert set(a) == {"ips", "loss", "max mem"}
    for svg in a.values():
        assert svg.count('class="pt"') == 3  # the crash has no value ...
        assert svg.count('class="mark"') == 1  # ... and is a cross on the axis instead
        assert ">ci-runner-3<" in svg  # the host's legend entry
    linked = re.findall(r'<a href="([^"]+)"><circle class="pt"', a["ips"])
    assert linked == [page_href(r) for r in (A_BASE, f"20261121T200102Z-{A}-b7e2", A_GOOD)]
    assert re.findall(r'<a href="([^"]+)"><path class="mark"', a["ips"]) == [page_href(CRASH)]
    b = charts(section(page, group_anchor(B, XEON)))
    assert "tolerance ±5%" in b["ips"] and "<polygon" in b["ips"] and ">baseline<" in b["loss"]
    assert ">52.91<" in b["ips"]  # the last value, readable without hover


def _links(text: str) -> list[str]:
    return [unquote(h.split("#")[0]) for h in re.findall(r'href="([^"]+)"', text) if not h.startswith(("#", "data:"))]


def test_every_link_of_the_index_and_the_run_pages_resolves_inside_the_folder(site: Path, page: str) -> None:
    pages = sorted((site / "run").glob("*.html"))
    assert len(pages) == 9
    for source, text in [(site / "index.html", page)] + [(p, p.read_text()) for p in pages]:
        for href in _links(text):
            target = (source.parent / href).resolve()
            assert target.is_file() and site.resolve() in target.parents, (source.name, href)
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    assert set(re.findall(r'href="#([^"]*)"', page)) <= ids


def test_run_page_has_loss_against_baseline_costs_ranks_and_environment(site: Path) -> None:
    run = run_page(site, A_GOOD)
    steps = charts(run)
    assert set(steps) == {"loss per step", "cost per step"}
    assert "baseline run 11-20 20:01" in steps["loss per step"] and steps["loss per step"].count('<path d="M') >= 3
    assert f'<a href="{page_name(A_BASE)}">baseline run</a>' in run
    text = text_of(run)
    assert "fp16 O1 → fp32" in text and "requested fp16 O1, ran fp32 on cpu" in text and "3.3.1" in text
    assert "8 (1 node × 8 proc)" in text and "paddle commit unknown" in " ".join(text.split())
    assert "<td>0</td><td>40</td><td>0</td><td>yes</td><td>97.55</td>" in run
    assert "<td>1-7</td><td>40</td><td>0</td><td>yes</td><td></td>" in run
    epyc = run_page(site, f"20261123T090000Z-{B}-e001")
    assert "not in history" in epyc and "baseline run" not in charts(epyc)["loss per step"]


def test_failed_run_page_shows_reason_and_log_tail_escaped(site: Path) -> None:
    run = run_page(site, CRASH)
    assert "Reason:" in run and "rank_died" in run and "Last lines of rank 3" in run
    tail = re.search(r'<pre class="log-tail">(.*?)</pre>', run, re.S).group(1)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in tail and "&amp; &quot;quotes&quot;" in tail
    assert tail.splitlines()[-1] == "Killed"
    assert "<td>3</td><td>12</td><td>-9</td><td>no</td>" in run and "&lt;b&gt;not bold&lt;/b&gt;" in run


def test_failing_rank_is_found_without_a_failure_block(tmp_path: Path) -> None:
    rec = json.loads((FIXTURES / CRASH / "result.json").read_text())
    rec["failure"] = None  # e.g. a NaN loss: the verdict names no rank; rank 3 exited -9
    with History(tmp_path / "h.sqlite") as h:
        h.add_record(rec)
        run = run_page(build_report(h, tmp_path / "r.html").parent, CRASH)
    assert "Last lines of rank 3" in run and "&lt;script&gt;alert(1)&lt;/script&gt;" in run


def test_all_record_text_is_escaped_and_the_pages_are_self_contained(site: Path, page: str) -> None:
    assert page.count("<script") == 1  # the report's own tiny script, nothing from logs
    for text in [page] + [p.read_text() for p in (site / "run").glob("*.html")]:
        assert "alert(1)" not in text.replace("&lt;script&gt;alert(1)&lt;/script&gt;", "")
        assert "<b>not bold" not in text and "<yet>" not in text
        assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
        assert not re.search(r"@import|url\(|<link[^>]+stylesheet|<img|<iframe|<object", text, re.I)
        assert "<style>" in text and text.startswith("<!DOCTYPE html>")


def _with_logs(tmp_path: Path) -> Path:
    runs = Path(shutil.copytree(FIXTURES, tmp_path / "runs"))
    for run in runs.iterdir():
        (run / "log").mkdir()
        for rank in range(3):
            (run / "log" / f"workerlog.{rank}").write_text(f"rank {rank} of {run.name} <tag>\n")
    (runs / CRASH / "attempts" / "2" / "log").mkdir(parents=True)
    (runs / CRASH / "attempts" / "2" / "log" / "workerlog.0").write_text("rerun\n")
    return runs


def test_logs_outside_the_report_folder_are_copied_beside_the_run_page(tmp_path: Path) -> None:
    runs = _with_logs(tmp_path)
    with History(tmp_path / "h.sqlite") as h:
        h.import_runs(runs)
        site = build_report(h, tmp_path / "site" / "index.html").parent
    run = run_page(site, CRASH)
    logs = re.findall(r'<li><a href="([^"]+)">([^<]+)</a></li>', section(run, "logs"))
    assert [label for _, label in logs] == ["attempts/2/log/workerlog.0"] + [f"log/workerlog.{r}" for r in range(3)]
    for href, label in logs:
        copied = site / "run" / href
        assert copied.is_file() and copied.read_bytes() == (runs / CRASH / label).read_bytes()
    shutil.rmtree(runs)  # the published folder does not need the originals
    assert (site / "run" / logs[1][0]).read_text().startswith("rank 0 of")


def test_logs_inside_the_report_folder_are_linked_in_place(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    _with_logs(reports)  # reports/runs/<id>/log/ beside reports/index.html, as `swavbench report` lays out
    with History(reports / "history.sqlite") as h:
        h.import_runs(reports / "runs")
        site = build_report(h, reports / "index.html").parent
    run = run_page(site, CRASH)
    hrefs = re.findall(r'<li><a href="([^"]+)">', section(run, "logs"))
    assert f"../runs/{CRASH}/log/workerlog.0" in hrefs and not (site / "run" / CRASH).exists()
    assert "linked in place" in run


def test_run_pages_are_rewritten_only_when_changed_and_removed_when_unselected(tmp_path: Path) -> None:
    runs = _with_logs(tmp_path)
    with History(tmp_path / "h.sqlite") as h:
        h.import_runs(runs)
        site = build_report(h, tmp_path / "site" / "index.html").parent
        stamps = {p.name: p.stat().st_mtime_ns for p in (site / "run").glob("*.html")}
        build_report(h, site / "index.html")
        assert {p.name: p.stat().st_mtime_ns for p in (site / "run").glob("*.html")} == stamps
        rec = json.loads((runs / B_GOOD / "result.json").read_text()) | {"message": "changed"}
        (runs / B_GOOD / "result.json").write_text(json.dumps(rec))
        h.import_runs(runs)
        build_report(h, site / "index.html")
        changed = {p.name for p in (site / "run").glob("*.html") if p.stat().st_mtime_ns != stamps[p.name]}
        assert changed == {page_name(B_GOOD)}
        build_report(h, site / "index.html", run_pages=0)  # the non-passes, their streaks and their baselines
    left = {p.name for p in (site / "run").glob("*.html")}
    keep = {CRASH, A_GOOD, A_BASE, B_BAD, B_GOOD, f"20261120T203000Z-{B}-b001", f"20261123T210000Z-{C}-c001"}
    assert left == {page_name(r) for r in keep}
    assert (site / "run" / CRASH / "log").is_dir() and not (site / "run" / f"20261123T090000Z-{B}-e001").exists()
    index = (site / "index.html").read_text()
    assert page_href(f"20261123T090000Z-{B}-e001") not in index  # a pass without a page: on the line, no point


def test_filters_since_and_case(db: Path, tmp_path: Path) -> None:
    only_a = build_report(db, tmp_path / "a" / "index.html", case_pattern="*1n8c*").read_text()
    assert group_anchor(A, XEON) in only_a and group_anchor(B, XEON) not in only_a
    recent = build_report(f"sqlite:///{db}", tmp_path / "r" / "index.html", since="2026-11-23")
    shown = sorted(p.name for p in (recent.parent / "run").glob("*.html"))
    assert shown == sorted(page_name(r) for r in [CRASH, f"20261123T090000Z-{B}-e001", f"20261123T210000Z-{C}-c001"])
    crash = run_page(recent.parent, CRASH)
    assert "in history, no page" in crash or "not in history" in crash


def test_empty_history_gives_a_page_not_a_crash(tmp_path: Path) -> None:
    text = build_report(tmp_path / "empty.sqlite", tmp_path / "e.html").read_text()
    assert "no runs" in text and "0 run(s)" in text


def test_long_step_series_are_decimated(tmp_path: Path) -> None:
    rec = json.loads((FIXTURES / A_BASE / "result.json").read_text())
    rec["steps"] = [{"step": i, "loss": 8 - i / 5000, "batch_cost": 1 + (i % 7) / 10, "reader_cost": 0.01}
                    for i in range(1, 5001)]  # fmt: skip
    with History(tmp_path / "h.sqlite") as h:
        h.add_record(rec)
        text = run_page(build_report(h, tmp_path / "r.html").parent, A_BASE)
    loss = charts(text)["loss per step"]
    path = re.search(r'<path d="(M[^"]*)" fill="none" stroke="#1565c0"', loss).group(1)
    assert 2 < len(re.findall(r"-?\d+(?:\.\d)?", path)) // 2 <= MAX_STEP_POINTS + 1
    assert len(text) < 60_000


def test_chart_helpers() -> None:
    xs, ys = decimate(list(range(1000)), [float(i % 10) for i in range(1000)], 50)
    assert len(xs) <= 50 and xs == sorted(xs) and (xs[0], xs[-1]) == (0, 999) and max(ys) == 9 and min(ys) == 0
    assert decimate([1, 2, 3], [1.0, None, float("nan")], 10) == ([1], [1.0])
    assert nice_range(97.5, 103.3) == (96, 104, 2) and fmt(0.25, 0.05) == "0.25" and fmt(61.538461) == "61.54"
    assert "no data" in render(Chart("nothing", [Series("x", [], [])]))
    evil = render(Chart("<t>", [Series("<s>", [0, 1], [1.0, 2.0], tips=["<x>", "&"], points=True, hrefs=["#a", "#b"])]))
    assert "<s>" not in evil and "&lt;s&gt;" in evil and "<title>&lt;x&gt;</title>" in evil
    assert 'aria-label="&lt;t&gt;"' in evil
    assert page_name("a b<c>") != page_name("a_b_c_") and re.fullmatch(r"[\w.-]+\.html", page_name("a b<c>"))
    assert os.sep not in page_name("../../etc/passwd") and not page_name("..").startswith(".")
    assert run_slug("..") not in (".", "..") and not run_slug(".hidden").startswith(".")


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
    argv = ["report", "--runs", "", "--db", str(tmp_path / "h.sqlite"), "--out", str(out), "--run-pages", "1"]
    assert cli.main(argv) == 0
    with pytest.raises(SystemExit) as stop:
        cli.main([*argv[:-1], "some"])
    assert stop.value.code == 3 and "expected a number of runs or 'all'" in capsys.readouterr().err
