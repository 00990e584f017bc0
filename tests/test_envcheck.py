"""Start-up checks (swavbench.envcheck, swavbench.machine.probe_gpu): the three install problems are one line and
exit 6, and a visible NVIDIA GPU never falls back to the cpu profile by itself.

The CLI is driven from outside: a subprocess whose interpreter has no paddle (`python -S` over links to the
site-packages without it), a stand-in `paddlepaddle-gpu` first on PYTHONPATH beside the real CPU build, and a
fake `nvidia-smi` on PATH beside the real CPU build."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from swavbench import envcheck, machine
from swavbench.errors import EXIT_ENVIRONMENT, EnvironmentProblem
from swavbench.machine import GpuProbe
from tests.conftest import clean_env
from tests.standin_paddle import fake_nvidia_smi, without_paddle, write_tree

REPO = Path(__file__).resolve().parents[1]
CASE = "swav_pt_1n8c_fp16o1"


def cli(*args: str, env: dict, python: tuple = (sys.executable,), cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*python, "-m", "swavbench.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run's stderr is exactly one `swavbench: error:` line (nothing else: no traceback, no usage)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn(" not in ln]
    assert len(lines) == 1 and lines[0].startswith("swavbench: error: "), proc.stderr
    return lines[0]


# ---- the pure rules -----------------------------------------------------------------------------------------
def test_paddle_problem_names_each_install_problem_and_its_fix():
    assert envcheck.paddle_problem({"paddlepaddle": "3.3.1"}, True) is None
    assert envcheck.paddle_problem({"paddlepaddle-gpu": "3.2.0"}, True) is None
    missing = envcheck.paddle_problem({}, False)
    assert "paddle is not installed" in missing and "pip install 'swavbench[cpu]'" in missing
    assert "swavbench[gpu]" in missing
    both = envcheck.paddle_problem({"paddlepaddle": "3.3.1", "paddlepaddle-gpu": "3.2.0"}, True)
    assert "both paddlepaddle 3.3.1 and paddlepaddle-gpu 3.2.0 are installed" in both
    assert "pip uninstall -y paddlepaddle paddlepaddle-gpu" in both
    gone = envcheck.paddle_problem({"paddlepaddle-gpu": "3.2.0"}, False)
    assert "finds nothing" in gone and "pip install --force-reinstall paddlepaddle-gpu==3.2.0" in gone


def test_gpu_probe_problems():
    assert GpuProbe(None).problem() is None  # nothing visible: a CPU host
    assert GpuProbe("/dev/nvidia0", True, 8, "A100").problem() is None
    cpu_build = GpuProbe("/dev/nvidia0", cuda_build=False).problem()
    assert "NVIDIA GPU is visible (/dev/nvidia0)" in cpu_build and "CPU build" in cpu_build
    assert "pip uninstall -y paddlepaddle" in cpu_build and "--profile cpu" in cpu_build
    assert "sees no device" in GpuProbe("/dev/nvidia0", cuda_build=True, count=0).problem()
    assert "import paddle failed" in GpuProbe("/dev/nvidia0", error="import paddle failed (x)").problem()


def test_nvidia_evidence_reads_device_nodes_then_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    assert machine.nvidia_evidence(tmp_path) is None
    (tmp_path / "nvidia3").touch()
    (tmp_path / "nvidia1").touch()
    (tmp_path / "nvidiactl").touch()
    assert machine.nvidia_evidence(tmp_path) == str(tmp_path / "nvidia1")
    (tmp_path / "nvidia1").unlink()
    (tmp_path / "nvidia3").unlink()
    smi = fake_nvidia_smi(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert machine.nvidia_evidence(tmp_path) == f"nvidia-smi ({smi})"


def test_auto_device_never_falls_back_to_cpu_where_a_gpu_is_visible(monkeypatch):
    monkeypatch.setattr(machine, "probe_gpu", lambda: GpuProbe("/dev/nvidia0", cuda_build=False))
    with pytest.raises(EnvironmentProblem, match="CPU build") as err:
        machine.auto_device()
    assert err.value.exit_code == EXIT_ENVIRONMENT
    with pytest.raises(EnvironmentProblem, match="CPU build"):
        machine.machine_profile(threads=1)  # no cpu key by itself either
    assert machine.machine_profile(threads=1, device="cpu").startswith("cpu-")  # asked for: fine
    monkeypatch.setattr(machine, "probe_gpu", lambda: GpuProbe(None))
    assert machine.auto_device() == "cpu"  # a CPU host
    with pytest.raises(EnvironmentProblem, match="paddle sees no GPU"):
        machine.machine_profile(threads=1, device="gpu")
    monkeypatch.setattr(machine, "probe_gpu", lambda: GpuProbe("/dev/nvidia0", True, 2, "NVIDIA A100-SXM4-40GB"))
    assert machine.auto_device() == "gpu"
    assert machine.machine_profile(threads=1) == "gpu-a100-sxm4-40gb-x2"


def test_requested_device_reads_each_commands_way_of_saying_cpu():
    from swavbench.cli import build_parser

    def device(*argv: str):
        return envcheck.requested_device(build_parser().parse_args(argv))

    assert device("run", CASE) is None
    assert device("run", CASE, "--profile", "cpu") == "cpu"
    assert device("run", CASE, "--profile", "gpu") == "gpu"
    assert device("train", "-c", "x.yaml") is None
    assert device("train", "-c", "x.yaml", "--profile", "cpu") == "cpu"  # cpu.yaml sets Global.device=cpu
    assert device("train", "-c", "x.yaml", "-o", "Global.device=cpu") == "cpu"
    assert device("train", "-c", "x.yaml", "--profile", "cpu", "-o", "Global.device=gpu") == "gpu"  # last wins
    assert device("demo") == "cpu"


def test_gpu_driver_version_from_proc(tmp_path):
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023\n")
    assert machine.gpu_driver_version(proc) == "535.129.03"
    proc.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build\n")
    assert machine.gpu_driver_version(proc) == "550.54.14"


def test_paddle_build_of_a_cpu_build_has_no_cuda():
    import paddle

    build = machine.paddle_build(paddle)
    assert build["paddle_version"] == paddle.__version__ and build["paddle_commit"] == paddle.version.commit
    assert len(build["paddle_commit"]) >= 7
    if not paddle.is_compiled_with_cuda():
        assert build["cuda_version"] is None and build["cudnn_version"] is None  # paddle says 'False'


# ---- from outside: the CLI in a subprocess -------------------------------------------------------------------
def test_paddle_missing_is_one_line_exit_6_naming_the_install_command(tmp_path):
    site = Path(sysconfig.get_paths()["purelib"])
    links = without_paddle(site, tmp_path / "site")
    env = clean_env(PYTHONPATH=os.pathsep.join([str(REPO), str(links)]))
    proc = cli("run", CASE, env=env, python=(sys.executable, "-S"), cwd=tmp_path)
    assert proc.returncode == EXIT_ENVIRONMENT, proc.stderr
    line = one_error_line(proc)
    assert "paddle is not installed: pip install 'swavbench[cpu]'" in line
    # commands that do not need paddle keep working without it
    assert cli("cases", "--profile", "cpu", env=env, python=(sys.executable, "-S"), cwd=tmp_path).returncode == 0
    log = REPO / "tests" / "fixtures" / "logs" / "clean"
    for argv in (("parse", str(log)), ("compare", str(log), "--baseline", f"baselines/passl-a100/{CASE}.json"),
                 ("history", "list"), ("report", "--out", str(tmp_path / "r.html"))):
        done = cli(*argv, env=env, python=(sys.executable, "-S"), cwd=tmp_path)
        assert done.returncode == 0 and "paddle" not in done.stderr, (argv, done.stderr)


def test_both_paddle_builds_installed_is_one_line_exit_6(tmp_path):
    standin = write_tree(tmp_path / "standin", "paddlepaddle-gpu", "3.2.0", cuda=True)  # beside the real CPU build
    proc = cli("run", CASE, "--profile", "cpu", env=clean_env(PYTHONPATH=str(standin)), cwd=tmp_path)
    assert proc.returncode == EXIT_ENVIRONMENT, proc.stderr
    line = one_error_line(proc)
    assert "both paddlepaddle " in line and " and paddlepaddle-gpu 3.2.0 are installed" in line


def test_visible_gpu_with_a_cpu_build_is_refused_unless_cpu_is_asked_for(tmp_path):
    """The real (CPU) paddle with an NVIDIA GPU showing through nvidia-smi: no silent cpu profile."""
    fake_nvidia_smi(tmp_path / "bin")
    env = clean_env(PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    for argv in (("run", CASE), ("cases",), ("env",), ("train", "-c", "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1")):
        proc = cli(*argv, env=env, cwd=tmp_path)
        assert proc.returncode == EXIT_ENVIRONMENT, (argv, proc.stderr)
        line = one_error_line(proc)
        assert "an NVIDIA GPU is visible (nvidia-smi" in line and "the installed paddle is a CPU build" in line
        assert "--profile cpu" in line
    assert cli("cases", "--profile", "cpu", env=env, cwd=tmp_path).returncode == 0
    ok = cli("env", "--profile", "cpu", env=env, cwd=tmp_path)
    assert ok.returncode == 0 and "environment ok" in ok.stdout and f"driver {'535.129.03'}" in ok.stdout


def test_explicit_cpu_profile_still_runs_a_case_on_a_gpu_node(tmp_path):
    """`swavbench run --profile cpu` passes the checks on a GPU node with a CPU build and runs the case (here
    with the fake worker: a no-baseline verdict, exit 3, is a case that ran)."""
    fake_nvidia_smi(tmp_path / "bin")
    data = tmp_path / "data"
    (data / "train" / "a").mkdir(parents=True)
    for i in range(3072):
        (data / "train" / "a" / f"{i}.jpg").touch()
    env = clean_env(PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
                    SWAVBENCH_WORKER=f"{sys.executable} {REPO / 'tests' / 'fake_worker.py'} train")
    proc = cli("run", CASE, "--profile", "cpu", "--data-root", str(data), env=env, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "NO_BASELINE" in proc.stdout and "cpu-" in proc.stdout


def test_the_plugin_refuses_a_gpu_node_with_a_cpu_build(pytester, tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    pytester.makepyfile(test_nightly="""
        def test_case(swavbench):
            assert swavbench.device_profile == "cpu"  # reached only past the start-up checks
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    assert result.ret == EXIT_ENVIRONMENT
    result.stdout.fnmatch_lines(["*swavbench: error: an NVIDIA GPU is visible (nvidia-smi*CPU build*"])
    result.assert_outcomes(errors=0, passed=0, failed=0)
    explicit = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--swavbench-profile", "cpu", timeout=300)
    explicit.assert_outcomes(passed=1)  # --swavbench-profile cpu: on the CPU on purpose
    pytester.makepyfile(test_nightly="""
        import pytest

        @pytest.mark.swavbench_gpu
        def test_on_the_gpu():
            pass
    """)
    gpu = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    gpu.assert_outcomes(errors=1)  # not skipped as "no GPU here": this node has one paddle cannot use
    gpu.stdout.fnmatch_lines(["*swavbench: error: an NVIDIA GPU is visible*CPU build*"])
