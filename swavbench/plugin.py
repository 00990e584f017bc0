"""pytest plugin: the `swavbench` fixture that runs a case and turns its verdict into pass / fail / skip.

Registered by the top-level conftest.py (`pytest_plugins = ["swavbench.plugin"]`), or `-p swavbench.plugin`.
Options mirror `swavbench run`: --swavbench-profile, --swavbench-baseline-dir, --swavbench-allow-mismatch,
--swavbench-reports-dir, --swavbench-data-root, --swavbench-update-baseline (record instead of judging),
--swavbench-worker (the rank command; default `swavbench train`), --swavbench-confirm-mode ab|rerun|off (how
an ips-only failure is confirmed: a paired A/B against the baseline's build, or reruns), --swavbench-confirm N
(reruns when ips alone is outside its band), --swavbench-confirm-delay S (wait before a rerun). A failing
case's message is the verdict table plus the advice line; a case that cannot run on this build is skipped
with its reason.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import pytest

from swavbench import paths
from swavbench.errors import SwavbenchError
from swavbench.harness import cases, runner
from swavbench.harness.cases import DEVICE_PROFILES, Plan

MARKERS = {
    "gpu": "needs a CUDA GPU (skipped when paddle sees none)",
    "multinode": "runs several paddle.distributed.launch processes (simulated nodes)",
    "slow": "takes more than ~10 s (launches real training ranks)",
    "e2e": "end to end with the real trainer on CPU (deselected by default: pytest -m e2e)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("swavbench", "swavbench cases (same options as `swavbench run`)")
    group.addoption(
        "--swavbench-profile",
        choices=("auto",) + DEVICE_PROFILES,
        default="auto",
        help="device profile that scales the cases (default: gpu if paddle sees one, else cpu)",
    )
    group.addoption(
        "--swavbench-baseline-dir",
        type=Path,
        default=paths.BASELINES_DIR,
        metavar="DIR",
        help="baselines root holding <profile>/<case>.json",
    )
    group.addoption(
        "--swavbench-reports-dir",
        type=Path,
        default=paths.REPORTS_DIR,
        metavar="DIR",
        help="where runs/<run-id>/ are kept",
    )
    group.addoption(
        "--swavbench-allow-mismatch",
        action="store_true",
        help="compare even against a baseline from another profile or paddle version",
    )
    group.addoption(
        "--swavbench-update-baseline",
        action="store_true",
        help="record each case's baseline from this run instead of judging it",
    )
    group.addoption(
        "--swavbench-record-missing",
        action="store_true",
        help="a case with no baseline for this machine's profile records one from a first run, then judges a rerun",
    )
    group.addoption(
        "--swavbench-session-baselines",
        action="store_true",
        help="judge every case against a baseline this session records on this machine first (a temporary "
        "baseline dir; implies --swavbench-record-missing): what `make test` uses, so the suite holds on any "
        "machine",
    )
    group.addoption(
        "--swavbench-data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="dataset root (default on cpu: the cached synthetic set, made once)",
    )
    group.addoption(
        "--swavbench-confirm",
        type=int,
        default=runner.DEFAULT_CONFIRM,
        metavar="N",
        help="when ips alone is outside its band, rerun up to N times; a regression needs every run outside",
    )
    group.addoption(
        "--swavbench-confirm-delay",
        type=float,
        default=runner.DEFAULT_CONFIRM_DELAY_S,
        metavar="S",
        help="seconds to wait before a confirmation rerun (past a slow spell of the machine)",
    )
    group.addoption(
        "--swavbench-confirm-mode",
        choices=runner.CONFIRM_MODES,
        default=runner.DEFAULT_CONFIRM_MODE,
        help="how an ips-only failure is confirmed: ab (a paired A/B against the baseline's own build when it "
        "can be rebuilt, else a rerun), rerun, off",
    )
    group.addoption(
        "--swavbench-report",
        nargs="?",
        const="reports/index.html",
        default=None,
        metavar="PATH",
        help="at the end, record this session's runs in the history and write the HTML report "
        "(default path reports/index.html)",
    )
    group.addoption(
        "--swavbench-worker",
        default=None,
        metavar="CMD",
        help="command each rank runs instead of `swavbench train` (e.g. a stand-in worker)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        from swavbench.harness.baselines import detect_gpu

        if not detect_gpu():
            pytest.skip("needs a CUDA GPU: paddle sees none here")


class Session:
    """Runs cases for tests, once per (case, overrides) per pytest session."""

    def __init__(self, config: pytest.Config) -> None:
        opt = config.getoption
        self.config = config
        profile = opt("swavbench_profile")
        self.device_profile = None if profile == "auto" else profile
        self.baseline_dir: Path = opt("swavbench_baseline_dir")
        self.session_baselines: Optional[Path] = None
        self.record_missing: bool = opt("swavbench_record_missing")
        if opt("swavbench_session_baselines"):
            if opt("swavbench_update_baseline"):
                raise pytest.UsageError("--swavbench-session-baselines records into a temporary dir: it cannot be "
                                        "combined with --swavbench-update-baseline")
            self.session_baselines = self.baseline_dir = Path(tempfile.mkdtemp(prefix="swavbench-session-baselines-"))
            self.record_missing = True
        self.reports_dir: Path = opt("swavbench_reports_dir")
        self.allow_mismatch: bool = opt("swavbench_allow_mismatch")
        self.update: bool = opt("swavbench_update_baseline")
        self.data_root: Optional[Path] = opt("swavbench_data_root")
        self.confirm: int = 0 if self.update else max(opt("swavbench_confirm"), 0)
        self.confirm_delay_s: float = max(opt("swavbench_confirm_delay"), 0.0)
        self.confirm_mode: str = opt("swavbench_confirm_mode")
        worker = opt("swavbench_worker")
        self.worker = shlex.split(worker) if worker else None
        self._runs: dict[tuple, runner.Outcome] = {}
        self.recorded: list[runner.Outcome] = []  # runs that recorded a missing baseline (then were rerun)

    def plan(self, case_id: str, *overrides: str) -> Plan:
        """The case scaled to this session's profile (the CPU dataset is made once and cached)."""
        return cases.plan_for(case_id, self.device_profile, self.data_root, overrides)

    def run(self, case_id: str, *overrides: str) -> runner.Outcome:
        """Run a case (or reuse this session's run of it), showing live progress on the terminal."""
        key = (case_id, overrides)
        if key not in self._runs:
            plan = self.plan(case_id, *overrides)
            if plan.skip_reason:
                pytest.skip(plan.skip_reason)
            from swavbench.commands.run import execute_or_record

            with self._uncaptured():
                sys.stdout.write("\n")
                outcomes = execute_or_record(
                    plan,
                    self.baseline_dir,
                    self.reports_dir,
                    record_missing=self.record_missing and not self.update,
                    stream=sys.stdout,
                    data_root=self.data_root,
                    allow_mismatch=self.allow_mismatch,
                    worker=self.worker,
                    confirm=self.confirm,
                    confirm_delay_s=self.confirm_delay_s,
                    confirm_mode="off" if self.update else self.confirm_mode,
                )
            self.recorded += outcomes[:-1]
            self._runs[key] = outcomes[-1]
        return self._runs[key]

    def _uncaptured(self):
        """Write straight to the terminal (live progress, baseline diffs), past pytest's capture."""
        capman = self.config.pluginmanager.getplugin("capturemanager")
        return capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()

    def check(self, case_id: str, *overrides: str) -> runner.Outcome:
        """Run and judge: pytest.fail with the verdict table and advice unless the case passes."""
        try:
            outcome = self.run(case_id, *overrides)
        except SwavbenchError as err:  # corrupt baseline, port in use, ...: one line, as on the CLI
            pytest.fail(f"{type(err).__name__}: {err}", pytrace=False)
        if self.update:
            return self._record(outcome)
        if outcome.exit_code != 0:
            if self.session_baselines is not None and outcome.verdict.status == "regression":
                outcome.verdict.advice = session_advice(outcome)
            pytest.fail(outcome.text(), pytrace=False)
        return outcome

    def _record(self, outcome: runner.Outcome) -> runner.Outcome:
        from swavbench.commands import update_baseline

        if outcome.verdict.status == "failed":
            pytest.fail("refusing to record a failed run:\n" + outcome.text(), pytrace=False)
        data_root = ["--data-root", str(self.data_root)] if self.data_root is not None else []
        args = update_baseline.args_for(
            outcome.plan.case.id, "--from", str(outcome.run_dir), "--profile", outcome.plan.device_profile,
            "--baseline-dir", str(self.baseline_dir), "--reports-dir", str(self.reports_dir), *data_root,
        )  # fmt: skip
        with self._uncaptured():
            update_baseline.record(args, outcome.plan.case)
        return outcome


def session_advice(outcome: runner.Outcome) -> str:
    """What a regression means when the baseline came from a run of the same code minutes earlier."""
    failed = {c.metric for c in outcome.verdict.checks if c.verdict == "fail"}
    case = outcome.plan.case.id
    if outcome.plan.case.metric in failed:
        return (f"two runs of the same code in this session logged different {outcome.plan.case.metric} values: "
                f"the run is not repeatable on this machine; find the first differing step with "
                f"swavbench determinism {case}")
    if failed & set(runner.IPS_METRICS):
        return ("the same code ran outside the ips band of a run minutes earlier, twice: this machine's speed "
                "changed (another job on it?); rerun when it is quiet")
    return f"two runs of the same code in this session disagree on {', '.join(sorted(failed))}"


@pytest.fixture(scope="session")
def swavbench(pytestconfig: pytest.Config) -> Iterator[Session]:
    """Run swavbench cases: `swavbench.check("swav_pt_1n8c_fp16o1")` fails the test unless the case passes."""
    session = Session(pytestconfig)
    yield session
    if session.session_baselines is not None:  # the session's own baselines live as long as the session
        shutil.rmtree(session.session_baselines, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    profile = config.getoption("swavbench_profile")
    if config.getoption("swavbench_session_baselines"):
        return [f"swavbench: profile {profile}, baselines recorded by this session on this machine (temporary dir)"]
    return [f"swavbench: profile {profile}, baselines {config.getoption('swavbench_baseline_dir')}"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """--swavbench-report: import the runs (reports/runs/*) into the history and rebuild the report."""
    out = session.config.getoption("swavbench_report", None)
    if not out:
        return
    from swavbench.paths import DEFAULT_DB
    from swavbench.report import build_report
    from swavbench.store.history import History

    reports_dir = Path(session.config.getoption("swavbench_reports_dir"))
    db = reports_dir / Path(DEFAULT_DB).name
    with History(db) as history:
        summary = history.import_runs(reports_dir / "runs")
        path = build_report(history, out)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"swavbench: {summary.line()}; report: {Path(path).resolve()}")
