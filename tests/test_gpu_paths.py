"""Every GPU-only branch of the trainer, run on CPU with stand-ins where paddle has no CPU kernel:
PASSL's runtime flags, the loss scaler under injected inf gradients, auto_cast O1 through the real training
step, SyncBatchNorm conversion of the real models, the `max mem` source. The run header says which ran."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import numpy as np
import paddle
import pytest

from swavbench.train import gpu
from swavbench.train.classify import Finetune
from swavbench.train.config import load_config
from swavbench.train.logger import format_train_line
from swavbench.train.model import build_pretrain_model
from swavbench.train.optim import PASSL_SCALER, DynamicLossScaler, LARCMomentum
from swavbench.train.runtime import peak_memory_gb
from tests.conftest import clean_env, swavbench_cmd

PASSL = Path(__file__).parent / "fixtures" / "passl-5c7359b"
PT = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"
CI_FLAGS = {"FLAGS_cudnn_exhaustive_search": 0, "FLAGS_cudnn_deterministic": 1}  # PASSL CI's -o Global.flags.*


# ---- runtime flags -----------------------------------------------------------------------------------------
def test_gpu_runtime_flags_are_passl_engine_defaults_updated_by_the_config():
    flags = gpu.runtime_flags({"flags": CI_FLAGS}, "gpu")
    assert flags == {"FLAGS_cudnn_exhaustive_search": 0, "FLAGS_cudnn_batchnorm_spatial_persistent": 1,
                     "FLAGS_max_inplace_grad_add": 8, "FLAGS_cudnn_deterministic": 1}
    assert gpu.flags_deterministic(flags)
    assert gpu.runtime_flags({}, "gpu") == gpu.PASSL_FLAGS  # a config without flags: PASSL's defaults
    assert gpu.runtime_flags({"deterministic": True}, "gpu")["FLAGS_cudnn_deterministic"] is True
    calls = []
    applied = gpu.apply_flags(flags, "gpu", set_flags=calls.append)  # a stand-in for paddle.set_flags
    assert calls == [{k: v} for k, v in flags.items()] and applied["set"] == flags
    # on cpu: the config's flags only; paddle's CPU build refuses cuDNN ones, so they are skipped and said
    assert gpu.runtime_flags({"flags": CI_FLAGS}, "cpu") == CI_FLAGS
    before = paddle.get_flags(["FLAGS_max_inplace_grad_add"])
    try:
        applied = gpu.apply_flags({**CI_FLAGS, "FLAGS_max_inplace_grad_add": 8}, "cpu")
        assert paddle.get_flags(["FLAGS_max_inplace_grad_add"])["FLAGS_max_inplace_grad_add"] == 8
        assert applied == {"set": {"FLAGS_max_inplace_grad_add": 8}, "skipped_on_cpu": CI_FLAGS}
    finally:
        paddle.set_flags(before)


# ---- loss scaler -----------------------------------------------------------------------------------------
def _param(value: float) -> paddle.Tensor:
    p = paddle.create_parameter([2], "float32", default_initializer=paddle.nn.initializer.Constant(value))
    p.stop_gradient = False
    return p


def _step(scaler: DynamicLossScaler, opt: LARCMomentum, p: paddle.Tensor, grad_scale: float) -> bool:
    """The loop's order: scaled loss, backward, unscale + check, step only when finite."""
    opt.clear_grad()
    scaler.scale_loss((p * grad_scale).sum()).backward()
    stepped = scaler.unscale_and_check([p])
    if stepped:
        opt.step(0.1)
    return stepped


def test_scaler_skips_backs_off_and_grows_under_injected_inf_grads():
    assert DynamicLossScaler(True).settings()["loss_scaling"] == 1024.0  # PASSL's GradScaler defaults
    p = _param(1.0)
    opt = LARCMomentum([("w", p)], larc=False, weight_decay=0.0)
    scaler = DynamicLossScaler.from_config(True, {"incr_every_n_steps": 3, "max_loss_scaling": 2048.0})
    inf = float("inf")
    # one overflow: the step is skipped, the scale kept (PASSL backs off after 2 in a row)
    assert _step(scaler, opt, p, inf) is False and scaler.scale == 1024.0 and scaler.skipped == 1
    np.testing.assert_array_equal(p.numpy(), [1.0, 1.0])  # no update from inf grads
    assert _step(scaler, opt, p, inf) is False and scaler.scale == 512.0  # the second in a row halves it
    # finite steps: the unscaled grad is the real one; growth after incr_every_n_steps in a row
    assert _step(scaler, opt, p, 1.0) is True
    np.testing.assert_allclose(p.numpy(), [0.9, 0.9], rtol=1e-6)  # lr 0.1 x grad 1 (the scale was divided out)
    assert _step(scaler, opt, p, 1.0) and _step(scaler, opt, p, 1.0) and scaler.scale == 1024.0
    for _ in range(3):
        _step(scaler, opt, p, 1.0)
    assert scaler.scale == 2048.0
    for _ in range(3):
        _step(scaler, opt, p, 1.0)
    assert scaler.scale == 2048.0  # capped at max_loss_scaling
    # an overflow between finite steps restarts the growth count
    _step(scaler, opt, p, 1.0)
    _step(scaler, opt, p, inf)
    _step(scaler, opt, p, 1.0)
    _step(scaler, opt, p, 1.0)
    assert scaler.good_steps == 2 and scaler.scale == 2048.0
    restored = DynamicLossScaler(True)
    restored.set_state_dict(scaler.state_dict())
    assert (restored.scale, restored.good_steps, restored.bad_steps) == (2048.0, 2, 0)
    static = DynamicLossScaler.from_config(True, {"use_dynamic_loss_scaling": False})
    for _ in range(3):
        assert _step(static, opt, p, inf) is False
    assert static.scale == PASSL_SCALER["init_loss_scaling"] and static.skipped == 3
    off = DynamicLossScaler(False)
    assert off.scale == 1.0 and _step(off, opt, p, 1.0) is True


# ---- auto_cast O1 and the scaler through the real training step --------------------------------------------
def _train(data: Path, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = swavbench_cmd("train", "-c", PT, "--profile", "cpu", "-o", f"DataLoader.Train.dataset.root={data}",
                        "-o", f"Global.output_dir={out}", "-o", "Global.print_batch_step=1")
    for item in overrides:
        cmd += ["-o", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_o1_auto_cast_and_scaler_run_through_the_real_training_step(synth_data, tmp_path):
    # bfloat16 makes the CPU step enter auto_cast(O1) with the loss scaler on, as a GPU step does; a scale
    # near fp32's limit injects inf gradients until it has backed off, then it grows every 2 finite steps
    top = 2.0**127
    _train(synth_data, tmp_path, "Global.max_train_step=14", "FP16.dtype=bfloat16",
           f"FP16.GradScaler.init_loss_scaling={top}", f"FP16.GradScaler.max_loss_scaling={top}",
           "FP16.GradScaler.decr_every_n_nan_or_inf=1", "FP16.GradScaler.incr_every_n_steps=2")
    header = json.loads((tmp_path / "run_header.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "steps.0.jsonl").read_text().splitlines()]
    assert len(records) == 14 and all(np.isfinite(r["loss"]) for r in records)
    stepped = [r["stepped"] for r in records]
    assert stepped[0] is False and True in stepped, stepped  # inf grads first: skipped; then real steps
    good = 0
    for now, nxt in zip(records, records[1:]):  # the scaler's rule, step by step, in the real loop
        good = good + 1 if now["stepped"] else 0
        want = min(now["loss_scale"] * (0.5 if not now["stepped"] else 2.0 if good == 2 else 1.0), top)
        good = 0 if good == 2 else good
        assert nxt["loss_scale"] == want, (now, nxt)
    scales = [r["loss_scale"] for r in records]
    assert any(b > a for a, b in zip(scales, scales[1:])), scales  # it grew again after backing off
    paths = header["gpu_paths"]
    assert paths["auto_cast"]["entered"] is True and paths["auto_cast"]["dtype"] == "bfloat16"
    assert paths["loss_scaler"]["enabled"] is True and paths["loss_scaler"]["ran"] is False  # cpu: exercised
    # what really ran: paddle either casts on cpu (bf16) or ignores auto_cast there, and the header says which
    ran = header["precision_effective"] == "bf16 O1"
    assert paths["auto_cast"]["ran"] is ran and header["precision_requested"] == "bf16 O1"
    assert ran or "ignores auto_cast here" in header["precision_note"]


def test_run_header_records_each_gpu_path_and_the_test_that_exercises_it(synth_data, tmp_path):
    _train(synth_data, tmp_path, "Global.max_train_step=1")
    paths = json.loads((tmp_path / "run_header.json").read_text())["gpu_paths"]
    assert set(paths) == set(gpu.CPU_TESTS) and not any(p["ran"] for p in paths.values())  # none ran on cpu
    tests_here = {n.name for n in ast.parse(Path(__file__).read_text()).body if isinstance(n, ast.FunctionDef)}
    for name, record in paths.items():
        file, test = record["exercised_by"].split("::")
        assert file == "tests/test_gpu_paths.py" and test in tests_here, name


# ---- SyncBatchNorm -----------------------------------------------------------------------------------------
def test_sync_batchnorm_conversion_of_the_real_models():
    assert gpu.sync_batchnorm_mode(True, "gpu", 8) == "SyncBatchNorm"  # what the trainers then convert
    assert gpu.sync_batchnorm_mode(True, "cpu", 8).startswith("BatchNorm per rank")
    assert gpu.sync_batchnorm_mode(True, "gpu", 1) == gpu.sync_batchnorm_mode(False, "gpu", 8) == "BatchNorm"
    paddle.seed(0)
    model = build_pretrain_model(load_config(PASSL / f"{PT}.yaml"))  # PASSL's ResNet-50 SwAV model
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    bns = gpu.count_batchnorms(model)
    converted, n = gpu.convert_sync_batchnorm(model)
    assert bns == 54 and n == 54  # 53 in the ResNet-50 trunk, 1 in the projection head
    assert gpu.count_batchnorms(converted) == gpu.count_batchnorms(converted, paddle.nn.SyncBatchNorm)
    after = converted.state_dict()
    assert list(after) == list(before)  # PASSL's checkpoint keys stay
    for key, value in before.items():
        np.testing.assert_array_equal(after[key].numpy(), value, err_msg=key)
    assert not after["res_model.encoder.layer1.0.bn3.weight"].numpy().any()  # zero-init residual kept
    finetune, n = gpu.convert_sync_batchnorm(Finetune("resnet50", 1000))
    assert n == 53 and gpu.count_batchnorms(finetune, paddle.nn.SyncBatchNorm) == 53


# ---- max mem ---------------------------------------------------------------------------------------------
class FakeCuda:
    """A stand-in for paddle.device.cuda: the peak allocated bytes of the device."""

    def __init__(self, peak_bytes: int) -> None:
        self.peak_bytes = peak_bytes

    def max_memory_allocated(self) -> int:
        return self.peak_bytes


def test_max_mem_reads_the_device_module():
    assert gpu.max_mem_source("gpu").startswith("paddle.device.cuda.max_memory_allocated")
    peak = peak_memory_gb("gpu", cuda=FakeCuda(int(8.37 * 1024**3)))
    assert peak == pytest.approx(8.37)
    line = format_train_line(1, 400, 200, 2502, 0.6, {"loss": 7.9}, 0.5, 0.001, 963.27, peak, 100)
    assert ", max mem: 8.37 GB, eta:" in line
    assert peak_memory_gb("cpu") > 0  # cpu: paddle's host allocator, whatever the device module says


# ---- precision plans ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fp16, device, entered, requested", [
    ({"level": "O1"}, "gpu", True, "fp16 O1"),
    ({"level": "O1"}, "cpu", False, "fp16 O1"),
    ({"level": "O1", "dtype": "bfloat16"}, "cpu", True, "bf16 O1"),
    ({"level": "O0"}, "gpu", False, "fp32"),
    (None, "gpu", False, "fp32"),
])
def test_amp_plan_follows_passl(fp16, device, entered, requested):
    plan = gpu.amp_plan({"FP16": fp16} if fp16 is not None else {}, device)
    assert (plan.entered, plan.requested) == (entered, requested)
    assert plan.autocast()() is not None


def test_o2_and_passl_default_level_are_refused():
    from swavbench.errors import ConfigError

    for section in ({"level": "O2"}, {}):  # PASSL's default level is O2 (a pure fp16 model)
        with pytest.raises(ConfigError, match="O2"):
            gpu.amp_plan({"FP16": section}, "gpu")
