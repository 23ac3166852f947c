"""Synthetic stand-ins for the five datasets, written in their native layouts.

``generate`` renders photographs with ``lesionsoup.data.fundus``, annotates them in
each dataset's style (``lesionsoup.data.annotation_style``) and writes one tree per
dataset with the real dataset's folder names, file formats and quirks, so that
the adapters read the demo data exactly as they read the real data:

============== ==============================================================
``IDRID``      ``A. Segmentation/...``; TIFF masks 0/255; SE only where present
``DDR``        ``lesion_segmentation/{train,valid,test}``; ``valid/segmentation
               label``; a mask file per lesion, often all black; many sizes
``FGADR``      ``Seg-set/...``; ``Hemohedge``; anti-aliased masks; grading CSV
               without header; no split
``RETLES``     ``images_896x896``, ``lesion_segs_896x896/<id>/<lesion>.png``;
               127 = excluded; files and folders only where lesions are; grades
``MAPLES``     the ``maples-dr`` package export: ``{train,test}/<field>/``,
               square crops of the fundus
``MAPLES-release``  ``MAPLES-DR/{Train,test}/<Biomarker>/`` next to MESSIDOR
               ``Base*/<name>.tif`` (one folder lower-case), plus unlabelled
               MESSIDOR images
============== ==============================================================

Every image has its own random stream, derived from ``(seed, dataset,
index)``, so the output does not depend on the order or the number of worker
processes. Files go through a temporary name; each tree is built in
``<root>.partial`` and renamed when complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.lesions import Lesion
from lesionsoup.data.annotation_style import AnnotationStyle, resolve_styles
from lesionsoup.data.fundus import SyntheticFundus, render_fundus

log = logging.getLogger(__name__)

ALL: tuple[str, ...] = ("IDRID", "DDR", "FGADR", "RETLES", "MAPLES")
#: The second MAPLES-DR tree (release archive + MESSIDOR), written with ``MAPLES``.
MAPLES_RELEASE = "MAPLES-release"

#: Native (height, width) choices per dataset; DDR and MESSIDOR vary per image.
NATIVE_SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    "IDRID": ((2848, 4288),),
    "DDR": ((1728, 2592), (1536, 2048), (1934, 1956), (1024, 1280), (1200, 1600)),
    "FGADR": ((1280, 1280),),
    "RETLES": ((896, 896),),
    "MAPLES": ((960, 1440), (1488, 2240), (1536, 2304)),
}
#: Side of the square MAPLES-DR images in the ``maples-dr`` export.
MAPLES_EXPORT_SIZE = 1500
#: Official splits and their shares (the real datasets' proportions).
SPLITS: dict[str, dict[str, float]] = {
    "IDRID": {"train": 54, "test": 27},
    "DDR": {"train": 383, "valid": 149, "test": 225},
    "FGADR": {"": 1},
    "RETLES": {"": 1},
    "MAPLES": {"train": 138, "test": 60},
}
#: Every sixth image of these datasets is a healthy eye (IDRiD's segmentation set has none).
HEALTHY_EVERY = 6
#: Share of RETLES lesion components marked 127 (excluded by the dataset's authors).
RETLES_EXCLUDED_SHARE = 0.15

_JPEG = [
    *(cv2.IMWRITE_JPEG_QUALITY, 92),
    *(cv2.IMWRITE_JPEG_OPTIMIZE, 0),
    *(cv2.IMWRITE_JPEG_PROGRESSIVE, 0),
]
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]
_TIFF = [cv2.IMWRITE_TIFF_COMPRESSION, 5]  # LZW
_PARAMS = {".jpg": _JPEG, ".png": _PNG, ".tif": _TIFF}


@dataclass(frozen=True)
class _Job:
    """One image to render and write, with everything needed to do so in any process."""

    dataset: str
    index: int
    name: str
    split: str
    seed: np.random.SeedSequence
    scale: float
    style: AnnotationStyle
    out: Path


@dataclass(frozen=True)
class _Written:
    name: str
    grade: int


def _partial_root(out: Path, name: str) -> Path:
    return out / f"{name}.partial"


def generate(
    out: Path,
    images: int,
    seed: int,
    scale: float = 1.0,
    styles: Mapping[str, Mapping[str, float]] | None = None,
    datasets: Iterable[str] = ALL,
    *,
    dataset_styles: Mapping[str, str] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, Path]:
    """Write ``images`` synthetic images per dataset under ``out``; return each tree's root.

    ``scale`` multiplies the native image sizes; ``styles`` and ``dataset_styles``
    override the annotation styles (see ``annotation_style.resolve_styles``);
    ``workers`` > 1 renders in that many processes with identical output.
    """
    datasets = tuple(datasets)
    unknown = sorted(set(datasets) - set(ALL))
    if unknown:
        raise ValueError(f"unknown synthetic datasets {unknown}; known: {list(ALL)}")
    if images < 1:
        raise ValueError(f"images per dataset must be >= 1, got {images}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out = Path(out)
    style_of = resolve_styles(styles, dataset_styles)
    roots = [name for dataset in datasets for name in _roots_of(dataset)]
    for name in roots:
        shutil.rmtree(_partial_root(out, name), ignore_errors=True)
        _partial_root(out, name).mkdir(parents=True)

    jobs = [
        job
        for dataset in datasets
        for job in _jobs(dataset, images, seed, scale, style_of[dataset], out)
    ]
    jobs += _messidor_extra_jobs(images, seed, scale, out) if "MAPLES" in datasets else []
    started = time.perf_counter()
    written = _run(jobs, workers, progress)
    for dataset in datasets:
        rows = [row for job, row in zip(jobs, written, strict=True) if job.dataset == dataset]
        if dataset in _SUMMARIES:
            _SUMMARIES[dataset](_partial_root(out, dataset), rows)

    result = {}
    for name in roots:
        final = out / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(_partial_root(out, name), final)
        result[name] = final
        log.info("synthetic %s written to %s", name, final)
    log.info(
        "synthetic: %d images in %d trees under %s in %.1f s",
        len(jobs),
        len(roots),
        out,
        time.perf_counter() - started,
    )
    return result


def _roots_of(dataset: str) -> tuple[str, ...]:
    return (dataset, MAPLES_RELEASE) if dataset == "MAPLES" else (dataset,)


def _run(jobs: list[_Job], workers: int, progress: bool) -> list[_Written]:
    def bar(results: Iterable[_Written]) -> list[_Written]:
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


def _stream(seed: int, dataset: str, index: int) -> np.random.SeedSequence:
    codes = {name: code for code, name in enumerate((*ALL, "MESSIDOR"))}
    return np.random.SeedSequence(seed, spawn_key=(codes[dataset], index))


def _jobs(
    dataset: str, count: int, seed: int, scale: float, style: AnnotationStyle, out: Path
) -> list[_Job]:
    splits = _split_of_each(count, SPLITS[dataset])
    names = _NAMERS[dataset](count)
    return [
        _Job(dataset, index, name, split, _stream(seed, dataset, index), scale, style, out)
        for index, (name, split) in enumerate(zip(names, splits, strict=True))
    ]


def _messidor_extra_jobs(images: int, seed: int, scale: float, out: Path) -> list[_Job]:
    """Unlabelled MESSIDOR photographs next to the MAPLES-DR ones (no annotation)."""
    count = max(2, images // 4)
    return [
        _Job(
            "MESSIDOR",
            index,
            f"2006{index % 9 + 1:02d}{index % 28 + 1:02d}_{61000 + 41 * index:05d}_{index:04d}_PP",
            "",
            _stream(seed, "MESSIDOR", index),
            scale,
            AnnotationStyle(),
            out,
        )
        for index in range(count)
    ]


# ---------------------------------------------------------------- names


def _idrid_names(count: int) -> list[str]:
    return [f"IDRiD_{index + 1:02d}" for index in range(count)]


def _ddr_names(count: int) -> list[str]:
    return [f"{7 + i % 3:03d}-{1000 + 37 * i:04d}-{100 + 100 * (i % 2)}" for i in range(count)]


def _fgadr_names(count: int) -> list[str]:
    return [f"{index + 1:04d}_{1 + index % 3}" for index in range(count)]


def _retles_names(count: int) -> list[str]:
    """``<patient>_<eye>``: both eyes for most patients, one eye for every fourth."""
    names: list[str] = []
    patient = 0
    while len(names) < count:
        eyes = ("left",) if patient % 4 == 3 else ("left", "right")
        names += [f"{10001 + 7 * patient}_{eye}" for eye in eyes]
        patient += 1
    return names[:count]


def _maples_names(count: int) -> list[str]:
    return [
        f"2005{index % 9 + 1:02d}{index % 28 + 1:02d}_{38000 + 37 * index:05d}_{100 + index:04d}_PP"
        for index in range(count)
    ]


_NAMERS: dict[str, Callable[[int], list[str]]] = {
    "IDRID": _idrid_names,
    "DDR": _ddr_names,
    "FGADR": _fgadr_names,
    "RETLES": _retles_names,
    "MAPLES": _maples_names,
}


# ---------------------------------------------------------------- one image


def _write_image(job: _Job) -> _Written:
    rng = np.random.default_rng(job.seed)
    sizes = NATIVE_SIZES["MAPLES" if job.dataset == "MESSIDOR" else job.dataset]
    native_h, native_w = sizes[int(rng.integers(len(sizes)))]
    height, width = max(32, round(native_h * job.scale)), max(32, round(native_w * job.scale))
    healthy = job.dataset != "IDRID" and job.index % HEALTHY_EVERY == HEALTHY_EVERY - 1
    density = 0.0 if healthy else rng.uniform(0.5, 1.8)
    fundus = render_fundus(rng, height, width, density, extras=job.dataset in ("FGADR", "RETLES"))
    annotations = {
        lesion: job.style.annotate(mask, fundus.unit) & fundus.fov
        for lesion, mask in fundus.lesions.items()
    }
    _WRITERS[job.dataset](job, fundus, annotations, rng)
    return _Written(job.name, _grade(annotations))


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


def _save(path: Path, array: np.ndarray) -> None:
    """Write an RGB image or a single-channel mask, format by suffix, through a temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = array[..., ::-1] if array.ndim == 3 else array
    ok, encoded = cv2.imencode(path.suffix, np.ascontiguousarray(pixels), _PARAMS[path.suffix])
    if not ok:
        raise OSError(f"{path}: could not encode the image")
    atomic_write_bytes(path, encoded.tobytes())


def _binary(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.uint8) * 255


Writer = Callable[[_Job, SyntheticFundus, dict[Lesion, np.ndarray], np.random.Generator], None]


def _write_idrid(
    job: _Job, fundus: SyntheticFundus, masks: dict[Lesion, np.ndarray], rng: np.random.Generator
) -> None:
    root = _partial_root(job.out, job.dataset) / "A. Segmentation"
    subset = {"train": "a. Training Set", "test": "b. Testing Set"}[job.split]
    _save(root / "1. Original Images" / subset / f"{job.name}.jpg", fundus.image)
    truth = root / "2. All Segmentation Groundtruths" / subset
    files = {
        "1. Microaneurysms": ("MA", masks[Lesion.MA]),
        "2. Haemorrhages": ("HE", masks[Lesion.HE]),
        "3. Hard Exudates": ("EX", masks[Lesion.EX]),
        "4. Soft Exudates": ("SE", masks[Lesion.CWS]),
        "5. Optic Disc": ("OD", fundus.optic_disc),
    }
    for folder, (suffix, mask) in files.items():
        if suffix != "SE" or mask.any():  # IDRiD has soft-exudate files only where there are some
            _save(truth / folder / f"{job.name}_{suffix}.tif", _binary(mask))


def _write_ddr(
    job: _Job, fundus: SyntheticFundus, masks: dict[Lesion, np.ndarray], rng: np.random.Generator
) -> None:
    root = _partial_root(job.out, job.dataset) / "lesion_segmentation" / job.split
    _save(root / "image" / f"{job.name}.jpg", fundus.image)
    labels = root / ("segmentation label" if job.split == "valid" else "label")
    for lesion in (Lesion.EX, Lesion.HE, Lesion.MA, Lesion.CWS):
        folder = "SE" if lesion is Lesion.CWS else lesion.value
        _save(labels / folder / f"{job.name}.tif", _binary(masks[lesion]))


FGADR_FOLDERS: dict[Lesion, str] = {
    Lesion.MA: "Microaneurysms_Masks",
    Lesion.HE: "Hemohedge_Masks",
    Lesion.EX: "HardExudate_Masks",
    Lesion.CWS: "SoftExudate_Masks",
    Lesion.IRMA: "IRMA_Masks",
    Lesion.NV: "Neovascularization_Masks",
}


def _anti_aliased(mask: np.ndarray) -> np.ndarray:
    """0/255 mask with soft grey edges outside the lesion (the lesion itself stays 255)."""
    binary = _binary(mask)
    return np.maximum(binary, cv2.GaussianBlur(binary, (0, 0), 0.8))


def _write_fgadr(
    job: _Job, fundus: SyntheticFundus, masks: dict[Lesion, np.ndarray], rng: np.random.Generator
) -> None:
    root = _partial_root(job.out, job.dataset) / "Seg-set"
    _save(root / "Original_Images" / f"{job.name}.png", fundus.image)
    for lesion, folder in FGADR_FOLDERS.items():
        _save(root / folder / f"{job.name}.png", _anti_aliased(masks[lesion]))


def _write_fgadr_grades(root: Path, rows: list[_Written]) -> None:
    lines = "".join(f"{row.name}.png,{row.grade}\n" for row in rows)  # no header, like the original
    atomic_write_bytes(root / "Seg-set" / "DR_Seg_Grading_Label.csv", lines.encode())


def _with_excluded(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """255 on the lesion, 127 on the components the dataset's authors excluded."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    values = np.where(rng.random(count) < RETLES_EXCLUDED_SHARE, 127, 255).astype(np.uint8)
    values[0] = 0
    return values[labels]


def _write_retles(
    job: _Job, fundus: SyntheticFundus, masks: dict[Lesion, np.ndarray], rng: np.random.Generator
) -> None:
    root = _partial_root(job.out, job.dataset)
    _save(root / "images_896x896" / f"{job.name}.jpg", fundus.image)
    haemorrhages = cv2.connectedComponents(masks[Lesion.HE].astype(np.uint8), connectivity=8)[1]
    preretinal_ids = np.flatnonzero(rng.random(haemorrhages.max() + 1) < 0.15)
    preretinal = np.isin(haemorrhages, preretinal_ids[preretinal_ids > 0])
    files = {
        "microaneurysm": masks[Lesion.MA],
        "retinal_hemorrhage": masks[Lesion.HE] & ~preretinal,
        "preretinal_hemorrhage": preretinal,
        "hard_exudate": masks[Lesion.EX],
        "cotton_wool_spots": masks[Lesion.CWS],
        "neovascularization": masks[Lesion.NV],
    }
    for lesion_name, mask in files.items():
        if mask.any():  # no file, and no folder for a healthy eye, where there is no lesion
            path = root / "lesion_segs_896x896" / job.name / f"{lesion_name}.png"
            _save(path, _with_excluded(mask, rng))


def _write_retles_grades(root: Path, rows: list[_Written]) -> None:
    lines = "image id,grade\n" + "".join(f"{row.name},{row.grade}\n" for row in rows)
    atomic_write_bytes(root / "dr_grades.csv", lines.encode())


MAPLES_EXPORT_FIELDS: dict[str, Lesion | str] = {
    "exudates": Lesion.EX,
    "hemorrhages": Lesion.HE,
    "microaneurysms": Lesion.MA,
    "cottonWoolSpots": Lesion.CWS,
    "vessels": "vessels",
    "opticDisc": "optic_disc",
}
MAPLES_RELEASE_FOLDERS: dict[str, Lesion | str] = {
    "Exudates": Lesion.EX,
    "Hemorrhages": Lesion.HE,
    "Microaneurysms": Lesion.MA,
    "CottonWoolSpots": Lesion.CWS,
    "Vessels": "vessels",
    "OpticDisc": "optic_disc",
}
#: MESSIDOR folders used, with one in lower case as a test of case-insensitive adapters.
MESSIDOR_FOLDERS = ("Base11", "base12", "Base21", "Base34")
#: Split folder names in the release tree (case varies on purpose).
MAPLES_RELEASE_SPLITS = {"train": "Train", "test": "test"}


def _maples_mask(
    key: Lesion | str, fundus: SyntheticFundus, masks: dict[Lesion, np.ndarray]
) -> np.ndarray:
    return masks[key] if isinstance(key, Lesion) else getattr(fundus, key)


def _square_crop(array: np.ndarray, side: int, interpolation: int) -> np.ndarray:
    """The centred square of a landscape photograph resized to ``side`` (what ``maples-dr``
    exports: the fundus region cropped out of the MESSIDOR image)."""
    height, width = array.shape[:2]
    left = (width - height) // 2
    return cv2.resize(array[:, left : left + height], (side, side), interpolation=interpolation)


def _write_maples(
    job: _Job, fundus: SyntheticFundus, masks: dict[Lesion, np.ndarray], rng: np.random.Generator
) -> None:
    _write_messidor(job, fundus, masks, rng)
    labels = _partial_root(job.out, MAPLES_RELEASE) / "MAPLES-DR"
    release = labels / MAPLES_RELEASE_SPLITS[job.split]
    for folder, key in MAPLES_RELEASE_FOLDERS.items():
        _save(release / folder / f"{job.name}.png", _binary(_maples_mask(key, fundus, masks)))

    export = _partial_root(job.out, job.dataset) / job.split
    side = max(32, round(MAPLES_EXPORT_SIZE * job.scale))
    image = _square_crop(fundus.image, side, cv2.INTER_AREA)
    _save(export / "fundus" / f"{job.name}.jpg", image)
    for field, key in MAPLES_EXPORT_FIELDS.items():
        mask = _square_crop(_binary(_maples_mask(key, fundus, masks)), side, cv2.INTER_LINEAR)
        _save(export / field / f"{job.name}.png", np.where(mask >= 128, 255, 0).astype(np.uint8))


def _write_messidor(
    job: _Job, fundus: SyntheticFundus, masks: dict[Lesion, np.ndarray], rng: np.random.Generator
) -> None:
    folder = MESSIDOR_FOLDERS[job.index % len(MESSIDOR_FOLDERS)]
    _save(_partial_root(job.out, MAPLES_RELEASE) / folder / f"{job.name}.tif", fundus.image)


_WRITERS: dict[str, Writer] = {
    "IDRID": _write_idrid,
    "DDR": _write_ddr,
    "FGADR": _write_fgadr,
    "RETLES": _write_retles,
    "MAPLES": _write_maples,
    "MESSIDOR": _write_messidor,
}


#: Tree-level files written once every image is done.
_SUMMARIES: dict[str, Callable[[Path, list[_Written]], None]] = {
    "FGADR": _write_fgadr_grades,
    "RETLES": _write_retles_grades,
}
