"""Synthetic stand-ins for every registered dataset, written in their native layouts.

``generate`` renders photographs with ``lesionsoup.data.fundus``, annotates them in
each dataset's style (``lesionsoup.data.annotation_style``) and hands them to the
dataset's ``SyntheticLayout`` (registered by its adapter module, next to the
``scan`` that reads the layout back), which writes them with the real dataset's
folder names, file formats and quirks; so the adapters read the demo data
exactly as they read the real data. The layouts and quirks of each dataset are
described in its adapter module's docstring.

Every image has its own random stream, derived from ``(seed, layout stream,
index)``, so the output does not depend on the order or the number of worker
processes, nor on which other datasets are generated or registered. Files go
through a temporary name; each tree is built in ``<root>.partial`` and renamed
when complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.annotation_style import AnnotationStyle, resolve_styles
from lesionsoup.data.datasets.registry import ADAPTERS, DatasetAdapter, default_styles
from lesionsoup.data.datasets.synthetic_layout import (
    SyntheticImage,
    SyntheticLayout,
    Written,
    partial_root,
)
from lesionsoup.data.fundus import render_fundus

log = logging.getLogger(__name__)

#: Every sixth image of a dataset with ``healthy_eyes`` shows no lesion.
HEALTHY_EVERY = 6
#: Split shares of datasets without an official split: every image gets split "".
NO_SPLIT = {"": 1}


def generate(
    out: Path,
    images: int,
    seed: int,
    scale: float = 1.0,
    styles: Mapping[str, Mapping[str, float]] | None = None,
    datasets: Iterable[str] | None = None,
    *,
    dataset_styles: Mapping[str, str] | None = None,
    lesion_sizes: Mapping[str, float] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, Path]:
    """Write ``images`` synthetic images per dataset under ``out``; return each tree's root.

    ``datasets`` defaults to every registered one. ``scale`` multiplies the native
    image sizes; ``styles`` and ``dataset_styles`` override the annotation styles
    (see ``annotation_style.resolve_styles``); ``lesion_sizes`` multiplies the sizes
    of the lesion classes it names (``{"MA": 3}``); ``workers`` > 1 renders in that
    many processes with identical output.
    """
    adapters = _chosen(datasets)
    if images < 1:
        raise ValueError(f"images per dataset must be >= 1, got {images}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out = Path(out)
    style_of = resolve_styles(default_styles(), styles, dataset_styles)
    sizes = _lesion_sizes(lesion_sizes or {})
    trees = [tree for adapter in adapters for tree in (adapter.name, *adapter.synthetic.trees)]
    for tree in trees:
        shutil.rmtree(partial_root(out, tree), ignore_errors=True)
        partial_root(out, tree).mkdir(parents=True)

    jobs = [
        job
        for adapter in adapters
        for job in _jobs(adapter, images, seed, scale, style_of[adapter.name], out, sizes)
    ]
    started = time.perf_counter()
    written = _run(jobs, workers, progress)
    for adapter in adapters:
        _write_summary(adapter, jobs, written, out)
    result = {tree: _publish(out, tree) for tree in trees}
    log.info(
        "synthetic: %d images in %d trees under %s in %.1f s",
        len(jobs),
        len(trees),
        out,
        time.perf_counter() - started,
    )
    return result


def _chosen(datasets: Iterable[str] | None) -> list[DatasetAdapter]:
    names = list(ADAPTERS) if datasets is None else list(datasets)
    unknown = sorted(set(names) - set(ADAPTERS))
    if unknown:
        raise ValueError(f"unknown synthetic datasets {unknown}; known: {list(ADAPTERS)}")
    return [ADAPTERS[name] for name in names]


def _lesion_sizes(factors: Mapping[str, float]) -> dict[Lesion, float]:
    """Size factors by lesion class, from names such as ``"MA"``."""
    known = [lesion.value for lesion in Lesion]
    unknown = sorted(set(factors) - set(known))
    if unknown:
        raise ValueError(f"lesion_sizes names unknown lesions {unknown}; known: {known}")
    return {Lesion(name): float(factor) for name, factor in factors.items()}


def _write_summary(
    adapter: DatasetAdapter, jobs: Sequence[SyntheticImage], written: Sequence[Written], out: Path
) -> None:
    """The tree-level files of ``adapter``'s layout, from its own images' rows."""
    layout = adapter.synthetic
    if layout.summary is not None:
        rows = [row for job, row in zip(jobs, written, strict=True) if job.layout is layout]
        layout.summary(partial_root(out, adapter.name), rows)


def _publish(out: Path, tree: str) -> Path:
    """Rename the completed ``tree`` into place, replacing an earlier one."""
    final = out / tree
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial_root(out, tree), final)
    log.info("synthetic %s written to %s", tree, final)
    return final


def _run(jobs: list[SyntheticImage], workers: int, progress: bool) -> list[Written]:
    def bar(results: Iterable[Written]) -> list[Written]:
        return list(tqdm(results, total=len(jobs), desc="synthetic", disable=not progress))

    if workers <= 1:
        return bar(map(_write_image, jobs))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return bar(pool.map(_write_image, jobs, chunksize=2))


def _split_of_each(count: int, shares: Mapping[str, float]) -> list[str]:
    """Splits for ``count`` images in order, in proportion to ``shares``, each split non-empty
    when there are enough images (largest-remainder rounding)."""
    total = sum(shares.values())
    exact = {split: count * share / total for split, share in shares.items()}
    sizes = {split: int(value) for split, value in exact.items()}
    if count >= len(shares):
        for split in sizes:
            sizes[split] = max(sizes[split], 1)
    by_remainder = sorted(shares, key=lambda split: sizes[split] - exact[split])
    while sum(sizes.values()) < count:
        sizes[by_remainder.pop(0)] += 1
    while sum(sizes.values()) > count:
        largest = max(sizes, key=lambda split: sizes[split])
        sizes[largest] -= 1
    return [split for split in shares for _ in range(sizes[split])]


def _jobs(
    adapter: DatasetAdapter,
    count: int,
    seed: int,
    scale: float,
    style: AnnotationStyle,
    out: Path,
    lesion_sizes: Mapping[Lesion, float],
) -> list[SyntheticImage]:
    """The images of ``adapter``'s layout in its official splits, then its companion's."""
    layouts: list[tuple[SyntheticLayout, Mapping[str, float]]] = [
        (adapter.synthetic, adapter.official_splits or NO_SPLIT)
    ]
    if adapter.synthetic.companion is not None:
        layouts.append((adapter.synthetic.companion, NO_SPLIT))
    jobs = []
    for layout, shares in layouts:
        names = layout.names(count)
        splits = _split_of_each(len(names), shares)
        jobs += [
            SyntheticImage(
                adapter.name,
                index,
                name,
                split,
                np.random.SeedSequence(seed, spawn_key=(layout.stream, index)),
                scale,
                style,
                out,
                layout,
                lesion_sizes,
            )
            for index, (name, split) in enumerate(zip(names, splits, strict=True))
        ]
    return jobs


def _write_image(job: SyntheticImage) -> Written:
    rng = np.random.default_rng(job.seed)
    sizes = job.layout.sizes
    native_h, native_w = sizes[int(rng.integers(len(sizes)))]
    height, width = max(32, round(native_h * job.scale)), max(32, round(native_w * job.scale))
    healthy = job.layout.healthy_eyes and job.index % HEALTHY_EVERY == HEALTHY_EVERY - 1
    density = 0.0 if healthy else rng.uniform(0.5, 1.8)
    fundus = render_fundus(
        rng, height, width, density, extras=job.layout.extras, lesion_sizes=job.lesion_sizes
    )
    annotations = {
        lesion: job.style.annotate(mask, fundus.unit) & fundus.fov
        for lesion, mask in fundus.lesions.items()
    }
    job.layout.write(job, fundus, annotations, rng)
    return Written(job.name, _grade(annotations))


def _grade(annotations: Mapping[Lesion, np.ndarray]) -> int:
    """A plausible DR grade (0-4) from what the image shows."""
    present = {lesion for lesion, mask in annotations.items() if mask.any()}
    if not present:
        return 0
    if Lesion.NV in present:
        return 4
    if Lesion.IRMA in present or {Lesion.HE, Lesion.CWS} <= present:
        return 3
    return 1 if present == {Lesion.MA} else 2
