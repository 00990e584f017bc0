"""The training worker end to end on CPU: tiny runs of the real loop through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from tests.conftest import REPO, clean_env, swavbench_cmd

PT = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"


def train(data: Path, out: Path, *overrides: str, check: bool = True, env: dict | None = None):
    cmd = swavbench_cmd("train", "-c", PT, "--profile", "cpu", "-o", f"DataLoader.Train.dataset.root={data}",
                        "-o", f"Global.output_dir={out}", "-o", "Global.print_batch_step=1")
    for item in overrides:
        cmd += ["-o", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or clean_env(), timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def steps(out: Path, rank: int = 0) -> list[dict]:
    return [json.loads(line) for line in (out / f"steps.{rank}.jsonl").read_text().splitlines()]


def log_losses(stdout: str) -> list[str]:
    return [line.split("loss: ")[1].split(",")[0] for line in stdout.splitlines() if "[Train][Epoch" in line
            and "[Iter:" in line]


def test_loss_decreases_on_easy_data(synth_data, tmp_path):
    proc = train(synth_data, tmp_path, "Global.max_train_step=30")
    losses = [r["loss"] for r in steps(tmp_path)]
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1, losses
    assert "global_step(30) >= max_train_step(30), training stops early." in proc.stdout


def test_two_identical_runs_give_identical_loss_strings(synth_data, tmp_path):
    first = train(synth_data, tmp_path / "a", "Global.max_train_step=6")
    second = train(synth_data, tmp_path / "b", "Global.max_train_step=6")
    assert log_losses(first.stdout) == log_losses(second.stdout) and len(log_losses(first.stdout)) == 6
    assert [r["loss"] for r in steps(tmp_path / "a")] == [r["loss"] for r in steps(tmp_path / "b")]
    third = train(synth_data, tmp_path / "c", "Global.max_train_step=6", "Global.seed=32")
    assert log_losses(third.stdout) != log_losses(first.stdout)


def test_run_header_and_step_records_say_what_really_ran(synth_data, tmp_path):
    proc = train(synth_data, tmp_path, "Global.max_train_step=3")
    header = json.loads((tmp_path / "run_header.json").read_text())
    assert header["device"] == "cpu" and header["world_size"] == 1 and header["threads"] == 1
    assert header["precision_requested"] == "fp16 O1" and header["precision_effective"] == "fp32"
    assert "ran fp32 on cpu" in header["precision_note"]
    assert header["paddle_version"] == paddle.__version__ and header["seed"] == 31
    assert "host_memory_stat_peak_value" in header["max_mem_source"]
    assert "[swavbench] run header:" in proc.stdout
    record = steps(tmp_path)[0]
    assert set(record) >= {"step", "loss", "lr", "batch_cost", "reader_cost"} and record["step"] == 1


def test_log_line_round_trips_through_the_parser(synth_data, tmp_path):
    from swavbench.harness.logparse import parse_log_text

    proc = train(synth_data, tmp_path, "Global.max_train_step=4", "Global.print_batch_step=2")
    parsed = parse_log_text(proc.stdout)
    assert [r.marker for r in parsed.records] == ["0/16", "2/16"]
    recs = steps(tmp_path)
    first = parsed.records[0]
    assert first.metrics["loss"] == f"{recs[0]['loss']:.5f}"
    assert first.lr == pytest.approx(recs[0]["lr"], abs=1e-6)
    assert first.max_mem is not None and float(first.max_mem) >= 0
    assert parsed.early_stop


def test_prototypes_stay_frozen_for_the_configured_global_iterations(synth_data, tmp_path):
    from swavbench.train.config import load_config
    from swavbench.train.model import build_pretrain_model, normalize_prototypes
    from swavbench.train.runtime import seed_everything

    def prototypes(max_step: int) -> np.ndarray:
        out = tmp_path / f"s{max_step}"
        # 16 iterations per epoch: freezing must count global iterations, across the epoch boundary
        train(synth_data, out, f"Global.max_train_step={max_step}", "Model.freeze_prototypes_niters=18")
        state = paddle.load(str(out / "swav_resnet50_pretrain" / "latest.pdparams"))
        return state["res_model.prototypes.weight"].numpy()

    config = load_config(PT, profile="cpu")
    seed_everything(31)
    model = build_pretrain_model(config)
    normalize_prototypes(model)
    initial = model.res_model.prototypes.weight.numpy()
    np.testing.assert_allclose(prototypes(18), initial, rtol=1e-6)  # frozen through step 18 (epoch 2)
    assert not np.allclose(prototypes(19), initial, rtol=1e-4)  # the 19th update moves them


def test_resume_from_checkpoint_continues_exactly(synth_data, tmp_path):
    straight = train(synth_data, tmp_path / "straight", "Global.max_train_step=6")
    train(synth_data, tmp_path / "part", "Global.max_train_step=3")
    prefix = tmp_path / "part" / "swav_resnet50_pretrain" / "latest"
    for ext in (".pdparams", ".pdopt", ".pdstates"):
        assert prefix.with_suffix(ext).is_file()
    states = paddle.load(str(prefix.with_suffix(".pdstates")))
    assert states["global_step"] == 3 and states["epoch"] == 0 and states["iter_in_epoch"] == 3
    resumed = train(synth_data, tmp_path / "part", "Global.max_train_step=6", f"Global.checkpoint={prefix}")
    assert log_losses(resumed.stdout) == log_losses(straight.stdout)[3:]


def test_queue_is_used_once_full(synth_data, tmp_path):
    # 16 iterations/epoch at batch 8; a queue of 32 per rank fills after 4 steps
    with_queue = train(synth_data, tmp_path / "q", "Global.max_train_step=8", "Model.queue_length=32",
                       "Model.epoch_queue_starts=0")
    without = train(synth_data, tmp_path / "n", "Global.max_train_step=8")
    q, n = log_losses(with_queue.stdout), log_losses(without.stdout)
    assert q[:4] == n[:4]  # identical while the queue fills (steps 1-4); step 5 is the first to use it
    assert q[4] != n[4]
    assert json.loads((tmp_path / "q" / "run_header.json").read_text())["queue_length_per_rank"] == 32


@pytest.mark.parametrize(
    "overrides, env, exit_code, words",
    [
        (["DataLoader.Train.dataset.root=/nonexistent/data"], {}, 4, "/nonexistent/data"),
        (["Model.epsilonn=0.1"], {}, 3, "Model.epsilonn: unknown key (did you mean Model.epsilon?)"),
        (["Global.epochs=three"], {}, 3, "Global.epochs: expected int"),
        (["Model.queue_length=20"], {"PADDLE_TRAINERS_NUM": "3"}, 3, "shorter than one global batch (8 x 3)"),
        (["Global.device=gpu"], {}, 3, "Global.device=gpu but this paddle has no usable GPU"),
    ],
)
def test_bad_input_gives_one_clear_line_and_an_exit_code(synth_data, tmp_path, overrides, env, exit_code, words):
    if "Global.device=gpu" in overrides and paddle.is_compiled_with_cuda():
        pytest.skip("this paddle has CUDA")
    proc = train(synth_data, tmp_path, *overrides, check=False, env=clean_env(**env))
    assert proc.returncode == exit_code, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower() and "warn" not in line.lower()]
    assert len(errors) == 1 and words in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_python_dash_m_entry_point(synth_data, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "swavbench.train", "-c", PT, "--profile", "cpu", "-o",
                           f"DataLoader.Train.dataset.root={synth_data}", "-o", f"Global.output_dir={tmp_path}",
                           "-o", "Global.max_train_step=1"], capture_output=True, text=True, env=clean_env(),
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[Train][Epoch 1/400][Iter: 0/16] lr: 0.075000, loss: " in proc.stdout  # 0.6 x batch 8 / 64
