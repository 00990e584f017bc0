"""How good is the paired A/B gate (`swavbench ab`, issue 12)? False alarms, catches of slowdowns and of a loss change.

On this machine, one case's CPU form (default swav_pt_1n8c_fp16o1), reference vs candidate as `swavbench ab`
runs them (two live jobs taking turns in blocks of steps, balanced order; swavbench.harness.absession) and
judged as it judges (swavbench.harness.paired: exact Wilcoxon interval of cand/ref, band +-5%):
  clean   the same code on both sides              -> flagged (regression/improvement/changed): target 0/N
  slow10  the candidate 10% slower, as code         -> regression: target >= N-1 of N
  slow5   the candidate 5% slower, as code          -> measured and reported
  lr      the candidate's PASSL config lr x 1.0001  -> changed (the loss differs): target N/N
The slowdown goes into the candidate only: a copy of this working tree whose training loop spends a fixed
extra CPU time in every rank after every step (swavbench/train/loop.py patched in the copy; CPU time, so a
paused job does not spend it, and on a busy machine it slows down like the rest of the step), calibrated
from the CPU time a rank spends on a clean step (measured in the clean scenario, /proc of its ranks) so
that the candidate's step does 1/0.9 or 1/0.95 of the work: 10% / 5% slower. No competing process: that
would slow both sides. (A sleep instead of CPU work was tried: on this shared machine its
ranks got the CPU back afterwards, and a 50 ms sleep a step measured -7.9% instead of -11.5%.)

Trials: a timing scenario's N trials are windows cut from --sessions long interleaved sessions (each a
fresh launch of both sides): a window is what one `swavbench ab` would have judged, the pairs from the end
of the previous window until its sequential rule decides (looks every 2 pairs from 6 on) or --max-pairs; the
windows of a session share no pair. The lr scenario runs N separate sessions (each decides "changed" at its
first round). The wall time of one A/B verdict is the start-up of a session plus its window's blocks.

Usage: python benchmarks/verdict_quality.py [--trials N] [--sessions S] [--band PCT] [--max-pairs P]
       [--block-steps K] [--case CASE] [--scenarios clean,slow10,slow5,lr] [--json OUT] [--keep]
Full measurement (the issue's table, ~45-60 min on the 2-core VM, run it on a quiet machine):
  python benchmarks/verdict_quality.py --trials 20 --json reports/verdict_quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from swavbench.harness import cases, paired
from swavbench.harness.ab import run_ab
from swavbench.harness.abjobs import sigterm_as_exit
from swavbench.harness.absession import Session, Settings, make_jobs, run_session
from swavbench.harness.builds import REPO_ROOT, checkout

LOOP = Path("swavbench") / "train" / "loop.py"
ANCHOR = "            loss_value = float(loss)\n"
COST = '''
def _verdict_quality_cost(cpu_s: float = {cpu_s!r}) -> None:
    """benchmarks/verdict_quality.py: a fixed extra cost per step, cpu_s of this rank's CPU time (a stopped
    job accrues none, so a pause between blocks does not eat it)."""
    end = time.process_time() + cpu_s
    while time.process_time() < end:
        pass
'''
FLAGGED = {"clean": ("regression", "improvement", "changed"), "slow10": ("regression",),
           "slow5": ("regression",), "lr": ("changed",)}  # fmt: skip


def snapshot(dest: Path) -> Path:
    """A copy of this working tree's swavbench package (what `swavbench ab --cand DIR` imports)."""
    shutil.copytree(REPO_ROOT / "swavbench", dest / "swavbench", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def inject_cost(tree: Path, cpu_s: float) -> None:
    """Make every rank of the tree's training loop spend `cpu_s` more CPU time a step."""
    path = tree / LOOP
    text = path.read_text()
    if ANCHOR not in text or "\n\ndef train(" not in text:
        raise SystemExit(f"{path}: the line {ANCHOR.strip()!r} to put the cost after is gone; update this benchmark")
    text = text.replace(ANCHOR, ANCHOR + "            _verdict_quality_cost()\n", 1)
    text = text.replace("\n\ndef train(", COST.format(cpu_s=cpu_s) + "\n\ndef train(", 1)
    path.write_text(text)


def cost_for(rank_cpu_s: float, slower: float) -> float:
    """CPU seconds a rank must add a step to make a CPU-bound step that costs each rank `rank_cpu_s` of CPU
    `slower` (0.10) slower: rank_cpu_s x slower / (1 - slower). (CPU, not wall time: on a shared machine a
    rank gets a fraction of a core, and the wall time of a step says nothing about its work.)"""
    return rank_cpu_s * slower / (1 - slower)


def bump_lr(tree: Path, config: str, factor: float) -> str:
    """Multiply the first `learning_rate:` of the tree's copy of the PASSL config by `factor`."""
    path = tree / "swavbench" / "resources" / "configs" / f"{config}.yaml"
    text = path.read_text()
    m = re.search(r"(\n\s+learning_rate:\s*)([0-9.eE+-]+)", text)
    if not m:
        raise SystemExit(f"{path}: no learning_rate line to change")
    new = float(m.group(2)) * factor
    path.write_text(text[: m.start(2)] + repr(new) + text[m.end(2):])
    return f"{m.group(2)} -> {new!r}"


def windows(ratios: list[float], band: float, max_pairs: int) -> list[paired.Decision]:
    """The complete windows of a pair stream, in order: each one `swavbench ab`'s sequential verdict."""
    out, start = [], 0
    while start < len(ratios):
        d = paired.sequential(ratios[start:], band, max_pairs)
        if d.status == paired.UNDECIDED:  # the stream ended inside this window
            break
        out.append(d)
        start += d.n
    return out


def window_walls(s: Session, decisions: list[paired.Decision]) -> list[float]:
    """Seconds of blocks each window took (2 blocks a pair)."""
    walls, start = [], 0
    for d in decisions:
        walls.append(sum(b.wall_s for b in s.blocks[2 * start: 2 * (start + d.n)]))
        start += d.n
    return walls


class Quiet:
    """A stream that shows one line in `every` (the session prints one per round)."""

    def __init__(self, every: int = 10) -> None:
        self.every, self.n = every, 0

    def write(self, text: str) -> None:
        self.n += 1
        if self.n % self.every == 0:
            sys.stdout.write("    " + text)

    def flush(self) -> None:
        sys.stdout.flush()


def timing_scenario(name: str, plan: cases.Plan, ref: Path, cand: Path, args, work: Path) -> dict:
    """N windows from `args.sessions` long sessions of ref vs cand."""
    per = [args.trials // args.sessions + (i < args.trials % args.sessions) for i in range(args.sessions)]
    rows, t0, steps = [], time.monotonic(), []
    for k, need in enumerate(n for n in per if n):
        cap = need * args.max_pairs
        settings = Settings(band_pct=args.band, block_steps=args.block_steps, max_pairs=cap, min_pairs=cap + 1)
        with checkout(str(ref)) as rb, checkout(str(cand)) as cb:
            jobs = make_jobs(plan, rb, cb, settings, work / f"{name}-{k}")
            s = run_session(*jobs, settings, Quiet(), f"{name} session {k + 1}",
                            until=lambda s, need=need: len(windows(s.ratios, args.band, args.max_pairs)) >= need)
        if s.failure is not None:
            raise SystemExit(f"{name} session {k + 1} failed: {s.failure}")
        if s.loss is not None and s.loss.difference is not None:  # a timing scenario must not change the loss
            raise SystemExit(f"{name} session {k + 1}: {s.loss.text()}")
        decisions = windows(s.ratios, args.band, args.max_pairs)[:need]
        ranks = plan.world_size  # all on this machine (CPU form)
        steps += [b.cpu_s / ranks / len(b.ips) for b in s.blocks if b.side == 1 and b.ips and b.cpu_s > 0]
        walls = window_walls(s, decisions)
        median_pct = round((statistics.median(s.ratios) - 1) * 100, 3) if s.ratios else None
        for d, wall in zip(decisions, walls):
            rows.append({"session": k + 1, **d.as_dict(), "blocks_s": round(wall, 2), "session_median_pct": median_pct,
                         "verdict_wall_s": round(s.startup_s + wall, 2), "startup_s": round(s.startup_s, 2)})
        print(f"  {name} session {k + 1}: {len(decisions)} windows from {len(s.ratios)} pairs, median pair "
              f"{median_pct:+.2f}%, start-up {s.startup_s:.0f} s, verdicts {[d.status for d in decisions]}",
              flush=True)  # fmt: skip
        shutil.rmtree(work / f"{name}-{k}", ignore_errors=True)
    return {"scenario": name, "trials": rows, "wall_s": time.monotonic() - t0,
            "rank_cpu_s": statistics.median(steps) if steps else None}  # CPU a rank spends a step (median)


def lr_scenario(plan: cases.Plan, ref: Path, cand: Path, args, work: Path) -> dict:
    """N separate sessions of ref vs the candidate with the config's lr x 1.0001: each should say changed."""
    rows, t0 = [], time.monotonic()
    settings = Settings(band_pct=args.band, block_steps=args.block_steps, max_pairs=args.max_pairs)
    for i in range(args.trials):
        t = time.monotonic()
        with open(os.devnull, "w") as quiet, checkout(str(ref)) as rb, checkout(str(cand)) as cb:
            v = run_ab(plan, rb, cb, settings, work / f"lr-{i}", quiet)
        rows.append({"status": v.status, "pairs": len(v.pairs), "message": v.message[:200],
                     "verdict_wall_s": round(time.monotonic() - t, 2), "startup_s": round(v.startup_s, 2)})
        print(f"  lr {i + 1}/{args.trials}: {v.status} ({v.message[:90]})", flush=True)
        shutil.rmtree(work / f"lr-{i}", ignore_errors=True)
    return {"scenario": "lr", "trials": rows, "wall_s": time.monotonic() - t0}


def table(results: list[dict], n: int) -> str:
    want = {"clean": f"0/{n}", "slow10": f">= {max(n - 1, 0)}/{n}", "slow5": "measured", "lr": f"{n}/{n}"}
    head = (f"{'scenario':<8} {'flagged':>8} {'target':>9} {'no_change':>9} {'regress':>7} {'improve':>7} "
            f"{'changed':>7} {'inconcl':>7} {'pairs med':>9} {'cand/ref % median (min..max)':>30} "
            f"{'verdict wall s med (max)':>25}")  # fmt: skip
    lines = [head]
    for r in results:
        t = r["trials"]
        count = {k: sum(x["status"] == k for x in t) for k in
                 ("no_change", "regression", "improvement", "changed", "inconclusive")}  # fmt: skip
        flagged = sum(x["status"] in FLAGGED[r["scenario"]] for x in t)
        ests = [(x["ratio"] - 1) * 100 for x in t if x.get("ratio") is not None]
        span = f"{statistics.median(ests):+.2f} ({min(ests):+.2f}..{max(ests):+.2f})" if ests else "-"
        walls = [x["verdict_wall_s"] for x in t]
        pairs = statistics.median(x["pairs"] for x in t) if t else 0
        lines.append(f"{r['scenario']:<8} {flagged:>4}/{len(t):<3} {want[r['scenario']]:>9} "
                     f"{count['no_change']:>9} {count['regression']:>7} {count['improvement']:>7} "
                     f"{count['changed']:>7} {count['inconclusive']:>7} {pairs:>9g} {span:>30} "
                     f"{statistics.median(walls):>17.0f} ({max(walls):.0f})")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20, help="trials per scenario (default 20)")
    ap.add_argument("--sessions", type=int, default=4, help="long sessions a timing scenario's windows come from")
    ap.add_argument("--case", default="swav_pt_1n8c_fp16o1")
    ap.add_argument("--band", type=float, default=5.0, help="+-%% of the gate (default 5, swavbench ab's)")
    ap.add_argument("--max-pairs", type=int, default=Settings().max_pairs, help="a verdict's maximum pairs")
    ap.add_argument("--block-steps", type=int, default=Settings().block_steps)
    ap.add_argument("--scenarios", default="clean,slow10,slow5,lr", help="comma list (clean runs first)")
    ap.add_argument("--json", type=Path, default=None, help="also write every trial here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch trees")
    args = ap.parse_args()
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if {"slow10", "slow5"} & set(names) and "clean" not in names:
        names.insert(0, "clean")  # the slowdown is calibrated from the clean step time
    t0, work = time.monotonic(), Path(tempfile.mkdtemp(prefix="verdict-quality-"))
    try:
        plan = cases.plan_for(args.case, "cpu")
        ref = snapshot(work / "ref")
        results, rank_cpu_s, notes = [], None, []
        for name in names:
            print(f"{name}:", flush=True)
            cand = snapshot(work / f"cand-{name}")
            if name in ("slow10", "slow5"):
                slow = 0.10 if name == "slow10" else 0.05
                cpu_s = cost_for(rank_cpu_s, slow)
                inject_cost(cand, cpu_s)
                notes.append(f"{name}: {cpu_s * 1000:.1f} ms more CPU a rank a step (a clean step: "
                             f"{rank_cpu_s * 1000:.1f} ms CPU a rank -> cand/ref {-slow * 100:+.0f}%)")  # fmt: skip
            if name == "lr":
                notes.append(f"lr: {plan.config} learning_rate {bump_lr(cand, plan.config, 1.0001)}")
                results.append(lr_scenario(plan, ref, cand, args, work))
                continue
            res = timing_scenario(name, plan, ref, cand, args, work)
            if name == "clean":
                rank_cpu_s = res["rank_cpu_s"]
            results.append(res)
        wall = time.monotonic() - t0
        print()
        print(table(results, args.trials))
        for note in notes:
            print(note)
        print(f"band ±{args.band:g}%, blocks of {args.block_steps} steps, at most {args.max_pairs} pairs a verdict, "
              f"{args.sessions} sessions a timing scenario; wall time {wall / 60:.1f} min; load average at the end "
              f"{os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")  # fmt: skip
        print("command: python benchmarks/verdict_quality.py " + " ".join(sys.argv[1:]))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "wall_s": wall,
                                             "notes": notes, "results": results}, indent=2))  # fmt: skip
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    with sigterm_as_exit():  # SIGTERM: every session stops its jobs, the scratch trees are removed
        sys.exit(main())
