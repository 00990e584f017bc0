"""pytest plugin: the `swavbench` fixture that runs a case and turns its verdict into pass / fail / skip.

Loaded through the `pytest11` entry point wherever swavbench is installed (no conftest needed), so a test
file in any repository can run a case:

    def test_tiny(swavbench):
        swavbench.check("tiny_pt_1n2c")      # a built-in case id, a case of the home's swavbench.toml,
                                             # or a mapping / Case given from Python

`case_params()` gives one pytest.param per case (built-in + the home's) for `parametrize`. Markers are
namespaced: swavbench_gpu (skipped unless paddle can use a GPU), swavbench_slow, swavbench_multinode,
swavbench_e2e. The project home (baselines/, reports/, data/cache/) is --swavbench-home, else
$SWAVBENCH_HOME, else found from the current directory as the CLI finds it (swavbench.paths).
Options mirror `swavbench run`: --swavbench-profile, --swavbench-baseline-dir, --swavbench-allow-mismatch,
--swavbench-reports-dir, --swavbench-data-root, --swavbench-update-baseline (record instead of judging),
--swavbench-worker (the rank command; default `swavbench train`), --swavbench-confirm-mode ab|rerun|off (how
an ips-only failure is confirmed: a paired A/B against the baseline's build, or reruns), --swavbench-confirm N
(reruns when ips alone is outside its band), --swavbench-confirm-delay S (wait before a rerun). A failing case's
message is the verdict line and the advice, then the table; a case that cannot run on this build is skipped with
its reason. What CI sees (JUnit properties, --swavbench-summary FILE, -k with PASSL long names, pytest-xdist) is
in swavbench.plugin_ci.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import pytest

from swavbench import paths
from swavbench.errors import SwavbenchError
from swavbench.harness import cases, runner, usercases
from swavbench.harness.cases import DEVICE_PROFILES, Case, Plan

pytest_plugins = ["swavbench.plugin_ci"]  # imported by pytest (not here) so its asserts are rewritten like ours

MARKERS = {
    "swavbench_gpu": "needs a CUDA GPU (skipped when paddle sees none)",
    "swavbench_multinode": "runs several paddle.distributed.launch processes (simulated nodes)",
    "swavbench_slow": "takes more than ~10 s (launches real training ranks)",
    "swavbench_e2e": "end to end with the real trainer on CPU (swavbench's own suite deselects it by default)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("swavbench", "swavbench cases (same options as `swavbench run`)")
    group.addoption(
        "--swavbench-home",
        type=Path,
        default=None,
        metavar="DIR",
        help="project home holding baselines/, reports/, data/cache/, swavbench.toml (default: $SWAVBENCH_HOME, "
        "else the nearest folder up from the current one holding swavbench.toml or baselines/, else the current)",
    )
    group.addoption(
        "--swavbench-profile",
        choices=("auto",) + DEVICE_PROFILES,
        default="auto",
        help="device profile that scales the cases (default: gpu if paddle sees one, else cpu)",
    )
    group.addoption(
        "--swavbench-baseline-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="baselines root holding <profile>/<case>.json (default: <home>/baselines)",
    )
    group.addoption(
        "--swavbench-reports-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where runs/<run-id>/ are kept (default: <home>/reports)",
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
        const="",
        default=None,
        metavar="PATH",
        help="at the end, record this session's runs in the history and write the HTML report "
        "(default path <home>/reports/index.html)",
    )
    group.addoption(
        "--swavbench-worker",
        default=None,
        metavar="CMD",
        help="command each rank runs instead of `swavbench train` (e.g. a stand-in worker)",
    )


_PINNED = pytest.StashKey[Optional[Path]]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers; pin the project home for the session (restored at unconfigure)."""
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.stash[_PINNED] = paths.use_home(paths.project_home(config.getoption("swavbench_home")))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PINNED in config.stash:
        paths.use_home(config.stash[_PINNED])
        usercases.clear_registered()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("swavbench_gpu") is not None:
        from swavbench.machine import probe_gpu

        probe = probe_gpu()
        if probe.problem():  # a GPU node whose paddle cannot use its GPU: a failure, never a quiet skip
            pytest.fail(f"swavbench: error: {probe.problem()}", pytrace=False)
        if not probe.usable:
            pytest.skip("needs a CUDA GPU: paddle sees none here")


def case_params(extra: Iterable[Union[str, Case, dict]] = ()) -> list:
    """One pytest.param per case id for `parametrize("case_id", case_params())`: the built-in cases, the project
    home's swavbench.toml, and `extra` (ids, or mappings / Case objects, registered here). Marked
    swavbench_slow, plus swavbench_multinode for a multi-node topology."""
    chosen: list[Case] = []
    try:
        chosen = list(usercases.all_cases())
        for item in extra:
            case = cases.resolve_case(item) if isinstance(item, str) else usercases.register(item)[0]
            chosen += [] if case in chosen else [case]
        problem = ""
    except SwavbenchError as err:  # a broken swavbench.toml: its one line, no traceback
        problem = f"swavbench: error: {err}"
    if problem:
        pytest.fail(problem, pytrace=False)
    return [pytest.param(c.id, id=c.id, marks=[pytest.mark.swavbench_slow]
                         + ([pytest.mark.swavbench_multinode] if c.multinode else [])) for c in chosen]


class Session:
    """Runs cases for tests, once per (case, overrides) per pytest session."""

    def __init__(self, config: pytest.Config) -> None:
        opt = config.getoption
        self.config = config
        profile = opt("swavbench_profile")
        self.device_profile = None if profile == "auto" else profile
        self.home = paths.home()
        self.baseline_dir: Path = opt("swavbench_baseline_dir") or self.home.baselines
        self.session_baselines: Optional[Path] = None
        self.record_missing: bool = opt("swavbench_record_missing")
        if opt("swavbench_session_baselines"):
            if opt("swavbench_update_baseline"):
                raise pytest.UsageError("--swavbench-session-baselines records into a temporary dir: it cannot be "
                                        "combined with --swavbench-update-baseline")
            self.session_baselines = self.baseline_dir = Path(tempfile.mkdtemp(prefix="swavbench-session-baselines-"))
            self.record_missing = True
        self.reports_dir: Path = opt("swavbench_reports_dir") or self.home.reports
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

    def add_cases(self, specs: Iterable[Union[Case, dict]]) -> list[str]:
        """Register cases given from Python (mappings with swavbench.toml's fields, or Case objects); their ids."""
        return [c.id for c in usercases.register(*specs)]

    def plan(self, case: Union[str, Case, dict], *overrides: str) -> Plan:
        """The case scaled to this session's profile (the CPU dataset is made once and cached)."""
        return cases.plan_for(self._case_id(case), self.device_profile, self.data_root, overrides)

    @staticmethod
    def _case_id(case: Union[str, Case, dict]) -> str:
        return case if isinstance(case, str) else usercases.register(case)[0].id

    def run(self, case: Union[str, Case, dict], *overrides: str) -> runner.Outcome:
        """Run a case (or reuse this session's run of it), showing live progress on the terminal."""
        case_id = self._case_id(case)
        key = (case_id, overrides)
        if key not in self._runs:
            plan = self.plan(case_id, *overrides)
            if plan.skip_reason:
                pytest.skip(plan.skip_reason)
            from swavbench import plugin_ci
            from swavbench.commands.run import execute_or_record

            with self._uncaptured(), plugin_ci.one_run_at_a_time(self.reports_dir, case_id):
                sys.stdout.write("\n")
                outcomes = execute_or_record(
                    plan,
                    self.baseline_dir,
                    self.reports_dir,
                    record_missing=self.record_missing and not self.update,
                    stream=sys.stdout,
                    data_root=self.data_root,
                    **({"ips_gate": SESSION_IPS_NOTE} if self.session_baselines is not None else {}),
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

    def check(self, case: Union[str, Case, dict], *overrides: str) -> runner.Outcome:
        """Run and judge: pytest.fail with the verdict line, advice and table unless the case passes.

        `case`: a case id (built-in, or from the home's swavbench.toml), or a mapping / Case given from Python.
        """
        from swavbench import plugin_ci

        try:
            outcome, error = self.run(case, *overrides), None
        except SwavbenchError as err:  # corrupt baseline, port in use, ...: one line, as on the CLI
            outcome, error = None, err
        if error is not None:  # failed outside the except block: no "During handling of the above exception"
            plugin_ci.record_properties(self.config, plugin_ci.error_properties(error))
            pytest.fail(plugin_ci.error_message(error), pytrace=False)
        plugin_ci.record_properties(self.config, plugin_ci.outcome_properties(outcome))
        if self.update:
            return self._record(outcome)
        if outcome.exit_code != 0:
            if self.session_baselines is not None and outcome.verdict.status == "regression":
                outcome.verdict.advice = session_advice(outcome)
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


SESSION_IPS_NOTE = (
    "the baseline is a run of this same code on this machine minutes ago, so an ips difference is this "
    "machine's speed moving, not the code; judge throughput with swavbench ab or a nightly machine's baseline"
)


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
    """Run swavbench cases: `swavbench.check("swav_pt_1n8c_fp16o1")` fails the test unless the case passes.

    First the start-up checks (paddle installed once, usable by a visible GPU): a problem ends the session
    with its one-line reason and exit code 6, as on the CLI.
    """
    from swavbench.envcheck import check_environment

    profile = pytestconfig.getoption("swavbench_profile")
    try:
        check_environment(None if profile == "auto" else profile)
    except SwavbenchError as err:
        pytest.exit(f"swavbench: error: {err}", returncode=err.exit_code)
    session = Session(pytestconfig)
    yield session
    if session.session_baselines is not None:  # the session's own baselines live as long as the session
        shutil.rmtree(session.session_baselines, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    profile = config.getoption("swavbench_profile")
    home = paths.home()
    if config.getoption("swavbench_session_baselines"):
        return [f"swavbench: profile {profile}, home {home.root}, baselines recorded by this session on this "
                "machine (temporary dir)"]
    return [f"swavbench: profile {profile}, home {home.root}, baselines "
            f"{config.getoption('swavbench_baseline_dir') or home.baselines}"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """--swavbench-report: import the runs (reports/runs/*) into the history and rebuild the report."""
    out = session.config.getoption("swavbench_report", None)
    if out is None or hasattr(session.config, "workerinput"):  # under xdist the controller writes it, once
        return
    from swavbench.report import build_report
    from swavbench.store.history import History

    home = paths.home()
    reports_dir = Path(session.config.getoption("swavbench_reports_dir") or home.reports)
    out = out or reports_dir / home.report_html.name
    db = reports_dir / home.history_db.name
    with History(db) as history:
        summary = history.import_runs(reports_dir / "runs")
        path = build_report(history, out)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"swavbench: {summary.line()}; report: {Path(path).resolve()}")
