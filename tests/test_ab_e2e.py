"""`swavbench ab` end to end with the real trainer on CPU: each side trains its own tree's code and config.

Marked e2e (deselected by default; `pytest -m e2e`, and `make test` runs them): two sessions of the 8-rank
pre-train case, about a minute each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swavbench.harness import procs
from swavbench.harness.builds import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CASE = "swav_pt_1n8c_fp16o1"
CONFIG = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"


def ab(*args: str, reports: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "swavbench.cli", "ab", CASE, "--profile", "cpu", "--reports-dir", str(reports), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)


def copy_tree(dest: Path) -> Path:
    shutil.copytree(REPO_ROOT / "swavbench", dest / "swavbench", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_a_candidate_tree_with_the_config_lr_x1_0001_is_changed_at_step_2(tmp_path):
    cand = copy_tree(tmp_path / "cand")
    cfg = cand / "swavbench" / "resources" / "configs" / f"{CONFIG}.yaml"
    cfg.write_text(cfg.read_text().replace("learning_rate: 0.6\n", "learning_rate: 0.60006\n", 1))
    out = ab("--ref", str(REPO_ROOT), "--cand", str(cand), "--max-pairs", "6", reports=tmp_path / "r")
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    assert "CHANGED: the candidate changes the loss: losses differ first at step 2 on rank 0" in out.stdout
    assert not [p for p in procs.find_env("PYTHONPATH", str(cand))]


def test_the_same_code_on_both_sides_is_no_change_at_a_wide_band(tmp_path):
    out = ab("--ref", str(copy_tree(tmp_path / "ref")), "--band", "50", reports=tmp_path / "r")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    rec = json.loads(next((tmp_path / "r" / "runs").glob("*/result.json")).read_text())
    assert rec["ab"]["status"] == "no_change" and rec["ab"]["loss"].startswith("identical for")
    assert all(p["ref_rate"] > 0 and p["cand_rate"] > 0 for p in rec["ab"]["pairs"])
