"""`swavbench update-baseline CASE... [--all] [--repeats N] [--from LOGDIR...] [--ips-band PCT] [--profile cpu|gpu]`.

Runs each case (or reads a finished log: a run folder `reports/runs/<id>/` or a launch log dir), shows the
old -> new diff and writes `baselines/<this machine's profile>/<case>.json` atomically. A failed run
(crash, hang, NaN, missing marker) is refused: exit 2, nothing written. A baseline's tolerances are kept
when it is re-recorded (they are a decision, not a measurement); `--ips-band PCT` changes that decision
(e.g. +-5% on a dedicated nightly machine after `calibrate`), and the diff shows it.

`--repeats N` runs the case N times and records the MEDIAN ips figures, so the band is centred on this
machine's typical speed and not on one lucky or unlucky run; the N runs must log the same loss, marker
and max mem (else: refused, nothing written), and their spread is stored as the baseline's calibration
(as `swavbench calibrate` would). `--from DIR1 DIR2 ...` does the same with finished runs: on a VM whose speed
level moves for minutes or hours, runs kept from different times of day give a better centre than N runs
in a row. The same run given twice (the same folder, or two copies of one run id) is refused: it would count
as two repeats with no spread.

The old baseline is read, the new one made and written under one lock (baselines.update_baseline): two
update-baselines of one case at once serialise, and neither loses the other's decision (e.g. a new band).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from pathlib import Path
from typing import Optional

from swavbench.commands.run import add_case_options
from swavbench.errors import RunFailed, SwavbenchError
from swavbench.harness.baselines import Baseline, baseline_path, diff_baselines, update_baseline
from swavbench.harness.cases import Case, Plan, all_cases, marker_for, plan_for, resolve_case, skip_reason
from swavbench.harness.determinism import band_warning, ips_noise
from swavbench.harness.logparse import parse_log_file, resolve_logdir
from swavbench.harness.metrics import RunAnalysis, analyse_logdir
from swavbench.harness.records import read_record
from swavbench.harness.runner import execute, profile_of, update_command
from swavbench.harness.runs import git_commit
from swavbench.inputs import shown


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("update-baseline", help="record a case's baseline on this machine")
    parser.add_argument("cases", nargs="*", metavar="CASE", help="case ids or PASSL long names")
    parser.add_argument("--all", action="store_true", help="every case that can run here")
    parser.add_argument(
        "--from",
        dest="from_dirs",
        type=Path,
        nargs="+",
        action="extend",
        default=None,
        metavar="LOGDIR",
        help="record from finished run folders or launch log dirs instead of running (several: their median)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        metavar="N",
        help="run N times, record the median ips (same loss required) and store the spread (default 1)",
    )
    parser.add_argument(
        "--ips-band",
        type=float,
        default=None,
        metavar="PCT",
        help="set the ips band to +-PCT%% (default: keep the old baseline's band, else the case's)",
    )
    parser.add_argument("--marker", default=None, help="marker for a raw log dir without run header")
    parser.add_argument(
        "--machine-profile",
        default=None,
        metavar="KEY",
        help="baseline profile folder (default: this machine's, or the run record's)",
    )
    add_case_options(parser)
    parser.set_defaults(func=run)


def args_for(*argv: str) -> argparse.Namespace:
    """The parsed `update-baseline` arguments for argv, every other option at its CLI default (in-process callers)."""
    parser = argparse.ArgumentParser(prog="swavbench")
    register(parser.add_subparsers())
    return parser.parse_args(["update-baseline", *argv])


def _refuse(case: Case, a: RunAnalysis, where: str) -> None:
    if a.failure is not None:
        raise RunFailed(a.failure.kind, f"refusing to record a failed run of {case.id} ({where}): {a.failure}")


def _from_dir(args: argparse.Namespace, plan: Plan, root: Path) -> tuple[RunAnalysis, str, dict]:
    """(analysis, profile, provenance extras) of a finished run folder or raw launch log dir."""
    case = plan.case
    record_file = root / "result.json"
    if record_file.exists() or record_file.is_symlink():
        rec = _run_record(record_file)
        if rec["case"] != case.id:
            raise SwavbenchError(f"{record_file} is a run of {rec['case']}, not {case.id}")
        if rec["status"] == "failed":
            raise RunFailed(
                (rec.get("failure") or {}).get("kind") or "failed",
                f"refusing to record a failed run ({record_file}): {shown(rec.get('message'))}",
            )
        a = analyse_logdir(root, rec["metrics"]["marker"], plan.warmup_lines, case.metric)
        _refuse(case, a, str(root))
        return (
            a,
            args.machine_profile or rec["profile"],
            {"run_id": rec["run_id"], "run_command": rec.get("command"), "build": rec.get("build")},
        )
    logs = resolve_logdir(root)
    header = parse_log_file(logs / "workerlog.0").header if (logs / "workerlog.0").exists() else None
    marker = args.marker
    if marker is None and header and header.get("iters_per_epoch"):
        marker = marker_for(plan.marker_step, int(header["iters_per_epoch"]))
    if marker is None and plan.device_profile == "gpu":
        marker = case.passl_marker  # a raw PASSL log: the line its check_result reads
    if marker is None:
        raise SwavbenchError(f"{root}: no run header to find the marker; pass --marker ITER/ITERS")
    a = analyse_logdir(logs, marker, plan.warmup_lines, case.metric)
    _refuse(case, a, str(root))
    return a, args.machine_profile or profile_of(plan, header), {"source": str(root)}


def _run_record(record_file: Path) -> dict:
    """A result.json checked at the boundary, with the fields `--from` needs (marker, profile)."""
    from swavbench.harness.records import RecordError

    try:
        rec = read_record(record_file, fallback_run_id=record_file.parent.name)
    except RecordError as err:
        raise RecordError(f"run record {record_file}: {err}: not a record swavbench wrote; use another run") from None
    for key in ("metrics", "profile"):
        if not rec.get(key) or (key == "metrics" and not rec["metrics"].get("marker")):
            raise RecordError(f"run record {record_file} has no {'metrics.marker' if key == 'metrics' else key}: "
                              "not a record swavbench wrote; use another run")
    return rec


def _distinct(sources: list[Path]) -> None:
    """Refuse the same run given twice (same folder, or copies of one run id): a spread of 0% is no repeat."""
    seen: dict[str, Path] = {}
    for root in sources:
        keys = [f"the same folder {root.resolve()}"]
        record_file = root / "result.json"
        if record_file.is_file():
            try:
                keys.append(f"run id {read_record(record_file, record_file.parent.name)['run_id']}")
            except SwavbenchError:
                pass  # reported when the run is read
        for key in keys:
            if key in seen:
                raise SwavbenchError(f"--from {root} and {seen[key]} are one run ({key}): give each run once")
            seen[key] = root


def _from_run(args: argparse.Namespace, plan: Plan) -> tuple[RunAnalysis, str, dict]:
    outcome = execute(plan, args.baseline_dir, args.reports_dir, allow_mismatch=True, confirm=0)
    if outcome.verdict.status == "failed":
        print(outcome.text())
        raise RunFailed(
            outcome.verdict.failure_kind or "failed",
            f"refusing to record a failed run of {plan.case.id}: {outcome.verdict.message}",
        )
    print(f"run {outcome.run_id}: {outcome.verdict.status} vs the old baseline ({outcome.verdict.message})")
    return (
        outcome.analysis,
        args.machine_profile or outcome.profile,
        {"run_id": outcome.run_id, "run_command": outcome.record["command"], "build": outcome.record.get("build")},
    )


def _same_figures(case: Case, runs: list[RunAnalysis]) -> None:
    """Refuse runs that disagree on what must be exact (loss, marker, max mem): the baseline would flake."""
    first = runs[0].summary
    for n, a in enumerate(runs[1:], 2):
        s = a.summary
        for field, one, other in (("marker", first.marker, s.marker), (first.metric, first.loss, s.loss),
                                  ("max mem", first.max_mem, s.max_mem)):  # fmt: skip
            if one != other:
                raise RunFailed(
                    "nondeterministic",
                    f"refusing to record {case.id}: run 1 logged {field} {one} but run {n} {other}; identical "
                    f"runs must agree (see swavbench determinism {case.id})",
                )


def _median_figures(runs: list[RunAnalysis]) -> dict:
    """ips figures of N runs: the median of each (the spread goes to the calibration)."""
    sums = [a.summary for a in runs]
    out = {"ips": round(statistics.median(s.ips for s in sums), 6)}
    if all(s.steady is not None for s in sums):
        out.update(
            ips_steady=round(statistics.median(s.steady.rate for s in sums), 5),
            ips_steady_iqr_pct=round(statistics.median(s.steady.iqr_pct for s in sums), 3),
        )
    return out


def record(args: argparse.Namespace, case: Case) -> Path:
    """Run (or read) one case and write its baseline; returns the path written."""
    plan = plan_for(case.id, args.profile, args.data_root, timeout_s=args.timeout, stall_s=args.stall,
                    launch=not args.from_dirs)
    runs, run_ids, profiles, extras = [], [], [], []
    if args.from_dirs:
        _distinct(args.from_dirs)
    sources = args.from_dirs or [None] * args.repeats
    for n, root in enumerate(sources):
        if len(sources) > 1:
            print(f"{'reading' if root else 'recording'} run {n + 1}/{len(sources)} of {case.id}")
        a, profile, extra = _from_dir(args, plan, root) if root else _from_run(args, plan)
        runs.append(a)
        extras.append(extra)
        run_ids.append(extra.get("run_id") or extra.get("source"))
        profiles.append(profile)
    if len(set(profiles)) > 1:
        names = ", ".join(sorted(set(profiles)))
        raise SwavbenchError(f"the runs were recorded on different machine profiles ({names}): record from one profile")
    _same_figures(case, runs)
    path = baseline_path(args.baseline_dir, profile, case.id)
    done = update_baseline(path, lambda old: _new_baseline(args, plan, runs, run_ids, extras, profile, old))
    if done.old_problem:
        print(f"replaced an unreadable baseline: {done.old_problem}")
    if done.removed_temps:
        print(f"removed {len(done.removed_temps)} temp file(s) a killed writer left: {', '.join(done.removed_temps)}")
    print(f"wrote {path}")
    warning = band_warning(float(done.new.tolerances.get("ips_pct", 5.0)), done.new.provenance.get("calibration"))
    if warning:
        print(warning)
    return path


def _new_baseline(args: argparse.Namespace, plan: Plan, runs: list[RunAnalysis], run_ids: list, extras: list[dict],
                  profile: str, old: Optional[Baseline]) -> Baseline:
    """The new baseline from the runs and the old one (read under the lock); prints the old -> new diff."""
    case, a, extra = plan.case, runs[0], extras[-1]
    s = a.summary
    header = (a.logs[0].header if a.logs.get(0) else None) or {}
    builds = [x.get("build") for x in extras]
    provenance = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git_commit(),
        "paddle_version": header.get("paddle_version"),
        "machine": socket.gethostname(),
        "command": update_command(plan, args.baseline_dir),
        "device_profile": plan.device_profile,
        "topology": f"{plan.scale.nnodes}x{plan.scale.devices_per_node}",
        "notes": list(plan.notes),
        "run_id": None,
        **{k: v for k, v in extra.items() if k != "build"},
    }
    # the build the runs came from (an A/B confirmation rebuilds it: swavbench.harness.builds.reference_for);
    # runs of different builds give none
    if builds and all(isinstance(b, dict) for b in builds) and len({b.get("fingerprint") for b in builds}) == 1:
        provenance["build"] = builds[0]
    if old and isinstance(old.provenance.get("calibration"), dict):
        provenance["calibration"] = old.provenance["calibration"]  # measured noise of this machine: kept
    metrics = {"loss": s.loss, "ips": s.ips, "max_mem": s.max_mem, "marker": s.marker}
    if s.steady is not None:
        metrics.update(ips_steady=round(s.steady.rate, 5), ips_steady_iqr_pct=round(s.steady.iqr_pct, 3))
    if len(runs) > 1:
        metrics.update(_median_figures(runs))
        steady = all(r.summary.steady is not None for r in runs)
        noise = ips_noise([r.summary.steady.rate if steady else r.summary.ips for r in runs])
        noise.update(date_utc=provenance["date_utc"], statistic="steady rate" if steady else "mean of lines",
                     source="update-baseline --from" if args.from_dirs else "update-baseline --repeats")  # fmt: skip
        provenance.update(run_id=None, run_ids=run_ids, repeats=len(runs), calibration=noise)
    tolerances = dict(old.tolerances) if old else plan.tolerances.as_dict()
    if args.ips_band is not None:
        tolerances["ips_pct"] = args.ips_band
    new = Baseline(case.id, profile, metrics, tolerances, provenance, case.passl_name)
    print("\n".join(diff_baselines(old, new)))
    return new


def run(args: argparse.Namespace) -> int:
    if args.all and args.cases:
        raise SwavbenchError("give CASE names or --all, not both")
    cases = list(all_cases()) if args.all else [resolve_case(n) for n in args.cases]
    if not cases:
        raise SwavbenchError(f"name a case or pass --all; known: {', '.join(c.id for c in all_cases())}")
    if args.repeats < 1 or (args.from_dirs and args.repeats != 1):
        raise SwavbenchError("--repeats N needs N >= 1 and runs the case: it cannot be used with --from")
    if args.ips_band is not None and not 0 < args.ips_band < 100:
        raise SwavbenchError(f"--ips-band {args.ips_band:g}: give a percentage between 0 and 100 (e.g. 5)")
    if args.from_dirs and len(cases) != 1:
        raise SwavbenchError("--from reads finished runs of one case: name exactly one case")
    for case in cases:
        reason = skip_reason(case)
        if reason and args.all:
            print(f"skipped {case.id}: {reason}")
            continue
        if reason:
            raise SwavbenchError(f"cannot record {case.id} here: {reason}")
        record(args, case)
    return 0
