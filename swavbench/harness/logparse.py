"""PASSL worker logs -> step records (pure; passl-contract.md section 3).

Tolerant of what real worker logs contain: interleaved warnings, `\\r` progress output (each `\\r`
segment is parsed on its own), ANSI colour codes, a truncated last line (reported in `problems`), and the
Paddle 3.x duplicates: every `passl INFO:` line is followed by a copy from Paddle's root-logger handler
(`[2026-11-28 19:39:21,017] [    INFO] logger.py:80 - [Train]...`). A copy is dropped when a `passl`
line with the same text exists; a log holding only the copy form is parsed from the copies. A line written
twice (same text) counts once.

Validation (the log boundary, swavbench.inputs): every value of a train line must be a printed number
(ips > 0 and below inputs.MAX_IPS, costs and lr >= 0; a metric may be nan/inf, which metrics reports as a
diverged run), a field may appear once (a repeated field is two ranks' output spliced into one line), and
a line is examined up to MAX_LINE characters (parsing is linear in the input: no regex here backtracks). A
line breaking these is a `Malformed` with `bad` saying why; metrics refuses to judge a log that has one
(exit 2). Text kept for messages (tail, fatal lines, problems) is cut to inputs.MAX_SHOWN with
"(N more bytes)". Files are read line by line: memory is bounded by MAX_LINE, not by the longest line.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

from swavbench.errors import RunFailed, SwavbenchError, from_os_error
from swavbench.harness.loglines import MAX_LINE, Kept, file_lines, shown_line, text_lines
from swavbench.harness.stepsfile import StepsLog, parse_steps_text, read_steps_file, step_problem
from swavbench.inputs import (
    MAX_IPS,
    MAX_STORED,
    MIN_IPS,
    JSONInputError,
    NotRegularFile,
    cut,
    loads_json,
    number_text_problem,
    open_regular,
    shown,
)

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
TRAIN_RE = re.compile(r"\[Train\]\[Epoch ([0-9]{1,9})/([0-9]{1,9})\]\[Iter: ([0-9]{1,9})/([0-9]{1,9})\]\s*(.*)$")
EPOCH_AVG_RE = re.compile(r"\[Train\]\[Epoch ([0-9]{1,9})/([0-9]{1,9})\]\[Avg\]\s*(.*)$")
EVAL_RE = re.compile(r"\[Eval\]\[Epoch ([0-9]{1,9})\]\[Avg\]\s*(.*)$")
HEADER_RE = re.compile(r"\[swavbench\] run header: (.*)$")
# A collective that failed because a peer died or hung (gloo on CPU; the rank itself was healthy)
PEER_ERROR_RE = re.compile(r"gloo::(TimeoutException|IoException)|Connection (closed|reset) by peer|Broken pipe")
EARLY_STOP_RE = re.compile(r"global_step\((\d+)\) >= max_train_step\((\d+)\), training stops early\.?")
PASSL_PREFIX_RE = re.compile(r"\bpassl (?:INFO|WARNING|ERROR|DEBUG):\s*$")
FIELD_NAME_RE = re.compile(r"[A-Za-z_][\w ]*")
ETA_RE = re.compile(r"^([0-9]+ days?, )?[0-9]+:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$")
EXC_NAME_RE = re.compile(r"[\w.]+")
EXC_WORDS = ("Error", "Exception", "Interrupt", "Exit")
UNIT_RE = re.compile(r"[A-Za-z]+/[A-Za-z]+")  # "images/sec"
REQUIRED = ("lr", "batch_cost", "reader_cost", "ips")
TAIL_LINES = 20
RANK_RE = re.compile(r"0|[1-9][0-9]{0,5}")  # launch's names: workerlog.0, workerlog.17 (no leading zero)
HEADER_INTS = ("world_size", "nnodes", "threads", "seed", "batch_size_per_device", "iters_per_epoch")
HEADER_TEXTS = ("paddle_version", "device", "config", "precision_requested", "precision_effective",
                "precision_note", "max_mem_source", "started_utc")


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
    text: str  # the line, cut to inputs.MAX_SHOWN
    bad: str = ""  # a value that is not a measurement (e.g. "ips: -12.4 is negative"); "" when only missing/cut


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
    duplicates: int = 0  # Paddle 3.x copies and lines written twice, dropped
    n_lines: int = 0
    peer_error: Optional[str] = None  # first collective error (gloo timeout, closed connection): a peer failed
    header_problem: Optional[str] = None  # why the run header line could not be used (metrics: exit 2)

    @property
    def name(self) -> str:
        return Path(self.path).name if self.path else "<log>"

    @property
    def terminated_by_launcher(self) -> bool:
        """paddle's FatalError `Termination signal`: the launcher stopped this rank (after another failed)."""
        return any("Termination signal" in line for line in self.fatal_lines)


def strip_ansi(text: str) -> str:
    """Remove ANSI colour/cursor escape sequences."""
    return ANSI_RE.sub("", text)


def _fields(body: str) -> tuple[dict[str, str], Optional[str], Optional[str]]:
    """(`name: value` pairs, eta, what is odd: a repeated field or a part that is no field) of a line body.

    Linear in its length.

    eta (which contains a comma) is split off first: it is the rest of the body after the first `eta:`.
    """
    parts, eta = body.split(","), None
    for k, part in enumerate(parts):
        if part.lstrip().startswith("eta:"):
            eta = ",".join(parts[k:]).lstrip()[4:].strip()
            parts = parts[:k]
            break
    out: dict[str, str] = {}
    odd = None
    for part in parts:
        name, sep, value = part.partition(":")
        name = name.strip()
        if not sep or not FIELD_NAME_RE.fullmatch(name):
            odd = odd or (f"text {shown(part.strip(), 40)} is not a `name: value` field" if part.strip() else None)
            continue
        if name in out and odd is None:
            odd = f"field {shown(name, 40)} appears twice (two ranks' lines spliced into one?)"
        out[name] = value.strip()
    return out, eta, odd


def _number(name: str, text: str) -> tuple[Optional[float], str]:
    """(value, problem) of a required field: `lr`, `batch_cost`, `reader_cost` or `ips` (with its unit)."""
    token, _, unit = text.partition(" ")
    problem = number_text_problem(token)
    if problem is None and unit.strip() and (name != "ips" or not UNIT_RE.fullmatch(unit.strip())):
        problem = f"{shown(text)} is not a number"
    if problem:
        return None, f"{name}: {problem}"
    value = float(token)
    if value < 0:
        return None, f"{name}: {token} is negative"
    if name == "ips" and not MIN_IPS <= value <= MAX_IPS:
        return None, f"ips: {token} is not a rate (must be {MIN_IPS:g} to {MAX_IPS:g} images/s)"
    return value, ""


def _values(fields: dict[str, str], mem: Optional[str]) -> tuple[dict[str, Optional[float]], str]:
    """Required numbers (None when absent) and the first bad value ("" when all are measurements)."""
    nums: dict[str, Optional[float]] = {}
    bad = ""
    for key in REQUIRED:
        text = fields.pop(key, None)
        nums[key], problem = (None, "") if text is None else _number(key, text)
        bad = bad or problem
    for name, value in fields.items():  # loss, top1, ...: printed numbers; nan/inf is a diverged run
        problem = number_text_problem(value, allow_non_finite=True)
        bad = bad or (f"{name}: {problem}" if problem else "")
    if mem is not None and not bad:
        problem = number_text_problem(mem)
        bad = f"max mem: {problem}" if problem else ""
    return nums, bad


def _train_record(m: re.Match, line_no: int, source: str, last_unterminated: bool, more: int):
    """A StepRecord, or a Malformed when fields are missing or bad, or the line is cut."""
    epoch, epochs, it, ipe = (int(m.group(i)) for i in range(1, 5))
    fields, eta, odd = _fields(m.group(5))
    mem = fields.pop("max mem", None)
    if mem is not None and mem.endswith("GB"):
        mem = mem[:-2].strip()
    nums, bad = _values(fields, mem)
    if odd:
        bad = odd
    elif more:
        bad = f"line is longer than {MAX_LINE} characters ({more} more bytes)"
    missing = tuple(k for k, v in nums.items() if v is None) if not bad else ()
    cut_line = last_unterminated and (eta is None or not ETA_RE.match(eta))
    if bad and cut_line:
        bad = ""  # a cut last line is reported as truncated, whatever its last value looks like
    if missing or cut_line or bad:
        return Malformed(line_no, f"{it}/{ipe}", missing, cut_line, cut(m.group(0)), bad)
    return StepRecord(epoch, epochs, it, ipe, nums["lr"], fields, nums["batch_cost"], nums["reader_cost"],
                      nums["ips"], mem, eta or "", line_no, source)


def _source(prefix: str) -> str:
    if PASSL_PREFIX_RE.search(prefix):
        return "passl"
    return "paddle" if re.search(r"\[\s*[A-Z]+\]\s+\S+:[0-9]+ - $", prefix) else "plain"


def _dedupe(found: list[tuple[str, str, object]]) -> tuple[list, int]:
    """Keep `passl` lines; keep another form only when no identical passl line exists (Paddle 3.x); keep
    one of the same line written twice."""
    passl_keys = {key for src, key, _ in found if src == "passl"}
    kept, seen, dropped = [], set(), 0
    for src, key, item in found:
        if key in seen or (src != "passl" and key in passl_keys):
            dropped += 1
            continue
        seen.add(key)
        kept.append(item)
    return kept, dropped


def _header(text: str) -> tuple[Optional[dict], Optional[str]]:
    """The run header JSON and None, or None and why it cannot be used (known fields are type-checked)."""
    try:
        head = loads_json(text)
    except JSONInputError as err:
        return None, f"run header is not usable: {err}"
    if not isinstance(head, dict):
        return None, f"run header is {type(head).__name__}, not a JSON object"
    for key in HEADER_INTS:
        value = head.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 31):
            return None, f"run header field {key!r} is {shown(value, 60)}, expected a whole number"
    for key in HEADER_TEXTS:
        value = head.get(key)
        if value is not None and not (isinstance(value, str) and len(value) <= MAX_STORED):
            return None, f"run header field {key!r} is {shown(value, 60)}, expected a short text"
    overrides = head.get("overrides")
    if overrides is not None and not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
        return None, "run header field 'overrides' is not a list of texts"
    return head, None


def _is_exception_line(seg: str) -> bool:
    """`ValueError: ...`, `paddle.base.core.EnforceNotMet`-style last line of a traceback (linear)."""
    name = seg.split(":", 1)[0]
    if not EXC_NAME_RE.fullmatch(name):
        return False
    last = name.rsplit(".", 1)[-1]
    return any(word in last for word in EXC_WORDS)


def _parse(lines: Iterator[tuple[str, int, bool]], path: Optional[str]) -> ParsedLog:
    """The one pass over a log's lines (see parse_log_text)."""
    log = ParsedLog(path, [], [], False, [], [])
    train, summaries, evals = [], [], []
    fatal, problems, tail = Kept(), Kept(), deque(maxlen=TAIL_LINES)
    in_traceback = False
    for line_no, (line, more, terminated) in enumerate(lines, 1):
        log.n_lines = line_no
        segs = [s for s in strip_ansi(line).split("\r") if s.strip()]
        if segs:
            tail.append(shown_line(segs[-1].rstrip(), more))
        for j, seg in enumerate(segs):
            seg = seg.rstrip()
            last_cut = not terminated and j == len(segs) - 1
            in_traceback = _scan_segment(log, seg, line_no, last_cut, more, (train, summaries, evals),
                                         (fatal, problems), in_traceback)
    log.records, log.duplicates = _dedupe(train)
    log.epoch_summaries, _ = _dedupe(summaries)
    log.evals, _ = _dedupe(evals)
    log.fatal_lines, log.problems, log.tail = fatal.items("error lines"), problems.items("problems"), list(tail)
    return log


def _scan_segment(log: ParsedLog, seg: str, line_no: int, last_cut: bool, more: int, found: tuple,
                  kept: tuple, in_traceback: bool) -> bool:
    """Fold one `\\r` segment into `log`; returns whether a Python traceback is still open."""
    train, summaries, evals = found
    fatal, problems = kept
    m = TRAIN_RE.search(seg)
    if m:
        item = _train_record(m, line_no, _source(seg[: m.start()]), last_cut, more)
        if isinstance(item, Malformed):
            log.malformed.append(item)
            why = (item.bad if item.bad else "truncated last line" if item.truncated
                   else f"missing {', '.join(item.missing)}")
            problems.add(f"line {line_no}: {why} in [Train] line {item.marker}")
        else:
            train.append((item.source, m.group(0), item))
    elif (m := EPOCH_AVG_RE.search(seg)) or (m := EVAL_RE.search(seg)):
        is_eval = m.re is EVAL_RE
        rec = AvgRecord(int(m.group(1)), _fields(m.group(m.lastindex))[0], line_no,
                        None if is_eval else int(m.group(2)))
        (evals if is_eval else summaries).append((_source(seg[: m.start()]), m.group(0), rec))
    elif (m := HEADER_RE.search(seg)) and log.header is None and log.header_problem is None:
        log.header, log.header_problem = _header(m.group(1)) if not more else (
            None, f"run header line is longer than {MAX_LINE} characters")
        if log.header_problem:
            problems.add(f"line {line_no}: {log.header_problem}")
    elif (m := EARLY_STOP_RE.search(seg)) and not log.early_stop:
        log.early_stop, log.early_stop_line = True, m.group(0)
    if log.peer_error is None and (m := PEER_ERROR_RE.search(seg)):
        log.peer_error = m.group(0)
    if "FatalError" in seg or "Traceback (most recent call last)" in seg:
        fatal.add(shown_line(seg.strip(), more))
        return in_traceback or "Traceback" in seg
    if in_traceback and _is_exception_line(seg):
        fatal.add(shown_line(seg.strip(), more))
        return False
    return in_traceback


def parse_log_text(text: str, path: Optional[str] = None) -> ParsedLog:
    """Parse one worker log's text."""
    return _parse(text_lines(text), path)


def parse_log_file(path: Union[str, Path]) -> ParsedLog:
    """Parse one worker log file, line by line (bytes decoded as UTF-8, bad bytes replaced).

    A folder in its place is a malformed log dir (RunFailed, exit 2); a file that cannot be read is an
    environment error (exit 6: permission, I/O) or a usage error (exit 3).
    """
    try:
        with open_regular(path) as handle:
            return _parse(file_lines(handle), str(path))
    except NotRegularFile as err:
        raise RunFailed("malformed_log", f"{path} is {err.kind}, not a worker log: remove or rename it") from None
    except OSError as err:
        raise from_os_error(err, f"cannot read log {path}") from None


def resolve_logdir(logdir: Union[str, Path]) -> Path:
    """The folder holding `workerlog.<rank>`: LOGDIR itself or LOGDIR/log (a run folder)."""
    root = Path(logdir)
    if not root.is_dir():
        raise SwavbenchError(f"log dir {root} does not exist: pass the launch log dir (default ./log)")
    for cand in (root, root / "log"):
        if any(_rank_of(p) is not None for p in cand.glob("workerlog.*")):
            return cand
    raise SwavbenchError(f"no workerlog.<rank> files in {root}: pass the launch log dir (default ./log)")


def _rank_core(path: Path, prefix: str, suffix: str) -> Optional[str]:
    name = path.name
    if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) < len(prefix) + len(suffix):
        return None
    return name[len(prefix) : len(name) - len(suffix)]


def _rank_of(path: Path, prefix: str = "workerlog.", suffix: str = "") -> Optional[int]:
    """The rank of a file launch (or the trainer) names `<prefix><rank><suffix>`, else None."""
    core = _rank_core(path, prefix, suffix)
    return int(core) if core is not None and RANK_RE.fullmatch(core) else None


def _ranked_files(root: Path, prefix: str, suffix: str = "") -> dict[int, Path]:
    """{rank: path} of `<prefix><rank><suffix>` files; a name that only looks like one is refused (exit 2).

    `workerlog.00` would alias rank 0 and `workerlog.²` is no number: launch writes neither.
    """
    out = {}
    for p in root.glob(f"{prefix}*{suffix}"):
        core = _rank_core(p, prefix, suffix)
        if core is None:
            continue
        rank = _rank_of(p, prefix, suffix)
        if rank is None and core.isdigit():
            raise RunFailed("malformed_log", f"{shown(str(p))} is not a name launch writes ({prefix}<rank>{suffix}, "
                            "rank without leading zeros): remove or rename it")
        if rank is not None:
            out[rank] = p
    return dict(sorted(out.items()))


def parse_log_dir(logdir: Union[str, Path]) -> dict[int, ParsedLog]:
    """Parse every `workerlog.<rank>` of a launch log dir, keyed by rank."""
    root = resolve_logdir(logdir)
    return {r: parse_log_file(p) for r, p in _ranked_files(root, "workerlog.").items()}


__all__ = ["AvgRecord", "Malformed", "ParsedLog", "StepRecord", "StepsLog", "parse_log_dir", "parse_log_file",
           "parse_log_text", "parse_steps_text", "read_steps_dir", "read_steps_file", "resolve_logdir",
           "step_problem", "strip_ansi"]


def read_steps_dir(logdir: Union[str, Path]) -> dict[int, StepsLog]:
    """Every `steps.<rank>.jsonl` beside the worker logs (empty dict for PASSL's own logs)."""
    root = resolve_logdir(logdir)
    return {rank: read_steps_file(p) for rank, p in _ranked_files(root, "steps.", ".jsonl").items()}
