"""A team's own cases (swavbench.harness.usercases): from swavbench.toml, a YAML file it names, or Python; one-line
errors naming file, case and field; every command and the plugin (in another repository) see them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from swavbench import paths
from swavbench.errors import ConfigError
from swavbench.harness import cases, usercases
from swavbench.harness.usercases import case_from_mapping, load_case_file
from tests.conftest import clean_env

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "fake_worker.py"
BUILTIN = {c.id: c for c in cases.CASES}
TINY = """
[[case]]
id = "tiny_pt_1n2c"
base = "swav_pt_1n8c_fp16o1"
cpu = {devices_per_node = 2, max_train_step = 6}
cpu_data = {classes = 4, train_per_class = 40, val_per_class = 2}
overrides = ["Optimizer.LRScheduler.learning_rate=0.3"]
"""


@pytest.fixture
def home(tmp_path):
    """A project home pinned for the test (and unpinned, with the Python-registered cases forgotten, after)."""
    previous = paths.use_home(tmp_path)
    yield tmp_path
    paths.use_home(previous)
    usercases.clear_registered()


def test_a_case_from_a_base_changes_only_what_it_names(home):
    (home / "swavbench.toml").write_text(TINY)
    (tiny,) = usercases.home_cases()
    base = BUILTIN["swav_pt_1n8c_fp16o1"]
    assert (tiny.id, tiny.passl_name, tiny.config, tiny.task) == ("tiny_pt_1n2c", "tiny_pt_1n2c", base.config, "pt")
    cpu = tiny.cpu
    assert (cpu.nnodes, cpu.devices_per_node, cpu.max_train_step, cpu.print_batch_step) == (1, 2, 6, 5)
    assert tiny.gpu == base.gpu and tiny.passl_marker == base.passl_marker
    assert tiny.cpu_tolerances == base.cpu_tolerances
    assert (tiny.cpu_data.classes, tiny.cpu_data.train_per_class, tiny.cpu_data.size) == (4, 40, base.cpu_data.size)
    assert tiny.extra_overrides == ("Optimizer.LRScheduler.learning_rate=0.3",)
    assert cases.resolve_case("tiny_pt_1n2c") == tiny and "tiny_pt_1n2c" in cases.case_ids()
    plan = cases.plan(tiny, "cpu")
    assert plan.world_size == 2 and "Optimizer.LRScheduler.learning_rate=0.3" in plan.overrides


def test_a_case_without_base_names_everything_and_its_config_file_is_relative_to_the_case_file(home):
    shipped = REPO / "swavbench" / "resources" / "configs" / "swav_resnet50_224_lp_in1k_1n8c_dp_fp32.yaml"
    (home / "configs").mkdir()
    (home / "configs" / "my_lp.yaml").write_text(shipped.read_text())
    (home / "more.yaml").write_text(textwrap.dedent("""
        cases:
          - id: my_lp_1n2c
            config: configs/my_lp.yaml
            task: lp
            gpu: {nnodes: 1, devices_per_node: 8, max_train_step: 201, print_batch_step: 20}
            cpu: {nnodes: 1, devices_per_node: 2, max_train_step: 11, print_batch_step: 5}
            passl_marker: "200/5005"
            cpu_tolerances: {ips_pct: 30}
    """))
    (home / "swavbench.toml").write_text('case_files = ["more.yaml"]\n' + TINY)
    tiny, lp = usercases.home_cases()
    assert tiny.id == "tiny_pt_1n2c" and lp.id == "my_lp_1n2c"
    assert lp.config == str((home / "configs" / "my_lp.yaml").resolve()) and lp.needs_pretrained
    assert lp.cpu_tolerances.ips_pct == 30.0 and lp.tolerances == BUILTIN["swav_lp_1n8c_fp32"].tolerances
    assert [c.id for c in cases.all_cases()][-2:] == ["tiny_pt_1n2c", "my_lp_1n2c"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"id": "x", "base": "swav_pt_1n8c_fp16o1", "cpu": {"devices_per_nod": 2}},
         "case[0] (x): cpu.devices_per_nod: unknown field (did you mean devices_per_node?)"),
        ({"id": "x", "bse": "swav_pt_1n8c_fp16o1"}, "case[0] (x): bse: unknown field (did you mean base?)"),
        ({"id": "a b"}, "case[0]: id: expected an id of letters, digits"),
        ({"id": "swav_pt_1n8c_fp16o1", "base": "swav_pt_1n8c_fp16o1"}, "id: the id 'swav_pt_1n8c_fp16o1' is taken"),
        ({"id": "x", "config": "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"},
         "case[0] (x): missing task, cpu, gpu (or name a `base` case to start from)"),
        ({"id": "x", "base": "swav_pt_1n8c_fp16o1", "cpu": {"max_train_step": 0}},
         "case[0] (x): cpu.max_train_step: expected an integer >= 1, got 0"),
        ({"id": "x", "base": "swav_pt_1n8c_fp16o1", "deterministic": "yes"}, "deterministic: expected bool, got 'yes'"),
        ({"id": "x", "base": "nope"}, "case[0] (x): base: unknown case 'nope'"),
        ({"id": "x", "base": "swav_pt_1n8c_fp16o1", "config": "missing.yaml"},
         "case[0] (x): config: no such config file or shipped config name"),
        ({"id": "x", "base": "swav_pt_1n8c_fp16o1", "overrides": ["lr"]},
         "overrides: expected a list of 'Section.key=value' strings"),
    ],
)
def test_errors_are_one_line_naming_the_file_the_case_and_the_field(entry, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        case_from_mapping(entry, BUILTIN, "swavbench.toml", 0, tmp_path)
    assert str(err.value).startswith("swavbench.toml: ") and message in str(err.value) and "\n" not in str(err.value)


def test_file_level_errors(tmp_path):
    bad = tmp_path / "swavbench.toml"
    bad.write_text("[[case]\nid = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_case_file(bad)
    bad.write_text('cases = []\n')
    with pytest.raises(ConfigError, match=r"cases: unknown setting \(did you mean case\?\)"):
        load_case_file(bad)
    bad.write_text('case_files = ["swavbench.toml"]\n')
    with pytest.raises(ConfigError, match="a loop"):
        load_case_file(bad)
    (tmp_path / "dup.yaml").write_text("- {id: tiny_pt_1n2c, base: swav_pt_1n8c_fp16o1}\n")
    bad.write_text('case_files = ["dup.yaml"]\n' + TINY)
    with pytest.raises(ConfigError, match=r"dup.yaml: case\[0\] \(tiny_pt_1n2c\): id: the id 'tiny_pt_1n2c' is taken"):
        load_case_file(bad)


def test_cases_from_python_register_once(home):
    spec = {"id": "py_pt_1n2c", "base": "swav_pt_1n8c_fp16o1", "cpu": {"devices_per_node": 2}}
    (case,) = usercases.register(spec)
    assert usercases.register(dict(spec)) == [case]  # the same case again: a no-op
    with pytest.raises(ConfigError, match="registered before with other fields"):
        usercases.register({**spec, "cpu": {"devices_per_node": 4}})
    assert cases.resolve_case("py_pt_1n2c") == case
    assert usercases.register(cases.CASES[0]) == [cases.CASES[0]]  # a built-in as a Case: known, not added twice
    assert [c.id for c in cases.all_cases()].count(cases.CASES[0].id) == 1


def test_swavbench_cases_lists_the_homes_own_cases(tmp_path):
    (tmp_path / "swavbench.toml").write_text(TINY)
    (tmp_path / "sub").mkdir()
    out = subprocess.run([sys.executable, "-m", "swavbench.cli", "cases", "--profile", "cpu"], cwd=tmp_path / "sub",
                         capture_output=True, text=True, timeout=120, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert "tiny_pt_1n2c" in out.stdout and "1x2" in out.stdout and "swav_pt_4n32c_fp16o1" in out.stdout
    (tmp_path / "swavbench.toml").write_text(TINY.replace("devices_per_node", "devices"))
    out = subprocess.run([sys.executable, "-m", "swavbench.cli", "cases"], cwd=tmp_path / "sub",
                         capture_output=True, text=True, timeout=120, env=clean_env())
    assert out.returncode == 3 and out.stderr.startswith(f"swavbench: error: {tmp_path.resolve() / 'swavbench.toml'}: ")
    assert "cpu.devices: unknown field (did you mean devices_per_node?)" in out.stderr and out.stderr.count("\n") == 1


def test_another_repository_runs_its_own_case_with_a_short_test_file(pytester: pytest.Pytester, tmp_path):
    """No conftest, no pytest.ini, no `-p`: the plugin loads through its pytest11 entry point; the case comes
    from the repository's swavbench.toml, another from a Python list; baselines and runs land in its home."""
    data = tmp_path / "fakedata"
    (data / "train" / "a").mkdir(parents=True)
    for i in range(320):
        (data / "train" / "a" / f"{i}.jpg").touch()
    pytester.path.joinpath("swavbench.toml").write_text(TINY)
    pytester.makepyfile(test_nightly="""
        def test_tiny(swavbench):
            swavbench.check("tiny_pt_1n2c")
    """, test_listed="""
        import pytest
        MINE = [{"id": "listed_pt_1n4c", "base": "swav_pt_1n8c_fp16o1",
                 "cpu": {"devices_per_node": 4, "max_train_step": 6}}]

        @pytest.mark.parametrize("case", MINE, ids=lambda c: c["id"])
        def test_listed(swavbench, case):
            swavbench.check(case)
    """)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--swavbench-profile", "cpu", "--swavbench-worker", f"{sys.executable} {FAKE} train",
        "--swavbench-data-root", str(data), "--swavbench-record-missing", "--swavbench-confirm-delay", "0",
        timeout=300,
    )
    result.assert_outcomes(passed=2)
    home = pytester.path.resolve()
    result.stdout.fnmatch_lines([f"swavbench: profile cpu, home {home}, baselines {home / 'baselines'}"])
    assert {p.name for p in home.glob("baselines/cpu-*/*.json")} == {"tiny_pt_1n2c.json", "listed_pt_1n4c.json"}
    assert len(list(home.glob("reports/runs/*tiny_pt_1n2c*/result.json"))) == 2  # recorded, then judged


def test_case_params_marks_every_case_and_a_broken_swavbench_toml_is_one_line(pytester: pytest.Pytester):
    pytester.path.joinpath("swavbench.toml").write_text(TINY)
    pytester.makepyfile(test_params="""
        import pytest
        from swavbench.plugin import case_params

        @pytest.mark.parametrize("case_id", case_params())
        def test_case(case_id):
            pass
    """)
    multinode = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "swavbench_multinode")
    multinode.assert_outcomes(passed=1, deselected=4)  # swav_pt_4n32c_fp16o1 only
    slow = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "swavbench_slow", "-v")
    slow.assert_outcomes(passed=5)
    slow.stdout.fnmatch_lines(["*test_case?tiny_pt_1n2c? PASSED*"])
    pytester.path.joinpath("swavbench.toml").write_text(TINY.replace("base =", "bse ="))
    broken = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert broken.ret == pytest.ExitCode.INTERRUPTED and "Traceback" not in broken.stdout.str()
    broken.stdout.fnmatch_lines(["swavbench: error: *swavbench.toml: case[[]0[]] (tiny_pt_1n2c): bse: unknown field*"])
