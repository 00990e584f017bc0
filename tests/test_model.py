"""The SwAV model: shapes, PASSL key names, prototype normalisation, one trunk pass per resolution."""

import numpy as np
import paddle
import pytest

from swavbench.errors import ConfigError
from swavbench.train.model import BACKBONES, SwAVPretrain, build_backbone, normalize_prototypes


def _tiny(**kw):
    args = dict(backbone="resnet_tiny", hidden_mlp=64, output_dim=16, nmb_prototypes=30)
    args.update(kw)
    return SwAVPretrain(**args)


def test_backbones_by_name_and_feature_dims():
    assert set(BACKBONES) >= {"resnet50", "resnet18", "resnet_tiny"}
    assert build_backbone("resnet50").feature_dim == 2048
    assert build_backbone("resnet18").feature_dim == 512
    tiny = build_backbone("resnet_tiny")
    assert tiny(paddle.randn([2, 3, 32, 32])).shape == [2, tiny.feature_dim]
    with pytest.raises(ConfigError, match="Model.backbone.type"):
        build_backbone("resnet51")


def test_resnet50_head_and_prototypes_have_passl_names_and_shapes():
    state = SwAVPretrain(backbone="resnet50", hidden_mlp=2048, output_dim=128, nmb_prototypes=3000).state_dict()
    assert state["res_model.prototypes.weight"].shape == [128, 3000]
    assert state["res_model.projection_head.0.weight"].shape == [2048, 2048]
    assert state["res_model.projection_head.3.weight"].shape == [2048, 128]
    assert "res_model.projection_head.1._mean" in state
    assert "res_model.encoder.layer4.2.conv3.weight" in state
    assert "res_model.encoder.layer1.0.downsample.1._variance" in state
    assert not any(k.startswith("res_model.encoder.fc") for k in state)


def test_embeddings_are_l2_normalised_and_scores_have_k_columns():
    model = _tiny()
    crops = [paddle.randn([4, 3, 32, 32]) for _ in range(2)] + [paddle.randn([4, 3, 16, 16]) for _ in range(3)]
    z, scores = model(crops)
    assert z.shape == [20, 16] and scores.shape == [20, 30]
    np.testing.assert_allclose(np.linalg.norm(z.numpy(), axis=1), 1.0, rtol=1e-5)


def test_prototypes_normalised_along_columns():
    model = _tiny()
    model.res_model.prototypes.weight.set_value(paddle.randn([16, 30]) * 3)
    normalize_prototypes(model)
    np.testing.assert_allclose(np.linalg.norm(model.res_model.prototypes.weight.numpy(), axis=0), 1.0, rtol=1e-5)


def test_crops_of_one_resolution_go_through_the_trunk_in_one_pass():
    model = _tiny()
    calls = []
    model.res_model.encoder.register_forward_post_hook(lambda layer, inp, out: calls.append(inp[0].shape))
    crops = [paddle.randn([4, 3, 32, 32]) for _ in range(2)] + [paddle.randn([4, 3, 16, 16]) for _ in range(6)]
    model(crops)
    assert calls == [[8, 3, 32, 32], [24, 3, 16, 16]]


def test_zero_init_residual_zeroes_last_bn_of_each_block():
    model = _tiny(zero_init_residual=True)
    assert float(model.res_model.encoder.layer1[0].bn2.weight.abs().sum()) == 0.0
    assert float(model.res_model.encoder.bn1.weight.sum()) > 0
