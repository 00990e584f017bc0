"""The pytest plugin, driven from outside: pytest in a subprocess (pytester) on the real cases/ file with the
fake worker standing in for the trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FAKE = Path(__file__).resolve().parent / "fake_worker.py"
CASES_FILE = REPO_ROOT / "cases" / "test_cases.py"


@pytest.fixture
def run_cases(pytester: pytest.Pytester, data_root: Path, tmp_path: Path):
    """pytest cases/ in a subprocess with the fake worker, a private baseline dir and reports dir."""

    def go(*args: str, baselines: Path = tmp_path / "baselines") -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            str(CASES_FILE),
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(REPO_ROOT),
            "--swavbench-profile",
            "cpu",
            "--swavbench-worker",
            f"{FAKE} train",
            "--swavbench-data-root",
            str(data_root),
            "--swavbench-baseline-dir",
            str(baselines),
            "--swavbench-reports-dir",
            str(tmp_path / "reports"),
            "--swavbench-confirm-delay",
            "0.2",
            *args,
            timeout=300,
        )

    return go


def test_k_selects_one_case_and_no_baseline_fails_with_the_command(run_cases):
    result = run_cases("-k", "swav_pt_1n8c_fp16o1")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            "*test_case?swav_pt_1n8c_fp16o1?*",
            "*NO_BASELINE: no baseline for swav_pt_1n8c_fp16o1*",
            "*what to do: record one: swavbench update-baseline swav_pt_1n8c_fp16o1 --profile cpu --baseline-dir*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*[[]swav_pt_1n8c_fp16o1[]] step 21/21*"])  # live progress, one line a step


def test_record_then_pass_then_regression(run_cases, monkeypatch):
    run_cases("-k", "swav_pt_1n8c_fp16o1", "--swavbench-update-baseline").assert_outcomes(passed=1, deselected=3)
    run_cases("-k", "swav_pt_1n8c_fp16o1").assert_outcomes(passed=1, deselected=3)
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.75")  # every run slower: confirmed by the rerun
    result = run_cases("-k", "swav_pt_1n8c_fp16o1", "--swavbench-confirm-mode", "rerun")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            "*metric*baseline*measured*diff*tolerance*verdict*",
            "*ips_steady*640*480*-25.00%*±20%*fail*",
            "*REGRESSION: confirmed over 2 runs (ips 480.0, 480.0*steady-state ips 25.0% slower than baseline*",
            "*what to do: 25.0% slower than baseline*",
        ]
    )
    assert result.ret == 1


def test_session_baselines_record_then_judge_a_rerun_and_leave_the_checked_in_ones_alone(run_cases, tmp_path):
    """`make test`'s mode: each case records its own baseline on this machine first, then a rerun is judged."""
    home = tmp_path / "baselines"  # the checked-in dir of this invocation: must stay untouched
    result = run_cases("-k", "swav_pt_1n8c_fp16o1", "--swavbench-session-baselines", "-s")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            "*baselines recorded by this session on this machine*",
            "*no baseline for this machine's profile cpu-*-*t: recording one from run *, then running the case*",
            "*new baseline cpu-*/swav_pt_1n8c_fp16o1:*",
        ]
    )
    assert not home.exists()
    records = sorted((tmp_path / "reports" / "runs").glob("*/result.json"))
    assert len(records) == 2  # the recording run and the judged rerun, both kept for the report
    statuses = sorted(__import__("json").loads(r.read_text())["status"] for r in records)
    assert statuses == ["no_baseline", "pass"]


def test_session_baselines_still_fail_a_changed_rerun(run_cases, monkeypatch, tmp_path):
    """A session-recorded baseline is a real gate: a rerun whose loss differs (here the recording run's loss is
    bumped once, the rerun is clean) fails on loss with exit 1."""
    monkeypatch.setenv("FAKE_ONCE_FILE", str(tmp_path / "once"))
    monkeypatch.setenv("FAKE_LOSS_BUMP", "0.00001")
    result = run_cases("-k", "swav_pt_1n8c_fp16o1", "--swavbench-session-baselines")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        ["*loss*fail*", "*REGRESSION: loss changed at*", "*what to do: two runs of the same code in this session*"]
    )
    assert result.ret == 1


@pytest.mark.parametrize("mode", ["--swavbench-session-baselines", "--swavbench-record-missing"])
def test_the_rerun_after_recording_reports_ips_without_gating_it(run_cases, monkeypatch, tmp_path, mode):
    """Two runs of the same code minutes apart differ in ips only by the machine's speed: the rerun that
    follows the recording shows its ips (marked not gated) and passes on exact loss and memory, no rerun."""
    monkeypatch.setenv("FAKE_ONCE_FILE", str(tmp_path / "once"))
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.5")  # the recording run was slow (a busy machine), the rerun is not
    result = run_cases("-k", "swav_pt_1n8c_fp16o1", mode, "-s")
    result.assert_outcomes(passed=1, deselected=3)
    records = [__import__("json").loads(p.read_text()) for p in (tmp_path / "reports" / "runs").glob("*/result.json")]
    judged = next(r for r in records if r["status"] != "no_baseline")
    assert judged["status"] == "pass" and "attempts" not in judged
    assert "faster than baseline" in judged["message"] and "reported, not gated" in judged["message"]
    steady = next(c for c in judged["checks"] if c["metric"] == "ips_steady")
    assert steady["verdict"] == "info" and steady["tolerance"].endswith("(not gated)")


def test_a_stored_baseline_confirms_an_ips_drop_by_an_ab_of_this_tree_and_passes(run_cases, monkeypatch, tmp_path):
    """The nightly path: the baseline was recorded by this tree while the machine was quiet (its steps burn
    half the CPU); tonight's run is ~2x slower than that, far outside +-20%. The baseline names this tree
    (same source fingerprint), so the confirmation is an A/B of this tree against itself: no change, the
    case passes, and the record says how it was confirmed."""
    for k, v in {"FAKE_ONCE_FILE": str(tmp_path / "once"), "FAKE_IPS_SCALE": "2.0", "FAKE_CPU_STEP_S": "0.02",
                 "FAKE_SYNC_DIR": "log"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    run_cases("-k", "swav_pt_1n8c_fp16o1", "--swavbench-update-baseline").assert_outcomes(passed=1, deselected=3)
    result = run_cases("-k", "swav_pt_1n8c_fp16o1", "-s")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["*confirming by a paired A/B against the baseline's build (the baseline's source "
                                 "is this tree's*", "*A/B pairs 6/24*"])  # fmt: skip
    records = [__import__("json").loads(r.read_text()) for r in (tmp_path / "reports" / "runs").glob("*/result.json")]
    judged = next(r for r in records if r.get("confirmation"))
    assert judged["status"] == "pass"
    assert judged["confirmation"]["mode"] == "ab"
    assert judged["confirmation"]["status"] in ("no_change", "inconclusive")  # both: not confirmed, a pass
    assert judged["message"].startswith("not confirmed: a paired A/B against the baseline's build")


def test_record_missing_keeps_the_recorded_baseline(run_cases, tmp_path):
    result = run_cases("-k", "swav_pt_1n8c_fp16o1", "--swavbench-record-missing")
    result.assert_outcomes(passed=1, deselected=3)
    assert len(list((tmp_path / "baselines").glob("cpu-*/swav_pt_1n8c_fp16o1.json"))) == 1
    run_cases("-k", "swav_pt_1n8c_fp16o1").assert_outcomes(passed=1, deselected=3)  # judged against it


def test_crashed_rank_is_named(run_cases, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_CRASH_RANK", "6")
    monkeypatch.setenv("FAKE_CRASH_STEP", "5")
    monkeypatch.setenv("FAKE_SYNC_DIR", str(tmp_path))
    result = run_cases("-k", "swav_pt_1n8c_fp16o1")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["*FAILED: run failed (rank_died): rank 6 exited with code 1*"])


def test_classification_cases_run_from_the_given_pretrained_checkpoint(run_cases, data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("SWAVBENCH_PRETRAINED", "/given/pretrained/latest")  # the fake worker needs no weights
    (data_root / "val" / "a").mkdir(parents=True, exist_ok=True)
    (data_root / "10percent.txt").write_text("".join(f"a_{i}.jpg\n" for i in range(160)))
    result = run_cases("-k", "lp or ft", "--swavbench-update-baseline")
    result.assert_outcomes(passed=2, deselected=2)
    records = [p.read_text() for p in tmp_path.rglob("result.json")]
    assert len(records) == 2 and all("Global.pretrained_model=/given/pretrained/latest" in r for r in records)


def test_multinode_case_runs_as_four_launchers(run_cases):
    result = run_cases("-k", "swav_pt_4n32c_fp16o1", "--swavbench-update-baseline")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["*new baseline cpu-*/swav_pt_4n32c_fp16o1:*"])


def test_namespaced_e2e_marker_is_deselected_by_default(pytester: pytest.Pytester):
    pytester.makeini((REPO_ROOT / "pytest.ini").read_text())
    pytester.makepyfile("""
        import pytest

        @pytest.mark.swavbench_e2e
        def test_long():
            pass

        @pytest.mark.swavbench_gpu
        def test_gpu():
            pass

        def test_fast(swavbench):
            assert swavbench.baseline_dir.name == "baselines"
    """)
    result = pytester.runpytest_subprocess("-rs")  # the plugin loads through its pytest11 entry point
    result.assert_outcomes(passed=1, skipped=1, deselected=1)
    result.stdout.fnmatch_lines(["*needs a CUDA GPU*"])
    pytester.runpytest_subprocess("-m", "swavbench_e2e").assert_outcomes(passed=1, deselected=2)


def test_swavbench_report_option_records_the_session_and_writes_the_report(run_cases, tmp_path):
    out = tmp_path / "nightly.html"
    result = run_cases("-k", "swav_pt_1n8c_fp16o1", "--swavbench-update-baseline", f"--swavbench-report={out}")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["*swavbench: imported 1 run(s)*report: *nightly.html*"])
    html = out.read_text()
    assert "swav_pt_1n8c_fp16o1" in html and "<svg" in html
