"""Do the CPU lp / ft cases time enough work a step? Their step time and per-step ips spread, 64 px vs 32 px.

Issue 12: at 32 px crops a CPU linear-probe step took ~40 ms and its per-step ips IQR was 15-40%, too
little work for ips to mean something. The CPU profile now scales the lp / ft transform sizes 224 -> 64 px
(configs/profiles/cpu.yaml). This runs each case's CPU form alternately as the profile has it (64 px) and
with the former 32 px transform lists (as `-o` overrides), in the balanced order A B B A ..., and prints per
run the median step time, the steady-state rate and the per-step IQR, then the medians per variant.
Unjudged runs (a scratch baseline dir); the runs are kept only with --keep.

Usage: python benchmarks/lpft_step_work.py [--pairs N] [--cases swav_lp_1n8c_fp32,swav_ft_1n4c_fp32] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from swavbench.harness import cases, paired, runner

NORMALIZE = {"Normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.228, 0.224, 0.225]}}
TRAIN_32 = [{"RandomResizedCrop": {"size": 32}}, {"RandomHorizontalFlip": None}, {"ToTensor": None}, NORMALIZE]
EVAL_32 = [{"Resize": {"size": 37}}, {"CenterCrop": {"size": 32}}, {"ToTensor": None}, NORMALIZE]
PX32 = (f"DataLoader.Train.dataset.transform={TRAIN_32}", f"DataLoader.Eval.dataset.transform={EVAL_32}")


def one_run(plan: cases.Plan, work: Path) -> dict:
    with open(os.devnull, "w") as quiet:
        out = runner.execute(plan, work / "baselines", work / "reports", stream=quiet, confirm=0)
    s = out.analysis.summary if out.analysis else None
    if s is None or s.steady is None:
        raise SystemExit(f"{plan.case.id}: the run failed: {out.verdict.message}")
    header = (out.analysis.logs[0].header if out.analysis.logs.get(0) else None) or {}
    batch = int(header.get("batch_size_per_device", 8)) * plan.scale.world_size
    return {"step_ms": batch / s.steady.median * 1000, "rate": s.steady.rate, "iqr_pct": s.steady.iqr_pct}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3, help="runs of each variant per case (default 3)")
    ap.add_argument("--cases", default="swav_lp_1n8c_fp32,swav_ft_1n4c_fp32")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lpft-step-work-"))
    rows = []
    try:
        for name in args.cases.split(","):
            base = cases.plan_for(name.strip(), "cpu")
            variants = {"64 px": base, "32 px": cases.with_overrides(base, *PX32)}
            for i, side in enumerate(paired.block_order(2 * args.pairs)):
                label = ("64 px", "32 px")[side]
                r = one_run(variants[label], work)
                rows.append({"case": base.case.id, "variant": label, **r})
                print(f"  {base.case.id} {label} run {i // 2 + 1}: step {r['step_ms']:.1f} ms, rate "
                      f"{r['rate']:.1f} img/s, IQR {r['iqr_pct']:.1f}%", flush=True)  # fmt: skip
        print(f"\n{'case':<20} {'variant':>7} {'runs':>4} {'step ms median':>15} {'IQR % median':>13}")
        for name in dict.fromkeys(r["case"] for r in rows):
            for label in ("32 px", "64 px"):
                sel = [r for r in rows if r["case"] == name and r["variant"] == label]
                print(f"{name:<20} {label:>7} {len(sel):>4} {statistics.median(r['step_ms'] for r in sel):>15.1f} "
                      f"{statistics.median(r['iqr_pct'] for r in sel):>13.1f}")  # fmt: skip
        print(f"load average at the end {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
        print("command: python benchmarks/lpft_step_work.py " + " ".join(sys.argv[1:]))
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
