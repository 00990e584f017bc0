"""`swavbench ab CASE --ref REF [--cand REF] [--band PCT] [--max-pairs N] [--block-steps K] [-o K=V ...]`.

Paired A/B: runs the case's reference build (REF) and candidate build (default: this working tree) as two
live jobs on this machine, in alternating blocks of steps (balanced order A B B A ...), and judges the
paired ratio of their steady-state ips with an exact Wilcoxon interval, until decisive or --max-pairs.
Every rank's loss and the logged max mem are compared exactly. A REF is a git revision (checked out into a
temporary worktree, removed afterwards), a swavbench checkout directory, or an interpreter / venv path
(another Paddle build, with the candidate's code): swavbench.harness.builds.

Exit codes: 0 no change, 1 regression / improvement / changed (a metric outside its tolerance; the text
says which), 2 a side failed, 3 usage, 7 inconclusive (no decision within --max-pairs). The record is
`reports/runs/<run-id>/result.json` (`kind: "ab"`, the A/B under `ab`), both sides' logs beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import replace
from pathlib import Path

from swavbench.commands.run import add_case_options
from swavbench.errors import SwavbenchError
from swavbench.harness.absession import Settings
from swavbench.harness.cases import plan_for

DEFAULT_BAND_PCT = 5.0  # check_result's band: what the paired design can hold on a noisy machine


def add_ab_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """--band / --max-pairs / --block-steps (the run command takes them as --ab-band, ...)."""
    d = Settings()
    parser.add_argument(f"--{prefix}band", type=float, default=None, metavar="PCT",
                        help=f"no change = the paired interval inside +-PCT%% (default {DEFAULT_BAND_PCT:g}; for a "
                        "confirmation: the baseline's band)")  # fmt: skip
    parser.add_argument(f"--{prefix}max-pairs", type=int, default=d.max_pairs, metavar="N",
                        help=f"stop undecided (inconclusive) after N pairs (default {d.max_pairs})")
    parser.add_argument(f"--{prefix}block-steps", type=int, default=d.block_steps, metavar="K",
                        help=f"steps each side runs per turn (default {d.block_steps})")


def settings_from(args: argparse.Namespace, band_pct: float, prefix: str = "") -> Settings:
    """Settings from the parsed options; a usage error names the bad one."""
    get = {k: getattr(args, (prefix + k).replace("-", "_")) for k in ("max-pairs", "block-steps")}
    if not 0 < band_pct < 100:
        raise SwavbenchError(f"--{prefix}band {band_pct:g}: give a percentage between 0 and 100 (e.g. 5)")
    if get["max-pairs"] < Settings().min_pairs:
        raise SwavbenchError(f"--{prefix}max-pairs {get['max-pairs']}: the interval needs at least "
                             f"{Settings().min_pairs} pairs")  # fmt: skip
    if get["block-steps"] < 1:
        raise SwavbenchError(f"--{prefix}block-steps {get['block-steps']}: give at least 1")
    return Settings(band_pct=band_pct, max_pairs=get["max-pairs"], block_steps=get["block-steps"])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ab", help="paired A/B of a case: reference vs candidate build, in turns")
    parser.add_argument("case", help="case id or PASSL long name")
    parser.add_argument("--ref", required=True, metavar="REF",
                        help="reference: a git revision, a swavbench checkout dir, or an interpreter / venv path")
    parser.add_argument("--cand", default="", metavar="REF", help="candidate (default: this working tree)")
    add_ab_options(parser)
    add_case_options(parser)
    parser.add_argument("-o", "--override", action="append", default=[], metavar="Section.key=value",
                        help="extra config override for both sides (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from swavbench.harness.ab import ab_record, run_ab
    from swavbench.harness.abjobs import sigterm_as_exit
    from swavbench.harness.builds import checkout
    from swavbench.harness.runs import new_run_id, write_json_atomic

    settings = settings_from(args, DEFAULT_BAND_PCT if args.band is None else args.band)
    plan = plan_for(args.case, args.profile, args.data_root, args.override, timeout_s=args.timeout, stall_s=args.stall)
    if plan.skip_reason:
        raise SwavbenchError(f"cannot run here: {plan.skip_reason}")
    settings = replace(settings, stall_s=plan.stall_s)  # --stall: the running side made no step for S seconds
    started, run_id = time.time(), new_run_id(plan.case.id)
    run_dir = Path(args.reports_dir) / "runs" / run_id
    with sigterm_as_exit(), contextlib.ExitStack() as stack:  # SIGTERM: stop both jobs, remove the worktree
        cand = stack.enter_context(checkout(args.cand))
        ref = stack.enter_context(checkout(args.ref, default_tree=cand.tree))
        verdict = run_ab(plan, ref, cand, settings, run_dir / "ab", sys.stdout)
    argv = ["swavbench", "ab", plan.case.id, "--ref", args.ref] + (["--cand", args.cand] if args.cand else [])
    write_json_atomic(run_dir / "result.json", ab_record(plan, run_id, verdict, started, argv))
    print(verdict.text())
    print(f"run record: {run_dir}")
    return verdict.exit_code
