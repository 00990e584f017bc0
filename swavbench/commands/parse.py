"""`swavbench parse LOGDIR [--json] [--marker M] [--warmup N] [--metric NAME]`.

Reads `workerlog.*` (and `steps.*.jsonl` when present) of a launch log dir, prints per-rank step records,
rank health and the figures check_result uses. Exit 0 when the summary could be read, 2 when the run
failed (named failure), 3 on usage errors (no such dir, bad marker).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from swavbench.errors import EXIT_OK, EXIT_RUN_FAILED
from swavbench.harness.logparse import ParsedLog
from swavbench.harness.metrics import RunAnalysis, Summary, analyse_logdir


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `parse` and `compare`."""
    parser.add_argument("logdir", help="launch log dir holding workerlog.<rank> (or a run folder with log/)")
    parser.add_argument("--marker", default=None, help="step marker ITER/ITERS_PER_EPOCH, e.g. 200/2599")
    parser.add_argument("--warmup", type=int, default=1, metavar="N",
                        help="first N logged lines left out of the ips mean (PASSL: 1)")
    parser.add_argument("--metric", default="loss", help="metric read on the marker line (default: loss)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("parse", help="parse PASSL worker logs: step records and summary")
    add_log_options(parser)
    parser.set_defaults(func=run)


def _rank_line(rank: int, log: ParsedLog) -> str:
    parts = [f"workerlog.{rank}: {len(log.records)} train line(s)"]
    if log.records:
        parts[0] += f" ({log.records[0].marker} .. {log.records[-1].marker})"
    if log.duplicates:
        parts.append(f"{log.duplicates} duplicate line(s) ignored (Paddle 3.x copies, lines written twice)")
    if log.early_stop_line:
        parts.append(f"early stop: {log.early_stop_line}")
    if log.fatal_lines:
        parts.append(f"error: {log.fatal_lines[-1]}")
    parts += log.problems[:3]
    return "; ".join(parts)


def _records_table(log: ParsedLog, metric: str) -> list[str]:
    rows = [("epoch", "iter", metric, "ips", "max mem", "line")]
    for r in log.records:
        rows.append((f"{r.epoch}/{r.epochs}", r.marker, r.metrics.get(metric, "-"), f"{r.ips:.5f}",
                     r.max_mem or "-", str(r.line_no)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def summary_lines(s: Summary) -> list[str]:
    """The check_result figures in words."""
    mem = f"{s.max_mem} GB" if s.max_mem is not None else "absent"
    lines = [
        f"{s.metric} at {s.marker}: {s.loss} (epoch {s.marker_epoch}, step {s.marker_step}, line "
        f"{s.marker_line_no})",
        f"ips: {s.ips:.4f} img/s = mean of {len(s.ips_values)} line(s) after {s.warmup_lines} warm-up; "
        f"median {s.ips_median:.2f}, IQR {s.ips_iqr:.2f} ({s.ips_spread_pct:.1f}%)",
        f"max mem at {s.marker}: {mem}",
    ]
    return lines + [f"note: {n}" for n in s.notes]


def failure_lines(a: RunAnalysis) -> list[str]:
    err = a.failure
    if err is None:
        return []
    return [f"RUN FAILED ({err.kind}): {err}"] + list(getattr(err, "details", []) or [])


def health_lines(a: RunAnalysis) -> list[str]:
    bad = [h for h in a.health if h.status != "ok"]
    if not a.steps and not bad:
        return []
    if not bad:
        return [f"ranks: all {len(a.health)} reached the marker"]
    return [f"rank {h.rank}: {h.status}: {h.reason}" for h in bad]


def analysis_dict(a: RunAnalysis) -> dict:
    """JSON form of an analysis (records, health, summary, failure)."""
    return {
        "logdir": a.logdir,
        "marker": a.marker,
        "marker_source": a.marker_source,
        "ranks": {str(r): asdict(log) for r, log in a.logs.items()},
        "steps": {str(r): {"path": s.path, "last_step": s.last_step, "problems": s.problems}
                  for r, s in a.steps.items()},
        "health": [asdict(h) for h in a.health],
        "summary": asdict(a.summary) if a.summary else None,
        "failure": None if a.failure is None else {
            "kind": a.failure.kind, "message": str(a.failure), "details": getattr(a.failure, "details", [])},
    }


def run(args: argparse.Namespace) -> int:
    a = analyse_logdir(args.logdir, args.marker, args.warmup, args.metric)
    code = EXIT_RUN_FAILED if a.failure else EXIT_OK
    if args.json:
        print(json.dumps(analysis_dict(a), indent=2))
        return code
    out = [f"log dir: {a.logdir}"]
    out += [_rank_line(r, log) for r, log in a.logs.items()]
    if 0 in a.logs and a.logs[0].records:
        out += ["", "rank 0 step lines:"] + _records_table(a.logs[0], args.metric)
    out.append("")
    if a.marker_source != "given" and a.marker:
        out.append(f"no --marker given: using the last logged step of rank 0, {a.marker}")
    if a.summary:
        out += summary_lines(a.summary)
    out += health_lines(a) + failure_lines(a)
    print("\n".join(out))
    return code
