"""Linear probe and semi-supervised fine-tune, top to bottom (reference: swav eval_linear.py, eval_semisup.py).

Linear probe (default): the trunk is frozen in eval mode and runs under no_grad; only `linear.linear`
(Linear(feature_dim, num_classes), N(0, 0.01), bias 0) trains, by momentum SGD with a per-epoch cosine.
Fine-tune (`Global.finetune: True`): the whole network trains on the subset; PASSL's `Optimizer.param_groups`
(`name: res_model.projection_head`, matched as a regex on parameter names) gives the head its own schedule;
the rest is the `default` (trunk) group. Keys follow PASSL: trunk `res_model.encoder.*`, probe classifier
`linear.linear.*`, fine-tune head `res_model.projection_head.*`.
"""

from __future__ import annotations

import json
import re
import time
from typing import Callable, Sequence

import numpy as np
import paddle
import paddle.nn as nn

from swavbench.errors import ConfigError, DataError
from swavbench.train import checkpoint as ckpt
from swavbench.train import gpu
from swavbench.train.config import class_count, get, lr_decay_unit
from swavbench.train.data import build_classification_loader
from swavbench.train.logger import (
    PasslLogger,
    StepRecorder,
    Window,
    format_early_stop,
    format_epoch_line,
    format_train_line,
    record_dir,
    write_run_header,
)
from swavbench.train.model import build_backbone
from swavbench.train.optim import build_lr_schedule
from swavbench.train.pretrained import load_pretrained
from swavbench.train.runtime import peak_memory_gb, seed_everything, setup_runtime, tune_host_allocator


# ---------------------------------------------------------------------------------------------------------
# Models (PASSL key names)
# ---------------------------------------------------------------------------------------------------------
class ResModel(nn.Layer):
    """`res_model`: the trunk (`encoder`) and, for fine-tuning, a Linear head (`projection_head`)."""

    def __init__(self, backbone: str, head_classes: int = 0, zero_init_residual: bool = True) -> None:
        super().__init__()
        self.encoder = build_backbone(backbone, zero_init_residual)
        if head_classes:  # paddle's default Linear init (Xavier weight, zero bias), as PASSL's swavresnet50 head
            self.projection_head = nn.Linear(self.encoder.feature_dim, head_classes)


class RegLog(nn.Layer):
    """The probe's classifier on pooled features: Linear init N(0, 0.01), bias 0 (PASSL: `linear.linear`)."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(feature_dim, num_classes,
                                weight_attr=paddle.ParamAttr(initializer=nn.initializer.Normal(0.0, 0.01)),
                                bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)))


class LinearProbe(nn.Layer):
    """Frozen trunk (eval mode, no grad, stop_gradient) + RegLog; `train()` keeps the trunk in eval mode."""

    def __init__(self, backbone: str, num_classes: int, zero_init_residual: bool = True) -> None:
        super().__init__()
        self.res_model = ResModel(backbone, zero_init_residual=zero_init_residual)
        for p in self.res_model.parameters():
            p.stop_gradient = True
        for layer in self.res_model.sublayers():
            if isinstance(layer, nn.layer.norm._BatchNormBase):
                layer._use_global_stats = True  # PASSL's _freeze_norm: running statistics, never updated
        self.linear = RegLog(self.res_model.encoder.feature_dim, num_classes)
        self.train()

    def train(self, mode: bool = True) -> LinearProbe:
        super().train(mode)
        for layer in self.res_model.sublayers(include_self=True):
            layer.training = False  # the trunk stays in eval mode (flags only: eval() flips paddle's tracer)
        return self

    def forward(self, images: paddle.Tensor) -> paddle.Tensor:
        with paddle.no_grad():
            features = self.res_model.encoder(images)  # average-pooled [N, feature_dim]
        return self.linear.linear(features)


class Finetune(nn.Layer):
    """The whole network trains: trunk + Linear head (no normalisation), as the reference semi-sup model."""

    def __init__(self, backbone: str, num_classes: int, zero_init_residual: bool = True) -> None:
        super().__init__()
        self.res_model = ResModel(backbone, num_classes, zero_init_residual)

    def forward(self, images: paddle.Tensor) -> paddle.Tensor:
        return self.res_model.projection_head(self.res_model.encoder(images))


# ---------------------------------------------------------------------------------------------------------
# Optimiser: one momentum SGD per named parameter group, each with its own schedule
# ---------------------------------------------------------------------------------------------------------
GROUP_KEYS = {"param_groups": {"name", "regular_exp", "lr", "LRScheduler"}, "custom_cfg": {"name", "LRScheduler", "lr"}}


def _group_schedule(entry: dict, where: str) -> dict:
    """A group's schedule section; a bare number is a constant lr (as PASSL's `lr: 0.1`)."""
    sched = entry.get("lr", entry.get("LRScheduler"))
    if isinstance(sched, (int, float)) and not isinstance(sched, bool):
        return {"name": "MultiStepDecay", "learning_rate": float(sched), "milestones": []}
    if not isinstance(sched, dict):
        raise ConfigError(f"{where}: group {entry['name']!r} needs an lr schedule section (or a number)")
    return sched


def param_groups(named: Sequence[tuple[str, paddle.Tensor]], opt_cfg: dict,
                 default_sched: dict) -> tuple[dict, str]:
    """({group name: (params, schedule)}, the group whose lr the log line shows).

    `Optimizer.param_groups` (PASSL's): a trainable parameter joins the first group whose `regular_exp`
    (else its `name`) re.match-es the parameter name; the others form `default` (the trunk), on the
    Optimizer's own schedule. The log shows the first group's lr, as PASSL's `optimizer.get_lr()` does.
    `Optimizer.custom_cfg` (swavbench's earlier form): a group claims names that contain its name; the log
    shows `default`. ConfigError when a group has keys this trainer does not apply, or claims no parameter.
    """
    key = "param_groups" if opt_cfg.get("param_groups") else "custom_cfg"
    entries = opt_cfg.get(key) or []
    if not isinstance(entries, list):
        raise ConfigError(f"Optimizer.{key}: expected a list of groups, got {type(entries).__name__}")
    matchers: list[tuple[str, Callable[[str], bool]]] = []
    groups: dict[str, tuple[list, dict]] = {}
    for index, entry in enumerate(entries):
        where = f"Optimizer.{key}[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: expected {{name: <parameter name pattern>, lr: {{...}}}}")
        extra = set(entry) - GROUP_KEYS[key]
        if extra:
            raise ConfigError(f"{where}: {', '.join(sorted(extra))}: not applied by this trainer "
                              f"(a group takes {', '.join(sorted(GROUP_KEYS[key]))})")
        if key == "param_groups":
            regex = entry.get("regular_exp") or entry["name"]
            try:
                pattern = re.compile(regex)
            except re.error as err:
                raise ConfigError(f"{where}: {regex!r} is not a regular expression: {err}") from None
            matchers.append((entry["name"], lambda n, pattern=pattern: pattern.match(n) is not None))
        else:
            matchers.append((entry["name"], lambda n, sub=entry["name"]: sub in n))
        groups[entry["name"]] = ([], _group_schedule(entry, where))
    groups["default"] = ([], default_sched)
    for name, p in named:
        if not p.stop_gradient:
            owner = next((g for g, matches in matchers if matches(name)), "default")
            groups[owner][0].append(p)
    for group, (params, _) in groups.items():
        if not params and group != "default":
            raise ConfigError(f"Optimizer.{key}: group {group!r} matches no trainable parameter name")
    log_group = matchers[0][0] if key == "param_groups" and matchers else "default"
    groups = {g: v for g, v in groups.items() if v[0]}
    return groups, log_group if log_group in groups else next(iter(groups))


class GroupedMomentum:
    """Momentum SGD (v <- m v + g + wd p; p <- p - lr v) for each named group, stepped at its own lr."""

    def __init__(self, groups: dict[str, list], momentum: float, weight_decay: float) -> None:
        self.inner = {name: paddle.optimizer.Momentum(learning_rate=0.1, momentum=momentum, parameters=params,
                                                      weight_decay=float(weight_decay) or None)
                      for name, params in groups.items()}

    def step(self, lrs: dict[str, float]) -> None:
        for name, opt in self.inner.items():
            opt.set_lr(lrs[name])
            opt.step()

    def clear_grad(self) -> None:
        for opt in self.inner.values():
            opt.clear_grad(set_to_zero=False)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.inner.items()}

    def set_state_dict(self, state: dict) -> None:
        for name, opt in self.inner.items():
            opt.set_state_dict(state[name])


# ---------------------------------------------------------------------------------------------------------
# Metrics and evaluation
# ---------------------------------------------------------------------------------------------------------
def topk_correct(logits: np.ndarray, labels: np.ndarray, ks: Sequence[int]) -> list[np.ndarray]:
    """Per sample and k: is the label among the k highest logits (ties broken by class index)."""
    order = np.argsort(-logits, axis=1, kind="stable")
    return [(order[:, : min(k, logits.shape[1])] == labels[:, None]).any(axis=1) for k in ks]


def cross_entropy_np(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample cross entropy in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]


@paddle.no_grad()
def evaluate(model: nn.Layer, loader, sampler, num_samples: int, weight: float, world_size: int) -> dict:
    """CE / top-1 / top-5 over the WHOLE eval set: each rank drops its padded duplicates (its last
    `sampler.local_padding` samples), then the sums are all-reduced (exactly a gather of every sample)."""
    model.eval()
    real, position = sampler.real_mask(), 0
    sums = np.zeros(4)  # CE, top-1 hits, top-5 hits, samples
    for images, labels in loader:
        logits, labels = model(images).numpy(), labels.numpy().reshape(-1)
        keep = real[position: position + len(labels)]
        position += len(labels)
        logits, labels = logits[keep], labels[keep]
        top1, top5 = topk_correct(logits, labels, (1, 5))
        sums += [cross_entropy_np(logits, labels).sum(), top1.sum(), top5.sum(), len(labels)]
    if world_size > 1:
        total = paddle.to_tensor(sums, dtype="float64")
        paddle.distributed.all_reduce(total)
        sums = total.numpy()
    model.train()
    if int(sums[3]) != num_samples:
        raise RuntimeError(f"evaluation counted {int(sums[3])} samples, the eval set has {num_samples}")
    return {"CELoss": weight * sums[0] / sums[3], "top1": sums[1] / sums[3], "top5": sums[2] / sums[3]}


def format_eval_line(epoch: int, metrics: dict) -> str:
    """`[Eval][Epoch e][Avg]CELoss: x, top1: y, top5: z` (PASSL's evaluation summary)."""
    return f"[Eval][Epoch {epoch}][Avg]" + ", ".join(f"{k}: {metrics[k]:.5f}" for k in ("CELoss", "top1", "top5"))


def loss_weight(config: dict, split: str) -> float:
    """The CELoss weight of Loss.<split> (PASSL: a list of {CELoss: {weight}}); only CELoss is known."""
    items = get(config, f"Loss.{split}", []) or []
    if not isinstance(items, list) or any(not isinstance(i, dict) or set(i) != {"CELoss"} for i in items):
        raise ConfigError(f"Loss.{split}: only [{{CELoss: {{weight: 1.0}}}}] is supported, got {items!r}")
    return float(sum((i["CELoss"] or {}).get("weight", 1.0) for i in items)) if items else 1.0


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------
def _check_settings(config: dict, finetune: bool) -> tuple[str, int]:
    """(the class-count key, its value); ConfigError for settings this trainer does not run."""
    key, classes = class_count(config, finetune)
    if not isinstance(classes, int) or classes < 1:
        raise ConfigError(f"{key}: the {'fine-tune' if finetune else 'linear probe'} needs the class count")
    if not finetune and get(config, "Model.backbone.eval_mode", True) is not True:
        raise ConfigError("Model.backbone.eval_mode: the linear probe keeps the trunk in eval mode (set True)")
    if get(config, "Optimizer.name", "Momentum") != "Momentum":
        raise ConfigError(f"Optimizer.name={get(config, 'Optimizer.name')}: the classification protocols use Momentum")
    for split in ("Train", "Eval"):
        for item in get(config, f"Metric.{split}", []) or []:
            topk = (item.get("TopkAcc") or {}).get("topk", [1, 5]) if isinstance(item, dict) else None
            if list(topk or []) != [1, 5]:
                raise ConfigError(f"Metric.{split}: only TopkAcc topk [1, 5] is logged (PASSL's top1/top5)")
    return key, classes


def train_classifier(config: dict, config_path: str = "", overrides: Sequence[str] = ()) -> int:
    """Run the linear probe (or the fine-tune when Global.finetune) described by `config`; returns 0."""
    # ---- settings --------------------------------------------------------------------------------------
    glob, opt_cfg = config.get("Global") or {}, config.get("Optimizer") or {}
    finetune = bool(glob.get("finetune", False))
    class_key, num_classes = _check_settings(config, finetune)
    epochs, print_every = int(glob.get("epochs", 1)), max(int(glob.get("print_batch_step", 10)), 1)
    max_train_step = glob.get("max_train_step")
    eval_every = int(glob.get("eval_interval", 1)) if glob.get("eval_during_train", False) else 0
    train_weight, eval_weight = loss_weight(config, "Train"), loss_weight(config, "Eval")

    # ---- environment -----------------------------------------------------------------------------------
    rt = setup_runtime(config)
    rt.host_allocator = tune_host_allocator()
    if rt.precision_effective != "fp32":
        raise ConfigError(f"FP16.level: the classification protocols run fp32 (requested {rt.precision_requested})")
    log = PasslLogger(rt.rank)

    # ---- data: train (folder or subset) and the whole eval set; class counts must agree ---------------
    loader, sampler, train_samples = build_classification_loader(config, "Train", rt.rank, rt.world_size, rt.seed)
    eval_loader, eval_sampler, eval_samples = build_classification_loader(
        config, "Eval", rt.rank, rt.world_size, rt.seed)
    train_classes, eval_classes = loader.dataset.classes, eval_loader.dataset.classes
    if len(train_classes) != num_classes:
        raise ConfigError(f"{class_key}={num_classes} but DataLoader.Train.dataset.root="
                          f"{get(config, 'DataLoader.Train.dataset.root')} has {len(train_classes)} classes: "
                          f"set -o {class_key}={len(train_classes)}")
    if eval_classes != train_classes:
        raise DataError(f"DataLoader.Eval.dataset.root has {len(eval_classes)} class folders that differ from "
                        f"the {len(train_classes)} training classes: train and eval must name the same classes")
    iters_per_epoch, batch_size = len(sampler), int(get(config, "DataLoader.Train.sampler.batch_size", 32))

    # ---- model: identical init on every rank, trunk from Global.pretrained_model ----------------------
    seed_everything(rt.seed)
    zero_init = bool(get(config, "Model.backbone.zero_init_residual", True))  # PASSL's ResNet default
    backbone = get(config, "Model.backbone.type", "resnet50")
    model = (Finetune if finetune else LinearProbe)(backbone, num_classes, zero_init)
    pretrained = None
    if glob.get("checkpoint"):
        log.info(f"[swavbench] resuming from Global.checkpoint={glob['checkpoint']} (pretrained_model not read)")
    elif glob.get("pretrained_model"):
        report = load_pretrained(model, glob["pretrained_model"])
        pretrained = {"path": str(report.path), "format": report.source_format, "trunk_tensors": report.loaded}
        log.info(report.line())
    else:
        log.info("[swavbench] Global.pretrained_model is null: the trunk is RANDOMLY initialised")
    seed_everything(rt.seed + rt.rank)
    if not finetune:
        rt.sync_batchnorm = "none: the probe's trunk is frozen in eval mode (running statistics)"
    elif rt.sync_batchnorm == "SyncBatchNorm":
        model, converted = gpu.convert_sync_batchnorm(model)
        rt.gpu_paths["sync_batchnorm"].update(ran=True, layers=converted)
    net = paddle.DataParallel(model) if rt.world_size > 1 else model

    # ---- optimiser: named groups, each with its own per-epoch (or per-step) schedule --------------------
    unit = lr_decay_unit(opt_cfg)
    trunk_sched = opt_cfg.get("LRScheduler") or opt_cfg.get("lr") or {}
    groups, log_group = param_groups(list(model.named_parameters()), opt_cfg, trunk_sched)
    schedules: dict[str, Callable[[int, int], float]] = {
        g: build_lr_schedule(sched, iters_per_epoch, epochs, unit) for g, (_, sched) in groups.items()}
    optimizer = GroupedMomentum({g: params for g, (params, _) in groups.items()},
                                float(opt_cfg.get("momentum", 0.9)), float(opt_cfg.get("weight_decay", 0.0)))

    # ---- resume (PASSL layout) ---------------------------------------------------------------------------
    out_dir = ckpt.checkpoint_dir(config)
    start_epoch, global_step, skip_batches, best_top1 = 0, 0, 0, -1.0
    if glob.get("checkpoint"):
        model_state, opt_state, states = ckpt.load_checkpoint(glob["checkpoint"])
        model.set_state_dict(model_state)
        if opt_state:
            optimizer.set_state_dict(opt_state["optimizer"])
        start_epoch, global_step = int(states.get("epoch", 0)), int(states.get("global_step", 0))
        skip_batches, best_top1 = int(states.get("iter_in_epoch", 0)), float(states.get("best_top1", -1.0))

    # ---- run header --------------------------------------------------------------------------------------
    records = record_dir(glob.get("output_dir", "./output"))
    header = rt.header() | {
        "config": config_path, "overrides": list(overrides), "task": "finetune" if finetune else "linear_probe",
        "batch_size_per_device": batch_size, "iters_per_epoch": iters_per_epoch, "epochs": epochs,
        "backbone": backbone, "num_classes": num_classes, "train_samples": train_samples,
        "eval_samples": eval_samples, "pretrained": pretrained, "resumed_from": glob.get("checkpoint"),
        "param_groups": {g: {"tensors": len(p), "schedule": s} for g, (p, s) in groups.items()},
    }
    if rt.rank == 0:
        write_run_header(records, header)
    log.info("[swavbench] run header: " + json.dumps(header, sort_keys=True))
    recorder = StepRecorder(records, rt.rank, append=bool(glob.get("checkpoint")))
    eval_log = (records / "evals.jsonl").open("a" if glob.get("checkpoint") else "w", encoding="utf-8") \
        if rt.rank == 0 else None

    def save(prefix: str, epoch_done: int, iter_in_epoch: int, metrics: dict) -> None:
        if rt.rank == 0:
            ckpt.save_checkpoint(out_dir, prefix, model.state_dict(), {"optimizer": optimizer.state_dict()},
                                 {"epoch": epoch_done, "global_step": global_step, "iter_in_epoch": iter_in_epoch,
                                  "metrics": metrics, "best_top1": best_top1})

    def run_eval(epoch_done: int) -> dict:
        nonlocal best_top1
        eval_sampler.set_epoch(0)
        metrics = evaluate(model, eval_loader, eval_sampler, eval_samples, eval_weight, rt.world_size)
        log.info(format_eval_line(epoch_done, metrics))
        if metrics["top1"] > best_top1:
            best_top1 = metrics["top1"]
            save("best_model", epoch_done, 0, metrics)
        log.info(f"[Eval][Epoch {epoch_done}][best metric: {best_top1:.5f}]")
        if eval_log is not None:
            eval_log.write(json.dumps({"epoch": epoch_done, **metrics, "best_top1": best_top1,
                                       "samples": eval_samples}, sort_keys=True) + "\n")
            eval_log.flush()
        return metrics

    # ---- epochs ------------------------------------------------------------------------------------------
    window, epoch_avg, evaluated = Window(), Window(), start_epoch
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        model.train()  # not net.train(): DataParallel's would set every sublayer's flag, the trunk's too
        epoch_avg.reset()
        tic = time.perf_counter()
        for it, (images, labels) in enumerate(loader):
            if it < skip_batches:  # resuming mid-epoch: these batches already trained
                tic = time.perf_counter()
                continue
            if it == 5:  # PASSL resets its timing windows at batch 5
                window.reset("batch_cost", "reader_cost")
            reader_cost = time.perf_counter() - tic
            lrs = {g: schedule(global_step, epoch) for g, schedule in schedules.items()}

            # forward, cross entropy, backward, one step per group
            logits = net(images)
            ce = paddle.nn.functional.cross_entropy(logits, labels.reshape([-1]))
            loss = ce * train_weight
            loss.backward()
            optimizer.step(lrs)
            optimizer.clear_grad()

            # batch metrics (rank 0's local batch, as PASSL), record and log
            top1, top5 = topk_correct(logits.numpy(), labels.numpy().reshape(-1), (1, 5))
            values = {"top1": float(top1.mean()), "metric": float(top1.mean()), "top5": float(top5.mean()),
                      "CELoss": float(loss), "loss": float(loss)}
            batch_cost = time.perf_counter() - tic
            global_step += 1
            recorder.write(step=global_step, epoch=epoch + 1, iter=it, loss=values["loss"], lr=lrs[log_group],
                           lrs=lrs, top1=values["top1"], top5=values["top5"], batch_cost=batch_cost,
                           reader_cost=reader_cost)
            window.add(**values, batch_cost=batch_cost, reader_cost=reader_cost)
            epoch_avg.add(**values)
            if it % print_every == 0:
                mean_cost = window.mean("batch_cost")
                left = (epochs - epoch) * iters_per_epoch - it - 1
                log.info(format_train_line(
                    epoch + 1, epochs, it, iters_per_epoch, lrs[log_group], {k: window.mean(k) for k in values},
                    mean_cost, window.mean("reader_cost"), batch_size * rt.world_size / max(mean_cost, 1e-12),
                    peak_memory_gb(rt.device), left * mean_cost,
                ))
                window.reset()
            if max_train_step is not None and global_step >= max_train_step:
                log.info(format_early_stop(global_step, max_train_step))
                save("latest", epoch, it + 1, {k: epoch_avg.mean(k) for k in values})
                recorder.close()
                if eval_log is not None:
                    eval_log.close()
                return 0
            tic = time.perf_counter()
        skip_batches = 0
        averages = {k: epoch_avg.mean(k) for k in ("top1", "metric", "top5", "CELoss", "loss")}
        log.info(format_epoch_line(epoch + 1, epochs, averages))
        if eval_every and (epoch + 1) % eval_every == 0:
            run_eval(epoch + 1)
            evaluated = epoch + 1
        save("latest", epoch + 1, 0, averages)
    if evaluated != epochs or epochs == start_epoch:
        run_eval(epochs)
    recorder.close()
    if eval_log is not None:
        eval_log.close()
    return 0
