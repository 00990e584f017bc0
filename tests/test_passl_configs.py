"""PASSL's four SwAV configs (tasks/ssl/swav/configs at PASSL 5c7359b, checked in as fixtures) load and run
unchanged: PASSL's key names, its `lr` spelling, its fine-tune `param_groups`, its queue length."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from swavbench.errors import ConfigError
from swavbench.train.classify import Finetune, GroupedMomentum, param_groups
from swavbench.train.config import CONFIG_DIR, class_count, load_config, lr_decay_unit, subset_path
from swavbench.train.loop import queue_length_per_rank
from swavbench.train.optim import build_lr_schedule
from tests.conftest import clean_env, swavbench_cmd

PASSL = Path(__file__).parent / "fixtures" / "passl-5c7359b"
PT, PT4 = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1", "swav_resnet50_224_pt_in1k_4n32c_dp_fp16o1"
LP, FT = "swav_resnet50_224_lp_in1k_1n8c_dp_fp32", "swav_resnet50_224_ft_in1k_1n4c_dp_fp32"
HEAD = "res_model.projection_head"


@pytest.mark.parametrize("name", [PT, PT4, LP, FT])
def test_passl_config_loads_unchanged_and_is_the_one_the_cases_run(name):
    text = (PASSL / f"{name}.yaml").read_text()
    assert (CONFIG_DIR / f"{name}.yaml").read_text() == text  # the packaged config is PASSL's file
    config = load_config(PASSL / f"{name}.yaml")
    cpu = load_config(PASSL / f"{name}.yaml", profile="cpu")  # the CPU profile scales it
    assert cpu["Global"]["device"] == "cpu" and "LRScheduler" not in cpu["Optimizer"]  # its lr keys go to `lr`
    if name == LP:
        assert class_count(config, finetune=False) == ("Model.class_num", 1000)
    if name == FT:
        assert class_count(config, finetune=True) == ("Model.backbone.output_dim", 1000)
        assert config["Optimizer"]["param_groups"][0]["name"] == HEAD
        assert subset_path(config["DataLoader"]["Train"]["dataset"]) == Path("./dataset/ILSVRC2012/10percent.txt")
    assert lr_decay_unit(config["Optimizer"]) == ("epoch" if name in (LP, FT) else "step")


def test_queue_length_is_rounded_as_the_reference_does():
    # PASSL's 3804 and the reference's 3840 both round down to 7 x 512 = 3584 at 8 ranks x 64
    assert queue_length_per_rank(3804, 64, 8) == queue_length_per_rank(3840, 64, 8) == 3584 // 8
    assert queue_length_per_rank(0, 64, 8) == 0
    with pytest.raises(ConfigError, match="shorter than one global batch"):
        queue_length_per_rank(100, 64, 8)


def test_schedule_overrides_go_to_the_spelling_the_config_uses():
    config = load_config(PASSL / f"{PT}.yaml", ["Optimizer.LRScheduler.learning_rate=0.1"])
    assert config["Optimizer"]["lr"]["learning_rate"] == 0.1 and "LRScheduler" not in config["Optimizer"]
    ours = load_config(PASSL / f"{PT}.yaml", ["Optimizer.lr.eta_min=0.5"])
    assert ours["Optimizer"]["lr"]["eta_min"] == 0.5


@pytest.mark.parametrize("overrides, words", [
    (["Optimizer.param_groups=[{'name': 'res_model.prototypes', 'lr': 0.1}]"], "pre-train trains every parameter"),
    (["FP16.dtype=float64"], "not an auto_cast dtype"),
])
def test_keys_that_would_be_ignored_are_refused(overrides, words):
    with pytest.raises(ConfigError, match=words):
        load_config(PASSL / f"{PT}.yaml", overrides)


def test_both_spellings_of_the_class_count_must_agree():
    lp = load_config(PASSL / f"{LP}.yaml", ["Model.num_classes=10"])
    with pytest.raises(ConfigError, match="Model.class_num=1000 and Model.num_classes=10 differ"):
        class_count(lp, finetune=False)
    assert class_count(load_config(PASSL / f"{LP}.yaml", ["Model.num_classes=1000"]), False)[1] == 1000


def test_param_groups_give_the_head_its_own_lr():
    config = load_config(PASSL / f"{FT}.yaml")
    opt = config["Optimizer"]
    model = Finetune("resnet18", 10)
    groups, shown = param_groups(list(model.named_parameters()), opt, opt["lr"])
    assert list(groups) == [HEAD, "default"] and shown == HEAD  # PASSL logs group 0's lr: the head's
    head, trunk = groups[HEAD][0], groups["default"][0]
    assert len(head) == 2 and len(trunk) == len([p for p in model.parameters() if not p.stop_gradient]) - 2
    lrs = {g: build_lr_schedule(s, 10, 20, "epoch") for g, (_, s) in groups.items()}
    assert [lrs[HEAD](0, e) for e in (0, 12, 16)] == pytest.approx([5.0, 1.0, 0.2])
    assert [lrs["default"](0, e) for e in (0, 12, 16)] == pytest.approx([0.02, 0.004, 0.0008])
    # one step: each group moves at its own lr (grad 1 everywhere, no momentum yet)
    opt_ = GroupedMomentum({g: p for g, (p, _) in groups.items()}, 0.9, 0.0)
    before = {id(p): p.numpy().copy() for p in model.parameters()}
    sum(p.sum() for p in model.parameters()).backward()
    opt_.step({g: lrs[g](0, 0) for g in groups})
    np.testing.assert_allclose(head[0].numpy(), before[id(head[0])] - 5.0, rtol=1e-5)
    np.testing.assert_allclose(trunk[0].numpy(), before[id(trunk[0])] - 0.02, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("entry, words", [
    ({"name": "res_model.nothing", "lr": 0.1}, "matches no trainable parameter"),
    ({"name": HEAD, "lr": 0.1, "weight_decay": 0.1}, "weight_decay: not applied by this trainer"),
    ({"name": "res_model.(", "lr": 0.1}, "not a regular expression"),
])
def test_param_groups_this_trainer_cannot_apply_are_refused(entry, words):
    with pytest.raises(ConfigError, match=words):
        param_groups(list(Finetune("resnet18", 10).named_parameters()), {"param_groups": [entry]}, {})


def _train(config: Path, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = swavbench_cmd("train", "-c", str(config), "--profile", "cpu", "-o", f"Global.output_dir={out}",
                        "-o", "Global.print_batch_step=1", "-o", "Global.max_train_step=2")
    for item in overrides:
        cmd += ["-o", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_passl_fine_tune_config_trains_with_its_head_group(synth_data, tmp_path):
    proc = _train(PASSL / f"{FT}.yaml", tmp_path, f"DataLoader.Train.dataset.root={synth_data / 'train'}",
                  f"DataLoader.Eval.dataset.root={synth_data / 'val'}",
                  f"DataLoader.Train.dataset.txt_file_name={synth_data / '10percent.txt'}",
                  "Model.backbone.output_dim=8", "Global.pretrained_model=null")
    header = json.loads((tmp_path / "run_header.json").read_text())
    groups = header["param_groups"]
    assert set(groups) == {HEAD, "default"} and groups[HEAD]["tensors"] == 2
    # PASSL's head 5 and trunk 0.02, each x the CPU profile's batch ratio (8 / 128: its `derive:` rules)
    assert groups[HEAD]["schedule"]["learning_rate"] == 0.3125
    assert groups["default"]["schedule"]["learning_rate"] == 0.00125
    assert "[Iter: 0/" in proc.stdout and "lr: 0.312500, top1:" in proc.stdout  # PASSL shows group 0's lr


def test_passl_linear_probe_config_trains(synth_data, tmp_path):
    _train(PASSL / f"{LP}.yaml", tmp_path, f"DataLoader.Train.dataset.root={synth_data / 'train'}",
           f"DataLoader.Eval.dataset.root={synth_data / 'val'}", "Model.class_num=8", "Global.pretrained_model=null")
    header = json.loads((tmp_path / "run_header.json").read_text())
    assert header["num_classes"] == 8 and list(header["param_groups"]) == ["default"]
