"""`swavbench calibrate CASE --repeats N`: measure this machine's run-to-run ips noise, store it in the baseline.

Runs the case N times (not judged, no reruns), takes each run's steady-state ips (trimmed rate), and writes
{repeats, median, max_dev_pct, stdev_pct, values, date_utc, load} to the baseline's
`provenance.calibration` (atomic, locked). Warns when the baseline's ips band is narrower than the noise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

from swavbench.commands.run import add_case_options
from swavbench.errors import RunFailed, SwavbenchError
from swavbench.harness.cases import plan_for


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("calibrate", help="measure run-to-run ips noise into the baseline's provenance")
    parser.add_argument("case", help="case id or PASSL long name")
    parser.add_argument("--repeats", type=int, default=5, metavar="N", help="identical runs (default 5, >= 2)")
    add_case_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from swavbench.errors import BaselineError
    from swavbench.harness.baselines import update_baseline
    from swavbench.harness.determinism import band_warning, ips_noise
    from swavbench.harness.runner import execute

    if args.repeats < 2:
        raise SwavbenchError("--repeats must be >= 2 to measure a spread")
    plan = plan_for(args.case, args.profile, args.data_root, timeout_s=args.timeout, stall_s=args.stall)
    values, loads, bfile, steady = [], [], None, True
    for n in range(1, args.repeats + 1):
        out = execute(plan, args.baseline_dir, args.reports_dir, allow_mismatch=True, stream=sys.stdout, confirm=0)
        if out.verdict.status == "failed":
            print(out.text())
            raise RunFailed(out.verdict.failure_kind or "failed", f"calibration run {n} failed: {out.verdict.message}")
        s = out.analysis.summary
        values.append(s.steady.rate if s.steady else s.ips)
        steady = steady and s.steady is not None
        loads.append(os.getloadavg()[0])
        bfile = out.baseline_file
        print(f"calibration run {n}/{args.repeats}: ips {values[-1]:.2f} (load {loads[-1]:.1f})")
    noise = ips_noise(values)
    noise.update(
        date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        load1_max=round(max(loads), 2),
        statistic="steady rate" if steady else "mean of lines",
    )
    print(
        f"run-to-run ips noise over {len(values)} runs: max deviation {noise['max_dev_pct']:.2f}%, "
        f"stdev {noise['stdev_pct']:.2f}% (median {noise['median']:.2f} img/s)"
    )
    if bfile is None or not bfile.exists():
        print(f"no baseline at {bfile}: record one first (swavbench update-baseline {plan.case.id}); not stored")
        return 0

    def calibrated(base):  # read under the lock: a concurrent update-baseline is not reverted
        if base is None:
            raise BaselineError(f"baseline {bfile} became unreadable: not stored")
        return replace(base, provenance={**base.provenance, "calibration": noise})

    base = update_baseline(bfile, calibrated).new
    print(f"stored in {bfile} (provenance.calibration)")
    warning = band_warning(float(base.tolerances.get("ips_pct", 5.0)), noise)
    if warning:
        print(warning)
    return 0
