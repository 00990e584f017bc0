"""The report in headless Chromium: no console errors, charts and points laid out, a screenshot; the run pages
and a history of many hosts and nights render cleanly too.

Needs Debian's `chromium` (CI installs it with scripts/ensure_chromium.sh); skipped when it is missing.
The screenshot goes to reports/report.png locally, to the test's temp folder under CI (CI=true).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swavbench.report import build_report
from swavbench.store.history import History

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "runs"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--enable-logging=stderr",
    "--v=0",
]  # fmt: skip
BLUE = (0x15, 0x65, 0xC0)  # the measured series' colour in charts.py

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (Debian package `chromium`; run scripts/ensure_chromium.sh)"
)


def chromium(page: Path, tmp: Path, *action: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on a local file with its own profile folder."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *action, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp)


def console_messages(stderr: str) -> list[str]:
    """Console output and uncaught errors as Chromium logs them: `INFO:CONSOLE(12)] "msg", source: ...`."""
    return re.findall(r":CONSOLE[^\]]*\]\s*(.*)", stderr)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    with History(tmp / "history.sqlite") as h:
        h.import_runs(FIXTURES)
        return build_report(h, tmp / "index.html")


def test_console_errors_are_detected(tmp_path: Path) -> None:
    """The detector itself: a page with console.error and an uncaught exception is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><link rel="icon" href="data:,"><script>console.error("boom");nope();</script>')
    messages = console_messages(chromium(bad, tmp_path, "--dump-dom").stderr)
    assert any("boom" in m for m in messages) and any("Uncaught ReferenceError" in m for m in messages)


def test_report_renders_without_console_errors(report: Path, tmp_path: Path) -> None:
    proc = chromium(report, tmp_path, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    body = re.search(r"<body([^>]*)>", proc.stdout).group(1)
    marks = dict(re.findall(r'data-([\w-]+)="(\d+)"', body))
    source = report.read_text()
    n_charts, n_points = source.count('<svg class="chart"'), source.count('class="pt"')
    assert n_charts == 4 * 3 and n_points == 8 * 3  # 3 trend charts per case+profile; 8 of the 9 runs have values
    render_ms = int(marks.pop("render-ms"))
    assert marks == {"charts": str(n_charts), "charts-drawn": str(n_charts), "points-drawn": str(n_points)}
    assert 0 < render_ms < 180_000
    assert proc.stdout.count("<script") == 1


def test_run_pages_render_without_console_errors(report: Path, tmp_path: Path) -> None:
    pages = sorted((report.parent / "run").glob("*.html"))
    assert len(pages) == 9
    for page in pages[:: len(pages) // 3]:
        proc = chromium(page, tmp_path, "--dump-dom")
        assert proc.returncode == 0 and console_messages(proc.stderr) == [], (page.name, proc.stderr[-2000:])
        assert "<script" not in proc.stdout and '<svg class="chart"' in proc.stdout


def test_many_hosts_and_nights_render_without_console_errors(tmp_path: Path) -> None:
    """3 hosts x 2 cases x 60 nights from the benchmark's generator: one line per host, links to run pages."""
    spec = importlib.util.spec_from_file_location("report_build", ROOT / "benchmarks" / "report_build.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(hosts=3, cases=2, nights=60, steps=30, no_logs=False)
    bench.write_history(tmp_path / "ci", args, range(args.nights))
    with History(tmp_path / "h.sqlite") as h:
        assert len(h.import_runs(tmp_path / "ci").imported) == 360
        index = build_report(h, tmp_path / "site" / "index.html", run_pages=5)
    proc = chromium(index, tmp_path, "--dump-dom")
    assert proc.returncode == 0 and console_messages(proc.stderr) == [], proc.stderr[-2000:]
    marks = dict(re.findall(r'data-([\w-]+)="(\d+)"', re.search(r"<body([^>]*)>", proc.stdout).group(1)))
    assert marks["charts"] == marks["charts-drawn"] == "6" and int(marks["points-drawn"]) > 0
    assert "3 of 3 hosts regressed" in proc.stdout  # case 1's last nights regressed on hosts 1-3


def test_screenshot_shows_the_charts(report: Path, tmp_path: Path) -> None:
    ci = os.environ.get("CI", "").lower() == "true"
    shot = (tmp_path if ci else ROOT / "reports") / "report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    proc = chromium(report, tmp_path, f"--screenshot={shot}", "--window-size=1400,3000")
    assert proc.returncode == 0 and shot.stat().st_size > 50_000, proc.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1400, 3000)
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    blue = (np.abs(pixels - np.array(BLUE)).max(axis=2) < 40).sum()
    assert blue > 500  # chart lines and points were painted, not just laid out
