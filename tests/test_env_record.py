"""What a run records of its software and host (issue 11): paddle's git commit, CUDA, cuDNN, the GPU driver,
the host name and the project home, in the run header, result.json and the report's run detail."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from swavbench import paths
from swavbench.harness import cases, runner
from swavbench.report import build_report
from swavbench.store.history import History

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
FAKE = Path(__file__).resolve().parent / "fake_worker.py"
CASE = "swav_pt_1n8c_fp16o1"


def test_run_header_records_paddle_commit_cuda_driver_host_and_home(tmp_path):
    import socket

    import paddle

    from swavbench.train.runtime import Runtime

    rt = Runtime("cpu", 0, 1, 1, 1, 31, "fp32", "fp32", "fp32", "BatchNorm", "host", False)
    previous = paths.use_home(tmp_path)
    try:
        header = rt.header()
    finally:
        paths.use_home(previous)
    assert header["paddle_commit"] == paddle.version.commit and header["paddle_version"] == paddle.__version__
    assert header["hostname"] == socket.gethostname() and header["home"] == str(tmp_path.resolve())
    assert {"cuda_version", "cudnn_version", "gpu_driver"} <= set(header)
    if not paddle.is_compiled_with_cuda():
        assert header["cuda_version"] is None and header["cudnn_version"] is None


def test_result_json_records_the_rank_header_build_and_the_home(tmp_path):
    data = tmp_path / "data"
    (data / "train" / "a").mkdir(parents=True)
    for i in range(3072):
        (data / "train" / "a" / f"{i}.jpg").touch()
    previous = paths.use_home(tmp_path / "home")
    try:
        plan = cases.plan_for(CASE, "cpu", data)
        out = runner.execute(plan, worker=[sys.executable, str(FAKE), "train"], confirm=0)
    finally:
        paths.use_home(previous)
    assert out.run_dir.parent == tmp_path / "home" / "reports" / "runs"  # the pinned home's, by default
    rec = json.loads((out.run_dir / "result.json").read_text())
    assert rec["paddle_commit"] == "fakec0ffee" and rec["home"] == str((tmp_path / "home").resolve())
    assert rec["environment"]["hostname"] == "fake-host" and rec["environment"]["gpu_driver"] is None
    assert {"cuda_version", "cudnn_version"} <= set(rec["environment"])
    header = json.loads((out.run_dir / "log" / "run_header.json").read_text())
    assert header["home"] == rec["home"]  # the ranks were told the same home


def test_report_run_detail_shows_paddle_commit_cuda_driver_and_home(tmp_path):
    run_id = f"20261122T200102Z-{CASE}-c9d0"
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURES / run_id, runs / run_id)
    rec = json.loads((runs / run_id / "result.json").read_text())
    rec["paddle_commit"] = "7688495538f4d6c1893f084dd238a402e8f68ab6"
    rec["home"] = "/srv/team <home>"
    rec["environment"].update(cuda_version="11.8", cudnn_version="8.9.7", gpu_driver="535.129.03")
    (runs / run_id / "result.json").write_text(json.dumps(rec))
    with History(tmp_path / "history.sqlite") as history:
        assert not history.import_runs(runs).failed
        build_report(history, tmp_path / "index.html")
    page = (tmp_path / "run" / f"{run_id}.html").read_text()  # the run's own page holds its detail
    for row in ("<th>paddle commit</th><td><code>7688495538f4d6c1893f084dd238a402e8f68ab6</code></td>",
                "<th>CUDA / cuDNN</th><td>11.8 / 8.9.7</td>", "<th>GPU driver</th><td>535.129.03</td>",
                "<th>project home</th><td>/srv/team &lt;home&gt;</td>"):
        assert row in page


@pytest.mark.parametrize("field", ["paddle_commit", "home"])
def test_older_records_without_the_fields_still_render(field, tmp_path):
    run_id = f"20261122T200102Z-{CASE}-c9d0"
    shutil.copytree(FIXTURES / run_id, tmp_path / "runs" / run_id)
    assert field not in json.loads((tmp_path / "runs" / run_id / "result.json").read_text())
    with History(tmp_path / "history.sqlite") as history:
        history.import_runs(tmp_path / "runs")
        build_report(history, tmp_path / "index.html")
    page = (tmp_path / "run" / f"{run_id}.html").read_text()
    label, shown = {"paddle_commit": ("paddle commit", "unknown"), "home": ("project home", "—")}[field]
    assert f"<th>{label}</th><td>{shown}</td>" in page
