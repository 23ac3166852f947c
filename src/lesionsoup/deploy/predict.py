"""Photographs in, lesion maps out: what ``lesionsoup predict`` does.

Each photograph is read (JPEG, PNG or TIFF, any size; EXIF orientation is
ignored, as in preprocessing), cropped to its field of view, resized to the
model's resolution and padded (``lesionsoup.data.preprocess.prepare_photograph``),
run through the model in batches, and its probabilities are mapped back onto
the photograph's own pixel grid (``Geometry.map_to_native``) and set to 0
outside the field of view. Photographs are streamed: a batch is read,
predicted, written and dropped, so a folder of any length runs in the memory
of one batch.

Output folder::

    OUT/<id>/<LESION>_probability.png   8-bit probability (0..255 for 0..1)
    OUT/<id>/<LESION>_mask.png          0/255 where the probability >= the lesion's threshold
    OUT/<id>/overlay.png                the photograph with the masks drawn in, and a legend
    OUT/<id>/probabilities.npz          with ``save_probabilities``: per lesion (key: its
                                        name) the float32 probability map the PNGs are made of
    OUT/<id>/lesions.json               the photograph's row of lesions.csv (for ``resume``)
    OUT/lesions.csv                     per photograph: field-of-view pixels, and per lesion
                                        its area (pixels, % of the field of view) and count
                                        (8-connected components)
    OUT/failures.csv                    photographs that could not be predicted, and why
    OUT/predict.json                    the model (and its SHA-256), resolution, thresholds and
                                        inference settings; written first, then with the counts

A photograph of more than ``max_pixels`` (default 50 megapixels) is a JPEG
decoded at 1/2, 1/4 or 1/8 of each side (the least that fits: its outputs and
``lesions.csv`` are on that grid, whose ``reduction`` column says so), or any
other format refused by name: a 20000×20000 photograph would otherwise take
gigabytes. Every per-photograph failure (unreadable, no field of view, out of
memory) stops the run naming the photograph, or under ``keep_going`` is listed
in ``failures.csv`` and the run goes on; ``failures.csv`` is written whenever
something failed.

``<id>`` is a file argument's stem, or for a folder argument the path of the
photograph inside that folder (searched recursively) without its extension.
Each ``OUT/<id>`` folder is written under a temporary name and renamed when
complete; the tables are written last. An existing output folder is kept:
each photograph's folder is replaced, and the tables describe this run. With
``resume`` (``--continue``), a photograph whose folder is complete is kept and
its row carried into ``lesions.csv``; ``resume.py`` says when a folder may be
continued at all.

The probability arrays are float32, the precision the model's probabilities are
computed in: each mask is exactly its array ``>=`` the lesion's threshold,
which float16 (about 3 significant digits) would not keep near the threshold.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from lesionsoup import __version__
from lesionsoup.core.atomic import atomic_write_bytes, atomic_write_json
from lesionsoup.core.lesions import Lesion
from lesionsoup.core.precision import resolve
from lesionsoup.data.preprocess import (
    REDUCED_DECODE,
    BadImageError,
    PreparedPhotograph,
    prepare_photograph,
    read_photograph,
)
from lesionsoup.deploy.folders import published_folder
from lesionsoup.deploy.model_card import LESION_NAMES
from lesionsoup.deploy.models import ModelInfo, model_info
from lesionsoup.deploy.resume import (
    ROW_FILE,
    SETTINGS_FILE,
    check_continuable,
    completed_row,
    row_bytes,
    settings_digest,
)
from lesionsoup.evaluation.per_model import file_digest, model_digest
from lesionsoup.inference.infer import SIDE_MULTIPLE, InferenceSettings
from lesionsoup.inference.predictor import load_predictor
from lesionsoup.training.sampling import to_tensors

log = logging.getLogger(__name__)

PHOTOGRAPH_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
PROBABILITIES_FILE = "probabilities.npz"
#: Overlay colours (RGB), far apart in hue and bright against the orange-red fundus.
OVERLAY_COLOURS: dict[Lesion, tuple[int, int, int]] = {
    Lesion.EX: (255, 225, 0),  # yellow
    Lesion.HE: (0, 110, 255),  # azure
    Lesion.MA: (40, 255, 40),  # green
    Lesion.CWS: (255, 0, 255),  # magenta
    Lesion.IRMA: (255, 255, 255),
    Lesion.NV: (0, 255, 255),
}
#: Opacity of the mask fill in overlays (outlines are opaque).
FILL_OPACITY = 0.35
#: The default largest photograph decoded at full size: about 3 GB at the peak of its
#: prediction (uint8 planes and float32 probabilities at full size), which fits a laptop.
MAX_PIXELS = 50_000_000
#: What one photograph's failure raises; under ``keep_going`` it is listed and skipped.
PER_PHOTOGRAPH_ERRORS = (BadImageError, MemoryError, cv2.error, torch.OutOfMemoryError)


@dataclass(frozen=True)
class Photograph:
    image_id: str  # output name: see the module docstring
    path: Path


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str


@dataclass(frozen=True)
class PredictOptions:
    """How photographs are predicted. ``None`` size and tile come from the model.

    ``size``: the preprocessing resolution (default: the one recorded with the
    model; a model that records none is refused); ``tile``: the sliding-window
    tile (default: the model's training patch size, else 512); ``resume``: keep the
    photographs the output folder already holds (``--continue``).
    """

    size: int | None = None
    threshold: float = 0.5
    lesion_thresholds: Mapping[str, float] = field(default_factory=dict)
    mode: str = "whole"
    tile: int | None = None
    overlap: float = 0.5
    tta: tuple[str, ...] = ()
    batch_size: int = 1
    keep_going: bool = False
    max_pixels: int = MAX_PIXELS
    overlay: bool = True
    progress: bool = True
    resume: bool = False
    save_probabilities: bool = False

    def __post_init__(self) -> None:
        thresholds = {"default": self.threshold, **self.lesion_thresholds}
        for name, value in thresholds.items():
            if not 0 <= value <= 1:
                raise ValueError(f"threshold {name}={value} outside [0, 1]")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, not {self.max_pixels}")
        if self.size is not None and self.size < SIDE_MULTIPLE:
            raise ValueError(f"size must be at least {SIDE_MULTIPLE} pixels, not {self.size}")

    def threshold_of(self, lesion: Lesion) -> float:
        return self.lesion_thresholds.get(lesion.value, self.threshold)

    def size_for(self, info: ModelInfo) -> int:
        return self.size or info.recorded_size()

    def inference_for(self, info: ModelInfo) -> InferenceSettings:
        return InferenceSettings(
            mode=self.mode,  # type: ignore[arg-type]
            tile=self.tile or info.patch_size or InferenceSettings.tile,
            overlap=self.overlap,
            tta=self.tta,
            batch_size=self.batch_size,
        )


@dataclass
class PredictReport:
    out: Path
    predicted: int = 0
    failures: list[Failure] = field(default_factory=list)
    kept: int = 0  # already predicted into the folder (``resume``)


# ----------------------------------------------------------------------------- inputs


def _is_photograph(path: Path) -> bool:
    return path.suffix.lower() in PHOTOGRAPH_SUFFIXES and not path.name.startswith(".")


def find_photographs(inputs: Sequence[Path], exclude: Path | None = None) -> list[Photograph]:
    """The photographs named, or found recursively in the folders named, in order.

    Files under ``exclude`` (the output folder) are skipped; ids must be unique.
    """
    excluded = Path(exclude).resolve() if exclude is not None else None
    found: list[Photograph] = []
    for given in map(Path, inputs):
        if given.is_file():
            found.append(Photograph(given.stem, given))
        elif given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.is_file() and _is_photograph(p))
            if excluded is not None:
                files = [p for p in files if not p.resolve().is_relative_to(excluded)]
            if not files:
                raise FileNotFoundError(f"{given}: no {'/'.join(PHOTOGRAPH_SUFFIXES)} photographs")
            found += [Photograph(p.relative_to(given).with_suffix("").as_posix(), p) for p in files]
        else:
            raise FileNotFoundError(f"{given}: no such file or folder")
    first: dict[str, Path] = {}
    for photo in found:
        if photo.image_id in first:
            raise ValueError(
                f"{photo.path} and {first[photo.image_id]} would both be written to "
                f"{photo.image_id!r}; rename one or predict them separately"
            )
        first[photo.image_id] = photo.path
    return found


# ----------------------------------------------------------------------------- outputs


def draw_overlay(rgb: np.ndarray, masks: Mapping[Lesion, np.ndarray]) -> np.ndarray:
    """The photograph (RGB) with each mask filled translucently, outlined, and a legend."""
    height, width = rgb.shape[:2]
    overlay = rgb.copy()
    thickness = max(1, round(min(height, width) / 600))
    fill = overlay.copy()
    for lesion, mask in masks.items():
        fill[mask] = OVERLAY_COLOURS[lesion]
    cv2.addWeighted(fill, FILL_OPACITY, overlay, 1 - FILL_OPACITY, 0, dst=overlay)
    for lesion, mask in masks.items():
        contours, _ = cv2.findContours(
            mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(overlay, contours, -1, OVERLAY_COLOURS[lesion], thickness)
    _draw_legend(overlay, list(masks))
    return overlay


def _draw_legend(image: np.ndarray, lesions: list[Lesion]) -> None:
    """A legend box in the top-left corner (usually the black margin), in place."""
    height, width = image.shape[:2]
    scale = max(0.35, min(height, width) / 1400)
    thickness = max(1, round(scale * 1.5))
    font = cv2.FONT_HERSHEY_SIMPLEX
    labels = [f"{lesion.value}  {LESION_NAMES.get(lesion.value, '')}" for lesion in lesions]
    (text_w, text_h), baseline = cv2.getTextSize(max(labels, key=len), font, scale, thickness)
    line = text_h + baseline + max(2, text_h // 2)
    margin, swatch = max(2, line // 3), text_h + baseline
    box_w, box_h = 3 * margin + swatch + text_w, margin + line * len(lesions)
    box = image[: min(height, box_h), : min(width, box_w)]
    box[...] = (box.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken for contrast
    for row, (lesion, label) in enumerate(zip(lesions, labels, strict=True)):
        top = margin + row * line
        colour = OVERLAY_COLOURS[lesion]
        cv2.rectangle(image, (margin, top), (margin + swatch, top + swatch), colour, -1)
        origin = (2 * margin + swatch, top + text_h)
        cv2.putText(image, label, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def _png(path: Path, array: np.ndarray) -> bytes:
    """``array`` encoded as the PNG file ``path`` (named in the error)."""
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    return encoded.tobytes()


def _npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``arrays`` as float32 in one compressed ``.npz``."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: v.astype(np.float32, copy=False) for k, v in arrays.items()})
    return buffer.getvalue()


def lesion_statistics(
    masks: Mapping[Lesion, np.ndarray], fov_pixels: int
) -> dict[str, float | int]:
    """Per lesion: pixels, percentage of the field of view, and 8-connected components."""
    row: dict[str, float | int] = {}
    for lesion, mask in masks.items():
        pixels = int(np.count_nonzero(mask))
        count, _ = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
        row[f"{lesion.value}_pixels"] = pixels
        row[f"{lesion.value}_fov_percent"] = round(100 * pixels / max(1, fov_pixels), 4)
        row[f"{lesion.value}_count"] = count - 1
    return row


def _publish_folder(out: Path, image_id: str, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (name -> content) as ``out/<image_id>/``, all at once by one rename."""
    with published_folder(out / image_id) as folder:
        for name, content in files.items():
            (folder / name).write_bytes(content)


# ----------------------------------------------------------------------------- the run


@dataclass
class _Loaded:
    photo: Photograph
    native: np.ndarray  # BGR (H, W, 3), decoded at 1/reduction of each side
    prepared: PreparedPhotograph
    reduction: int = 1


def decode_reduction(path: Path, max_pixels: int) -> int:
    """By how much to divide each side of ``path`` at decode to stay within ``max_pixels``:
    1, or for a JPEG 2, 4 or 8; a ``BadImageError`` when nothing fits."""
    width, height, kind = _header(path)
    for reduction in REDUCED_DECODE if kind == "JPEG" else (1,):
        if -(-width // reduction) * -(-height // reduction) <= max_pixels:
            return reduction
    raise BadImageError(
        path,
        f"{width}x{height} is {width * height / 1e6:.0f} megapixels, above --max-pixels "
        f"{max_pixels} (only JPEGs are decoded reduced, by 8 at most); downscale it first",
    )


def _header(path: Path) -> tuple[int, int, str | None]:
    """(width, height, format) from the header; PIL's own decompression-bomb refusal is
    off while reading it, since ``max_pixels`` is the check here."""
    bomb_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as image:
            return *image.size, image.format
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(path, f"cannot be decoded ({error})") from error
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit


def _load(photo: Photograph, size: int, max_pixels: int) -> _Loaded:
    reduction = decode_reduction(photo.path, max_pixels)
    native = read_photograph(photo.path, reduction)
    return _Loaded(photo, native, prepare_photograph(native, size, photo.path), reduction)


def _as_bad_image(photo: Photograph, error: BaseException) -> BadImageError:
    """A per-photograph failure as the ``BadImageError`` that names the photograph."""
    if isinstance(error, BadImageError):
        return error
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return BadImageError(photo.path, "out of memory (a lower --max-pixels may help)")
    return BadImageError(photo.path, f"{type(error).__name__}: {error}")


def _batches(photos: list[Photograph], size: int) -> Iterator[list[Photograph]]:
    for start in range(0, len(photos), size):
        yield photos[start : start + size]


class _Run:
    """One ``predict_photographs`` call: the model, the options, and what happened."""

    def __init__(
        self, info: ModelInfo, model: Path, out: Path, options: PredictOptions, device: str
    ) -> None:
        self.size = options.size_for(info)  # first: a model without one is refused unloaded
        self.predictor = load_predictor(info.path, device)
        self.settings = options.inference_for(info)
        self.options = options
        self.out = out
        self.rows: dict[str, dict[str, object]] = {}  # by image id
        self.kept = 0
        self.failures: list[Failure] = []
        self.record = self._record(info, model)
        self.digest = settings_digest(self.record)

    def _record(self, info: ModelInfo, model: Path) -> dict[str, object]:
        """What ``predict.json`` records before any count (see ``resume.py``)."""
        return {
            "model": str(model),
            "model_file": str(info.path),
            "model_sha256": model_digest(info.path),
            "lesions": [lesion.value for lesion in self.predictor.lesions],
            "precision": resolve(self.settings.precision, self.predictor.device).name,
            "size": self.size,
            "thresholds": {x.value: self.options.threshold_of(x) for x in self.predictor.lesions},
            "inference": self.settings.as_dict(),
            "max_pixels": self.options.max_pixels,
            "overlay": self.options.overlay,
            "save_probabilities": self.options.save_probabilities,
            "device": str(self.predictor.device),
            "lesionsoup_version": __version__,
        }

    def output_names(self) -> list[str]:
        """The files of each photograph's folder."""
        kinds = ("probability", "mask")
        names = [f"{x.value}_{kind}.png" for x in self.predictor.lesions for kind in kinds]
        names += ["overlay.png"] if self.options.overlay else []
        names += [PROBABILITIES_FILE] if self.options.save_probabilities else []
        return [*names, ROW_FILE]

    def keep(self, photo: Photograph) -> bool:
        """Whether ``photo`` was predicted into the folder already; its row is then kept."""
        folder, photograph = self.out / photo.image_id, file_digest(photo.path)
        row = completed_row(folder, self.output_names(), self.digest, photograph)
        if row is None:
            return False
        self.rows[photo.image_id] = {**row, "image_id": photo.image_id, "path": str(photo.path)}
        self.kept += 1
        return True

    def attempt(self, photos: list[Photograph], action: Callable[[], object]) -> object:
        """``action()``; on a per-photograph error, each of ``photos`` is listed as failed and
        None returned under ``keep_going``, else ``failures.csv`` is written and it raises."""
        try:
            return action()
        except PER_PHOTOGRAPH_ERRORS as error:
            for photo in photos:
                failure = _as_bad_image(photo, error)
                log.warning("%s", failure)
                self.failures.append(Failure(str(photo.path), failure.problem))
            if not self.options.keep_going:
                _write_failures(self.out, self.failures)
                if isinstance(error, BadImageError):
                    raise
                raise _as_bad_image(photos[0], error) from error
            return None

    def predict_chunk(self, chunk: list[Photograph], max_pixels: int) -> None:
        """Load, predict and write ``chunk``, each failure contained to its photographs."""
        loaded = [self.attempt([p], partial(_load, p, self.size, max_pixels)) for p in chunk]
        batch = [item for item in loaded if isinstance(item, _Loaded)]
        if not batch:
            return
        probs = self.attempt([item.photo for item in batch], partial(self.predict, batch))
        if probs is None:
            return
        for item, item_probs in zip(batch, probs, strict=True):  # type: ignore[call-overload]
            self.attempt([item.photo], partial(self.write, item, item_probs))

    def predict(self, batch: list[_Loaded]) -> np.ndarray:
        no_labels = np.zeros((self.size, self.size), np.uint8)  # to_tensors wants a label plane
        images = torch.stack([to_tensors(item.prepared.image, no_labels)[0] for item in batch])
        fov = np.stack([item.prepared.cache_fov() for item in batch])
        return self.predictor.predict(images, self.settings, fov).cpu().numpy()

    def write(self, item: _Loaded, probs: np.ndarray) -> None:
        native_fov = item.prepared.fov.native_mask()
        native = item.prepared.geometry.map_to_native(
            np.ascontiguousarray(probs.transpose(1, 2, 0))
        )
        native = native.reshape(*native.shape[:2], -1) * native_fov[..., None]
        planes = {lesion: native[..., c] for c, lesion in enumerate(self.predictor.lesions)}
        masks = {x: plane >= self.options.threshold_of(x) for x, plane in planes.items()}
        fov_pixels = int(np.count_nonzero(native_fov))
        row = {
            "image_id": item.photo.image_id,
            "path": str(item.photo.path),
            "height": item.native.shape[0],
            "width": item.native.shape[1],
            "reduction": item.reduction,
            "fov_pixels": fov_pixels,
            **lesion_statistics(masks, fov_pixels),
        }
        files = self.outputs(item, planes, masks)
        files[ROW_FILE] = row_bytes(row, self.digest, file_digest(item.photo.path))
        _publish_folder(self.out, item.photo.image_id, files)
        self.rows[item.photo.image_id] = row

    def outputs(
        self,
        item: _Loaded,
        planes: Mapping[Lesion, np.ndarray],
        masks: Mapping[Lesion, np.ndarray],
    ) -> dict[str, bytes]:
        """The image files of a photograph's folder, encoded."""
        images: dict[str, np.ndarray] = {}
        for lesion, plane in planes.items():
            images[f"{lesion.value}_probability.png"] = np.rint(plane * 255).astype(np.uint8)
            images[f"{lesion.value}_mask.png"] = masks[lesion].view(np.uint8) * np.uint8(255)
        if self.options.overlay:
            rgb = cv2.cvtColor(item.native, cv2.COLOR_BGR2RGB)
            images["overlay.png"] = cv2.cvtColor(draw_overlay(rgb, masks), cv2.COLOR_RGB2BGR)
        folder = self.out / item.photo.image_id
        files = {name: _png(folder / name, image) for name, image in images.items()}
        if self.options.save_probabilities:
            files[PROBABILITIES_FILE] = _npz({x.value: plane for x, plane in planes.items()})
        return files


def predict_photographs(
    model: Path,
    inputs: Sequence[Path],
    out: Path,
    options: PredictOptions = PredictOptions(),  # noqa: B008 (frozen)
    device: str = "cpu",
) -> PredictReport:
    """Predict every photograph of ``inputs`` into ``out`` (layout in the module docstring).

    A photograph that cannot be read, has no field of view or runs out of memory raises
    ``BadImageError`` (naming it, after writing ``failures.csv``), or with
    ``options.keep_going`` is listed in ``failures.csv`` and the run goes on.
    """
    out = Path(out)
    info = model_info(model)
    photos = find_photographs(inputs, exclude=out)
    run = _Run(info, model, out, options, device)
    if options.resume:
        check_continuable(out, run.record)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / SETTINGS_FILE, run.record)
    todo = [photo for photo in photos if not (options.resume and run.keep(photo))]
    log.info(
        "%s: %d photographs (%d already predicted) at %d px, %s inference on %s",
        model,
        len(photos),
        run.kept,
        run.size,
        run.settings.mode,
        run.predictor.device,
    )
    with tqdm(total=len(todo), desc="predict", unit="photo", disable=not options.progress) as bar:
        for chunk in _batches(todo, options.batch_size):
            run.predict_chunk(chunk, options.max_pixels)
            bar.update(len(chunk))
    report = PredictReport(out, len(run.rows) - run.kept, run.failures, run.kept)
    _write_tables(run, report, photos)
    if report.failures:
        log.warning(
            "%d of %d photographs failed (see %s):\n%s",
            len(report.failures),
            len(photos),
            out / "failures.csv",
            "\n".join(f"  {failure.path}: {failure.reason}" for failure in report.failures),
        )
    return report


def _write_tables(run: _Run, report: PredictReport, photos: Sequence[Photograph]) -> None:
    """predict.json with the counts, failures.csv, and lesions.csv in the inputs' order."""
    lesions = run.predictor.lesions
    columns = ["image_id", "path", "height", "width", "reduction", "fov_pixels"]
    columns += [f"{x.value}_{what}" for x in lesions for what in ("pixels", "fov_percent", "count")]
    rows = [run.rows[photo.image_id] for photo in photos if photo.image_id in run.rows]
    table = pd.DataFrame(rows, columns=columns)
    counts = {"predicted": report.predicted, "kept": report.kept, "failed": len(report.failures)}
    settings = {**run.record, **counts}
    atomic_write_json(report.out / SETTINGS_FILE, settings)
    _write_failures(report.out, report.failures)
    atomic_write_bytes(report.out / "lesions.csv", table.to_csv(index=False).encode())


def _write_failures(out: Path, failures: Sequence[Failure]) -> None:
    table = pd.DataFrame([vars(f) for f in failures], columns=["path", "reason"])
    atomic_write_bytes(out / "failures.csv", table.to_csv(index=False).encode())
