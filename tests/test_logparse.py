"""logparse: PASSL worker logs -> StepRecords, on the checked-in fixture logs (tests/fixtures/logs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from swavbench.errors import EXIT_USAGE, SwavbenchError
from swavbench.harness.logparse import (
    parse_log_dir,
    parse_log_file,
    parse_log_text,
    parse_steps_text,
    read_steps_dir,
    strip_ansi,
)

LOGS = Path(__file__).parent / "fixtures" / "logs"
CLEAN0 = LOGS / "clean" / "workerlog.0"
TRAIN = "[Train][Epoch 1/400][Iter: {it}/2599] lr: 0.600000, loss: {loss}, batch_cost: 0.53152, " \
        "reader_cost: 0.00120, ips: {ips} images/sec, max mem: 8.37 GB, eta: 6 days, 9:27:43"


def line(it: int, loss: str = "7.94836", ips: str = "963.27150") -> str:
    return "[2023/08/01 20:30:15] passl INFO: " + TRAIN.format(it=it, loss=loss, ips=ips)


def test_clean_log_counts_each_step_once_despite_paddle3_duplicates():
    text = CLEAN0.read_text()
    assert text.count("[Iter: 200/2599]") == 2  # the fixture really has the Paddle 3.x copy
    log = parse_log_file(CLEAN0)
    assert [r.iter for r in log.records] == list(range(0, 201, 20))
    assert log.duplicates == 11
    assert {r.source for r in log.records} == {"passl"}
    last = log.records[-1]
    assert (last.marker, last.metrics, last.max_mem, last.epochs) == ("200/2599", {"loss": "7.94836"}, "8.37", 400)
    assert last.eta == "6 days, 9:31:34" and last.global_step == 201
    assert log.early_stop and "max_train_step(201)" in log.early_stop_line
    assert log.problems == [] and log.fatal_lines == [] and log.header is None


def test_log_with_only_the_paddle_copy_form_is_parsed_from_the_copies():
    kept = [ln for ln in CLEAN0.read_text().splitlines() if "passl INFO:" not in ln]
    log = parse_log_text("\n".join(kept) + "\n")
    assert len(log.records) == 11 and {r.source for r in log.records} == {"paddle"}
    assert log.records[-1].metrics["loss"] == "7.94836" and log.duplicates == 0


def test_copy_kept_when_its_passl_line_is_missing():
    lines = CLEAN0.read_text().splitlines()
    lines = [ln for ln in lines if not ("passl INFO:" in ln and "[Iter: 100/2599]" in ln)]
    log = parse_log_text("\n".join(lines) + "\n")
    assert [r.iter for r in log.records] == list(range(0, 201, 20))
    assert next(r for r in log.records if r.iter == 100).source == "paddle"


def test_garbled_log_ansi_carriage_returns_and_warnings():
    raw = (LOGS / "garbled" / "workerlog.0").read_bytes().decode()
    assert "\x1b[" in raw and "\r" in raw and "\r\n" in raw
    log = parse_log_file(LOGS / "garbled" / "workerlog.0")
    assert [r.marker for r in log.records] == [f"{i}/2599" for i in range(0, 101, 20)]
    by_iter = {r.iter: r for r in log.records}
    assert by_iter[40].metrics["loss"] == "7.98841"  # bold colour codes inside the value are stripped
    assert by_iter[20].ips == pytest.approx(961.1023)  # follows three \r progress segments on one line
    assert by_iter[80].eta == "6 days, 9:23:59"  # CRLF: no trailing \r in the last field
    assert by_iter[60].eta == "6 days, 9:32:30"  # colour reset after the eta is stripped
    assert by_iter[100].eta == "6 days, 9:11:59"  # a progress bar written over the line after it (\r)
    assert log.tail[-1] == "Loading cache: 100%|##########| 10/10"
    assert log.problems == [] and all("\x1b" not in t and "\r" not in t for t in log.tail)


def test_truncated_last_line_is_a_problem_not_a_record():
    log = parse_log_file(LOGS / "truncated" / "workerlog.0")
    assert log.records[-1].marker == "180/2599"
    (bad,) = log.malformed
    assert bad.truncated and bad.marker == "200/2599"
    assert log.problems == [f"line {bad.line_no}: truncated last line in [Train] line 200/2599"]
    assert bad.line_no == log.n_lines  # it is the file's last line


def test_complete_last_line_without_newline_is_accepted():
    log = parse_log_text(line(0) + "\n" + line(20))
    assert [r.iter for r in log.records] == [0, 20] and log.problems == []


def test_last_line_cut_inside_eta_is_truncated():
    log = parse_log_text(line(0) + "\n" + line(20)[:-1])
    assert [r.iter for r in log.records] == [0] and log.malformed[0].truncated


def test_line_missing_a_required_field_is_malformed():
    text = line(0) + "\n" + line(20).replace("ips: 963.27150 images/sec, ", "") + "\n" + line(40) + "\n"
    log = parse_log_text(text)
    assert [r.iter for r in log.records] == [0, 40]
    assert log.malformed[0].missing == ("ips",) and not log.malformed[0].truncated
    assert log.problems == ["line 2: missing ips in [Train] line 20/2599"]


def test_cpu_build_without_max_mem_and_avg_eval_lines():
    log = parse_log_file(LOGS / "cpu-passl" / "workerlog.0")
    assert len(log.records) == 6 and all(r.max_mem is None for r in log.records)
    assert list(log.records[0].metrics) == ["top1", "metric", "top5", "CELoss", "loss"]
    assert [(s.epoch, s.epochs) for s in log.epoch_summaries] == [(1, 2), (2, 2)]
    assert log.epoch_summaries[1].metrics["loss"] == "6.87123"
    assert [e.epoch for e in log.evals] == [1, 2] and log.evals[0].metrics["CELoss"] == "6.89012"
    assert not any(r.marker.endswith("Avg") for r in log.records)


def test_run_header_is_parsed():
    log = parse_log_file(LOGS / "swavbench-cpu" / "workerlog.0")
    assert log.header["paddle_version"] == "3.3.1" and log.header["world_size"] == 4
    bad = parse_log_text("[x] passl INFO: [swavbench] run header: {not json\n")
    assert bad.header is None and "run header" in bad.problems[0]


def test_fatal_lines_termination_and_python_traceback():
    killed = parse_log_dir(LOGS / "killed")
    assert any("Termination signal" in f for f in killed[0].fatal_lines)
    assert killed[5].fatal_lines == [] and killed[5].records == []
    text = ("Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n"
            "    raise RuntimeError('boom')\nRuntimeError: boom\n")
    assert parse_log_text(text).fatal_lines == ["Traceback (most recent call last):", "RuntimeError: boom"]


def test_tail_is_what_a_terminal_shows():
    log = parse_log_text("a\nprogress 10%\rprogress 100%\n\x1b[31mred\x1b[0m\n\n")
    assert log.tail == ["a", "progress 100%", "red"]
    assert strip_ansi("\x1b[1;32mok\x1b[0m") == "ok"


def test_record_marker_and_global_step_in_a_later_epoch():
    rec = parse_log_text(line(0).replace("Epoch 1/400", "Epoch 3/400") + "\n").records[0]
    assert rec.marker == "0/2599" and rec.global_step == 2 * 2599 + 1


def test_parse_log_dir_ranks_and_run_folder(tmp_path):
    logs = parse_log_dir(LOGS / "clean")
    assert list(logs) == list(range(8))
    assert all(len(logs[r].records) == 0 for r in range(1, 8))
    shutil.copytree(LOGS / "no-marker", tmp_path / "run" / "log")
    assert list(parse_log_dir(tmp_path / "run")) == [0, 1]  # a run folder holding log/


def test_parse_log_dir_errors_are_usage_errors(tmp_path):
    with pytest.raises(SwavbenchError) as err:
        parse_log_dir(tmp_path / "nope")
    assert err.value.exit_code == EXIT_USAGE and "does not exist" in str(err.value)
    (tmp_path / "workerlog.x").write_text("")
    with pytest.raises(SwavbenchError, match="no workerlog"):
        parse_log_dir(tmp_path)


def test_steps_jsonl_cut_line_is_a_problem():
    st = parse_steps_text('{"step": 1, "loss": 8.4}\n{"step": 2, "loss": 8.3}\n{"step": 3, "lo')
    assert st.last_step == 2 and len(st.problems) == 1
    steps = read_steps_dir(LOGS / "killed-steps")
    assert {r: s.last_step for r, s in steps.items()} == {0: 10, 1: 10, 2: 9, 3: 10}
    assert read_steps_dir(LOGS / "clean") == {}
