"""Benchmark: what the input validation (issue 13) costs on large, valid inputs.

    .venv/bin/python benchmarks/input_validation.py [--lines 20000] [--records 40] [--steps 2000] [--reps 5]

Times (median of --reps) `parse_log_file` on a worker log of --lines train lines (each followed by its
Paddle 3.x copy, as real 3.x logs are), and `History.import_runs` of --records result.json files with
--steps per-step records each. Run it from this checkout and from one without the validation (the script
imports the swavbench beside it) and alternate the two.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swavbench.harness.logparse import parse_log_file  # noqa: E402
from swavbench.store.history import History  # noqa: E402

CASE = "swav_pt_1n8c_fp16o1"


def write_log(path: Path, lines: int) -> None:
    out = []
    for i in range(lines):
        body = (f"[Train][Epoch 1/400][Iter: {i}/{lines}] lr: 0.600000, loss: {8.4 - i * 1e-5:.5f}, batch_cost: "
                f"1.2{i % 10}000, reader_cost: 0.01230, ips: {963.27 + i % 7:.5f} images/sec, max mem: 8.37 GB, "
                "eta: 6 days, 9:27:43")
        out.append(f"[2026/11/28 19:37:27] passl INFO: {body}")
        out.append(f"[2026-11-28 19:37:27,017] [    INFO] logger.py:80 - {body}")
    path.write_text("\n".join(out) + "\n")


def write_runs(root: Path, records: int, steps: int) -> None:
    for n in range(records):
        run_id = f"20261128T{n:06d}Z-{CASE}-{n:04x}"
        rec = {
            "schema_version": 1, "run_id": run_id, "case": CASE, "profile": "cpu-intel-xeon-2t", "status": "pass",
            "exit_code": 0, "message": "all checks pass", "started_utc": f"2026-11-28T00:{n % 60:02d}:00Z",
            "metrics": {"marker": "20/78", "loss": "8.31987", "ips": 12.4, "max_mem": "0.21"},
            "checks": [{"metric": "loss", "baseline": "8.31987", "measured": "8.31987", "diff": "0",
                        "tolerance": "exact", "verdict": "pass"}],
            "ranks": [{"rank": r, "exit_code": 0, "last_step": steps, "reached_marker": True, "log_tail": ["ok"]}
                      for r in range(8)],
            "steps": [{"step": s, "epoch": 1, "iter": s - 1, "loss": 8.4 - s * 1e-4, "lr": 0.6, "batch_cost": 1.29,
                       "reader_cost": 0.012, "rank": 0} for s in range(1, steps + 1)],
        }  # fmt: skip
        (root / run_id).mkdir(parents=True)
        (root / run_id / "result.json").write_text(json.dumps(rec))


def timed(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--records", type=int, default=40)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_log(tmp / "workerlog.0", args.lines)
        write_runs(tmp / "runs", args.records, args.steps)
        parse_s = timed(lambda: parse_log_file(tmp / "workerlog.0"), args.reps)
        counter = iter(range(10**6))

        def import_all() -> None:
            with History(tmp / f"h{next(counter)}.sqlite") as h:
                assert len(h.import_runs(tmp / "runs").imported) == args.records

        import_s = timed(import_all, args.reps)
    print(f"command: {' '.join(sys.argv)}  (swavbench from {Path(__file__).resolve().parents[1]})")
    print(f"parse_log_file, {args.lines} train lines + their Paddle copies: {parse_s * 1000:.0f} ms "
          f"({parse_s / args.lines * 1e6:.1f} us per line)")
    print(f"history import, {args.records} records x {args.steps} steps: {import_s * 1000:.0f} ms "
          f"({import_s / args.records * 1000:.1f} ms per record)")


if __name__ == "__main__":
    main()
