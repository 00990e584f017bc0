"""pytest plugin: the `swavbench` fixture that runs a case and turns its verdict into pass / fail / skip.

Registered by the top-level conftest.py (`pytest_plugins = ["swavbench.plugin"]`), or `-p swavbench.plugin`.
Options mirror `swavbench run`: --swavbench-profile, --swavbench-baseline-dir, --swavbench-allow-mismatch,
--swavbench-reports-dir, --swavbench-data-root, --swavbench-update-baseline (record instead of judging),
--swavbench-worker (the rank command; default `swavbench train`), --swavbench-confirm N (reruns when ips
alone is outside its band), --swavbench-confirm-delay S (wait before a rerun). A failing case's message is the verdict
line and the advice, then the table; a case that cannot run on this build is skipped with its reason. What CI sees
(JUnit properties, --swavbench-summary FILE, -k with PASSL long names, pytest-xdist) is in swavbench.plugin_ci.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path
from typing import Optional

import pytest

from swavbench import paths
from swavbench.errors import SwavbenchError
from swavbench.harness import cases, runner
from swavbench.harness.cases import DEVICE_PROFILES, Plan

pytest_plugins = ["swavbench.plugin_ci"]  # imported by pytest (not here) so its asserts are rewritten like ours

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
        self.reports_dir: Path = opt("swavbench_reports_dir")
        self.allow_mismatch: bool = opt("swavbench_allow_mismatch")
        self.update: bool = opt("swavbench_update_baseline")
        self.data_root: Optional[Path] = opt("swavbench_data_root")
        self.confirm: int = 0 if self.update else max(opt("swavbench_confirm"), 0)
        self.confirm_delay_s: float = max(opt("swavbench_confirm_delay"), 0.0)
        worker = opt("swavbench_worker")
        self.worker = shlex.split(worker) if worker else None
        self._runs: dict[tuple, runner.Outcome] = {}

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
            from swavbench import plugin_ci

            with self._uncaptured(), plugin_ci.one_run_at_a_time(self.reports_dir, case_id):
                sys.stdout.write("\n")
                self._runs[key] = runner.execute(
                    plan,
                    self.baseline_dir,
                    self.reports_dir,
                    self.allow_mismatch,
                    self.worker,
                    stream=sys.stdout,
                    confirm=self.confirm,
                    confirm_delay_s=self.confirm_delay_s,
                )
        return self._runs[key]

    def _uncaptured(self):
        """Write straight to the terminal (live progress, baseline diffs), past pytest's capture."""
        capman = self.config.pluginmanager.getplugin("capturemanager")
        return capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()

    def check(self, case_id: str, *overrides: str) -> runner.Outcome:
        """Run and judge: pytest.fail with the verdict line, advice and table unless the case passes."""
        from swavbench import plugin_ci

        try:
            outcome, error = self.run(case_id, *overrides), None
        except SwavbenchError as err:  # corrupt baseline, port in use, ...: one line, as on the CLI
            outcome, error = None, err
        if error is not None:  # failed outside the except block: no "During handling of the above exception"
            plugin_ci.record_properties(self.config, plugin_ci.error_properties(error))
            pytest.fail(plugin_ci.error_message(error), pytrace=False)
        plugin_ci.record_properties(self.config, plugin_ci.outcome_properties(outcome))
        if self.update:
            return self._record(outcome)
        if outcome.exit_code != 0:
            pytest.fail(plugin_ci.failure_message(outcome), pytrace=False)
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


@pytest.fixture(scope="session")
def swavbench(pytestconfig: pytest.Config) -> Session:
    """Run swavbench cases: `swavbench.check("swav_pt_1n8c_fp16o1")` fails the test unless the case passes."""
    return Session(pytestconfig)


def pytest_report_header(config: pytest.Config) -> list[str]:
    profile = config.getoption("swavbench_profile")
    return [f"swavbench: profile {profile}, baselines {config.getoption('swavbench_baseline_dir')}"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """--swavbench-report: import the runs (reports/runs/*) into the history and rebuild the report."""
    out = session.config.getoption("swavbench_report", None)
    if not out or hasattr(session.config, "workerinput"):  # under xdist the controller writes it, once
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
