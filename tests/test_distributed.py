"""Real multi-process runs through paddle.distributed.launch on CPU (gloo)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle

from swavbench.train import sinkhorn
from tests.conftest import REPO, clean_env

LAUNCH = [sys.executable, "-m", "paddle.distributed.launch"]
SWAVBENCH = str(Path(sys.executable).with_name("swavbench"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    try:
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_rank_sinkhorn_equals_one_rank_on_the_concatenated_batch(tmp_path):
    proc = subprocess.run(LAUNCH + ["--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"), "--max_restart",
                                    "0", str(REPO / "tests" / "dist_sinkhorn_worker.py"), str(tmp_path)],
                          env=clean_env(PYTHONPATH=str(REPO)), capture_output=True, timeout=180)
    assert proc.returncode == 0, (tmp_path / "log" / "workerlog.0").read_text()[-2000:]
    scores = np.load(tmp_path / "scores.npy")
    single = sinkhorn(paddle.to_tensor(scores), 0.05, 3).numpy()
    both = np.concatenate([np.load(tmp_path / "q0.npy"), np.load(tmp_path / "q1.npy")])
    np.testing.assert_allclose(both, single, rtol=1e-5, atol=1e-7)


def test_two_nodes_of_two_ranks_on_localhost_train_as_one_job(synth_data, tmp_path):
    port = free_port()
    procs = []
    for node in range(2):
        cmd = LAUNCH + ["--nnodes", "2", "--master", f"127.0.0.1:{port}", "--rank", str(node),
                        "--nproc_per_node", "2", "--log_dir", str(tmp_path / f"node{node}"), "--max_restart", "0",
                        SWAVBENCH, "train", "-c", "swav_resnet50_224_pt_in1k_4n32c_dp_fp16o1", "--profile", "cpu",
                        "-o", f"DataLoader.Train.dataset.root={synth_data}", "-o", f"Global.output_dir={tmp_path}",
                        "-o", "Global.print_batch_step=1", "-o", "Global.max_train_step=4"]
        procs.append(subprocess.Popen(cmd, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    assert wait_all(procs, timeout=240) == [0, 0]
    # launch names worker logs by LOCAL rank on each node; our step records carry the global rank
    for node in ("node0", "node1"):
        assert sorted(p.name for p in (tmp_path / node).glob("workerlog.*")) == ["workerlog.0", "workerlog.1"]
    node0 = tmp_path / "node0"
    header = json.loads((node0 / "run_header.json").read_text())
    assert header["world_size"] == 4 and header["nnodes"] == 2
    # 8 classes x 16 images / (8 per rank x 4 ranks) = 4 iterations per epoch
    assert "[Train][Epoch 1/800][Iter: 3/4]" in (node0 / "workerlog.0").read_text()
    for rank in range(4):
        node = node0 if rank < 2 else tmp_path / "node1"
        records = [json.loads(x) for x in (node / f"steps.{rank}.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [1, 2, 3, 4]
        assert all(np.isfinite(r["loss"]) for r in records)
