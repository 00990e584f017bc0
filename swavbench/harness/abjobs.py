"""The live jobs of an A/B session: one side's launch in a thread, paused and resumed between its blocks.

A `Job` runs `launch.run` (the normal launcher, with its watchdog and cleanup) in a thread and finds its
ranks by the TAG_ENV mark in their environment, to stop (SIGSTOP) and continue (SIGCONT) them; `StepsTail`
follows rank 0's steps.0.jsonl as it grows; `wait_steps` / `warm_up` wait for steps and turn a side that
ended, hung or diverged into `SessionFailed`. `sigterm_as_exit` and `signals_masked` make sure a session's
cleanup runs on SIGTERM and is not interrupted by a second Ctrl-C. The session itself:
swavbench.harness.absession.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional

from swavbench.harness import launch, procs
from swavbench.harness.builds import Build
from swavbench.harness.logparse import StepsLog, parse_log_file

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
TAG_ENV = "SWAVBENCH_AB_JOB"  # marks every process of one side's job (to pause and resume its ranks)


class StepsTail:
    """Reads the complete new lines of a growing steps.<rank>.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.records = path, 0, []

    def poll(self) -> list[dict]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        new = [json.loads(line) for line in data[:end].decode("utf-8", "replace").splitlines() if line.strip()]
        self.records += new
        return new

    @property
    def last_step(self) -> int:
        return int(self.records[-1]["step"]) if self.records else 0


class Job:
    """One side's live launch, run in a thread, with pause / resume of its ranks."""

    def __init__(self, name: str, build: Build, spec: launch.LaunchSpec) -> None:
        self.name, self.build, self.tag = name, build, uuid.uuid4().hex
        self.spec = replace(spec, env={**spec.env, **build.env(), TAG_ENV: self.tag})
        self.stop = threading.Event()
        self.result: Optional[launch.LaunchResult] = None
        self.error: Optional[BaseException] = None
        self.tail = StepsTail(self.spec.node_dir(self.spec.node_ranks[0]) / "steps.0.jsonl")
        self.paused = False
        self.stopped_at = 0.0  # monotonic time of the last pause
        self.paused_s = 0.0  # length of the last pause (set on resume)
        self.thread = threading.Thread(target=self._run, name=f"ab-{name}", daemon=True)

    def _run(self) -> None:
        try:
            self.result = launch.run(self.spec, None, self.stop)
        except BaseException as err:  # noqa: BLE001 - reported by the session
            self.error = err

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def ranks(self) -> list[procs.Proc]:
        return [p for p in procs.find_env(TAG_ENV, self.tag) if p.global_rank is not None]

    def pause(self, timeout_s: float = 10.0) -> None:
        """SIGSTOP every rank and wait until each is stopped; then read the steps it completed."""
        ranks = self.ranks()
        self.stopped_at = time.monotonic()
        procs.signal_all(ranks, signal.SIGSTOP)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(p.state not in ("T", "t") for p in self.ranks()):
            time.sleep(0.01)
        self.paused = True
        self.tail.poll()

    def cpu_seconds(self) -> float:
        """CPU time (user + system) its ranks have used so far."""
        total = 0
        for p in self.ranks():
            try:
                with open(f"/proc/{p.pid}/stat", "rb") as handle:
                    fields = handle.read().decode(errors="replace").rpartition(")")[2].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
            except (OSError, ValueError, IndexError):
                continue
        return total / CLOCK_TICKS

    def resume(self) -> None:
        procs.signal_all(self.ranks(), signal.SIGCONT)
        self.paused_s = time.monotonic() - self.stopped_at
        self.paused = False

    def finish(self, timeout_s: float = 60.0) -> None:
        """Stop the job through its launcher (every process ends), and wait for it."""
        self.stop.set()
        if self.paused:
            self.resume()
        self.thread.join(timeout_s)


class SessionFailed(Exception):
    """A side stopped, hung or logged a non-finite loss before the session ended."""

    def __init__(self, side: str, message: str) -> None:
        super().__init__(message)
        self.side = side


def wait_steps(job: Job, target: int, stall_s: float, others: list[Job]) -> None:
    """Until `job` has recorded step `target`; SessionFailed if it ends, a peer ends, or it stalls."""
    last_change, last = time.monotonic(), job.tail.last_step
    while job.tail.last_step < target:
        time.sleep(0.02)
        job.tail.poll()
        for j in [job, *others]:
            if not j.alive:
                res = j.result
                why = res.message if res else f"{type(j.error).__name__}: {j.error}"
                raise SessionFailed(j.name, f"{j.name} ({j.build.describe()}) ended during the session: {why}")
        if job.tail.last_step != last:
            last_change, last = time.monotonic(), job.tail.last_step
        elif time.monotonic() - last_change > stall_s:
            raise SessionFailed(job.name, f"{job.name} ({job.build.describe()}) made no step in {stall_s:.0f} s "
                                f"(last step {last})")  # fmt: skip
    bad = [r for r in job.tail.records if not _finite(r.get("loss"))]
    if bad:
        raise SessionFailed(job.name, f"{job.name} ({job.build.describe()}) logged loss {bad[0].get('loss')} at "
                            f"step {bad[0]['step']}: training diverged")  # fmt: skip


def warm_up(jobs: tuple[Job, Job], steps: int, timeout_s: float) -> None:
    """Until each job has run `steps` steps (both start up at once); each is paused as soon as it has."""
    deadline = time.monotonic() + timeout_s
    while not all(j.paused for j in jobs):
        for j in jobs:
            if not j.alive:
                why = j.result.message if j.result else f"{type(j.error).__name__}: {j.error}"
                raise SessionFailed(j.name, f"{j.name} ({j.build.describe()}) ended during start-up: {why}")
            j.tail.poll()
            if not j.paused and j.tail.last_step >= steps:
                j.pause()
        if time.monotonic() > deadline:
            late = [j.name for j in jobs if not j.paused]
            raise SessionFailed(late[0], f"{', '.join(late)} did not reach step {steps} within {timeout_s:.0f} s")
        time.sleep(0.02)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def rank_steps(job: Job) -> dict[int, StepsLog]:
    """Every rank's step records so far (read from the job's live log folder)."""
    out = {}
    for node in job.spec.node_ranks:
        for path in job.spec.node_dir(node).glob("steps.*.jsonl"):
            rank = path.name.split(".")[1]
            if rank.isdigit():
                lines = path.read_text(errors="replace").splitlines()
                rows = []
                for line in lines:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:  # the line being written
                        break
                out[int(rank)] = StepsLog(str(path), rows, [])
    return out


def compare_memory(a: Job, b: Job, upto: int) -> Optional[str]:
    """The first logged line (rank 0) up to step `upto` whose `max mem` differs between the sides, or None."""
    logs = [parse_log_file(j.spec.node_dir(j.spec.node_ranks[0]) / "workerlog.0") for j in (a, b)]
    mems = [{r.global_step: r.max_mem for r in log.records if r.global_step <= upto} for log in logs]
    for step in sorted(set(mems[0]) & set(mems[1])):
        if mems[0][step] != mems[1][step]:
            return f"max mem differs first at step {step}: {mems[0][step]} (ref) vs {mems[1][step]} (cand)"
    return None


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """In the main thread, SIGTERM raises SystemExit(143), so every `finally` (stop the jobs, remove the
    worktrees) runs; elsewhere nothing changes. Re-entrant: an outer handler stays in force inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(143)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def signals_masked() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


