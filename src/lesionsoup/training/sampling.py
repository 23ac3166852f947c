"""Lesion-aware patch sampling from caches, and the torch datasets built on it.

A draw picks a dataset (in proportion to its number of images, or uniformly
per dataset), then an anchor pixel, then a patch around it:

* with probability ``lesion_fraction``, a lesion anchor: an image chosen
  uniformly among the dataset's images that show any trained lesion, a class
  chosen uniformly among the trained classes present in that image, and one of
  that class's pixels chosen uniformly (from the cache's precomputed
  locations). Rare classes are thereby seen as often as common ones;
* otherwise, a field-of-view anchor: an image chosen uniformly among all the
  dataset's images and a pixel chosen uniformly inside its field of view (by
  rejection from the memory-mapped label plane; an image without any
  field-of-view bit falls back to a uniform pixel). A dataset without any
  lesion image always draws this way.

The patch is then placed so that the anchor lands at a uniformly random
position inside it (no centre bias) and clipped to the image, which keeps the
anchor inside.

Tensors: images are scaled to [0, 1] and normalised with the ImageNet mean and
standard deviation (the encoders' pretraining statistics); targets hold one
0/1 channel per trained lesion; ``valid`` is 0 only where the ignore bit is
set. Pixels outside the field of view stay valid background, as the paper
trains on whole patches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from lesionsoup.core.lesions import FOV_BIT, IGNORE_BIT, TRAINED, Lesion, unpack
from lesionsoup.core.specs import TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.training.augment import augment

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_PIXEL_SCALE = (1 / (255 * IMAGENET_STD))[:, None, None]
_PIXEL_SHIFT = (IMAGENET_MEAN / IMAGENET_STD)[:, None, None]

#: Random pixels tried before a field-of-view anchor gives up on the field of view.
_FOV_TRIES = 64


class PatchLocation(NamedTuple):
    dataset: str
    image_id: str
    top: int
    left: int
    anchor: tuple[int, int]  # (y, x) of the drawn pixel, in image coordinates
    lesion: Lesion | None  # the anchor's class; None for a field-of-view anchor


@dataclass(frozen=True)
class _Pool:
    """The images of one dataset split, and which trained lesions each shows."""

    cache: Cache
    image_ids: list[str]
    lesions_present: dict[str, tuple[Lesion, ...]]  # only images with any
    lesion_image_ids: list[str]  # the keys of lesions_present

    @classmethod
    def of(cls, cache: Cache, split: str, lesions: tuple[Lesion, ...]) -> _Pool:
        rows = cache.index.loc[cache.index["split"] == split]
        present = {
            str(row["image_id"]): tuple(lesion for lesion in lesions if row[f"px_{lesion.value}"])
            for _, row in rows.iterrows()
        }
        with_lesions = {image_id: found for image_id, found in present.items() if found}
        return cls(cache, list(present), with_lesions, list(with_lesions))


class PatchSampler:
    """Draws patch locations from several caches; reproducible and resumable.

    ``sample()`` advances the sampler's own generator, whose state
    ``state_dict()`` saves as JSON-able data; ``draw(rng)`` draws with any
    generator and leaves the sampler unchanged.
    """

    def __init__(
        self,
        caches: dict[str, Cache],
        split: str,
        patch_size: int,
        lesion_fraction: float,
        mixing: Literal["proportional", "uniform"],
        lesions: tuple[Lesion, ...] = TRAINED,
        seed: int = 0,
    ) -> None:
        if not caches:
            raise ValueError("no caches to sample from")
        if not 0.0 <= lesion_fraction <= 1.0:
            raise ValueError(f"lesion_fraction must lie in [0, 1], got {lesion_fraction}")
        if mixing not in ("proportional", "uniform"):
            raise ValueError(f"mixing must be 'proportional' or 'uniform', got {mixing!r}")
        self.pools: dict[str, _Pool] = {}
        for name, cache in caches.items():
            if patch_size > cache.size:
                raise ValueError(
                    f"{cache.directory}: patch size {patch_size} exceeds cache size {cache.size}"
                )
            pool = _Pool.of(cache, split, lesions)
            if not pool.image_ids:
                raise ValueError(f"{cache.directory}: no images in split {split!r}")
            self.pools[name] = pool
        self.names = list(self.pools)
        counts = np.array([len(pool.image_ids) for pool in self.pools.values()], dtype=float)
        weights = counts if mixing == "proportional" else np.ones_like(counts)
        self.dataset_probabilities = weights / weights.sum()
        self.patch_size = patch_size
        self.lesion_fraction = lesion_fraction
        self.lesions = lesions
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    @classmethod
    def for_training(
        cls,
        caches: dict[str, Cache],
        settings: TrainSettings,
        lesions: tuple[Lesion, ...],
        seed: int,
    ) -> PatchSampler:
        """The sampler of a run's training split, as its settings describe it."""
        return cls(
            caches,
            split="train",
            patch_size=settings.patch_size,
            lesion_fraction=settings.lesion_fraction,
            mixing=settings.mixing,  # type: ignore[arg-type]
            lesions=lesions,
            seed=seed,
        )

    def sample(self) -> PatchLocation:
        """The next location of the sampler's own stream."""
        return self.draw(self._rng)

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["bit_generator"]

    def draw(self, rng: np.random.Generator) -> PatchLocation:
        """One location drawn with ``rng``."""
        name = self.names[rng.choice(len(self.names), p=self.dataset_probabilities)]
        pool = self.pools[name]
        size = pool.cache.size
        lesion: Lesion | None = None
        if pool.lesion_image_ids and rng.random() < self.lesion_fraction:
            image_id = pool.lesion_image_ids[rng.integers(len(pool.lesion_image_ids))]
            present = pool.lesions_present[image_id]
            lesion = present[rng.integers(len(present))]
            pixels = pool.cache.lesion_pixels(image_id)[lesion]
            y, x = divmod(int(pixels[rng.integers(len(pixels))]), size)
        else:
            image_id = pool.image_ids[rng.integers(len(pool.image_ids))]
            y, x = _fov_pixel(pool.cache.labels(image_id), rng)
        top = _place(y, self.patch_size, size, rng)
        left = _place(x, self.patch_size, size, rng)
        return PatchLocation(name, image_id, top, left, (y, x), lesion)

    def read(self, location: PatchLocation) -> tuple[np.ndarray, np.ndarray]:
        """The image patch (P, P, 3) and label patch (P, P) at ``location``."""
        cache = self.pools[location.dataset].cache
        return cache.patch(location.image_id, location.top, location.left, self.patch_size)


def _fov_pixel(labels: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A pixel drawn uniformly inside the field of view, by rejection."""
    height, width = labels.shape
    for _ in range(_FOV_TRIES):
        y, x = int(rng.integers(height)), int(rng.integers(width))
        if labels[y, x] & FOV_BIT:
            break
    return y, x


def _place(anchor: int, patch_size: int, image_size: int, rng: np.random.Generator) -> int:
    """The patch start putting ``anchor`` at a uniform offset, clipped to the image."""
    start = anchor - int(rng.integers(patch_size))
    return min(max(start, 0), image_size - patch_size)


def to_tensors(
    image: np.ndarray, labels: np.ndarray, lesions: tuple[Lesion, ...] = TRAINED
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model input (3, H, W), target (C, H, W) and valid mask (1, H, W), all float32."""
    normalised = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    normalised *= _PIXEL_SCALE  # (x / 255 - mean) / std, in place
    normalised -= _PIXEL_SHIFT
    target = unpack(labels, lesions).astype(np.float32)
    valid = ((labels & IGNORE_BIT) == 0).astype(np.float32)[None]
    return torch.from_numpy(normalised), torch.from_numpy(target), torch.from_numpy(valid)


class Shard(NamedTuple):
    """One rank's part of every step's batch: patches ``rank·b .. rank·b + b - 1`` of the
    ``world·b`` the step trains on (``b``: the per-device ``batch_size``)."""

    rank: int = 0
    world: int = 1
    batch_size: int = 1

    def sample_index(self, index: int) -> int:
        """The index, in the run's stream of patches, of this rank's ``index``-th patch."""
        step, slot = divmod(index, self.batch_size)
        return (step * self.world + self.rank) * self.batch_size + slot


class PatchDataset(Dataset):
    """Training patches as a map-style dataset over sample indices.

    Sample ``i`` is drawn and augmented with generators seeded from
    ``SeedSequence([sampler.seed, start + i])``, so that its content depends on
    neither the worker that loads it nor the samples before it: any number of
    DataLoader workers yields the same batches, and resuming after ``n``
    samples is ``start=n``. Use it with ``shuffle=False``. Items are dicts
    with ``image``, ``target`` and ``valid`` (see ``to_tensors``). Under
    several devices, ``shard`` picks a rank's patches of each step, so that the
    ranks together see the patches one device with their whole batch sees.
    """

    def __init__(
        self,
        sampler: PatchSampler,
        augmentation: A.Compose,
        length: int,
        start: int = 0,
        shard: Shard = Shard(),  # noqa: B008 (immutable)
    ) -> None:
        if length < 0 or start < 0:
            raise ValueError(f"length and start must be >= 0, got {length} and {start}")
        self.sampler = sampler
        self.augmentation = augmentation
        self.length = length
        self.start = start
        self.shard = shard

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"sample {index} outside 0..{self.length - 1}")
        sample = self.start + self.shard.sample_index(index)
        sample_seed = np.random.SeedSequence([self.sampler.seed, sample])
        draw_seed, augment_seed = sample_seed.spawn(2)
        location = self.sampler.draw(np.random.default_rng(draw_seed))
        image, labels = self.sampler.read(location)
        (augment_int,) = augment_seed.generate_state(1)
        image, labels = augment(self.augmentation, image, labels, int(augment_int))
        image_t, target, valid = to_tensors(image, labels, self.sampler.lesions)
        return {"image": image_t, "target": target, "valid": valid}


class ValidationImage(NamedTuple):
    image_id: str
    image: torch.Tensor  # (3, S, S)
    target: torch.Tensor  # (C, S, S)
    valid: torch.Tensor  # (1, S, S)


class ValidationImages(Dataset):
    """The whole images of one cache split, in index order, without augmentation."""

    def __init__(self, cache: Cache, split: str, lesions: tuple[Lesion, ...] = TRAINED) -> None:
        self.cache = cache
        self.image_ids = cache.ids_in(split)
        if not self.image_ids:
            raise ValueError(f"{cache.directory}: no images in split {split!r}")
        self.lesions = lesions

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> ValidationImage:
        image_id = self.image_ids[index]
        image = np.asarray(self.cache.image(image_id))
        labels = np.asarray(self.cache.labels(image_id))
        return ValidationImage(image_id, *to_tensors(image, labels, self.lesions))

    def __iter__(self) -> Iterator[ValidationImage]:
        return (self[index] for index in range(len(self)))
