"""`swavbench compare LOGDIR --baseline FILE [--marker M] [--warmup N] [--allow-mismatch] [--json]`,
or `swavbench compare RUN_A RUN_B`: run B judged against run A with the same rules (compare_runs.py).

The check_result replacement: one table (metric, baseline, measured, diff, tolerance, verdict), one line
saying what happened and one saying what to do. Exit 0 pass, 1 regression, 2 run failed, 3 usage/baseline.
The marker defaults to the baseline's. The profile checked against the baseline is this machine's
(`--profile` for a log from another machine); the paddle version is the run header's, else the installed one.
"""

from __future__ import annotations

import argparse
import json
from typing import Optional

from swavbench.commands.parse import add_log_options, analysis_dict, health_lines
from swavbench.errors import SwavbenchError
from swavbench.harness.baselines import check_compatible, load_baseline, machine_profile
from swavbench.harness.compare import Verdict, compare, format_table, verdict_from_failure, verdict_to_dict
from swavbench.harness.metrics import RunAnalysis, analyse_logdir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="judge worker logs against a baseline (check_result), or run B "
                                   "against run A")
    add_log_options(parser)
    parser.add_argument("run_b", nargs="?", default=None, metavar="RUN_B",
                        help="a second run folder: judge it against the first (LOGDIR = RUN_A) instead of --baseline")
    parser.add_argument("--baseline", default=None, metavar="FILE", help="baseline JSON file")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="compare even if the baseline is from another profile or paddle version")
    parser.add_argument("--profile", default=None,
                        help="profile the log was produced on (default: this machine's)")
    parser.set_defaults(func=run)


def _installed_paddle() -> Optional[str]:
    from importlib import metadata

    for dist in ("paddlepaddle", "paddlepaddle-gpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _run_facts(a: RunAnalysis) -> tuple[Optional[str], Optional[str], Optional[int]]:
    """(paddle_version, device, threads) from rank 0's run header when present."""
    header = (a.logs.get(0).header if a.logs.get(0) else None) or {}
    threads = header.get("threads")
    return header.get("paddle_version"), header.get("device"), threads if isinstance(threads, int) else None


def _two_runs(args: argparse.Namespace) -> int:
    """`compare RUN_A RUN_B` (exactly one of RUN_B and --baseline)."""
    from swavbench.commands import compare_runs

    if args.run_b is None:
        raise SwavbenchError("compare needs --baseline FILE, or a second run: swavbench compare RUN_A RUN_B")
    if args.baseline is not None:
        raise SwavbenchError("give --baseline FILE or a second run RUN_B, not both")
    return compare_runs.run(args)


def judge(a: RunAnalysis, baseline, case_id: str) -> Verdict:
    """Verdict for an analysed log dir: a named failure, or the check_result comparison."""
    if a.failure is not None:
        return verdict_from_failure(a.failure, case_id)
    return compare(a.summary, baseline, case_id)


def run(args: argparse.Namespace) -> int:
    if args.run_b is not None or args.baseline is None:
        return _two_runs(args)
    baseline = load_baseline(args.baseline)
    a = analyse_logdir(args.logdir, args.marker or baseline.metrics["marker"], args.warmup, args.metric)
    paddle_version, device, threads = _run_facts(a)
    profile = args.profile or machine_profile(threads=threads, device=device)
    warnings = check_compatible(baseline, profile, paddle_version or _installed_paddle(), args.allow_mismatch)
    verdict = judge(a, baseline, baseline.case)
    if args.json:
        print(json.dumps({"verdict": verdict_to_dict(verdict), "warnings": warnings, "profile": profile,
                          "baseline": str(args.baseline), "analysis": analysis_dict(a)}, indent=2))
        return verdict.exit_code
    out = [f"case {baseline.case}: {a.logdir} vs {args.baseline} at marker {a.marker}"] + warnings
    out += [format_table(verdict)] if verdict.checks else []
    out += [f"{verdict.status.upper()}: {verdict.message}"]
    if verdict.advice:
        out.append(f"what to do: {verdict.advice}")
    out += health_lines(a) if verdict.status != "failed" else []
    out += verdict.details
    if a.summary:
        out += [f"note: {n}" for n in a.summary.notes]
    print("\n".join(out))
    return verdict.exit_code
