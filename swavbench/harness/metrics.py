"""Parsed logs -> the figures check_result judges, and per-rank health (pure, but `analyse_logdir` reads files).

check_result (PASSL tests/CI/case.sh) reads from workerlog.0: the loss STRING on the marker line, the mean
ips of all logged lines but the first (warm-up), and the `max mem` string on the marker line. A run that
cannot give these is a named `RunFailed`, never an empty string: no_records, nan_loss, missing_marker,
missing_field, too_few_lines; `check_ranks` adds rank_died and terminated. Corrupt input is never judged as
a measurement: a train line of rank 0 with a bad value (malformed_line), an unusable run header
(malformed_header) or a corrupt steps file (malformed_steps) fails the run (exit 2) before anything else.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Optional, Union

from swavbench.errors import ConfigError, RunFailed
from swavbench.harness.logparse import ParsedLog, StepRecord, StepsLog, parse_log_dir, read_steps_dir, resolve_logdir
from swavbench.harness.stats import Steady, steady_ips
from swavbench.inputs import MARKER_RE, MAX_IPS, MIN_IPS, shown

METRIC_RE = re.compile(r"[A-Za-z_][\w ]{0,63}")  # a field name of the train line (loss, top1, CELoss)


@dataclass
class Summary:
    marker: str
    loss: str  # the metric's string on the marker line (named by `metric`, default "loss")
    ips: float  # mean over the lines after the warm-up, like check_result
    max_mem: Optional[str]
    ips_values: list[float]
    warmup_lines: int
    n_lines: int
    metric: str = "loss"
    marker_line_no: int = 0
    marker_epoch: int = 0
    marker_step: int = 0  # global step of the marker line (1-based)
    ips_median: float = 0.0  # robust stats over the same lines as the mean
    ips_iqr: float = 0.0
    ips_spread_pct: float = 0.0  # IQR / median * 100
    notes: list[str] = field(default_factory=list)
    steady: Optional[Steady] = None  # steady-state ips from rank 0's steps.jsonl (judges when present)


def check_marker(marker: str) -> tuple[int, int]:
    """(iter, iters_per_epoch) of a marker like "200/2599"; ConfigError otherwise."""
    m = MARKER_RE.match(marker) if isinstance(marker, str) else None
    if not m:
        raise ConfigError(f"marker must look like ITER/ITERS_PER_EPOCH (e.g. 200/2599), got {shown(marker, 60)}")
    return int(m.group(1)), int(m.group(2))


def check_metric(metric: str) -> str:
    """The metric name (a train line field like `loss`); ConfigError otherwise."""
    if not isinstance(metric, str) or not METRIC_RE.fullmatch(metric):
        raise ConfigError(f"--metric must be a field name of the train line (e.g. loss, top1), got {shown(metric, 60)}")
    return metric


def check_malformed(log: ParsedLog) -> None:
    """RunFailed(malformed_line) when a train line has a value that is not a measurement (exit 2)."""
    bad = [m for m in log.malformed if m.bad]
    if bad:
        more = f" (and {len(bad) - 1} more such line(s))" if len(bad) > 1 else ""
        raise RunFailed("malformed_line", f"malformed line in {log.name} line {bad[0].line_no} ([Train] "
                        f"{bad[0].marker}): {bad[0].bad}{more}: the log is corrupt, not a measurement; rerun "
                        "the case (or fix the log)")


def non_finite(value: str) -> bool:
    """True for nan/inf spellings (`nan`, `-inf`, `NaN`, `inf`...)."""
    try:
        return not math.isfinite(float(value))
    except ValueError:
        return False


def _where(log: ParsedLog, r: StepRecord) -> str:
    return f"epoch {r.epoch} iter {r.marker} (step {r.global_step}, {log.name} line {r.line_no})"


def _check_finite(log: ParsedLog, upto: list[StepRecord]) -> None:
    for r in upto:
        bad = [name for name, value in r.metrics.items() if non_finite(value)]
        if bad:
            shown = ", ".join(f"{n}: {r.metrics[n]}" for n in bad)
            raise RunFailed("nan_loss", f"{shown} at {_where(log, r)}: training diverged")


def _missing_marker(log: ParsedLog, marker: str, ipe: int) -> RunFailed:
    bad = [m for m in log.malformed if m.marker == marker]
    if bad and bad[-1].truncated:
        return RunFailed("missing_marker", f"marker {marker} is only on the truncated last line "
                         f"{bad[-1].line_no} of {log.name}: the log was cut mid-line "
                         "(run killed or disk full)")
    if bad:
        return RunFailed("missing_field", f"marker line {marker} ({log.name} line {bad[-1].line_no}) "
                         f"has no {', '.join(bad[-1].missing)} field")
    last = log.records[-1]
    seen = sorted({r.marker for r in log.records}, key=lambda s: int(s.split("/")[0]))
    listed = ", ".join(seen) if len(seen) <= 6 else f"{', '.join(seen[:3])}, ..., {', '.join(seen[-2:])}"
    msg = (f"marker {marker} not found in {log.name}: the last logged step is {last.marker} "
           f"(epoch {last.epoch}, line {last.line_no}); markers seen: {listed}")
    if last.iters_per_epoch != ipe:
        msg += f"; this log has {last.iters_per_epoch} iterations per epoch, not {ipe} (other profile?)"
    if log.early_stop_line:
        msg += f"; the run stopped early: '{log.early_stop_line}'"
    elif log.fatal_lines:
        msg += f"; the log has an error: {log.fatal_lines[-1]}"
    elif any(m.truncated for m in log.malformed):
        msg += "; the log ends with a truncated line"
    return RunFailed("missing_marker", msg)


def _robust(values: list[float]) -> tuple[float, float]:
    """(median, inter-quartile range)."""
    med = statistics.median(values)
    if len(values) < 2:
        return med, 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return med, q3 - q1


def summarize(log: ParsedLog, marker: str, warmup_lines: int = 1, metric: str = "loss") -> Summary:
    """The check_result figures of one (rank 0) log; RunFailed names why they cannot be read."""
    _, ipe = check_marker(marker)
    check_metric(metric)
    if warmup_lines < 0:
        raise ConfigError(f"--warmup must be >= 0, got {warmup_lines}")
    check_malformed(log)
    recs = log.records
    if not recs:
        why = f"; last line: {log.tail[-1]}" if log.tail else " (the log is empty)"
        if log.fatal_lines:
            why = f"; the log has an error: {log.fatal_lines[-1]}"
        raise RunFailed("no_records", f"no [Train] step lines in {log.name}{why}")
    hits = [i for i, r in enumerate(recs) if r.marker == marker]
    _check_finite(log, recs[: hits[-1] + 1] if hits else recs)
    if not hits:
        raise _missing_marker(log, marker, ipe)
    at = recs[hits[-1]]
    if metric not in at.metrics:
        raise RunFailed("missing_field", f"marker line {marker} ({log.name} line {at.line_no}) has no "
                        f"'{metric}:' field; it has: {', '.join(at.metrics) or 'no metrics'}")
    values = [r.ips for r in recs[warmup_lines:]]
    if not values:
        raise RunFailed("too_few_lines", f"{log.name} has {len(recs)} train line(s): ips needs at least one "
                        f"line after the {warmup_lines} warm-up line(s)")
    # Sum the printed decimals exactly (as written in the log), then convert once.
    mean = float(sum(Decimal(repr(v)) for v in values) / len(values))
    med, iqr = _robust(values)
    notes = []
    if len(hits) > 1:
        notes.append(f"marker {marker} appears {len(hits)} times; used the last (epoch {at.epoch})")
    if hits[-1] < len(recs) - 1:
        notes.append(f"ips averaged over all {len(values)} lines after warm-up, including "
                     f"{len(recs) - 1 - hits[-1]} after the marker (as check_result does)")
    if log.malformed:
        notes.append(f"{len(log.malformed)} malformed train line(s) ignored: {log.problems[0]}")
    return Summary(marker, at.metrics[metric], mean, at.max_mem, values, warmup_lines, len(recs), metric,
                   at.line_no, at.epoch, at.global_step, med, iqr, iqr / med * 100 if med else 0.0, notes)


def marker_step(log: Optional[ParsedLog], marker: str) -> int:
    """Global step of the marker: from rank 0's marker line, else assuming epoch 1 (CI runs)."""
    it, _ = check_marker(marker)
    hits = [r for r in (log.records if log else []) if r.marker == marker]
    return hits[-1].global_step if hits else it + 1


@dataclass
class RankHealth:
    rank: int
    status: str  # ok | crashed | killed | peer_abort | ended_early | terminated
    last_step: Optional[int]  # from steps.<rank>.jsonl when present
    reached_marker: Optional[bool]  # None when unknown (no JSONL)
    fatal_lines: list[str]
    log_tail: list[str]
    reason: str = ""


def _ranks_text(ranks: list[int]) -> str:
    """[0, 1, 2, 4] -> "0-2,4"."""
    parts, i = [], 0
    while i < len(ranks):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] == ranks[j] + 1:
            j += 1
        parts.append(str(ranks[i]) if i == j else f"{ranks[i]}-{ranks[j]}")
        i = j + 1
    return ",".join(parts)


def rank_health(logs: dict[int, ParsedLog], steps: dict[int, StepsLog],
                marker_step: Optional[int]) -> list[RankHealth]:
    """Classify every rank seen in worker logs or step files (marker_step None: reach unknown)."""
    out = []
    for rank in sorted(set(logs) | set(steps)):
        log, st = logs.get(rank), steps.get(rank)
        fatal = log.fatal_lines if log else []
        last = st.last_step if st else None
        reached = None if st is None or marker_step is None else (last is not None and last >= marker_step)
        if log is not None and log.terminated_by_launcher:
            status, reason = "terminated", "terminated by the launcher (FatalError `Termination signal`)"
        elif fatal and log is not None and log.peer_error:
            status = "peer_abort"
            reason = f"aborted on a collective error ({log.peer_error}): a peer died or hung first"
        elif fatal:
            status, reason = "crashed", f"crashed: {fatal[-1]}"
        elif reached is False:
            status = "ended_early"
            reason = f"stopped at step {last or 0} before the marker (step {marker_step})"
        else:
            status, reason = "ok", ""
        out.append(RankHealth(rank, status, last, reached, list(fatal), log.tail if log else [], reason))
    terminated = [h.rank for h in out if h.status == "terminated"]
    peer_aborted = [h.rank for h in out if h.status == "peer_abort"]
    for h in out:
        if (terminated or peer_aborted) and h.status in ("ok", "ended_early"):
            # A silent rank while the others were terminated or lost a peer died first, unless it finished.
            if not (logs.get(h.rank) is not None and logs[h.rank].early_stop):
                at = f" at step {h.last_step}" if h.last_step is not None else ""
                others = (f"rank(s) {_ranks_text(terminated)} were terminated" if terminated else
                          f"rank(s) {_ranks_text(peer_aborted)} aborted on a collective error")
                h.status = "killed"
                h.reason = (f"died{at}: its log ends without an error while {others}: killed by a signal "
                            "(OOM killer? see dmesg)")
    return out


def check_ranks(health: list[RankHealth]) -> None:
    """RunFailed naming the rank(s) that died first; `err.details` holds the first one's log tail."""
    order = {"crashed": 0, "killed": 1, "peer_abort": 2, "ended_early": 3}
    bad = sorted((h for h in health if h.status in order),
                 key=lambda h: (order[h.status], h.last_step if h.last_step is not None else -1, h.rank))
    if bad:
        first = bad[0]
        also = [h.rank for h in bad[1:] if h.status != "peer_abort" or first.status == "peer_abort"]
        more = f" (also: rank {_ranks_text(sorted(also))})" if also else ""  # peers that lost it: in the reason
        err = RunFailed("rank_died", f"rank {first.rank} {first.reason}{more}")
        err.details = [f"last lines of workerlog.{first.rank}:"] + [f"  {t}" for t in first.log_tail[-10:]]
        raise err
    terminated = [h.rank for h in health if h.status == "terminated"]
    if terminated:
        err = RunFailed("terminated", f"rank(s) {_ranks_text(terminated)} were terminated (FatalError "
                        "`Termination signal`) with no rank at fault: stopped from outside "
                        "(timeout, Ctrl-C?)")
        tail = next(h.log_tail for h in health if h.rank == terminated[0])
        err.details = [f"last lines of workerlog.{terminated[0]}:"] + [f"  {t}" for t in tail[-10:]]
        raise err


def global_batch(log: ParsedLog) -> int:
    """Images per step over all ranks: from the run header, else from a log line (ips x batch_cost)."""
    h = log.header or {}
    if isinstance(h.get("batch_size_per_device"), int) and isinstance(h.get("world_size"), int):
        return h["batch_size_per_device"] * h["world_size"]
    products = [r.ips * r.batch_cost for r in log.records if r.batch_cost]
    return round(statistics.median(products)) if products else 0


def steady_of(log: ParsedLog, steps: Optional[StepsLog], upto_step: int) -> Optional[Steady]:
    """Steady-state ips of rank 0's per-step records up to the marker step (None without a steps file)."""
    if steps is None:
        return None
    rows = sorted((s for s in steps.steps if int(s["step"]) <= upto_step), key=lambda s: int(s["step"]))
    costs = [float(s["batch_cost"]) for s in rows if isinstance(s.get("batch_cost"), (int, float))]
    steady = steady_ips(costs, global_batch(log))
    if steady is not None and not MIN_IPS <= steady.rate <= MAX_IPS:
        raise RunFailed("malformed_steps", f"{steps.name}: the batch costs give a steady rate of {steady.rate:g} "
                        "images/s, not a measurement: the steps file is corrupt; rerun the case")
    return steady


def check_inputs(rank0: ParsedLog, steps: dict[int, StepsLog]) -> None:
    """RunFailed for input that cannot be judged: a bad train line or run header of rank 0, a corrupt steps file."""
    check_malformed(rank0)
    if rank0.header_problem:
        raise RunFailed("malformed_header", f"{rank0.name}: {rank0.header_problem}: the run header is corrupt; rerun "
                        "the case (or remove the line to judge the log without it)")
    for rank, st in steps.items():
        if st.corrupt:
            more = f" (and {len(st.corrupt) - 1} more)" if len(st.corrupt) > 1 else ""
            raise RunFailed("malformed_steps", f"steps.{rank}.jsonl {st.corrupt[0]}{more}: the steps file is "
                            "corrupt; rerun the case (or remove the file to judge the worker log alone)")


@dataclass
class RunAnalysis:
    """Everything `parse`/`compare` (and the case runner) read from one log dir."""

    logdir: str
    logs: dict[int, ParsedLog]
    steps: dict[int, StepsLog]
    marker: Optional[str]
    marker_source: str  # "given" | "last logged line"
    health: list[RankHealth]
    summary: Optional[Summary]
    failure: Optional[RunFailed]


def analyse_logdir(logdir: Union[str, Path], marker: Optional[str] = None, warmup_lines: int = 1,
                   metric: str = "loss") -> RunAnalysis:
    """Read a launch log dir (the one impure helper here): per-rank logs, health and rank 0's summary.

    Without a marker, rank 0's last logged step is used. A NaN loss outranks a dead rank (it is the
    likelier cause); otherwise a dead rank outranks a missing marker.
    """
    root = resolve_logdir(logdir)
    if marker:
        check_marker(marker)
    check_metric(metric)
    logs, steps = parse_log_dir(root), read_steps_dir(root)
    source = "given" if marker else "last logged line"
    rank0 = logs.get(0)
    if not marker and rank0 and rank0.records:
        marker = rank0.records[-1].marker
    health = rank_health(logs, steps, marker_step(rank0, marker) if marker else None)
    summary, failure = None, None
    try:
        if rank0 is None:
            raise RunFailed("no_records", f"no workerlog.0 in {root}: rank 0 writes the step lines")
        check_inputs(rank0, steps)
        summary = summarize(rank0, marker or "0/0", warmup_lines, metric)
        summary.steady = steady_of(rank0, steps.get(0), summary.marker_step)
    except RunFailed as err:
        failure = err
    if failure is None or failure.kind != "nan_loss":
        try:
            check_ranks(health)
        except RunFailed as err:
            failure = err
    return RunAnalysis(str(root), logs, steps, marker, source, health, summary, failure)
