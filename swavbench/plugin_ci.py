"""What a CI system sees of the swavbench cases (loaded by swavbench.plugin; hooks of their own).

- The failure message starts with the verdict line (`REGRESSION: ...`, `RUN FAILED (hang): ...`,
  `NO BASELINE: ...`) and the advice, then the table: Jenkins and GitLab show the first ~500 characters of
  a JUnit failure's `message`, so the verdict is what they show.
- Each case records JUnit `<properties>`: swavbench_status (pass / regression / failed / no_baseline /
  error), swavbench_failure_kind (crash, hang, ... for a failed run), swavbench_case, swavbench_profile,
  swavbench_ips_diff, swavbench_loss, swavbench_run_id, swavbench_run_record. A crashed or hung run is told
  from a regression by status and failure kind, and by its message's first word.
- `--swavbench-summary FILE`: one JSON document per session (a line for a chat message, totals, a row per
  case), built from the test reports, so it is complete under pytest-xdist too.
- `-k` matches PASSL's long names (`-k swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1`): each case's test carries
  them as keywords.
- Under pytest-xdist the cases run one at a time: each run holds a lock in the reports folder (a case takes
  every device; two at once make every ips meaningless). The header says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from swavbench import __version__

PROPERTY_PREFIX = "swavbench_"
ITEM_KEY = pytest.StashKey[Optional[pytest.Item]]()
REPORTS_KEY = pytest.StashKey[list]()
STARTED_KEY = pytest.StashKey[str]()
HEADLINES = {"regression": "REGRESSION", "failed": "RUN FAILED", "no_baseline": "NO BASELINE", "pass": "PASS"}
RUN_LOCK = ".swavbench-run.lock"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("swavbench")
    group.addoption(
        "--swavbench-summary",
        default=None,
        metavar="FILE",
        help="write one JSON summary of this session's cases to FILE (verdicts, ips diffs, run records)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[STARTED_KEY] = _utc_now()
    collector = SummaryCollector()
    config.stash[REPORTS_KEY] = collector.rows
    config.pluginmanager.register(collector, "swavbench-summary-collector")


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- pytest-xdist ---------------------------------------------------------------------------------------
def xdist_workers(config: pytest.Config) -> int:
    """How many xdist workers this session uses (0 without xdist, or with -n 0 / -p no:xdist)."""
    if hasattr(config, "workerinput"):
        return int(config.workerinput.get("workercount", 1))
    if not config.pluginmanager.hasplugin("xdist"):
        return 0
    n = getattr(config.option, "numprocesses", None)
    if isinstance(n, str) and n:  # -n auto / logical, before xdist resolves it
        return os.cpu_count() or 1
    return int(n) if isinstance(n, int) else 0


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_report_header(config: pytest.Config) -> list[str]:
    n = xdist_workers(config)
    if not n:
        return []
    return [
        f"swavbench: pytest-xdist with {n} workers: swavbench cases run one at a time (a lock in the reports "
        "folder), since each takes every device and parallel runs make ips meaningless; other tests still run "
        "in parallel and slow the machine: run `pytest cases/` without -n for figures you can trust"
    ]


@contextlib.contextmanager
def one_run_at_a_time(reports_dir: Path, case_id: str, stream=None) -> Iterator[None]:
    """Hold `<reports_dir>/.swavbench-run.lock` while a case runs; say so when another run holds it."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    with open(reports_dir / RUN_LOCK, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            out = stream or sys.stdout
            out.write(f"[{case_id}] waiting for another swavbench run to finish ({reports_dir / RUN_LOCK})\n")
            out.flush()
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- -k with PASSL's long names ------------------------------------------------------------------------
def pytest_itemcollected(item: pytest.Item) -> None:
    """A test of a case (a `swavbench` test parametrized by a case id) also matches `-k <PASSL long name>`."""
    from swavbench.harness.cases import CASES

    params = getattr(getattr(item, "callspec", None), "params", {})
    if "swavbench" not in getattr(item, "fixturenames", ()) or not params:
        return
    by_id = {c.id: c for c in CASES}
    for v in params.values():
        case = by_id.get(v) if isinstance(v, str) else None
        if case is not None:
            item.extra_keyword_matches.update({case.passl_name, case.config})
            item.user_properties.append((PROPERTY_PREFIX + "case", case.id))  # in every report of the test


# -- the current test, the message and the properties --------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]):
    item.config.stash[ITEM_KEY] = item
    try:
        yield
    finally:
        item.config.stash[ITEM_KEY] = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed case's short message is its verdict line itself, not `Failed: <verdict line>`."""
    result = yield
    report = result.get_result()
    crash = getattr(report.longrepr, "reprcrash", None)
    judged = any(name == PROPERTY_PREFIX + "status" for name, _ in item.user_properties)
    if report.failed and judged and crash is not None and crash.message.startswith("Failed: "):
        crash.message = crash.message[len("Failed: ") :]


def current_item(config: pytest.Config) -> Optional[pytest.Item]:
    """The test being run (None outside a test)."""
    return config.stash.get(ITEM_KEY, None)


def headline(verdict) -> str:
    """`REGRESSION: ...` / `RUN FAILED (hang): ...` / `NO BASELINE: ...` / `PASS: ...`."""
    word = HEADLINES.get(verdict.status, verdict.status.upper())
    message = verdict.message
    if verdict.status == "failed" and verdict.failure_kind:
        word += f" ({verdict.failure_kind})"
        message = message.replace(f"run failed ({verdict.failure_kind}): ", "", 1)
    return f"{word}: {message}"


def failure_message(outcome) -> str:
    """The verdict line, the advice and the table first (what a CI system shows), then the whole verdict block
    (what ran, notes, attempts, the dead rank's log tail, the run record)."""
    from swavbench.harness.compare import format_table

    lines = [headline(outcome.verdict)]
    if outcome.verdict.advice:
        lines.append(f"what to do: {outcome.verdict.advice}")
    if outcome.verdict.checks:
        lines.append(format_table(outcome.verdict))
    return "\n".join(lines + ["", outcome.text()])


def error_message(err: Exception) -> str:
    """A case that could not run at all (data, config, port): `ERROR (DataError): ...`."""
    return f"ERROR ({type(err).__name__}): {err}"


def error_properties(err: Exception) -> list[tuple[str, str]]:
    """The JUnit properties of a case that could not run."""
    return [(PROPERTY_PREFIX + "status", "error"), (PROPERTY_PREFIX + "error", type(err).__name__),
            (PROPERTY_PREFIX + "message", str(err))]  # fmt: skip


def ips_diff(verdict) -> Optional[str]:
    """The diff of the check that judges ips (steady-state when present), e.g. '-9.10%'."""
    by_metric = {c.metric: c for c in verdict.checks}
    check = by_metric.get("ips_steady") or by_metric.get("ips")
    return check.diff if check is not None else None


def outcome_properties(outcome) -> list[tuple[str, str]]:
    """The JUnit properties of a finished case."""
    v = outcome.verdict
    loss = outcome.record.get("metrics", {}).get("loss") if isinstance(outcome.record, dict) else None
    props = {
        "status": v.status, "failure_kind": v.failure_kind, "case": outcome.plan.case.id,
        "profile": outcome.profile, "ips_diff": ips_diff(v), "loss": loss, "run_id": outcome.run_id,
        "run_record": str(Path(outcome.run_dir) / "result.json"), "exit_code": v.exit_code,
        "message": v.message, "advice": v.advice,
    }  # fmt: skip
    return [(PROPERTY_PREFIX + k, str(val)) for k, val in props.items() if val not in (None, "")]


def record_properties(config: pytest.Config, props: list[tuple[str, str]]) -> None:
    """Add properties to the current test (as the `record_property` fixture does), each name once."""
    item = current_item(config)
    if item is not None:
        have = {name for name, _ in item.user_properties}
        item.user_properties.extend(p for p in props if p[0] not in have)


# -- the session summary -------------------------------------------------------------------------------
class SummaryCollector:
    """Keeps the reports of swavbench cases (forwarded from xdist workers too) for the summary."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(p for p in report.user_properties if str(p[0]).startswith(PROPERTY_PREFIX))
        if not props:
            return
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.rows.append(summary_row(report, props))


def summary_row(report: pytest.TestReport, props: dict) -> dict:
    """One case of the summary: its test id and outcome, then the swavbench properties without prefix."""
    row = {"nodeid": report.nodeid, "outcome": report.outcome, "duration_s": round(report.duration, 3)}
    row.update({k[len(PROPERTY_PREFIX) :]: v for k, v in props.items()})
    if report.outcome == "skipped" and "status" not in row:
        row["status"] = "skipped"
        longrepr = report.longrepr
        row["message"] = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return row


def summary_document(rows: list[dict], exit_status: int, started: str) -> dict:
    """The JSON of `--swavbench-summary`: a one-line headline, totals by status, a row per case."""
    totals: dict[str, int] = {}
    for r in rows:
        totals[r.get("status", "?")] = totals.get(r.get("status", "?"), 0) + 1
    bad = [r for r in rows if r.get("status") not in ("pass", "skipped")]
    judged = [r for r in rows if r.get("status") != "skipped"]
    head = f"{sum(r.get('status') == 'pass' for r in rows)} of {len(judged)} swavbench case(s) passed"
    for r in bad:
        diff = f" ips {r['ips_diff']}" if r.get("ips_diff") and r.get("status") == "regression" else ""
        kind = f" ({r['failure_kind']})" if r.get("failure_kind") else ""
        head += f"; {HEADLINES.get(r.get('status', ''), str(r.get('status')).upper())}{kind} {r.get('case')}{diff}"
    return {
        "schema_version": 1, "swavbench_version": __version__, "started_utc": started,
        "finished_utc": _utc_now(), "exit_status": int(exit_status), "headline": head, "totals": totals,
        "cases": rows,
    }  # fmt: skip


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """--swavbench-summary FILE: written once, by the controller (never by an xdist worker)."""
    path = session.config.getoption("swavbench_summary", None)
    if not path or is_xdist_worker(session.config):
        return
    from swavbench.harness.runs import write_json_atomic

    doc = summary_document(session.config.stash[REPORTS_KEY], int(exitstatus), session.config.stash[STARTED_KEY])
    write_json_atomic(Path(path), doc)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"swavbench: summary {Path(path).resolve()}: {doc['headline']}")
