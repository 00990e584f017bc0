"""`swavbench parse` / `swavbench compare` driven from outside: exit codes, tables, messages.

A few tests run the real console entry as a subprocess; the rest call `swavbench.cli.main` in-process.
"""

from __future__ import annotations

import json
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


def test_compare_against_published_a100_figures(capsys):
    code, _, err = run(capsys, "compare", LOGS / "clean", "--baseline", A100_PT)
    assert code == 3 and "recorded on profile passl-a100" in err and "--allow-mismatch" in err
    code, out, _ = run(capsys, "compare", LOGS / "clean", "--baseline", A100_PT, "--allow-mismatch")
    assert code == 0 and "warning: baseline swav_pt_1n8c_fp16o1 was recorded on profile passl-a100" in out
    assert "ips      963.2715  963.2715  +0.00%" in out


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
        ("compare", LOGS / "swavbench-cpu"),  # --baseline is required
    ]
    for args in cases:
        code, _, err = run(capsys, *args)
        assert code == 3, args
        if "--baseline" in args or args[0] == "parse":  # our errors: exactly one line, no traceback
            assert err.startswith("swavbench: error: ") and err.count("\n") == 1, err
        else:  # argparse: usage, then the error line
            assert err.splitlines()[-1].startswith("swavbench compare: error: "), err


def test_paddle_version_mismatch_is_refused(tmp_path, capsys):
    data = json.loads((FIX / "swavbench-cpu.json").read_text())
    data["provenance"]["paddle_version"] = "2.6.1"
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    code, _, err = run(capsys, "compare", LOGS / "swavbench-cpu", "--baseline", path, *CPU)
    assert code == 3 and "paddle 2.6.1, this run used paddle 3.3.1" in err
