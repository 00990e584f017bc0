"""Case runs end to end with the fake worker: record, verdicts, faults, run folder, CLI and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from swavbench import cases, procs, runner
from swavbench.baselines import load_baseline
from swavbench.cli import main
from swavbench.compare import compare
from swavbench.errors import BaselineError

FAKE = Path(__file__).resolve().parent / "fake_worker.py"
WORKER = [str(FAKE), "train"]
CASE = "swav_pt_1n8c_fp16o1"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fakedata")
    (root / "train" / "a").mkdir(parents=True)
    for i in range(1536):  # 1536 // (8 x 8) = 24 iters (1n8c); // (8 x 16) = 12 (4n32c on cpu)
        (root / "train" / "a" / f"{i}.jpg").touch()
    return root


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("runs")
    return {"baselines": base / "baselines", "reports": base / "reports"}


def plan(data_root: Path, case: str = CASE, *overrides: str, **kw) -> cases.Plan:
    p = cases.plan(cases.resolve_case(case), "cpu", data_root, stall_s=kw.pop("stall_s", 10.0))
    return cases.with_overrides(p, *overrides) if overrides else p


def execute(p: cases.Plan, dirs: dict, **kw) -> runner.Outcome:
    return runner.execute(p, dirs["baselines"], dirs["reports"], worker=WORKER, **kw)


@pytest.fixture(scope="module")
def recorded(data_root, dirs) -> dict:
    """No baseline -> exit 3 with the command; record it from that run; rerun -> pass."""
    first = execute(plan(data_root), dirs)
    cmd = [
        "update-baseline",
        CASE,
        "--profile",
        "cpu",
        "--baseline-dir",
        str(dirs["baselines"]),
        "--data-root",
        str(data_root),
        "--from",
        str(first.run_dir),
    ]
    assert main(cmd) == 0
    second = execute(plan(data_root), dirs)
    return {"first": first, "second": second, "cmd": cmd}


def test_no_baseline_fails_with_the_exact_command(recorded, data_root, dirs):
    first = recorded["first"]
    assert first.exit_code == 3 and first.verdict.status == "no_baseline"
    exact = f"swavbench update-baseline {CASE} --profile cpu --baseline-dir {dirs['baselines']} --data-root {data_root}"
    assert f"record one: {exact} (or keep this run: {exact} --from {first.run_dir})" in first.text()
    assert json.loads((first.run_dir / "result.json").read_text())["status"] == "no_baseline"


def test_recorded_baseline_passes_on_rerun(recorded):
    second = recorded["second"]
    assert second.exit_code == 0, second.text()
    assert [c.verdict for c in second.verdict.checks] == ["pass", "pass", "pass"]
    b = load_baseline(second.baseline_file)
    assert b.tolerances["ips_pct"] == 20.0 and b.metrics["marker"] == "20/24"
    assert b.provenance["run_id"] == recorded["first"].run_id
    assert b.provenance["command"].startswith(f"swavbench update-baseline {CASE} --profile cpu")


def test_result_json_follows_the_design(recorded):
    rec = json.loads((recorded["second"].run_dir / "result.json").read_text())
    keys = {
        "schema_version",
        "run_id",
        "case",
        "config",
        "profile",
        "device_profile",
        "started_utc",
        "finished_utc",
        "duration_s",
        "commit",
        "paddle_version",
        "command",
        "environment",
        "status",
        "exit_code",
        "message",
        "advice",
        "metrics",
        "baseline",
        "checks",
        "ranks",
        "steps",
        "log_lines",
        "failure",
    }
    assert keys <= set(rec)
    assert rec["status"] == "pass" and rec["exit_code"] == 0 and rec["failure"] is None
    assert rec["metrics"] == {"marker": "20/24", "loss": rec["log_lines"][-1]["loss"], "ips": 640.0, "max_mem": "0.05"}
    assert rec["environment"]["world_size"] == 8 and rec["environment"]["nproc_per_node"] == 8
    assert [r["rank"] for r in rec["ranks"]] == list(range(8))
    assert all(r["exit_code"] == 0 and r["reached_marker"] for r in rec["ranks"])
    assert len(rec["steps"]) == 21 and rec["steps"][0]["step"] == 1
    assert rec["baseline"]["tolerances"]["ips_pct"] == 20.0
    logs = {p.name for p in (recorded["second"].run_dir / "log").iterdir()}
    assert {"workerlog.0", "workerlog.7", "steps.7.jsonl", "run_header.json", "launcher.0.log"} <= logs
    assert not [n for n in logs if n.startswith(("envlog", "backup_env"))]  # full env dumps stay out


def test_changed_learning_rate_fails_on_loss(recorded, data_root, dirs):
    out = execute(plan(data_root, CASE, "Optimizer.LRScheduler.learning_rate=0.60006"), dirs)
    assert out.exit_code == 1 and out.verdict.status == "regression"
    loss = next(c for c in out.verdict.checks if c.metric == "loss")
    assert loss.verdict == "fail" and "loss changed at 20/24" in out.verdict.message
    assert "if intended, run swavbench update-baseline" in out.verdict.advice


@pytest.mark.parametrize(
    "factor,band,word",
    [(1.1, 5.0, "slower"), (1 / 1.1, 5.0, "faster"), (1.25, 20.0, "slower"), (1 / 1.25, 20.0, "faster")],
)
def test_baseline_ips_off_fails_on_ips(recorded, factor, band, word):
    """One run against edited baselines: 10% off with check_result's +-5% band, 25% off with the CPU band."""
    second = recorded["second"]
    base = load_baseline(second.baseline_file)
    edited = replace(
        base,
        metrics={**base.metrics, "ips": second.analysis.summary.ips * factor},
        tolerances={**base.tolerances, "ips_pct": band},
    )
    v = compare(second.analysis.summary, edited, CASE)
    assert v.exit_code == 1 and [c.metric for c in v.checks if c.verdict == "fail"] == ["ips"]
    assert f"% {word} than baseline" in v.message and f"allowed ±{band:g}%" in v.message


def test_faster_run_fails_too(recorded, data_root, dirs, monkeypatch):
    monkeypatch.setenv("FAKE_IPS_SCALE", "1.25")
    out = execute(plan(data_root), dirs)
    assert out.exit_code == 1 and "25.0% faster than baseline: if intended, run" in out.verdict.advice


@pytest.mark.parametrize(
    "env,kind,text",
    [
        ({"FAKE_NAN_STEP": "8"}, "nan_loss", "loss: nan"),
        ({"FAKE_NO_MARKER": "1"}, "missing_marker", "marker 20/24 not found"),
        (
            {"FAKE_CRASH_RANK": "3", "FAKE_CRASH_STEP": "6", "FAKE_CRASH_MODE": "kill"},
            "rank_died",
            "rank 3 exited with code -9 (SIGKILL)",
        ),
        ({"FAKE_CRASH_RANK": "5", "FAKE_CRASH_STEP": "6"}, "rank_died", "rank 5 exited with code 1"),
    ],
)
def test_failed_runs_are_named(recorded, data_root, dirs, monkeypatch, tmp_path, env, kind, text):
    for key, value in {**env, "FAKE_SYNC_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    out = execute(plan(data_root), dirs)
    assert out.exit_code == 2 and out.verdict.failure_kind == kind, out.text()
    assert text in out.verdict.message and out.verdict.checks == []
    rec = json.loads((out.run_dir / "result.json").read_text())
    assert rec["status"] == "failed" and rec["failure"]["kind"] == kind
    assert out.launch.survivors == []


def test_failed_run_is_never_recorded(recorded, data_root, dirs, monkeypatch):
    monkeypatch.setenv("FAKE_NAN_STEP", "3")
    out = execute(plan(data_root), dirs)
    before = recorded["second"].baseline_file.read_bytes()
    cmd = recorded["cmd"][:-1] + [str(out.run_dir)]
    assert main(cmd) == 2
    assert recorded["second"].baseline_file.read_bytes() == before


def test_corrupt_baseline_stops_before_running(data_root, tmp_path):
    p = plan(data_root)
    path = tmp_path / "b" / runner.profile_of(p) / f"{CASE}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"schema_version": 1, "case": ')
    with pytest.raises(BaselineError, match="not valid JSON"):
        runner.execute(p, tmp_path / "b", tmp_path / "r", worker=WORKER)
    assert not (tmp_path / "r").exists()


def test_multinode_run_folder_uses_global_ranks(data_root, dirs):
    out = execute(plan(data_root, "swav_pt_4n32c_fp16o1"), dirs)
    assert out.exit_code == 3 and out.verdict.status == "no_baseline"  # judged; no baseline recorded here
    names = {p.name for p in (out.run_dir / "log").iterdir()}
    world = out.plan.world_size
    assert {f"workerlog.{r}" for r in range(world)} <= names and {f"steps.{r}.jsonl" for r in range(world)} <= names
    assert {f"launcher.{n}.log" for n in range(4)} <= names
    assert out.record["environment"]["topology"] == "4x4" and out.record["environment"]["case_topology"] == "4x8"
    assert any("not x 8" in n for n in out.record["notes"])
    assert out.launch.port_free is True


def test_cases_command_lists_baselines(recorded, dirs, capsys):
    assert main(["cases", "--profile", "cpu", "--baseline-dir", str(dirs["baselines"])]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(CASE))
    assert "yes" in row
    assert "swav_pt_4n32c_fp16o1" in out and "MISSING" in out and "skip swav_lp_1n8c_fp32" in out


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_leaves_no_process(data_root, tmp_path, sig, code):
    tag = uuid.uuid4().hex
    env = {**os.environ, "SWAVBENCH_WORKER": f"{FAKE} train", "FAKE_STEP_S": "0.5", "SWAVBENCH_TEST_TAG": tag}
    cmd = [
        str(Path(sys.executable).parent / "swavbench"),
        "run",
        CASE,
        "--profile",
        "cpu",
        "--data-root",
        str(data_root),
        "--baseline-dir",
        str(tmp_path / "b"),
        "--reports-dir",
        str(tmp_path / "r"),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "step 1/21" in line:
                break
        assert len(procs.find_env("SWAVBENCH_TEST_TAG", tag)) >= 9  # launcher + 8 ranks
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == code
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 5
    while procs.find_env("SWAVBENCH_TEST_TAG", tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert procs.find_env("SWAVBENCH_TEST_TAG", tag) == []


def test_run_record_write_failure_is_an_environment_error(tmp_path, monkeypatch):
    from swavbench import runs
    from swavbench.errors import EnvironmentProblem

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.os, "fsync", full)
    with pytest.raises(EnvironmentProblem, match="No space left on device"):
        runs.write_json_atomic(tmp_path / "result.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []  # no half file, no temp file
