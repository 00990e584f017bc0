"""`Global.pretrained_model=PREFIX`: load a pre-trained ResNet trunk into a linear-probe / fine-tune model.

Accepted files (PASSL's convention gives the path without extension; `.pdparams` / `.npz` also work):
- a swavbench / PASSL checkpoint (`.pdparams`) whose trunk keys are `res_model.encoder.*` (pre-train,
  linear probe or fine-tune);
- a PyTorch-style ResNet state dict saved as numpy arrays (`.npz`) or `.pdparams`, with torchvision names
  (optional `module.` prefix, `conv1` / `bn1` / `layerN.M.*` / `downsample.{0,1}`, `running_mean` /
  `running_var`, `num_batches_tracked`, Linear weights [out, in]), e.g. the reference SwAV weights
  converted offline with `np.savez(out, **{k: v.numpy() for k, v in torch_state.items()})`.

Only the trunk is loaded, by exact key and shape. Every trunk tensor of the model must be found with its
shape: a missing file, or a checkpoint of another architecture, is a CheckpointError (exit 5), never a run
from (partly) random weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle

from swavbench.errors import CheckpointError

TRUNK_PREFIX = "res_model.encoder."
OURS_PREFIXES = ("res_model.", "linear.")  # keys of swavbench / PASSL SwAV models
TORCHVISION_TRUNK = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")


@dataclass(frozen=True)
class LoadReport:
    path: Path
    source_format: str  # "passl" | "torchvision"
    loaded: int  # trunk tensors loaded
    trunk_total: int  # trunk tensors of the model
    unused: int  # tensors of the file not loaded (heads, prototypes, classifier)

    def line(self) -> str:
        """The log line of a successful load."""
        converted = " (converted from torchvision-style names)" if self.source_format == "torchvision" else ""
        return (f"[swavbench] pretrained: loaded {self.loaded}/{self.trunk_total} trunk tensors from "
                f"{self.path}{converted}; {self.unused} other tensors not used")


def resolve_file(prefix: str, key: str = "Global.pretrained_model") -> Path:
    """The file of a prefix: PREFIX.pdparams, PREFIX.npz, or PREFIX itself when it has that extension."""
    given = Path(prefix)
    candidates = [given] if given.suffix in (".pdparams", ".npz") else []
    candidates += [Path(f"{prefix}.pdparams"), Path(f"{prefix}.npz")]
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in dict.fromkeys(candidates))
    raise CheckpointError(f"{key}={prefix}: no such file (tried {tried}); give the path without extension")


def read_state(path: Path, key: str = "Global.pretrained_model") -> dict[str, np.ndarray]:
    """name -> numpy array of a .pdparams or .npz file; CheckpointError when unreadable."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                state = {name: data[name] for name in data.files}
        else:
            state = paddle.load(str(path))
    except Exception as err:  # numpy / paddle raise many types for corrupt files
        raise CheckpointError(f"{key}: cannot read {path} ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{key}: {path} is not a state dict of named tensors")
    return {str(name): _to_numpy(value) for name, value in state.items() if not isinstance(value, (dict, str))}


def _to_numpy(value) -> np.ndarray:
    return value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)


def is_torchvision_style(state: dict) -> bool:
    """True when no key carries our (PASSL's) prefixes but some look like a torchvision ResNet's."""
    names = [k.removeprefix("module.") for k in state]
    if any(n.startswith(OURS_PREFIXES) for n in names):
        return False
    return any(n.startswith(TORCHVISION_TRUNK) for n in names)


def convert_torchvision(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """torchvision / reference-SwAV names -> PASSL names (`res_model.encoder.*`, head, prototypes).

    Drops `num_batches_tracked` and the torchvision classifier `fc.*`; renames BN buffers to `_mean` /
    `_variance`; transposes 2-D weights (Linear [out, in] -> Paddle's [in, out]). Unknown keys are dropped.
    """
    out = {}
    for name, value in state.items():
        name = name.removeprefix("module.")
        if name.endswith("num_batches_tracked"):
            continue
        name = name.replace(".running_mean", "._mean").replace(".running_var", "._variance")
        if name.endswith(".weight") and value.ndim == 2:
            value = np.ascontiguousarray(value.T)
        if name.startswith(TORCHVISION_TRUNK):
            out[TRUNK_PREFIX + name] = value
        elif name.startswith(("projection_head.", "prototypes.")):
            out["res_model." + name] = value
    return out


def load_pretrained(model: paddle.nn.Layer, prefix: str, key: str = "Global.pretrained_model") -> LoadReport:
    """Copy every `res_model.encoder.*` tensor of the file into `model` (in place); see the module doc."""
    path = resolve_file(prefix, key)
    state = read_state(path, key)
    source_format = "passl"
    if is_torchvision_style(state):
        state, source_format = convert_torchvision(state), "torchvision"
    targets = {name: t for name, t in model.state_dict().items() if name.startswith(TRUNK_PREFIX)}
    if not targets:
        raise ValueError("load_pretrained: the model has no res_model.encoder.* tensors")
    missing, mismatched, matched = [], [], {}
    for name, tensor in targets.items():
        if name not in state:
            missing.append(name)
        elif tuple(state[name].shape) != tuple(tensor.shape):
            mismatched.append(f"{name} {list(state[name].shape)} vs model {list(tensor.shape)}")
        else:
            matched[name] = state[name]
    if missing or mismatched:
        first = mismatched[0] if mismatched else f"{missing[0]} missing"
        raise CheckpointError(
            f"{key}={prefix}: only {len(matched)}/{len(targets)} trunk tensors match {path} "
            f"({len(mismatched)} of another shape, {len(missing)} missing; e.g. {first}): "
            "a checkpoint of another architecture? check Model.backbone.type"
        )
    for name, value in matched.items():
        tensor = targets[name]
        tensor.set_value(value.astype(np.dtype(str(tensor.dtype).removeprefix("paddle.")), copy=False))
    unused = len(state) - len(matched)
    return LoadReport(path, source_format, len(matched), len(targets), unused)
