"""Synthetic stand-ins for every registered dataset, written in their native layouts.

``generate`` renders photographs with ``fundus``, annotates them in each
dataset's style (``annotation_style``) and hands them to the dataset's
``SyntheticLayout`` (registered by its writer module in this package, which takes
the folder names from the adapter module whose ``scan`` reads the layout back),
which writes them with the real dataset's folder names, file formats and quirks;
so the adapters read the demo data exactly as they read the real data. The
layouts are described in the adapter modules' docstrings, the quirks the writers
imitate in the writer modules'.

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
from lesionsoup.data.datasets.registry import default_styles, get_adapter
from lesionsoup.data.synthetic.annotation_style import AnnotationStyle, resolve_styles
from lesionsoup.data.synthetic.fundus import render_fundus
from lesionsoup.data.synthetic.layout import (
    SyntheticImage,
    SyntheticLayout,
    Written,
    partial_root,
)
from lesionsoup.data.synthetic.registry import LAYOUTS

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

    ``datasets`` defaults to every one with a registered layout. ``scale`` multiplies the native
    image sizes; ``styles`` and ``dataset_styles`` override the annotation styles
    (see ``annotation_style.resolve_styles``); ``lesion_sizes`` multiplies the sizes
    of the lesion classes it names (``{"MA": 3}``); ``workers`` > 1 renders in that
    many processes with identical output.
    """
    chosen = _chosen(datasets)
    if images < 1:
        raise ValueError(f"images per dataset must be >= 1, got {images}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out = Path(out)
    style_of = resolve_styles(default_styles(), styles, dataset_styles)
    sizes = _lesion_sizes(lesion_sizes or {})
    trees = [tree for name in chosen for tree in (name, *LAYOUTS[name].trees)]
    for tree in trees:
        shutil.rmtree(partial_root(out, tree), ignore_errors=True)
        partial_root(out, tree).mkdir(parents=True)

    jobs = [
        job
        for name in chosen
        for job in _jobs(name, images, seed, scale, style_of[name], out, sizes)
    ]
    started = time.perf_counter()
    written = _run(jobs, workers, progress)
    for name in chosen:
        _write_summary(name, jobs, written, out)
    result = {tree: _publish(out, tree) for tree in trees}
    log.info(
        "synthetic: %d images in %d trees under %s in %.1f s",
        len(jobs),
        len(trees),
        out,
        time.perf_counter() - started,
    )
    return result


def _chosen(datasets: Iterable[str] | None) -> list[str]:
    names = list(LAYOUTS) if datasets is None else list(datasets)
    unknown = sorted(set(names) - set(LAYOUTS))
    if unknown:
        raise ValueError(f"unknown synthetic datasets {unknown}; known: {list(LAYOUTS)}")
    return names


def _lesion_sizes(factors: Mapping[str, float]) -> dict[Lesion, float]:
    """Size factors by lesion class, from names such as ``"MA"``."""
    known = [lesion.value for lesion in Lesion]
    unknown = sorted(set(factors) - set(known))
    if unknown:
        raise ValueError(f"lesion_sizes names unknown lesions {unknown}; known: {known}")
    return {Lesion(name): float(factor) for name, factor in factors.items()}


def _write_summary(
    dataset: str, jobs: Sequence[SyntheticImage], written: Sequence[Written], out: Path
) -> None:
    """The tree-level files of ``dataset``'s layout, from its own images' rows."""
    layout = LAYOUTS[dataset]
    if layout.summary is not None:
        rows = [row for job, row in zip(jobs, written, strict=True) if job.layout is layout]
        layout.summary(partial_root(out, dataset), rows)


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
    dataset: str,
    count: int,
    seed: int,
    scale: float,
    style: AnnotationStyle,
    out: Path,
    lesion_sizes: Mapping[Lesion, float],
) -> list[SyntheticImage]:
    """The images of ``dataset``'s layout in its official splits, then its companion's."""
    own = LAYOUTS[dataset]
    layouts: list[tuple[SyntheticLayout, Mapping[str, float]]] = [
        (own, get_adapter(dataset).official_splits or NO_SPLIT)
    ]
    if own.companion is not None:
        layouts.append((own.companion, NO_SPLIT))
    jobs = []
    for layout, shares in layouts:
        names = layout.names(count)
        splits = _split_of_each(len(names), shares)
        jobs += [
            SyntheticImage(
                dataset,
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
