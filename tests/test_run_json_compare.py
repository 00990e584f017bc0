"""`swavbench run --json` (one verdict document on stdout, progress on stderr) and `swavbench compare RUN_A
RUN_B` (one run record judged against another), from the outside with the fake worker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parent / "fake_worker.py"
CASE = "swav_pt_1n8c_fp16o1"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("runjson")
    data = base / "data"
    (data / "train" / "a").mkdir(parents=True)
    for i in range(3072):
        (data / "train" / "a" / f"{i}.jpg").touch()
    return {"data": data, "baselines": base / "baselines", "reports": base / "reports", "tmp": base}


def swavbench(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SWAVBENCH_WORKER": f"{FAKE} train", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "swavbench.cli", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=300)  # fmt: skip


def run_json(dirs: dict, **env: str) -> tuple[int, dict, str]:
    proc = swavbench("run", CASE, "--profile", "cpu", "--json", "--confirm", "0", "--data-root", dirs["data"],
                     "--baseline-dir", dirs["baselines"], "--reports-dir", dirs["reports"], **env)  # fmt: skip
    return proc.returncode, json.loads(proc.stdout), proc.stderr  # the whole of stdout is one document


@pytest.fixture(scope="module")
def runs(dirs: dict) -> dict:
    """A run without baseline (recorded as the baseline), a passing rerun, a slow one and a crashed one."""
    out = {}
    code, out["first"], err = run_json(dirs)
    assert code == 3 and out["first"]["verdict"]["status"] == "no_baseline", err
    assert f"[{CASE}] step 21/21" in err  # live progress went to stderr
    record = swavbench("update-baseline", CASE, "--profile", "cpu", "--from", out["first"]["run_dir"],
                       "--baseline-dir", dirs["baselines"], "--data-root", dirs["data"])  # fmt: skip
    assert record.returncode == 0, record.stdout + record.stderr
    crash = {"FAKE_CRASH_RANK": "6", "FAKE_CRASH_STEP": "5", "FAKE_SYNC_DIR": str(dirs["tmp"])}
    for name, env in [("pass", {}), ("slow", {"FAKE_IPS_SCALE": "0.75"}), ("crash", crash)]:
        code, out[name], _ = run_json(dirs, **env)
        out[name]["code"] = code
    return out


def test_run_json_is_one_verdict_document(runs: dict, dirs: dict) -> None:
    first, ok, slow, crash = runs["first"], runs["pass"], runs["slow"], runs["crash"]
    assert first["baseline_found"] is False and "update-baseline" in first["verdict"]["advice"]
    assert Path(first["run_record"]).is_file() and first["case"] == CASE and first["profile"].startswith("cpu-")
    assert (ok["code"], ok["exit_code"], ok["verdict"]["status"]) == (0, 0, "pass") and ok["baseline_found"]
    assert ok["baseline"].endswith(f"{CASE}.json") and ok["metrics"]["loss"]
    assert (slow["code"], slow["verdict"]["status"]) == (1, "regression")
    steady = next(c for c in slow["verdict"]["checks"] if c["metric"] == "ips_steady")
    assert steady["diff"] == "-25.00%" and steady["verdict"] == "fail"
    assert (crash["code"], crash["verdict"]["status"], crash["verdict"]["failure_kind"]) == (2, "failed", "rank_died")
    assert json.loads(Path(ok["run_record"]).read_text())["run_id"] == ok["run_id"]


def test_compare_two_runs_judges_b_against_a(runs: dict) -> None:
    same = swavbench("compare", runs["first"]["run_dir"], runs["pass"]["run_dir"])
    assert same.returncode == 0, same.stdout + same.stderr
    assert "judged against run A" in same.stdout and "PASS: all checks pass" in same.stdout
    slow = swavbench("compare", runs["pass"]["run_dir"], Path(runs["slow"]["run_dir"]) / "result.json")
    assert slow.returncode == 1 and "REGRESSION: steady-state ips 25.0% slower" in slow.stdout
    assert "ips_steady" in slow.stdout and "-25.00%" in slow.stdout
    faster = swavbench("compare", runs["slow"]["run_dir"], runs["pass"]["run_dir"], "--json")
    doc = json.loads(faster.stdout)
    assert faster.returncode == 1 and doc["verdict"]["status"] == "regression" and "faster" in doc["verdict"]["message"]
    assert doc["run_a"] == runs["slow"]["run_dir"] and doc["tolerances_from"] == "run B's baseline"
    crashed = swavbench("compare", runs["pass"]["run_dir"], runs["crash"]["run_dir"])
    assert crashed.returncode == 2 and "FAILED: run failed (rank_died)" in crashed.stdout


def test_compare_two_runs_refuses_what_cannot_be_judged(runs: dict, dirs: dict) -> None:
    ref = swavbench("compare", runs["crash"]["run_dir"], runs["pass"]["run_dir"])
    assert ref.returncode == 3 and "cannot be the reference" in ref.stderr and ref.stderr.count("\n") == 1
    other = Path(shutil.copytree(runs["pass"]["run_dir"], dirs["tmp"] / "other-profile"))
    rec = json.loads((other / "result.json").read_text()) | {"profile": "cpu-elsewhere-64t"}
    (other / "result.json").write_text(json.dumps(rec))
    refused = swavbench("compare", runs["pass"]["run_dir"], other)
    assert refused.returncode == 3 and "--allow-mismatch" in refused.stderr
    allowed = swavbench("compare", runs["pass"]["run_dir"], other, "--allow-mismatch")
    assert allowed.returncode == 0 and "warning:" in allowed.stdout
    (other / "result.json").write_text(json.dumps(rec | {"case": "swav_pt_4n32c_fp16o1"}))
    wrong = swavbench("compare", runs["pass"]["run_dir"], other)
    assert wrong.returncode == 3 and "compare two runs of one case" in wrong.stderr
    missing = swavbench("compare", runs["pass"]["run_dir"], dirs["tmp"] / "nowhere")
    assert missing.returncode == 3 and "not a run folder" in missing.stderr
    both = swavbench("compare", runs["pass"]["run_dir"], other, "--baseline", "x.json")
    assert both.returncode == 3 and "not both" in both.stderr
