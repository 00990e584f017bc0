"""Loading pre-trained trunks (PASSL keys, torchvision-style numpy / pdparams) and the pre-train cache."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from swavbench.errors import CheckpointError, RunFailed
from swavbench.harness.pretrain_cache import cache_key, pretrained_checkpoint
from swavbench.train.classify import Finetune, LinearProbe
from swavbench.train.model import SwAVPretrain
from swavbench.train.pretrained import convert_torchvision, load_pretrained, resolve_file

PT = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"


def pretrain_state(backbone: str, seed: int = 5) -> dict[str, np.ndarray]:
    """A pre-train model's state (PASSL keys) with non-trivial BN statistics."""
    paddle.seed(seed)
    model = SwAVPretrain(backbone=backbone, hidden_mlp=32, output_dim=16, nmb_prototypes=20)
    rng = np.random.default_rng(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        value = tensor.numpy()
        if name.endswith(("_mean", "_variance")):
            value = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        state[name] = value
    return state


def torchvision_style(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the reference SwAV's torch state dict looks like: `module.` prefix, torch BN names, [out, in]."""
    out = {}
    for name, value in state.items():
        name = name.removeprefix("res_model.").removeprefix("encoder.")
        name = name.replace("._mean", ".running_mean").replace("._variance", ".running_var")
        if value.ndim == 2:  # paddle Linear [in, out] -> torch [out, in]
            value = value.T.copy()
        out["module." + name] = value
        if name.endswith("running_var"):
            out["module." + name.replace("running_var", "num_batches_tracked")] = np.array(7, np.int64)
    out["module.fc.weight"] = np.zeros((1000, 128), np.float32)  # a torchvision classifier: ignored
    return out


def trunk(model) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items() if k.startswith("res_model.encoder.")}


@pytest.mark.parametrize("backbone", ["resnet_tiny", "resnet18"])
def test_torchvision_state_dict_converts_back_to_passl_names(backbone):
    ours = pretrain_state(backbone)
    theirs = torchvision_style(ours)
    assert "module.layer2.0.downsample.1.running_mean" in theirs and "module.prototypes.weight" in theirs
    back = convert_torchvision(theirs)
    assert set(back) == set(ours)  # num_batches_tracked and fc.* dropped, everything else renamed
    for name, value in ours.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


@pytest.mark.parametrize("ext", [".npz", ".pdparams"])
def test_torchvision_file_loads_into_the_probe_trunk(tmp_path, ext):
    ours = pretrain_state("resnet_tiny")
    path = tmp_path / f"swav_torch{ext}"
    theirs = torchvision_style(ours)
    np.savez(path, **theirs) if ext == ".npz" else paddle.save(theirs, str(path))
    model = LinearProbe("resnet_tiny", 10)
    report = load_pretrained(model, str(tmp_path / "swav_torch"))  # PASSL convention: no extension
    assert report.source_format == "torchvision" and report.loaded == report.trunk_total == 60
    assert "loaded 60/60 trunk tensors" in report.line() and "converted from torchvision" in report.line()
    loaded = trunk(model)
    for name, value in loaded.items():
        np.testing.assert_array_equal(value, ours[name], err_msg=name)


def test_passl_checkpoint_loads_trunk_only_by_exact_key(tmp_path):
    ours = pretrain_state("resnet_tiny")
    paddle.save(ours, str(tmp_path / "latest.pdparams"))
    model = Finetune("resnet_tiny", 10)
    head_before = model.res_model.projection_head.weight.numpy().copy()
    report = load_pretrained(model, str(tmp_path / "latest.pdparams"))  # with the extension works too
    assert report.source_format == "passl" and report.loaded == 60
    assert report.unused == len(ours) - 60  # projection head + prototypes of the pre-train
    assert all(np.array_equal(v, ours[k]) for k, v in trunk(model).items())
    np.testing.assert_array_equal(model.res_model.projection_head.weight.numpy(), head_before)


def test_missing_file_names_the_key_and_the_paths_tried(tmp_path):
    with pytest.raises(CheckpointError) as err:
        resolve_file(str(tmp_path / "nothing"))
    message = str(err.value)
    assert "Global.pretrained_model=" in message and "nothing.pdparams" in message and "nothing.npz" in message
    assert err.value.exit_code == 5 and "\n" not in message


def test_checkpoint_of_another_architecture_fails_instead_of_loading_nothing(tmp_path):
    paddle.save(pretrain_state("resnet18"), str(tmp_path / "r18.pdparams"))
    with pytest.raises(CheckpointError) as err:
        load_pretrained(LinearProbe("resnet_tiny", 10), str(tmp_path / "r18"))
    assert "only 0/60 trunk tensors match" in str(err.value) and "another architecture" in str(err.value)


def test_partly_matching_checkpoint_fails_too(tmp_path):
    state = pretrain_state("resnet_tiny")
    del state["res_model.encoder.layer4.0.bn2._variance"]
    paddle.save(state, str(tmp_path / "partial.pdparams"))
    with pytest.raises(CheckpointError, match=r"only 59/60 .* 1 missing"):
        load_pretrained(LinearProbe("resnet_tiny", 10), str(tmp_path / "partial"))


def test_unreadable_file_is_a_checkpoint_error(tmp_path):
    (tmp_path / "junk.pdparams").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_pretrained(LinearProbe("resnet_tiny", 10), str(tmp_path / "junk"))


# ---- the pre-train cache -----------------------------------------------------------------------------------
def test_cache_key_follows_overrides_and_data(synth_data, tmp_path):
    base = cache_key(PT, "cpu", synth_data, ["Global.epochs=1"])
    assert base == cache_key(PT, "cpu", synth_data, ["Global.epochs=1"])
    assert base != cache_key(PT, "cpu", synth_data, ["Global.epochs=2"])
    (tmp_path / "train" / "n1").mkdir(parents=True)
    (tmp_path / "train" / "n1" / "n1_0.JPEG").write_bytes(b"x")
    assert base != cache_key(PT, "cpu", tmp_path, ["Global.epochs=1"])


def test_cache_builds_once_and_a_failed_build_leaves_nothing(synth_data, tmp_path):
    cache = tmp_path / "cache"
    prefix = pretrained_checkpoint(PT, "cpu", synth_data, ["Global.max_train_step=2"], cache)
    assert prefix.name == "latest" and prefix.with_suffix(".pdparams").is_file()
    assert (prefix.parent / "cache.json").is_file() and not (prefix.parent / "run").exists()
    stamp = prefix.with_suffix(".pdparams").stat().st_mtime_ns
    again = pretrained_checkpoint(PT, "cpu", synth_data, ["Global.max_train_step=2"], cache)
    assert again == prefix and again.with_suffix(".pdparams").stat().st_mtime_ns == stamp
    with pytest.raises(RunFailed) as err:
        pretrained_checkpoint(PT, "cpu", synth_data, ["Model.epsilonn=1"], cache)
    assert err.value.kind == "pretrain_failed" and "Model.epsilonn" in str(err.value)
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".") or p.is_dir()) == [prefix.parent.name]
