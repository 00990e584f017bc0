"""Speed changes to the training step that must not change a single bit of what it computes (issue 16)."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from swavbench.train import optim
from swavbench.train.config import load_config
from swavbench.train.model import build_pretrain_model
from swavbench.train.optim import LARCMomentum, sum_of_squares

PT = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"
R50 = ["Model.backbone.type=resnet50", "Model.backbone.hidden_mlp=2048", "Model.backbone.output_dim=128",
       "Model.backbone.nmb_prototypes=3000"]


@pytest.mark.parametrize("overrides", [[], R50], ids=["cpu-profile", "resnet50"])
def test_sum_of_squares_has_the_bits_of_the_plain_expression_on_every_parameter(overrides):
    paddle.set_device("cpu")
    paddle.seed(3)
    model = build_pretrain_model(load_config(PT, overrides, "cpu"))
    rng = np.random.default_rng(0)
    with paddle.no_grad():
        for name, p in model.named_parameters():
            grad_like = paddle.to_tensor(rng.normal(0, 1e-3, p.shape).astype("float32"))
            for x in (p, grad_like):
                fast, plain = sum_of_squares(x), (x * x).sum()
                assert fast.shape == plain.shape == []
                assert fast.numpy().tobytes() == plain.numpy().tobytes(), name


def _parameters_after_two_steps() -> list[np.ndarray]:
    paddle.set_device("cpu")
    paddle.seed(5)
    model = build_pretrain_model(load_config(PT, [], "cpu"))
    opt = LARCMomentum(list(model.named_parameters()))
    crops = [paddle.to_tensor(np.random.default_rng(i).normal(size=(4, 3, s, s)).astype("float32"))
             for i, s in enumerate([32, 32, 16, 16])]
    for _ in range(2):
        _, scores = model(crops)
        scores.square().mean().backward()
        opt.step(0.6, None)
        opt.clear_grad()
    return [p.numpy() for p in model.parameters()]


def test_larc_step_is_unchanged_bit_for_bit(monkeypatch):
    """Two LARC steps with sum_of_squares give the parameters two steps with (p * p).sum() give."""
    fast = _parameters_after_two_steps()
    monkeypatch.setattr(optim, "sum_of_squares", lambda x: (x * x).sum())
    plain = _parameters_after_two_steps()
    assert len(fast) == len(plain) and all(a.tobytes() == b.tobytes() for a, b in zip(fast, plain))
