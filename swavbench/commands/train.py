"""`swavbench train -c CONFIG [--profile cpu] [-o Section.key=value ...]`: one training worker.

This is what `python -m paddle.distributed.launch --nproc_per_node N $(which swavbench) train -c ...` runs,
as PASSL's `passl-train`. Paddle is imported only here, after the thread count is fixed.
"""

from __future__ import annotations

import argparse
import gc
import os
from typing import Callable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="run one training worker (PASSL passl-train compatible)")
    parser.add_argument("-c", "--config", required=True, help="PASSL YAML config (path or name in configs/)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="Section.key=value",
                        help="override a config value (repeatable), e.g. -o Global.epochs=1")
    parser.add_argument("-p", "--profile", default=None,
                        help="override set from configs/profiles (e.g. cpu), applied before -o")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from swavbench.train import fast_exit, timeline

    fast_exit.install()  # first: its exit handler runs after every other one (paddle's included)
    timeline.mark("entry")
    from swavbench.train.config import load_config, resolve_config_path

    config = load_config(args.config, args.override, args.profile)
    timeline.mark("config")
    threads = (config.get("Global") or {}).get("num_threads")
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # before paddle loads its OpenMP runtime
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    task = (config.get("Global") or {}).get("task_type", "ContrastiveLearning")
    overrides = ([f"--profile {args.profile}"] if args.profile else []) + list(args.override)
    if task not in ("ContrastiveLearning", "Classification"):
        from swavbench.errors import ConfigError

        raise ConfigError(f"Global.task_type={task}: unknown (ContrastiveLearning or Classification)")
    entry = _import_trainer(task)
    timeline.mark("imports")
    code = entry(config, str(resolve_config_path(args.config)), overrides)
    from swavbench.train.data import close_loaders
    from swavbench.train.logger import record_dir

    close_loaders()  # an epoch stopped at max_train_step: no 1 s shutdown sleep in paddle's exit handler
    if not timeline.written():  # the pre-training loop writes its own, with its step marks
        rank = int(os.environ.get("PADDLE_TRAINER_ID") or 0)
        timeline.write(record_dir((config.get("Global") or {}).get("output_dir", "./output")), rank)
    return fast_exit.arm(code)


def _import_trainer(task: str) -> Callable[..., int]:
    """The task's training function, imported (paddle with it) with the cyclic GC paused: importing paddle
    builds ~10^6 objects and the collections it triggers cost ~0.1 s of CPU per rank (of ~0.8 s), x 8 ranks
    on 2 cores. Nothing is collected later than it would have been but the import's own cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if task == "Classification":
            from swavbench.train.classify import train_classifier

            return train_classifier
        from swavbench.train.loop import train

        return train
    finally:
        if was_enabled:
            gc.enable()
