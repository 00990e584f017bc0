"""The CPU profile passes the PASSL configs through: each key the CPU run uses is the config's, or derived
from it (learning rates x the batch ratio, crop sizes x 2/7 or 1/7...), or set by the profile / the case
with a comment saying why. A change to any config key reaches the CPU run."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from swavbench.errors import ConfigError
from swavbench.harness import cases
from swavbench.resources import CONFIG_DIR, PROFILE_DIR
from swavbench.train import profiles
from swavbench.train.config import load_config

CPU = PROFILE_DIR / "cpu.yaml"
# keys the harness sets for a case run (cases.plan: step counts, log period, determinism, no loader
# workers; with a dataset: its roots, the class count of the synthetic set, the pre-trained weights)
HARNESS_KEYS = {"Global.print_batch_step", "Global.max_train_step", "Global.deterministic",
                "DataLoader.Train.loader.num_workers", "DataLoader.Train.dataset.root", "DataLoader.Eval.dataset.root",
                "Model.num_classes", "Model.output_dim", "Global.pretrained_model"}  # fmt: skip


def leaves(node, path=()):
    """(path, value) of every leaf of a config (list items by index)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, path + (k,))
    elif isinstance(node, list) and node and all(isinstance(x, (dict, list)) for x in node):
        for i, v in enumerate(node):
            yield from leaves(v, path + (i,))
    else:
        yield path, node


def changed(value):
    """A different value of the same kind (a float x1.0001, an int x2 (it survives a size's rounding), a flag
    flipped, text appended, a list's first item changed)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 if value else 1
    if isinstance(value, float):
        return value * 1.0001 if value else 0.5
    if isinstance(value, list):
        return [changed(value[0]), *value[1:]] if value else [1]
    if isinstance(value, str):
        return value + "x"
    return 1 if value is None else value


def at(cfg, path):
    for k in path:
        if isinstance(cfg, list) and isinstance(k, int) and k < len(cfg) or isinstance(cfg, dict) and k in cfg:
            cfg = cfg[k]
        else:
            return "<absent>"
    return cfg


def put(cfg, path, value):
    for k in path[:-1]:
        cfg = cfg[k]
    cfg[path[-1]] = value


def profile_set_keys(task_type: str) -> set[str]:
    return {".".join(k) for k, _ in profiles.read_profile("cpu", task_type)[0]}


def cpu_run_config(path: Path, case: cases.Case) -> dict:
    """The config a CPU case run trains with (the profile, then the case's own overrides)."""
    plan = cases.plan(case, "cpu")
    return load_config(path, plan.overrides, profile="cpu")


@pytest.mark.parametrize("case", cases.CASES, ids=[c.id for c in cases.CASES])
def test_every_config_key_reaches_the_cpu_run(case, tmp_path):
    raw = yaml.safe_load((CONFIG_DIR / f"{case.config}.yaml").read_text().replace("1e-6", "1.0e-6"))
    task = raw["Global"]["task_type"]
    exempt = profile_set_keys(task) | HARNESS_KEYS | {o.split("=")[0] for o in case.cpu_overrides}
    base = cpu_run_config(CONFIG_DIR / f"{case.config}.yaml", case)
    checked, missed = 0, []
    for path, value in leaves(raw):
        dotted = ".".join(map(str, path))
        if dotted in exempt or path[:1] == ("Global",) and path[1:] == ("task_type",):
            continue
        edited = copy.deepcopy(raw)
        put(edited, path, changed(value))
        f = tmp_path / f"{case.config}.yaml"
        f.write_text(yaml.safe_dump(edited, sort_keys=False))
        try:
            got = at(cpu_run_config(f, case), path)
        except ConfigError:
            continue  # the changed value is not a valid config (e.g. an unknown loop name): nothing runs
        checked += 1
        if got == at(base, path):
            missed.append(f"{dotted}: {value!r} -> {changed(value)!r} did not reach the CPU run")
    assert not missed, "\n".join(missed)
    assert checked > 40


def test_the_issue_example_lr_x1_0001_reaches_the_cpu_run_scaled_by_the_batch_ratio():
    base = load_config("swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1", profile="cpu")
    assert base["Optimizer"]["lr"]["learning_rate"] == pytest.approx(0.6 * 8 / 64)  # PASSL spells it `lr`
    assert base["Optimizer"]["lr"]["eta_min"] == pytest.approx(0.0006 * 8 / 64)
    big = load_config("swav_resnet50_224_pt_in1k_4n32c_dp_fp16o1", profile="cpu")
    sched = big["Optimizer"]["lr"]
    assert (sched["learning_rate"], sched["warmup_start_lr"], sched["warmup_epoch"]) == (0.3, 0.01875, 10)


def test_classification_sizes_and_learning_rates_are_derived():
    ft = load_config("swav_resnet50_224_ft_in1k_1n4c_dp_fp32", profile="cpu")
    assert ft["Optimizer"]["lr"]["learning_rate"] == pytest.approx(0.02 * 8 / 128)
    assert ft["Optimizer"]["param_groups"][0]["lr"]["learning_rate"] == pytest.approx(5 * 8 / 128)
    assert ft["DataLoader"]["Eval"]["sampler"]["batch_size"] == 8  # 128 x 8 / 128
    evals = ft["DataLoader"]["Eval"]["dataset"]["transform"]
    assert evals[:2] == [{"Resize": {"size": 73}}, {"CenterCrop": {"size": 64}}]
    assert ft["DataLoader"]["Eval"]["dataset"]["transform"][3]["Normalize"]["std"] == [0.228, 0.224, 0.225]
    lp = load_config("swav_resnet50_224_lp_in1k_1n8c_dp_fp32", profile="cpu")
    assert lp["Optimizer"]["lr"]["learning_rate"] == pytest.approx(0.3 * 8 / 32)
    assert lp["DataLoader"]["Train"]["dataset"]["transform"][0]["RandomResizedCrop"]["size"] == 64


def test_every_key_the_profile_sets_or_derives_has_a_comment():
    """Each key line sits under a comment (a comment block may justify a group of keys)."""
    lines = CPU.read_text().splitlines()
    bare = []
    for i, line in enumerate(lines):
        if re.match(r"^\s+[A-Za-z][\w.*]*:\s*\S", line):  # a key with a value
            j = i - 1
            while j >= 0 and re.match(r"^\s+[A-Za-z][\w.*]*:\s*\S", lines[j]):
                j -= 1
            if j < 0 or not lines[j].strip().startswith("#"):
                bare.append(line.strip())
    assert not bare, bare


def test_a_bad_profile_is_refused_with_the_key(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("all:\n  derive:\n    Optimizer.LRScheduler.learning_rate: twice\n")
    with pytest.raises(ConfigError, match="unknown rule 'twice'"):
        load_config("swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1", profile=str(bad))
    bad.write_text("all:\n  Global.seed: 1\n  derive:\n    Global.seed: batch_ratio\n")
    with pytest.raises(ConfigError, match="Global.seed is both set and derived"):
        load_config("swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1", profile=str(bad))


@pytest.mark.swavbench_slow
def test_lr_x1_0001_in_the_passl_config_changes_the_cpu_loss(synth_data, tmp_path):
    """The issue's example end to end: the CPU trainer, one rank, the config's lr x 1.0001 -> another loss."""
    from tests.conftest import clean_env, swavbench_cmd

    src = (CONFIG_DIR / "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1.yaml").read_text()
    edited = tmp_path / "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1.yaml"
    edited.write_text(src.replace("learning_rate: 0.6", "learning_rate: 0.60006"))
    losses = []
    for cfg, out in ((CONFIG_DIR / edited.name, tmp_path / "a"), (edited, tmp_path / "b")):
        cmd = swavbench_cmd("train", "-c", str(cfg), "--profile", "cpu", "-o", f"Global.output_dir={out}",
                            "-o", f"DataLoader.Train.dataset.root={synth_data}", "-o", "Global.max_train_step=4")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        rows = (out / "steps.0.jsonl").read_text().splitlines()
        losses.append([line.split('"loss": ')[1].split(",")[0] for line in rows])
    assert losses[0][0] == losses[1][0] and losses[0] != losses[1], losses  # step 1 is before any update
