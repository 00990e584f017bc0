"""The GPU form of every case, checked on CPU: PASSL CI's topology and command line, the marker the trainer
would log on ImageNet-sized inputs (a stand-in image counter, not 1.2M files), and `run --dry-run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from swavbench.errors import CheckpointError, DataError, SwavbenchError
from swavbench.harness import cases, prepare

# ImageNet: train/ holds 1,281,167 images in 1000 classes; SimCLR's subsets 128,116 (10%) and 12,811 (1%)
IMAGENET = {"train": 1_281_167, "classes": 1000, "10percent.txt": 128_116, "1percent.txt": 12_811}
PASSL_CI = ["Global.print_batch_step=20", "Global.max_train_step=201",
            "Global.flags.FLAGS_cudnn_exhaustive_search=0", "Global.flags.FLAGS_cudnn_deterministic=1"]
PASSL_WEIGHTS = "Global.pretrained_model=./pretrained/swav/swav_resnet50_in1k_800ep_bz4096_pretrained"
# tests/CI/ssl/swav/<case>.sh at PASSL 5c7359b: every -o, in order (the 4n32c config has no CI job: the pt one's)
CI_COMMAND = {
    "swav_pt_1n8c_fp16o1": PASSL_CI,
    "swav_lp_1n8c_fp32": [*PASSL_CI, PASSL_WEIGHTS],
    "swav_ft_1n4c_fp32": [PASSL_CI[0], "Global.max_train_step=121", *PASSL_CI[2:], PASSL_WEIGHTS],
    "swav_pt_4n32c_fp16o1": PASSL_CI,
}
ONE_NODE = {"PADDLE_NNODES": "1", "PADDLE_MASTER": "127.0.0.0:12538", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
FOUR_NODES = {"PADDLE_NNODES": "4", "PADDLE_MASTER": "10.0.0.1:12538", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
# the marker the trainer logs at PASSL CI's last step on ImageNet-sized inputs
IMAGENET_MARKERS = {
    "swav_pt_1n8c_fp16o1": ("200/2502", ONE_NODE),  # 1,281,167 // (64 x 8), drop_last
    "swav_lp_1n8c_fp32": ("200/5005", ONE_NODE),  # ceil(ceil(1,281,167 / 8) / 32), padded
    "swav_ft_1n4c_fp32": ("120/126", ONE_NODE),  # ceil(ceil(128,116 / 8) / 128) on PASSL CI's 8 devices
    "swav_pt_4n32c_fp16o1": ("200/312", FOUR_NODES),  # 1,281,167 // (128 x 32)
}


def stand_in_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Count ImageNet's sizes instead of files (the folders and subset files exist, empty)."""
    monkeypatch.setattr(prepare, "count_images", lambda root: IMAGENET["train"])
    monkeypatch.setattr(prepare, "count_classes", lambda root: IMAGENET["classes"])
    monkeypatch.setattr(prepare, "count_subset", lambda path: IMAGENET[Path(path).name])


def passl_tree(base: Path) -> Path:
    """PASSL CI's working directory: ./dataset/ILSVRC2012/{train,val,10percent.txt,1percent.txt} and the
    pre-trained checkpoint the lp / ft jobs pass. Returns the dataset root."""
    root = base / "dataset" / "ILSVRC2012"
    for split in ("train", "val"):
        (root / split / "n01440764").mkdir(parents=True)
    for subset in ("10percent.txt", "1percent.txt"):
        (root / subset).write_text("n01440764_10026.JPEG\n")
    weights = base / "pretrained" / "swav" / "swav_resnet50_in1k_800ep_bz4096_pretrained.pdparams"
    weights.parent.mkdir(parents=True)
    weights.touch()
    return root


@pytest.fixture
def passl_cwd(tmp_path, monkeypatch) -> Path:
    root = passl_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWAVBENCH_PRETRAINED", raising=False)
    stand_in_counts(monkeypatch)
    return root


@pytest.mark.parametrize("case_id", list(CI_COMMAND))
def test_gpu_command_line_is_passl_ci_exactly(case_id, passl_cwd):
    marker, env = IMAGENET_MARKERS[case_id]
    p = prepare.plan_for(case_id, "gpu", environ=env)
    # the config's own root exists here: nothing but PASSL CI's overrides (class count 1000 = the config's)
    assert list(p.overrides) == CI_COMMAND[case_id]
    assert p.train_args() == ["-c", p.case.passl_name, *[a for o in CI_COMMAND[case_id] for a in ("-o", o)]]
    assert (p.scale.nnodes, p.scale.devices_per_node) == ((4, 8) if "4n32c" in case_id else (1, 8))
    assert dict(p.env) == {"FLAGS_stop_check_timeout": "3600"} and p.train_profile is None
    assert p.marker == marker and p.marker_step == p.scale.max_train_step
    assert p.tolerances.ips_pct == 5.0 and p.tolerances.loss == "exact" and p.tolerances.max_mem == "exact"


@pytest.mark.parametrize("case_id", list(IMAGENET_MARKERS))
def test_gpu_marker_on_imagenet_sized_inputs_with_a_data_root(case_id, tmp_path, monkeypatch):
    root = passl_tree(tmp_path / "elsewhere")
    stand_in_counts(monkeypatch)
    monkeypatch.setenv("SWAVBENCH_PRETRAINED", str(tmp_path / "elsewhere" / "pretrained" / "swav" /
                                                    "swav_resnet50_in1k_800ep_bz4096_pretrained"))
    marker, env = IMAGENET_MARKERS[case_id]
    p = prepare.plan_for(case_id, "gpu", root, environ=env)
    assert p.marker == marker
    # a dataset given elsewhere is pointed at, after PASSL CI's own overrides
    assert list(p.overrides[:len(CI_COMMAND[case_id]) - p.case.needs_pretrained]) == CI_COMMAND[case_id][:4]
    expected_root = str(root) if p.case.task == "pt" else str(root / "train")
    assert f"DataLoader.Train.dataset.root={expected_root}" in p.overrides


def test_marker_follows_the_subset_and_batch_given_as_overrides(passl_cwd):
    # the 1% subset: ceil(ceil(12,811 / 8) / 128) = 13 iters; step 121 spans epochs, its last logged line is 0/13
    p = prepare.plan_for("swav_ft_1n4c_fp32", "gpu", None, ["DataLoader.Train.dataset.txt_file_name=1percent.txt"],
                         environ=ONE_NODE)
    assert p.marker == "0/13" and p.inputs.subset_images == 12_811
    # a batch of 32 per device: 1,281,167 // (32 x 8) = 5004 iters
    q = prepare.plan_for("swav_pt_1n8c_fp16o1", "gpu", None, ["DataLoader.Train.sampler.batch_size=32"],
                         environ=ONE_NODE)
    assert q.marker == "200/5004"


def test_no_data_root_and_no_config_root_is_one_line_saying_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        prepare.plan_for("swav_pt_1n8c_fp16o1", "gpu", environ=ONE_NODE)
    text = str(err.value)
    assert "\n" not in text and "pass --data-root DIR" in text and "dataset/ILSVRC2012" in text
    assert err.value.exit_code == 4


def test_missing_pretrained_weights_on_gpu_fail_before_launch(passl_cwd):
    (passl_cwd.parent.parent / "pretrained" / "swav" / "swav_resnet50_in1k_800ep_bz4096_pretrained.pdparams").unlink()
    with pytest.raises(CheckpointError, match="SWAVBENCH_PRETRAINED"):
        prepare.plan_for("swav_lp_1n8c_fp32", "gpu", environ=ONE_NODE)


def test_four_node_case_needs_passl_cluster_variables(passl_cwd):
    with pytest.raises(SwavbenchError, match="PADDLE_NNODES=4, PADDLE_MASTER=") as err:
        prepare.plan_for("swav_pt_4n32c_fp16o1", "gpu", environ={})
    assert err.value.exit_code == 3


def test_topology_other_than_passl_ci_is_planned_as_given_and_said(passl_cwd):
    p = prepare.plan_for("swav_pt_1n8c_fp16o1", "gpu", environ={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert p.world_size == 4 and p.marker == f"200/{1_281_167 // (64 * 4)}"
    assert any("not PASSL CI's 1x8" in n for n in p.notes)


def test_recording_from_logs_needs_no_dataset_on_gpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = prepare.plan_for("swav_pt_4n32c_fp16o1", "gpu", environ={}, launch=False)
    assert p.marker == "?" and p.inputs is None and p.case.passl_marker == "200/324"


# ---------------------------------------------------------------------------------------------------------
# `swavbench run CASE --profile gpu --dry-run`, from the outside, on this CPU-only machine
# ---------------------------------------------------------------------------------------------------------
DRY_RUN = """
import sys
from pathlib import Path
from swavbench.harness import prepare
sizes = {"train": 1_281_167, "classes": 1000, "10percent.txt": 128_116, "1percent.txt": 12_811}
prepare.count_images = lambda root: sizes["train"]      # a stand-in image counter, not 1.2M files
prepare.count_classes = lambda root: sizes["classes"]
prepare.count_subset = lambda path: sizes[Path(path).name]
from swavbench.cli import main
code = main(["run", sys.argv[1], "--profile", "gpu", "--dry-run", "--baseline-dir", sys.argv[2]])
assert "paddle" not in sys.modules, "the dry run imported paddle"
sys.exit(code)
"""


def dry_run(case_id: str, cwd: Path, env: dict, baseline_dir: Path) -> subprocess.CompletedProcess:
    from tests.conftest import clean_env

    return subprocess.run([sys.executable, "-c", DRY_RUN, case_id, str(baseline_dir)], cwd=cwd,
                          env=clean_env(**env), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case_id, env", [(c, IMAGENET_MARKERS[c][1]) for c in IMAGENET_MARKERS]
                         + [("swav_pt_1n8c_fp16o1", FOUR_NODES)])
def test_dry_run_prints_every_node_command_env_marker_checks_and_baseline(case_id, env, tmp_path):
    passl_tree(tmp_path)
    proc = dry_run(case_id, tmp_path, env, tmp_path / "baselines")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    config = cases.resolve_case(case_id).passl_name
    nodes = int(env["PADDLE_NNODES"])
    command = next(line.strip() for line in out.splitlines() if "-m paddle.distributed.launch" in line)
    cluster = "--devices 0,1,2,3,4,5,6,7" + (f" --nnodes {nodes} --master {env['PADDLE_MASTER']}" if nodes > 1 else "")
    worker = f"train -c {config} " + " ".join(f"-o {o}" for o in CI_COMMAND[case_id])
    assert cluster in command and command.endswith(worker), command
    assert (f"launch on each of the {nodes} nodes" if nodes > 1 else "launch on this node") in out
    assert "FLAGS_stop_check_timeout=3600" in out and "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7" in out
    assert " ".join(f"{k}={v}" for k, v in env.items()) in out  # PASSL's variables, as given
    marker = IMAGENET_MARKERS[case_id][0] if env is IMAGENET_MARKERS[case_id][1] else "200/625"
    assert f"marker: {marker} (global step {cases.resolve_case(case_id).gpu.max_train_step}," in out
    assert "diff strictly inside +-5%" in out and f"on the {marker} line == the baseline's (exact)" in out
    assert f"baseline: {tmp_path / 'baselines' / 'gpu-<model>-x<count>' / (case_id + '.json')}" in out


def test_dry_run_names_passl_figures_and_whether_their_marker_matches(tmp_path):
    passl_tree(tmp_path)
    pt = dry_run("swav_pt_1n8c_fp16o1", tmp_path, ONE_NODE, tmp_path / "b").stdout
    assert "passl-a100/swav_pt_1n8c_fp16o1.json (loss 7.94836" in pt and "not comparable" in pt
    lp = dry_run("swav_lp_1n8c_fp32", tmp_path, ONE_NODE, tmp_path / "b").stdout
    assert "at 200/5005): same marker" in lp


def test_dry_run_without_a_dataset_fails_with_what_to_pass(tmp_path):
    proc = dry_run("swav_pt_1n8c_fp16o1", tmp_path, ONE_NODE, tmp_path / "b")
    assert proc.returncode == 4 and "pass --data-root DIR" in proc.stderr and "Traceback" not in proc.stderr


def test_dry_run_on_a_gpu_node_reads_that_profile_baseline(passl_cwd, monkeypatch, capsys):
    from swavbench.cli import main
    from swavbench.harness import baselines

    monkeypatch.setattr(baselines, "detect_gpu", lambda: ("NVIDIA A100-SXM4-40GB", 8))  # a stand-in GPU node
    for key, value in ONE_NODE.items():
        monkeypatch.setenv(key, value)
    path = passl_cwd / "b" / "gpu-a100-sxm4-40gb-x8" / "swav_pt_1n8c_fp16o1.json"
    metrics = {"loss": "7.91234", "ips": 1010.5, "max_mem": "8.40", "marker": "200/2502"}
    baselines.write_baseline(path, baselines.Baseline("swav_pt_1n8c_fp16o1", "gpu-a100-sxm4-40gb-x8", metrics,
                                                      {"ips_pct": 3.0, "loss": "exact", "max_mem": "exact"}))
    assert main(["run", "swav_pt_1n8c_fp16o1", "--profile", "gpu", "--dry-run", "--baseline-dir",
                 str(passl_cwd / "b")]) == 0
    out = capsys.readouterr().out
    assert f"baseline: {path}: loss 7.91234, ips 1010.5, max mem 8.40 at 200/2502" in out
    assert "checks (tolerances: the baseline's):" in out and "diff strictly inside +-3%" in out
