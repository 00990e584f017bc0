"""PASSL's log lines (exactly, see passl-contract.md section 3), the per-step JSONL record, the run header."""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, TextIO


def prefix(now: Optional[float] = None) -> str:
    """`[2023/08/01 20:30:15] passl INFO: ` (local time, as PASSL's logging does)."""
    return time.strftime("[%Y/%m/%d %H:%M:%S] passl INFO: ", time.localtime(now))


def format_eta(seconds: float) -> str:
    """`6 days, 9:27:43` (str of a datetime.timedelta of whole seconds)."""
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))


def format_train_line(epoch: int, epochs: int, iteration: int, iters_per_epoch: int, lr: float,
                      metrics: Mapping[str, float], batch_cost: float, reader_cost: float, ips: float,
                      max_mem_gb: Optional[float], eta_seconds: float) -> str:
    """The body of PASSL's train line (without the time prefix). epoch is 1-based, iteration 0-based."""
    metric_text = ", ".join(f"{name}: {value:.5f}" for name, value in metrics.items())
    mem = "" if max_mem_gb is None else f", max mem: {max_mem_gb:.2f} GB"
    return (
        f"[Train][Epoch {epoch}/{epochs}][Iter: {iteration}/{iters_per_epoch}] lr: {lr:.6f}, {metric_text}, "
        f"batch_cost: {batch_cost:.5f}, reader_cost: {reader_cost:.5f}, ips: {ips:.5f} images/sec{mem}, "
        f"eta: {format_eta(eta_seconds)}"
    )


def format_epoch_line(epoch: int, epochs: int, metrics: Mapping[str, float]) -> str:
    """`[Train][Epoch e/E][Avg]loss: 7.12345`."""
    return f"[Train][Epoch {epoch}/{epochs}][Avg]" + ", ".join(f"{k}: {v:.5f}" for k, v in metrics.items())


def format_early_stop(global_step: int, max_train_step: int) -> str:
    return f"global_step({global_step}) >= max_train_step({max_train_step}), training stops early."


class PasslLogger:
    """Prints PASSL-prefixed lines on rank 0 only (other ranks stay quiet, as in PASSL)."""

    def __init__(self, rank: int, stream: TextIO = sys.stdout) -> None:
        self.enabled, self.stream = rank == 0, stream

    def info(self, message: str) -> None:
        if self.enabled:
            self.stream.write(prefix() + message + "\n")
            self.stream.flush()


class Window:
    """Means over a window of steps; `reset()` starts a new window (after each log line, and at batch 5)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.counts[key] = self.counts.get(key, 0) + 1

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / max(self.counts.get(key, 0), 1)

    def reset(self, *keys: str) -> None:
        for key in keys or list(self.sums):
            self.sums.pop(key, None)
            self.counts.pop(key, None)


def record_dir(output_dir: str) -> Path:
    """Where per-step records go: beside the worker logs under launch, else the output dir."""
    return Path(os.environ.get("PADDLE_LOG_DIR") or output_dir)


class StepRecorder:
    """Appends one JSON object per training step to `steps.<rank>.jsonl` (line-buffered, flushed)."""

    def __init__(self, directory: Path, rank: int, append: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"steps.{rank}.jsonl"
        self.handle = open(self.path, "a" if append else "w", encoding="utf-8", buffering=1)

    def write(self, **record: Any) -> None:
        self.handle.write(json.dumps(record, sort_keys=True) + "\n")

    def close(self) -> None:
        self.handle.close()


def write_run_header(directory: Path, header: Mapping[str, Any]) -> Path:
    """`run_header.json` beside the logs (rank 0)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "run_header.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(header), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
