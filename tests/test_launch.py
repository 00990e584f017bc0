"""swavbench.harness.launch with the fake worker: real `paddle.distributed.launch`, scripted faults, no orphans."""

from __future__ import annotations

import io
import signal
import socket
import time
from pathlib import Path

import pytest

from swavbench.errors import EnvironmentProblem
from swavbench.harness import launch, procs
from swavbench.harness.progress import Progress

FAKE = Path(__file__).resolve().parent / "fake_worker.py"
CONFIG = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """640 empty *.jpg: the fake worker only counts them (iters = 640 // (8 x ranks))."""
    root = tmp_path_factory.mktemp("fakedata")
    folder = root / "train" / "a"
    folder.mkdir(parents=True)
    for i in range(640):
        (folder / f"{i}.jpg").touch()
    return root


def spec(
    tmp_path: Path, data_root: Path, nnodes: int = 1, nproc: int = 2, steps: int = 11, env: dict | None = None, **kw
) -> launch.LaunchSpec:
    worker = (
        str(FAKE),
        "train",
        "-c",
        CONFIG,
        "--profile",
        "cpu",
        "-o",
        f"Global.max_train_step={steps}",
        "-o",
        "Global.print_batch_step=5",
        "-o",
        f"DataLoader.Train.dataset.root={data_root}",
    )
    fields = dict(
        worker=worker,
        nproc_per_node=nproc,
        log_dir=tmp_path / "log",
        nnodes=nnodes,
        node_ranks=tuple(range(nnodes)),
        env=env or {},
        stall_s=8.0,
        grace_s=3.0,
    )
    fields.update(kw)
    return launch.LaunchSpec(**fields)


def no_leftovers(res: launch.LaunchResult) -> None:
    assert res.survivors == []
    assert res.port_free is True  # --master, or the one launch picked (read from envlog.0)


def test_clean_run_all_ranks_exit_zero(tmp_path, data_root):
    res = launch.run(spec(tmp_path, data_root))
    assert res.status == "completed", res.message
    assert [(r.rank, r.exit_code) for r in res.ranks] == [(0, 0), (1, 0)]
    log = tmp_path / "log"
    assert {"workerlog.0", "workerlog.1", "steps.0.jsonl", "steps.1.jsonl", "run_header.json"} <= {
        p.name for p in log.iterdir()
    }
    assert "--max_restart" in res.commands[0] and res.commands[0][res.commands[0].index("--max_restart") + 1] == "0"
    assert launch.rank_map(log) == {0: 0, 1: 1}
    assert res.peak_rss_mb > 0
    no_leftovers(res)


def test_build_command_forms():
    s = launch.LaunchSpec(worker=("w", "train"), nproc_per_node=4, log_dir=Path("/x"), nnodes=2, node_ranks=(0, 1))
    cmd = launch.build_command(s, 1, "127.0.0.1:23456", "job")
    assert cmd[1:3] == ["-m", "paddle.distributed.launch"]
    assert cmd[cmd.index("--nnodes") + 1] == "2" and cmd[cmd.index("--rank") + 1] == "1"
    assert cmd[cmd.index("--master") + 1] == "127.0.0.1:23456"
    assert cmd[cmd.index("--log_dir") + 1] == "/x/node1" and cmd[-2:] == ["w", "train"]
    gpu = launch.LaunchSpec(worker=("w",), nproc_per_node=8, log_dir=Path("/x"), devices="0,1")
    gcmd = launch.build_command(gpu, 0, None, "job")
    assert "--devices" in gcmd and "--nproc_per_node" not in gcmd and "--nnodes" not in gcmd


def test_launcher_env_scrubs_launch_overrides():
    base = {
        "PADDLE_MASTER": "10.0.0.1:1",
        "PADDLE_TRAINER_ID": "3",
        "PADDLE_NNODES": "4",
        "PATH": "/bin",
        "OMP_NUM_THREADS": "16",
    }
    env = launch.launcher_env(
        launch.LaunchSpec(worker=("w",), nproc_per_node=1, log_dir=Path("."), threads=1), "tok", base
    )
    assert "PADDLE_MASTER" not in env and "PADDLE_TRAINER_ID" not in env and "PADDLE_NNODES" not in env
    assert env["OMP_NUM_THREADS"] == "1" and env["PATH"] == "/bin" and env[launch.TOKEN_ENV] == "tok"


def test_cluster_env_is_honoured():
    assert launch.cluster_from_env({}) == {}
    got = launch.cluster_from_env(
        {"PADDLE_NNODES": "4", "PADDLE_MASTER": "10.0.0.1:8090", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    )
    assert got == {"nnodes": 4, "master": "10.0.0.1:8090", "node_ranks": (-1,), "devices": "0,1,2,3,4,5,6,7"}


@pytest.mark.parametrize("mode,code", [("kill", -9), ("raise", 1)])
def test_dead_rank_is_named(tmp_path, data_root, mode, code):
    env = {
        "FAKE_CRASH_RANK": "1",
        "FAKE_CRASH_STEP": "4",
        "FAKE_CRASH_MODE": mode,
        "FAKE_SYNC_DIR": str(tmp_path),
        "FAKE_STEP_S": "0.05",
    }
    t0 = time.monotonic()
    res = launch.run(spec(tmp_path, data_root, env=env, steps=200))
    assert res.status == "failed" and res.failed_rank == 1
    assert f"rank 1 exited with code {code}" in res.message
    assert res.ranks[1].exit_code == code and res.ranks[1].note == "failed"
    assert time.monotonic() - t0 < 20  # launch notices within seconds, far below the watchdog
    assert (tmp_path / "log" / "launcher.0.log").read_text().count("Run Pod") == 1  # never restarted
    no_leftovers(res)


def test_sigstop_hang_is_caught_by_the_watchdog(tmp_path, data_root):
    env = {
        "FAKE_HANG_RANK": "1",
        "FAKE_HANG_STEP": "3",
        "FAKE_HANG_MODE": "sigstop",
        "FAKE_SYNC_DIR": str(tmp_path),
        "FAKE_STEP_S": "0.05",
    }
    t0 = time.monotonic()
    res = launch.run(spec(tmp_path, data_root, env=env, steps=200, stall_s=4.0))
    assert res.status == "stalled" and res.failed_rank == 1
    assert "rank 1 stopped" in res.message and "stopped (state T)" in res.ranks[1].note
    assert time.monotonic() - t0 < 4.0 + 15
    no_leftovers(res)


def test_a_dead_rank_whose_peers_wait_is_a_death_not_a_hang(tmp_path, data_root):
    """The watchdog fires before launch reports the death (as on a loaded machine; here a 1 s watchdog): a rank
    process vanished while the others wait in a collective, so launch gets its grace to report the rank."""
    env = {"FAKE_CRASH_RANK": "2", "FAKE_CRASH_STEP": "5", "FAKE_CRASH_MODE": "kill",
           "FAKE_SYNC_DIR": str(tmp_path), "FAKE_STEP_S": "0.05"}  # fmt: skip
    res = launch.run(spec(tmp_path, data_root, nproc=4, env=env, steps=200, stall_s=1.0))
    assert res.status == "failed" and res.failed_rank == 2, res.message
    assert "hang" not in res.message
    no_leftovers(res)


def test_sleeping_hang_and_timeout(tmp_path, data_root):
    env = {"FAKE_HANG_RANK": "0", "FAKE_HANG_STEP": "2"}
    res = launch.run(spec(tmp_path, data_root, env=env, stall_s=3.0))
    assert res.status == "stalled" and "no progress" in res.message
    no_leftovers(res)
    slow = launch.run(spec(tmp_path / "t", data_root, env={"FAKE_STEP_S": "1"}, steps=100, timeout_s=6.0))
    assert slow.status == "timeout" and "6 s" in slow.message
    no_leftovers(slow)


def test_two_simulated_nodes(tmp_path, data_root):
    res = launch.run(spec(tmp_path, data_root, nnodes=2))
    assert res.status == "completed", res.message
    assert [(r.rank, r.node, r.local_rank) for r in res.ranks] == [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)]
    assert launch.rank_map(tmp_path / "log" / "node1") == {0: 2, 1: 3}
    assert res.master and res.master.startswith("127.0.0.1:")
    no_leftovers(res)


def test_dead_rank_on_another_node_stops_every_node(tmp_path, data_root):
    env = {
        "FAKE_CRASH_RANK": "3",
        "FAKE_CRASH_STEP": "3",
        "FAKE_CRASH_MODE": "kill",
        "FAKE_SYNC_DIR": str(tmp_path),
        "FAKE_STEP_S": "0.05",
    }
    res = launch.run(spec(tmp_path, data_root, nnodes=2, env=env, steps=200))
    assert res.status == "failed" and res.failed_rank == 3 and "rank 3 exited with code -9" in res.message
    assert res.ranks[0].note == "stopped by swavbench after another node failed"
    no_leftovers(res)


def test_stray_grandchild_is_killed_and_reported(tmp_path, data_root):
    res = launch.run(spec(tmp_path, data_root, env={"FAKE_STRAY": "1"}))
    assert res.status == "completed"
    assert len(res.strays) == 1 and "sleep(600)" in res.strays[0]
    no_leftovers(res)


def test_master_port_in_use_is_an_environment_error(tmp_path, data_root):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not procs.port_is_free(port)
        with pytest.raises(EnvironmentProblem, match=f"master port 127.0.0.1:{port} is already in use"):
            launch.run(spec(tmp_path, data_root, nnodes=2, master=f"127.0.0.1:{port}"))
    assert procs.port_is_free(port)


def test_progress_plain_and_tty(tmp_path):
    log = tmp_path / "workerlog.0"
    line = (
        "[2026/01/01 00:00:00] passl INFO: [Train][Epoch 1/1][Iter: {i}/40] lr: 0.600000, loss: 7.{i:05d}, "
        "batch_cost: 0.10000, reader_cost: 0.00100, ips: 160.00000 images/sec, eta: 0:00:01\n"
    )
    plain, tty = io.StringIO(), io.StringIO()
    p1, p2 = Progress(log, "c", 21, plain, tty=False), Progress(log, "c", 21, tty, tty=True)
    log.write_text(line.format(i=0) + line.format(i=5)[:40])  # a line still being written is not shown
    for p in (p1, p2):
        p.update()
    with open(log, "a") as handle:
        handle.write(line.format(i=5)[40:] + line.format(i=5))  # + a Paddle-style duplicate
    for p in (p1, p2):
        p.update()
        p.close()
    rows = plain.getvalue().splitlines()
    assert len(rows) == 2 and rows[0].startswith("[c] step 1/21  loss 7.00000  ips 160.00")
    assert "step 6/21" in rows[1] and "eta" in rows[1]
    assert tty.getvalue().count("\r\x1b[K") == 2 and tty.getvalue().endswith("\n")


def test_signal_names():
    assert procs.signal_name(-9) == " (SIGKILL)" and procs.signal_name(1) == ""
    assert signal.SIGTERM == 15


def test_the_first_rank_to_vanish_is_remembered():
    from swavbench.harness.launch import LaunchResult, _note_vanished

    res = LaunchResult("completed", "", [], {}, [], {}, 0.0, 0.0)
    _note_vanished(res, {0, 1})  # ranks still starting: nothing vanished
    _note_vanished(res, set(range(8)))
    assert res.first_gone == []
    _note_vanished(res, {0, 1, 2, 4, 5, 6, 7})  # rank 3 killed, the others still run
    _note_vanished(res, {1, 2})  # rank 0 aborts on a collective timeout afterwards
    _note_vanished(res, set())  # the launcher stops everything
    assert res.first_gone == [3] and res.seen_ranks == set(range(8))


def test_a_peer_that_aborted_on_a_gloo_timeout_is_not_named_first(tmp_path):
    """Seen in CI: rank 3 killed, paddle's launcher reported rank 0, which aborted on a gloo timeout."""
    from swavbench.harness.launch import LaunchResult, LaunchSpec, _judge_exits

    spec = LaunchSpec(worker=("x",), nproc_per_node=4, log_dir=tmp_path)
    (tmp_path / "launcher.0.log").write_text(
        "LAUNCH ERROR Container rank 0 status failed cmd ['x'] code -6 log log/workerlog.0\n"
    )
    (tmp_path / "workerlog.0").write_text("terminate called after throwing an instance of 'gloo::TimeoutException'\n")
    res = LaunchResult("completed", "", [], {0: -6}, [], {0: tmp_path}, 0.0, 0.0)
    res.seen_ranks, res.first_gone = {0, 1, 2, 3}, [3]
    _judge_exits(spec, res)
    assert res.status == "failed" and res.failed_rank == 3
    assert res.message.startswith("rank 3 died first (its process vanished while the others still ran), then "
                                  "rank 0 exited with code -6 (SIGABRT)")
    (tmp_path / "workerlog.0").write_text("Traceback ...\nRuntimeError: boom\n")  # rank 0's own crash
    res = LaunchResult("completed", "", [], {0: -6}, [], {0: tmp_path}, 0.0, 0.0)
    res.seen_ranks, res.first_gone = {0, 1, 2, 3}, [3]
    _judge_exits(spec, res)
    assert res.failed_rank == 0 and res.message.startswith("rank 0 exited with code -6")


def test_of_ranks_gone_between_two_scans_the_one_the_launcher_terminated_is_not_named_first(tmp_path):
    """Seen in a suite run: rank 3 SIGKILLed, the launcher terminated the others at once, and rank 0 (SIGTERM)
    was gone by the same process scan as rank 3; rank 2, aborted on a gloo error, was reported."""
    from swavbench.harness.launch import LaunchResult, LaunchSpec, _judge_exits

    spec = LaunchSpec(worker=("x",), nproc_per_node=4, log_dir=tmp_path)
    (tmp_path / "launcher.0.log").write_text(
        "LAUNCH ERROR Container rank 2 status failed cmd ['x'] code -6 log log/workerlog.2\n"
    )
    (tmp_path / "workerlog.2").write_text("terminate called after throwing an instance of 'gloo::IoException'\n")
    (tmp_path / "workerlog.0").write_text("FatalError: `Termination signal` is detected by the operating system.\n")
    (tmp_path / "workerlog.3").write_text("[2026/12/01 17:49:20] ppcls INFO: [Train][Epoch 1/100]\n")
    res = LaunchResult("completed", "", [], {0: -6}, [], {0: tmp_path}, 0.0, 0.0)
    res.seen_ranks, res.first_gone = {0, 1, 2, 3}, [0, 3]
    _judge_exits(spec, res)
    assert res.failed_rank == 3 and res.message.startswith("rank 3 died first")


def test_the_run_names_the_silent_rank_when_launch_reports_a_peer_that_aborted(tmp_path):
    """CI, ef04ec7: every peer aborted before the process scan saw rank 3 gone; the logs still name rank 3."""
    import shutil

    from swavbench.harness.launch import LaunchResult, LaunchSpec, _judge_exits
    from swavbench.harness.metrics import analyse_logdir
    from swavbench.harness.runner import _launch_failure

    shutil.copytree(Path(__file__).parent / "fixtures" / "logs" / "peer-abort", tmp_path / "log")
    spec = LaunchSpec(worker=("x",), nproc_per_node=8, log_dir=tmp_path / "log")
    res = LaunchResult("completed", "", [], {0: -6}, [], {0: tmp_path / "log"}, 0.0, 0.0)
    res.seen_ranks = set(range(8))  # first_gone stays empty: all vanished between two scans
    _judge_exits(spec, res)
    assert res.failed_rank == 0 and res.message == "rank 0 exited with code -6 (SIGABRT)"
    err = _launch_failure(res, analyse_logdir(tmp_path / "log", "20/46"), spec)
    assert err.kind == "rank_died" and res.failed_rank == 3
    assert str(err).startswith("rank 3 died first (died at step 6: its log ends without an error while rank(s) "
                               "0-2,4-7 aborted on a collective error")
    assert str(err).endswith("), then rank 0 exited with code -6 (SIGABRT)")
    assert err.details[0] == "last lines of workerlog.3:"
