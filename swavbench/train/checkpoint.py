"""Checkpoints in PASSL's layout: `<output_dir>/<Model.name>/{latest,epoch_N}.{pdparams,pdopt,pdstates}`.

.pdparams: the model state_dict (PASSL key names); .pdopt: optimizer state (momentum buffers by parameter
name) and the loss scaler; .pdstates: {"epoch", "global_step", "iter_in_epoch", "metrics"}. A prefix is the
path without extension (PASSL's convention for Global.checkpoint / Global.pretrained_model).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import paddle

from swavbench.errors import CheckpointError

EXTENSIONS = (".pdparams", ".pdopt", ".pdstates")


def checkpoint_dir(config: dict) -> Path:
    """`<Global.output_dir>/<Model.name>`."""
    output_dir = (config.get("Global") or {}).get("output_dir") or "./output"
    name = (config.get("Model") or {}).get("name") or "model"
    return Path(output_dir) / name


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    paddle.save(obj, str(tmp))
    os.replace(tmp, path)


def save_checkpoint(directory: Path, prefix: str, model_state: dict, optimizer_state: dict,
                    states: dict) -> Path:
    """Write the three files of one checkpoint (each atomically); returns the prefix path."""
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / prefix
    _atomic_save(model_state, base.with_suffix(".pdparams"))
    _atomic_save(optimizer_state, base.with_suffix(".pdopt"))
    _atomic_save(states, base.with_suffix(".pdstates"))
    return base


def strip_extension(prefix: str) -> str:
    for ext in EXTENSIONS:
        if prefix.endswith(ext):
            return prefix[: -len(ext)]
    return prefix


def load_checkpoint(prefix: str, key: str = "Global.checkpoint") -> tuple[dict, Optional[dict], dict]:
    """(model_state, optimizer_state or None, states) of a checkpoint prefix; CheckpointError if missing."""
    base = strip_extension(str(prefix))
    params = Path(base + ".pdparams")
    if not params.is_file():
        raise CheckpointError(f"{key}={prefix}: {params} not found (give the path without extension)")
    try:
        model_state = paddle.load(str(params))
        opt_path, states_path = Path(base + ".pdopt"), Path(base + ".pdstates")
        optimizer_state = paddle.load(str(opt_path)) if opt_path.is_file() else None
        states = paddle.load(str(states_path)) if states_path.is_file() else {}
    except Exception as err:  # paddle raises various types for corrupt files
        raise CheckpointError(f"{key}={prefix}: cannot read checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(model_state, dict):
        raise CheckpointError(f"{key}={prefix}: {params} is not a state dict")
    return model_state, optimizer_state, states


def queue_path(directory: Path, prefix: str, rank: int) -> Path:
    """Each rank's queue (the reference saves queue<rank>.pth per rank)."""
    return directory / f"{prefix}.queue{rank}.pdqueue"
