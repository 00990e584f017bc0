"""Time to a verdict: where the wall time of a case goes, from the harness's call to its verdict.

    python benchmarks/time_to_verdict.py [--case swav_pt_1n8c_fp16o1] [--repeats 3] [--json OUT]
    python benchmarks/time_to_verdict.py --suite [--json OUT]       # `pytest cases/` as a whole
    python benchmarks/time_to_verdict.py --against DIR [--pairs 5]  # this checkout vs another, paired

Runs the case through the real `swavbench.harness.runner.execute` (the code `swavbench run` and the pytest
plugin call), in this process, with timers wrapped around the harness's own steps (plan, launcher start,
launch, copy, analyse, judge, record) and the ranks' `timeline.<rank>.json` marks (interpreter start,
imports, process group, loader, model, first batch, first step, marker, checkpoint). Prints one column per
run (and their median) in seconds. Records go to a temporary reports folder; baselines are only read.
`fixed` is the total minus the training steps (the sum of rank 0's batch_cost over all steps).
`--against DIR` runs this benchmark of the checkout DIR (its own .venv) and of this one in alternating
pairs on the same cached dataset, and prints both medians and the per-pair ratios (DIR = "before").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import alternate, load_note  # noqa: E402  (benchmarks/ is not a package)
from ttv_probes import Recorder, cpu_all_ranks, probes, rank_timelines  # noqa: E402

RANK_PHASES = (  # (label, from mark, to mark) on rank 0's timeline
    ("  interpreter + CLI", "process_start", "entry"),
    ("  config load + validation", "entry", "config"),
    ("  import paddle + trainer", "config", "imports"),
    ("  device + process group", "imports", "process_group"),
    ("  host allocator tuning", "process_group", "allocator"),
    ("  dataset scan + loader", "allocator", "loader"),
    ("  model + optimiser", "loader", "model"),
    ("  run header + first batch", "model", "first_batch"),
    ("  first step", "first_batch", "first_step"),
)


def _span(spans: list, name: str) -> Optional[tuple]:
    return next((s for s in spans if s[0] == name), None)


def _dur(span: Optional[tuple]) -> Optional[float]:
    return None if span is None else span[2] - span[1]


def _gap(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else b - a


@dataclass
class RunTimes:
    """One case run's recorded times: harness spans and instants, rank marks (wall and CPU)."""

    start: float  # runner.execute called
    end: float  # its verdict returned
    plan: Optional[tuple]
    spans: list
    instants: list
    ranks: dict  # rank -> {mark: unix time}
    cpu: dict  # rank -> {mark: CPU s}
    steps: list  # rank 0's step records

    def instant(self, name: str) -> Optional[float]:
        return next((t for n, t in self.instants if n == name), None)

    def rank_rows(self, phases: tuple) -> list[tuple]:
        r0 = self.ranks.get(0, {})
        return [(label, _gap(r0.get(a), r0.get(b)), cpu_all_ranks(self.cpu, a, b)) for label, a, b in phases]


def run_times(rec: Recorder, execute: tuple, plan_span: Optional[tuple]) -> RunTimes:
    """What was recorded while `execute` (a Recorder span) ran, and what its ranks wrote."""
    spans, instants = rec.within(execute[1], execute[2])
    log_dir = Path(execute[3].run_dir) / "log"
    ranks, cpu = rank_timelines(log_dir)
    steps = [json.loads(line) for line in (log_dir / "steps.0.jsonl").read_text().splitlines() if line.strip()]
    return RunTimes(execute[1], execute[2], plan_span, spans, instants, ranks, cpu, steps)


START_PHASES = (("rank 0 start-up (process -> first step)", "process_start", "first_step"),) + RANK_PHASES + (
    ("steady steps (step 2 -> marker)", "first_step", "last_step"),)
EXIT_PHASES = (
    ("  checkpoint save", "last_step", "saved"),
    ("  loader shutdown, timeline (rank 0)", "saved", "end"),
    ("  exit handlers (rank 0: paddle's atexit)", "end", "atexit"),
)


SUB_ROWS = {label.strip() for label, _, _ in RANK_PHASES + EXIT_PHASES} | {
    "last rank atexit -> launcher exit seen", "harness cleanup (no strays, port free)", "copy logs",
    "parse + analyse", "judge", "record (result.json)"}  # shown indented under their phase


def breakdown(rec: Recorder, execute: tuple, plan_span: Optional[tuple]) -> list[tuple]:
    """Rows (label, wall seconds[, CPU seconds of all ranks]) of one case run (its first attempt)."""
    t = run_times(rec, execute, plan_span)
    popen, seen = t.instant("launcher_popen"), t.instant("launcher_exit_seen")
    launched = _span(t.spans, "run")
    launch_end = launched[2] if launched else None
    first_rank = min((m["process_start"] for m in t.ranks.values() if "process_start" in m), default=None)
    last_exit = max((m.get("atexit", m.get("end", 0.0)) for m in t.ranks.values()), default=None)
    rows: list[tuple] = [("plan (case, dataset check)", _dur(plan_span)),
                         ("harness -> launcher start", _gap(t.start, popen)),
                         ("launcher start (-> first rank process)", _gap(popen, first_rank))]
    rows += t.rank_rows(START_PHASES)
    rows.append(("marker to exit", _gap(t.ranks.get(0, {}).get("last_step"), launch_end)))
    rows += t.rank_rows(EXIT_PHASES)
    rows += [("  last rank atexit -> launcher exit seen", _gap(last_exit, seen)),
             ("  harness cleanup (no strays, port free)", _gap(seen, launch_end)),
             ("exit to verdict", _gap(launch_end, t.end))]
    rows += [(label, _dur(_span(t.spans, name))) for label, name in (
        ("  copy logs", "collect_logs"), ("  parse + analyse", "_analyse"), ("  judge", "judge"))]
    recording = [_dur(_span(t.spans, n)) for n in ("build_record", "write_json_atomic")]
    rows.append(("  record (result.json)", sum(d for d in recording if d is not None)))
    total = t.end - t.start + (_dur(plan_span) or 0.0)
    train = sum(float(s["batch_cost"]) for s in t.steps)
    return rows + [("total (plan -> verdict)", total), ("training steps (sum of rank 0 batch_cost)", train),
                   ("fixed (total - training steps)", total - train)]


def _median(values: list) -> Optional[float]:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def print_table(title: str, columns: list[str], table: list[list[tuple]], median: bool = True) -> None:
    """One row per phase, one column per run (wall seconds), the median of the runs, and the median CPU
    seconds of the phase summed over all ranks (2 cores: that sum / 2 is the phase's floor in wall time)."""
    heads = columns + (["median"] if median and len(table) > 1 else []) + ["cpu, ranks"]
    width = max(11, *(len(h) + 2 for h in heads))
    print(title)
    print(f"{'phase (wall seconds)':<44}" + "".join(f"{h:>{width}}" for h in heads))
    for i, row in enumerate(table[0]):
        values = [rows[i][1] for rows in table]
        if median and len(table) > 1:
            values.append(_median(values))
        values.append(_median([rows[i][2] if len(rows[i]) > 2 else None for rows in table]))
        print(f"{row[0]:<44}" + "".join(f"{'' if v is None else f'{v:.2f}':>{width}}" for v in values))
    sys.stdout.flush()


def machine_line() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown cpu")
    return f"{cpu}, {load_note()} at start"


def run_losses(run_dir: Path) -> dict:
    """What a run computed: every rank's loss at every step (repr) and workerlog.0's logged loss strings."""
    log = Path(run_dir) / "log"
    steps = {p.name.split(".")[1]: [repr(json.loads(line)["loss"]) for line in p.read_text().splitlines() if line]
             for p in sorted(log.glob("steps.*.jsonl"))}
    lines = re.findall(r"\[Train\].*?loss: (\S+?),", (log / "workerlog.0").read_text(errors="replace"))
    return {"steps": steps, "lines": lines}


def run_case(case_id: str, repeats: int, reports: Path, baseline_dir: Path) -> tuple[list[list], list[dict]]:
    """`repeats` runs of the case through runner.execute: (breakdown per run, what each run computed)."""
    from swavbench.harness import cases, runner

    rec, table, losses = Recorder(), [], []
    with probes(rec), open(os.devnull, "w") as quiet:
        for _ in range(repeats):
            plan = cases.plan_for(case_id)
            outcome = runner.execute(plan, baseline_dir, reports, confirm=0, stream=quiet)
            execute = rec.spans[-1]
            assert execute[0] == "execute" and execute[3] is outcome
            table.append(breakdown(rec, execute, _span(rec.spans[::-1], "plan_for")))
            losses.append(run_losses(outcome.run_dir))
            total = dict((r[0], r[1]) for r in table[-1])["total (plan -> verdict)"]
            print(f"run {len(table)}/{repeats}: {outcome.verdict.status}, total {total:.2f} s", flush=True)
    return table, losses


def run_suite(reports: Path, baseline_dir: Path, pytest_args: list[str]) -> tuple[list, list, float, int]:
    """`pytest cases/` in this process with the probes on: (case ids, breakdowns, session seconds, exit)."""
    import pytest

    rec = Recorder()
    args = ["cases/", "-q", "-p", "no:cacheprovider", f"--swavbench-reports-dir={reports}",
            f"--swavbench-baseline-dir={baseline_dir}", *pytest_args]
    start = time.time()
    with probes(rec):
        code = pytest.main(args)
    session = time.time() - start
    ids, table = [], []
    for execute in [s for s in rec.spans if s[0] == "execute"]:
        plans = [s for s in rec.spans if s[0] == "plan_for" and s[2] <= execute[1]]
        ids.append(execute[3].plan.case.id)
        table.append(breakdown(rec, execute, plans[-1] if plans else None))
    return ids, table, session, int(code)


def one_run(checkout: Path, case_id: str, out: Path) -> dict:
    """This benchmark of `checkout`, run once in its own venv: {phase: wall seconds, "losses": ...}."""
    cmd = [str(checkout / ".venv" / "bin" / "python"), str(checkout / "benchmarks" / "time_to_verdict.py"),
           "--case", case_id, "--repeats", "1", "--json", str(out)]
    env = dict(os.environ, SWAVBENCH_CACHE_DIR=os.environ.get("SWAVBENCH_CACHE_DIR") or str(REPO / "data" / "cache"))
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    return {"rows": {label: values[0] for label, values in data["runs"][0].items()}, "losses": data["losses"][0]}


def run_against(before: Path, case_id: str, pairs: int, tmp: Path) -> None:
    """Alternating pairs of (before, this checkout); per phase: both medians and the per-pair ratio."""
    results = alternate(lambda: one_run(before, case_id, tmp / "a.json"),
                        lambda: one_run(REPO, case_id, tmp / "b.json"), pairs)
    print(f"case {case_id}: before = {before}, after = {REPO}; {pairs} pairs (AB, BA, ...), {load_note()} at end")
    print(f"{'phase (wall seconds)':<44}{'before':>9}{'after':>9}{'after/before':>14}  per pair")
    labels = list(results[0][1]["rows"])  # this checkout's rows, in order (a superset of older ones)
    for key in labels:
        label = f"  {key}" if key in SUB_ROWS else key
        vals = [(a["rows"].get(key), b["rows"].get(key)) for a, b in results]
        vals = [(x, y) for x, y in vals if x is not None and y is not None]
        if not vals:
            print(f"{label:<44}{'':>9}{'':>9}{'':>14}  (not recorded before)")
            continue
        ratios = [b / a for a, b in vals if a]
        med_a, med_b = statistics.median(a for a, _ in vals), statistics.median(b for _, b in vals)
        each = " ".join(f"{r:.2f}" for r in ratios)
        ratio = f"{statistics.median(ratios):.2f}" if ratios else ""
        print(f"{label:<44}{med_a:>9.2f}{med_b:>9.2f}{ratio:>14}  {each}")
    same = [a["losses"] == b["losses"] for a, b in results]
    steps = sum(len(v) for v in results[0][0]["losses"]["steps"].values())
    print(f"loss at every step of every rank ({steps} values) and every logged loss string identical before/after: "
          f"{sum(same)}/{len(same)} pairs" + ("" if all(same) else "  <-- WHAT IS MEASURED CHANGED"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="swav_pt_1n8c_fp16o1", help="case id (default swav_pt_1n8c_fp16o1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the case, one column each (default 3)")
    parser.add_argument("--suite", action="store_true", help="run `pytest cases/` as a whole instead")
    parser.add_argument("--baseline-dir", type=Path, default=REPO / "baselines", help="baselines root (read only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--against", type=Path, default=None, metavar="DIR",
                        help="another checkout (with its .venv) to compare with, in alternating pairs")
    parser.add_argument("--pairs", type=int, default=5, help="pairs for --against (default 5)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (--suite), after --")
    args = parser.parse_args()
    os.chdir(REPO)
    print(f"time to a verdict on {machine_line()}")
    print("command: python benchmarks/time_to_verdict.py " + " ".join(sys.argv[1:]), flush=True)
    with tempfile.TemporaryDirectory(prefix="ttv-") as tmp:
        if args.against:
            run_against(args.against.resolve(), args.case, args.pairs, Path(tmp))
            return 0
        if args.suite:
            ids, table, session, code = run_suite(Path(tmp), args.baseline_dir, args.pytest_args)
            if not table:
                print(f"pytest ran no case (exit {code})")
                return 2
            totals = [(row[0], sum(rows[i][1] or 0.0 for rows in table)) for i, row in enumerate(table[0])]
            print_table(f"pytest cases/ (exit {code})", ids + ["all cases"], table + [totals], median=False)
            print(f"{'pytest session wall':<44}{session:>12.2f}")
            print(f"{'outside the cases (collection, plugin, skips)':<44}{session - totals[-3][1]:>12.2f}")
            columns, losses = ids, []
        else:
            table, losses = run_case(args.case, args.repeats, Path(tmp), args.baseline_dir)
            columns = [f"run {i + 1}" for i in range(len(table))]
            print_table(f"case {args.case}", columns, table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_line(), "columns": columns,
                                         "runs": [{r[0].strip(): r[1:] for r in rows} for rows in table],
                                         "losses": losses}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
