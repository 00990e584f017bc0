"""Shared fixtures for swavbench's own tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def swavbench_cmd(*args: str) -> list[str]:
    """The CLI as a subprocess command (same interpreter as the tests)."""
    return [sys.executable, "-m", "swavbench.cli", *args]


def clean_env(**extra: str) -> dict:
    """The environment without any paddle launch variables, single-threaded, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "FLAGS_"))}
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """A small synthetic ImageNet-layout dataset (8 classes x 16 train images, 48 px), made once."""
    out = tmp_path_factory.mktemp("synth") / "data"
    subprocess.run(swavbench_cmd("data", "synth", "--out", str(out), "--classes", "8", "--train-per-class", "16",
                                 "--val-per-class", "4", "--size", "48", "--seed", "0"),
                   check=True, env=clean_env(), capture_output=True)
    return out


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """3072 empty *.jpg: the fake worker only counts them (3072 // (8 x 8) = 48 iters for 1n8c, // (8 x 16) = 24
    for 4n32c on cpu). A module that needs another layout defines its own."""
    root = tmp_path_factory.mktemp("fakedata")
    (root / "train" / "a").mkdir(parents=True)
    for i in range(3072):
        (root / "train" / "a" / f"{i}.jpg").touch()
    return root
