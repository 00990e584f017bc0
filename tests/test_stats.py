"""stats: steady-state ips (warm-up from the data, robust to slow steps), pooling, drift step detection."""

from __future__ import annotations

import pytest

from swavbench.harness.stats import detect_drift, find_warmup, pooled, steady_ips, summarize_ips, trimmed_rate


def test_warmup_is_found_from_the_data_with_a_minimum():
    assert find_warmup([0.5, 0.1, 0.1, 0.1, 0.1, 0.1]) == 1  # the fixed minimum
    assert find_warmup([2.0, 0.9, 0.4, 0.1, 0.1, 0.1, 0.1, 0.1]) == 3  # leading slow steps
    assert find_warmup([0.1, 0.1, 0.1, 0.1], min_warmup=0) == 0
    assert find_warmup([0.1, 0.1, 0.5, 0.1, 0.1, 0.1]) == 1  # a slow step later is not warm-up
    assert find_warmup([1.0] * 3 + [0.1] * 3) == 3  # never more than half


def test_steady_rate_ignores_warmup_and_an_odd_step():
    costs = [1.0, 0.5] + [0.1] * 17 + [0.4]  # warm-up, steady, one step slowed by a neighbour
    s = steady_ips(costs, 64)
    assert s.warmup_steps == 2 and s.n_steps == 18
    assert s.rate == pytest.approx(640.0) and s.median == pytest.approx(640.0)  # the odd step is trimmed
    mean_of_all = sum(64 / c for c in costs[2:]) / 18
    assert mean_of_all < 0.96 * 640  # the mean of step ips would call this run 4%+ slower
    assert s.iqr_pct == pytest.approx(0.0) and s.mad_pct == pytest.approx(0.0)


def test_steady_rate_is_images_over_time_of_the_kept_steps():
    # 10 steps: the slowest and the fastest are left out, the other 8 give 8 x 64 images in their total time
    costs = [0.5, 0.05] + [0.1] * 4 + [0.2] * 4
    assert trimmed_rate([64 / c for c in costs]) == pytest.approx(8 * 64 / (0.1 * 4 + 0.2 * 4))
    assert trimmed_rate([100.0, 50.0], trim=0.0) == pytest.approx(2 / (1 / 100 + 1 / 50))  # harmonic mean
    slowed = [64 / c for c in [0.1] * 16 + [0.3, 0.3]]  # two slow steps in 18: one is trimmed, one counts
    assert 0.85 * 640 < trimmed_rate(slowed) < 0.95 * 640
    with pytest.raises(ValueError):
        trimmed_rate([])


def test_spread_in_percent_of_the_median():
    s = summarize_ips([90.0, 95.0, 100.0, 105.0, 110.0])
    assert s.median == 100.0 and s.iqr_pct == pytest.approx(10.0) and s.mad_pct == pytest.approx(5.0)
    assert s.rate == pytest.approx(5 / sum(1 / v for v in [90.0, 95.0, 100.0, 105.0, 110.0]))  # 5 steps: no trim
    assert summarize_ips([]) is None and steady_ips([0.1], 64) is None and steady_ips([0.1, 0.1], 0) is None


def test_pooled_attempts_judge_all_steps_together():
    slow = summarize_ips([80.0] * 10, 1)
    normal = summarize_ips([100.0] * 10, 1)
    both = pooled([slow, normal, normal])
    assert both.median == 100.0 and both.n_steps == 30 and both.warmup_steps == 3
    assert both.rate == pytest.approx(24 / (7 / 80 + 17 / 100))  # 3 slowest and 3 fastest of 30 trimmed
    assert pooled([slow, slow]).median == 80.0 and pooled([slow, slow]).rate == pytest.approx(80.0)


@pytest.mark.parametrize(
    "series,index,change",
    [
        ([100, 101, 99, 100, 101, 95, 94, 95], 5, -5.0),  # a clean step of -5% two nights ago
        ([100, 100, 101, 99, 100, 98, 96, 94], 5, -4.0),  # -2% a night for three nights: each inside +-5%
        ([100, 99, 101, 100, 106, 107], 4, 6.5),  # a speed-up counts too
    ],
)
def test_drift_is_detected(series, index, change):
    d = detect_drift(series, 4.0)
    assert d is not None and d.index == index and d.change_pct == pytest.approx(change)
    assert d.before == pytest.approx(100.0)


@pytest.mark.parametrize(
    "series",
    [
        [100, 101, 99, 100, 101, 100, 99],  # noise only
        [100, 101, 99, 100, 101, 93],  # one bad night is not a step (confirmation's job)
        [100, 101, 99, 94, 100, 101],  # a past dip that recovered
        [100, 101, 99, 100, 97, 98],  # a step below the threshold
        [100, 94],  # too short to know
    ],
)
def test_no_drift(series):
    assert detect_drift(series, 4.0) is None
