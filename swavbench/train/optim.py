"""Optimisation: LR schedules as plain functions, LARC-wrapped momentum SGD, dynamic loss scaling."""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Sequence

import paddle

from swavbench.errors import ConfigError


# ---------------------------------------------------------------------------------------------------------
# Schedules (pure)
# ---------------------------------------------------------------------------------------------------------
def cosine_lr(step: int, total_steps: int, base_lr: float, final_lr: float,
              warmup_steps: int = 0, warmup_start_lr: float = 0.0) -> float:
    """The reference SwAV per-iteration schedule: np.linspace warm-up, then cosine from base to final.

    Warm-up step i of n is warmup_start_lr + (base_lr - warmup_start_lr) * i / (n - 1) (linspace includes
    both ends); then for t = step - warmup_steps of T = total_steps - warmup_steps:
    final_lr + 0.5 * (base_lr - final_lr) * (1 + cos(pi * t / T)).
    """
    if step < warmup_steps:
        if warmup_steps == 1:
            return float(warmup_start_lr)
        return warmup_start_lr + (base_lr - warmup_start_lr) * step / (warmup_steps - 1)
    t, span = step - warmup_steps, max(total_steps - warmup_steps, 1)
    return final_lr + 0.5 * (base_lr - final_lr) * (1 + math.cos(math.pi * t / span))


def multistep_lr(epoch: int, base_lr: float, milestones: Sequence[int], gamma: float) -> float:
    """base_lr * gamma ** (number of milestones <= epoch), epoch 0-based (PASSL MultiStepDecay)."""
    return base_lr * gamma ** sum(1 for m in milestones if epoch >= m)


def build_lr_schedule(sched: dict, iters_per_epoch: int, epochs: int,
                      unit: str = "step") -> Callable[[int, int], float]:
    """lr(global_step, epoch0) from an Optimizer.LRScheduler (or .lr) section."""
    name = sched.get("name", "TimmCosine")
    base = float(sched.get("learning_rate", 0.1))
    if name in ("TimmCosine", "Cosine", "CosineDecay"):
        final = float(sched.get("eta_min", 0.0))
        warm_epochs = float(sched.get("warmup_epoch", 0) or 0)
        start = float(sched.get("warmup_start_lr", 0.0) or 0.0)
        if unit == "epoch":
            return lambda step, epoch: cosine_lr(epoch, epochs, base, final, int(warm_epochs), start)
        total, warm = iters_per_epoch * epochs, int(round(iters_per_epoch * warm_epochs))
        return lambda step, epoch: cosine_lr(step, total, base, final, warm, start)
    if name == "MultiStepDecay":
        milestones, gamma = list(sched.get("milestones", [])), float(sched.get("gamma", 0.1))
        return lambda step, epoch: multistep_lr(epoch, base, milestones, gamma)
    raise ConfigError(f"Optimizer.LRScheduler.name: unknown schedule {name!r} (TimmCosine, MultiStepDecay)")


# ---------------------------------------------------------------------------------------------------------
# LARC-wrapped SGD with momentum (reference: apex LARC around torch SGD, clip off)
# ---------------------------------------------------------------------------------------------------------
class LARCMomentum:
    """Momentum SGD whose gradients are rescaled per parameter by LARC (apex LARC around torch SGD).

    Per parameter with ||p|| > 0 and ||g|| > 0:
        local_lr = trust * ||p|| / (||g|| + wd * ||p|| + eps);  g <- local_lr * (g + wd * p)
    (with clip: local_lr <- min(local_lr / lr, 1)); otherwise g is used raw, without weight decay.
    Then paddle's fused momentum: v <- momentum * v + g;  p <- p - lr * v (torch SGD, dampening 0).
    Parameters named in `frozen` have their gradient dropped: no update, no momentum, no decay (this is
    how prototypes are frozen). Without LARC (`larc=False`) weight decay is plain L2 added to g.
    """

    def __init__(self, named_params: Iterable[tuple[str, paddle.Tensor]], momentum: float = 0.9,
                 weight_decay: float = 1e-6, trust_coefficient: float = 0.001, clip: bool = False,
                 eps: float = 1e-8, larc: bool = True) -> None:
        self.params = [(name, p) for name, p in named_params if not p.stop_gradient]
        self.weight_decay, self.trust, self.clip, self.eps, self.larc = (
            weight_decay, trust_coefficient, clip, eps, larc)
        self.inner = paddle.optimizer.Momentum(
            learning_rate=0.1, momentum=momentum, parameters=[p for _, p in self.params],
            weight_decay=None if larc or not weight_decay else float(weight_decay),
        )

    @paddle.no_grad()
    def _apply_larc(self, live: list[paddle.Tensor], lr: float) -> None:
        # all squared norms in one host transfer (one sync on GPU), then in-place rescaling
        squares = paddle.stack([paddle.stack([(p * p).sum(), (p.grad * p.grad).sum()]) for p in live])
        norms = squares.astype("float64").numpy() ** 0.5
        for (p_norm, g_norm), p in zip(norms, live):
            if p_norm == 0 or g_norm == 0:
                continue  # raw gradient, no weight decay
            local_lr = self.trust * p_norm / (g_norm + self.weight_decay * p_norm + self.eps)
            if self.clip:
                local_lr = min(local_lr / lr, 1.0)
            grad = p.grad
            grad.scale_(float(local_lr))
            if self.weight_decay:
                grad.add_(p.scale(float(local_lr * self.weight_decay)).astype(grad.dtype))

    @paddle.no_grad()
    def step(self, lr: float, frozen: Optional[set] = None) -> None:
        """One update at learning rate `lr`; parameters whose names are in `frozen` are left untouched."""
        live = []
        for name, p in self.params:
            if p.grad is None:
                continue
            if frozen and name in frozen:
                p.clear_gradient(False)  # no gradient: paddle's optimizer skips the parameter entirely
                continue
            live.append(p)
        if self.larc and live:
            self._apply_larc(live, lr)
        self.inner.set_lr(lr)
        self.inner.step()

    def clear_grad(self) -> None:
        self.inner.clear_grad(set_to_zero=False)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def set_state_dict(self, state: dict) -> None:
        self.inner.set_state_dict(state)


# ---------------------------------------------------------------------------------------------------------
# Dynamic loss scaling (fp16 O1 on GPU). Disabled (a no-op) when the run is fp32.
# ---------------------------------------------------------------------------------------------------------
class DynamicLossScaler:
    """Scale the loss, unscale grads, skip steps with inf/nan grads, halve on overflow, grow when stable."""

    def __init__(self, enabled: bool, init_scale: float = 65536.0, growth_interval: int = 2000,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5) -> None:
        self.enabled, self.scale = enabled, float(init_scale) if enabled else 1.0
        self.growth_interval, self.growth, self.backoff = growth_interval, growth_factor, backoff_factor
        self.good_steps = 0

    def scale_loss(self, loss: paddle.Tensor) -> paddle.Tensor:
        return loss * self.scale if self.enabled else loss

    @paddle.no_grad()
    def unscale_and_check(self, params: Sequence[paddle.Tensor]) -> bool:
        """Divide grads by the scale; True when every grad is finite (the step may be taken)."""
        if not self.enabled:
            return True
        finite = []
        for p in params:
            if p.grad is not None:
                p.grad.scale_(1.0 / self.scale)
                finite.append(paddle.isfinite(p.grad).all())
        ok = bool(paddle.stack(finite).all().item()) if finite else True
        self.update(ok)
        return ok

    def update(self, ok: bool) -> None:
        if not ok:
            self.scale *= self.backoff
            self.good_steps = 0
            return
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= self.growth
            self.good_steps = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "good_steps": self.good_steps, "enabled": self.enabled}

    def set_state_dict(self, state: dict) -> None:
        self.scale, self.good_steps = float(state["scale"]), int(state["good_steps"])
