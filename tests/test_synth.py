"""`swavbench data synth`: layout, determinism, distinct classes, subset files, CLI errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swavbench.train import synth
from swavbench.train.synth import class_names, synthesize

SWAVBENCH = Path(sys.executable).parent / "swavbench"


def tree_digest(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    synthesize(out, classes=10, train_per_class=20, val_per_class=10, size=32, seed=7)
    return out


def test_layout_and_readable_jpegs(dataset):
    from swavbench.commands import data as command

    assert command.MAX_CLASSES == synth.MAX_CLASSES
    names = class_names(10)
    assert all("_" not in n for n in names) and names == sorted(names)
    for split, per_class in (("train", 20), ("val", 10)):
        assert sorted(p.name for p in (dataset / split).iterdir()) == names
        files = sorted((dataset / split / names[3]).iterdir())
        assert len(files) == per_class and all(p.name.startswith(f"{names[3]}_") for p in files)
    with Image.open(dataset / "val" / names[0] / f"{names[0]}_0.JPEG") as img:
        assert img.format == "JPEG" and img.size == (32, 32) and img.mode == "RGB"


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        synthesize(tmp_path / name, classes=3, train_per_class=4, val_per_class=2, size=24, seed=seed)
    a, b, c = (tree_digest(tmp_path / n) for n in "abc")
    assert a == b and a.keys() == c.keys() and a != c
    synthesize(tmp_path / "a", classes=2, train_per_class=3, val_per_class=1, size=24, seed=1)  # rewrite
    assert len(list((tmp_path / "a" / "train").iterdir())) == 2


def _nearest_class_mean(dataset: Path, feature) -> float:
    def features(split):
        x, y = [], []
        for label, name in enumerate(class_names(10)):
            for path in sorted((dataset / split / name).iterdir()):
                with Image.open(path) as img:
                    x.append(feature(np.asarray(img.convert("RGB"), np.float32)))
                y.append(label)
        return np.stack(x), np.array(y)

    train_x, train_y = features("train")
    val_x, val_y = features("val")
    means = np.stack([train_x[train_y == k].mean(0) for k in range(10)])
    pred = np.argmin(((val_x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    return float((pred == val_y).mean())


def _spectrum(pixels: np.ndarray) -> np.ndarray:
    """Colour- and position-free structure: the power spectrum of the contrast-normalised luminance."""
    gray = pixels.mean(-1)
    gray = (gray - gray.mean()) / (gray.std() + 1e-6)
    power = np.abs(np.fft.fft2(gray)) ** 2
    return np.log1p(power[:8, :8]).ravel()


def test_classes_differ_in_structure_not_in_colour(dataset):
    # chance is 0.1: the classes separate by their texture; their colours say nothing
    assert _nearest_class_mean(dataset, _spectrum) >= 0.6
    assert _nearest_class_mean(dataset, lambda px: px.reshape(-1, 3).mean(0)) <= 0.25


def test_subset_files_are_valid_and_nested(dataset):
    from swavbench.train.data import read_subset_file

    one, ten = (read_subset_file(dataset / f, dataset) for f in ("1percent.txt", "10percent.txt"))
    assert sorted({label for _, label in one}) == list(range(10)) == sorted({label for _, label in ten})
    assert len(one) == 10 and len(ten) == 20 and set(one) <= set(ten)


def run_cli(*args):
    return subprocess.run([str(SWAVBENCH), "data", "synth", *args], capture_output=True, text=True, timeout=120)


def test_cli_writes_dataset_and_prints_one_line(tmp_path):
    proc = run_cli(
        "--out",
        str(tmp_path / "d"),
        "--classes",
        "2",
        "--train-per-class",
        "3",
        "--val-per-class",
        "1",
        "--size",
        "16",
        "--seed",
        "0",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and "wrote 6 train + 2 val JPEGs" in proc.stdout
    assert (tmp_path / "d" / "10percent.txt").read_text().count("\n") == 2


@pytest.mark.parametrize("case", ["out_is_file", "foreign_dataset"])
def test_cli_bad_out_is_one_line_exit_4(tmp_path, case):
    target = tmp_path / "target"
    if case == "out_is_file":
        target.write_text("x")
    else:
        (target / "train" / "n01").mkdir(parents=True)
    proc = run_cli("--out", str(target))
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert len(errors) == 1 and errors[0].startswith("swavbench: error: ") and str(target) in errors[0]
    assert not (target / "train").is_dir() or not any((target / "train" / "n01").iterdir())
