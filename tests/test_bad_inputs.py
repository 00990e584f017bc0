"""Bad input at each boundary (log line, steps file, run header, result.json, baseline): one line, its exit
code, never a figure judged from a corrupt value (issue 13). Run from the outside through the CLI."""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from badinput import (
    CASE,
    CPU_BASELINE,
    CPU_LOG,
    PROFILE,
    RUNS,
    baseline_text,
    log_dir,
    marker_index,
    one_line_error,
    record,
    run_cli,
    run_folder,
    update_from,
)

from swavbench.harness.logparse import parse_log_file, parse_log_text

CPU = ("--profile", PROFILE)


def compare(logs: Path, baseline: Path = CPU_BASELINE) -> tuple[int, str, str]:
    return run_cli("compare", logs, "--baseline", baseline, *CPU)


def edit_marker_line(old: str, new: str):
    def edit(lines: list[str]) -> list[str]:
        i = marker_index(lines)
        assert old in lines[i]
        lines[i] = lines[i].replace(old, new)
        return lines

    return edit


# --- non-finite and extreme numbers ----------------------------------------------------------------------

def test_a_run_that_logged_an_infinite_ips_is_never_recorded(tmp_path):
    run = run_folder(tmp_path, edit=lambda lines: [line.replace("ips: 12.38870", "ips: inf") for line in lines])
    code, out, err = update_from(tmp_path, run)
    assert code == 2, out + err
    assert "malformed line" in one_line_error(err) and "ips: 'inf' is not a number" in err
    assert not (tmp_path / "baselines").exists() or not any((tmp_path / "baselines").rglob("*.json"))


@pytest.mark.parametrize(
    "change, field",
    [
        ({"metrics__ips": math.nan}, "metrics.ips"),
        ({"metrics__ips": math.inf}, "metrics.ips"),
        ({"metrics__ips": 1e30}, "metrics.ips"),
        ({"metrics__ips": 1e-300}, "metrics.ips"),
        ({"metrics__ips_steady": math.inf}, "metrics.ips_steady"),
        ({"tolerances__ips_pct": math.inf}, "ips_pct"),
        ({"tolerances__ips_pct": math.nan}, "ips_pct"),
        ({"tolerances__ips_pct": 1e30}, "ips_pct"),
        ({"tolerances__max_mem": math.nan}, "max_mem"),
        ({"tolerances__loss": math.inf}, "tolerances.loss"),
        ({"metrics__loss": "nan"}, "metrics.loss"),
        ({"metrics__loss": "1e-99999"}, "metrics.loss"),
        ({"metrics__marker": "20/78/1"}, "metrics.marker"),
    ],
)
def test_a_baseline_figure_that_is_not_a_finite_number_in_range_is_refused(tmp_path, change, field):
    path = tmp_path / "b.json"
    path.write_text(baseline_text(**change))
    code, out, err = compare(CPU_LOG, path)
    assert code == 3, out + err
    line = one_line_error(err)
    assert field in line and str(path) in line


def test_json_loaders_refuse_nan_infinity_and_overflow(tmp_path):
    from swavbench.inputs import JSONInputError, loads_json

    for text in ('{"a": NaN}', '{"a": -Infinity}', '{"a": 1e999}', '{"a": 1, "a": 2}', "[" * 100 + "]" * 100):
        with pytest.raises(JSONInputError):
            loads_json(text)
    assert math.isnan(loads_json('{"a": NaN}', allow_non_finite=True)["a"])  # steps files: a diverged loss
    runs = tmp_path / "runs"
    rec = {**record(), "metrics": {**record()["metrics"], "ips": math.inf}}
    (runs / rec["run_id"]).mkdir(parents=True)
    (runs / rec["run_id"] / "result.json").write_text(json.dumps(rec))
    code, out, err = run_cli("history", "import", runs, "--db", tmp_path / "h.sqlite")
    assert code == 3 and "imported 0 run(s)" in out
    assert "metrics.ips" in err and "finite" in err


# --- corrupt values are not measurements -----------------------------------------------------------------

def test_a_negative_ips_is_a_malformed_line_not_a_slowdown(tmp_path):
    code, out, err = compare(log_dir(tmp_path, edit_marker_line("ips: 12.4", "ips: -12.4")))
    assert code == 2, out + err
    assert "malformed line" in out and "negative" in out and "slower" not in out


@pytest.mark.parametrize("loss", ["", "8.31\udcff987", "8.31987x", "8.31,987"])
def test_an_empty_or_misencoded_loss_is_a_malformed_line(tmp_path, loss):
    code, out, err = compare(log_dir(tmp_path, edit_marker_line("loss: 8.31987", f"loss: {loss}")))
    assert code == 2, out + err
    assert "FAILED: run failed (malformed_line)" in out and "code changed" not in out
    assert "what to do: the log is corrupt" in out


def test_a_field_repeated_by_a_spliced_line_is_malformed(tmp_path):
    code, out, err = compare(log_dir(tmp_path, edit_marker_line("batch_cost:", "loss: 9.99999, batch_cost:")))
    assert code == 2, out + err
    assert "appears twice" in out and "9.99999" not in out.split("RUN FAILED")[0]


def test_a_log_written_twice_gives_the_figures_of_the_log(tmp_path):
    once = json.loads(run_cli("parse", CPU_LOG, "--marker", "20/78", "--json")[1])["summary"]
    twice_dir = log_dir(tmp_path, lambda lines: [line for line in lines for _ in (0, 1)])
    code, out, _ = run_cli("parse", twice_dir, "--marker", "20/78", "--json")
    twice = json.loads(out)["summary"]
    assert code == 0 and twice["ips"] == once["ips"] and twice["ips_values"] == once["ips_values"]
    assert json.loads(out)["ranks"]["0"]["duplicates"] == len(once["ips_values"]) + 1


# --- unbounded text --------------------------------------------------------------------------------------

def test_a_huge_log_line_is_cut_in_every_output_and_read_in_bounded_memory(tmp_path):
    huge = "FatalError: " + "x" * 20_000_000
    logs = log_dir(tmp_path, lambda lines: lines + [huge])
    for args in (("parse", logs), ("parse", logs, "--json"), ("compare", logs, "--baseline", CPU_BASELINE, *CPU)):
        code, out, err = run_cli(*args)
        assert code in (0, 2) and len(out) + len(err) < 100_000, (args, len(out))
        assert re.search(r"x \.\.\. \(199997\d\d more bytes\)", out), out[-400:]
    tracemalloc.start()
    try:
        log = parse_log_file(logs / "workerlog.0")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20 and log.fatal_lines[-1].endswith("more bytes)")


def test_a_huge_message_in_a_record_is_cut_in_the_history_and_the_report(tmp_path):
    rec = {**record(), "message": "m" * 10_000_000, "advice": "a" * 100_000}
    runs = tmp_path / "runs"
    (runs / rec["run_id"]).mkdir(parents=True)
    (runs / rec["run_id"] / "result.json").write_text(json.dumps(rec))
    db, html = tmp_path / "h.sqlite", tmp_path / "index.html"
    code, out, err = run_cli("report", "--runs", runs, "--db", db, "--out", html)
    assert code == 0, out + err
    assert html.stat().st_size < 1_000_000 and db.stat().st_size < 1_000_000
    with sqlite3.connect(db) as conn:
        (message,) = conn.execute("SELECT message FROM runs").fetchone()
    assert len(message) < 5000 and message.endswith("(9995904 more bytes)")


@pytest.mark.parametrize(
    "body",
    [
        "lr: 0.6, loss:" + " " * 40_000 + "8.3 x, batch_cost: 1.0, reader_cost: 0.0, ips: 12.0, eta: 1:00:00",
        "lr: 0.6, " + "a" * 40_000 + ", eta: 1:00:00",
        "lr: 0.6, " + ", " * 20_000 + "eta:" + " " * 20_000 + "x",
        "lr: 0.6, " + "loss: 1, " * 4_000,
    ],
)
def test_parsing_is_linear_in_the_input(body):
    line = f"[2026/11/28 19:37:27] passl INFO: [Train][Epoch 1/400][Iter: 0/78] {body}"
    tb = "Traceback (most recent call last):\n" + "Error" * 8_000 + " x\n"
    start = time.perf_counter()
    log = parse_log_text((line + "\n") * 3 + tb)
    assert time.perf_counter() - start < 1.0  # 26 s before: the field regex backtracked
    assert not log.records and len(log.malformed) == 3


# --- names -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["a\nb", "x;rm -rf ~", "cpu-\u202e1t", "p" * 300, "../x", ".x", "A B"])
def test_a_profile_from_a_run_record_must_be_a_name_swavbench_generates(tmp_path, profile):
    run = run_folder(tmp_path, {**record(), "profile": profile})
    code, out, err = update_from(tmp_path, run)
    assert code == 3, out + err
    assert "profile" in one_line_error(err) and "\n" not in one_line_error(err)
    assert not (tmp_path / "baselines").exists() or list((tmp_path / "baselines").iterdir()) == []


@pytest.mark.parametrize("name", ["workerlog.00", "workerlog.²", "steps.01.jsonl", "workerlog.0000001"])
def test_a_rank_file_name_launch_never_writes_is_refused(tmp_path, name):
    logs = log_dir(tmp_path)
    (logs / name).write_text((logs / "workerlog.1").read_text())
    code, out, err = run_cli("parse", logs)
    assert code == 2, out + err
    assert ascii(name)[1:-1] in one_line_error(err) and "leading zeros" in err


@pytest.mark.parametrize(
    "where, row, words",
    [
        ("steps", '{"step": "3", "loss": 8.3}', "'step'"),
        ("steps", '{"step": 3, "batch_cost": Infinity}', "'batch_cost'"),
        ("steps", '{"step": 3, "batch_cost": "1.2"}', "'batch_cost'"),
        ("steps", '[3]', "not a JSON object"),
        ("steps", '{"step": 3, "step": 4}', "appears twice"),
        ("header", '{"threads": "1", "world_size": 4}', "'threads'"),
        ("header", '{"iters_per_epoch": "x"}', "'iters_per_epoch'"),
    ],
)
def test_a_wrongly_typed_field_in_a_steps_file_or_run_header_fails_the_run(tmp_path, where, row, words):
    logs = log_dir(tmp_path)
    if where == "steps":
        lines = (logs / "steps.0.jsonl").read_text().splitlines()
        lines.insert(5, row)
        (logs / "steps.0.jsonl").write_text("\n".join(lines) + "\n")
    else:
        text = (logs / "workerlog.0").read_text().splitlines()
        i = next(n for n, line in enumerate(text) if "run header:" in line)
        text[i] = text[i].split("run header: ")[0] + "run header: " + row
        (logs / "workerlog.0").write_text("\n".join(text) + "\n")
    code, out, err = compare(logs)
    assert code == 2, out + err
    assert words in out and "Traceback" not in out + err


def test_a_steps_file_or_log_that_is_a_folder_is_a_malformed_log_dir(tmp_path):
    logs = log_dir(tmp_path)
    (logs / "steps.1.jsonl").unlink()
    (logs / "steps.1.jsonl").mkdir()
    code, out, err = compare(logs)
    assert code == 2 and "steps.1.jsonl is a folder" in one_line_error(err)
    (logs / "steps.1.jsonl").rmdir()
    (logs / "workerlog.3").unlink()
    (logs / "workerlog.3").mkdir()
    code, out, err = compare(logs)
    assert code == 2 and "workerlog.3 is a folder" in one_line_error(err)


def test_a_fifo_where_a_file_should_be_is_refused_not_waited_on(tmp_path):
    logs = log_dir(tmp_path)
    (logs / "steps.2.jsonl").unlink()
    os.mkfifo(logs / "steps.2.jsonl")
    os.mkfifo(tmp_path / "baseline.json")
    runs = tmp_path / "runs" / "r1"
    runs.mkdir(parents=True)
    os.mkfifo(runs / "result.json")
    for args, code, words in ((("parse", logs), 2, "steps.2.jsonl is a FIFO"),
                              (("compare", CPU_LOG, "--baseline", tmp_path / "baseline.json"), 3, "is a FIFO"),
                              (("history", "import", runs.parent, "--db", tmp_path / "h.sqlite"), 3, "is a FIFO")):
        done = subprocess.run([sys.executable, "-m", "swavbench.cli", *map(str, args)], capture_output=True,
                              text=True, timeout=60)  # reading a FIFO would block forever
        assert done.returncode == code and words in one_line_error(done.stderr), done.stderr


@pytest.mark.parametrize(
    "change",
    [
        {"metrics": [1, 2]},
        {"metrics": {"marker": 3, "loss": "8.31987"}},
        {"case": ["x"]},
        {"status": {"a": 1}},
        {"run_id": "a/b"},
    ],
)
def test_a_wrongly_typed_run_record_is_one_line_for_update_baseline_from(tmp_path, change):
    run = run_folder(tmp_path, {**record(), **change})
    code, out, err = update_from(tmp_path, run)
    assert code == 3, out + err
    assert "run record" in one_line_error(err) and str(run) in err


def test_a_deeply_nested_record_is_skipped_and_the_rest_imported(tmp_path):
    runs = tmp_path / "runs"
    for src in sorted(RUNS.iterdir()):
        (runs / src.name).mkdir(parents=True)
        (runs / src.name / "result.json").write_bytes((src / "result.json").read_bytes())
    deep = runs / "20261124T000000Z-swav_pt_1n8c_fp16o1-deep"
    deep.mkdir()
    (deep / "result.json").write_text('{"run_id": "x", "case": "c", "status": "pass", "extra": '
                                      + "[" * 50_000 + "]" * 50_000 + "}")
    code, out, err = run_cli("history", "import", runs, "--db", tmp_path / "h.sqlite")
    assert code == 3 and f"imported {len(list(RUNS.iterdir()))} run(s)" in out
    assert "nested more than" in err and "Traceback" not in err
    code, out, err = run_cli("report", "--runs", runs, "--db", tmp_path / "h.sqlite", "--out", tmp_path / "r.html")
    assert code == 0 and "skipped corrupt run record" in err


# --- repeats and usage -----------------------------------------------------------------------------------

def test_the_same_run_given_twice_is_refused(tmp_path):
    run = run_folder(tmp_path)
    code, out, err = update_from(tmp_path, run, run, run)
    assert code == 3 and "are one run (the same folder" in one_line_error(err)
    copy = run_folder(tmp_path, name="copy")  # the same run id kept in two folders
    code, out, err = update_from(tmp_path, run, copy)
    assert code == 3 and "are one run (run id 20261128T193702Z" in one_line_error(err)
    assert not (tmp_path / "baselines").exists()
    other = run_folder(tmp_path, {**record(), "run_id": f"20261128T200000Z-{CASE}-fx02"}, name="other")
    code, out, err = update_from(tmp_path, run, other)
    assert code == 0, out + err


@pytest.mark.parametrize("threshold", ["-5", "nan", "inf", "0", "100"])
def test_history_check_threshold_must_be_a_percentage(tmp_path, threshold):
    code, out, err = run_cli("history", "check", "--db", tmp_path / "h.sqlite", "--threshold", threshold)
    assert code == 3 and "--threshold" in one_line_error(err)


@pytest.mark.parametrize("args", [("--metric", "loss\nx"), ("--marker", "٢٠/٧٨"), ("--warmup", "-1")])
def test_parse_options_are_checked(args):
    code, out, err = run_cli("parse", CPU_LOG, *args)
    assert code == 3 and "\n" not in one_line_error(err).strip()
