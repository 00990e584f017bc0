"""Live progress of a run, read from rank 0's worker log as it grows (swavbench.harness.logparse on new lines).

On a TTY one line updated in place (step n/N, loss, ips, elapsed, ETA); otherwise (CI) one plain line per
logged step, so a CI log shows the run advancing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, TextIO


class Progress:
    """Live progress from rank 0's log as it grows: one updating line on a TTY, else a line per step."""

    def __init__(
        self, log_path: Path, label: str, total_steps: int, stream: TextIO, tty: Optional[bool] = None
    ) -> None:
        self.path, self.label, self.total, self.stream = log_path, label, total_steps, stream
        self.tty = stream.isatty() if tty is None else tty
        self.offset, self.pending, self.seen = 0, b"", set()
        self.t0, self.first = time.monotonic(), None
        self.shown = False

    def update(self) -> None:
        """Read new complete lines and show each new logged step."""
        from swavbench.harness.logparse import parse_log_text

        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return
        self.offset += len(chunk)
        data = self.pending + chunk
        cut = data.rfind(b"\n") + 1
        self.pending = data[cut:]
        for rec in parse_log_text(data[:cut].decode("utf-8", "replace")).records:
            if rec.global_step not in self.seen:
                self.seen.add(rec.global_step)
                self._show(rec.global_step, rec.metrics.get("loss", "?"), rec.ips)

    def _show(self, step: int, loss: str, ips: float) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = (step, now)
        done, t_first = step - self.first[0], now - self.first[1]
        eta = f"{t_first / done * (self.total - step):.0f}s" if done > 0 else "?"
        line = (
            f"[{self.label}] step {step}/{self.total}  loss {loss}  ips {ips:.2f}  "
            f"elapsed {now - self.t0:.0f}s  eta {eta}"
        )
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
