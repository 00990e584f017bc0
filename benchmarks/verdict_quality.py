"""How good are the verdicts? False alarms on clean reruns, catches of a real slowdown and of a loss change.

On this machine, the CPU profile of one case (default swav_pt_1n8c_fp16o1), all against ONE baseline
recorded at the start as a nightly machine would record it (`update-baseline --repeats 5`: the median of 5
runs; in a scratch baseline dir, the checked-in baselines are never touched), judged with a +-5% band
(check_result's; --band):
  1. clean:    N identical reruns                  -> regressions are false alarms (target 0/N)
  2. slowdown: N runs while a competing CPU load runs in a separate process (busy-loop workers with a
               controlled duty cycle; default 0.4: -12% on this 2-core machine) -> flagged (target >= N-1)
  3. loss:     N runs with the learning rate x1.0001 -> flagged on the loss (target N/N)
Each run is judged as `swavbench run` judges it: steady-state ips in the band, one confirmation rerun
after a pause when ips alone is outside (--confirm, --confirm-delay; a regression needs both runs outside),
loss exact. (The table of 2026-11-28 in docs/verdicts.md predates the pause and the both-runs rule.)
Prints the table, the ips diffs of the first attempts (the slowdown row's median diff shows the slowdown
actually injected: tune --duty/--load-procs to ~-10%)
and the wall time. Run it on a quiet machine: other jobs' load is noise on top of what is measured.

Usage: python benchmarks/verdict_quality.py [--repeats N] [--band PCT] [--baseline-repeats R] [--duty D]
       [--load-procs K] [--confirm C] [--confirm-delay S] [--case CASE] [--scenarios a,b] [--probe SECONDS]
       [--json OUT] [--keep]
--probe: a machine-speed probe (swavbench/harness/speedprobe.py) before and after each run, under the same load;
its level, spread and correlation with the run's ips are printed after the table.
Full run (the issue's table): python benchmarks/verdict_quality.py --repeats 20 --json reports/verdict_quality.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from swavbench.cli import main as cli
from swavbench.harness import cases, runner, speedprobe
from swavbench.harness.baselines import load_baseline
from swavbench.train.config import get, load_config

LR_KEY = "Optimizer.LRScheduler.learning_rate"
BUSY = """
import sys, time
duty, period = float(sys.argv[1]), 0.02
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < duty * period:
        pass
    if duty < 1:
        time.sleep((1 - duty) * period)
"""


class CpuLoad:
    """K busy-loop processes at duty cycle D (a competing job), started and always stopped by us."""

    def __init__(self, procs: int, duty: float) -> None:
        self.procs, self.duty = procs, duty
        self.children: list[subprocess.Popen] = []

    def __enter__(self) -> CpuLoad:
        for _ in range(self.procs):
            self.children.append(subprocess.Popen([sys.executable, "-c", BUSY, str(self.duty)]))
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.children:
            p.send_signal(signal.SIGTERM)
        for p in self.children:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.children = []


def judged_diff(out: runner.Outcome) -> Optional[float]:
    """The ips diff % of the check that judged the first attempt (steady-state ips, else mean of lines)."""
    first = out.attempts[0].verdict if out.attempts else out.verdict
    for metric in ("ips_steady", "ips"):
        for c in first.checks:
            if c.metric == metric and c.verdict != "info" and c.diff.endswith("%"):
                return float(c.diff.rstrip("%"))
    return None


def record_baseline(case: str, bdir: Path, rdir: Path, band: Optional[float], repeats: int) -> Path:
    """One fresh baseline from the median of `repeats` runs; the ips band set to `band` when given."""
    band_args = ["--ips-band", str(band)] if band is not None else []
    if cli(["update-baseline", case, "--profile", "cpu", "--repeats", str(repeats), "--baseline-dir", str(bdir),
            "--reports-dir", str(rdir), *band_args]):  # fmt: skip
        raise SystemExit("could not record the baseline")
    return next(bdir.glob(f"*/{case}.json"))


def steady_rate(attempt: runner.Attempt) -> Optional[float]:
    summary = attempt.analysis.summary if attempt.analysis else None
    return summary.steady.rate if summary is not None and summary.steady is not None else None


def scenario(name: str, plan: cases.Plan, n: int, bdir: Path, rdir: Path, confirm: int, load: Optional[CpuLoad],
             delay: float = 0.0, probe_s: float = 0.0):
    """N judged runs; returns the row of the table and the per-run details."""
    rows, t0 = [], time.monotonic()
    for i in range(n):
        with open(os.devnull, "w") as quiet, load if load is not None else contextlib.nullcontext():
            before = speedprobe.probe(probe_s) if probe_s else None  # under the same load as the run
            out = runner.execute(plan, bdir, rdir, stream=quiet, confirm=confirm, confirm_delay_s=delay)
            after = speedprobe.probe(probe_s) if probe_s else None
        failed = [c.metric for c in out.verdict.checks if c.verdict == "fail"]
        rows.append(
            {
                "run": i + 1,
                "status": out.verdict.status,
                "failed": failed,
                "attempts": len(out.attempts),
                "ips_diff_pct": judged_diff(out),
                "steady_rates": [steady_rate(a) for a in out.attempts],
                "probe_before": before,
                "probe_after": after,
                "load1": os.getloadavg()[0],
            }
        )
        print(f"  {name} {i + 1}/{n}: {out.verdict.status} {failed or ''} diff {rows[-1]['ips_diff_pct']}% "
              f"attempts {len(out.attempts)} load {rows[-1]['load1']:.1f}", flush=True)  # fmt: skip
    flagged = sum(r["status"] != "pass" for r in rows)
    return {"scenario": name, "runs": n, "flagged": flagged, "reruns": sum(r["attempts"] - 1 for r in rows),
            "wall_s": time.monotonic() - t0, "details": rows}  # fmt: skip


def table(results: list[dict], n: int) -> str:
    """The issue's table; `slower/faster` splits the flagged runs by the side of the first attempt's ips."""
    want = {"clean": f"0/{n} (false alarms)", "slowdown": f">= {max(n - 1, 0)}/{n}", "loss": f"{n}/{n}"}
    lines = [f"{'scenario':<10} {'flagged':>8} {'slower/faster':>13} {'target':>18} {'reruns':>7} "
             f"{'ips diff % median (min..max)':>30} {'wall':>7}"]  # fmt: skip
    for r in results:
        diffs = [d["ips_diff_pct"] for d in r["details"] if d["ips_diff_pct"] is not None]
        span = f"{statistics.median(diffs):+.2f} ({min(diffs):+.2f}..{max(diffs):+.2f})" if diffs else "-"
        flagged = [d for d in r["details"] if d["status"] != "pass"]
        slower = sum(1 for d in flagged if (d["ips_diff_pct"] or 0) < 0)
        sides = f"{slower}/{len(flagged) - slower}"
        lines.append(f"{r['scenario']:<10} {r['flagged']:>4}/{r['runs']:<3} {sides:>13} {want[r['scenario']]:>18} "
                     f"{r['reruns']:>7} {span:>30} {r['wall_s']:>6.0f}s")  # fmt: skip
    return "\n".join(lines)


def probe_table(results: list[dict]) -> str:
    """Machine-speed probe (--probe) per scenario: level, spread, and how well it tracks the run's ips."""
    lines = [f"{'scenario':<10} {'probe':>7} {'mean /CPU-s':>12} {'stdev %':>8} {'corr with ips':>14} "
             f"{'ips stdev %':>12}"]  # fmt: skip
    for r in results:
        rows = [d for d in r["details"] if d.get("probe_before") and d["steady_rates"] and d["steady_rates"][0]]
        if len(rows) < 3:
            continue
        rate = [d["steady_rates"][0] for d in rows]
        for k in speedprobe.WORKLOADS:
            level = [(d["probe_before"][k] + d["probe_after"][k]) / 2 for d in rows]
            lines.append(f"{r['scenario']:<10} {k:>7} {statistics.mean(level):>12.0f} "
                         f"{statistics.stdev(level) / statistics.mean(level) * 100:>8.1f} "
                         f"{statistics.correlation(level, rate):>14.2f} "
                         f"{statistics.stdev(rate) / statistics.mean(rate) * 100:>12.1f}")  # fmt: skip
    return "\n".join(lines) if len(lines) > 1 else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20, help="runs per scenario (default 20)")
    ap.add_argument("--case", default="swav_pt_1n8c_fp16o1")
    ap.add_argument("--band", type=float, default=5.0, help="ips band %% to judge with (default 5; 0: the case's)")
    ap.add_argument("--baseline-repeats", type=int, default=5, help="runs the baseline is the median of (default 5)")
    ap.add_argument("--confirm", type=int, default=runner.DEFAULT_CONFIRM, help="reruns when ips alone fails")
    ap.add_argument("--confirm-delay", type=float, default=runner.DEFAULT_CONFIRM_DELAY_S,
                    help="seconds before a confirmation rerun (default: the CLI's)")  # fmt: skip
    ap.add_argument("--duty", type=float, default=0.4, help="busy-loop duty cycle (0..1; 0.4: ~-12%% here)")
    ap.add_argument("--load-procs", type=int, default=1, help="competing busy-loop processes (default 1)")
    ap.add_argument("--scenarios", default="clean,slowdown,loss", help="comma list (default all three)")
    ap.add_argument("--probe", type=float, default=0.0,
                    help="seconds per workload of a machine-speed probe before and after each run (0: none)")
    ap.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch baselines and run records")
    args = ap.parse_args()
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="verdict-quality-"))
    bdir, rdir = work / "baselines", work / "reports"
    try:
        plan = cases.plan_for(args.case, "cpu")
        base_lr = float(get(load_config(plan.config, profile="cpu"), LR_KEY))
        path = record_baseline(args.case, bdir, rdir, args.band or None, args.baseline_repeats)
        b = load_baseline(path)
        noise = b.provenance.get("calibration", {}).get("stdev_pct")
        print(f"baseline {path}: ips {b.metrics['ips']:.2f} (steady {b.metrics.get('ips_steady')}, run-to-run "
              f"stdev {noise}% over {args.baseline_repeats} runs), band ±{b.tolerances['ips_pct']:g}%, "
              f"loss {b.metrics['loss']}, confirm {args.confirm}", flush=True)  # fmt: skip
        plans = {
            "clean": (plan, None),
            "slowdown": (plan, CpuLoad(args.load_procs, args.duty)),
            "loss": (cases.with_overrides(plan, f"{LR_KEY}={base_lr * 1.0001!r}"), None),
        }
        results = []
        for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
            p, load = plans[name]
            results.append(
                scenario(name, p, args.repeats, bdir, rdir, args.confirm, load, args.confirm_delay, args.probe)
            )
        wall = time.monotonic() - t0
        print()
        print(table(results, args.repeats))
        if args.probe:
            print()
            print(probe_table(results))
        print(f"wall time {wall / 60:.1f} min for {sum(r['runs'] + r['reruns'] for r in results) + 1} case runs "
              f"(load average at the end {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs)")  # fmt: skip
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "wall_s": wall,
                                             "results": results}, indent=2))  # fmt: skip
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
