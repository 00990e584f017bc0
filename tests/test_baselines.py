"""baselines: schema, migration, atomic locked writes, profile keys, compatibility, the passl-a100 files."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from swavbench.errors import EXIT_USAGE, BaselineError, EnvironmentProblem
from swavbench.harness import baselines as bl
from swavbench.harness.baselines import (
    SCHEMA_VERSION,
    Baseline,
    baseline_path,
    check_compatible,
    cpu_model,
    cpu_profile,
    diff_baselines,
    gpu_profile,
    load_baseline,
    machine_profile,
    slugify,
    write_baseline,
)

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "baselines"


def make(ips: float = 12.5, **prov) -> Baseline:
    return Baseline("swav_pt_1n8c_fp16o1", "cpu-x-2t",
                    {"loss": "8.31987", "ips": ips, "max_mem": "0.21", "marker": "20/78"},
                    provenance={"paddle_version": "3.3.1", "commit": "abc", **prov},
                    config="swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1")


def one_line_error(path) -> BaselineError:
    with pytest.raises(BaselineError) as err:
        load_baseline(path)
    assert err.value.exit_code == EXIT_USAGE and "\n" not in str(err.value) and str(path) in str(err.value)
    return err.value


def test_write_then_load_round_trip_sorted_and_indented(tmp_path):
    path = baseline_path(tmp_path, "cpu-x-2t", "swav_pt_1n8c_fp16o1")
    write_baseline(path, make())
    assert load_baseline(path) == make()
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "case": ' in text
    data = json.loads(text)
    assert list(data) == sorted(data) and list(data["metrics"]) == sorted(data["metrics"])
    assert data["schema_version"] == SCHEMA_VERSION
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no tmp or lock file left


@pytest.mark.parametrize("case, config, loss, ips, mem, marker", [
    ("swav_pt_1n8c_fp16o1", "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1", "7.94836", 963.2715, "8.37", "200/2599"),
    ("swav_lp_1n8c_fp32", "swav_resnet50_224_lp_in1k_1n8c_dp_fp32", "3.83529", 5620.26, "0.46", "200/5005"),
    ("swav_ft_1n4c_fp32", "swav_resnet50_224_ft_in1k_1n4c_dp_fp32", "2.01263", 1953.215, "10.50", "120/126"),
])
def test_passl_a100_reference_baselines(case, config, loss, ips, mem, marker):
    b = load_baseline(ROOT / "swavbench" / "resources" / "baselines" / "passl-a100" / f"{case}.json")
    assert (b.case, b.config, b.profile) == (case, config, "passl-a100")
    assert b.metrics == {"loss": loss, "ips": ips, "max_mem": mem, "marker": marker}
    assert b.tolerances == {"ips_pct": 5.0, "loss": "exact", "max_mem": "exact"}
    assert "5c7359b" in b.provenance["source"] and "tests/CI/case.sh" in b.provenance["source"]
    assert b.provenance["earlier_revision"]["loss"] in ("8.00343", "4.89133", "2.01301")


def test_missing_baseline_names_the_command(tmp_path):
    err = one_line_error(tmp_path / "swav_lp_1n8c_fp32.json")
    assert "swavbench update-baseline swav_lp_1n8c_fp32" in str(err)


def test_corrupt_truncated_json():
    err = one_line_error(FIX / "corrupt.json")
    assert "not valid JSON (truncated?)" in str(err) and "git checkout" in str(err)


def test_wrong_schema_and_missing_field():
    assert "schema_version 99" in str(one_line_error(FIX / "wrong-schema.json"))
    assert "metrics.ips" in str(one_line_error(FIX / "missing-field.json"))


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.pop("schema_version"), "schema_version"),
    (lambda d: d["tolerances"].update(max_mem="loose"), "tolerances.max_mem"),
    (lambda d: d["tolerances"].update(ips_pct=-1), "ips_pct"),
    (lambda d: d["metrics"].update(loss=7.9), "strings"),
    (lambda d: d.pop("provenance"), "'provenance'"),
])
def test_invalid_contents(tmp_path, mutate, words):
    data = json.loads((FIX / "swavbench-cpu.json").read_text())
    mutate(data)
    (tmp_path / "b.json").write_text(json.dumps(data))
    assert words in str(one_line_error(tmp_path / "b.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "not a JSON object" in str(one_line_error(tmp_path / "list.json"))


def test_migration_hook_upgrades_old_files(tmp_path, monkeypatch):
    old = {"schema_version": 0, "case": "c", "profile": "p", "loss": "7.9", "ips": 10.0, "mem": "1.00",
           "marker": "20/78"}
    (tmp_path / "c.json").write_text(json.dumps(old))
    assert "no migration" in str(one_line_error(tmp_path / "c.json"))

    def v0_to_v1(d: dict) -> dict:
        return {"case": d["case"], "profile": d["profile"], "provenance": {}, "tolerances": {},
                "metrics": {"loss": d["loss"], "ips": d["ips"], "max_mem": d["mem"], "marker": d["marker"]}}

    monkeypatch.setitem(bl.MIGRATIONS, 0, v0_to_v1)
    b = load_baseline(tmp_path / "c.json")
    assert b.metrics["max_mem"] == "1.00" and b.schema_version == 1 and b.tolerances["ips_pct"] == 5.0


def test_second_writer_is_refused_while_another_process_holds_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(bl, "LOCK_WAIT_S", 0.5)  # a writer waits this long for the lock, then is refused
    path = tmp_path / "p" / "c.json"
    write_baseline(path, make(ips=10.0))
    holder = subprocess.Popen(  # another update-baseline, in its own process, mid-write
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()", f"{path}.lock"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BaselineError, match=f"another update-baseline is writing {path}"):
            write_baseline(path, make(ips=20.0))
    finally:
        holder.communicate("", timeout=10)
    assert load_baseline(path).metrics["ips"] == 10.0
    assert Path(f"{path}.lock").exists()  # the holder died without cleaning up: a stale lock file...
    write_baseline(path, make(ips=20.0))  # ...does not block the next writer
    assert load_baseline(path).metrics["ips"] == 20.0 and not Path(f"{path}.lock").exists()


@pytest.mark.parametrize("target", ["replace", "fsync"])
def test_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch, target):
    path = tmp_path / "c.json"
    write_baseline(path, make(ips=10.0))
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bl.os, target, disk_full)
    full = r"No space left on device \(disk full: free some space\); the previous file is unchanged"
    with pytest.raises(EnvironmentProblem, match=full):
        write_baseline(path, make(ips=99.0))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]  # tmp and lock removed


def test_invalid_baseline_is_never_written(tmp_path):
    with pytest.raises(BaselineError):
        write_baseline(tmp_path / "c.json", make(ips=-1.0))
    assert not (tmp_path / "c.json").exists()


def test_check_compatible():
    b = make()
    assert check_compatible(b, "cpu-x-2t", "3.3.1") == []
    with pytest.raises(BaselineError) as err:
        check_compatible(b, "gpu-a100-x8", "3.3.1")
    assert "profile cpu-x-2t, this run is gpu-a100-x8" in str(err.value) and "--allow-mismatch" in str(err.value)
    with pytest.raises(BaselineError, match="paddle 3.3.1, this run used paddle 2.6.1"):
        check_compatible(b, "cpu-x-2t", "2.6.1")
    warnings = check_compatible(b, "gpu-a100-x8", "2.6.1", allow_mismatch=True)
    assert len(warnings) == 2 and all(w.startswith("warning:") for w in warnings)
    unknown = make(paddle_version=None)
    assert "does not record its paddle version" in check_compatible(unknown, "cpu-x-2t", "3.3.1")[0]


def test_profile_keys():
    assert slugify("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz") == "intel-xeon-platinum-8375c"
    assert cpu_profile("AMD EPYC 7B13 64-Core Processor", 8) == "cpu-amd-epyc-7b13-64-core-8t"
    assert gpu_profile("NVIDIA A100-SXM4-40GB", 8) == "gpu-a100-sxm4-40gb-x8"
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t: x\n") == "AMD EPYC"
    assert cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\nHardware\t: BCM2835\n") == "BCM2835"


def test_machine_profile_threads(monkeypatch):
    assert machine_profile(threads=3, device="cpu").endswith("-3t")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    prof = machine_profile(device="cpu")
    assert prof.startswith("cpu-") and prof.endswith("-5t")


def test_baseline_path_rejects_path_tricks(tmp_path):
    assert baseline_path(tmp_path, "passl-a100", "c") == tmp_path / "passl-a100" / "c.json"
    for profile, case in (("../x", "c"), ("p", "a/b"), ("", "c")):
        with pytest.raises(BaselineError):
            baseline_path(tmp_path, profile, case)


def test_diff_old_to_new():
    lines = diff_baselines(make(ips=10.0), make(ips=11.0, commit="def"))
    assert lines[0].endswith("2 change(s)")
    assert lines[1] == "  metrics.ips: 10.0 -> 11.0 (+10.00%)"  # metrics before provenance
    assert lines[2] == '  provenance.commit: "abc" -> "def"'
    assert diff_baselines(make(), make())[0].endswith("no change")
    assert diff_baselines(None, make())[0].startswith("new baseline cpu-x-2t/swav_pt_1n8c_fp16o1")
