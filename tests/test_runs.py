"""Case runs end to end with the fake worker: record, verdicts, faults, run folder, CLI and signals."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from swavbench.cli import main
from swavbench.errors import BaselineError
from swavbench.harness import cases, prepare, procs, runner
from swavbench.harness.baselines import load_baseline
from swavbench.harness.compare import compare

FAKE = Path(__file__).resolve().parent / "fake_worker.py"
WORKER = [str(FAKE), "train"]
CASE = "swav_pt_1n8c_fp16o1"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("runs")
    return {"baselines": base / "baselines", "reports": base / "reports"}


def plan(data_root: Path, case: str = CASE, *overrides: str, **kw) -> cases.Plan:
    return prepare.plan_for(case, "cpu", data_root, overrides, stall_s=kw.pop("stall_s", 10.0))


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
    assert main([*cmd, "--ips-band", "10"]) == 0  # the pre-train CPU default is +-20%; these tests use +-10%
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
    got = [(c.metric, c.verdict) for c in second.verdict.checks]
    assert got == [("loss", "pass"), ("ips", "info"), ("ips_steady", "pass"), ("max_mem", "pass")]
    b = load_baseline(second.baseline_file)
    assert b.tolerances["ips_pct"] == 10.0 and b.metrics["marker"] == "20/48"
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
    assert rec["metrics"] == {"marker": "20/48", "loss": rec["log_lines"][-1]["loss"], "ips": 640.0, "max_mem": "0.05"}
    assert rec["environment"]["world_size"] == 8 and rec["environment"]["nproc_per_node"] == 8
    assert [r["rank"] for r in rec["ranks"]] == list(range(8))
    assert all(r["exit_code"] == 0 and r["reached_marker"] for r in rec["ranks"])
    assert len(rec["steps"]) == 21 and rec["steps"][0]["step"] == 1
    assert rec["baseline"]["tolerances"]["ips_pct"] == 10.0
    logs = {p.name for p in (recorded["second"].run_dir / "log").iterdir()}
    assert {"workerlog.0", "workerlog.7", "steps.7.jsonl", "run_header.json", "launcher.0.log"} <= logs
    assert not [n for n in logs if n.startswith(("envlog", "backup_env"))]  # full env dumps stay out


def test_changed_learning_rate_fails_on_loss(recorded, data_root, dirs):
    out = execute(plan(data_root, CASE, "Optimizer.LRScheduler.learning_rate=0.60006"), dirs)
    assert out.exit_code == 1 and out.verdict.status == "regression"
    loss = next(c for c in out.verdict.checks if c.metric == "loss")
    assert loss.verdict == "fail" and "loss changed at 20/48" in out.verdict.message
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
        metrics={**base.metrics, "ips_steady": second.analysis.summary.steady.rate * factor},
        tolerances={**base.tolerances, "ips_pct": band},
    )
    v = compare(second.analysis.summary, edited, CASE)
    assert v.exit_code == 1 and [c.metric for c in v.checks if c.verdict == "fail"] == ["ips_steady"]
    assert f"% {word} than baseline" in v.message and f"allowed ±{band:g}%" in v.message


def test_faster_run_fails_too(recorded, data_root, dirs, monkeypatch):
    monkeypatch.setenv("FAKE_IPS_SCALE", "1.25")
    out = execute(plan(data_root), dirs)
    assert out.exit_code == 1 and "25.0% faster than baseline: if intended, run" in out.verdict.advice


@pytest.mark.parametrize(
    "env,kind,text",
    [
        ({"FAKE_NAN_STEP": "8"}, "nan_loss", "loss: nan"),
        ({"FAKE_NO_MARKER": "1"}, "missing_marker", "marker 20/48 not found"),
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
    assert "swav_pt_4n32c_fp16o1" in out and "MISSING" in out and "swav_lp_1n8c_fp32" in out  # lp/ft wired


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_leaves_no_process(data_root, tmp_path, sig, code):
    tag = uuid.uuid4().hex
    env = {**os.environ, "SWAVBENCH_WORKER": f"{FAKE} train", "FAKE_STEP_S": "2", "SWAVBENCH_TEST_TAG": tag}
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
    # as from a terminal: a test run started as a background job (`cmd &` in a script) inherits SIGINT
    # ignored, and then Ctrl-C could not reach the harness at all
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
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
    from swavbench.errors import EnvironmentProblem
    from swavbench.harness import runs

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.os, "fsync", full)
    with pytest.raises(EnvironmentProblem, match="No space left on device"):
        runs.write_json_atomic(tmp_path / "result.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []  # no half file, no temp file


def test_one_slow_run_is_rerun_and_not_confirmed(recorded, data_root, dirs, monkeypatch, tmp_path):
    """-15% once (outside +-10%), then a clean rerun: all 40 steady steps pooled give -7.5%, a pass."""
    monkeypatch.setenv("FAKE_ONCE_FILE", str(tmp_path / "once"))
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.85")
    out = execute(plan(data_root), dirs)
    assert out.exit_code == 0, out.text()
    assert out.verdict.message.startswith("not confirmed over 2 runs (ips 544.0, 640.0")
    rec = json.loads((out.run_dir / "result.json").read_text())
    assert [a["status"] for a in rec["attempts"]] == ["regression", "pass"]
    assert rec["attempts"][0]["steady"]["median"] == 544.0 and rec["attempts"][1]["log_dir"] == "attempts/2/log"
    assert (out.run_dir / "attempts" / "2" / "log" / "workerlog.0").is_file()
    assert "attempt 1: regression" in out.text() and out.launch.survivors == []
    assert all(a.res.survivors == [] for a in out.attempts)


def test_a_slow_spell_is_not_confirmed_when_the_rerun_is_inside_the_band(recorded, data_root, dirs, monkeypatch,
                                                                          tmp_path):
    """-25% once, then a clean rerun after the delay: pooled the steps give -14% (outside +-10%), but a
    regression needs every attempt outside the band - the first run met a slow spell of the machine."""
    monkeypatch.setenv("FAKE_ONCE_FILE", str(tmp_path / "once"))
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.75")
    waits, real_sleep = [], time.sleep
    monkeypatch.setattr("swavbench.harness.runner.time.sleep", lambda s: waits.append(s) if s >= 1 else real_sleep(s))
    out = execute(plan(data_root), dirs, confirm_delay_s=42.0)
    assert waits == [42.0]  # waited once, before the rerun
    assert out.exit_code == 0 and out.verdict.status == "pass", out.text()
    assert out.verdict.message.startswith("not confirmed over 2 runs (ips 480.0, 640.0; a regression needs every")
    assert [a.verdict.status for a in out.attempts] == ["regression", "pass"]


def test_confirm_zero_judges_one_run(recorded, data_root, dirs, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_ONCE_FILE", str(tmp_path / "once"))
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.75")
    out = execute(plan(data_root), dirs, confirm=0)
    assert out.exit_code == 1 and len(out.attempts) == 1 and "attempts" not in out.record


def test_loss_change_is_never_confirmed_away(recorded, data_root, dirs, monkeypatch, tmp_path):
    """A slow run whose loss also changed fails at once: no rerun can make a loss mismatch pass."""
    monkeypatch.setenv("FAKE_ONCE_FILE", str(tmp_path / "once"))
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.75")
    monkeypatch.setenv("FAKE_LOSS_BUMP", "0.001")
    out = execute(plan(data_root), dirs)
    assert out.exit_code == 1 and len(out.attempts) == 1, out.text()
    assert "loss changed at 20/48" in out.verdict.message


def test_steady_ips_skips_detected_warmup_and_an_odd_slow_step(recorded, data_root, dirs, monkeypatch):
    monkeypatch.setenv("FAKE_WARMUP_STEPS", "3")
    monkeypatch.setenv("FAKE_OUTLIER_STEPS", "11")  # a logged line, 3x slower
    out = execute(plan(data_root), dirs)
    s = out.analysis.summary
    assert s.steady.warmup_steps == 3 and s.steady.n_steps == 18
    assert s.steady.rate == pytest.approx(640.0) and s.steady.median == 640.0  # the slow step is trimmed
    assert s.ips < 0.95 * 640  # PASSL's mean of lines sees the slow step; it is shown, not judged
    assert out.exit_code == 0 and out.record["ips_steady"]["rate"] == pytest.approx(640.0)


def _cli(data_root: Path, dirs: dict, *args: str) -> list[str]:
    return [*args, "--profile", "cpu", "--data-root", str(data_root), "--baseline-dir", str(dirs["baselines"]),
            "--reports-dir", str(dirs["reports"])]  # fmt: skip


def test_determinism_identical_then_first_difference(recorded, data_root, dirs, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SWAVBENCH_WORKER", f"{FAKE} train")
    assert main(_cli(data_root, dirs, "determinism", CASE)) == 0
    assert "identical for 21 logged steps (8 rank(s), loss compared exactly)" in capsys.readouterr().out
    for key, value in {"FAKE_ONCE_FILE": str(tmp_path / "once"), "FAKE_LOSS_BUMP": "0.0001",
                       "FAKE_LOSS_BUMP_STEP": "7", "FAKE_LOSS_BUMP_RANK": "3"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    assert main(_cli(data_root, dirs, "determinism", CASE)) == 1
    out = capsys.readouterr().out
    assert "losses differ first at step 7 on rank 3: " in out and "(run 1) vs " in out


def test_calibrate_stores_noise_and_flags_a_narrow_band(recorded, data_root, dirs, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SWAVBENCH_WORKER", f"{FAKE} train")
    bfile = recorded["second"].baseline_file
    before = load_baseline(bfile)
    monkeypatch.setenv("FAKE_ONCE_FILE", str(tmp_path / "once"))
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.5")  # the first run at half speed: 33% from the median
    try:
        assert main(_cli(data_root, dirs, "calibrate", CASE, "--repeats", "2")) == 0
        out = capsys.readouterr().out
        cal = load_baseline(bfile).provenance["calibration"]
        assert cal["repeats"] == 2 and cal["values"] == [320.0, 640.0] and cal["statistic"] == "steady rate"
        assert "warning: the ips band ±10% is narrower than the measured run-to-run noise" in out
        assert load_baseline(bfile).metrics == before.metrics  # calibration never touches the figures
        monkeypatch.delenv("FAKE_IPS_SCALE")
        assert main(recorded["cmd"]) == 0  # re-recording keeps the calibration and flags the band again
        assert load_baseline(bfile).provenance["calibration"] == cal
        assert "narrower than the measured run-to-run noise" in capsys.readouterr().out
    finally:
        from swavbench.harness.baselines import write_baseline

        write_baseline(bfile, before)


def test_update_baseline_repeats_records_the_median_and_the_spread(recorded, data_root, dirs, monkeypatch,
                                                                   tmp_path, capsys):
    monkeypatch.setenv("SWAVBENCH_WORKER", f"{FAKE} train")
    bfile = recorded["second"].baseline_file
    before = load_baseline(bfile)
    monkeypatch.setenv("FAKE_ONCE_FILE", str(tmp_path / "once"))
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.5")  # run 1 at half speed: one run alone would centre the band there
    try:
        assert main(_cli(data_root, dirs, "update-baseline", CASE, "--repeats", "3")) == 0
        after = load_baseline(bfile)
        assert after.metrics["ips_steady"] == pytest.approx(640.0)  # median of 320, 640, 640
        assert after.metrics["loss"] == before.metrics["loss"] and after.tolerances == before.tolerances
        cal = after.provenance["calibration"]
        assert cal["repeats"] == 3 and cal["values"] == [320.0, 640.0, 640.0]
        assert cal["source"] == "update-baseline --repeats" and len(after.provenance["run_ids"]) == 3
        assert "recording run 3/3" in capsys.readouterr().out
    finally:
        from swavbench.harness.baselines import write_baseline

        write_baseline(bfile, before)


def test_update_baseline_ips_band_sets_the_band_and_shows_it_in_the_diff(recorded, dirs, capsys):
    bfile = recorded["second"].baseline_file
    before = load_baseline(bfile)
    assert before.tolerances["ips_pct"] == 10.0  # the fixture's decision, kept by a plain re-record
    cmd = recorded["cmd"]  # the fixture's command, without its --ips-band
    try:
        assert main([*cmd, "--ips-band", "5"]) == 0
        after = load_baseline(bfile)
        assert after.tolerances == {**before.tolerances, "ips_pct": 5.0} and after.metrics == before.metrics
        assert "  tolerances.ips_pct: 10.0 -> 5.0" in capsys.readouterr().out
        assert main(cmd) == 0 and load_baseline(bfile).tolerances["ips_pct"] == 5.0  # kept when not given
        written = bfile.read_bytes()
        for bad in ("0", "-5", "100"):
            assert main([*cmd, "--ips-band", bad]) == 3
            assert f"--ips-band {float(bad):g}: give a percentage between 0 and 100" in capsys.readouterr().err
        assert bfile.read_bytes() == written  # a refused band writes nothing
    finally:
        from swavbench.harness.baselines import write_baseline

        write_baseline(bfile, before)


def test_update_baseline_from_several_runs_records_their_median(recorded, data_root, dirs, monkeypatch, capsys,
                                                                tmp_path):
    bfile = recorded["second"].baseline_file
    before = load_baseline(bfile)
    monkeypatch.setenv("FAKE_IPS_SCALE", "0.5")
    slow = execute(plan(data_root), dirs)  # kept from a slow hour of the machine
    monkeypatch.setenv("FAKE_IPS_SCALE", "1.0")
    monkeypatch.setenv("FAKE_LOSS_BUMP", "0.001")
    other_loss = execute(plan(data_root), dirs)
    runs = [str(recorded["first"].run_dir), str(recorded["second"].run_dir), str(slow.run_dir)]
    cmd = recorded["cmd"][:-1]  # the fixture's command without its one --from folder
    try:
        assert main([*cmd, *runs]) == 0
        after = load_baseline(bfile)
        assert after.metrics["ips_steady"] == pytest.approx(640.0)  # median of 640, 640, 320
        cal = after.provenance["calibration"]
        assert cal["values"] == [640.0, 640.0, 320.0] and cal["source"] == "update-baseline --from"
        assert after.provenance["run_ids"] == [recorded["first"].run_id, recorded["second"].run_id, slow.run_id]
        assert "reading run 3/3 of" in capsys.readouterr().out
        written = bfile.read_bytes()
        assert main([*cmd, *runs, str(other_loss.run_dir)]) == 2  # runs that disagree on the loss: refused
        assert "refusing to record" in capsys.readouterr().err and bfile.read_bytes() == written
        assert main([*cmd, *runs, "--repeats", "2"]) == 3
        elsewhere = tmp_path / "elsewhere"  # a run kept on another machine profile
        shutil.copytree(slow.run_dir, elsewhere)
        rec = json.loads((elsewhere / "result.json").read_text())
        other = {**rec, "profile": "cpu-other-1t", "run_id": f"{rec['run_id']}-other"}
        (elsewhere / "result.json").write_text(json.dumps(other))
        assert main([*cmd, *runs, str(elsewhere)]) == 3
        err = capsys.readouterr().err
        assert "recorded on different machine profiles (" in err and "cpu-other-1t" in err
        assert bfile.read_bytes() == written
    finally:
        from swavbench.harness.baselines import write_baseline

        write_baseline(bfile, before)


def test_update_baseline_repeats_refuses_runs_that_disagree(recorded, data_root, dirs, monkeypatch, tmp_path):
    monkeypatch.setenv("SWAVBENCH_WORKER", f"{FAKE} train")
    bfile = recorded["second"].baseline_file
    before = bfile.read_bytes()
    monkeypatch.setenv("FAKE_ONCE_FILE", str(tmp_path / "once"))
    monkeypatch.setenv("FAKE_LOSS_BUMP", "0.001")  # run 1 only: a nondeterministic training
    assert main(_cli(data_root, dirs, "update-baseline", CASE, "--repeats", "2")) == 2
    assert bfile.read_bytes() == before  # nothing written
    assert main(_cli(data_root, dirs, "update-baseline", CASE, "--repeats", "0")) == 3


# Faults (issue 6): each a distinct kind or error, bounded in time, nothing left running, nothing damaged.


@pytest.fixture
def tag(monkeypatch) -> str:
    """A unique env tag every process of the run inherits: find_env(tag) lists whatever survived."""
    value = uuid.uuid4().hex
    monkeypatch.setenv("SWAVBENCH_TEST_TAG", value)
    return value


def no_process_left(tag: str) -> None:
    deadline = time.monotonic() + 5
    while procs.find_env("SWAVBENCH_TEST_TAG", tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert procs.find_env("SWAVBENCH_TEST_TAG", tag) == []


@pytest.mark.parametrize(
    "env,kind,text",
    [
        # launch reports the dead rank; on a loaded machine the watchdog may see its peers stall first, and the
        # vanished process still names it
        ({"FAKE_CRASH_RANK": "2", "FAKE_CRASH_STEP": "5", "FAKE_CRASH_MODE": "kill"}, "rank_died",
         "rank 2 (exited|died)"),
        ({"FAKE_HANG_RANK": "4", "FAKE_HANG_STEP": "5", "FAKE_HANG_MODE": "sigstop"}, "hang", "rank 4 stopped"),
    ],
)
def test_dead_or_frozen_rank_stops_every_process(recorded, data_root, dirs, monkeypatch, tmp_path, tag, env, kind,
                                                 text):  # fmt: skip
    for key, value in {**env, "FAKE_SYNC_DIR": str(tmp_path), "FAKE_STEP_S": "0.05"}.items():
        monkeypatch.setenv(key, value)
    before = recorded["second"].baseline_file.read_bytes()
    t0 = time.monotonic()
    out = execute(plan(data_root, stall_s=4.0), dirs)
    assert out.exit_code == 2 and out.verdict.failure_kind == kind and re.search(text, out.verdict.message), out.text()
    assert time.monotonic() - t0 < 40
    assert json.loads((out.run_dir / "result.json").read_text())["failure"]["kind"] == kind
    assert recorded["second"].baseline_file.read_bytes() == before
    no_process_left(tag)


def test_missing_dataset_is_a_data_error_before_any_launch(dirs, tmp_path, capsys, tag):
    args = ["run", CASE, "--profile", "cpu", "--data-root", str(tmp_path / "nowhere"),
            "--baseline-dir", str(dirs["baselines"]), "--reports-dir", str(tmp_path / "r")]  # fmt: skip
    assert main(args) == 4
    assert f"missing dataset: {tmp_path / 'nowhere'}/train not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    no_process_left(tag)


def test_disk_full_while_writing_the_run_record(recorded, data_root, dirs, monkeypatch, tag, capsys):
    from swavbench.harness import runs

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    before = recorded["second"].baseline_file.read_bytes()
    monkeypatch.setattr(runs.os, "fsync", full)
    monkeypatch.setenv("SWAVBENCH_WORKER", f"{FAKE} train")
    args = ["run", CASE, "--profile", "cpu", "--data-root", str(data_root), "--baseline-dir", str(dirs["baselines"]),
            "--reports-dir", str(dirs["reports"])]  # fmt: skip
    assert main(args) == 6
    err = capsys.readouterr().err
    assert "swavbench: error: could not write" in err and "result.json: No space left on device (disk full?)" in err
    run_dir = Path(err.split("could not write ")[1].split("/result.json")[0])
    assert not [p.name for p in run_dir.iterdir() if "result.json" in p.name]  # no half file, no temp file
    assert recorded["second"].baseline_file.read_bytes() == before
    no_process_left(tag)
