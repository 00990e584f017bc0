"""What CI sees of the cases, from the outside (pytest in a subprocess on the real cases/ file, the fake worker
standing in for the trainer): JUnit message and properties, the session summary, -k with PASSL long names,
pytest-xdist, and no chained-exception text."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

FAKE = Path(__file__).resolve().parent / "fake_worker.py"
CASES_FILE = REPO_ROOT / "cases" / "test_cases.py"
CASE, LONG = "swav_pt_1n8c_fp16o1", "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"


@pytest.fixture
def run_cases(pytester: pytest.Pytester, data_root: Path, tmp_path: Path):
    """pytest cases/ in a subprocess with the fake worker, a private baseline dir and reports dir."""

    def go(*args: str, data: Path = data_root) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            str(CASES_FILE), "-p", "no:cacheprovider", "--rootdir", str(REPO_ROOT), "--swavbench-profile", "cpu",
            "--swavbench-worker", f"{FAKE} train", "--swavbench-data-root", str(data),
            "--swavbench-baseline-dir", str(tmp_path / "baselines"), "--swavbench-reports-dir",
            str(tmp_path / "reports"), "--swavbench-confirm", "0", *args, timeout=300,
        )  # fmt: skip

    return go


def junit_case(path: Path) -> tuple[ET.Element, dict[str, str]]:
    """The one <testcase> of a JUnit file and its properties."""
    (case,) = ET.parse(path).getroot().iter("testcase")
    return case, {p.get("name"): p.get("value") for p in case.iter("property")}


def test_regression_message_starts_with_the_verdict_and_the_properties_say_what_ran(run_cases, tmp_path, monkeypatch):
    run_cases("-k", CASE, "--swavbench-update-baseline").assert_outcomes(passed=1, deselected=3)
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.75")
    xml = tmp_path / "junit.xml"
    run_cases("-k", CASE, f"--junitxml={xml}").assert_outcomes(failed=1, deselected=3)
    case, props = junit_case(xml)
    failure = case.find("failure")
    lines = failure.get("message").splitlines()
    assert lines[0].startswith("REGRESSION: steady-state ips 25.0% slower than baseline")
    assert lines[1].startswith("what to do: 25.0% slower than baseline")
    assert lines[2].split() == ["metric", "baseline", "measured", "diff", "tolerance", "verdict"]  # then the table
    assert failure.text.startswith(failure.get("message").split("\n[+")[0])  # the element text: all of it
    assert "ips_steady  640       480       -25.00%  ±20%" in failure.text and "run record: " in failure.text
    assert props["swavbench_status"] == "regression" and props["swavbench_case"] == CASE
    assert props["swavbench_ips_diff"] == "-25.00%" and props["swavbench_profile"].startswith("cpu-")
    assert props["swavbench_loss"] and props["swavbench_exit_code"] == "1"
    record = Path(props["swavbench_run_record"])
    assert record.is_file() and json.loads(record.read_text())["run_id"] == props["swavbench_run_id"]
    assert "swavbench_failure_kind" not in props


def test_crashed_run_is_told_apart_from_a_regression(run_cases, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_CRASH_RANK", "6")
    monkeypatch.setenv("FAKE_CRASH_STEP", "5")
    monkeypatch.setenv("FAKE_SYNC_DIR", str(tmp_path))
    xml = tmp_path / "junit.xml"
    result = run_cases("-k", CASE, f"--junitxml={xml}")
    result.assert_outcomes(failed=1, deselected=3)
    assert "Failed: RUN FAILED" not in result.stdout.str()  # the verdict line itself, not pytest's "Failed: ..."
    case, props = junit_case(xml)
    assert case.find("failure").get("message").startswith("RUN FAILED (rank_died): rank 6 exited with code 1")
    assert props["swavbench_status"] == "failed" and props["swavbench_failure_kind"] == "rank_died"
    assert props["swavbench_exit_code"] == "2" and "swavbench_ips_diff" not in props


def test_data_error_is_one_line_without_chained_exception_text(run_cases, tmp_path):
    xml = tmp_path / "junit.xml"
    result = run_cases("-k", CASE, f"--junitxml={xml}", data=tmp_path / "no-such-data")
    result.assert_outcomes(failed=1, deselected=3)
    text = result.stdout.str() + xml.read_text()
    assert "During handling of the above exception" not in text and "Traceback" not in text
    case, props = junit_case(xml)
    assert case.find("failure").get("message").startswith("ERROR (DataError): missing dataset")
    assert props["swavbench_status"] == "error" and props["swavbench_error"] == "DataError"


def test_summary_file_has_a_headline_totals_and_a_row_per_case(run_cases, tmp_path, monkeypatch):
    summary = tmp_path / "out" / "summary.json"
    run_cases("-k", CASE, "--swavbench-update-baseline").assert_outcomes(passed=1, deselected=3)
    result = run_cases("-k", CASE, f"--swavbench-summary={summary}")
    result.stdout.fnmatch_lines(["swavbench: summary *summary.json: 1 of 1 swavbench case(s) passed"])
    doc = json.loads(summary.read_text())
    assert doc["schema_version"] == 1 and doc["exit_status"] == result.ret == 0
    (row,) = doc["cases"]
    assert row["case"] == CASE and row["status"] == "pass" and row["outcome"] == "passed"
    assert row["nodeid"].endswith(f"test_case[{CASE}]") and Path(row["run_record"]).is_file()
    assert doc["totals"] == {"pass": 1} and doc["headline"] == "1 of 1 swavbench case(s) passed"
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.75")
    result = run_cases("-k", CASE, f"--swavbench-summary={summary}")
    doc = json.loads(summary.read_text())
    assert doc["exit_status"] == result.ret == 1 and doc["totals"] == {"regression": 1}
    assert doc["headline"] == f"0 of 1 swavbench case(s) passed; REGRESSION {CASE} ips -25.00%"


def test_summary_lists_skipped_cases(pytester: pytest.Pytester, tmp_path: Path):
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.swavbench_gpu
        @pytest.mark.parametrize("case_id", ["{CASE}"])
        def test_on_gpu(case_id, swavbench):
            swavbench.check(case_id)

        def test_unrelated():
            pass
    """)
    summary = tmp_path / "s.json"
    result = pytester.runpytest_subprocess(f"--swavbench-summary={summary}")
    result.assert_outcomes(passed=1, skipped=1)
    doc = json.loads(summary.read_text())
    assert [(r["case"], r["status"], r["outcome"]) for r in doc["cases"]] == [(CASE, "skipped", "skipped")]
    assert "needs a CUDA GPU" in doc["cases"][0]["message"] and doc["headline"] == "0 of 0 swavbench case(s) passed"


@pytest.mark.parametrize("name", [LONG, "resnet50_224_pt_in1k_1n8c"])
def test_k_accepts_passl_long_names(run_cases, name):
    result = run_cases("-k", name, "--collect-only", "-q")
    result.stdout.fnmatch_lines([f"*test_case?{CASE}?*"])
    assert "1/4 tests collected (3 deselected)" in result.stdout.str()


def test_under_xdist_cases_run_one_at_a_time_and_say_so(run_cases, tmp_path):
    pytest.importorskip("xdist")
    summary, out = tmp_path / "summary.json", tmp_path / "report" / "index.html"
    result = run_cases(
        "-n", "2", "-k", "swav_pt", "--swavbench-update-baseline", f"--swavbench-summary={summary}",
        f"--swavbench-report={out}",
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["swavbench: pytest-xdist with 2 workers: swavbench cases run one at a time*"])
    records = [json.loads(p.read_text()) for p in (tmp_path / "reports" / "runs").glob("*/result.json")]
    spans = sorted((r["started_utc"], r["finished_utc"]) for r in records)
    assert len(spans) == 2 and spans[0][1] <= spans[1][0]  # the second started after the first finished
    doc = json.loads(summary.read_text())  # written once, by the controller, with both workers' cases
    assert sorted(r["case"] for r in doc["cases"]) == ["swav_pt_1n8c_fp16o1", "swav_pt_4n32c_fp16o1"]
    assert result.stdout.str().count("report: ") == 1 and out.is_file()
