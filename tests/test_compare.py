"""compare: check_result's rules (exact loss, ips strictly inside +-tol after 2-decimal rounding, exact mem)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from swavbench.errors import BaselineError, RunFailed
from swavbench.harness.baselines import Baseline
from swavbench.harness.compare import compare, format_table, ips_diff_pct, no_baseline_verdict, verdict_from_failure
from swavbench.harness.metrics import Summary

CASE = "swav_pt_1n8c_fp16o1"


def summary(ips: float = 963.2715, loss: str = "7.94836", mem: str | None = "8.37",
            marker: str = "200/2599") -> Summary:
    return Summary(marker, loss, ips, mem, [ips], 1, 2, "loss", 95, 1, 201, ips, 0.0, 0.0)


def baseline(ips: float = 963.2715, loss: str = "7.94836", mem: str | None = "8.37", **tol) -> Baseline:
    return Baseline(CASE, "p", {"loss": loss, "ips": ips, "max_mem": mem, "marker": "200/2599"},
                    {"ips_pct": 5.0, "loss": "exact", "max_mem": "exact", **tol}, {"commit": "abc1234"})


def row(verdict, metric):
    return next(c for c in verdict.checks if c.metric == metric)


def test_identical_run_passes():
    v = compare(summary(), baseline(), CASE)
    assert (v.status, v.exit_code) == ("pass", 0)
    assert [c.verdict for c in v.checks] == ["pass"] * 3 and v.advice == ""
    assert row(v, "ips").diff == "+0.00%"


@pytest.mark.parametrize("measured, diff, verdict", [
    (1050.0, "+5.00%", "fail"),  # exactly +5.00% fails, as in bash
    (950.0, "-5.00%", "fail"),  # exactly -5.00% fails
    (1049.9, "+4.99%", "pass"),
    (950.1, "-4.99%", "pass"),
    (1049.94, "+4.99%", "pass"),  # 4.994 rounds down
    (1049.96, "+5.00%", "fail"),  # 4.996 rounds to 5.00 (bash: printf "%0.2f" before comparing)
    (1100.0, "+10.00%", "fail"),
])
def test_ips_boundaries(measured, diff, verdict):
    v = compare(summary(ips=measured), baseline(ips=1000.0), CASE)
    assert (row(v, "ips").diff, row(v, "ips").verdict) == (diff, verdict)
    assert v.exit_code == (0 if verdict == "pass" else 1)


def test_float_noise_cannot_flip_the_boundary():
    base = 963.2715
    up, down = base * 1.05, base * 0.95  # in floats (up - base) / base * 100 == 5.000000000000004
    assert ips_diff_pct(up, base) == Decimal("5.00") and ips_diff_pct(down, base) == Decimal("-5.00")
    assert compare(summary(ips=up), baseline(ips=base), CASE).status == "regression"
    assert compare(summary(ips=down), baseline(ips=base), CASE).status == "regression"
    assert compare(summary(ips=base * 1.0499), baseline(ips=base), CASE).status == "pass"


def test_ten_percent_slower_message_and_advice():
    v = compare(summary(ips=865.3), baseline(ips=963.3), CASE)
    assert v.status == "regression" and v.exit_code == 1
    assert v.message == "ips 10.2% slower than baseline (measured 865.3 vs 963.3 img/s, allowed ±5%)"
    assert v.advice.startswith("10.2% slower than baseline:") and "abc1234" in v.advice


def test_ten_percent_faster_message_and_advice():
    v = compare(summary(ips=1100.0), baseline(ips=1000.0), CASE)
    assert v.message == "ips 10.0% faster than baseline (measured 1100.0 vs 1000.0 img/s, allowed ±5%)"
    assert v.advice == f"10.0% faster than baseline: if intended, run swavbench update-baseline {CASE}"


def test_exact_boundary_message_says_the_band_is_exclusive():
    v = compare(summary(ips=950.0), baseline(ips=1000.0), CASE)
    assert v.message.startswith("ips 5.00% slower") and "exclusive" in v.message


def test_custom_ips_tolerance():
    assert compare(summary(ips=1099.9), baseline(ips=1000.0, ips_pct=10), CASE).status == "pass"
    v = compare(summary(ips=1100.0), baseline(ips=1000.0, ips_pct=10), CASE)
    assert v.status == "regression" and row(v, "ips").tolerance == "±10%"


def test_loss_is_an_exact_string_compare():
    v = compare(summary(loss="7.94837"), baseline(), CASE)
    assert row(v, "loss").verdict == "fail" and row(v, "loss").diff == "+0.00001"
    assert "loss changed at 200/2599 (epoch 1, step 201): measured 7.94837, baseline 7.94836" in v.message
    assert "deterministic" in v.message and "code, config or data changed" in v.message
    assert "abc1234" in v.advice and f"update-baseline {CASE}" in v.advice
    # same number, different string: check_result compares strings
    assert compare(summary(loss="7.948360"), baseline(), CASE).status == "regression"


def test_memory_exact_absolute_and_ignore():
    assert row(compare(summary(mem="8.38"), baseline(), CASE), "max_mem").verdict == "fail"
    assert compare(summary(mem="8.42"), baseline(max_mem=0.05), CASE).status == "pass"  # |0.05| <= 0.05
    v = compare(summary(mem="8.43"), baseline(max_mem=0.05), CASE)
    assert v.status == "regression" and row(v, "max_mem").tolerance == "±0.05 GB"
    assert "max mem changed: measured 8.43 GB, baseline 8.37 GB" in v.message
    v = compare(summary(mem="9.99"), baseline(max_mem="ignore"), CASE)
    assert v.status == "pass" and [c.metric for c in v.checks] == ["loss", "ips"]


def test_memory_absent_from_the_log():
    v = compare(summary(mem=None), baseline(), CASE)
    assert v.status == "regression" and "absent from the log" in v.message
    assert compare(summary(mem=None), baseline(mem=None), CASE).status == "pass"


def test_several_failures_in_one_line():
    v = compare(summary(loss="8.0", ips=800.0, mem="9.00"), baseline(), CASE)
    assert [c.verdict for c in v.checks] == ["fail"] * 3 and "\n" not in v.message
    assert v.message.count(";") >= 2 and v.advice.startswith("find what changed")


def test_marker_mismatch_is_a_baseline_error():
    with pytest.raises(BaselineError, match="is for marker 200/2599 but the log was read at 20/78"):
        compare(summary(marker="20/78"), baseline(), CASE)


def test_passing_speedup_gets_advice():
    v = compare(summary(ips=1031.0), baseline(ips=1000.0), CASE)
    assert v.status == "pass"
    assert v.advice == ("3.1% faster than baseline (within tolerance): if intended, run swavbench "
                        f"update-baseline {CASE}")


def test_format_table_is_aligned():
    v = compare(summary(ips=865.3), baseline(ips=963.3), CASE)
    lines = format_table(v).splitlines()
    assert lines[0].split() == ["metric", "baseline", "measured", "diff", "tolerance", "verdict"]
    assert len(lines) == 4
    starts = [lines[0].index(h) for h in ("baseline", "measured", "diff", "tolerance", "verdict")]
    for ln in lines[1:]:
        assert all(ln[s - 2 : s] == "  " and ln[s] != " " for s in starts)
    assert "-10.17%" in lines[2] and lines[2].endswith("fail")


def test_failure_and_no_baseline_verdicts():
    err = RunFailed("rank_died", "rank 3 died")
    err.details = ["last lines of workerlog.3:", "  boom"]
    v = verdict_from_failure(err, CASE)
    assert (v.status, v.exit_code, v.failure_kind, v.checks) == ("failed", 2, "rank_died", [])
    assert v.message == "run failed (rank_died): rank 3 died" and v.details[-1] == "  boom"
    assert format_table(v) == "(no checks: failed)"
    nb = no_baseline_verdict(CASE, "baselines/x/y.json")
    assert nb.status == "no_baseline" and nb.exit_code == 3 and f"update-baseline {CASE}" in nb.advice


def test_non_finite_ips_fails_without_crashing():
    v = compare(summary(ips=float("nan")), baseline(), CASE)
    assert v.status == "regression" and row(v, "ips").diff == "n/a" and "not a finite number" in v.message
