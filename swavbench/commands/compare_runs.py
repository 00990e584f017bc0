"""`swavbench compare RUN_A RUN_B`: judge run B against run A with the rules a baseline file would apply.

Each RUN is a run folder (`reports/runs/<run-id>/`, holding result.json and log/) or its result.json. Run A
becomes the baseline exactly as `update-baseline --from RUN_A` would record it (loss string, ips,
steady-state ips, max mem, marker, all read again from A's logs); run B's logs are read at A's marker and
judged by `swavbench.harness.compare.compare`. The tolerances are those B was judged with (its record's
baseline), else A's, else the case's for the device profile. Both runs must be of the same case; other
profiles or paddle versions are refused unless --allow-mismatch, as with a baseline. A failed run A cannot
be the reference (exit 3); a failed run B is a failed verdict (exit 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from swavbench.errors import RunFailed, SwavbenchError
from swavbench.harness.baselines import Baseline, check_compatible
from swavbench.harness.cases import resolve_case
from swavbench.harness.compare import Verdict, compare, format_table, verdict_from_failure, verdict_to_dict
from swavbench.harness.metrics import RunAnalysis, analyse_logdir


def load_run(path: str) -> tuple[Path, dict]:
    """(run folder, its result.json) from a run folder or a result.json path; one-line error otherwise."""
    given = Path(path)
    folder = given.parent if given.name == "result.json" else given
    record = folder / "result.json"
    if not record.is_file():
        raise SwavbenchError(
            f"{path}: not a run folder (no result.json); give reports/runs/<run-id>/ or its result.json"
        )
    try:
        rec = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise SwavbenchError(f"{record}: unreadable run record ({str(err).splitlines()[0]})") from None
    if not isinstance(rec, dict) or not rec.get("case"):
        raise SwavbenchError(f"{record}: not a run record (no 'case' field)")
    return folder, rec


def _tolerances(rec_b: dict, rec_a: dict) -> tuple[dict, str]:
    """The tolerances and where they came from: B's baseline, else A's, else the case's."""
    for rec, name in ((rec_b, "run B's baseline"), (rec_a, "run A's baseline")):
        base = rec.get("baseline") if isinstance(rec.get("baseline"), dict) else {}
        if isinstance(base.get("tolerances"), dict) and base["tolerances"]:
            return dict(base["tolerances"]), name
    case = resolve_case(str(rec_a["case"]))
    tol = case.cpu_tolerances if rec_a.get("device_profile") == "cpu" else case.tolerances
    return tol.as_dict(), f"the case's {rec_a.get('device_profile') or 'gpu'} defaults"


def _analyse(folder: Path, marker: str, args: argparse.Namespace, metric: str) -> RunAnalysis:
    return analyse_logdir(folder, marker, args.warmup, args.metric if args.metric != "loss" else metric)


def baseline_from_run(folder: Path, rec: dict, a: RunAnalysis, tolerances: dict) -> Baseline:
    """Run A as a baseline: the figures update-baseline would record from it."""
    s = a.summary
    metrics = {"loss": s.loss, "ips": s.ips, "max_mem": s.max_mem, "marker": s.marker}
    if s.steady is not None:
        metrics.update(ips_steady=round(s.steady.rate, 5), ips_steady_iqr_pct=round(s.steady.iqr_pct, 3))
    provenance = {
        "run_id": rec.get("run_id"), "commit": rec.get("commit"), "date_utc": rec.get("started_utc"),
        "paddle_version": rec.get("paddle_version"), "source": str(folder),
    }  # fmt: skip
    return Baseline(str(rec["case"]), str(rec.get("profile") or ""), metrics, tolerances, provenance)


def judge_runs(args: argparse.Namespace) -> tuple[Verdict, dict]:
    """The verdict of run B against run A, and what the output shows besides it."""
    dir_a, rec_a = load_run(args.logdir)
    dir_b, rec_b = load_run(args.run_b)
    if rec_a["case"] != rec_b["case"]:
        raise SwavbenchError(
            f"run A is a run of {rec_a['case']} and run B of {rec_b['case']}: compare two runs of one case"
        )
    case = resolve_case(str(rec_a["case"]))
    if rec_a.get("status") == "failed":
        raise SwavbenchError(f"run A {dir_a} failed ({rec_a.get('message')}): it cannot be the reference; pick a run "
                             "that completed")  # fmt: skip
    marker = args.marker or str((rec_a.get("metrics") or {}).get("marker") or "")
    a = _analyse(dir_a, marker, args, case.metric)
    if a.failure is not None:
        raise SwavbenchError(f"run A {dir_a} cannot be the reference: {a.failure}")
    tolerances, source = _tolerances(rec_b, rec_a)
    baseline = baseline_from_run(dir_a, rec_a, a, tolerances)
    warnings = check_compatible(baseline, str(rec_b.get("profile") or ""), rec_b.get("paddle_version"),
                                args.allow_mismatch)  # fmt: skip
    verdict = _verdict_b(dir_b, rec_b, marker, args, case.id, case.metric, baseline)
    facts = {"run_a": str(dir_a), "run_b": str(dir_b), "marker": marker, "tolerances_from": source,
             "warnings": warnings, "baseline": baseline}  # fmt: skip
    return verdict, facts


def _verdict_b(folder: Path, rec: dict, marker: str, args, case_id: str, metric: str, baseline: Baseline) -> Verdict:
    """A failed run B keeps its recorded failure; else its logs are read at the marker and compared."""
    if rec.get("status") == "failed":
        kind = (rec.get("failure") or {}).get("kind") or "failed"
        return verdict_from_failure(RunFailed(kind, str(rec.get("message") or "run B failed")), case_id)
    b = _analyse(folder, marker, args, metric)
    if b.failure is not None:
        return verdict_from_failure(b.failure, case_id)
    return compare(b.summary, baseline, case_id)


def run(args: argparse.Namespace) -> int:
    """Print the judgement of run B against run A (text or --json); the verdict's exit code."""
    verdict, facts = judge_runs(args)
    if args.json:
        doc = {k: v for k, v in facts.items() if k != "baseline"}
        doc.update(verdict=verdict_to_dict(verdict), reference=facts["baseline"].metrics)
        print(json.dumps(doc, indent=2, default=str))
        return verdict.exit_code
    out = [f"case {verdict.case}: run B {facts['run_b']} judged against run A {facts['run_a']} at marker "
           f"{facts['marker']} (tolerances from {facts['tolerances_from']})"] + facts["warnings"]  # fmt: skip
    out += [format_table(verdict)] if verdict.checks else []
    out += [f"{verdict.status.upper()}: {verdict.message}"]
    if verdict.advice:
        out.append(f"what to do: {verdict.advice}")
    out += verdict.details
    print("\n".join(out))
    return verdict.exit_code
