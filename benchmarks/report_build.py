"""Benchmark: build the HTML report for a synthetic history of 100 runs x 4 cases.

    .venv/bin/python benchmarks/report_build.py [--runs 100] [--cases 4] [--steps 300] [--keep DIR]

Writes result.json folders into a temp dir, imports them, builds the report, and prints the import and
build times and the HTML size. Target: build < 10 s.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swavbench.report import build_report  # noqa: E402
from swavbench.store.history import History  # noqa: E402

CASES = [  # (case, world size, batch per device, seconds per step)
    ("swav_pt_1n8c_fp16o1", 8, 32, 2.6),
    ("swav_pt_1n1c_fp32", 1, 32, 0.52),
    ("swav_pt_1n2c_fp32", 2, 32, 0.9),
    ("swav_pt_2n16c_fp16o1", 16, 32, 3.1),
    ("swav_lincls_1n8c_fp32", 8, 64, 0.4),
    ("swav_ft_1n8c_fp32", 8, 64, 0.5),
]
PROFILE = "cpu-intel-xeon-2t"


def curve(step: int) -> float:
    """A deterministic SwAV-like loss curve (CPU runs repeat exactly)."""
    return 8.4 - 0.9 * (1 - math.exp(-step / 60)) + 0.04 * math.sin(step * 0.7)


def synth_record(case: str, world: int, batch: int, cost: float, i: int, n_steps: int, rnd: random.Random) -> dict:
    """One realistic run record: mostly passes, a few regressions and crashes, a baseline update midway."""
    start = datetime(2026, 8, 1, 20, 0, tzinfo=timezone.utc) + timedelta(days=i)
    run_id = f"{start:%Y%m%dT%H%M%SZ}-{case}-{i:04x}"
    era = 0 if i < 50 else 1  # baseline updated at run 50 (faster code)
    speed = (1.0 if era == 0 else 0.93) * (1.12 if i % 17 == 16 else 1.0)
    crashed = i % 23 == 22
    steps = []
    for s in range(n_steps if not crashed else n_steps // 3):
        loss = curve(s)
        bc = cost * speed * (3.0 if s == 0 else rnd.uniform(0.96, 1.05))
        rc = (0.3 if s == 0 else 0.012) * rnd.uniform(0.8, 1.3)
        steps.append({"step": s + 1, "epoch": 1, "iter": s, "loss": round(loss, 5), "lr": 0.6,
                      "batch_cost": round(bc, 5), "reader_cost": round(rc, 5)})  # fmt: skip
    ips = round(batch * world / (cost * speed), 5)
    base_ips = round(batch * world / (cost * (1.0 if era == 0 else 0.93)), 5)
    loss = f"{curve(n_steps - 1):.5f}"  # the marker's loss of a full run (baseline and passing runs agree)
    status = "failed" if crashed else ("regression" if i % 17 == 16 else ("no_baseline" if i == 0 else "pass"))
    base_i = 0 if era == 0 else 50
    base_run = f"{datetime(2026, 8, 1, 20, 0) + timedelta(days=base_i):%Y%m%dT%H%M%SZ}-{case}-{base_i:04x}"
    tail = ["Traceback (most recent call last):", "RuntimeError: <script>alert(1)</script> out of memory"] * 10
    return {
        "schema_version": 1, "run_id": run_id, "case": case, "config": f"swav_resnet50_224_{case}", "profile": PROFILE,
        "device_profile": "cpu", "started_utc": f"{start:%Y-%m-%dT%H:%M:%SZ}", "duration_s": 60.0,
        "commit": f"{rnd.getrandbits(28):07x}", "paddle_version": "3.3.1", "command": ["python", "-m", "swavbench"],
        "environment": {"device": "cpu", "world_size": world, "nnodes": 1, "nproc_per_node": world,
                        "precision_requested": "fp16 O1" if "fp16" in case else "fp32", "precision_effective": "fp32"},
        "status": status, "exit_code": {"pass": 0, "regression": 1, "failed": 2}.get(status, 3),
        "message": f"{status} run {i}", "advice": "",
        "metrics": {"marker": f"{n_steps - 1}/2599", "loss": None if crashed else loss,
                    "ips": None if crashed else ips, "max_mem": None if crashed else "0.84"},
        "baseline": None if i == 0 else {"metrics": {"loss": loss, "ips": base_ips, "max_mem": "0.84"},
                                         "tolerances": {"ips_pct": 5.0}, "provenance": {"run_id": base_run}},
        "checks": [] if crashed or i == 0 else [
            {"metric": "ips", "baseline": str(base_ips), "measured": str(ips),
             "diff": f"{(ips / base_ips - 1) * 100:+.2f}%", "tolerance": "-5.0%",
             "verdict": "fail" if status == "regression" else "pass"}],
        "ranks": [{"rank": r, "exit_code": 1 if crashed and r == 3 else 0, "last_step": len(steps),
                   "log_tail": tail if crashed and r == 3 else ["done"]} for r in range(world)],
        "steps": steps,
        "failure": {"kind": "rank_died", "rank": 3, "message": "rank 3 died", "log_tail": tail} if crashed else None,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="runs per case")
    parser.add_argument("--cases", type=int, default=4, choices=range(1, len(CASES) + 1))
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--keep", metavar="DIR", help="copy the report (and its database) to DIR")
    args = parser.parse_args()
    rnd = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="swavbench-bench-") as tmp:
        runs_dir = Path(tmp) / "runs"
        for case, world, batch, cost in CASES[: args.cases]:
            for i in range(args.runs):
                rec = synth_record(case, world, batch, cost, i, args.steps, rnd)
                (runs_dir / rec["run_id"]).mkdir(parents=True)
                (runs_dir / rec["run_id"] / "result.json").write_text(json.dumps(rec))
        db, out = Path(tmp) / "history.sqlite", Path(tmp) / "index.html"
        t0 = time.perf_counter()
        with History(db) as history:
            summary = history.import_runs(runs_dir)
            t1 = time.perf_counter()
            build_report(history, out)
            t2 = time.perf_counter()
        size = out.stat().st_size
        db_mb = db.stat().st_size / 1e6
        print(f"history: {summary.line()}, {args.steps} steps/run, import {t1 - t0:.2f} s, db {db_mb:.1f} MB")
        print(f"report: {args.runs} runs x {args.cases} cases built in {t2 - t1:.2f} s (target < 10 s)")
        print(f"report size: {size / 1e6:.2f} MB ({size} bytes)")
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(out, Path(args.keep) / "index.html")
            shutil.copy(db, Path(args.keep) / "history.sqlite")
    return 0 if t2 - t1 < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
