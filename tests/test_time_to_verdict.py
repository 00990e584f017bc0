"""benchmarks/time_to_verdict.py turns recorded spans and the ranks' timeline files into its breakdown."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import time_to_verdict as ttv  # noqa: E402
import ttv_probes  # noqa: E402

MARKS = ("process_start", "entry", "config", "imports", "process_group", "allocator", "loader", "model",
         "first_batch", "first_step", "last_step", "saved", "end", "atexit")


def fake_run(tmp_path: Path) -> tuple:
    log = tmp_path / "run" / "log"
    log.mkdir(parents=True)
    for rank, offset in ((0, 0.0), (1, 0.5)):
        marks = [[name, 100.0 + offset + i, 0.1 * i] for i, name in enumerate(MARKS)]
        (log / f"timeline.{rank}.json").write_text(json.dumps({"rank": rank, "marks": marks}))
    (log / "steps.0.jsonl").write_text("".join(json.dumps({"step": s, "loss": 5.0, "batch_cost": 0.5}) + "\n"
                                               for s in (1, 2, 3, 4)))
    rec = ttv_probes.Recorder()
    rec.instants += [("launcher_popen", 99.0), ("launcher_exit_seen", 114.5)]
    rec.spans += [("run", 98.9, 115.0, None), ("collect_logs", 115.0, 115.25, None), ("_analyse", 115.25, 115.5, None),
                  ("judge", 115.5, 115.75, None), ("build_record", 115.75, 115.875, None),
                  ("write_json_atomic", 115.875, 116.0, None)]
    execute = ("execute", 98.0, 116.0, SimpleNamespace(run_dir=tmp_path / "run"))
    return rec, execute, ("plan_for", 97.0, 98.0, None)


def test_breakdown_rows_come_from_the_spans_and_rank_marks(tmp_path):
    rows = {r[0].strip(): r[1:] for r in ttv.breakdown(*fake_run(tmp_path))}
    assert rows["plan (case, dataset check)"][0] == 1.0
    assert rows["launcher start (-> first rank process)"][0] == 1.0  # popen 99 -> rank 0 started at 100
    assert rows["rank 0 start-up (process -> first step)"][0] == 9.0
    assert abs(rows["rank 0 start-up (process -> first step)"][1] - 1.8) < 1e-9  # CPU of both ranks, 0.9 each
    assert rows["import paddle + trainer"][0] == 1.0
    assert rows["marker to exit"][0] == 5.0  # rank 0's last step at 110, launch.run returned at 115
    assert rows["last rank atexit -> launcher exit seen"][0] == 1.0  # rank 1's atexit at 113.5
    assert rows["exit to verdict"][0] == 1.0 and rows["record (result.json)"][0] == 0.25
    assert rows["total (plan -> verdict)"][0] == 19.0
    assert rows["training steps (sum of rank 0 batch_cost)"][0] == 2.0
    assert rows["fixed (total - training steps)"][0] == 17.0


def test_probes_wrap_the_harness_steps_and_put_them_back():
    import subprocess

    from swavbench.harness import cases, launch, runner

    targets = [(cases, "plan_for"), (runner, "execute"), (launch, "run"), (subprocess, "Popen")] + [
        (runner, name) for name in ttv_probes.HARNESS_STEPS]
    originals = [getattr(module, name) for module, name in targets]
    with ttv_probes.probes(ttv_probes.Recorder()):
        assert all(getattr(module, name) is not o for (module, name), o in zip(targets, originals))
    assert all(getattr(module, name) is o for (module, name), o in zip(targets, originals))
