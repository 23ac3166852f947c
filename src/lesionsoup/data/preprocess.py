"""From native photographs and masks to the cache: crop, resize, label planes.

Each image is cropped to the bounding box of its field of view, resized (area
averaging) so that its longer side is the cache size, and padded centred to a
square. Its lesion masks are binarised, cropped and resized on the same grid
by the rule ``MaskRules.resize`` (``mask_resize``): ``nearest`` resizes each
cropped mask by nearest neighbour (``cv2.INTER_NEAREST``, as the authors'
loaders do; uncertain pixels likewise), while ``preserve``, the default,
downscales by a rule that never erases a lesion:

* a cache pixel is lesion where at least half of its area is lesion natively;
* a lesion that rule would erase entirely (a microaneurysm of a few native
  pixels, a stroke thinner than half a cache pixel) is drawn at its own scale:
  in each connected blob of touched cache pixels with no pixel at half
  coverage, the pixels reaching at least half of the blob's peak coverage.

So every native lesion component keeps at least one cache pixel, except a
speck whose touched pixels join those of a larger lesion of the same class
(within about one cache pixel of it): it is then represented by that lesion.
Uncertain pixels (``MaskRules.uncertain_value``) set the ignore bit on every
cache pixel they touch.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from lesionsoup.core.allocator import reuse_freed_memory
from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.lesions import ALL, Lesion, pack
from lesionsoup.data.archives import read_bytes, split_member_path
from lesionsoup.data.cache import CacheEntry, CacheWriter
from lesionsoup.data.fov import FieldOfView, NoFieldOfView, find_fov
from lesionsoup.data.geometry import Geometry
from lesionsoup.data.manifest import split_mask_paths
from lesionsoup.data.mask_resize import MaskResize, check_mask_resize, resize_nearest
from lesionsoup.data.roi import place_in_frame
from lesionsoup.data.splits import UNUSED

#: Bump when the algorithm changes, so that caches built by the old one are rebuilt.
PREPROCESS_VERSION = 1
#: Mask modes read as 8-bit intensities (max over colour channels).
MASK_MODES = {"1", "L", "P", "RGB", "RGBA", "LA"}
#: Key of the uncertain-pixel plane among the lesion planes.
IGNORE = "ignore"


class BadImageError(ValueError):
    """An input file that cannot be preprocessed; names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self) -> tuple[type[BadImageError], tuple[str, str]]:
        return type(self), (self.path, self.problem)  # crosses process boundaries intact


@dataclass(frozen=True)
class MaskRules:
    """How a dataset's mask intensities become lesion / ignore pixels.

    A pixel is lesion where its value (max over colour channels) is at least
    ``threshold`` (1: any non-zero value). ``lesion_rules`` overrides that for
    single lesions (a dataset of one's own): ``{"MA": {"threshold": 1}}``, or
    ``{"HE": {"values": [2]}}`` for a label map whose value 2 is haemorrhage.
    Pixels equal to ``uncertain_value`` are instead treated as ``uncertain_as``:
    ignored, lesion or background. ``resize`` is the rule that brings the
    binarised masks onto another grid (``mask_resize``).
    """

    threshold: int = 128
    uncertain_value: int | None = None
    uncertain_as: Literal["ignore", "lesion", "background"] = "ignore"
    lesion_rules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    resize: MaskResize = "preserve"

    def __post_init__(self) -> None:
        check_mask_resize(self.resize)
        if not 1 <= self.threshold <= 255:
            raise ValueError(f"mask threshold must be in 1..255, got {self.threshold}")
        if self.uncertain_value is not None and not 0 <= self.uncertain_value <= 255:
            raise ValueError(f"uncertain_value must be in 0..255, got {self.uncertain_value}")
        if self.uncertain_as not in ("ignore", "lesion", "background"):
            raise ValueError(
                f"uncertain_as must be ignore, lesion or background, got {self.uncertain_as}"
            )
        for lesion, rule in self.lesion_rules.items():
            _check_lesion_rule(lesion, rule)

    def lesion_pixels(self, values: np.ndarray, lesion: Lesion | None) -> np.ndarray:
        """0/255 uint8 where ``values`` are lesion under ``lesion``'s rule (or the threshold)."""
        rule = self.lesion_rules.get(lesion.value, {}) if lesion is not None else {}
        if "values" in rule:
            return np.isin(values, rule["values"]).view(np.uint8) * np.uint8(255)
        threshold = rule.get("threshold", self.threshold)
        return cv2.threshold(values, threshold - 1, 255, cv2.THRESH_BINARY)[1]

    def binarise(
        self, values: np.ndarray, lesion: Lesion | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Lesion and ignore masks (uint8 0/255) of 8-bit mask values; ignore is None if unused."""
        lesion_mask = self.lesion_pixels(values, lesion)
        if self.uncertain_value is None:
            return lesion_mask, None
        uncertain = cv2.compare(values, self.uncertain_value, cv2.CMP_EQ)
        if self.uncertain_as == "lesion":
            return cv2.bitwise_or(lesion_mask, uncertain), None
        lesion_mask = cv2.bitwise_and(lesion_mask, cv2.bitwise_not(uncertain))
        return lesion_mask, uncertain if self.uncertain_as == "ignore" else None


def _check_lesion_rule(lesion: str, rule: Mapping[str, Any]) -> None:
    """A rule of ``MaskRules.lesion_rules``: a known lesion, one ``threshold`` or ``values``."""
    known = [member.value for member in Lesion]
    if lesion not in known:
        raise ValueError(f"mask rule of unknown lesion {lesion!r}; known: {known}")
    if set(rule) not in ({"threshold"}, {"values"}):
        raise ValueError(f"mask rule of {lesion}: give one of 'threshold' or 'values', not {rule}")
    if "threshold" in rule:
        valid = isinstance(rule["threshold"], int) and 1 <= rule["threshold"] <= 255
    else:
        values = list(rule["values"])
        valid = bool(values) and all(isinstance(v, int) and 0 <= v <= 255 for v in values)
    if not valid:
        raise ValueError(
            f"mask rule of {lesion} {dict(rule)}: needs a threshold in 1..255 or 8-bit values"
        )


@dataclass(frozen=True)
class SkippedImage:
    """A manifest row left out of the cache, with the file at fault and why."""

    image_id: str
    path: str
    reason: str


@dataclass
class CacheReport:
    """What ``build_cache`` did: images written now, kept from an interrupted build, skipped."""

    directory: Path
    written: int = 0
    resumed: int = 0
    skipped: list[SkippedImage] = field(default_factory=list)


# ----------------------------------------------------------------------------- reading


def _truncation(data: bytes) -> str | None:
    """Why an encoded JPEG or PNG is incomplete, or None (decoders often hide this)."""
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        return "truncated JPEG (no end-of-image marker after the last scan)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-64:]:
        return "truncated PNG (no IEND chunk)"
    return None


#: ``cv2.imread`` flags that decode at 1/2, 1/4 or 1/8 of each side (JPEG: in the DCT,
#: never holding the full-size image).
REDUCED_DECODE = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def read_photograph(path: str | Path, reduction: int = 1) -> np.ndarray:
    """The photograph as uint8 BGR (H, W, 3), without applying EXIF rotation.

    EXIF orientation is ignored because masks and manifest sizes are stored
    unrotated; the caller converts to RGB after downscaling (cheaper).
    ``reduction`` (a key of ``REDUCED_DECODE``) divides each side at decode.
    """
    try:
        data = read_bytes(path)
    except OSError as error:
        raise BadImageError(path, f"cannot be read ({error.strerror or error})") from error
    problem = _truncation(data)
    if problem:
        raise BadImageError(path, problem)
    try:
        image = cv2.imdecode(
            np.frombuffer(data, np.uint8),
            REDUCED_DECODE[reduction] | cv2.IMREAD_IGNORE_ORIENTATION,
        )
    except cv2.error as error:
        raise BadImageError(path, f"cannot be decoded ({error.msg.strip()})") from error
    if image is None:
        raise BadImageError(path, "cannot be decoded (not an image, or corrupt)")
    return image


def read_mask(path: str | Path) -> np.ndarray:
    """An 8-bit mask (H, W) uint8: single channel, or the max over colour channels."""
    try:
        source = io.BytesIO(read_bytes(path)) if split_member_path(path) else path
        with Image.open(source) as mask:
            if mask.mode not in MASK_MODES:
                problem = f"mask mode {mask.mode} is not 8-bit (expected one of {MASK_MODES})"
                raise BadImageError(path, problem)
            if mask.mode == "P":
                mask = mask.convert("RGB")
            values = np.asarray(mask)
    except OSError as error:
        raise BadImageError(path, f"mask cannot be read ({error})") from error
    if values.dtype == bool:
        return values.view(np.uint8) * np.uint8(255)
    if values.ndim == 3:
        channels = values.shape[2] if values.shape[2] in (1, 3) else values.shape[2] - 1  # no alpha
        return np.maximum.reduce([values[..., channel] for channel in range(channels)])
    return values


def mask_paths(cell: Any) -> list[str]:
    """The files of one manifest mask cell, as ``manifest.split_mask_paths``; NaN -> none."""
    return [str(path) for path in split_mask_paths(cell if isinstance(cell, str) else "")]


# ----------------------------------------------------------------------------- resampling


def area_coverage(planes: list[np.ndarray], out_w: int, out_h: int) -> tuple[list[np.ndarray], int]:
    """Area-averaged coverage of 0/255 native masks on the output grid, and its full scale.

    The planes are resized together (one call is cheaper than one per plane)
    and returned as channel views of that result: splitting them into copies
    would cost a pass over every plane for nothing. uint8 suffices while a
    native pixel's smallest guaranteed share of one output pixel (a quarter
    of it) is at least one 8-bit step; else uint16.
    """
    native_per_output = (planes[0].shape[0] / out_h) * (planes[0].shape[1] / out_w)
    full = 255 if 4 * native_per_output <= 255 else 65535
    if full != 255:
        planes = [plane.astype(np.uint16) * np.uint16(257) for plane in planes]
    coverages: list[np.ndarray] = []
    for start in range(0, len(planes), 4):  # OpenCV resizes at most 4 channels at once
        group = planes[start : start + 4]
        stacked = group[0] if len(group) == 1 else cv2.merge(group)
        resized = cv2.resize(stacked, (out_w, out_h), interpolation=cv2.INTER_AREA)
        coverages.extend([resized] if len(group) == 1 else np.moveaxis(resized, 2, 0))
    return coverages, full


def lesions_from_coverage(coverage: np.ndarray, full: int) -> np.ndarray:
    """Boolean lesion mask from one class's coverage; the rule is in the module docstring.

    ``coverage`` may be a strided view (a channel of ``area_coverage``'s result).
    """
    half = (full + 1) // 2
    lesion = coverage >= half
    touched = coverage > 0
    count, blobs = cv2.connectedComponents(touched.view(np.uint8), connectivity=8)
    if count < 2:
        return lesion
    where = np.flatnonzero(touched)
    blob_of = blobs.reshape(-1)[where]
    value = coverage[touched]  # same C order as ``where``, without copying a strided view
    kept = np.bincount(blob_of[value >= half], minlength=count) > 0
    erased = ~kept[blob_of]
    if erased.any():
        where, blob_of, value = where[erased], blob_of[erased], value[erased].astype(np.int64)
        peak = np.zeros(count, np.int64)
        np.maximum.at(peak, blob_of, value)
        lesion.reshape(-1)[where[2 * value >= peak[blob_of]]] = True
    return lesion


def downscale_keeping_lesions(binary: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Boolean (out_h, out_w) lesion mask of one 0/255 native mask."""
    (coverage,), full = area_coverage([binary], out_w, out_h)
    return lesions_from_coverage(coverage, full)


def resize_masks(
    native: Mapping[Lesion | str, np.ndarray], out_w: int, out_h: int, rule: MaskResize
) -> tuple[dict[Lesion, np.ndarray], np.ndarray | None]:
    """Boolean (out_h, out_w) lesion masks and ignore mask (None if absent) of cropped
    0/255 native masks (``_read_masks``), resized by ``rule``.

    Under ``preserve`` any uncertain share of a pixel makes it ignored.
    """
    planes = list(native.values())
    if not planes:
        return {}, None
    if rule == "nearest":
        resized = [resize_nearest(plane, out_w, out_h) > 0 for plane in planes]
    else:
        coverages, full = area_coverage(planes, out_w, out_h)
        resized = [
            coverage > 0 if key == IGNORE else lesions_from_coverage(coverage, full)
            for key, coverage in zip(native, coverages, strict=True)
        ]
    outputs = dict(zip(native, resized, strict=True))
    ignore = outputs.pop(IGNORE, None)
    return {Lesion(key): mask for key, mask in outputs.items()}, ignore


def _resize_image(crop: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    downscale = out_w <= crop.shape[1] and out_h <= crop.shape[0]
    interpolation = cv2.INTER_AREA if downscale else cv2.INTER_LINEAR
    return cv2.resize(crop, (out_w, out_h), interpolation=interpolation)


def _padded(
    geometry: Geometry, channels: tuple[int, ...], dtype: type
) -> tuple[np.ndarray, np.ndarray]:
    """A zero cache square and the view of it the resized content fills."""
    out = np.zeros((geometry.size, geometry.size, *channels), dtype=dtype)
    inner = out[
        geometry.pad_top : geometry.pad_top + geometry.resized_h,
        geometry.pad_left : geometry.pad_left + geometry.resized_w,
    ]
    return out, inner


def _pad(plane: np.ndarray, geometry: Geometry) -> np.ndarray:
    out, inner = _padded(geometry, plane.shape[2:], plane.dtype)
    inner[...] = plane
    return out


# ----------------------------------------------------------------------------- one image


def _expected_size(row: Mapping[str, Any]) -> tuple[int, int] | None:
    width, height = row.get("width"), row.get("height")
    if width is None or height is None or pd.isna(width) or pd.isna(height):
        return None
    return int(height), int(width)


def read_mask_in_frame(
    path: str, roi: Any, native_shape: tuple[int, int], resize: MaskResize = "preserve"
) -> np.ndarray:
    """A mask file's values in its photograph's frame.

    ``roi`` ("x0 y0 x1 y1", photograph pixels; the manifest's ``mask_roi``) marks
    a mask drawn in a region of interest (MAPLES-DR's AdditionalData), which is
    placed into the frame by the rule ``resize`` (``roi.place_in_frame``); empty
    or NaN: the mask already is in the frame.
    """
    mask = read_mask(path)
    if not isinstance(roi, str) or not roi.strip():
        return mask
    try:
        return place_in_frame(mask, roi, native_shape, resize)
    except ValueError as error:
        raise BadImageError(path, f"cannot place it in its region of interest: {error}") from error


def _read_masks(
    row: Mapping[str, Any],
    image_path: str,
    native_shape: tuple[int, int],
    crop: tuple[int, int, int, int],
    rules: MaskRules,
) -> dict[Lesion | str, np.ndarray]:
    """Cropped 0/255 native masks of each lesion with any pixel set, plus ``IGNORE``."""
    y0, x0, y1, x1 = crop
    masks: dict[Lesion | str, np.ndarray] = {}
    for lesion in ALL:
        for path in mask_paths(row.get(f"mask_{lesion.value}")):
            values = read_mask_in_frame(path, row.get("mask_roi"), native_shape, rules.resize)
            if values.shape != native_shape:
                raise BadImageError(
                    path,
                    f"mask is {values.shape[1]}x{values.shape[0]} but its image "
                    f"{image_path} is {native_shape[1]}x{native_shape[0]}",
                )
            for key, plane in zip(
                (lesion, IGNORE), rules.binarise(values[y0:y1, x0:x1], lesion), strict=True
            ):
                if plane is not None and cv2.countNonZero(plane):
                    masks[key] = cv2.bitwise_or(masks[key], plane) if key in masks else plane
    return masks


@dataclass(frozen=True)
class PreparedPhotograph:
    """A photograph cropped to its field of view and fitted into the cache square."""

    image: np.ndarray  # uint8 (size, size, 3) RGB
    geometry: Geometry
    fov: FieldOfView

    @property
    def crop(self) -> tuple[int, int, int, int]:
        g = self.geometry
        return g.crop_y0, g.crop_x0, g.crop_y1, g.crop_x1

    def cache_fov(self) -> np.ndarray:
        """The field of view on the cache square (size, size), boolean, False in the padding."""
        g = self.geometry
        return _pad(self.fov.resampled(self.crop, g.resized_h, g.resized_w), g)


def prepare_photograph(image: np.ndarray, size: int, path: str | Path) -> PreparedPhotograph:
    """Crop a BGR photograph (``read_photograph``) to its field of view, resize and pad it.

    ``BadImageError`` names ``path`` when no field of view is found.
    """
    try:
        fov = find_fov(image)
    except NoFieldOfView as error:
        raise BadImageError(path, f"no field of view found: {error}") from error
    crop = fov.box()
    geometry = Geometry.fit(image.shape[0], image.shape[1], crop, size)
    y0, x0, y1, x1 = crop
    resized = _resize_image(image[y0:y1, x0:x1], geometry.resized_w, geometry.resized_h)
    rgb, inner = _padded(geometry, (3,), np.uint8)
    cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=inner)  # straight into the square: no copy
    return PreparedPhotograph(image=rgb, geometry=geometry, fov=fov)


def preprocess_image(row: Mapping[str, Any], size: int, rules: MaskRules) -> CacheEntry:
    """One manifest row (image and masks) as a cache entry; ``BadImageError`` on bad input."""
    image_path = str(row["image_path"])
    image = read_photograph(image_path)
    native_h, native_w = image.shape[:2]
    expected = _expected_size(row)
    if expected is not None and expected != (native_h, native_w):
        raise BadImageError(
            image_path,
            f"decoded size {native_w}x{native_h} differs from the manifest's "
            f"{expected[1]}x{expected[0]} (truncated or replaced file?)",
        )
    prepared = prepare_photograph(image, size, image_path)
    geometry, crop, fov = prepared.geometry, prepared.crop, prepared.fov
    out_h, out_w = geometry.resized_h, geometry.resized_w

    native_masks = _read_masks(row, image_path, (native_h, native_w), crop, rules)
    masks, ignore = resize_masks(native_masks, out_w, out_h, rules.resize)
    labels = pack(masks, fov.resampled(crop, out_h, out_w), ignore)
    return CacheEntry(
        image_id=str(row["image_id"]),
        split=str(row["split"]),
        image=prepared.image,
        labels=_pad(labels, geometry),
        geometry=geometry,
    )


# ----------------------------------------------------------------------------- whole manifest


def _write_one(writer: CacheWriter, row: dict[str, Any], size: int, rules: MaskRules) -> None:
    writer.write(preprocess_image(row, size, rules))


def _worker_setup() -> None:
    cv2.setNumThreads(1)  # one process per core: no nested thread pools
    reuse_freed_memory()  # each image's buffers without fresh pages (core.allocator)


def _validate_ids(manifest: pd.DataFrame) -> Iterator[tuple[int, SkippedImage]]:
    """Rows whose id cannot name a cache file or repeats an earlier row's id."""
    first_seen: dict[str, str] = {}
    for position, (image_id, path) in enumerate(
        zip(manifest["image_id"].astype(str), manifest["image_path"].astype(str), strict=True)
    ):
        if not image_id or "/" in image_id or "\\" in image_id or image_id.startswith("."):
            reason = f"image_id {image_id!r} cannot be a file name"
            yield position, SkippedImage(image_id, path, reason)
        elif image_id in first_seen:
            reason = f"duplicated image_id {image_id!r} (also {first_seen[image_id]})"
            yield position, SkippedImage(image_id, path, reason)
        else:
            first_seen[image_id] = path


def cache_settings(manifest: pd.DataFrame, size: int, rules: MaskRules) -> dict[str, Any]:
    """Everything a cache depends on: its manifest (by digest), size, mask rules and code.

    Changing any of it invalidates a partial build's leftovers and the runs trained on it.
    """
    return {
        "dataset": "+".join(sorted(manifest["dataset"].astype(str).unique())),
        "manifest_sha256": hashlib.sha256(manifest.to_csv(index=False).encode()).hexdigest(),
        "size": int(size),
        "rules": asdict(rules),
        "preprocess_version": PREPROCESS_VERSION,
    }


def build_cache(
    manifest: pd.DataFrame,
    out: Path,
    size: int,
    rules: MaskRules,
    threads: int,
    on_bad_image: Literal["fail", "skip"] = "fail",
    progress: bool = True,
) -> CacheReport:
    """Preprocess every manifest row into the cache folder ``out``.

    Rows of the ``unused`` split (training images a ``train_fraction`` below 1 left
    out) are not preprocessed: no cache holds them, so nothing trains on them.

    Resumes an interrupted build with the same settings. With ``fail`` the
    first bad input raises ``BadImageError`` and nothing is published at
    ``out``; with ``skip`` bad inputs are listed in ``out/skipped.csv``.
    """
    if on_bad_image not in ("fail", "skip"):
        raise ValueError(f"on_bad_image must be 'fail' or 'skip', got {on_bad_image!r}")
    out = Path(out)
    report = CacheReport(directory=out)
    bad_rows = _bad_rows(manifest, on_bad_image)
    report.skipped.extend(bad_rows.values())

    writer = CacheWriter(out, cache_settings(manifest, size, rules))
    done = writer.done()
    rows = [
        row
        for position, row in enumerate(manifest.to_dict("records"))
        if position not in bad_rows and row["split"] != UNUSED
    ]
    todo = [row for row in rows if str(row["image_id"]) not in done]
    report.resumed = len(rows) - len(todo)

    failed = _write_rows(writer, todo, report, size, rules, threads, on_bad_image, progress)
    _publish(writer, report, rows, failed)
    if report.skipped:
        warnings.warn(
            f"{len(report.skipped)} image(s) skipped building {out}; see {out / 'skipped.csv'}",
            stacklevel=2,
        )
    return report


def _bad_rows(
    manifest: pd.DataFrame, on_bad_image: Literal["fail", "skip"]
) -> dict[int, SkippedImage]:
    """The manifest's rows with a bad id, by position; with ``fail``, the first raises."""
    bad_rows = dict(_validate_ids(manifest))
    if bad_rows and on_bad_image == "fail":
        first = next(iter(bad_rows.values()))
        raise BadImageError(first.path, first.reason)
    return bad_rows


def _write_rows(
    writer: CacheWriter,
    todo: list[dict[str, Any]],
    report: CacheReport,
    size: int,
    rules: MaskRules,
    threads: int,
    on_bad_image: Literal["fail", "skip"],
    progress: bool,
) -> set[str]:
    """Preprocess ``todo`` into ``writer``, counting the written and listing the skipped
    images in ``report``; returns the ids that failed (with ``fail``, the first raises)."""
    failed: set[str] = set()
    outcomes = closing(_run(writer, todo, size, rules, threads))
    desc = f"cache {report.directory.name}"
    bar = tqdm(total=len(todo), desc=desc, disable=not progress, unit="img")
    with outcomes as results, bar:
        for row, error in results:
            bar.update()
            if error is None:
                report.written += 1
            elif on_bad_image == "fail":
                raise error
            else:
                failed.add(str(row["image_id"]))
                report.skipped.append(SkippedImage(str(row["image_id"]), error.path, error.problem))
    return failed


def _publish(
    writer: CacheWriter, report: CacheReport, rows: list[dict[str, Any]], failed: set[str]
) -> None:
    """Write ``skipped.csv`` and publish the cache of ``rows`` less the ``failed`` ids."""
    columns = ["image_id", "path", "reason"]
    skipped = pd.DataFrame([asdict(s) for s in report.skipped], columns=columns)
    atomic_write_bytes(writer.partial / "skipped.csv", skipped.to_csv(index=False).encode())
    writer.publish(str(row["image_id"]) for row in rows if str(row["image_id"]) not in failed)


def _run(
    writer: CacheWriter, rows: list[dict[str, Any]], size: int, rules: MaskRules, threads: int
) -> Iterator[tuple[dict[str, Any], BadImageError | None]]:
    """Process rows in ``threads`` processes (1: in this one), yielding each row's outcome."""
    if threads <= 1 or len(rows) <= 1:
        previous = cv2.getNumThreads()
        cv2.setNumThreads(1)
        reuse_freed_memory()
        try:
            for row in rows:
                try:
                    _write_one(writer, row, size, rules)
                except BadImageError as error:
                    yield row, error
                else:
                    yield row, None
        finally:
            cv2.setNumThreads(previous)
        return
    context = multiprocessing.get_context("spawn")  # fork is unsafe with OpenCV's threads
    with ProcessPoolExecutor(threads, mp_context=context, initializer=_worker_setup) as pool:
        pending = {pool.submit(_write_one, writer, row, size, rules): row for row in rows}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    row = pending.pop(future)
                    error = future.exception()
                    if error is not None and not isinstance(error, BadImageError):
                        raise error
                    yield row, error
        finally:
            pool.shutdown(cancel_futures=True)
