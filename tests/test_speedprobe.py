"""The machine-speed probe: a fixed numpy workload in a one-thread subprocess, in work per CPU second."""

from __future__ import annotations

import subprocess

import pytest

from swavbench.harness import speedprobe


def test_probe_reports_every_workload_in_a_one_thread_subprocess():
    out = speedprobe.probe(0.05)
    assert set(out) == set(speedprobe.WORKLOADS)
    assert all(v > 0 for v in out.values())


def test_rate_counts_calls_per_cpu_second_not_per_wall_second():
    import time

    # sleeping uses wall time but no CPU time: the rate per CPU second is far above the 1 / 0.01 s wall rate
    rate = speedprobe._rate(lambda: time.sleep(0.01), 0.1)
    assert rate > 1000


def test_a_failing_probe_is_an_error(monkeypatch):
    def broken(*a, **k):
        return subprocess.CompletedProcess(a, 1, "", "ModuleNotFoundError: No module named 'numpy'")

    monkeypatch.setattr(speedprobe.subprocess, "run", broken)
    with pytest.raises(RuntimeError, match="speed probe failed \\(exit 1\\): ModuleNotFoundError"):
        speedprobe.probe(0.05)
