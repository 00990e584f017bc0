"""`swavbench compare LOGDIR --baseline FILE [--marker M] [--warmup N] [--allow-mismatch] [--json]`.

The check_result replacement: one table (metric, baseline, measured, diff, tolerance, verdict), one line
saying what happened and one saying what to do. Exit 0 pass, 1 regression, 2 run failed, 3 usage/baseline.
The marker defaults to the baseline's. The log is judged against the file named: it is refused only when
the log's own run header proves another device class (cpu vs gpu) or another case. A log without a run
header (every PASSL log) has no known machine: it is judged, with one warning line saying so. Another
machine profile or paddle version in the header is a warning too (`--profile` names the log's machine
when the header does not).
"""

from __future__ import annotations

import argparse
import json
from typing import Optional

from swavbench.commands.parse import add_log_options, analysis_dict, health_lines
from swavbench.harness.baselines import check_named_baseline, load_baseline, resolve_baseline_file
from swavbench.harness.compare import Verdict, compare, format_table, verdict_from_failure, verdict_to_dict
from swavbench.harness.metrics import RunAnalysis, analyse_logdir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="judge worker logs against a baseline (check_result)")
    add_log_options(parser)
    parser.add_argument("--baseline", required=True, metavar="FILE", help="baseline JSON file")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="compare even if the run header shows another device class (cpu/gpu) or case")
    parser.add_argument("--profile", default=None,
                        help="machine profile the log was produced on (default: the run header's, if any)")
    parser.set_defaults(func=run)


def _header(a: RunAnalysis) -> Optional[dict]:
    """Rank 0's run header, or None (a PASSL log has none)."""
    log = a.logs.get(0)
    return (log.header if log else None) or None


def judge(a: RunAnalysis, baseline, case_id: str) -> Verdict:
    """Verdict for an analysed log dir: a named failure, or the check_result comparison."""
    if a.failure is not None:
        return verdict_from_failure(a.failure, case_id)
    return compare(a.summary, baseline, case_id)


def run(args: argparse.Namespace) -> int:
    args.baseline = resolve_baseline_file(args.baseline)
    baseline = load_baseline(args.baseline)
    a = analyse_logdir(args.logdir, args.marker or baseline.metrics["marker"], args.warmup, args.metric)
    header = _header(a)
    if header is not None and args.profile:
        header = {**header, "machine_profile": args.profile}
    elif header is None and args.profile:
        header = {"machine_profile": args.profile}
    paddle_version = (header or {}).get("paddle_version")
    warnings = check_named_baseline(baseline, header, paddle_version, args.allow_mismatch)
    profile = (header or {}).get("machine_profile")
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
