"""`steps.<rank>.jsonl`, the per-step records swavbench's trainer writes: read and checked at the boundary.

One JSON object per line: {"step": <global step, 1-based>, "epoch", "iter", "loss", "lr", "batch_cost",
"reader_cost"} (docs/design.md). Each known field is type- and range-checked (`step_problem`); NaN/Infinity
only as a loss (a diverged run writes them). A cut last line (the run was killed mid-write) is a problem;
any other bad line is `corrupt`, and metrics refuses to judge the run (malformed_steps, exit 2). The same
line written twice counts once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

from swavbench.errors import RunFailed, from_os_error
from swavbench.harness.loglines import MAX_KEPT, MAX_LINE, file_lines, text_lines
from swavbench.inputs import JSONInputError, NotRegularFile, loads_json, open_regular, shown


@dataclass
class StepsLog:
    """A `steps.<rank>.jsonl` file written by swavbench's trainer."""

    path: Optional[str]
    steps: list[dict]
    problems: list[str]  # every line that is not a step record (the cut last line included)
    corrupt: list[str] = field(default_factory=list)  # the problems that are not the cut last line (exit 2)
    duplicates: int = 0  # the same record written twice, dropped

    @property
    def last_step(self) -> Optional[int]:
        return max((s["step"] for s in self.steps), default=None)

    @property
    def name(self) -> str:
        return Path(self.path).name if self.path else "<steps>"


STEP_INTS = {"step": 1, "epoch": 0, "iter": 0, "rank": 0}  # field -> smallest value
STEP_SECONDS = ("batch_cost", "reader_cost")
MAX_STEP_SECONDS = 1e7


def _whole(value: object, low: int) -> bool:
    return type(value) is int and low <= value < 1 << 40


def _finite(value: object) -> bool:
    return (type(value) is float and math.isfinite(value)) or type(value) is int


def step_problem(row: object) -> Optional[str]:
    """Why a parsed steps line is not a step record, or None (types and ranges of the known fields)."""
    if type(row) is not dict:
        return f"is {type(row).__name__}, not a JSON object"
    if "step" not in row:
        return "has no 'step'"
    get = row.get
    for key, low in STEP_INTS.items():
        value = get(key)
        if (value is not None or key == "step") and not _whole(value, low):
            return f"field {key!r} is {shown(value, 40)}, expected a whole number >= {low}"
    for key in STEP_SECONDS:
        value = get(key)
        if value is not None and not (_finite(value) and 0 <= value <= MAX_STEP_SECONDS):
            return f"field {key!r} is {shown(value, 40)}, expected seconds (a finite number >= 0)"
    lr, loss = get("lr"), get("loss")
    if lr is not None and not _finite(lr):
        return f"field 'lr' is {shown(lr, 40)}, expected a finite number"
    if loss is not None and type(loss) not in (int, float):  # NaN / inf are allowed: a diverged run logs them
        return f"field 'loss' is {shown(loss, 40)}, expected a number"
    return None


def parse_steps_text(text: str, path: Optional[str] = None) -> StepsLog:
    """Parse per-step JSONL; a bad line is a problem, not a crash (a cut last line is not `corrupt`)."""
    return _parse_steps(text_lines(text), path)


def _parse_steps(lines: Iterator[tuple[str, int, bool]], path: Optional[str]) -> StepsLog:
    out = StepsLog(path, [], [])
    seen: set[str] = set()
    for i, (line, more, terminated) in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            if more:
                raise JSONInputError(f"line is longer than {MAX_LINE} characters")
            row = loads_json(line, allow_non_finite=True, max_depth=4)
            why = step_problem(row)
        except JSONInputError as err:
            row, why = None, str(err)
        if why is None and line in seen:
            out.duplicates += 1
            continue
        if why is not None:
            last_cut = not terminated and row is None
            problem = f"line {i}: " + ("cut last line (the run was killed mid-write?)" if last_cut
                                       else f"not a step record ({why}): {shown(line, 80)}")
            if len(out.problems) < MAX_KEPT:
                out.problems.append(problem)
                if not last_cut:
                    out.corrupt.append(problem)
            continue
        seen.add(line)
        out.steps.append(row)
    return out


def read_steps_file(path: Union[str, Path]) -> StepsLog:
    """One `steps.<rank>.jsonl`, read line by line; a folder in its place is a malformed log dir (exit 2)."""
    try:
        with open_regular(path) as handle:
            return _parse_steps(file_lines(handle), str(path))
    except NotRegularFile as err:
        raise RunFailed("malformed_steps", f"{path} is {err.kind}, not a steps file: remove or rename it") from None
    except OSError as err:
        raise from_os_error(err, f"cannot read steps file {path}") from None
