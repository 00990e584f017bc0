"""metrics: the check_result figures, named failures and per-rank health."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from swavbench.errors import EXIT_RUN_FAILED, EXIT_USAGE, ConfigError, RunFailed
from swavbench.harness.logparse import StepsLog, parse_log_dir, parse_log_file, parse_log_text
from swavbench.harness.metrics import analyse_logdir, check_ranks, marker_step, rank_health, summarize

LOGS = Path(__file__).parent / "fixtures" / "logs"


def clean():
    return parse_log_file(LOGS / "clean" / "workerlog.0")


def pt_text(rows: list[tuple[int, str, str]]) -> str:
    """A minimal PASSL pre-train log from (iter, loss, ips) rows."""
    return "".join(
        f"[2023/08/01 20:30:15] passl INFO: [Train][Epoch 1/400][Iter: {it}/2599] lr: 0.600000, loss: {loss}, "
        f"batch_cost: 0.53152, reader_cost: 0.00120, ips: {ips} images/sec, max mem: 8.37 GB, eta: 1:00:00\n"
        for it, loss, ips in rows)


def failure(log, marker="200/2599", **kw) -> RunFailed:
    with pytest.raises(RunFailed) as err:
        summarize(log, marker, **kw)
    assert err.value.exit_code == EXIT_RUN_FAILED
    return err.value


def test_clean_summary_matches_check_result():
    log = clean()
    s = summarize(log, "200/2599")
    assert (s.loss, s.max_mem, s.marker, s.n_lines, s.warmup_lines) == ("7.94836", "8.37", "200/2599", 11, 1)
    assert s.ips_values == [r.ips for r in log.records[1:]]
    assert s.ips == pytest.approx(statistics.fmean(s.ips_values))
    assert s.ips == 963.2715  # the fixture is built so; decimal summation makes it exact
    assert (s.marker_step, s.marker_epoch, s.marker_line_no) == (201, 1, log.records[-1].line_no)
    assert s.notes == []


def test_warmup_lines_change_the_mean():
    log = clean()
    assert summarize(log, "200/2599", warmup_lines=0).ips == pytest.approx(
        statistics.fmean(r.ips for r in log.records))
    s3 = summarize(log, "200/2599", warmup_lines=3)
    assert len(s3.ips_values) == 8 and s3.ips_values[0] == log.records[3].ips
    with pytest.raises(ConfigError):
        summarize(log, "200/2599", warmup_lines=-1)


def test_robust_ips_stats_resist_an_outlier():
    rows = [(0, "8.0", "50.0")] + [(20 * i, "7.9", v) for i, v in enumerate(
        ["960.0", "962.0", "964.0", "966.0", "300.0"], start=1)]
    s = summarize(parse_log_text(pt_text(rows)), "100/2599")
    assert s.ips_median == 962.0
    q1, _, q3 = statistics.quantiles(s.ips_values, n=4, method="inclusive")
    assert s.ips_iqr == pytest.approx(q3 - q1) and s.ips_spread_pct == pytest.approx((q3 - q1) / 962.0 * 100)
    assert s.ips < 900 < s.ips_median


def test_nan_loss_names_the_first_bad_line():
    log = parse_log_file(LOGS / "nan" / "workerlog.0")
    first_bad = next(r for r in log.records if r.metrics["loss"] == "nan")
    err = failure(log)
    assert err.kind == "nan_loss"
    assert f"iter {first_bad.marker}" in str(err) and f"line {first_bad.line_no}" in str(err)
    assert "loss: nan" in str(err)
    assert summarize(log, "100/2599").loss == "7.96903"  # NaN after the marker is not checked


def test_inf_loss_is_nan_loss():
    err = failure(parse_log_text(pt_text([(0, "8.1", "50.0"), (20, "inf", "960.0")])), "20/2599")
    assert err.kind == "nan_loss" and "loss: inf" in str(err)


def test_missing_marker_says_what_was_seen_and_why():
    err = failure(parse_log_file(LOGS / "no-marker" / "workerlog.0"))
    assert err.kind == "missing_marker"
    msg = str(err)
    assert "last logged step is 100/2599" in msg and "0/2599, 20/2599" in msg
    assert "stopped early" in msg and "max_train_step(101)" in msg


def test_missing_marker_with_other_iters_per_epoch():
    err = failure(clean(), "20/78")
    assert err.kind == "missing_marker" and "2599 iterations per epoch, not 78" in str(err)


def test_marker_on_truncated_line():
    err = failure(parse_log_file(LOGS / "truncated" / "workerlog.0"))
    assert err.kind == "missing_marker" and "truncated last line" in str(err)


def test_missing_metric_field():
    err = failure(clean(), metric="top1")
    assert err.kind == "missing_field" and "'top1:'" in str(err) and "it has: loss" in str(err)


def test_marker_line_missing_ips_is_missing_field():
    text = pt_text([(0, "8.1", "50.0"), (20, "8.0", "960.0")]).replace("ips: 960.0 images/sec, ", "")
    err = failure(parse_log_text(text), "20/2599")
    assert err.kind == "missing_field" and "ips" in str(err)


def test_no_records_and_too_few_lines():
    quiet = parse_log_file(LOGS / "clean" / "workerlog.1")
    assert failure(quiet).kind == "no_records"
    err = failure(parse_log_text(pt_text([(0, "8.1", "50.0")])), "0/2599")
    assert err.kind == "too_few_lines"


def test_bad_marker_is_a_usage_error():
    with pytest.raises(ConfigError) as err:
        summarize(clean(), "200")
    assert err.value.exit_code == EXIT_USAGE


def test_repeated_marker_uses_the_last_epoch():
    s = summarize(parse_log_file(LOGS / "cpu-passl" / "workerlog.0"), "8/12")
    assert s.loss == "6.86234" and s.marker_epoch == 2 and s.max_mem is None
    assert "appears 2 times" in s.notes[0]
    assert s.marker_step == 12 + 8 + 1


def test_nan_before_the_last_occurrence_of_a_repeated_marker():
    text = (LOGS / "cpu-passl" / "workerlog.0").read_text().replace("loss: 6.87234", "loss: nan")
    err = failure(parse_log_text(text), "8/12")
    assert err.kind == "nan_loss" and "epoch 2 iter 4/12" in str(err)


def test_marker_step_without_the_marker_line_assumes_epoch_one():
    assert marker_step(clean(), "200/2599") == 201
    assert marker_step(None, "20/78") == 21


def test_killed_rank_is_named_with_its_log_tail():
    logs = parse_log_dir(LOGS / "killed")
    health = rank_health(logs, {}, 201)
    assert {h.rank: h.status for h in health} == {**{r: "terminated" for r in range(8)}, 5: "killed"}
    with pytest.raises(RunFailed) as err:
        check_ranks(health)
    assert err.value.kind == "rank_died" and str(err.value).startswith("rank 5 died")
    assert "0-4,6-7" in str(err.value)
    assert err.value.details[0] == "last lines of workerlog.5:"
    assert err.value.details[-1].strip() == logs[5].tail[-1]


def test_killed_rank_from_step_files():
    a = analyse_logdir(LOGS / "killed-steps", "20/78")
    assert a.failure.kind == "rank_died" and str(a.failure).startswith("rank 2 died at step 9")
    h = {h.rank: h for h in a.health}
    assert h[2].reached_marker is False and h[2].last_step == 9


def test_a_silent_rank_is_named_when_its_peers_aborted_on_a_gloo_timeout():
    """Real logs from CI: rank 3 SIGKILLed at step 6; the 7 others aborted on gloo timeouts within 0.2 s."""
    a = analyse_logdir(LOGS / "peer-abort", "20/46")
    status = {h.rank: h.status for h in a.health}
    assert status == {**{r: "peer_abort" for r in range(8)}, 3: "killed"}
    assert a.failure.kind == "rank_died"
    assert str(a.failure) == ("rank 3 died at step 6: its log ends without an error while rank(s) 0-2,4-7 aborted "
                              "on a collective error: killed by a signal (OOM killer? see dmesg)")
    assert "gloo::TimeoutException" in a.health[0].reason


def test_ranks_that_all_lost_a_peer_name_the_first_of_them():
    gloo = "terminate called after throwing an instance of 'gloo::TimeoutException'\nFatalError: `Process abort`\n"
    health = rank_health({0: parse_log_text(gloo), 1: parse_log_text(gloo)}, {}, 21)
    with pytest.raises(RunFailed, match=r"^rank 0 aborted on a collective error \(gloo::TimeoutException\).* "
                                        r"\(also: rank 1\)$"):
        check_ranks(health)


def test_rank_ending_early_without_any_error():
    steps = {r: StepsLog(None, [{"step": s} for s in range(1, 22 if r != 1 else 6)], []) for r in range(3)}
    health = rank_health({}, steps, 21)
    assert [h.status for h in health] == ["ok", "ended_early", "ok"]
    with pytest.raises(RunFailed, match="rank 1 stopped at step 5 before the marker"):
        check_ranks(health)


def test_crashed_rank_outranks_killed_and_terminated():
    logs = {0: parse_log_text("FatalError: `Termination signal` is detected by the operating system.\n"),
            1: parse_log_text("Traceback (most recent call last):\n  File \"a.py\"\nMemoryError: out\n"),
            2: parse_log_text("quiet\n")}
    health = rank_health(logs, {}, 21)
    assert [h.status for h in health] == ["terminated", "crashed", "killed"]
    with pytest.raises(RunFailed, match=r"rank 1 crashed: MemoryError: out \(also: rank 2\)"):
        check_ranks(health)


def test_all_ranks_terminated_is_a_stop_from_outside():
    t = "FatalError: `Termination signal` is detected by the operating system.\n"
    logs = {0: parse_log_text(t), 1: parse_log_text(t)}
    with pytest.raises(RunFailed) as err:
        check_ranks(rank_health(logs, {}, 21))
    assert err.value.kind == "terminated" and "0-1" in str(err.value)


def test_healthy_runs():
    a = analyse_logdir(LOGS / "swavbench-cpu")
    assert a.failure is None and a.marker == "20/78" and a.marker_source == "last logged line"
    assert all(h.status == "ok" and h.reached_marker for h in a.health)
    b = analyse_logdir(LOGS / "clean", "200/2599")
    assert b.failure is None and b.summary.loss == "7.94836" and b.marker_source == "given"
    assert all(h.reached_marker is None for h in b.health)  # PASSL logs: no step files


def test_nan_outranks_dead_rank(tmp_path):
    import shutil

    shutil.copytree(LOGS / "killed", tmp_path / "k")
    shutil.copy(LOGS / "nan" / "workerlog.0", tmp_path / "k" / "workerlog.0")
    a = analyse_logdir(tmp_path / "k", "200/2599")
    assert a.failure.kind == "nan_loss"
