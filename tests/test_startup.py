"""Start-up and exit of a training rank: the process-group rendezvous, the loader shutdown, the fast exit,
the rank's own command-line path and its timeline marks (issue 16, docs/performance.md)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from swavbench.train import rendezvous, timeline
from tests.conftest import REPO, clean_env


def test_store_endpoint_is_found_as_paddle_finds_it():
    assert rendezvous.store_endpoint({"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "6170"}) == ("10.0.0.1", 6170)
    assert rendezvous.store_endpoint({"PADDLE_MASTER": "127.0.0.1:4000"}) == ("127.0.0.1", 4000)
    assert rendezvous.store_endpoint({"PADDLE_TRAINER_ENDPOINTS": "1.2.3.4:5,1.2.3.4:6"}) == ("1.2.3.4", 5)
    assert rendezvous.store_endpoint({}) is None


def test_listening_ports_and_nodelay_on_the_sockets_of_one_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert port not in rendezvous.listening_ports()
        assert rendezvous.wait_until_listening(port, limit_s=0.05) is False
        server.listen()
        assert port in rendezvous.listening_ports()
        assert rendezvous.wait_until_listening(port, limit_s=1.0) is True
        with socket.create_connection(("127.0.0.1", port)) as client, socket.socket() as other:
            accepted, _ = server.accept()
            with accepted:
                assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
                assert rendezvous.set_nodelay(port) == 3  # the listener, the accepted one, the client
                for sock in (server, accepted, client):
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                assert other.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # not on that port


@pytest.mark.slow
def test_ranks_that_reach_the_store_first_do_not_sleep_paddles_3_s_retry(tmp_path):
    """Rank 0 comes 1 s late: unaided, the other ranks' first connect fails and paddle retries 3 s later."""
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "4", "--max_restart", "0",
           "--log_dir", str(tmp_path / "log"), str(REPO / "tests" / "rendezvous_worker.py"), str(tmp_path), "1.0",
           "fast"]
    proc = subprocess.run(cmd, env=clean_env(PYTHONPATH=str(REPO)), capture_output=True, timeout=240)
    assert proc.returncode == 0, (tmp_path / "log" / "workerlog.1").read_text()[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(4)]
    assert all(r["sum"] == 6.0 for r in ranks)  # the group works: 0 + 1 + 2 + 3
    assert all("TCP_NODELAY on" in r["how"] for r in ranks) and "waited" in ranks[1]["how"]
    formed = max(r["done"] for r in ranks) - ranks[0]["began"]
    assert formed < 2.5, f"the group formed {formed:.2f} s after rank 0 arrived (paddle's retry sleeps 3 s)"


def test_closing_a_loader_mid_epoch_skips_paddles_one_second_shutdown_sleep(synth_data):
    from swavbench.train.data import build_pretrain_loader

    config = {"DataLoader": {"Train": {"dataset": {"root": str(synth_data), "size_crops": [32, 16],
                                                   "num_crops": [2, 2]},
                                       "sampler": {"batch_size": 4}, "loader": {"num_workers": 0}}}}
    loader, sampler = build_pretrain_loader(config, rank=0, world_size=1, seed=0)
    sampler.set_epoch(0)
    batches = iter(loader)
    next(batches), next(batches)  # the reader thread now waits on the full prefetch queue
    thread = loader._batches._thread
    start = time.perf_counter()
    loader.close()
    took = time.perf_counter() - start
    assert not thread.is_alive()
    assert took < 0.9, f"close took {took:.2f} s (paddle's own shutdown sleeps 1 s)"
    loader.close()  # a second close is a no-op


def test_loaders_left_mid_epoch_by_any_task_are_closed_at_the_end(synth_data):
    """Also once the loader object itself is gone (a trainer function returned): its epoch is still shut."""
    import gc

    from swavbench.train.data import build_classification_loader, close_loaders

    def two_batches_then_return():
        transform = [{"RandomResizedCrop": {"size": 16}}, {"ToTensor": None}]
        section = {"dataset": {"root": str(synth_data / "train"), "transform": transform},
                   "sampler": {"batch_size": 4}, "loader": {"num_workers": 0}}
        loader, sampler, _ = build_classification_loader({"DataLoader": {"Train": section}}, "Train", 0, 1, 0)
        sampler.set_epoch(0)
        batches = iter(loader)
        next(batches), next(batches)
        return loader._batches._thread

    thread = two_batches_then_return()
    gc.collect()
    assert thread.is_alive()  # paddle's reader thread waits on its full queue, for the exit handler to stop
    start = time.perf_counter()
    close_loaders()
    assert not thread.is_alive() and time.perf_counter() - start < 0.9


FAST_EXIT_SCRIPT = textwrap.dedent("""
    import atexit, sys
    from swavbench.train import fast_exit
    fast_exit.install()
    atexit.register(lambda: open(sys.argv[1] + ".handler", "w").close())  # runs before fast_exit's
    class Teardown:
        def __del__(self, _open=open, _path=sys.argv[1] + ".teardown"):  # runs in the interpreter teardown
            _open(_path, "w").close()
    keep = Teardown()
    sys.exit(fast_exit.arm(int(sys.argv[2])))
""")


@pytest.mark.parametrize("launched", [True, False])
def test_a_launched_rank_exits_after_the_exit_handlers_without_the_teardown(tmp_path, launched):
    env = clean_env(PYTHONPATH=str(REPO), **({"PADDLE_TRAINER_ID": "1", "PADDLE_TRAINERS_NUM": "2"} if launched
                                            else {}))
    base = str(tmp_path / "mark")
    proc = subprocess.run([sys.executable, "-c", FAST_EXIT_SCRIPT, base, "3"], env=env, timeout=60)
    assert proc.returncode == 3
    assert os.path.exists(base + ".handler")  # every exit handler ran
    assert os.path.exists(base + ".teardown") is not launched  # the interpreter teardown was skipped


def test_a_rank_parses_only_its_own_command():
    code = ("import sys\nfrom swavbench.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in sys.modules if m.startswith('swavbench.harness')))")
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr


def test_the_trainer_import_pauses_the_gc_and_restores_it():
    import gc

    from swavbench.commands.train import _import_trainer

    assert gc.isenabled()
    assert callable(_import_trainer("ContrastiveLearning")) and gc.isenabled()
    gc.disable()
    try:
        _import_trainer("Classification")
        assert not gc.isenabled()  # a caller's own choice is kept
    finally:
        gc.enable()


def test_timeline_marks_wall_and_cpu_and_rewrites_at_exit(tmp_path):
    started = timeline.process_start_time()
    assert started is not None and started <= time.time()
    assert time.time() - started < float(open("/proc/uptime").read().split()[0]) + 1
    code = ("import sys\nfrom swavbench.train import timeline\nfrom pathlib import Path\ntimeline.mark('a')\n"
            "sum(range(10**6))\ntimeline.mark('b')\nprint(timeline.written())\ntimeline.write(Path(sys.argv[1]), 3)\n"
            "print(timeline.written())\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=clean_env(), check=True, timeout=60,
                          capture_output=True, text=True)
    assert proc.stdout.split() == ["False", "True"]
    data = json.loads((tmp_path / "timeline.3.json").read_text())
    names = [m[0] for m in data["marks"]]
    assert data["rank"] == 3 and names == ["process_start", "a", "b", "end", "atexit"]
    walls, cpus = [m[1] for m in data["marks"]], [m[2] for m in data["marks"]]
    assert walls == sorted(walls) and cpus == sorted(cpus) and cpus[2] > cpus[1]
