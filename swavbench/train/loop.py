"""The SwAV pre-training loop, top to bottom (reference: facebookresearch/swav main_swav.py)."""

from __future__ import annotations

import json
import math
import time
from typing import Optional, Sequence

import paddle

from swavbench.errors import ConfigError
from swavbench.train import checkpoint as ckpt
from swavbench.train import gpu, timeline
from swavbench.train.config import get, lr_decay_unit
from swavbench.train.data import build_pretrain_loader
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
from swavbench.train.model import build_pretrain_model, normalize_prototypes
from swavbench.train.optim import DynamicLossScaler, LARCMomentum, build_lr_schedule
from swavbench.train.runtime import (
    env_world_size,
    peak_memory_gb,
    seed_everything,
    setup_runtime,
    tune_host_allocator,
)
from swavbench.train.swav import Queue, default_all_reduce, swav_loss


def queue_length_per_rank(queue_length: int, batch_size: int, world_size: int) -> int:
    """The reference's rule: round down to a multiple of batch x world (3804 -> 3584 at 8 x 64); each rank
    holds length / world. ConfigError when that leaves no queue at all (the reference would silently run none)."""
    if queue_length <= 0:
        return 0
    rounded = queue_length - queue_length % (batch_size * world_size)
    if rounded == 0:
        raise ConfigError(
            f"Model.queue_length={queue_length} is shorter than one global batch ({batch_size} x {world_size}): "
            "raise it or set it to 0 (no queue)"
        )
    return rounded // world_size


def train(config: dict, config_path: str = "", overrides: Sequence[str] = ()) -> int:
    """Run SwAV pre-training as described by `config`; returns the process exit code (0)."""
    # ---- settings, checked before any process group forms ---------------------------------------------
    glob, model_cfg = config.get("Global") or {}, config.get("Model") or {}
    batch_size = int(get(config, "DataLoader.Train.sampler.batch_size", 64))
    queue_per_rank = queue_length_per_rank(int(model_cfg.get("queue_length", 0)), batch_size, env_world_size())
    epochs = int(glob.get("epochs", 1))
    print_every = max(int(glob.get("print_batch_step", 10)), 1)
    max_train_step: Optional[int] = glob.get("max_train_step")
    crops_for_assign = list(model_cfg.get("crops_for_assign", [0, 1]))
    nmb_crops = list(get(config, "DataLoader.Train.dataset.num_crops", model_cfg.get("nmb_crops", [2, 6])))
    if list(model_cfg.get("nmb_crops", nmb_crops)) != nmb_crops:
        raise ConfigError("Model.nmb_crops and DataLoader.Train.dataset.num_crops differ: make them equal")
    epsilon, temperature = float(model_cfg.get("epsilon", 0.05)), float(model_cfg.get("temperature", 0.1))
    sinkhorn_iters = int(model_cfg.get("sinkhorn_iterations", 3))
    freeze_niters = int(model_cfg.get("freeze_prototypes_niters", 0))

    # ---- environment: device, ranks, threads, precision (recorded as it really runs) ----------------
    rt = setup_runtime(config)
    timeline.mark("process_group")
    rt.host_allocator = tune_host_allocator()
    timeline.mark("allocator")
    log = PasslLogger(rt.rank)

    # ---- data: multi-crop loader, seeded per (seed, rank, epoch, sample) ----------------------------
    loader, sampler = build_pretrain_loader(config, rt.rank, rt.world_size, rt.seed)
    iters_per_epoch = len(sampler)
    if iters_per_epoch == 0:
        raise ConfigError(
            f"DataLoader.Train.sampler.batch_size={batch_size} x {rt.world_size} ranks is larger than the "
            "dataset: lower the batch size or use a larger dataset"
        )
    timeline.mark("loader")

    # ---- model: identical init on every rank, then per-rank seeds (PASSL: seed + rank) --------------
    seed_everything(rt.seed)
    model = build_pretrain_model(config)
    seed_everything(rt.seed + rt.rank)
    if rt.sync_batchnorm == "SyncBatchNorm":
        model, converted = gpu.convert_sync_batchnorm(model)
        rt.gpu_paths["sync_batchnorm"].update(ran=True, layers=converted)
    named = list(model.named_parameters())
    prototype_names = {name for name, _ in named if "prototypes" in name}
    net = paddle.DataParallel(model) if rt.world_size > 1 else model
    all_reduce = default_all_reduce()

    # ---- optimiser: LARC-wrapped momentum SGD, per-iteration schedule, loss scaling -----------------
    opt_cfg = config.get("Optimizer") or {}
    sched_cfg = opt_cfg.get("LRScheduler") or opt_cfg.get("lr") or {}
    optimizer = LARCMomentum(
        named, momentum=float(opt_cfg.get("momentum", 0.9)), weight_decay=float(opt_cfg.get("weight_decay", 1e-6)),
        trust_coefficient=float(opt_cfg.get("trust_coefficient", 0.001)), clip=bool(opt_cfg.get("clip", False)),
        larc=opt_cfg.get("name", "MomentumLARC") == "MomentumLARC",
    )
    lr_at = build_lr_schedule(sched_cfg, iters_per_epoch, epochs, lr_decay_unit(opt_cfg))
    scaler = DynamicLossScaler.from_config(rt.amp.entered, get(config, "FP16.GradScaler"))  # on with AMP, as PASSL
    rt.gpu_paths["loss_scaler"] = gpu.path_record(rt.device == "gpu" and scaler.enabled, **scaler.settings(),
                                                  exercised_by=gpu.CPU_TESTS["loss_scaler"])

    # ---- resume from Global.checkpoint (PASSL layout) -------------------------------------------------
    out_dir = ckpt.checkpoint_dir(config)
    start_epoch, global_step, skip_batches, queue = 0, 0, 0, None
    if glob.get("checkpoint"):
        model_state, opt_state, states = ckpt.load_checkpoint(glob["checkpoint"])
        model.set_state_dict(model_state)
        if opt_state:
            optimizer.set_state_dict(opt_state.get("optimizer", {}))
            if "scaler" in opt_state:
                scaler.set_state_dict(opt_state["scaler"])
        start_epoch, global_step = int(states.get("epoch", 0)), int(states.get("global_step", 0))
        skip_batches = int(states.get("iter_in_epoch", 0))
        queue_file = ckpt.queue_path(out_dir, ckpt.strip_extension(glob["checkpoint"]).rsplit("/", 1)[-1],
                                     rt.rank)
        if queue_per_rank and queue_file.is_file():
            queue = Queue.from_state(paddle.load(str(queue_file)))

    timeline.mark("model")

    # ---- run header: what really runs ----------------------------------------------------------------
    records = record_dir(glob.get("output_dir", "./output"))
    header = rt.header() | {
        "config": config_path, "overrides": list(overrides), "batch_size_per_device": batch_size,
        "iters_per_epoch": iters_per_epoch, "epochs": epochs, "queue_length_per_rank": queue_per_rank,
        "backbone": get(config, "Model.backbone.type", "resnet50"),
        "crops": {"size_crops": get(config, "DataLoader.Train.dataset.size_crops"), "num_crops": nmb_crops},
        "resumed_from": glob.get("checkpoint"),
    }
    if rt.rank == 0:
        write_run_header(records, header)
    log.info("[swavbench] run header: " + json.dumps(header, sort_keys=True))
    recorder = StepRecorder(records, rt.rank, append=bool(glob.get("checkpoint")))
    autocast = rt.amp.autocast()
    all_params = [p for _, p in named]

    def save(prefix: str, epoch_done: int, iter_in_epoch: int, metrics: dict) -> None:
        if rt.rank == 0:
            ckpt.save_checkpoint(out_dir, prefix, model.state_dict(),
                                 {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()},
                                 {"epoch": epoch_done, "global_step": global_step,
                                  "iter_in_epoch": iter_in_epoch, "metrics": metrics})
        if queue is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            paddle.save(queue.state(), str(ckpt.queue_path(out_dir, prefix, rt.rank)))

    # ---- epochs ----------------------------------------------------------------------------------------
    window, epoch_loss = Window(), Window()
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        if queue_per_rank and queue is None and epoch >= int(model_cfg.get("epoch_queue_starts", 15)):
            queue = Queue(len(crops_for_assign), queue_per_rank, int(get(config, "Model.backbone.output_dim", 128)))
        net.train()
        epoch_loss.reset()
        tic = time.perf_counter()
        for it, crops in enumerate(loader):
            if it < skip_batches:  # resuming mid-epoch: these batches already trained
                tic = time.perf_counter()
                continue
            if it == 5:  # PASSL resets its timing windows at batch 5
                window.reset("batch_cost", "reader_cost")
            reader_cost = time.perf_counter() - tic
            if not global_step:
                timeline.mark("first_batch")
            lr = lr_at(global_step, epoch)

            # normalise the prototypes (no grad)
            normalize_prototypes(model)

            # forward: crops of one resolution in one pass; head once over all crops
            with autocast():
                embedding, scores = net(crops)

            # swapped prediction against Sinkhorn codes (queue prepended for Sinkhorn only)
            queue_scores = queue.scores(model.res_model.prototypes.weight) if queue is not None else None
            loss = swav_loss(scores, batch_size, nmb_crops, crops_for_assign, temperature, epsilon,
                             sinkhorn_iters, queue_scores=queue_scores, all_reduce=all_reduce)

            # backward, drop prototype gradients while frozen, LARC step
            scaler.scale_loss(loss).backward()
            scale_used = scaler.scale
            if stepped := scaler.unscale_and_check(all_params):
                frozen = prototype_names if global_step < freeze_niters else None
                optimizer.step(lr, frozen)
            optimizer.clear_grad()
            if queue is not None:
                queue.push(embedding, batch_size, crops_for_assign)

            # record and log (rank 0 prints PASSL's line every print_batch_step iterations)
            loss_value = float(loss)
            batch_cost = time.perf_counter() - tic
            global_step += 1
            if global_step == 1:
                timeline.mark("first_step")
            recorder.write(step=global_step, epoch=epoch + 1, iter=it, loss=loss_value, lr=lr,
                           batch_cost=batch_cost, reader_cost=reader_cost,
                           **({"loss_scale": scale_used, "stepped": stepped} if scaler.enabled else {}))
            window.add(loss=loss_value, batch_cost=batch_cost, reader_cost=reader_cost)
            epoch_loss.add(loss=loss_value)
            if it % print_every == 0:
                mean_cost = window.mean("batch_cost")
                left = (epochs - epoch) * iters_per_epoch - it - 1
                log.info(format_train_line(
                    epoch + 1, epochs, it, iters_per_epoch, lr, {"loss": window.mean("loss")}, mean_cost,
                    window.mean("reader_cost"), batch_size * rt.world_size / max(mean_cost, 1e-12),
                    peak_memory_gb(rt.device), left * mean_cost,
                ))
                window.reset()
            if max_train_step is not None and global_step >= max_train_step:
                timeline.mark("last_step")
                log.info(format_early_stop(global_step, max_train_step))
                save("latest", epoch, it + 1, {"loss": epoch_loss.mean("loss")})
                timeline.mark("saved")
                recorder.close()
                loader.close()
                timeline.write(records, rt.rank)
                return 0
            tic = time.perf_counter()
        skip_batches = 0
        if not math.isfinite(epoch_loss.mean("loss")):
            log.info(f"loss is not finite in epoch {epoch + 1}")
        log.info(format_epoch_line(epoch + 1, epochs, {"loss": epoch_loss.mean("loss")}))
        save("latest", epoch + 1, 0, {"loss": epoch_loss.mean("loss")})
    timeline.mark("last_step")
    recorder.close()
    timeline.write(records, rt.rank)
    return 0
