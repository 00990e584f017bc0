"""Multi-crop augmentation, sampler, loaders and their bad-input errors (tiny, CPU)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from swavbench.errors import ConfigError, DataError
from swavbench.train import augment as A
from swavbench.train.data import (
    MultiCropDataset,
    build_classification_loader,
    build_pretrain_loader,
    read_subset_file,
    scan_image_folder,
)
from swavbench.train.sampler import SeededDistributedBatchSampler
from swavbench.train.synth import synthesize

OFF = dict(flip_prob=0.0, color_jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)
NORMALIZE = {"Normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, classes=3, train_per_class=6, val_per_class=3, size=40, seed=3)
    return out


def pretrain_config(root, workers=0, **dataset):
    dataset = {"root": str(root), "size_crops": [24, 12], "num_crops": [2, 3], **dataset}
    return {
        "DataLoader": {"Train": {"dataset": dataset, "sampler": {"batch_size": 4}, "loader": {"num_workers": workers}}}
    }


def noise_image(size=48, seed=0):
    return Image.fromarray((np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8))


def crops_of(img, seed=0, **fields):
    spec = A.MultiCropSpec(
        size_crops=(32,),
        num_crops=(1,),
        min_scale_crops=(1.0,),
        max_scale_crops=(1.0,),
        crop_ratio=(1.0, 1.0),
        **fields,
    )
    return A.multi_crop(img, spec, np.random.default_rng(seed))[0]


# ---- augmentation ----------------------------------------------------------------------------------
def test_crops_shapes_order_dtype(root):
    samples, classes = scan_image_folder(root, "train")
    assert len(samples) == 18 and classes == sorted(classes) and samples[0][1] == 0 and samples[-1][1] == 2
    spec = A.MultiCropSpec(size_crops=(24, 12), num_crops=(2, 3))
    *crops, status = MultiCropDataset(samples, spec, seed=1)[(0, 5)]
    assert [c.shape for c in crops] == [(3, 24, 24)] * 2 + [(3, 12, 12)] * 3
    assert all(c.dtype == np.float32 for c in crops) and status.tolist() == [-1, -1]


def test_same_key_same_crops_other_epoch_rank_index_differ(root):
    samples, _ = scan_image_folder(root, "train")
    spec = A.MultiCropSpec(size_crops=(24, 12), num_crops=(2, 3))
    ds, ds_rank1 = MultiCropDataset(samples, spec, seed=1), MultiCropDataset(samples, spec, seed=1, rank=1)
    a, b = ds[(2, 7)], MultiCropDataset(samples, spec, seed=1)[(2, 7)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    for other in (ds[(3, 7)], ds_rank1[(2, 7)], MultiCropDataset(samples, spec, seed=2)[(2, 7)]):
        assert not np.array_equal(a[0], other[0])


def test_normalisation_is_mean_std_of_the_pixels():
    img = noise_image(32)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    out = crops_of(img, mean=mean, std=std, **OFF)  # full-image crop at its own size: pixels unchanged
    want = (np.asarray(img, np.float32).transpose(2, 0, 1) / 255 - np.array(mean)[:, None, None]) / np.array(std)[
        :, None, None
    ]
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_normalisation_lookup_gives_the_table_value_of_every_pixel_exactly():
    """The contiguous channels-first lookup (issue 16) equals the table lookup of each pixel, bit for bit."""
    rng = np.random.default_rng(1)
    lut = A.normalize_lut(A.MEAN, A.STD)
    for n, size in ((2, 31), (6, 9)):
        pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        want = np.stack([lut[c][pixels[..., c]] for c in range(3)], axis=1)
        got = A.to_normalized_chw(pixels, lut)
        assert got.dtype == np.float32 and got.flags.c_contiguous and got.tobytes() == want.tobytes()


def test_flip_mirrors_the_same_crop():
    img = noise_image()
    plain, flipped = crops_of(img, **OFF), crops_of(img, **{**OFF, "flip_prob": 1.0})
    np.testing.assert_array_equal(flipped, plain[:, :, ::-1])


def test_grayscale_gives_equal_channels():
    out = crops_of(noise_image(), **{**OFF, "grayscale_prob": 1.0})
    pixels = out * np.array(A.STD)[:, None, None] + np.array(A.MEAN)[:, None, None]
    np.testing.assert_allclose(pixels[0], pixels[1], atol=1e-5)
    np.testing.assert_allclose(pixels[0], pixels[2], atol=1e-5)


def test_blur_reduces_high_frequency_energy():
    def high_freq(x):
        return float(np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean())

    sharp = crops_of(noise_image(), **OFF)
    blurred = crops_of(noise_image(), **{**OFF, "blur_prob": 1.0, "blur_sigma": (1.5, 2.0)})
    assert high_freq(blurred) < 0.5 * high_freq(sharp)


def test_color_jitter_changes_colours_and_matches_pil():
    img = noise_image()
    plain, jittered = crops_of(img, **OFF), crops_of(img, **{**OFF, "color_jitter_prob": 1.0})
    assert np.abs(plain - jittered).mean() > 0.05
    for f in (0.3, 1.6):  # our fast ops equal PIL's ImageEnhance (torchvision's implementation)
        assert np.array_equal(
            np.asarray(A.adjust_brightness(img, f)), np.asarray(ImageEnhance.Brightness(img).enhance(f))
        )
        assert np.array_equal(np.asarray(A.adjust_contrast(img, f)), np.asarray(ImageEnhance.Contrast(img).enhance(f)))
        assert np.array_equal(np.asarray(A.adjust_saturation(img, f)), np.asarray(ImageEnhance.Color(img).enhance(f)))
    hue = np.asarray(A.adjust_hue(img, 0.5), np.int16)
    assert np.abs(hue - np.asarray(img, np.int16)).mean() > 20


def test_random_resized_crop_box_bounds_and_fallback():
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, w, h = A.random_resized_crop_box(rng, 60, 40, (0.05, 0.14), (3 / 4, 4 / 3))
        assert 0 <= left <= 60 - w and 0 <= top <= 40 - h
        assert 0.04 * 2400 <= w * h <= 0.16 * 2400 and 0.6 < w / h < 1.6
    assert A.random_resized_crop_box(rng, 100, 10, (0.9, 1.0), (1.0, 1.0)) == (45, 0, 10, 10)


def test_spec_defaults_are_swav_and_bad_values_name_the_key():
    spec = A.MultiCropSpec.from_config({"root": "x"})
    assert (spec.size_crops, spec.num_crops, spec.blur_sigma, spec.std) == ((224, 96), (2, 6), (0.1, 2.0), A.STD)
    with pytest.raises(ConfigError, match="num_crops"):
        A.MultiCropSpec.from_config({"size_crops": [32, 16], "num_crops": [2]})
    with pytest.raises(ConfigError, match="grayscale_prob"):
        A.MultiCropSpec.from_config({"grayscale_prob": 1.5})


# ---- sampler and loaders ---------------------------------------------------------------------------
@pytest.mark.parametrize("drop_last", [True, False])
def test_sampler_covers_dataset_once_per_epoch_across_ranks(drop_last):
    n, world, batch = 23, 3, 2
    samplers = [SeededDistributedBatchSampler(n, batch, r, world, seed=5, drop_last=drop_last) for r in range(world)]
    for epoch in (0, 1):
        keys = []
        for s in samplers:
            s.set_epoch(epoch)
            batches = list(s)
            assert len(batches) == len(s) and all(e == epoch for b in batches for e, _ in b)
            real = [i for b in batches for _, i in b][: s.local_size - s.local_padding]
            keys.append(real)
        seen = [i for rank_keys in keys for i in rank_keys]
        assert len(seen) == len(set(seen))
        if drop_last:
            assert len({len(k) for k in keys}) == 1 and len(seen) == (n // world) // batch * batch * world
            assert all(len(b) == batch for s in samplers for b in s)
        else:
            assert sorted(seen) == list(range(n))
    first = [i for b in samplers[0] for _, i in b]
    samplers[0].set_epoch(7)
    assert first != [i for b in samplers[0] for _, i in b]


def test_loader_batches_identical_with_0_and_2_workers(root):
    runs = []
    for workers in (0, 2):
        loader, sampler = build_pretrain_loader(pretrain_config(root, workers), 0, 1, seed=4)
        sampler.set_epoch(0)
        next(iter(loader))  # an epoch left early must not leak batches into the next one
        batches = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            batches.append([[t.numpy() for t in batch] for batch in loader])
        runs.append(batches)
    assert len(runs[0][0]) == 4 and [b.shape for b in runs[0][0][0]] == [(4, 3, 24, 24)] * 2 + [(4, 3, 12, 12)] * 3
    for a, b in zip(runs[0], runs[1]):
        assert all(np.array_equal(x, y) for batch_a, batch_b in zip(a, b) for x, y in zip(batch_a, batch_b))
    assert not np.array_equal(runs[0][0][0][0], runs[0][1][0][0])  # another epoch, other crops


def test_classification_loaders(root):
    tr = [{"RandomResizedCrop": {"size": 16}}, "RandomHorizontalFlip", {"ToTensor": None}, NORMALIZE]
    ev = [{"Resize": {"size": 20}}, {"CenterCrop": {"size": 16}}, {"ToTensor": None}, NORMALIZE]
    config = {
        "DataLoader": {
            "Train": {
                "dataset": {"root": str(root / "train"), "transform": tr, "txt_file_name": "10percent.txt"},
                "sampler": {"batch_size": 2},
            },
            "Eval": {"dataset": {"root": str(root / "val"), "transform": ev}, "sampler": {"batch_size": 2}},
        }
    }
    loader, _, n = build_classification_loader(config, "Train", 0, 1, seed=0)
    images, labels = next(iter(loader))
    assert n == 3 and images.shape == [2, 3, 16, 16] and str(labels.dtype).endswith("int64")
    assert loader.dataset.classes == sorted(p.name for p in (root / "val").iterdir())
    dataset = loader.dataset  # picklable: loader workers also work where fork is not the default
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(dataset))[(1, 2)][0], dataset[(1, 2)][0])
    seen = []
    for rank in (0, 1):  # eval on 2 ranks: drop each rank's padding and every val image counts once
        loader, sampler, n = build_classification_loader(config, "Eval", rank, 2, seed=0)
        labels = np.concatenate([lab.numpy() for _, lab in loader])
        assert len(labels) == sampler.local_size
        seen.extend(sampler.local_indices()[sampler.real_mask()].tolist())
    assert n == 9 and sorted(seen) == list(range(9))
    config["DataLoader"]["Eval"]["dataset"]["transform"] = [{"Rezise": {"size": 20}}]
    with pytest.raises(ConfigError, match="Rezise"):
        build_classification_loader(config, "Eval", 0, 1, seed=0)


# ---- bad input -------------------------------------------------------------------------------------
def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope' / 'train'}.*swavbench data synth"):
        build_pretrain_loader(pretrain_config(tmp_path / "nope"), 0, 1, seed=0)


def test_no_class_folders_and_empty_class_folder(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        scan_image_folder(tmp_path, "train")
    (tmp_path / "train" / "n01").mkdir()
    with pytest.raises(DataError, match=f"class folder {tmp_path / 'train' / 'n01'} is empty"):
        scan_image_folder(tmp_path, "train")


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_jpeg_is_one_line_data_error(root, tmp_path, workers):
    import shutil

    shutil.copytree(root / "train", tmp_path / "train")
    bad = sorted((tmp_path / "train").glob("*/*.JPEG"))[4]
    bad.write_bytes(b"\xff\xd8 this is not a jpeg" * 10)
    loader, _ = build_pretrain_loader(pretrain_config(tmp_path, workers), 0, 1, seed=0)
    with pytest.raises(DataError) as err:
        for _ in loader:
            pass
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_any_sample_error_surfaces_in_the_caller_not_a_hang(root):
    loader, _ = build_pretrain_loader(pretrain_config(root), 0, 1, seed=0)

    def broken(index, epoch):
        raise RuntimeError(f"boom {index}")

    loader.dataset.load = broken  # num_workers=0: paddle's reader thread would hang on a raise
    with pytest.raises(RuntimeError, match="boom"):
        next(iter(loader))


def test_subset_file_errors(root, tmp_path):
    good = read_subset_file(root / "1percent.txt", root)
    assert [label for _, label in good] == [0, 1, 2]
    cases = {
        "missing.txt": None,
        "empty.txt": "\n\n",
        "gone.txt": "n01000000_99.JPEG\n",
        "class.txt": "n09999999_1.JPEG\n",
    }
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=str(tmp_path / name)):
            read_subset_file(tmp_path / name, root)
    with pytest.raises(DataError, match="n01000000_99.JPEG not found"):
        read_subset_file(tmp_path / "gone.txt", root)
