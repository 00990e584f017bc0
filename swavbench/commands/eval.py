"""`swavbench eval -c CONFIG --pretrained PREFIX [--profile cpu] [-o K=V ...] [--nproc N]`: a full protocol.

Runs the linear probe or fine-tune config to the end (all epochs; `Global.max_train_step` is cleared, so
not the CI step budget) from the pre-trained trunk PREFIX, then prints one line with the final and the best
top-1 / top-5. One rank runs as a plain subprocess in its own session (its output streamed here); more go
through `python -m paddle.distributed.launch --nproc_per_node N --max_restart 0` (swavbench.harness.launch).
Per-epoch results come from `<output_dir>/log/evals.jsonl`, written by the trainer.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="run a full linear-probe / fine-tune protocol and print top-1/top-5")
    parser.add_argument("-c", "--config", required=True, help="Classification config (path or name in configs/)")
    parser.add_argument("--pretrained", required=True, metavar="PREFIX",
                        help="pre-trained checkpoint prefix (no extension; .pdparams / .npz accepted)")
    parser.add_argument("-p", "--profile", default=None, help="override set from configs/profiles (e.g. cpu)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="Section.key=value",
                        help="override a config value (repeatable)")
    parser.add_argument("--nproc", type=int, default=1, metavar="N", help="ranks on this machine (default 1)")
    parser.add_argument("--stall", type=float, default=3600.0, metavar="S",
                        help="with --nproc > 1: no new log output for S seconds = hang (default 3600)")
    parser.set_defaults(func=run)


def summarize(evals: list[dict]) -> str:
    """`final top-1 ... / top-5 ... (epoch e), best top-1 ... / top-5 ... (epoch b)` from evals.jsonl records."""
    final, best = evals[-1], max(evals, key=lambda r: r["top1"])
    return (f"final top-1 {final['top1']:.5f} / top-5 {final['top5']:.5f} (epoch {final['epoch']}), "
            f"best top-1 {best['top1']:.5f} / top-5 {best['top5']:.5f} (epoch {best['epoch']}); "
            f"{final['samples']} eval images")


def _train_args(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    out = ["-c", args.config] + (["--profile", args.profile] if args.profile else [])
    for item in overrides:
        out += ["-o", item]
    return out


def _run_one(train_args: list[str], log_dir: Path) -> int:
    """One rank: a subprocess in its own session, output streamed, killed with its group on Ctrl-C."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env["PADDLE_LOG_DIR"] = str(log_dir)  # where the trainer writes steps / evals records
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.Popen([sys.executable, "-m", "swavbench.cli", "train", *train_args], env=env,
                            start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise


def _run_launch(train_args: list[str], log_dir: Path, nproc: int, stall_s: float) -> int:
    from swavbench.errors import RunFailed
    from swavbench.harness import launch

    print(f"swavbench eval: launching {nproc} ranks; logs in {log_dir}/workerlog.*", flush=True)
    spec = launch.LaunchSpec(worker=launch.default_worker(train_args), nproc_per_node=nproc, log_dir=log_dir,
                             timeout_s=float("inf"), stall_s=stall_s)
    result = launch.run(spec)
    worker_log = log_dir / "workerlog.0"
    if worker_log.is_file():
        for line in worker_log.read_text(errors="replace").splitlines():
            if "[Eval]" in line or "error" in line.lower():
                print(line)
    if not result.ok:
        raise RunFailed(result.status, f"{result.message}; see {log_dir}/workerlog.*")
    return 0


def run(args: argparse.Namespace) -> int:
    """Validate, run the protocol to the end, print the final / best accuracies (exit code of the run)."""
    from swavbench.errors import ConfigError, RunFailed
    from swavbench.train.config import get, load_config
    from swavbench.train.pretrained import resolve_file

    if args.nproc < 1:
        raise ConfigError(f"--nproc {args.nproc}: must be >= 1")
    overrides = [*args.override, f"Global.pretrained_model={args.pretrained}", "Global.max_train_step=None"]
    config = load_config(args.config, overrides, args.profile)  # fail on config errors before any launch
    if get(config, "Global.task_type") != "Classification":
        raise ConfigError(f"{args.config}: Global.task_type must be Classification (a linear probe or fine-tune)")
    resolve_file(args.pretrained)  # a missing checkpoint fails here (exit 5), not after the launch
    log_dir = Path(get(config, "Global.output_dir", "./output")) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    records = log_dir / "evals.jsonl"
    records.unlink(missing_ok=True)
    train_args = _train_args(args, overrides)
    code = _run_one(train_args, log_dir) if args.nproc == 1 else _run_launch(train_args, log_dir, args.nproc,
                                                                             args.stall)
    if code != 0:
        return code
    if not records.is_file() or not records.read_text().strip():
        raise RunFailed("no_eval", f"the run finished without an evaluation ({records} is empty)")
    evals = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    print(f"swavbench eval: {summarize(evals)}", flush=True)
    return 0
