"""swavbench as a real package: the wheel's contents and metadata, a training rank that needs neither pytest
nor pandas, and (swavbench_e2e) fresh virtualenvs: the wheel with the CPU build recording and passing a case
from an empty folder, and the README's GPU lines against a stand-in `paddlepaddle-gpu`.

The virtualenv tests install from the package registry (paddlepaddle, numpy, ...); the stand-in is a local
wheel in a local index that replaces Paddle's own."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import clean_env
from tests.standin_paddle import DRIVER, fake_nvidia_smi, write_index, write_wheel

REPO = Path(__file__).resolve().parents[1]
PADDLE_INDEX = "https://www.paddlepaddle.org.cn/packages/stable/cu118/"
TINY_TOML = """
[[case]]
id = "tiny_pt_1n2c"
base = "swav_pt_1n8c_fp16o1"
cpu = {devices_per_node = 2, max_train_step = 6}
cpu_data = {classes = 4, train_per_class = 40, val_per_class = 2}
"""
TEST_FILE = """
def test_tiny(swavbench):
    swavbench.check("tiny_pt_1n2c")
"""


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 900)
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def source_copy(dest: Path) -> Path:
    """The working tree's files as git sees them (tracked and new, not ignored), without .git: a download of
    the repository, and no build files left in the checkout."""
    listed = run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for rel in filter(None, listed.split("\0")):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = source_copy(tmp_path_factory.mktemp("src"))
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, src])
    (built,) = dist.glob("swavbench-*.whl")
    return built


def venv(path: Path) -> Path:
    """A fresh virtualenv (no system site-packages); its bin/ folder."""
    run([sys.executable, "-m", "venv", path])
    return path / "bin"


def isolated_env(bin_dir: Path, *extra_path: Path, **extra: str) -> dict:
    """The environment of a user's shell in that virtualenv: no swavbench home or cache of this repo."""
    env = clean_env(**extra)
    for key in ("SWAVBENCH_HOME", "SWAVBENCH_CACHE_DIR", "SWAVBENCH_WORKER", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(key, None)
    env["PATH"] = os.pathsep.join([*map(str, extra_path), str(bin_dir), "/usr/local/bin", "/usr/bin", "/bin"])
    return env


def dists(python: Path, env: dict) -> dict:
    code = "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name'].lower(): d.version " \
           "for d in m.distributions()}))"
    return json.loads(run([python, "-c", code], env=env).stdout)


def test_the_wheel_ships_package_data_the_entry_points_and_paddle_only_as_an_extra(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    res = "swavbench/resources/"
    assert len([n for n in names if re.fullmatch(res + r"configs/swav_[^/]+\.yaml", n)]) == 4
    assert res + "configs/profiles/cpu.yaml" in names
    assert {n for n in names if n.startswith(res + "baselines/")} == {
        f"{res}baselines/passl-a100/{c}.json" for c in ("swav_pt_1n8c_fp16o1", "swav_lp_1n8c_fp32", "swav_ft_1n4c_fp32")
    }
    assert not any(n.startswith(("tests/", "cases/", "baselines/", "benchmarks/")) for n in names)
    assert re.search(r"^\[pytest11\]\nswavbench = swavbench\.plugin$", entry_points, re.M)
    assert re.search(r"^\[console_scripts\]\nswavbench = swavbench\.cli:main$", entry_points, re.M)
    requires = re.findall(r"^Requires-Dist: (.*)$", meta, re.M)
    unconditional = {re.split(r"[<>=; \[]", r)[0].lower() for r in requires if "extra ==" not in r}
    assert unconditional == {"numpy", "pyyaml", "pillow", "tomli"}  # a training rank's; tomli below 3.11 only
    assert 'paddlepaddle>=2.6; extra == "cpu"' in requires and 'paddlepaddle-gpu>=2.6; extra == "gpu"' in requires
    assert 'pytest>=7; extra == "harness"' in requires and 'pandas>=1.5; extra == "report"' in requires


BLOCKER = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pandas", "pytest", "_pytest"):
            raise ImportError(f"a training rank imported {name}")
sys.meta_path.insert(0, Blocked())
from swavbench.cli import main
code = main(sys.argv[1:])
print("loaded:", sorted(m for m in sys.modules if m.split(".")[0] in ("pandas", "pytest", "_pytest")))
sys.exit(code)
"""


@pytest.mark.swavbench_slow
def test_a_training_rank_imports_neither_pytest_nor_pandas(synth_data, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, "train", "-c", "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1", "--profile", "cpu",
         "-o", f"DataLoader.Train.dataset.root={synth_data}", "-o", f"Global.output_dir={tmp_path / 'out'}",
         "-o", "Global.max_train_step=1", "-o", "Global.print_batch_step=1",
         "-o", "DataLoader.Train.loader.num_workers=0"],
        capture_output=True, text=True, timeout=300, env=clean_env(), cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[Train][Epoch 1/" in proc.stdout + proc.stderr  # it trained a step
    assert "loaded: []" in proc.stdout


@pytest.mark.swavbench_e2e
def test_the_wheel_with_the_cpu_build_records_and_passes_a_case_from_an_empty_folder(wheel, tmp_path):
    """A fresh virtualenv, `pip install 'swavbench[cpu,harness]'` from the wheel, then in an empty folder: the
    team's two files (swavbench.toml, a test file); pytest records the case's baseline and judges a rerun to
    PASS; the report, the listing and the packaged reference baseline work from there too."""
    bin_dir = venv(tmp_path / "venv")
    env = isolated_env(bin_dir)
    run([bin_dir / "python", "-m", "pip", "install", "--quiet", f"{wheel}[cpu,harness]"], env=env)
    installed = dists(bin_dir / "python", env)
    assert "paddlepaddle" in installed and "paddlepaddle-gpu" not in installed and "pandas" not in installed

    project = tmp_path / "team-repo"
    project.mkdir()
    outside = run([bin_dir / "swavbench", "cases", "--profile", "cpu"], env=env, cwd=project)  # still empty
    assert outside.stdout.count("swav_") >= 4 and f"{project}/baselines/cpu-" in outside.stdout
    log = REPO / "tests" / "fixtures" / "logs" / "clean"
    shipped = subprocess.run([bin_dir / "swavbench", "compare", log, "--baseline",
                              "baselines/passl-a100/swav_pt_1n8c_fp16o1.json", "--json"],
                             env=env, cwd=project, capture_output=True, text=True, timeout=120)
    assert shipped.returncode in (0, 1), shipped.stderr  # a verdict, judged against the packaged copy
    assert "/site-packages/swavbench/resources/baselines/passl-a100/" in json.loads(shipped.stdout)["baseline"]

    (project / "swavbench.toml").write_text(TINY_TOML)
    (project / "test_nightly.py").write_text(TEST_FILE)
    result = run([bin_dir / "python", "-m", "pytest", "-p", "no:cacheprovider", "--swavbench-record-missing",
                  "--swavbench-confirm-delay", "0"], env=env, cwd=project)
    assert "1 passed" in result.stdout, result.stdout
    assert f"swavbench: profile auto, home {project}" in result.stdout
    (baseline,) = project.glob("baselines/cpu-*/tiny_pt_1n2c.json")
    records = sorted(project.glob("reports/runs/*tiny_pt_1n2c*/result.json"))
    by_status = {json.loads(r.read_text())["status"]: json.loads(r.read_text()) for r in records}
    assert sorted(by_status) == ["no_baseline", "pass"] and len(records) == 2
    rec = by_status["pass"]
    assert rec["home"] == str(project) and rec["paddle_commit"] and rec["commit"] is None  # no checkout: a wheel
    assert rec["environment"]["hostname"]
    assert (project / "data" / "cache").is_dir()  # the dataset was made in the home

    no_pandas = subprocess.run([bin_dir / "swavbench", "report"], env=env, cwd=project, capture_output=True, text=True)
    assert no_pandas.returncode == 6 and "pip install 'swavbench[report]'" in no_pandas.stderr
    run([bin_dir / "python", "-m", "pip", "install", "--quiet", f"{wheel}[report]"], env=env)
    report = run([bin_dir / "swavbench", "report"], env=env, cwd=project)
    assert "imported 2 run(s)" in report.stdout and "tiny_pt_1n2c" in (project / "reports" / "index.html").read_text()


def readme_gpu_lines() -> list[str]:
    """The command lines of the README's GPU install block, exactly as a user types them."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- gpu-install[^>]*-->\s*```bash\n(.*?)```\s*<!-- /gpu-install -->", text, re.S)
    assert block, "README.md has no gpu-install block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_gpu_block_is_three_commands_with_paddles_own_index():
    lines = readme_gpu_lines()
    assert lines[0].startswith("python -m pip install paddlepaddle-gpu==3.") and lines[0].endswith(PADDLE_INDEX)
    assert lines[1:] == ["python -m pip install '.[gpu]'", "swavbench env"]


@pytest.mark.swavbench_e2e
def test_the_readme_gpu_install_keeps_paddlepaddle_gpu_and_the_gpu_check_passes(tmp_path):
    """The README's GPU lines in a fresh virtualenv, with Paddle's index replaced by a local one holding a
    stand-in paddlepaddle-gpu (a `paddle` that says it is compiled with CUDA) and an nvidia-smi that shows a
    GPU: the project install does not pull in paddlepaddle, and `swavbench env` passes the GPU check."""
    lines = readme_gpu_lines()
    version = re.search(r"paddlepaddle-gpu==(\S+)", lines[0]).group(1)
    wheels = tmp_path / "wheels"
    index = write_index(tmp_path / "index", [write_wheel(wheels, "paddlepaddle-gpu", version, cuda=True),
                                             write_wheel(wheels, "paddlepaddle", "3.3.1", cuda=False)])
    bin_dir = venv(tmp_path / "venv")
    fake_nvidia_smi(tmp_path / "gpu-bin")
    env = isolated_env(bin_dir, tmp_path / "gpu-bin")
    checkout = source_copy(tmp_path / "checkout")
    outputs = []
    for line in lines:
        argv = shlex.split(line.replace(PADDLE_INDEX, index))
        argv[0] = str(bin_dir / argv[0])  # `python` and `swavbench` of the virtualenv, as its activate does
        outputs.append(run(argv, env=env, cwd=checkout))
    installed = dists(bin_dir / "python", env)
    assert installed.get("paddlepaddle-gpu") == version and "paddlepaddle" not in installed
    env_out = outputs[-1].stdout
    assert f"paddle: paddlepaddle-gpu {version}" in env_out and "CUDA 11.8, cuDNN 8.9.7" in env_out
    assert f"driver {DRIVER}" in env_out and "device profile: gpu" in env_out
    assert "gpu-a100-sxm4-40gb-x8" in env_out and "environment ok" in env_out

    # what the issue saw: installing the CPU build as well. Now the start-up check says so, in one line.
    run([bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-deps", "paddlepaddle==3.3.1", "-i", index],
        env=env)
    both = subprocess.run([bin_dir / "swavbench", "env"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert both.returncode == 6, both.stdout + both.stderr
    assert re.fullmatch(r"swavbench: error: both paddlepaddle 3\.3\.1 and paddlepaddle-gpu \S+ are installed: .*\n",
                        both.stderr)
