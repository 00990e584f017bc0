"""The project home (swavbench.paths): found like pytest's rootdir, overridden by --home / SWAVBENCH_HOME, and
every command agrees on it: `run` from one folder and `report` / `history` from another see the same runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swavbench import paths
from tests.conftest import clean_env

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "fake_worker.py"
CASE = "swav_pt_1n8c_fp16o1"


def test_home_is_the_nearest_folder_holding_swavbench_toml_or_baselines(tmp_path):
    deep = tmp_path / "team" / "ci" / "nightly"
    deep.mkdir(parents=True)
    assert paths.find_home(deep) == deep.resolve()  # nothing marks a home: the folder itself
    (tmp_path / "team" / "baselines").mkdir()
    assert paths.find_home(deep) == (tmp_path / "team").resolve()
    (tmp_path / "team" / "ci" / "swavbench.toml").write_text("")
    assert paths.find_home(deep) == (tmp_path / "team" / "ci").resolve()  # the nearest wins
    (tmp_path / "team" / "ci" / "nightly" / "baselines").write_text("a file, not a folder")
    assert paths.find_home(deep) == (tmp_path / "team" / "ci").resolve()


def test_explicit_then_pinned_then_env_then_found(tmp_path, monkeypatch):
    found, env_home, pinned, explicit = (tmp_path / n for n in ("found", "env", "pinned", "explicit"))
    (found / "baselines").mkdir(parents=True)
    monkeypatch.chdir(found)
    monkeypatch.delenv(paths.HOME_ENV, raising=False)
    previous = paths.use_home(None)
    try:
        assert paths.project_home() == found.resolve()
        monkeypatch.setenv(paths.HOME_ENV, str(env_home))
        assert paths.project_home() == env_home.resolve()
        paths.use_home(pinned)
        assert paths.project_home() == pinned.resolve()
        assert paths.project_home(explicit) == explicit.resolve()
        home = paths.home()
        assert (home.baselines, home.runs, home.history_db, home.report_html, home.cache) == (
            pinned.resolve() / "baselines", pinned.resolve() / "reports" / "runs",
            pinned.resolve() / "reports" / "history.sqlite", pinned.resolve() / "reports" / "index.html",
            pinned.resolve() / "data" / "cache")
        monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
        assert paths.cache_dir() == tmp_path / "cache"
    finally:
        paths.use_home(previous)


def test_package_data_is_read_from_the_package():
    from swavbench.resources import CONFIG_DIR, PACKAGED_BASELINES, PROFILE_DIR

    assert (PROFILE_DIR / "cpu.yaml").is_file()
    assert len(list(CONFIG_DIR.glob("swav_*.yaml"))) == 4
    assert (PACKAGED_BASELINES / "passl-a100" / f"{CASE}.json").is_file()
    assert CONFIG_DIR.is_relative_to(Path(__import__("swavbench").__file__).resolve().parent)


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swavbench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=clean_env(SWAVBENCH_WORKER=f"{sys.executable} {FAKE} train", **env))


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fakedata")
    (root / "train" / "a").mkdir(parents=True)
    for i in range(3072):
        (root / "train" / "a" / f"{i}.jpg").touch()
    return root


def test_run_and_report_from_different_folders_agree_on_the_home(tmp_path, fake_data):
    """Before: `report` read ./reports and `run` wrote <package>/../reports, so a report made from another
    folder was silently empty. Now both use the home found from where each runs."""
    home = tmp_path / "team"
    (home / "jobs" / "nightly").mkdir(parents=True)
    (home / "docs").mkdir()
    (home / "swavbench.toml").write_text("# the team's project home\n")
    env = {k: v for k, v in os.environ.items() if k == paths.HOME_ENV}
    assert not env, "the test needs SWAVBENCH_HOME unset"

    run = _cli("run", CASE, "--profile", "cpu", "--data-root", str(fake_data), "--record-missing",
               "--confirm-delay", "0", cwd=home / "jobs" / "nightly")
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(list((home / "baselines").glob(f"cpu-*/{CASE}.json"))) == 1
    records = sorted((home / "reports" / "runs").glob("*/result.json"))
    assert len(records) == 2 and not (home / "jobs" / "nightly" / "reports").exists()
    rec = json.loads(records[-1].read_text())
    assert rec["home"] == str(home.resolve()) and rec["status"] == "pass"
    assert rec["baseline"]["path"].startswith("baselines/cpu-")  # relative to the home

    report = _cli("report", cwd=home / "docs")
    assert report.returncode == 0, report.stderr
    assert "imported 2 run(s)" in report.stdout
    assert Path(report.stdout.strip().splitlines()[-1]) == (home / "reports" / "index.html").resolve()
    assert CASE in (home / "reports" / "index.html").read_text()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = _cli("history", "list", "--home", str(home), cwd=elsewhere)
    rows = [line for line in listed.stdout.splitlines() if f" {CASE} " in line]
    assert listed.returncode == 0 and len(rows) == 2, listed.stdout + listed.stderr
    by_env = _cli("history", "list", cwd=elsewhere, SWAVBENCH_HOME=str(home))
    assert by_env.stdout == listed.stdout
    before = _cli("--home", str(home), "history", "list", cwd=elsewhere)  # before the subcommand too
    assert before.stdout == listed.stdout
    empty = _cli("history", "list", cwd=elsewhere)  # its own home: no runs there, and it says so
    assert empty.returncode == 0 and "no runs in history" in empty.stdout


def test_compare_finds_a_baseline_path_relative_to_the_home(tmp_path):
    home = tmp_path / "team"
    (home / "baselines" / "passl-a100").mkdir(parents=True)
    shipped = REPO / "swavbench" / "resources" / "baselines" / "passl-a100" / f"{CASE}.json"
    data = json.loads(shipped.read_text())
    data["provenance"]["note"] = "the team's copy"
    (home / "baselines" / "passl-a100" / f"{CASE}.json").write_text(json.dumps(data))
    (home / "sub").mkdir()
    log = REPO / "tests" / "fixtures" / "logs" / "clean"
    out = _cli("compare", str(log), "--baseline", f"baselines/passl-a100/{CASE}.json", "--json", cwd=home / "sub")
    assert json.loads(out.stdout)["baseline"] == str((home / "baselines" / "passl-a100" / f"{CASE}.json").resolve())
