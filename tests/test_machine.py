"""The machine profile key names everything that changes a CPU run's numbers: vendor, model, instruction-set
level and threads per rank (GPU: model and count)."""

from __future__ import annotations

import pytest

from swavbench import machine
from swavbench.machine import cpu_flags, cpu_identity, cpu_profile, cpu_vendor, isa_level, machine_profile

XEON_AVX512 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 popcnt avx bmi2 avx2 avx512f avx512dq avx512cd avx512bw avx512vl
"""
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 popcnt avx bmi2 avx2
"""
KVM_NO_VENDOR_IN_MODEL = """vendor_id\t: GenuineIntel
model name\t: Common KVM processor
flags\t\t: sse sse2 sse4_2 popcnt avx
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve
Hardware\t: Neoverse-V1
"""


def test_two_cpus_that_log_different_loss_digits_get_different_keys():
    xeon, epyc = cpu_identity(XEON_AVX512), cpu_identity(EPYC_AVX2)
    assert xeon == {"model": "Intel(R) Xeon(R) Processor", "vendor": "intel", "isa": "avx512"}
    assert cpu_profile(xeon["model"], 1, xeon["isa"], xeon["vendor"]) == "cpu-intel-xeon-avx512-1t"
    assert cpu_profile(epyc["model"], 1, epyc["isa"], epyc["vendor"]) == "cpu-amd-epyc-7b13-64-core-avx2-1t"


def test_same_model_string_other_instruction_set_is_another_profile():
    """Two VMs that both say "Intel(R) Xeon(R) Processor" but dispatch to other kernels must not share one."""
    narrow = XEON_AVX512.replace(" avx512f avx512dq avx512cd avx512bw avx512vl", "")
    keys = {cpu_profile(i["model"], 1, i["isa"], i["vendor"]) for i in map(cpu_identity, (XEON_AVX512, narrow))}
    assert keys == {"cpu-intel-xeon-avx512-1t", "cpu-intel-xeon-avx2-1t"}


@pytest.mark.parametrize(
    "flags,level",
    [
        ({"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "bmi2", "avx"}, "avx512"),
        ({"avx512f", "avx2", "fma", "bmi2", "avx"}, "avx2"),  # AVX-512F alone (Knights Landing) is not v4
        ({"avx2", "fma", "bmi2", "avx"}, "avx2"),
        ({"avx2", "avx"}, "avx"),
        ({"sse4_2", "popcnt"}, "sse4"),
        ({"asimd", "sve"}, "sve"),
        ({"asimd"}, "neon"),
        (set(), "base"),
    ],
)
def test_isa_level(flags, level):
    assert isa_level(flags) == level


def test_vendor_is_added_when_the_model_string_lacks_it():
    ident = cpu_identity(KVM_NO_VENDOR_IN_MODEL)
    assert cpu_profile(ident["model"], 2, ident["isa"], ident["vendor"]) == "cpu-intel-common-kvm-avx-2t"
    assert cpu_vendor(ARM) == "" and cpu_flags(ARM) >= {"asimd", "sve"}
    arm = cpu_identity(ARM)
    assert cpu_profile(arm["model"], 4, arm["isa"], arm["vendor"]) == "cpu-neoverse-v1-sve-4t"


def test_machine_profile_of_this_host_names_threads_and_isa(monkeypatch):
    monkeypatch.setattr(machine, "read_cpuinfo", lambda: EPYC_AVX2)
    assert machine_profile(threads=3, device="cpu") == "cpu-amd-epyc-7b13-64-core-avx2-3t"
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert machine_profile(device="cpu") == "cpu-amd-epyc-7b13-64-core-avx2-5t"


def test_gpu_profile_is_model_and_count(monkeypatch):
    monkeypatch.setattr(machine, "detect_gpu", lambda: ("NVIDIA A100-SXM4-40GB", 8))
    assert machine_profile() == "gpu-a100-sxm4-40gb-x8"
    assert machine_profile(device="cpu").startswith("cpu-")  # an explicit cpu run skips the GPU probe
