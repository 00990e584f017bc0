"""`swavbench parse` / `swavbench compare` driven from outside: exit codes, tables, messages.

A few tests run the real console entry as a subprocess; the rest call `swavbench.cli.main` in-process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from swavbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "tests" / "fixtures" / "logs"
FIX = ROOT / "tests" / "fixtures" / "baselines"
A100_PT = ROOT / "swavbench" / "resources" / "baselines" / "passl-a100" / "swav_pt_1n8c_fp16o1.json"
CPU = ["--profile", "fixture-cpu-1t"]  # the profile the swavbench-cpu fixture baseline was recorded on


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swavbench.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def scaled_baseline(tmp_path: Path, factor: float, **metrics) -> Path:
    data = json.loads((FIX / "swavbench-cpu.json").read_text())
    data["metrics"]["ips"] = round(data["metrics"]["ips"] * factor, 6)
    data["metrics"].update(metrics)
    path = tmp_path / "swav_pt_1n8c_fp16o1.json"
    path.write_text(json.dumps(data))
    return path


# --- subprocess: the real entry point and its exit codes -------------------------------------------------

def test_subprocess_compare_pass_regression_and_corrupt_baseline(tmp_path):
    ok = cli("compare", LOGS / "swavbench-cpu", "--baseline", FIX / "swavbench-cpu.json", *CPU)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[1].split() == ["metric", "baseline", "measured", "diff", "tolerance", "verdict"]
    assert "PASS: all checks pass" in ok.stdout

    higher = cli("compare", LOGS / "swavbench-cpu", "--baseline", scaled_baseline(tmp_path, 1.10), *CPU)
    assert higher.returncode == 1
    assert "REGRESSION: ips 9.1% slower than baseline (measured 12.4 vs 13.7 img/s, allowed ±5%)" in higher.stdout
    assert "what to do: 9.1% slower than baseline" in higher.stdout

    corrupt = cli("compare", LOGS / "swavbench-cpu", "--baseline", FIX / "corrupt.json", *CPU)
    assert corrupt.returncode == 3 and corrupt.stdout == ""
    assert corrupt.stderr.count("\n") == 1 and corrupt.stderr.startswith("swavbench: error: baseline ")
    assert "not valid JSON (truncated?)" in corrupt.stderr


def test_subprocess_run_failed_exit_2():
    killed = cli("compare", LOGS / "killed", "--baseline", A100_PT, "--allow-mismatch")
    assert killed.returncode == 2
    assert "FAILED: run failed (rank_died): rank 5 died" in killed.stdout
    assert "last lines of workerlog.5:" in killed.stdout
    nan = cli("parse", LOGS / "nan", "--marker", "200/2599")
    assert nan.returncode == 2 and "RUN FAILED (nan_loss)" in nan.stdout


# --- in-process ----------------------------------------------------------------------------------------

def test_baseline_ten_percent_lower_fails_as_faster(tmp_path, capsys):
    code, out, _ = run(capsys, "compare", LOGS / "swavbench-cpu", "--baseline", scaled_baseline(tmp_path, 0.9),
                       *CPU)
    assert code == 1 and "ips 11.1% faster than baseline" in out
    assert "what to do: 11.1% faster than baseline: if intended, run swavbench update-baseline " \
           "swav_pt_1n8c_fp16o1" in out


def test_loss_change_fails_with_both_values(tmp_path, capsys):
    path = scaled_baseline(tmp_path, 1.0, loss="8.31990")
    code, out, _ = run(capsys, "compare", LOGS / "swavbench-cpu", "--baseline", path, *CPU)
    assert code == 1
    assert "loss changed at 20/78 (epoch 1, step 21): measured 8.31987, baseline 8.31990" in out
    assert "deterministic" in out


def test_parse_text_output(capsys):
    code, out, _ = run(capsys, "parse", LOGS / "clean")
    assert code == 0
    assert ("workerlog.0: 11 train line(s) (0/2599 .. 200/2599); 11 duplicate line(s) ignored (Paddle 3.x copies, "
            "lines written twice)") in out
    assert "no --marker given: using the last logged step of rank 0, 200/2599" in out
    assert "loss at 200/2599: 7.94836" in out and "ips: 963.2715 img/s = mean of 10 line(s) after 1 warm-up" in out
    assert "max mem at 200/2599: 8.37 GB" in out


def test_parse_json_output(capsys):
    code, out, _ = run(capsys, "parse", LOGS / "clean", "--json", "--warmup", "2")
    data = json.loads(out)
    assert code == 0 and sorted(data["ranks"], key=int) == [str(r) for r in range(8)]
    assert len(data["ranks"]["0"]["records"]) == 11 and data["marker_source"] == "last logged line"
    s = data["summary"]
    assert (s["loss"], s["max_mem"], s["warmup_lines"], len(s["ips_values"])) == ("7.94836", "8.37", 2, 9)
    assert data["failure"] is None


def test_parse_json_failure(capsys):
    code, out, _ = run(capsys, "parse", LOGS / "no-marker", "--json", "--marker", "200/2599")
    data = json.loads(out)
    assert code == 2 and data["failure"]["kind"] == "missing_marker" and data["summary"] is None


def test_parse_cpu_build_without_max_mem(capsys):
    code, out, _ = run(capsys, "parse", LOGS / "cpu-passl")
    assert code == 0 and "max mem at 8/12: absent" in out and "appears 2 times" in out


def a100_log(tmp_path: Path, ips_factor: float = 1.0, loss: str = "7.94836", mem: str = "8.37",
             header: dict | None = None) -> Path:
    """PASSL's own 8x A100 log (the clean fixture: Paddle 3.x writes every line twice), its figures moved."""
    text = (LOGS / "clean" / "workerlog.0").read_text()
    ips = f"{963.2715 * ips_factor:.5f}"

    def edit(m: re.Match) -> str:
        line = m.group(0)
        if m.group(1) != "0":  # every line after the warm-up logs the same ips: their mean is exact
            line = re.sub(r"ips: [0-9.]+", f"ips: {ips}", line)
        if m.group(1) == "200":
            line = line.replace("loss: 7.94836", f"loss: {loss}").replace("max mem: 8.37", f"max mem: {mem}")
        return line

    text = re.sub(r"^.*\[Iter: (\d+)/2599\].*$", edit, text, flags=re.M)
    if header is not None:
        text = f"[2026/11/28 19:40:00] passl INFO: [swavbench] run header: {json.dumps(header)}\n" + text
    out = tmp_path / f"log-{ips_factor}-{loss}-{mem}"
    out.mkdir()
    (out / "workerlog.0").write_text(text)
    return out


@pytest.mark.parametrize("ips_factor, loss, mem, code, failed", [
    (1.0, "7.94836", "8.37", 0, []),
    (1.05, "7.94836", "8.37", 1, ["ips"]),  # exactly +5.00%: the band is exclusive, as in check_result
    (0.95, "7.94836", "8.37", 1, ["ips"]),
    (1.0499, "7.94836", "8.37", 0, []),  # +4.99%
    (0.9501, "7.94836", "8.37", 0, []),  # -4.99%
    (1.0, "7.94837", "8.37", 1, ["loss"]),  # one more in the 5th decimal
    (1.0, "7.94836", "8.38", 1, ["max_mem"]),  # +0.01 GB
])
def test_a100_log_against_the_shipped_passl_figures_gives_check_results_verdict(tmp_path, ips_factor, loss, mem,
                                                                                  code, failed):
    """On an 8x A100 node: a PASSL-format log judged against baselines/passl-a100 as shipped, no flag needed.
    The documented path resolves to the copy inside the package, from any directory."""
    logdir = a100_log(tmp_path, ips_factor, loss, mem)
    result = subprocess.run([sys.executable, "-m", "swavbench.cli", "compare", str(logdir), "--baseline",
                             "baselines/passl-a100/swav_pt_1n8c_fp16o1.json", "--json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert [c["metric"] for c in data["verdict"]["checks"] if c["verdict"] == "fail"] == failed
    assert len(data["warnings"]) == 1 and "no run header" in data["warnings"][0]
    assert data["baseline"].endswith("passl-a100/swav_pt_1n8c_fp16o1.json")


def test_compare_warns_once_for_a_passl_log_and_names_the_shipped_figures(capsys, tmp_path):
    code, out, err = run(capsys, "compare", a100_log(tmp_path), "--baseline", A100_PT)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].startswith("warning: the log has no run header (a PASSL log?)") and "warning" not in lines[2]
    assert "ips      963.2715  963.2715  +0.00%" in out


def test_compare_refuses_only_a_run_header_that_proves_another_device_or_case(capsys, tmp_path):
    cpu_run = {"device": "cpu", "config": "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1", "threads": 1,
               "machine_profile": "cpu-intel-xeon-avx512-1t", "paddle_version": "3.3.1"}
    code, _, err = run(capsys, "compare", a100_log(tmp_path, header=cpu_run), "--baseline", A100_PT)
    assert code == 3 and "the log ran on cpu (its run header)" in err and "--allow-mismatch" in err
    other_case = {**cpu_run, "device": "gpu", "config": "configs/swav_resnet50_224_lp_in1k_1n8c_dp_fp32.yaml"}
    code, _, err = run(capsys, "compare", a100_log(tmp_path, 1.001, header=other_case), "--baseline", A100_PT)
    assert code == 3 and "run of swav_resnet50_224_lp_in1k_1n8c_dp_fp32" in err
    gpu_run = {**cpu_run, "device": "gpu", "machine_profile": "gpu-a100-sxm4-80gb-x8"}
    code, out, _ = run(capsys, "compare", a100_log(tmp_path, 1.002, header=gpu_run), "--baseline", A100_PT)
    assert code == 0 and "warning: the log ran on gpu-a100-sxm4-80gb-x8, the baseline was recorded on passl-a100" in out
    code, out, _ = run(capsys, "compare", a100_log(tmp_path, 1.003, header=cpu_run), "--baseline", A100_PT,
                       "--allow-mismatch")
    assert code == 0 and "(--allow-mismatch given)" in out


@pytest.mark.parametrize("logdir, kind, words", [
    ("killed-steps", "rank_died", "rank 2 died at step 9"),
    ("truncated", "missing_marker", "truncated last line"),
    ("no-marker", "missing_marker", "stopped early"),
    ("nan", "nan_loss", "loss: nan at epoch 1 iter 120/2599"),
])
def test_compare_run_failures(capsys, logdir, kind, words):
    base = FIX / "swavbench-cpu.json" if logdir == "killed-steps" else A100_PT
    args = CPU if logdir == "killed-steps" else ["--allow-mismatch"]
    code, out, _ = run(capsys, "compare", LOGS / logdir, "--baseline", base, *args)
    assert code == 2 and f"FAILED: run failed ({kind}): " in out and words in out


def test_compare_json(capsys):
    code, out, _ = run(capsys, "compare", LOGS / "swavbench-cpu", "--baseline", FIX / "swavbench-cpu.json",
                       *CPU, "--json")
    data = json.loads(out)
    assert code == 0 and data["verdict"]["status"] == "pass" and data["profile"] == "fixture-cpu-1t"
    assert [c["metric"] for c in data["verdict"]["checks"]] == ["loss", "ips", "max_mem"]


def test_usage_errors_exit_3(tmp_path, capsys):
    path = scaled_baseline(tmp_path, 1.0)
    cases = [
        ("parse", tmp_path / "missing"),
        ("parse", LOGS / "clean", "--marker", "200"),
        ("compare", LOGS / "swavbench-cpu", "--baseline", tmp_path / "none.json"),
        ("compare", LOGS / "swavbench-cpu", "--baseline", FIX / "wrong-schema.json"),
        ("compare", LOGS / "cpu-passl", "--baseline", path, "--allow-mismatch", "--marker", "8/12"),
        ("compare", LOGS / "swavbench-cpu"),  # neither --baseline nor a second run
    ]
    for args in cases:
        code, _, err = run(capsys, *args)
        assert code == 3, args
        assert err.startswith("swavbench: error: ") and err.count("\n") == 1, err  # one line, no traceback
    assert "compare needs --baseline FILE, or a second run: swavbench compare RUN_A RUN_B" in err


def test_paddle_version_mismatch_is_a_warning_for_the_file_the_user_named(tmp_path, capsys):
    """compare judges against the named file; `swavbench run` (which picks the baseline itself) refuses."""
    data = json.loads((FIX / "swavbench-cpu.json").read_text())
    data["provenance"]["paddle_version"] = "2.6.1"
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    code, out, _ = run(capsys, "compare", LOGS / "swavbench-cpu", "--baseline", path, *CPU)
    assert code == 0 and "warning: the baseline was recorded with paddle 2.6.1, the log ran paddle 3.3.1" in out
