"""PASSL-compatible configs: safe YAML load, `-o Section.key=value` overrides, profiles, validation.

A config is plain data (nested dicts). `load_config` returns it validated against SCHEMA: an unknown key
or a value of the wrong type is a `ConfigError` naming the dotted key and the file, e.g.
`configs/x.yaml: Model.epsilonn: unknown key (did you mean Model.epsilon?)`.
"""

from __future__ import annotations

import ast
import copy
import difflib
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

from swavbench.errors import ConfigError
from swavbench.resources import CONFIG_DIR  # package data (importlib.resources)

# ---------------------------------------------------------------------------------------------------------
# Schema. A leaf is a type spec: a type, a tuple of types, `list_of(type)`, or ANY. `None` in a tuple
# means the key may be null. Sections are dicts. Keys are PASSL's (hence `nmb_crops`, `nmb_prototypes`).
# ---------------------------------------------------------------------------------------------------------
ANY = object()
NUM = (int, float)
OPT_STR = (str, type(None))


class list_of:  # noqa: N801 - reads as a type spec
    def __init__(self, item: Any, nullable: bool = False) -> None:
        self.item, self.nullable = item, nullable

    def __repr__(self) -> str:
        return f"list of {_type_name(self.item)}"


LR_SCHEDULER = {
    "name": str,  # TimmCosine (per-iteration cosine with linear warm-up) | MultiStepDecay | Cosine
    "learning_rate": NUM,
    "eta_min": NUM,
    "warmup_epoch": NUM,
    "warmup_start_lr": NUM,
    "warmup_prefix": bool,
    "last_epoch": int,
    "milestones": list_of(int),
    "gamma": NUM,
}

DATASET = {
    "name": str,  # MultiCropDataset | ImageFolder
    "root": str,
    "size_crops": list_of(int),
    "num_crops": list_of(int),
    "min_scale_crops": list_of(NUM),
    "max_scale_crops": list_of(NUM),
    "crop_ratio": list_of(NUM),  # RandomResizedCrop aspect-ratio range (3/4, 4/3)
    "flip_prob": NUM,
    "color_jitter": list_of(NUM),  # brightness, contrast, saturation, hue
    "color_jitter_prob": NUM,
    "grayscale_prob": NUM,
    "blur_prob": NUM,
    "blur_sigma": list_of(NUM),
    "mean": list_of(NUM),
    "std": list_of(NUM),
    "transform": ANY,  # PASSL's transform list (linear probe / fine-tune)
    "samples_tag": OPT_STR,  # PASSL: semi_1 / semi_10
    # subset file (SimCLR format): a bare name is read beside the split folder (<root>/..), a path with folders
    # is opened as given, relative to the working directory (PASSL's FewShotDataset); see subset_path()
    "txt_file_name": OPT_STR,
    "class_num": int,
}

LOADER_SECTION = {
    "dataset": DATASET,
    "sampler": {"name": str, "batch_size": int, "drop_last": bool, "shuffle": bool},
    "loader": {"num_workers": int, "use_shared_memory": bool},
}

SCHEMA: dict = {
    "Global": {
        "task_type": str,  # ContrastiveLearning (pre-train) | Classification (linear probe / fine-tune)
        "train_loop": str,
        "validate_loop": OPT_STR,
        "checkpoint": OPT_STR,  # resume from this checkpoint prefix
        "pretrained_model": OPT_STR,  # load weights from this prefix (PASSL convention: no extension)
        "finetune": bool,
        "output_dir": str,
        "device": str,  # gpu | cpu
        "save_interval": int,
        "max_num_latest_checkpoint": int,
        "eval_during_train": bool,
        "eval_interval": int,
        "eval_unit": str,
        "accum_steps": int,
        "epochs": int,
        "print_batch_step": int,
        "use_visualdl": bool,
        "seed": int,
        "max_train_step": (int, type(None)),  # stop (exit 0) once this many global steps ran
        "num_threads": (int, type(None)),  # CPU intra-op threads; default OMP_NUM_THREADS or 1
        "deterministic": bool,  # GPU: FLAGS_cudnn_deterministic
        "flags": ANY,  # extra paddle FLAGS_* to set
    },
    "FP16": {
        "level": str,  # O0 | O1 | O2
        "dtype": str,  # swavbench: auto_cast dtype, float16 (PASSL's, the default) | bfloat16
        "GradScaler": {  # PASSL's passl.core.GradScaler arguments (defaults: swavbench.train.optim.PASSL_SCALER)
            "init_loss_scaling": NUM,
            "max_loss_scaling": NUM,
            "incr_every_n_steps": int,
            "decr_every_n_nan_or_inf": int,
            "incr_ratio": NUM,
            "decr_ratio": NUM,
            "use_dynamic_loss_scaling": bool,
        },
    },
    "DistributedStrategy": {"data_parallel": bool, "sync_batchnorm": bool},
    "Model": {
        "name": str,
        "apex": bool,
        "queue_length": int,
        "epoch_queue_starts": int,
        "crops_for_assign": list_of(int),
        "nmb_crops": list_of(int),
        "epsilon": NUM,
        "sinkhorn_iterations": int,
        "temperature": NUM,
        "freeze_prototypes_niters": int,
        "backbone": {
            "type": str,  # resnet50 | resnet18 | resnet_tiny (see swavbench.train.model.BACKBONES)
            "normalize": bool,
            "hidden_mlp": int,
            "output_dim": int,
            "nmb_prototypes": int,
            "eval_mode": bool,
            "zero_init_residual": bool,
        },
        "class_num": int,  # PASSL's linear-probe class count
        "num_classes": int,  # the same (swavbench's earlier spelling)
        "output_dim": int,  # fine-tune class count (swavbench's earlier spelling of Model.backbone.output_dim)
    },
    "Loss": ANY,
    "Metric": ANY,
    "Export": ANY,
    "Optimizer": {
        "name": str,  # MomentumLARC | Momentum
        "momentum": NUM,
        "weight_decay": NUM,
        "trust_coefficient": NUM,
        "clip": bool,
        "eps": NUM,
        "tensor_fusion": bool,
        "decay_unit": str,  # step | epoch (swavbench's earlier spelling of lr_decay_unit)
        "lr_decay_unit": str,  # PASSL's: when the schedules advance
        "LRScheduler": LR_SCHEDULER,
        "lr": LR_SCHEDULER,  # PASSL's spelling of LRScheduler; an override of either name goes to the one used
        # PASSL's parameter groups: [{name: <regex, re.match on parameter names>, regular_exp?: <regex>,
        # lr: {schedule} | number}], e.g. the fine-tune head's lr (swavbench.train.classify.param_groups)
        "param_groups": ANY,
        "custom_cfg": ANY,  # swavbench's earlier form: [{name: <substring of parameter names>, LRScheduler}]
    },
    "DataLoader": {"Train": LOADER_SECTION, "Eval": LOADER_SECTION},
}


def _type_name(spec: Any) -> str:
    if spec is ANY:
        return "anything"
    if isinstance(spec, list_of):
        return repr(spec)
    if isinstance(spec, tuple):
        names = ["null" if t is type(None) else t.__name__ for t in spec]
        return " or ".join(dict.fromkeys(names))
    if isinstance(spec, dict):
        return "a section (mapping)"
    return spec.__name__


def _matches(value: Any, spec: Any) -> bool:
    if spec is ANY:
        return True
    if isinstance(spec, list_of):
        if value is None:
            return spec.nullable
        return isinstance(value, list) and all(_matches(v, spec.item) for v in value)
    types = spec if isinstance(spec, tuple) else (spec,)
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int in Python; not in a config
    return isinstance(value, types)


def validate(config: Mapping, schema: Mapping = SCHEMA, source: str = "config", prefix: str = "") -> None:
    """Raise ConfigError naming the dotted key of the first unknown key or wrongly typed value."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'}: expected a mapping of keys")
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(schema)})"
            raise ConfigError(f"{source}: {dotted}: unknown key{hint}")
        spec = schema[key]
        if isinstance(spec, dict):
            if value is None:
                continue
            validate(value, spec, source, dotted + ".")
        elif not _matches(value, spec):
            raise ConfigError(
                f"{source}: {dotted}: expected {_type_name(spec)}, got {type(value).__name__} {value!r}"
            )


# ---------------------------------------------------------------------------------------------------------
# Overrides: PASSL's `-o A.B.C=value`, value parsed as a Python literal (paths stay strings).
# ---------------------------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """`0` -> 0, `1e-6` -> 1e-06, `[2, 6]` -> [2, 6], `None`/`null` -> None, `./data` -> './data'."""
    lowered = text.strip().lower()
    if lowered in ("null", "none", "~"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text


def parse_override(item: str) -> tuple[list[str], Any]:
    """`Global.epochs=3` -> (['Global', 'epochs'], 3)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"-o {item!r}: expected Section.key=value, e.g. -o Global.epochs=1")
    return key.strip().split("."), parse_value(value)


SCHEDULE_KEYS = ("LRScheduler", "lr")  # PASSL's configs spell the schedule section `lr`


def schedule_alias(config: Mapping, keys: list[str]) -> list[str]:
    """`Optimizer.LRScheduler.*` names `Optimizer.lr.*` in a config that spells it `lr`, and vice versa."""
    if len(keys) >= 2 and keys[0] == "Optimizer" and keys[1] in SCHEDULE_KEYS:
        optimizer = config.get("Optimizer") or {}
        other = SCHEDULE_KEYS[1 - SCHEDULE_KEYS.index(keys[1])]
        if keys[1] not in optimizer and isinstance(optimizer.get(other), dict):
            return [keys[0], other, *keys[2:]]
    return keys


def apply_overrides(config: dict, overrides: Iterable[str | tuple[list[str], Any]]) -> dict:
    """Return a copy of `config` with each override set (missing sections are created, as in PASSL).

    An override of the schedule section goes to the spelling the config uses (`lr` or `LRScheduler`)."""
    result = copy.deepcopy(config)
    for item in overrides:
        keys, value = parse_override(item) if isinstance(item, str) else item
        keys = schedule_alias(result, list(keys))
        node = result
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return result


# ---------------------------------------------------------------------------------------------------------
# Profiles: an override set (configs/profiles/<name>.yaml) any config can take. Sections: `all` applies
# to every config; `ContrastiveLearning` / `Classification` apply by Global.task_type; values a profile
# derives from the config's own (e.g. learning rates by the batch ratio): swavbench/train/profiles.py.
# ---------------------------------------------------------------------------------------------------------
def profile_overrides(profile: str, task_type: str) -> list[tuple[list[str], Any]]:
    """The (keys, value) overrides a profile (`cpu` or a path) SETS for this task type (its derived values:
    swavbench.train.profiles)."""
    from swavbench.train.profiles import read_profile

    return read_profile(profile, task_type)[0]


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-6` as a float (YAML 1.1 wants `1.0e-6`; PASSL configs write `1e-6`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file (configs live in {CONFIG_DIR})")
    try:
        with open(path, encoding="utf-8") as handle:
            loader = _Loader(handle)  # a SafeLoader: no arbitrary objects
            try:
                return loader.get_single_data()
            finally:
                loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(err, 'problem', err)})") from None


def resolve_config_path(name_or_path: str) -> Path:
    """A path as given, or a PASSL config name looked up in configs/ (`swav_resnet50_224_pt_..._fp16o1`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / name_or_path, CONFIG_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    return path


def load_config(
    path: str | Path, overrides: Sequence[str] = (), profile: Optional[str] = None
) -> dict:
    """Load a PASSL YAML config safely, apply the profile then `-o` overrides, validate, return it."""
    path = resolve_config_path(str(path))
    config = _read_yaml(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (Global, Model, ...)")
    validate(config, source=str(path))
    if profile:
        task_type = (config.get("Global") or {}).get("task_type", "ContrastiveLearning")
        from swavbench.train.profiles import apply_profile

        config = apply_profile(config, profile, task_type)  # set values, then values derived from the config
        validate(config, source=f"{path} + profile {profile}")
    if overrides:
        config = apply_overrides(config, overrides)
        validate(config, source=f"{path} -o")
    check_combinations(config, str(path))
    return config


def check_combinations(config: Mapping, source: str = "config") -> None:
    """ConfigError for keys that are valid alone but not together, or not for this task."""
    optimizer = config.get("Optimizer") or {}
    if "lr" in optimizer and "LRScheduler" in optimizer:
        raise ConfigError(f"{source}: Optimizer has both lr and LRScheduler; keep one")
    if "decay_unit" in optimizer and "lr_decay_unit" in optimizer and (
            optimizer["decay_unit"] != optimizer["lr_decay_unit"]):
        raise ConfigError(f"{source}: Optimizer.decay_unit and Optimizer.lr_decay_unit differ; keep lr_decay_unit")
    groups = [k for k in ("param_groups", "custom_cfg") if optimizer.get(k)]
    if len(groups) == 2:
        raise ConfigError(f"{source}: Optimizer has both param_groups and custom_cfg; keep param_groups (PASSL's)")
    task = get(config, "Global.task_type", "ContrastiveLearning")
    if groups and task != "Classification":
        raise ConfigError(
            f"{source}: Optimizer.{groups[0]}: the pre-train trains every parameter in one LARC group; "
            "parameter groups are read by the linear probe / fine-tune only (remove it)"
        )
    dtype = get(config, "FP16.dtype", "float16")
    if dtype not in ("float16", "bfloat16"):
        raise ConfigError(f"{source}: FP16.dtype: {dtype!r} is not an auto_cast dtype (float16 or bfloat16)")


CLASS_COUNT_KEYS = {  # PASSL's key first, then swavbench's earlier spelling
    False: ("Model.class_num", "Model.num_classes"),  # linear probe
    True: ("Model.backbone.output_dim", "Model.output_dim"),  # fine-tune: the head's output size
}


def class_count(config: Mapping, finetune: bool) -> tuple[str, Optional[int]]:
    """(the key holding the classification's class count, its value or None); ConfigError when both
    spellings are set to different values."""
    keys = CLASS_COUNT_KEYS[bool(finetune)]
    values = {k: get(config, k) for k in keys if get(config, k) is not None}
    if len(set(values.values())) > 1:
        raise ConfigError(f"{keys[0]}={values[keys[0]]} and {keys[1]}={values[keys[1]]} differ: set {keys[0]} only")
    key = next(iter(values), keys[0])
    return key, values.get(key)


def lr_decay_unit(optimizer: Mapping) -> str:
    """When the schedules advance: `step` | `epoch` (PASSL's Optimizer.lr_decay_unit; default step)."""
    unit = optimizer.get("lr_decay_unit") or optimizer.get("decay_unit") or "step"
    if unit not in ("step", "epoch"):
        raise ConfigError(f"Optimizer.lr_decay_unit: {unit!r} is not step or epoch")
    return unit


def subset_path(dataset: Mapping, split: str = "Train") -> Optional[Path]:
    """The SimCLR subset file a classification split reads, or None (the whole folder).

    `txt_file_name` absolute: as given; a path with folders (PASSL: `./dataset/ILSVRC2012/10percent.txt`):
    relative to the working directory, as PASSL's FewShotDataset opens it; a bare name (`10percent.txt`):
    beside the split folder, in `<root>/..` (where SimCLR's files and `swavbench data synth` put it).
    `samples_tag: semi_N` alone means the bare name `Npercent.txt`.
    """
    txt, tag = dataset.get("txt_file_name"), dataset.get("samples_tag")
    if tag and not txt:
        if tag not in ("semi_1", "semi_10"):
            raise ConfigError(f"DataLoader.{split}.dataset.samples_tag: {tag!r} unknown (semi_1 | semi_10)")
        txt = f"{tag.split('_')[1]}percent.txt"
    if not txt:
        return None
    path = Path(txt)
    if path.is_absolute() or path.parent != Path("."):
        return path
    return Path(str(dataset.get("root", "."))).parent / path


def get(config: Mapping, dotted: str, default: Any = None) -> Any:
    """`get(cfg, "Model.backbone.type", "resnet50")`: a nested value, or `default` when absent/null."""
    node: Any = config
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or node.get(key) is None:
            return default
        node = node[key]
    return node
