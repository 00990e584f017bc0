"""PASSL worker logs -> step records (pure; passl-contract.md section 3).

Tolerant of what real worker logs contain: interleaved warnings, `\\r` progress output (each `\\r`
segment is parsed on its own), ANSI colour codes, a truncated last line (reported in `problems`), and the
Paddle 3.x duplicates: every `passl INFO:` line is followed by a copy from Paddle's root-logger handler
(`[2026-11-28 19:39:21,017] [    INFO] logger.py:80 - [Train]...`). A copy is dropped when a `passl`
line with the same text exists; a log holding only the copy form is parsed from the copies.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from swavbench.errors import SwavbenchError

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
TRAIN_RE = re.compile(r"\[Train\]\[Epoch (\d+)/(\d+)\]\[Iter: (\d+)/(\d+)\]\s*(.*)$")
EPOCH_AVG_RE = re.compile(r"\[Train\]\[Epoch (\d+)/(\d+)\]\[Avg\]\s*(.*)$")
EVAL_RE = re.compile(r"\[Eval\]\[Epoch (\d+)\]\[Avg\]\s*(.*)$")
HEADER_RE = re.compile(r"\[swavbench\] run header: (.*)$")
# A collective that failed because a peer died or hung (gloo on CPU; the rank itself was healthy)
PEER_ERROR_RE = re.compile(r"gloo::(TimeoutException|IoException)|Connection (closed|reset) by peer|Broken pipe")
EARLY_STOP_RE = re.compile(r"global_step\((\d+)\) >= max_train_step\((\d+)\), training stops early\.?")
PASSL_PREFIX_RE = re.compile(r"\bpassl (?:INFO|WARNING|ERROR|DEBUG):\s*$")
FIELD_RE = re.compile(r"^\s*([A-Za-z_][\w ]*?):\s*(.*?)\s*$")
ETA_RE = re.compile(r"^(\d+ days?, )?\d+:\d{2}:\d{2}(\.\d+)?$")
EXC_RE = re.compile(r"^[\w.]*(Error|Exception|Interrupt|Exit)\w*(:|$)")
REQUIRED = ("lr", "batch_cost", "reader_cost", "ips")
TAIL_LINES = 20


@dataclass(frozen=True)
class StepRecord:
    """One `[Train][Epoch e/E][Iter: i/N]` line."""

    epoch: int
    epochs: int
    iter: int
    iters_per_epoch: int
    lr: float
    metrics: dict[str, str]  # raw strings as printed, e.g. {"loss": "7.94836"}
    batch_cost: float
    reader_cost: float
    ips: float
    max_mem: Optional[str]  # raw "8.37" (GB), None when the field is absent (PASSL CPU builds)
    eta: str
    line_no: int  # 1-based physical line in the file
    source: str = "passl"  # "passl" | "paddle" (Paddle 3.x copy) | "plain"

    @property
    def marker(self) -> str:
        """The `iter/iters_per_epoch` string check_result greps for, e.g. "200/2599"."""
        return f"{self.iter}/{self.iters_per_epoch}"

    @property
    def global_step(self) -> int:
        """1-based global step of this line, as in `steps.<rank>.jsonl`."""
        return (self.epoch - 1) * self.iters_per_epoch + self.iter + 1


@dataclass(frozen=True)
class AvgRecord:
    """An epoch summary `[Train][Epoch e/E][Avg]...` or eval `[Eval][Epoch e][Avg]...` line."""

    epoch: int
    metrics: dict[str, str]
    line_no: int
    epochs: Optional[int] = None


@dataclass(frozen=True)
class Malformed:
    """A train line that could not become a StepRecord (truncated or missing fields)."""

    line_no: int
    marker: str
    missing: tuple[str, ...]
    truncated: bool
    text: str


@dataclass
class ParsedLog:
    path: Optional[str]
    records: list[StepRecord]
    problems: list[str]  # e.g. "line 96: truncated last line ..."
    early_stop: bool
    fatal_lines: list[str]
    tail: list[str]  # last lines as a terminal shows them, for messages
    header: Optional[dict] = None  # the `[swavbench] run header: {json}` line
    epoch_summaries: list[AvgRecord] = field(default_factory=list)
    evals: list[AvgRecord] = field(default_factory=list)
    early_stop_line: Optional[str] = None
    malformed: list[Malformed] = field(default_factory=list)
    duplicates: int = 0  # Paddle 3.x copies dropped
    n_lines: int = 0
    peer_error: Optional[str] = None  # first collective error (gloo timeout, closed connection): a peer failed

    @property
    def name(self) -> str:
        return Path(self.path).name if self.path else "<log>"


def strip_ansi(text: str) -> str:
    """Remove ANSI colour/cursor escape sequences."""
    return ANSI_RE.sub("", text)


def _fields(body: str) -> tuple[dict[str, str], Optional[str]]:
    """`name: value, ...` pairs of a line body; eta (which contains a comma) is split off first."""
    eta = None
    m = re.search(r"(?:^|,\s*)eta:\s*(.*)$", body)
    if m:
        eta, body = m.group(1).strip(), body[: m.start()]
    out: dict[str, str] = {}
    for part in body.split(","):
        fm = FIELD_RE.match(part)
        if fm:
            out[fm.group(1).strip()] = fm.group(2)
    return out, eta


def _float(text: Optional[str]) -> Optional[float]:
    try:
        return float(text.split()[0]) if text else None
    except ValueError:
        return None


def _train_record(m: re.Match, line_no: int, source: str, last_unterminated: bool):
    """A StepRecord, or a Malformed when fields are missing or the unterminated last line is cut."""
    epoch, epochs, it, ipe = (int(m.group(i)) for i in range(1, 5))
    fields, eta = _fields(m.group(5))
    nums = {k: _float(fields.pop(k, None)) for k in REQUIRED}
    mem = fields.pop("max mem", None)
    missing = tuple(k for k, v in nums.items() if v is None)
    cut = last_unterminated and (eta is None or not ETA_RE.match(eta))
    if missing or cut:
        return Malformed(line_no, f"{it}/{ipe}", missing, cut, m.group(0))
    if mem is not None:
        mem = mem[:-2].strip() if mem.endswith("GB") else mem
    return StepRecord(epoch, epochs, it, ipe, nums["lr"], fields, nums["batch_cost"], nums["reader_cost"],
                      nums["ips"], mem, eta or "", line_no, source)


def _source(prefix: str) -> str:
    if PASSL_PREFIX_RE.search(prefix):
        return "passl"
    return "paddle" if re.search(r"\[\s*[A-Z]+\]\s+\S+:\d+ - $", prefix) else "plain"


def _dedupe(found: list[tuple[str, str, object]]) -> tuple[list, int]:
    """Keep `passl` lines; keep another form only when no identical passl line exists (Paddle 3.x)."""
    passl_keys = {key for src, key, _ in found if src == "passl"}
    kept, seen, dropped = [], set(), 0
    for src, key, item in found:
        if src != "passl" and (key in passl_keys or key in seen):
            dropped += 1
            continue
        seen.add(key)
        kept.append(item)
    return kept, dropped


def _segments(text: str):
    """(line_no, segment, is_unterminated_last) for every \\r-separated piece of every line."""
    lines = text.split("\n")
    unterminated = not text.endswith("\n")
    if not unterminated:
        lines.pop()
    for i, line in enumerate(lines, 1):
        segs = [s for s in strip_ansi(line).split("\r") if s.strip()]
        for j, seg in enumerate(segs):
            yield i, seg.rstrip(), unterminated and i == len(lines) and j == len(segs) - 1


def parse_log_text(text: str, path: Optional[str] = None) -> ParsedLog:
    """Parse one worker log's text."""
    log = ParsedLog(path, [], [], False, [], [])
    train, summaries, evals = [], [], []
    in_traceback = False
    for line_no, seg, last_cut in _segments(text):
        m = TRAIN_RE.search(seg)
        if m:
            item = _train_record(m, line_no, _source(seg[: m.start()]), last_cut)
            if isinstance(item, Malformed):
                log.malformed.append(item)
                why = "truncated last line" if item.truncated else f"missing {', '.join(item.missing)}"
                log.problems.append(f"line {line_no}: {why} in [Train] line {item.marker}")
            else:
                train.append((item.source, m.group(0), item))
        elif (m := EPOCH_AVG_RE.search(seg)) or (m := EVAL_RE.search(seg)):
            is_eval = m.re is EVAL_RE
            rec = AvgRecord(int(m.group(1)), _fields(m.group(m.lastindex))[0], line_no,
                            None if is_eval else int(m.group(2)))
            (evals if is_eval else summaries).append((_source(seg[: m.start()]), m.group(0), rec))
        elif (m := HEADER_RE.search(seg)) and log.header is None:
            try:
                log.header = json.loads(m.group(1))
            except ValueError:
                log.problems.append(f"line {line_no}: run header is not valid JSON")
        elif (m := EARLY_STOP_RE.search(seg)) and not log.early_stop:
            log.early_stop, log.early_stop_line = True, m.group(0)
        if log.peer_error is None and (m := PEER_ERROR_RE.search(seg)):
            log.peer_error = m.group(0)
        if "FatalError" in seg or "Traceback (most recent call last)" in seg:
            log.fatal_lines.append(seg.strip())
            in_traceback = in_traceback or "Traceback" in seg
        elif in_traceback and EXC_RE.match(seg):
            log.fatal_lines.append(seg.strip())
            in_traceback = False
    log.records, log.duplicates = _dedupe(train)
    log.epoch_summaries, _ = _dedupe(summaries)
    log.evals, _ = _dedupe(evals)
    log.n_lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    log.tail = _tail(text)
    return log


def _tail(text: str, n: int = TAIL_LINES) -> list[str]:
    """The last n non-blank lines as a terminal shows them (last `\\r` segment, no colour)."""
    shown = []
    for line in text.split("\n"):
        segs = [s for s in strip_ansi(line).split("\r") if s.strip()]
        if segs:
            shown.append(segs[-1].rstrip())
    return shown[-n:]


def parse_log_file(path: Union[str, Path]) -> ParsedLog:
    """Parse one worker log file (bytes decoded as UTF-8, bad bytes replaced)."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        raise SwavbenchError(f"cannot read log {path}: {err.strerror or err}") from err
    return parse_log_text(text, str(path))


def resolve_logdir(logdir: Union[str, Path]) -> Path:
    """The folder holding `workerlog.<rank>`: LOGDIR itself or LOGDIR/log (a run folder)."""
    root = Path(logdir)
    if not root.is_dir():
        raise SwavbenchError(f"log dir {root} does not exist: pass the launch log dir (default ./log)")
    for cand in (root, root / "log"):
        if any(_rank_of(p) is not None for p in cand.glob("workerlog.*")):
            return cand
    raise SwavbenchError(f"no workerlog.<rank> files in {root}: pass the launch log dir (default ./log)")


def _rank_of(path: Path, prefix: str = "workerlog.", suffix: str = "") -> Optional[int]:
    name = path.name
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    core = name[len(prefix) : len(name) - len(suffix)]
    return int(core) if core.isdigit() else None


def parse_log_dir(logdir: Union[str, Path]) -> dict[int, ParsedLog]:
    """Parse every `workerlog.<rank>` of a launch log dir, keyed by rank."""
    root = resolve_logdir(logdir)
    ranks = {_rank_of(p): p for p in root.glob("workerlog.*") if _rank_of(p) is not None}
    return {r: parse_log_file(ranks[r]) for r in sorted(ranks)}


@dataclass
class StepsLog:
    """A `steps.<rank>.jsonl` file written by swavbench's trainer."""

    path: Optional[str]
    steps: list[dict]
    problems: list[str]

    @property
    def last_step(self) -> Optional[int]:
        return max((s["step"] for s in self.steps), default=None)


def parse_steps_text(text: str, path: Optional[str] = None) -> StepsLog:
    """Parse per-step JSONL; a bad or cut line is a problem, not a crash."""
    out = StepsLog(path, [], [])
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            int(row["step"])
        except (ValueError, KeyError, TypeError):
            out.problems.append(f"line {i}: not a step record: {line[:60]!r}")
            continue
        out.steps.append(row)
    return out


def read_steps_dir(logdir: Union[str, Path]) -> dict[int, StepsLog]:
    """Every `steps.<rank>.jsonl` beside the worker logs (empty dict for PASSL's own logs)."""
    root = resolve_logdir(logdir)
    out = {}
    for p in root.glob("steps.*.jsonl"):
        rank = _rank_of(p, "steps.", ".jsonl")
        if rank is not None:
            out[rank] = parse_steps_text(p.read_bytes().decode("utf-8", errors="replace"), str(p))
    return dict(sorted(out.items()))
