"""The host allocator setting: chosen per CPU vendor, overridable, applied for real, said in the header."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from swavbench.errors import ConfigError
from swavbench.train import host_allocator as ha
from tests.conftest import clean_env


def test_the_setting_is_chosen_by_vendor_and_says_why():
    assert ha.choose("amd") == ("glibc-tuned", "auto for amd CPUs (measured)")
    assert ha.choose("intel")[0] == ha.BY_VENDOR["intel"]
    assert ha.choose("hygon") == ("default", "auto for hygon CPUs (not measured, glibc's default)")
    assert ha.choose("", "auto")[1] == "auto for unknown CPUs (not measured, glibc's default)"
    assert ha.choose("amd", "default") == ("default", f"{ha.ENV}=default")
    with pytest.raises(ConfigError, match="SWAVBENCH_HOST_ALLOCATOR='fast': unknown"):
        ha.choose("amd", "fast")


def test_the_header_text_names_setting_and_reason():
    why = "auto for hygon CPUs (not measured, glibc's default)"
    assert ha.tune("hygon", {}) == f"default: glibc malloc defaults ({why})"  # default: nothing applied
    text = ha.describe("glibc-tuned", "auto for amd CPUs (measured)")
    assert text == ("glibc-tuned: glibc mallopt: mmap threshold 32 MiB, trim threshold 2 GiB, top pad 256 MiB "
                    "(auto for amd CPUs (measured))")
    failed = ha.describe("glibc-tuned", "x", "no glibc mallopt")
    assert failed == "default (glibc-tuned chosen, x, but no glibc mallopt)"


FAULTS = """
import resource, sys
from swavbench.train.host_allocator import tune
print(tune(), file=sys.stderr)
import paddle
paddle.set_device("cpu")
x = paddle.randn([4 * 1024 * 1024])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    (x * 0.5).numpy()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_the_tuned_setting_really_changes_malloc():
    """x * 0.5 on 4M floats: a fresh mmap (and its page faults) per result with glibc's default, none tuned."""
    faults = {}
    for setting in ("default", "glibc-tuned"):
        proc = subprocess.run([sys.executable, "-c", FAULTS], env=clean_env(**{ha.ENV: setting}),
                              capture_output=True, text=True, timeout=120, check=True)
        faults[setting] = int(proc.stdout.strip().splitlines()[-1])
    assert faults["glibc-tuned"] * 3 < faults["default"], json.dumps(faults)
