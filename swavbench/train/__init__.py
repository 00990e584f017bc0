"""The SwAV training core. `sinkhorn` and `swav_loss` are pure functions (see swav.py).

Imported lazily, so that `import swavbench.train.<light module>` does not load paddle.
"""

from typing import Any

__all__ = ["sinkhorn", "swav_loss"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from swavbench.train import swav

        return getattr(swav, name)
    raise AttributeError(f"module 'swavbench.train' has no attribute {name!r}")


# What this build's trainer can run (the harness skips cases that need more, and says why).
CAPABILITIES = ("pretrain", "classification")
