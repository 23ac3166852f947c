import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lesionsoup.core.lesions import FOV_BIT, IGNORE_BIT, TRAINED, Lesion, pack, unpack
from lesionsoup.data.cache import Cache, CacheEntry, CacheWriter
from lesionsoup.data.geometry import Geometry
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.sampling import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PatchDataset,
    PatchSampler,
    ValidationImages,
)

EX, HE, MA, CWS = TRAINED


def disc(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2


def write_cache(
    directory: Path,
    images: list[dict[Lesion, tuple[slice, slice]]],
    size: int,
    split: str = "train",
    ignore: tuple[slice, slice] | None = None,
    seed: int = 0,
) -> Cache:
    """A cache of random images with a disc field of view and one box per listed lesion."""
    rng = np.random.default_rng(seed)
    writer = CacheWriter(directory, {"size": size})
    geometry = Geometry.fit(size, size, (0, 0, size, size), size)
    ids = []
    for number, boxes in enumerate(images):
        masks = {}
        for lesion, box in boxes.items():
            masks[lesion] = np.zeros((size, size), dtype=bool)
            masks[lesion][box] = True
        ignore_mask = np.zeros((size, size), dtype=bool)
        if ignore is not None:
            ignore_mask[ignore] = True
        image_id = f"img{number:03d}"
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        labels = pack(masks, disc(size), ignore_mask)
        writer.write(CacheEntry(image_id, split, image, labels, geometry))
        ids.append(image_id)
    writer.publish(ids)
    return Cache(directory)


def box(y: int, x: int, height: int = 2, width: int = 2) -> tuple[slice, slice]:
    return np.s_[y : y + height, x : x + width]


def spots(size: int, lesions: tuple[Lesion, ...], seed: int) -> dict[Lesion, tuple[slice, slice]]:
    """One 2x2 spot per lesion at a random place inside the disc."""
    rng = np.random.default_rng(seed)
    centre = size // 2
    offsets = rng.integers(-size // 4, size // 4, size=(len(lesions), 2))
    return {
        lesion: box(centre + dy, centre + dx)
        for lesion, (dy, dx) in zip(lesions, offsets, strict=True)
    }


def has_trained_lesion(sampler: PatchSampler, location) -> bool:
    _, labels = sampler.read(location)
    return bool(unpack(labels).any())


@pytest.fixture(scope="module")
def sparse_cache(tmp_path_factory) -> Cache:
    """Size 128, small spots, a third of the images without lesions."""
    images = [spots(128, TRAINED, seed) if seed % 3 else {} for seed in range(9)]
    return write_cache(tmp_path_factory.mktemp("sparse") / "cache", images, size=128)


def test_lesion_fraction_is_reached(sparse_cache):
    def fraction_with_lesion(lesion_fraction: float) -> float:
        sampler = PatchSampler({"A": sparse_cache}, "train", 16, lesion_fraction, "uniform", seed=1)
        return np.mean([has_trained_lesion(sampler, sampler.sample()) for _ in range(1500)])

    assert fraction_with_lesion(0.0) < 0.3  # random patches rarely meet a spot
    assert fraction_with_lesion(0.5) >= 0.5 - 0.04
    assert fraction_with_lesion(1.0) == 1.0


def test_class_and_image_are_uniform_among_those_present(tmp_path):
    images = [
        {EX: box(20, 20, 20, 20), HE: box(60, 60, 3, 3), MA: box(80, 30, 1, 1), CWS: box(30, 80)},
        {MA: box(64, 64, 1, 1)},
        {EX: box(40, 40, 10, 10), CWS: box(70, 70, 4, 4)},
        {},
    ]
    cache = write_cache(tmp_path / "c", images, size=128)
    sampler = PatchSampler({"A": cache}, "train", 32, 1.0, "uniform", seed=2)
    draws = [sampler.sample() for _ in range(3000)]
    per_image = {
        image_id: [d.lesion for d in draws if d.image_id == image_id] for image_id in cache.ids
    }
    assert per_image["img003"] == []  # no lesion: never a lesion anchor
    for image_id in ("img000", "img001", "img002"):
        assert len(per_image[image_id]) == pytest.approx(1000, rel=0.12)
    for image_id, boxes in zip(cache.ids, images, strict=True):
        for lesion in boxes:  # uniform over classes, however many pixels each has
            share = per_image[image_id].count(lesion) / len(per_image[image_id])
            assert share == pytest.approx(1 / len(boxes), rel=0.2)
        assert set(per_image[image_id]) <= set(boxes)
    for draw in draws:
        _, labels = sampler.read(draw)
        y, x = draw.anchor[0] - draw.top, draw.anchor[1] - draw.left
        assert labels[y, x] & draw.lesion.bit


def test_anchor_offset_is_uniform_not_centred(tmp_path):
    patch = 16
    cache = write_cache(tmp_path / "c", [{HE: box(60, 60, 4, 4)}], size=128)
    sampler = PatchSampler({"A": cache}, "train", patch, 1.0, "uniform", seed=3)
    draws = [sampler.sample() for _ in range(3200)]
    for axis, start in ((0, "top"), (1, "left")):
        offsets = np.array([d.anchor[axis] - getattr(d, start) for d in draws])
        counts = np.bincount(offsets, minlength=patch)
        assert len(counts) == patch
        assert counts.min() > 0.6 * len(draws) / patch
        assert counts.max() < 1.4 * len(draws) / patch


def test_clipped_patches_keep_the_anchor_inside(tmp_path):
    size, patch = 64, 24
    corners = [
        {EX: box(0, 0, 1, 1), HE: box(63, 63, 1, 1), MA: box(0, 63, 1, 1), CWS: box(63, 0, 1, 1)}
    ]
    cache = write_cache(tmp_path / "c", corners, size=size)
    sampler = PatchSampler({"A": cache}, "train", patch, 0.7, "uniform", seed=4)
    for _ in range(400):
        draw = sampler.sample()
        assert 0 <= draw.top <= size - patch
        assert 0 <= draw.left <= size - patch
        assert draw.top <= draw.anchor[0] < draw.top + patch
        assert draw.left <= draw.anchor[1] < draw.left + patch


def test_other_anchors_cover_the_field_of_view(sparse_cache):
    sampler = PatchSampler({"A": sparse_cache}, "train", 16, 0.0, "uniform", seed=5)
    draws = [sampler.sample() for _ in range(2000)]
    inside = disc(128)
    assert all(inside[d.anchor] for d in draws)
    assert {d.lesion for d in draws} == {None}
    anchors = np.array([d.anchor for d in draws])
    assert anchors.min() < 20
    assert anchors.max() > 108
    assert len({d.image_id for d in draws}) == 9  # lesion-free images too


@pytest.mark.parametrize(("mixing", "expected"), [("proportional", 0.75), ("uniform", 0.5)])
def test_dataset_mixing(tmp_path, mixing, expected):
    big = write_cache(tmp_path / "big", [{}] * 30, size=32)
    small = write_cache(tmp_path / "small", [{}] * 10, size=32)
    sampler = PatchSampler({"BIG": big, "SMALL": small}, "train", 16, 0.5, mixing, seed=6)
    share = np.mean([sampler.sample().dataset == "BIG" for _ in range(4000)])
    assert share == pytest.approx(expected, abs=0.03)


def test_state_round_trip_resumes_the_same_stream(sparse_cache):
    sampler = PatchSampler({"A": sparse_cache}, "train", 16, 0.5, "uniform", seed=7)
    for _ in range(10):
        sampler.sample()
    saved = json.loads(json.dumps(sampler.state_dict()))
    expected = [sampler.sample() for _ in range(20)]
    resumed = PatchSampler({"A": sparse_cache}, "train", 16, 0.5, "uniform", seed=999)
    resumed.load_state_dict(saved)
    assert [resumed.sample() for _ in range(20)] == expected


def test_seed_decides_the_stream(sparse_cache):
    def stream(seed: int) -> list:
        sampler = PatchSampler({"A": sparse_cache}, "train", 16, 0.5, "uniform", seed=seed)
        return [sampler.sample() for _ in range(20)]

    assert stream(1) == stream(1)
    assert stream(1) != stream(2)


def test_bad_settings_are_rejected(sparse_cache):
    with pytest.raises(ValueError, match="exceeds cache size 128"):
        PatchSampler({"A": sparse_cache}, "train", 129, 0.5, "uniform")
    with pytest.raises(ValueError, match="no images in split 'test'"):
        PatchSampler({"A": sparse_cache}, "test", 16, 0.5, "uniform")
    with pytest.raises(ValueError, match="lesion_fraction"):
        PatchSampler({"A": sparse_cache}, "train", 16, 1.5, "uniform")
    with pytest.raises(ValueError, match="mixing"):
        PatchSampler({"A": sparse_cache}, "train", 16, 0.5, "balanced")


def collect(dataset: PatchDataset, workers: int) -> list[dict[str, torch.Tensor]]:
    loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=workers)
    return list(loader)


def test_dataset_batches_do_not_depend_on_workers_and_resume_by_offset(sparse_cache):
    sampler = PatchSampler({"A": sparse_cache}, "train", 32, 0.5, "uniform", seed=8)
    dataset = PatchDataset(sampler, build_augmentation("heavy"), length=12)
    single, parallel = collect(dataset, 0), collect(dataset, 2)
    assert len(single) == 3
    for one, two in zip(single, parallel, strict=True):
        assert one.keys() == {"image", "target", "valid"}
        assert one["image"].shape == (4, 3, 32, 32)
        assert one["target"].shape == (4, 4, 32, 32)
        assert one["valid"].shape == (4, 1, 32, 32)
        for key in one:
            assert torch.equal(one[key], two[key])
    resumed = PatchDataset(sampler, build_augmentation("heavy"), length=7, start=5)
    for index in range(7):
        assert torch.equal(resumed[index]["image"], dataset[5 + index]["image"])
    assert not torch.equal(dataset[0]["image"], dataset[1]["image"])
    with pytest.raises(IndexError):
        dataset[12]


def test_tensors_carry_labels_ignore_and_normalised_image(tmp_path):
    size = 48
    lesions = {EX: box(10, 10, 5, 5), MA: box(30, 20, 1, 1)}
    ignore = box(20, 30, 6, 8)
    cache = write_cache(tmp_path / "c", [lesions], size=size, ignore=ignore)
    sampler = PatchSampler({"A": cache}, "train", size, 0.5, "uniform", seed=9)
    item = PatchDataset(sampler, build_augmentation("none"), length=1)[0]  # the whole image
    labels = np.asarray(cache.labels("img000"))
    expected_valid = np.ones((size, size), dtype=np.float32)
    expected_valid[ignore] = 0  # outside the field of view stays valid background
    assert (labels & FOV_BIT == 0).any()
    np.testing.assert_array_equal(item["valid"][0].numpy(), expected_valid)
    np.testing.assert_array_equal(item["target"].numpy(), unpack(labels).astype(np.float32))
    assert item["target"][TRAINED.index(EX)].sum() == 25
    assert item["target"][TRAINED.index(HE)].sum() == 0
    restored = item["image"].numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    np.testing.assert_allclose(restored * 255, np.asarray(cache.image("img000")), atol=1e-3)
    assert labels[ignore].min() & IGNORE_BIT


def test_validation_images_are_whole_and_in_order(tmp_path):
    cache = write_cache(tmp_path / "c", [spots(40, (EX, HE), s) for s in range(3)], 40, split="val")
    images = ValidationImages(cache, "val", lesions=(HE, EX))
    items = list(images)
    assert [item.image_id for item in items] == ["img000", "img001", "img002"]
    for item in items:
        labels = np.asarray(cache.labels(item.image_id))
        assert item.image.shape == (3, 40, 40)
        np.testing.assert_array_equal(item.target.numpy(), unpack(labels, (HE, EX)))
        assert item.valid.shape == (1, 40, 40)
    with pytest.raises(ValueError, match="no images in split 'train'"):
        ValidationImages(cache, "train")
