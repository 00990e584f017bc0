"""Case specs and device profiles: ids, markers, scaling, skips (no launch); what prepare reads from disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from swavbench.errors import SwavbenchError
from swavbench.harness import cases, prepare
from swavbench.train.config import CONFIG_DIR


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for cls, n in (("a", 1800), ("b", 1200)):
        folder = root / "train" / cls
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{i}.JPEG").touch()
    (root / "val" / "a").mkdir(parents=True)
    (root / "val" / "a" / "x.JPEG").touch()  # val/ is not counted: the trainer reads <root>/train
    (root / "train" / "a" / "notes.txt").touch()
    return root


def test_the_four_passl_cases_exist():
    assert cases.case_ids() == ["swav_pt_1n8c_fp16o1", "swav_lp_1n8c_fp32", "swav_ft_1n4c_fp32", "swav_pt_4n32c_fp16o1"]
    for case in cases.CASES:
        assert (CONFIG_DIR / f"{case.config}.yaml").is_file() and case.passl_name == case.config
        for scale in (case.gpu, case.cpu):
            assert (scale.max_train_step - 1) % scale.print_batch_step == 0, case.id  # the marker is logged


@pytest.mark.parametrize("name", ["swav_pt_1n8c_fp16o1", "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"])
def test_short_and_long_names_resolve(name):
    assert cases.resolve_case(name).id == "swav_pt_1n8c_fp16o1"


def test_unknown_case_lists_the_known_ones():
    with pytest.raises(SwavbenchError) as err:
        cases.resolve_case("swav_pt_9n9c")
    assert "known cases: swav_pt_1n8c_fp16o1, swav_lp_1n8c_fp32" in str(err.value)
    assert err.value.exit_code == 3


def test_unknown_case_on_the_cli_is_one_line_exit_3():
    out = subprocess.run(
        [sys.executable, "-m", "swavbench.cli", "run", "nope", "--profile", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 3
    errors = [line for line in out.stderr.splitlines() if line.startswith("swavbench: error:")]
    assert len(errors) == 1 and "known cases:" in errors[0] and "Traceback" not in out.stderr


def test_gpu_plan_without_inputs_is_passl_ci_topology_and_marker_unknown():
    p = cases.plan(cases.resolve_case("swav_pt_1n8c_fp16o1"), "gpu")
    assert p.marker == "?" and p.marker_step == 201 and p.train_profile is None and p.tolerances.ips_pct == 5.0
    assert (p.scale.nnodes, p.scale.devices_per_node) == (1, 8)
    assert cases.plan(cases.resolve_case("swav_ft_1n4c_fp32"), "gpu").world_size == 8  # PASSL CI: 8 devices


def cpu_plan(case_id: str, data_root: Path) -> cases.Plan:
    case = cases.resolve_case(case_id)
    return cases.plan(case, "cpu", prepare.plan_inputs(case, "cpu", data_root))


def test_cpu_plan_computes_the_marker_from_the_dataset(data_root):
    p = cpu_plan("swav_pt_1n8c_fp16o1", data_root)
    # 3000 train images // (batch 8 x 8 ranks) = 46 iters; step 21 is iter 20
    assert p.marker == "20/46" and p.marker_step == 21 and p.train_profile == "cpu"
    assert f"DataLoader.Train.dataset.root={data_root}" in p.overrides
    assert p.train_args()[:4] == ["-c", "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1", "--profile", "cpu"]
    assert p.tolerances.ips_pct == 20.0  # CPU: measured level moves of this VM type (see cases.py)
    assert cases.plan(p.case, "gpu").tolerances.ips_pct == 5.0  # check_result's band
    assert p.tolerances.loss == "exact" and p.tolerances.max_mem == "exact"


def test_multinode_case_scales_down_on_cpu_and_says_so(data_root):
    p = cpu_plan("swav_pt_4n32c_fp16o1", data_root)
    assert p.case.multinode and p.scale.nnodes == 4 and p.scale.devices_per_node < 8
    assert any("not x 8" in n for n in p.notes)
    assert p.marker == f"20/{3000 // (8 * p.world_size)}"


def test_too_small_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "1.jpg").touch()
    with pytest.raises(SwavbenchError, match="1 images give 0 iters/epoch"):
        cpu_plan("swav_pt_1n8c_fp16o1", tmp_path)


@pytest.mark.parametrize("case_id, classes_key", [("swav_lp_1n8c_fp32", "Model.class_num=2"),
                                                   ("swav_ft_1n4c_fp32", "Model.backbone.output_dim=2")])
def test_classification_cases_start_from_the_cached_pretrain(case_id, classes_key, data_root, monkeypatch):
    monkeypatch.delenv("SWAVBENCH_PRETRAINED", raising=False)
    built = []
    monkeypatch.setattr(prepare, "cpu_pretrained", lambda root: built.append(root) or "/cache/pt/latest")
    (data_root / "10percent.txt").write_text("".join(f"a_{i}.JPEG\n" for i in range(300)))
    p = cpu_plan(case_id, data_root)
    assert p.skip_reason is None and built == [data_root]
    assert "Global.pretrained_model=/cache/pt/latest" in p.overrides and classes_key in p.overrides
    assert f"DataLoader.Train.dataset.root={data_root / 'train'}" in p.overrides
    assert f"DataLoader.Eval.dataset.root={data_root / 'val'}" in p.overrides
    if case_id.startswith("swav_ft"):  # PASSL's ./dataset/ILSVRC2012/10percent.txt -> the one of this dataset
        assert f"DataLoader.Train.dataset.txt_file_name={data_root / '10percent.txt'}" in p.overrides
    # no drop_last: ceil(ceil(n / world) / batch) iterations, as the sampler pads
    assert p.marker == ("40/47" if case_id.startswith("swav_lp") else "0/10")


def test_explicit_pretrained_checkpoint_wins_and_missing_trainer_skips(data_root, monkeypatch):
    monkeypatch.setenv("SWAVBENCH_PRETRAINED", "/cluster/swav_800ep/latest")
    monkeypatch.setattr(prepare, "cpu_pretrained", lambda root: pytest.fail("must not build a pre-train"))
    p = cpu_plan("swav_lp_1n8c_fp32", data_root)
    assert "Global.pretrained_model=/cluster/swav_800ep/latest" in p.overrides
    import swavbench.train

    monkeypatch.setattr(swavbench.train, "CAPABILITIES", ("pretrain",))
    reason = cases.skip_reason(cases.resolve_case("swav_ft_1n4c_fp32"))
    assert reason and "Classification trainer" in reason
    assert cases.skip_reason(cases.resolve_case("swav_pt_1n8c_fp16o1")) is None


def test_overrides_append_and_marker_helper(data_root):
    p = cpu_plan("swav_pt_1n8c_fp16o1", data_root)
    q = cases.with_overrides(p, "Optimizer.LRScheduler.learning_rate=0.7")
    assert q.overrides[-1] == "Optimizer.LRScheduler.learning_rate=0.7" and q.marker == p.marker
    assert cases.marker_for(201, 2599) == "200/2599" and cases.marker_for(47, 46) == "0/46"
    assert prepare.count_images(data_root) == 3000


def test_unknown_profile():
    with pytest.raises(SwavbenchError, match="unknown device profile"):
        cases.plan(cases.CASES[0], "tpu")


def test_dataset_is_generated_once(tmp_path):
    spec = cases.SynthData(classes=2, train_per_class=3, val_per_class=1, size=16, seed=1)
    root = prepare.ensure_dataset(spec, tmp_path)
    assert prepare.count_images(root) == 6 and root.name == spec.key
    stamp = (root / "synth.json").stat().st_mtime_ns
    assert prepare.ensure_dataset(spec, tmp_path) == root
    assert (root / "synth.json").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_marker_is_the_last_logged_line_when_a_run_spans_epochs():
    # logged iterations are i % 5 == 0 of each epoch: with 24 iterations, step 41 is iter 16 (not logged)
    assert cases.last_logged_step(41, 24, 5) == 40 and cases.marker_for(40, 24) == "15/24"
    assert cases.last_logged_step(21, 46, 5) == 21 and cases.marker_for(21, 46) == "20/46"
    assert cases.last_logged_step(41, 10, 5) == 41 and cases.marker_for(41, 10) == "0/10"


def test_concurrent_dataset_builds_wait_for_one(tmp_path, monkeypatch):
    """Two callers at once (two xdist workers' first case): one builds, the other waits and reuses it."""
    import threading
    import time

    from swavbench.train import synth

    spec = cases.SynthData(classes=2, train_per_class=3, val_per_class=1, size=16, seed=2)
    builds, real = [], synth.synthesize

    def slow(out, **kw):
        builds.append(out)
        time.sleep(0.5)  # long enough for the second caller to arrive mid-build
        return real(out, **kw)

    monkeypatch.setattr(synth, "synthesize", slow)
    roots: list = []
    threads = [threading.Thread(target=lambda: roots.append(prepare.ensure_dataset(spec, tmp_path))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(builds) == 1 and len(roots) == 2 and roots[0] == roots[1] and prepare.count_images(roots[0]) == 6


def test_plan_is_pure_its_inputs_are_a_value():
    # no dataset on disk: plan() computes the marker from the counts it is given (2502 = 1281167 // 512)
    case = cases.resolve_case("swav_pt_1n8c_fp16o1")
    inputs = cases.PlanInputs(root=Path("/nowhere"), train_images=1_281_167, classes=1000, batch_size=64)
    p = cases.plan(case, "gpu", inputs)
    assert p.marker == "200/2502" and p.data_root == Path("/nowhere")


def test_cases_module_does_no_io_at_import():
    code = ("import sys, swavbench.harness.cases as c; "
            "assert 'paddle' not in sys.modules and 'swavbench.harness.prepare' not in sys.modules; "
            "assert not hasattr(c, 'ensure_dataset') and not hasattr(c, 'count_images')")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
