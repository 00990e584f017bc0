"""Linear probe and fine-tune end to end on CPU: tiny runs through the CLI (and one 2-rank launch)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from swavbench.harness.logparse import parse_log_text
from swavbench.harness.pretrain_cache import pretrained_checkpoint
from tests.conftest import clean_env, swavbench_cmd

PT = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"
LP = "swav_resnet50_224_lp_in1k_1n8c_dp_fp32"
FT = "swav_resnet50_224_ft_in1k_1n4c_dp_fp32"
NORMALIZE = {"Normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.228, 0.224, 0.225]}}
# the CPU pre-train sees 32 px crops: the probe trains and evaluates at that size (PASSL's 256 -> 224 ratio)
TRAIN_32 = [{"RandomResizedCrop": {"size": 32}}, "RandomHorizontalFlip", "ToTensor", NORMALIZE]
EVAL_32 = [{"Resize": {"size": 37}}, {"CenterCrop": {"size": 32}}, "ToTensor", NORMALIZE]
SMALL = [f"DataLoader.Train.dataset.transform={TRAIN_32}", f"DataLoader.Eval.dataset.transform={EVAL_32}"]


def data_overrides(data: Path, classes: int, finetune: bool = False) -> list[str]:
    key = "Model.backbone.output_dim" if finetune else "Model.class_num"
    subset = ["DataLoader.Train.dataset.txt_file_name=10percent.txt"] if finetune else []  # the one beside train/
    return [f"DataLoader.Train.dataset.root={data / 'train'}", f"DataLoader.Eval.dataset.root={data / 'val'}",
            f"{key}={classes}", *subset, *SMALL]


def run(config: str, out: Path, *overrides: str, check: bool = True):
    cmd = swavbench_cmd("train", "-c", config, "--profile", "cpu", "-o", f"Global.output_dir={out}",
                        "-o", "Global.print_batch_step=1")
    for item in overrides:
        cmd += ["-o", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def steps(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "steps.0.jsonl").read_text().splitlines()]


def evals(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "evals.jsonl").read_text().splitlines()]


def state(prefix: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in paddle.load(str(prefix.with_suffix(".pdparams"))).items()}


@pytest.fixture(scope="module")
def pretrained(synth_data, tmp_path_factory) -> Path:
    """A short CPU pre-train of synth_data (BN statistics that differ from a fresh network's)."""
    return pretrained_checkpoint(PT, "cpu", synth_data, ["Global.max_train_step=16"], tmp_path_factory.mktemp("c"))


def test_linear_probe_trains_only_the_classifier_and_leaves_the_trunk_untouched(synth_data, pretrained, tmp_path):
    proc = run(LP, tmp_path, *data_overrides(synth_data, 8), "Global.epochs=2",
               f"Global.pretrained_model={pretrained}")
    before, after = state(pretrained), state(tmp_path / "swav_resnet50_linearprobe" / "latest")
    trunk = [k for k in after if k.startswith("res_model.encoder.")]
    assert len(trunk) == 60 and any(k.endswith("_variance") for k in trunk)
    for key in trunk:  # weights AND BN running statistics, bit for bit
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert sorted(set(after) - set(trunk)) == ["linear.linear.bias", "linear.linear.weight"]
    assert np.abs(after["linear.linear.bias"]).sum() > 0  # the classifier did train (its bias starts at 0)
    header = json.loads((tmp_path / "run_header.json").read_text())
    assert header["param_groups"] == {"default": {"tensors": 2, "schedule": header["param_groups"]["default"][
        "schedule"]}} and header["task"] == "linear_probe" and header["pretrained"]["trunk_tensors"] == 60
    assert "[swavbench] pretrained: loaded 60/60 trunk tensors from" in proc.stdout
    # PASSL's lines: the harness parser reads the train metrics; the whole val set is evaluated each epoch
    records = parse_log_text(proc.stdout).records
    assert list(records[0].metrics) == ["top1", "metric", "top5", "CELoss", "loss"]
    assert all(r.metrics["top1"] == r.metrics["metric"] for r in records)
    assert records[0].marker == "0/16" and records[0].max_mem is not None
    assert re.findall(r"\[Eval\]\[Epoch (\d+)\]\[Avg\]CELoss: [\d.]+, top1: [\d.]+, top5: [\d.]+$", proc.stdout,
                      re.MULTILINE) == ["1", "2"]
    assert [e["samples"] for e in evals(tmp_path)] == [32, 32]
    lrs = [s["lr"] for s in steps(tmp_path)]
    # the config's 0.3 x the CPU profile's batch ratio (8 / 32); per-epoch cosine over 2 epochs
    assert lrs[0] == pytest.approx(0.3 * 8 / 32) and lrs[-1] == pytest.approx(0.15 * 8 / 32)


def test_finetune_trains_the_trunk_on_the_subset_with_two_learning_rates(synth_data, pretrained, tmp_path):
    head_sched = {"name": "MultiStepDecay", "learning_rate": 5, "milestones": [1], "gamma": 0.2}
    head = "res_model.projection_head"  # PASSL's param_groups entry (regex on parameter names)
    run(FT, tmp_path, *data_overrides(synth_data, 8, finetune=True), "Global.epochs=2",
        f"Global.pretrained_model={pretrained}", "Optimizer.LRScheduler.milestones=[1]",
        f"Optimizer.param_groups={[{'name': head, 'lr': head_sched}]}")
    header = json.loads((tmp_path / "run_header.json").read_text())
    assert header["train_samples"] == 16 and header["task"] == "finetune"  # 10percent.txt of 8 x 16 images
    groups = header["param_groups"]
    assert groups[head]["tensors"] == 2 and groups["default"]["tensors"] == 36  # 60 minus 24 BN buffers
    by_epoch = {s["epoch"]: s["lrs"] for s in steps(tmp_path)}
    # trunk: the config's 0.02 x the CPU profile's batch ratio (8 / 128); head: as given
    assert by_epoch[1] == pytest.approx({"default": 0.02 * 8 / 128, head: 5.0})
    assert by_epoch[2] == pytest.approx({"default": 0.004 * 8 / 128, head: 1.0})  # x0.2 at the milestone
    assert steps(tmp_path)[0]["lr"] == 5.0  # the logged lr is the first group's, as PASSL's get_lr()
    before, after = state(pretrained), state(tmp_path / "swav_resnet50_finetune" / "latest")
    assert not np.array_equal(after["res_model.encoder.conv1.weight"], before["res_model.encoder.conv1.weight"])
    assert not np.array_equal(after["res_model.encoder.bn1._mean"], before["res_model.encoder.bn1._mean"])
    assert after["res_model.projection_head.weight"].shape == (128, 8)  # [feature_dim, classes]


def test_early_stop_at_max_train_step(synth_data, pretrained, tmp_path):
    proc = run(LP, tmp_path, *data_overrides(synth_data, 8), "Global.max_train_step=3",
               f"Global.pretrained_model={pretrained}")
    assert "global_step(3) >= max_train_step(3), training stops early." in proc.stdout
    assert "[Eval]" not in proc.stdout and len(steps(tmp_path)) == 3


def test_eval_over_two_gloo_ranks_equals_one_rank(synth_data, pretrained, tmp_path):
    # 31 of the 32 val images: with 2 ranks, rank 1 gets one wrap-around duplicate that must not count
    subset = tmp_path / "val31.txt"
    subset.write_text("\n".join(sorted(p.name for p in (synth_data / "val").glob("*/*.JPEG"))[:31]) + "\n")
    common = [*data_overrides(synth_data, 8), f"DataLoader.Eval.dataset.txt_file_name={subset}",
              "DataLoader.Eval.sampler.batch_size=4", "Global.epochs=1"]
    run(LP, tmp_path / "one", *common, f"Global.pretrained_model={pretrained}")
    prefix = tmp_path / "one" / "swav_resnet50_linearprobe" / "latest"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--max_restart", "0",
           "--log_dir", str(tmp_path / "log"), str(Path(sys.executable).with_name("swavbench")), "train", "-c", LP,
           "--profile", "cpu", "-o", f"Global.output_dir={tmp_path / 'two'}", "-o", f"Global.checkpoint={prefix}"]
    for item in common:
        cmd += ["-o", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=240)
    rank0 = (tmp_path / "log" / "workerlog.0").read_text()
    assert proc.returncode == 0, rank0[-3000:]

    assert re.search(r"\[Eval\]\[Epoch 1\]\[Avg\]CELoss: [\d.]+, top1: [\d.]+, top5: [\d.]+$", rank0, re.MULTILINE)
    one = evals(tmp_path / "one")[-1]
    two = [json.loads(line) for line in (tmp_path / "log" / "evals.jsonl").read_text().splitlines()][-1]
    assert one["samples"] == two["samples"] == 31
    assert (two["top1"], two["top5"]) == (one["top1"], one["top5"])  # counts: exact
    assert two["CELoss"] == pytest.approx(one["CELoss"], rel=1e-6)  # float sums in another order


def test_eval_command_runs_the_full_protocol_and_prints_final_and_best(synth_data, pretrained, tmp_path):
    cmd = swavbench_cmd("eval", "-c", LP, "--profile", "cpu", "--pretrained", str(pretrained), "-o",
                        f"Global.output_dir={tmp_path}", "-o", "Global.epochs=2", "-o", "Global.max_train_step=1")
    for item in data_overrides(synth_data, 8):
        cmd += ["-o", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = proc.stdout.strip().splitlines()[-1]
    assert final.startswith("swavbench eval: final top-1 ") and "(epoch 2), best top-1" in final, final
    assert "32 eval images" in final and len(steps(tmp_path / "log")) == 2 * 16  # max_train_step was cleared


@pytest.mark.parametrize("case, exit_code, words", [
    ("missing_pretrained", 5, "Global.pretrained_model=/nonexistent/ckpt: no such file"),
    ("wrong_architecture", 5, "only 0/100 trunk tensors match"),  # resnet18 model, resnet_tiny file
    ("class_count", 3, "Model.class_num=1000 but DataLoader.Train.dataset.root="),
    ("subset_missing_image", 4, "image "),
    ("empty_subset", 4, "is empty"),
])
def test_bad_input_is_one_line_and_an_exit_code(synth_data, pretrained, tmp_path, case, exit_code, words):
    overrides = [*data_overrides(synth_data, 8), f"Global.pretrained_model={pretrained}"]
    config = LP
    if case == "missing_pretrained":
        overrides.append("Global.pretrained_model=/nonexistent/ckpt")
    elif case == "wrong_architecture":
        overrides.append("Model.backbone.type=resnet18")
    elif case == "class_count":
        overrides.append("Model.class_num=1000")
    else:
        subset = tmp_path / "subset.txt"
        first_class = sorted((synth_data / "train").iterdir())[0].name
        subset.write_text("" if case == "empty_subset" else f"{first_class}_999.JPEG\n")
        config, overrides = FT, [*data_overrides(synth_data, 8, finetune=True), f"Global.pretrained_model={pretrained}",
                                 f"DataLoader.Train.dataset.txt_file_name={subset}"]
    proc = run(config, tmp_path, *overrides, check=False)
    assert proc.returncode == exit_code, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower() and "warn" not in line.lower()]
    assert len(errors) == 1 and words in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    if case == "class_count":
        assert "has 8 classes" in errors[0] and "-o Model.class_num=8" in errors[0]


# ---- the key result: a short SwAV pre-train gives features a linear probe can use ------------------------------
# The synthetic classes are textures with a random palette per image (swavbench/train/synth.py): colour is a
# nuisance that SwAV's colour augmentation teaches the trunk to ignore. The random trunk is the one the short
# pre-train starts from (same seed, standard init: test below), so the difference is what pre-training added.


def test_random_probe_trunk_is_the_trunk_pretraining_starts_from():
    from swavbench.harness.pretrain_cache import SHORT_PRETRAIN_OVERRIDES
    from swavbench.train.classify import LinearProbe
    from swavbench.train.config import load_config
    from swavbench.train.model import build_pretrain_model
    from swavbench.train.runtime import seed_everything

    seed_everything(31)
    start = build_pretrain_model(load_config(PT, list(SHORT_PRETRAIN_OVERRIDES), profile="cpu")).state_dict()
    seed_everything(31)
    probe = LinearProbe("resnet_tiny", 10, zero_init_residual=False).state_dict()
    trunk = [k for k in probe if k.startswith("res_model.encoder.")]
    assert len(trunk) == 60
    for key in trunk:
        np.testing.assert_array_equal(probe[key].numpy(), start[key].numpy(), err_msg=key)


@pytest.mark.swavbench_slow
def test_probe_on_a_short_pretrain_beats_chance_and_a_random_trunk(tmp_path):
    from swavbench.harness.pretrain_cache import short_pretrain_overrides
    from swavbench.train.synth import synthesize

    data = tmp_path / "data"
    synthesize(data, classes=10, train_per_class=60, val_per_class=30, size=48, seed=0)
    prefix = pretrained_checkpoint(PT, "cpu", data, [*short_pretrain_overrides(600), "Global.print_batch_step=100"],
                                   tmp_path / "cache")
    log = (prefix.parent / "train.log").read_text()
    losses = [float(x) for x in re.findall(r"loss: ([\d.]+)", log)]
    assert losses[-1] < np.log(100) - 0.5, losses  # the codes are predicted: far below uniform (ln K)
    probe = [*data_overrides(data, 10), "Global.epochs=20", "Global.print_batch_step=100",
             "Global.eval_during_train=False"]
    run(LP, tmp_path / "pre", *probe, f"Global.pretrained_model={prefix}")
    run(LP, tmp_path / "init", *probe, "Global.pretrained_model=None", "Model.backbone.zero_init_residual=False")
    pre, init, chance = evals(tmp_path / "pre")[-1]["top1"], evals(tmp_path / "init")[-1]["top1"], 1 / 10
    print(f"linear probe top-1: pre-trained trunk {pre:.4f}, random trunk {init:.4f}, chance {chance}")
    assert pre >= 4 * chance, (pre, init)
    assert pre >= init + 0.15, (pre, init)  # measured 0.62 vs 0.32 (seed 31)
