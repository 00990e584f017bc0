"""A/B sessions: the reference and the candidate build run as two live jobs that take turns.

`make_jobs` + `run_session` launch the case once per side (swavbench.harness.launch; each side's ranks
import its own tree: swavbench.harness.builds), let both pass their warm-up (paused as each gets there),
then resume one job at a time for a block of steps while the other is stopped (SIGSTOP on its ranks), in
the balanced order A B B A A B B A ... (swavbench.harness.paired). The step that was running when a job
was stopped finishes after its resume: the pause (timed here) is taken out of its cost (`active_cost`).
After every round (4 blocks = 2 pairs) the session judges the pair ratios and compares every rank's losses
so far exactly; it stops as soon as the verdict is decisive or the losses differ, or at `max_pairs`. Both
jobs are then stopped through their launchers (no process is left) and their losses compared once more.

Why live jobs and not one launch per block: a launch costs ~15-30 s of start-up on this 2-core machine
against ~0.3 s a step, so alternating whole runs buys one pair a minute; blocks of a few steps inside two
live jobs give a pair every ~2 s, close enough in time that the machine's slow spells (seconds to minutes)
hit both sides of a pair alike.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, TextIO

from swavbench.harness import paired
from swavbench.harness.abjobs import (
    Job,
    SessionFailed,
    compare_memory,
    rank_steps,
    signals_masked,
    sigterm_as_exit,
    wait_steps,
    warm_up,
)
from swavbench.harness.builds import Build
from swavbench.harness.cases import Plan, with_overrides
from swavbench.harness.determinism import Comparison, first_difference
from swavbench.harness.logparse import StepsLog

SIDES = ("ref", "cand")


@dataclass(frozen=True)
class Settings:
    """How a session runs and judges."""

    band_pct: float = 5.0  # +-: "no change" needs the interval inside it
    block_steps: int = 3  # steps per block
    warmup_steps: int = 3  # steps each job runs (concurrently) before the blocks start
    min_pairs: int = paired.MIN_PAIRS
    max_pairs: int = 24
    confidence: float = paired.CONFIDENCE  # over the whole session (each look: paired.look_confidence)
    stall_s: float = 120.0  # no new step of the running side for this long: the session fails

    def max_steps(self) -> int:
        """Steps a job may need: warm-up, then per pair one block (+1: a step that finished before its pause
        took effect), and slack."""
        return self.warmup_steps + self.max_pairs * (self.block_steps + 1) + self.block_steps + 10


@dataclass
class Block:
    side: int  # 0 = ref, 1 = cand
    steps: tuple[int, int]  # first and last global step counted
    ips: list[float]  # per-step ips of the counted steps
    paused_s: float = 0.0  # pause taken out of the block's first step (it was running when the job stopped)
    wall_s: float = 0.0  # from the block's start to its end (its pause, when the other side follows)
    cpu_s: float = 0.0  # CPU time the side's ranks used in the block (all of them)

    @property
    def rate(self) -> float:
        return paired.block_rate(self.ips)

    def as_dict(self) -> dict:
        return {"side": SIDES[self.side], "steps": list(self.steps), "paused_s": round(self.paused_s, 4),
                "wall_s": round(self.wall_s, 4), "cpu_s": round(self.cpu_s, 4), "rate": round(self.rate, 4),
                "ips": [round(v, 3) for v in self.ips]}  # fmt: skip


@dataclass
class Session:
    """What a session measured (swavbench.harness.abverdict judges and formats it)."""

    blocks: list[Block] = field(default_factory=list)
    decision: Optional[paired.Decision] = None
    loss: Optional[Comparison] = None
    memory: Optional[str] = None  # where the logged max mem first differs (None: identical where both logged)
    failure: Optional[SessionFailed] = None
    startup_s: float = 0.0  # launch until both jobs passed their warm-up
    wall_s: float = 0.0
    jobs: dict[str, Job] = field(default_factory=dict)
    global_batch: dict[str, int] = field(default_factory=dict)

    @property
    def ratios(self) -> list[float]:
        return paired.pair_ratios([b.rate for b in self.blocks])


def session_plan(plan: Plan, settings: Settings, work: Path, side: str) -> Plan:
    """The case's plan for one side of a session: long enough for every block, outputs kept apart."""
    return with_overrides(plan, f"Global.max_train_step={settings.max_steps()}",
                          f"Global.output_dir={work / side / 'output'}")  # fmt: skip


def _global_batch(job: Job) -> int:
    header_file = job.spec.node_dir(job.spec.node_ranks[0]) / "run_header.json"
    header = json.loads(header_file.read_text()) if header_file.is_file() else {}
    return int(header.get("batch_size_per_device", 0)) * int(header.get("world_size", 0))


def active_cost(cost: float, paused_s: float) -> float:
    """A step's cost without the pause it straddled.

    The step running when a job is stopped finishes after the resume: its batch_cost holds the pause. A step
    cost longer than the pause contains it (a pause lasts a whole block of the other side, several steps), a
    shorter one does not (the job was stopped between two steps' timers): then it is kept as it is.
    """
    return cost - paused_s if paused_s > 0 and cost > paused_s else cost


def block_ips(records: list[dict], first: int, last: int, batch: int, paused_s: float = 0.0) -> list[float]:
    """Per-step ips (global batch / batch_cost) of steps first..last; the first step's cost less `paused_s`."""
    out = []
    for r in records:
        step, cost = int(r["step"]), float(r["batch_cost"])
        if first <= step <= last:
            cost = active_cost(cost, paused_s) if step == first else cost
            if cost > 0:
                out.append(batch / cost)
    return out


def compare_losses(a: dict[int, StepsLog], b: dict[int, StepsLog], final: bool = False) -> Comparison:
    """Exact per-rank loss comparison over the steps every rank of both sides has recorded.

    During a session a rank that has not written yet is left out; `final` (both jobs stopped) counts a rank
    that only one side has as a difference.
    """
    ranks = sorted(set(a) | set(b)) if final else sorted(set(a) & set(b))
    lasts = [(logs[r].last_step or 0) if r in logs else 0 for logs in (a, b) for r in ranks]
    upto = min(lasts, default=0)

    def cut(logs: dict[int, StepsLog]) -> dict[int, StepsLog]:
        return {r: StepsLog(logs[r].path, [x for x in logs[r].steps if int(x["step"]) <= upto], [])
                for r in ranks if r in logs}  # fmt: skip

    if final and set(a) != set(b):
        return first_difference(a, b)
    return first_difference(cut(a), cut(b))


def run_session(ref: Job, cand: Job, settings: Settings, stream: TextIO, label: str,
                until: Optional[Callable[[Session], bool]] = None) -> Session:  # fmt: skip
    """Run the two jobs in turns until the verdict is decisive (module docstring); always stop both.

    `until(session)` (after each round) replaces the verdict as the stop rule: benchmarks/verdict_quality.py
    cuts one long session into windows; differing losses or `max_pairs` still stop it.
    """
    with sigterm_as_exit():
        return _run_session(ref, cand, settings, stream, label, until)


def _run_session(ref: Job, cand: Job, settings: Settings, stream: TextIO, label: str,
                 until: Optional[Callable[[Session], bool]]) -> Session:  # fmt: skip
    s, jobs = Session(jobs={"ref": ref, "cand": cand}), (ref, cand)
    t0 = time.monotonic()
    try:
        for j in jobs:
            j.thread.start()
        warm_up(jobs, settings.warmup_steps, max(settings.stall_s, ref.spec.startup_s or 180))
        s.startup_s = time.monotonic() - t0
        s.global_batch = {j.name: _global_batch(j) for j in jobs}
        _rounds(s, jobs, settings, stream, label, until)
    except SessionFailed as err:
        s.failure = err
    finally:
        with signals_masked():  # a second Ctrl-C must not leave a paused job behind
            for j in jobs:
                j.stop.set()
            for j in jobs:
                j.finish()
        s.wall_s = time.monotonic() - t0
    if s.failure is None and s.blocks:  # every step both sides finished, every rank, exactly
        s.loss = compare_losses(rank_steps(ref), rank_steps(cand), final=True)
        s.memory = compare_memory(ref, cand, min(ref.tail.last_step, cand.tail.last_step))
    return s


def _rounds(s: Session, jobs: tuple[Job, Job], settings: Settings, out: TextIO, label: str,
            until: Optional[Callable[[Session], bool]]) -> None:  # fmt: skip
    """Blocks in the balanced order; a job is paused only when the next block is the other side's.

    After a resume the first step to finish is the one that was running at the pause: its cost loses the
    pause (`block_ips`).
    """
    order = paired.block_order(2 * settings.max_pairs)
    for i, side in enumerate(order):
        job = jobs[side]
        resumed = job.paused
        if resumed:
            job.resume()
        start, t_block, cpu0 = job.tail.last_step, time.monotonic(), job.cpu_seconds()
        paused_s = job.paused_s if resumed else 0.0
        wait_steps(job, start + settings.block_steps, settings.stall_s, [jobs[1 - side]])
        if i + 1 == len(order) or order[i + 1] != side:
            job.pause()  # steps that finished before the stop took effect still belong to this block
        first, last = start + 1, job.tail.last_step
        ips = block_ips(job.tail.records, first, last, s.global_batch[job.name], paused_s)
        s.blocks.append(Block(side, (first, last), ips, paused_s, time.monotonic() - t_block,
                              job.cpu_seconds() - cpu0))  # fmt: skip
        if i % 4 == 3 and _judge_round(s, jobs, settings, out, label, until):
            return


def _judge_round(s: Session, jobs: tuple[Job, Job], settings: Settings, out: TextIO, label: str,
                 until: Optional[Callable[[Session], bool]] = None) -> bool:  # fmt: skip
    """Judge after a round: True when the session can stop (losses differ, or a decisive verdict)."""
    s.loss = compare_losses(rank_steps(jobs[0]), rank_steps(jobs[1]))
    ratios = s.ratios
    conf = paired.look_confidence(settings.confidence, settings.min_pairs, settings.max_pairs)
    s.decision = paired.decide(ratios, settings.band_pct, conf, settings.min_pairs)
    shown = ", ".join(f"{(r - 1) * 100:+.1f}%" for r in ratios[-2:])
    out.write(f"[{label}] A/B pairs {len(ratios)}/{settings.max_pairs}: {shown}; cand vs ref "
              f"{s.decision.interval_text()} -> {s.decision.status}\n")  # fmt: skip
    out.flush()
    if s.loss.difference is not None:
        return True
    if until is not None:
        return until(s) or len(ratios) >= settings.max_pairs
    if s.decision.status != paired.UNDECIDED:
        return True
    if len(ratios) >= settings.max_pairs:
        d = s.decision
        s.decision = paired.Decision("inconclusive", d.n, d.estimate, d.low, d.high, d.confidence, d.band_pct)
        return True
    return False


def make_jobs(plan: Plan, ref: Build, cand: Build, settings: Settings, work: Path,
              worker: Optional[Sequence[str]] = None) -> tuple[Job, Job]:
    """The two Jobs of a session in `work/<side>/`; `worker` replaces both sides' rank command."""
    from swavbench.harness.runner import launch_spec

    jobs = []
    for name, build in (("ref", ref), ("cand", cand)):
        p = session_plan(plan, settings, work, name)
        spec = launch_spec(p, work / name / "launch", tuple(worker) if worker else build.worker())
        stall = 2 * settings.stall_s + 60
        spec = replace(spec, python=build.python, stall_s=stall, startup_s=stall + 120,
                       timeout_s=max(spec.timeout_s, 60.0 * 60 * 4))  # fmt: skip
        jobs.append(Job(name, build, spec))
    os.makedirs(work, exist_ok=True)
    return jobs[0], jobs[1]
