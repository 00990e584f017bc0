"""LARC, the LR schedule and prototype freezing against hand-computed values."""

import math

import numpy as np
import paddle
import pytest

from swavbench.train.optim import DynamicLossScaler, LARCMomentum, build_lr_schedule, cosine_lr, multistep_lr


def test_cosine_schedule_without_warmup_matches_hand_values():
    # batch-256 setting: cosine 0.6 -> 0.0006 over all iterations
    assert cosine_lr(0, 100, 0.6, 0.0006) == pytest.approx(0.6)
    assert cosine_lr(50, 100, 0.6, 0.0006) == pytest.approx(0.0006 + 0.5 * (0.6 - 0.0006))
    assert cosine_lr(25, 100, 0.6, 0.0006) == pytest.approx(0.0006 + 0.5 * 0.5994 * (1 + math.cos(math.pi / 4)))
    assert cosine_lr(99, 100, 0.6, 0.0006) == pytest.approx(0.0006 + 0.5 * 0.5994 * (1 + math.cos(math.pi * 0.99)))


def test_warmup_is_numpy_linspace_then_cosine():
    # batch-4096 setting: 0.3 -> 4.8 over the warm-up iterations (both ends included), then cosine
    warm = np.linspace(0.3, 4.8, 10)
    for step in range(10):
        assert cosine_lr(step, 40, 4.8, 0.0048, 10, 0.3) == pytest.approx(warm[step])
    assert cosine_lr(10, 40, 4.8, 0.0048, 10, 0.3) == pytest.approx(4.8)
    assert cosine_lr(25, 40, 4.8, 0.0048, 10, 0.3) == pytest.approx(0.0048 + 0.5 * (4.8 - 0.0048))


def test_build_schedule_from_passl_section_is_per_iteration():
    lr = build_lr_schedule({"name": "TimmCosine", "learning_rate": 4.8, "eta_min": 0.0048,
                            "warmup_epoch": 2, "warmup_start_lr": 0.3}, iters_per_epoch=5, epochs=6)
    assert lr(0, 0) == pytest.approx(0.3)
    assert lr(9, 1) == pytest.approx(4.8)
    assert lr(10, 2) == pytest.approx(4.8)
    assert lr(20, 4) == pytest.approx(0.0048 + 0.5 * (4.8 - 0.0048))


def test_multistep_decay():
    assert [multistep_lr(e, 0.02, [12, 16], 0.2) for e in (0, 11, 12, 15, 16, 19)] == pytest.approx(
        [0.02, 0.02, 0.004, 0.004, 0.0008, 0.0008])


def _param(values, grad, name="w"):
    p = paddle.create_parameter([len(values)], "float32",
                                default_initializer=paddle.nn.initializer.Assign(np.array(values, "float32")))
    p.stop_gradient = False
    (p * paddle.to_tensor(np.array(grad, "float32"))).sum().backward()  # d/dp = grad
    return name, p


def test_larc_step_matches_hand_computation():
    name, p = _param([3.0, 4.0], [0.6, 0.8])  # ||p|| = 5, ||g|| = 1
    opt = LARCMomentum([(name, p)], momentum=0.9, weight_decay=0.1, trust_coefficient=0.001)
    opt.step(lr=2.0)
    local_lr = 0.001 * 5 / (1 + 0.1 * 5 + 1e-8)
    g1 = local_lr * (np.array([0.6, 0.8]) + 0.1 * np.array([3.0, 4.0]))
    p1 = np.array([3.0, 4.0]) - 2.0 * g1
    np.testing.assert_allclose(p.numpy(), p1, rtol=1e-6)
    # second step: same raw gradient, momentum buffer 0.9 * g1 + g2
    opt.step(lr=1.0)
    local2 = 0.001 * np.linalg.norm(p1) / (1 + 0.1 * np.linalg.norm(p1) + 1e-8)
    g2 = local2 * (np.array([0.6, 0.8]) + 0.1 * p1)
    np.testing.assert_allclose(p.numpy(), p1 - 1.0 * (0.9 * g1 + g2), rtol=1e-6)


def test_larc_uses_raw_gradient_without_decay_when_a_norm_is_zero():
    name, p = _param([0.0, 0.0], [1.0, 2.0])
    opt = LARCMomentum([(name, p)], momentum=0.9, weight_decay=0.1, trust_coefficient=0.001)
    opt.step(lr=0.5)
    np.testing.assert_allclose(p.numpy(), [-0.5, -1.0], rtol=1e-6)


def test_larc_clip_caps_local_lr_at_one_over_lr():
    name, p = _param([3.0, 4.0], [0.6, 0.8])
    opt = LARCMomentum([(name, p)], momentum=0.0, weight_decay=0.0, trust_coefficient=10.0, clip=True)
    opt.step(lr=0.1)  # local 10 * 5 / 1 = 50 -> min(50 / 0.1, 1) = 1 -> plain SGD
    np.testing.assert_allclose(p.numpy(), [3.0 - 0.06, 4.0 - 0.08], rtol=1e-6)


def test_frozen_parameters_get_no_update_no_momentum_no_decay():
    name, p = _param([3.0, 4.0], [0.6, 0.8], name="res_model.prototypes.weight")
    opt = LARCMomentum([(name, p)], momentum=0.9, weight_decay=0.1)
    opt.step(lr=1.0, frozen={name})
    np.testing.assert_array_equal(p.numpy(), [3.0, 4.0])
    assert p.grad is None  # dropped, as the reference sets p.grad = None
    # unfrozen: the first update is a fresh one (no momentum carried from the frozen steps)
    (p * paddle.to_tensor(np.array([0.6, 0.8], "float32"))).sum().backward()
    opt.step(lr=1.0, frozen=None)
    local_lr = 0.001 * 5 / (1 + 0.1 * 5 + 1e-8)
    np.testing.assert_allclose(p.numpy(), np.array([3.0, 4.0]) - local_lr * np.array([0.9, 1.2]), rtol=1e-6)


def test_loss_scaler_skips_overflow_and_backs_off():
    name, p = _param([1.0], [float("inf")])
    scaler = DynamicLossScaler(True, init_loss_scaling=8.0, incr_every_n_steps=2, decr_every_n_nan_or_inf=1)
    assert scaler.unscale_and_check([p]) is False and scaler.scale == 4.0
    scaler.update(True)
    scaler.update(True)
    assert scaler.scale == 8.0
    off = DynamicLossScaler(False)
    assert off.scale == 1.0 and off.unscale_and_check([p]) is True
