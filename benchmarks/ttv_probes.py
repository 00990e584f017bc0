"""Timers around the harness's own steps and the ranks' timeline files, for benchmarks/time_to_verdict.py.

`probes(rec)` wraps, for the duration of a `with` block, `cases.plan_for`, `runner.execute`, `launch.run`,
runner's copy / analyse / judge / record steps and `subprocess.Popen` (to see when a launcher starts and when
a poll first finds it gone), recording spans and instants in a `Recorder`. Nothing is changed but the timing
being recorded. `rank_timelines` reads the `timeline.<rank>.json` files the ranks leave beside their logs.
"""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

LAUNCH_ARG = "paddle.distributed.launch"
HARNESS_STEPS = ("collect_logs", "_analyse", "judge", "build_record", "write_json_atomic")


class Recorder:
    """Spans (name, start, end) and instants (name, time) recorded by the wrappers, in order."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float, object]] = []
        self.instants: list[tuple[str, float]] = []

    def timed(self, name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start, result = time.time(), None
            try:
                result = fn(*args, **kwargs)
                return result
            finally:
                self.spans.append((name, start, time.time(), result))

        return wrapper

    def within(self, start: float, end: float) -> tuple[list, list]:
        spans = [s for s in self.spans if start <= s[1] and s[2] <= end]
        return spans, [i for i in self.instants if start <= i[1] <= end]


def timed_popen(rec: Recorder, base: type) -> type:
    """A Popen that records when a launcher starts and when a poll first sees it gone."""

    class Popen(base):  # type: ignore[misc, valid-type]
        def __init__(self, args, *a, **kw):
            self._is_launcher = LAUNCH_ARG in [str(x) for x in args] if isinstance(args, (list, tuple)) else False
            if self._is_launcher:
                rec.instants.append(("launcher_popen", time.time()))
            super().__init__(args, *a, **kw)

        def poll(self):
            before = self.returncode
            code = super().poll()
            if self._is_launcher and before is None and code is not None:
                rec.instants.append(("launcher_exit_seen", time.time()))
            return code

    return Popen


@contextmanager
def probes(rec: Recorder) -> Iterator[None]:
    """Wrap the harness's steps with timers for the duration of the block (fails loudly if one is gone)."""
    from swavbench.harness import cases, launch, runner

    saved = [(subprocess, "Popen", subprocess.Popen)]
    targets = [(cases, "plan_for"), (runner, "execute"), (launch, "run")] + [(runner, n) for n in HARNESS_STEPS]
    for module, name in targets:
        if not hasattr(module, name):
            raise SystemExit(f"time_to_verdict: {module.__name__}.{name} is gone: update this benchmark")
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, rec.timed(name, getattr(module, name)))
    subprocess.Popen = timed_popen(rec, subprocess.Popen)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def rank_timelines(log_dir: Path) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, float]]]:
    """(rank -> {mark: unix time}, rank -> {mark: CPU s}) from `timeline.<rank>.json` files."""
    wall, cpu = {}, {}
    for path in log_dir.glob("timeline.*.json"):
        data = json.loads(path.read_text())
        rank = int(data["rank"])
        wall[rank] = {m[0]: m[1] for m in data["marks"]}
        cpu[rank] = {m[0]: m[2] for m in data["marks"] if len(m) > 2}
    return wall, cpu


def cpu_all_ranks(cpu: dict[int, dict[str, float]], a: str, b: str) -> Optional[float]:
    """CPU seconds of phase a -> b summed over the ranks that have both marks."""
    parts = [m[b] - m[a] for m in cpu.values() if a in m and b in m]
    return sum(parts) if parts else None
