"""Paired A/B runs with the fake worker: `swavbench ab` from the outside, the nightly confirmation by A/B,
REF resolution (trees, revisions, interpreters), and that no process or worktree outlives a session."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from swavbench.harness import absession, builds, cases, paired, procs, runner
from swavbench.harness.absession import Block, Session, Settings
from swavbench.harness.abverdict import judge
from swavbench.harness.baselines import Baseline, write_baseline
from swavbench.harness.builds import REPO_ROOT
from swavbench.harness.determinism import Comparison, Difference
from swavbench.harness.prepare import plan_for
from swavbench.train.config import load_config

FAKE = Path(__file__).resolve().parent / "fake_worker.py"
CASE = "swav_pt_1n8c_fp16o1"
SWAVBENCH = [sys.executable, "-m", "swavbench.cli"]


def tree(path: Path) -> Path:
    """A directory that `swavbench ab` takes as a source tree (the fake worker imports the real package)."""
    (path / "swavbench").mkdir(parents=True)
    (path / "swavbench" / "__init__.py").write_text("")
    return path


@pytest.fixture
def ab_env(tmp_path, monkeypatch) -> dict:
    """The fake worker as both sides' rank command, steps that burn CPU (pausable), two trees."""
    env = {"SWAVBENCH_WORKER": f"{sys.executable} {FAKE} train", "FAKE_CPU_STEP_S": "0.02", "FAKE_SYNC_DIR": "log",
           "SWAVBENCH_TEST_TAG": f"ab-{tmp_path.name}"}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {"ref": tree(tmp_path / "ref"), "cand": tree(tmp_path / "cand"), "reports": tmp_path / "reports"}


def ab(data_root: Path, e: dict, *extra: str, sides: dict | None = None, timeout: float = 240):
    env = dict(os.environ, FAKE_SIDE_JSON=json.dumps({str(e[k]): v for k, v in (sides or {}).items()}))
    argv = [*SWAVBENCH, "ab", CASE, "--profile", "cpu", "--data-root", str(data_root), "--ref", str(e["ref"]),
            "--cand", str(e["cand"]), "--reports-dir", str(e["reports"]), *extra]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO_ROOT)


def worktrees() -> set[str]:
    """The paths of this repository's worktrees (other helpers' commits move their HEADs meanwhile)."""
    out = builds._git("worktree", "list", "--porcelain").stdout
    return {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")}


def leftovers() -> list[str]:
    return [p.describe() for p in procs.find_env("SWAVBENCH_TEST_TAG", os.environ["SWAVBENCH_TEST_TAG"])]


def record(e: dict) -> dict:
    [path] = (e["reports"] / "runs").glob("*/result.json")
    return json.loads(path.read_text())


def test_same_code_on_both_sides_is_no_change(data_root, ab_env):
    out = ab(data_root, ab_env, "--band", "40")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "NO CHANGE: steady ips within ±40% of the reference" in out.stdout
    assert "pair  1 (ref first)" in out.stdout and "pair  2 (cand first)" in out.stdout
    assert "loss (every rank)" in out.stdout and "identical" in out.stdout
    rec = record(ab_env)
    assert rec["kind"] == "ab" and rec["status"] == "pass" and rec["ab"]["status"] == "no_change"
    assert rec["ab"]["decision"]["pairs"] >= paired.MIN_PAIRS
    assert len(rec["ab"]["pairs"]) == rec["ab"]["decision"]["pairs"]
    run_dir = next((ab_env["reports"] / "runs").iterdir())
    assert (run_dir / "ab" / "ref" / "log" / "steps.0.jsonl").is_file()
    assert (run_dir / "ab" / "cand" / "log" / "workerlog.0").is_file()
    assert leftovers() == []


def test_a_slower_candidate_is_a_regression_with_its_interval(data_root, ab_env):
    out = ab(data_root, ab_env, "--band", "10", sides={"cand": {"FAKE_SLOW": "2.5"}})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "REGRESSION: the candidate is" in out.stdout and "slower than the reference" in out.stdout
    assert "interval: cand vs ref -" in out.stdout and "what to do: find the change that costs it" in out.stdout
    d = record(ab_env)["ab"]["decision"]
    assert d["status"] == "regression" and d["high"] < 1 and d["ratio"] < 0.9
    assert leftovers() == []


def test_a_candidate_that_changes_the_loss_is_changed_at_its_first_step(data_root, ab_env):
    out = ab(data_root, ab_env, sides={"cand": {"FAKE_LOSS_BUMP": "0.001", "FAKE_LOSS_BUMP_STEP": "9",
                                                 "FAKE_LOSS_BUMP_RANK": "5"}})  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "CHANGED: the candidate changes the loss: losses differ first at step 9 on rank 5" in out.stdout
    assert "(ref) vs" in out.stdout and "(cand)" in out.stdout
    assert record(ab_env)["ab"]["status"] == "changed"


def test_a_side_that_crashes_fails_the_ab_and_leaves_no_process(data_root, ab_env):
    out = ab(data_root, ab_env, sides={"ref": {"FAKE_CRASH_RANK": "3", "FAKE_CRASH_STEP": "12"}})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "FAILED: ref (tree" in out.stdout and "ended during the session" in out.stdout
    assert leftovers() == []


def test_a_revision_is_checked_out_into_a_worktree_that_is_removed(data_root, ab_env):
    before = worktrees()
    out = subprocess.run([*SWAVBENCH, "ab", CASE, "--profile", "cpu", "--data-root", str(data_root), "--ref", "HEAD",
                          "--band", "40", "--max-pairs", "6", "--reports-dir", str(ab_env["reports"])],
                         capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)  # fmt: skip
    assert out.returncode in (0, 7), out.stdout + out.stderr
    assert "ref revision" in out.stdout and "(HEAD)" in out.stdout
    assert worktrees() == before


def test_sigterm_mid_session_stops_both_jobs_and_removes_the_worktree(data_root, ab_env):
    before = worktrees()
    argv = [*SWAVBENCH, "ab", CASE, "--profile", "cpu", "--data-root", str(data_root), "--ref", "HEAD",
            "--max-pairs", "200", "--band", "0.01", "--reports-dir", str(ab_env["reports"])]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)
    seen = ""
    while "A/B pairs" not in seen:
        line = proc.stdout.readline()
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=90) == 143
    assert leftovers() == []
    assert worktrees() == before


def test_a_side_imports_its_own_tree_even_when_run_inside_another_checkout(tmp_path, monkeypatch):
    """`python -m` would put the current directory (here: this checkout) first on sys.path and train this
    checkout's code on both sides; the rank command must import the side's tree."""
    monkeypatch.delenv("SWAVBENCH_WORKER", raising=False)
    t = tree(tmp_path / "t")
    (t / "swavbench" / "cli.py").write_text("import sys\nimport swavbench\n"
                                            "print('from', swavbench.__file__, sys.argv[1:])\n")
    side = builds.Build("tree", str(t), t, sys.executable)
    out = subprocess.run([*side.worker(), "-c", "CFG"], cwd=REPO_ROOT, env={**os.environ, **side.env()},
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert f"from {t / 'swavbench' / '__init__.py'} ['train', '-c', 'CFG']" in out.stdout, out.stderr


def test_unknown_ref_is_a_usage_error(ab_env):
    out = subprocess.run([*SWAVBENCH, "ab", CASE, "--ref", "no-such-rev-xyz"], capture_output=True, text=True,
                         cwd=REPO_ROOT)  # fmt: skip
    assert out.returncode == 3 and "not a git revision" in out.stderr and "Traceback" not in out.stderr


def test_an_interpreter_ref_runs_the_candidate_code(tmp_path):
    with builds.checkout(sys.executable) as b:
        assert b.kind == "interpreter" and b.tree == REPO_ROOT.resolve() and b.python == sys.executable
    venv = Path(sys.executable).parent.parent  # this virtualenv, named by its folder
    with builds.checkout(str(venv)) as b:
        assert b.kind == "interpreter" and b.python == str(venv / "bin" / "python")
    broken = tmp_path / "python-without-paddle"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(builds.EnvironmentProblem, match="cannot import paddle"):
        with builds.checkout(str(broken)):
            pass


def test_reference_for_finds_the_baseline_build(tmp_path):
    here = builds.build_info()
    ref = builds.reference_for({"build": here})
    assert ref.ref == str(REPO_ROOT.resolve()) and "same fingerprint" in ref.why
    head = builds.resolve_revision("HEAD")
    ref = builds.reference_for({"build": {**here, "fingerprint": "other", "commit": head, "dirty": False}})
    assert ref.ref == head
    ref = builds.reference_for({"build": {**here, "fingerprint": "other", "commit": head, "dirty": True}})
    assert ref.ref is None and "modified tree" in ref.why
    assert builds.reference_for({"commit": head[:7]}).ref == head  # an older baseline: its short commit
    assert builds.reference_for({"commit": "0" * 12}).ref is None
    assert builds.reference_for({}).ref is None


def session(ratios: list[float], loss: Comparison | None = None) -> Session:
    blocks = []
    for i, side in enumerate(paired.block_order(2 * len(ratios))):
        r = ratios[i // 2]
        blocks.append(Block(side, (i * 3 + 1, i * 3 + 3), [100.0 * (r if side else 1.0)] * 3))
    s = Session(blocks=blocks, loss=loss or Comparison(len(blocks) * 3, 8, None))
    s.decision = paired.sequential(s.ratios, 5, max_pairs=len(ratios))
    return s


@pytest.mark.parametrize("ratios,status,code", [
    ([0.99, 1.01, 1.0, 1.0, 0.995, 1.005], "no_change", 0),
    ([0.9, 0.89, 0.91, 0.9, 0.9, 0.905], "regression", 1),
    ([1.2, 1.19, 1.21, 1.2, 1.18, 1.2], "improvement", 1),
    ([0.7, 1.3, 0.8, 1.25, 0.75, 1.2], "inconclusive", 7),
])  # fmt: skip
def test_judge_maps_each_outcome_to_its_exit_code(ratios, status, code):
    b = builds.Build("tree", ".", REPO_ROOT, sys.executable)
    v = judge(CASE, session(ratios), b, b, Settings(max_pairs=len(ratios)))
    assert (v.status, v.exit_code) == (status, code), v.text()
    assert v.as_dict()["pairs"][0]["pair"] == 1 and "interval: cand vs ref" in v.text()
    changed = judge(CASE, session(ratios, Comparison(4, 8, Difference(5, 2, 1.0, 1.5))), b, b, Settings())
    assert (changed.status, changed.exit_code) == ("changed", 1) and "step 5 on rank 2" in changed.message
    s = session(ratios)
    s.memory = "max mem differs first at step 6: 0.05 (ref) vs 0.06 (cand)"
    assert judge(CASE, s, b, b, Settings()).status == "changed"


def test_compare_losses_ignores_ranks_not_yet_written_until_the_end():
    from swavbench.harness.logparse import StepsLog

    a = {0: StepsLog("a0", [{"step": s, "loss": 1.0} for s in range(1, 6)], []),
         1: StepsLog("a1", [{"step": s, "loss": 1.0} for s in range(1, 4)], [])}  # fmt: skip
    b = {0: StepsLog("b0", [{"step": s, "loss": 1.0} for s in range(1, 7)], [])}
    assert absession.compare_losses(a, b).difference is None
    assert absession.compare_losses(a, b, final=True).difference is not None


# -- the nightly confirmation: swavbench run --confirm-mode ab ------------------------------------------------
def plan(data_root: Path) -> cases.Plan:
    return plan_for(CASE, "cpu", data_root, stall_s=30.0)


def fast_baseline(bdir: Path, build: dict, ips: float = 1e6) -> Path:
    """A baseline far faster than the fake runs (so the first run fails on ips alone), with this build."""
    from swavbench.harness.runner import profile_of

    path = bdir / profile_of(cases.plan(cases.resolve_case(CASE), "cpu")) / f"{CASE}.json"
    lr = load_config(cases.resolve_case(CASE).config, profile="cpu")["Optimizer"]["lr"]["learning_rate"]
    loss = f"{8.0 * math.exp(-lr * 21 / 50.0) + 0.1 * math.sin(21):.5f}"  # the fake worker's loss at step 21
    write_baseline(path, Baseline(CASE, path.parent.name, {"loss": loss, "ips": ips, "ips_steady": ips,
                                                             "max_mem": "0.05", "marker": "20/48"},
                                  {"ips_pct": 20.0, "loss": "exact", "max_mem": "exact"},
                                  {"build": build, "commit": build.get("commit")}, cases.resolve_case(CASE).passl_name))
    return path


def execute(data_root, tmp_path, mode="ab", **kw) -> runner.Outcome:
    return runner.execute(plan(data_root), tmp_path / "b", tmp_path / "r", worker=[str(FAKE), "train"],
                          confirm_mode=mode, ab_settings=Settings(max_pairs=12), **kw)  # fmt: skip


def test_ab_confirmation_of_an_environment_slowdown_is_not_confirmed(data_root, ab_env, tmp_path):
    """The baseline's build is this tree (same fingerprint): both sides run this code, so an ips drop that
    was the machine's shows as no change (or, the fake worker's tiny steps being noisy, inconclusive within
    the 12 pairs: also not confirmed) and the case passes; the A/B is in the record and the text."""
    fast_baseline(tmp_path / "b", builds.build_info())
    out = execute(data_root, tmp_path)
    assert out.exit_code == 0, out.text()
    assert out.verdict.message.startswith("not confirmed: a paired A/B against the baseline's build")
    assert len(out.attempts) == 1
    rec = json.loads((out.run_dir / "result.json").read_text())
    shown = rec["confirmation"]["status"]
    assert rec["confirmation"]["mode"] == "ab" and shown in ("no_change", "inconclusive")
    assert f"shows {shown.replace('_', ' ')}" in out.verdict.message
    assert rec["ab"]["ref"]["tree"] == str(REPO_ROOT.resolve())
    assert "confirmation: A/B swav_pt_1n8c_fp16o1" in out.text() and "pair  1" in out.text()
    assert (out.run_dir / "ab" / "cand" / "log" / "steps.0.jsonl").is_file()
    assert leftovers() == []


def test_ab_confirmation_against_the_baseline_commit_confirms_a_slower_candidate(data_root, ab_env, tmp_path,
                                                                                 monkeypatch):
    head = builds.resolve_revision("HEAD")
    fast_baseline(tmp_path / "b", {**builds.build_info(), "fingerprint": "older", "commit": head, "dirty": False})
    monkeypatch.setenv("FAKE_SIDE_JSON", json.dumps({str(REPO_ROOT.resolve()): {"FAKE_SLOW": "2.5"}}))
    out = execute(data_root, tmp_path)
    assert out.exit_code == 1, out.text()
    assert out.verdict.message.startswith("confirmed by a paired A/B against the baseline's build (revision")
    assert "slower than the reference" in out.verdict.message
    assert out.ab.ref.commit == head and out.ab.status == "regression"


def test_without_a_rebuildable_reference_the_confirmation_is_a_rerun(data_root, ab_env, tmp_path):
    fast_baseline(tmp_path / "b", {"commit": "0" * 40, "dirty": False, "fingerprint": "gone"})
    out = execute(data_root, tmp_path, confirm_delay_s=0.0)
    assert out.exit_code == 1 and len(out.attempts) == 2 and out.ab is None
    assert any("no A/B: the baseline's commit" in w and "confirming by a rerun instead" in w for w in out.warnings)
    rec = json.loads((out.run_dir / "result.json").read_text())
    assert rec["confirmation"]["fallback"].startswith("no A/B")


def test_confirm_mode_off_judges_the_first_run(data_root, ab_env, tmp_path):
    fast_baseline(tmp_path / "b", builds.build_info())
    out = execute(data_root, tmp_path, mode="off")
    assert out.exit_code == 1 and len(out.attempts) == 1 and out.ab is None


def test_run_records_the_build_that_an_ab_can_rebuild(data_root, ab_env, tmp_path):
    out = execute(data_root, tmp_path, mode="off")
    build = out.record["build"]
    assert build["fingerprint"] == builds.source_fingerprint() and build["python"] == sys.executable
    assert builds.reference_for({"build": build}).ref == str(REPO_ROOT.resolve())


def test_fingerprint_follows_the_source(tmp_path):
    t = tree(tmp_path / "t")
    (t / "swavbench" / "x.py").write_text("a = 1\n")
    one = builds.source_fingerprint(t)
    (t / "swavbench" / "x.py").write_text("a = 2\n")
    assert builds.source_fingerprint(t) != one


@pytest.mark.parametrize("status,side,expect", [
    ("regression", None, ("regression", 1, "confirmed by a paired A/B")),
    ("improvement", None, ("regression", 1, "confirmed by a paired A/B")),
    ("no_change", None, ("pass", 0, "not confirmed: a paired A/B")),
    ("inconclusive", None, ("pass", 0, "not confirmed: a paired A/B")),
    ("failed", "cand", ("failed", 2, "the candidate failed during the A/B")),
    ("failed", "ref", None),  # the reference could not run: confirm by a rerun instead
    ("changed", None, None),  # the reference is not the baseline's build: confirm by a rerun instead
])  # fmt: skip
def test_ab_decision_maps_each_ab_outcome_to_the_case_verdict(status, side, expect):
    from swavbench.harness.compare import Check, Verdict

    first = Verdict("regression", [Check("ips_steady", "100", "70", "-30.00%", "±20%", "fail"),
                                   Check("loss", "5.1", "5.1", "0", "exact", "pass")],
                    "steady-state ips 30.0% slower than baseline", "look for a slowdown", 1, CASE)  # fmt: skip
    b = builds.Build("tree", ".", REPO_ROOT, sys.executable)
    v = judge(CASE, session([0.99, 1.0, 1.01, 1.0, 1.0, 0.99]), b, b, Settings())
    v.status, v.failed_side, v.message = status, side, f"{side} (tree) ended during the session"
    got = runner.ab_decision(first, v)
    if expect is None:
        assert got is None
        return
    assert (got.status, got.exit_code) == expect[:2] and got.message.startswith(expect[2]), got.message
    if got.status == "pass":
        ips = next(c for c in got.checks if c.metric == "ips_steady")
        assert ips.verdict == "pass" and f"(A/B: {status.replace('_', ' ')})" in ips.tolerance
