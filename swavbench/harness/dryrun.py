"""`swavbench run CASE --dry-run`: what a run would launch and judge, printed without launching anything.

Built from the same pieces the run uses (runner.launch_spec, launch.build_command / launcher_env,
baselines.baseline_path), so the printed command is the one that would run. Nothing here imports paddle:
it works on a machine without a GPU for the gpu profile, with PASSL's PADDLE_NNODES / PADDLE_MASTER /
CUDA_VISIBLE_DEVICES as given in the environment.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from typing import Mapping, Optional

from swavbench.harness import baselines, launch
from swavbench.harness.baselines import Baseline, baseline_path, gpu_profile, load_baseline
from swavbench.harness.cases import Plan
from swavbench.resources import PACKAGED_BASELINES

PASSL_VARS = ("PADDLE_NNODES", "PADDLE_MASTER", "CUDA_VISIBLE_DEVICES")
REFERENCE_PROFILE = "passl-a100"  # PASSL's published 8x A100 figures (swavbench/resources/baselines/)
# the launchers log into a fresh temporary folder (runner._attempt), copied to reports/runs/<run-id>/log after
RUN_DIR = Path(tempfile.gettempdir()) / "swavbench-<random>"


def node_commands(plan: Plan, environ: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """(which nodes, launcher argv) for every node of the run: one entry per launcher started here, or one
    for all nodes when PASSL's cluster variables make every node run the same command."""
    from swavbench.harness.runner import launch_spec

    spec = launch_spec(plan, RUN_DIR)
    master = spec.master if spec.nnodes > 1 and spec.master else "127.0.0.1:<a free port, picked at launch>"
    job = "swavbench-<8 hex digits of the run token>"
    if spec.node_ranks == (-1,):  # the cluster form: the same command on each node
        nodes = f"each of the {spec.nnodes} nodes" if spec.nnodes > 1 else "this node"
        return [(nodes, launch.build_command(spec, -1, master, job))]
    return [(f"node {n} (launched here)", launch.build_command(spec, n, master, job)) for n in spec.node_ranks]


def launcher_environment(plan: Plan, environ: Mapping[str, str]) -> tuple[dict, list[str]]:
    """(variables swavbench sets or keeps for the launchers, variables it removes so launch's flags win)."""
    from swavbench.harness.runner import launch_spec

    spec = launch_spec(plan, RUN_DIR)
    env = launch.launcher_env(spec, "<a new token per run>", base=environ)
    shown = {k: env[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONUNBUFFERED", launch.TOKEN_ENV)}
    shown.update({k: v for k, v in spec.env.items()})
    if "CUDA_VISIBLE_DEVICES" in env:
        shown["CUDA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"]
    removed = sorted(k for k in environ if k in launch.SCRUB_ENV)
    return shown, removed


def _baseline_lines(plan: Plan, baseline_dir: Path) -> tuple[list[str], Optional[Baseline]]:
    """Where the verdict's baseline comes from, and PASSL's published figures for the same case."""
    from swavbench.harness.runner import profile_of

    lines, baseline = [], None
    device = baselines.detect_gpu() if plan.device_profile == "gpu" else None
    if plan.device_profile == "gpu" and device is None:
        path = Path(baseline_dir) / "gpu-<model>-x<count>" / f"{plan.case.id}.json"
        lines.append(f"baseline: {path} (the profile key is made on the GPU node from paddle's device name "
                     "and count; this machine has no GPU)")
    else:
        profile = gpu_profile(*device) if device else profile_of(plan)
        path = baseline_path(baseline_dir, profile, plan.case.id)
        if path.is_file():
            baseline = load_baseline(path)
            m = baseline.metrics
            lines.append(f"baseline: {path}: loss {m['loss']}, ips {m['ips']}, max mem {m.get('max_mem')} at "
                         f"{m['marker']}" + ("" if m["marker"] == plan.marker else
                                             f" (its marker is not this run's {plan.marker}: it will not judge)"))
        else:
            lines.append(f"baseline: {path} (missing: the run will say how to record it)")
    reference = PACKAGED_BASELINES / REFERENCE_PROFILE / f"{plan.case.id}.json"
    if plan.device_profile == "gpu" and reference.is_file():
        ref = load_baseline(reference)
        same = ref.metrics["marker"] == plan.marker
        lines.append(
            f"PASSL's published figures: {reference} (loss {ref.metrics['loss']}, ips {ref.metrics['ips']}, "
            f"max mem {ref.metrics.get('max_mem')} at {ref.metrics['marker']}): "
            + (f"same marker: judge the run against them with `swavbench compare reports/runs/<run-id> --baseline "
               f"{reference} --allow-mismatch`" if same else
               f"their marker is not this run's {plan.marker} (PASSL's pre-train also reads val/): not comparable")
        )
    return lines, baseline


def _check_lines(plan: Plan, baseline: Optional[Baseline]) -> list[str]:
    tol = dict(baseline.tolerances) if baseline else plan.tolerances.as_dict()
    where = "the baseline's" if baseline else "the case's, which a new baseline records"
    mem = tol.get("max_mem", "exact")
    return [
        f"checks (tolerances: {where}):",
        f"  {plan.case.metric}: the text after `loss: ` on the {plan.marker} line == the baseline's "
        f"({tol.get('loss', 'exact')})",
        f"  ips: mean of the logged ips values without the first {plan.warmup_lines} line(s) (check_result's; "
        f"a baseline with ips_steady judges the steady-state rate), diff strictly inside +-{tol['ips_pct']:g}%",
        f"  max mem: the {plan.marker} line's value == the baseline's" if mem == "exact"
        else f"  max mem: {mem}",
        "  a failed run (crash, hang, NaN, missing marker) fails before any check; ips alone outside its band "
        "is rerun to confirm",
    ]


def _data_lines(plan: Plan) -> list[str]:
    inputs = plan.inputs
    if inputs is None:
        return ["data: not read (this case cannot run here, or the plan reads finished logs)"]
    source = "--data-root" if inputs.root_source == "given" else "the config's own root"
    subset = f", subset {inputs.subset_file}: {inputs.subset_images} images" if inputs.subset_file else ""
    lines = [
        f"data: {inputs.root} ({source}): {inputs.train_images} train images, {inputs.classes} classes{subset}",
        f"iters per epoch: {plan.iters_per_epoch} (batch {inputs.batch_size} x {plan.world_size} ranks, drop_last "
        f"{inputs.drop_last}, as the trainer's sampler counts)",
    ]
    weights = [o.split("=", 1)[1] for o in plan.overrides if o.startswith("Global.pretrained_model=")]
    if weights:
        lines.append(f"pre-trained weights: {weights[-1]}")
    return lines


def describe(plan: Plan, baseline_dir: Path, environ: Optional[Mapping[str, str]] = None) -> str:
    """The dry-run text of `plan`: nodes, commands, environment, data, marker, checks, baselines."""
    environ = os.environ if environ is None else environ
    s = plan.scale
    lines = [f"dry run of {plan.case.id} (PASSL {plan.case.passl_name}) on the {plan.device_profile} profile: "
             f"{s.nnodes} node(s) x {s.devices_per_node} device(s) = {plan.world_size} ranks; nothing is launched"]
    given = [f"{k}={environ[k]}" for k in PASSL_VARS if environ.get(k)]
    if plan.device_profile == "gpu":
        lines.append("PASSL cluster variables: " + (" ".join(given) if given else "none set (one node, "
                                                    "launch picks the devices)"))
    for nodes, argv in node_commands(plan, environ):
        lines.append(f"launch on {nodes} (logs copied to reports/runs/<run-id>/log after):")
        lines.append(f"  {shlex.join(argv)}")
    shown, removed = launcher_environment(plan, environ)
    lines.append("  environment (this shell's, plus): " + " ".join(f"{k}={v}" for k, v in shown.items()))
    if removed:
        lines.append(f"  removed from it, so that launch's flags above decide: {' '.join(removed)}")
    lines += _data_lines(plan)
    lines.append(f"marker: {plan.marker} (global step {plan.marker_step}, logged every {s.print_batch_step} steps)")
    base_lines, baseline = _baseline_lines(plan, baseline_dir)
    lines += _check_lines(plan, baseline) + base_lines
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)
