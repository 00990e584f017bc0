"""The SwAV training core. `sinkhorn` and `swav_loss` are pure functions (see swav.py)."""

from swavbench.train.swav import sinkhorn, swav_loss

__all__ = ["sinkhorn", "swav_loss"]
