"""The evaluation stage: one model on one test set, then every result in one table.

``evaluate`` runs a model reference (checkpoint or ensemble) over the images of
one cache split, one image at a time, and pools per-lesion histograms of
positive and negative pixels over probability bins plus per-image counts
(``lesionsoup.core.metrics``): memory does not grow with the number of images, and
the result holds everything later metrics and PR curves need. ``resolution``
chooses where pixels are counted:

* ``cache``: the cached square and its label plane, as in training;
* ``native``: the probability maps mapped back onto the photograph's own pixel
  grid (``Geometry.map_to_native``, bilinear) and compared with the native
  masks, re-read from the manifest with the cache's mask rules; the field of
  view is detected again on the photograph.

``labels`` chooses each lesion's reference (``lesionsoup.core.metrics.conventions``):
``multilabel``, its own mask; ``priority``, the softmax head's priority label map
(``priority_plane``), with Dice and the per-image counts taken from the argmax over
background and lesions (``LesionHistogram.decisions``). Every image also records the
lesion-wise counts of its hard prediction (``lesionsoup.core.lesion_components``:
connected components matched by overlap), at the chosen resolution. ``priority`` needs softmax
models: a sigmoid head's channels are independent, so they define no background
probability to take an argmax against, and were never trained on that map.

``aggregate`` turns many results into the long ``metrics.csv`` (``COLUMNS``),
labelling each model with the model table (``save_model_table``), and writes
the counting rules and the files it read next to it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.lesion_components import image_component_counts
from lesionsoup.core.lesions import ALL, Lesion, pack, priority_plane
from lesionsoup.core.metrics import (
    DEFAULT_BINS,
    DICE_THRESHOLD,
    LABELS,
    Confusion,
    ImageCounts,
    LesionHistogram,
    SegmentationHistograms,
    argmax_decisions,
    conventions,
    valid_mask,
)
from lesionsoup.core.model import predicted_classes
from lesionsoup.data.cache import Cache
from lesionsoup.data.fov import find_fov
from lesionsoup.data.manifest import mask_column, read_manifest
from lesionsoup.data.preprocess import MaskRules, mask_paths, read_mask_in_frame, read_photograph
from lesionsoup.evaluation.statistics import image_histograms_to_dict
from lesionsoup.inference.infer import DEFAULT_SETTINGS, InferenceSettings, fov_from_labels
from lesionsoup.inference.predictor import Predictor, load_predictor
from lesionsoup.training.sampling import to_tensors

#: 2: per-image histograms; 3: in groups; 4: labels; 5: lesion-wise component counts
FORMAT = "lesionsoup-evaluation/5"
COLUMNS = ("model", "train_combo", "method", "test_dataset", "lesion", "metric", "value")
Resolution = Literal["cache", "native"]
Labels = Literal["multilabel", "priority"]


class EvaluationError(ValueError):
    """An evaluation input or result file that cannot be used; the message names it."""


def native_labels(row: Mapping[str, Any], rules: MaskRules) -> np.ndarray:
    """The label plane (H, W) of a manifest row at the photograph's own resolution.

    Masks are binarised with ``rules`` (pixels of the uncertain value set the
    ignore bit when the rules say so), and ROI-space masks placed in the frame by
    its resize rule; the field of view is detected on the photograph.
    """
    image = read_photograph(row["image_path"])
    shape = image.shape[:2]
    masks: dict[Lesion, np.ndarray] = {}
    ignore = np.zeros(shape, bool)
    for lesion in ALL:
        for path in mask_paths(row.get(mask_column(lesion))):
            values = read_mask_in_frame(path, row.get("mask_roi"), shape, rules.resize)
            if values.shape != shape:
                raise EvaluationError(
                    f"{path}: mask is {values.shape[1]}x{values.shape[0]} but its image "
                    f"{row['image_path']} is {shape[1]}x{shape[0]}"
                )
            lesion_pixels, uncertain = rules.binarise(values, lesion)
            masks[lesion] = masks.get(lesion, np.zeros(shape, bool)) | lesion_pixels.view(bool)
            if uncertain is not None:
                ignore |= uncertain.view(bool)
    return pack(masks, find_fov(image).native_mask(), ignore)


class _NativeTruth:
    """Native label planes of a cache's images, read from the dataset's manifest."""

    def __init__(self, cache: Cache, manifest: Path) -> None:
        frame = read_manifest(manifest)
        self.rows = {str(row["image_id"]): row for row in frame.to_dict("records")}
        self.manifest = manifest
        self.rules = MaskRules(**cache.settings.get("rules", {}))

    def labels(self, image_id: str) -> np.ndarray:
        if image_id not in self.rows:
            raise EvaluationError(f"{self.manifest}: no row for image {image_id!r} of the cache")
        return native_labels(self.rows[image_id], self.rules)


def image_probability_tensor(
    predictor: Predictor, image: np.ndarray, labels: np.ndarray, settings: InferenceSettings
) -> torch.Tensor:
    """Per-lesion probabilities (L, H, W) of one cached image, on the predictor's device.

    0 outside the image's field of view.
    """
    tensor = to_tensors(image, labels, predictor.lesions)[0][None]
    fov = fov_from_labels(labels)[None]
    return predictor.predict(tensor, settings, fov)[0]


def image_probabilities(
    predictor: Predictor, image: np.ndarray, labels: np.ndarray, settings: InferenceSettings
) -> np.ndarray:
    """``image_probability_tensor`` as a float32 NumPy array on the host."""
    return image_probability_tensor(predictor, image, labels, settings).float().cpu().numpy()


def check_labels(labels: str, predictor: Predictor) -> None:
    """Refuse ``labels="priority"`` for a model with a sigmoid head (module docstring)."""
    if labels not in LABELS:
        raise ValueError(f"evaluation.labels must be one of {list(LABELS)}, not {labels!r}")
    sigmoid = [str(m.path) for m in predictor.members if m.head != "softmax"]
    if labels == "priority" and sigmoid:
        raise EvaluationError(
            f"{predictor.path}: evaluation.labels 'priority' needs model.head 'softmax', but "
            f"{sigmoid[0]} has head 'sigmoid'; evaluate it with evaluation.labels 'multilabel'"
        )


def hard_prediction(probs: torch.Tensor | np.ndarray) -> np.ndarray:
    """The boolean (L, H, W) ``p >= DICE_THRESHOLD`` on the host; a tensor is compared on
    its device and only the booleans cross."""
    if isinstance(probs, torch.Tensor):
        return (probs >= DICE_THRESHOLD).cpu().numpy()
    return np.asarray(probs) >= DICE_THRESHOLD


def score_image(
    histograms: SegmentationHistograms,
    image_id: str,
    probs: torch.Tensor | np.ndarray,
    labels: np.ndarray,
    priority: bool,
) -> list[LesionHistogram]:
    """One image's histograms with its lesion-wise counts (``lesion_components``) of the
    hard prediction; with ``priority``, against the priority map and with the argmax
    decisions, the argmax being the hard prediction."""
    lesions = histograms.lesions
    decisions: list[Confusion | None] = [None] * len(lesions)
    labels = priority_plane(labels, lesions) if priority else labels
    images = histograms.bin_image(image_id, probs, labels)  # checks the shapes and range
    if priority:
        classes = predicted_classes(probs)
        decisions = list(argmax_decisions(classes, labels, lesions))
        predicted = classes[None] == np.arange(1, len(lesions) + 1, dtype=np.uint8)[:, None, None]
    else:
        predicted = hard_prediction(probs)
    labels = np.asarray(labels)
    references = np.stack([(labels & lesion.bit) != 0 for lesion in lesions])
    components = image_component_counts(predicted, references, valid_mask(labels), lesions)
    return [
        LesionHistogram(image.bins, image.positives, image.negatives, decided, counted)
        for image, decided, counted in zip(images, decisions, components, strict=True)
    ]


def _image_ids(cache: Cache, split: str, image_ids: Sequence[str] | None) -> list[str]:
    ids = list(cache.ids_in(split) if image_ids is None else image_ids)
    if not ids:
        raise EvaluationError(f"{cache.directory}: no images in split {split!r}")
    unknown = sorted(set(ids) - set(cache.ids))
    if unknown:
        raise EvaluationError(f"{cache.directory}: no images {unknown[:5]} in this cache")
    return ids


def _native_truth(
    cache: Cache, resolution: Resolution, manifest: Path | None
) -> _NativeTruth | None:
    """The native label planes for ``resolution="native"``, None at cache resolution."""
    if resolution not in ("cache", "native"):
        raise ValueError(f"resolution must be 'cache' or 'native', not {resolution!r}")
    if resolution == "native" and manifest is None:
        raise ValueError("native-resolution evaluation needs the dataset's manifest")
    return _NativeTruth(cache, Path(manifest)) if resolution == "native" else None


def _score_images(
    predictor: Predictor,
    cache: Cache,
    ids: Sequence[str],
    truth: _NativeTruth | None,
    settings: InferenceSettings,
    histograms: SegmentationHistograms,
    progress: bool,
    priority: bool,
) -> tuple[list[ImageCounts], list[list[LesionHistogram]], int]:
    """Pool every image into ``histograms``; its counts, histograms and pixels."""
    per_image: list[ImageCounts] = []
    images_kept: list[list[LesionHistogram]] = []
    pixels = 0
    for image_id in tqdm(ids, desc=f"evaluate {cache.directory.name}", disable=not progress):
        labels = np.asarray(cache.labels(image_id))
        image = np.asarray(cache.image(image_id))
        probs: torch.Tensor | np.ndarray
        probs = image_probability_tensor(predictor, image, labels, settings)
        if truth is not None:
            host = probs.float().cpu().numpy().transpose(1, 2, 0)
            mapped = cache.geometry(image_id).map_to_native(host)
            probs = mapped.reshape(*mapped.shape[:2], -1).transpose(2, 0, 1)
            labels = truth.labels(image_id)
        pixels += labels.size
        images = score_image(histograms, image_id, probs, labels, priority)
        per_image.extend(histograms.pool(image_id, images))
        images_kept.append(images)
    return per_image, images_kept, pixels


def evaluate(
    model: Path | Predictor,
    cache_dir: Path,
    split: str = "test",
    settings: InferenceSettings = DEFAULT_SETTINGS,
    bins: int = DEFAULT_BINS,
    resolution: Resolution = "cache",
    manifest: Path | None = None,
    device: str | torch.device = "cpu",
    image_ids: Sequence[str] | None = None,
    progress: bool = False,
    labels: Labels = "multilabel",
) -> dict[str, Any]:
    """Histograms and per-image counts of one model on one test set, as a JSON-able dict.

    ``model`` is a model file, or a predictor already loaded (``device`` is then
    unused). ``image_ids`` replaces the split's images (an id listed twice
    counts twice); ``manifest`` is the dataset's manifest, needed for
    ``resolution="native"``. ``megapixels`` counts the pixels compared, at the
    chosen resolution. At cache resolution the probabilities are binned on the
    model's device and only the counts reach the host; native resolution maps
    them back on the host (``Geometry.map_to_native``) and bins them there.
    ``labels``: the reference of each lesion (module docstring).
    """
    started = time.perf_counter()
    cache = Cache(cache_dir)
    ids = _image_ids(cache, split, image_ids)
    truth = _native_truth(cache, resolution, manifest)
    predictor = model if isinstance(model, Predictor) else load_predictor(model, device)
    check_labels(labels, predictor)
    histograms = SegmentationHistograms(predictor.lesions, bins)
    per_image, images_kept, pixels = _score_images(
        predictor, cache, ids, truth, settings, histograms, progress, labels == "priority"
    )
    return {
        "format": FORMAT,
        "model": str(predictor.path),
        "test_dataset": str(cache.settings.get("dataset", cache.directory.name)),
        "cache": str(cache_dir),
        "split": split,
        "resolution": resolution,
        "labels": labels,
        "inference": settings.as_dict(),
        "device": str(predictor.device),
        "images": len(ids),
        "megapixels": pixels / 1e6,
        "seconds": time.perf_counter() - started,
        "conventions": conventions(bins, labels),
        "histograms": histograms.to_dict(),
        "per_image": [asdict(counts) for counts in per_image],
        "image_histograms": image_histograms_to_dict(
            ids, [lesion.value for lesion in predictor.lesions], images_kept, bins
        ),
    }


def save_evaluation(result: Mapping[str, Any], path: Path) -> None:
    """Write an ``evaluate`` result as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(result).encode())


def load_evaluation(path: Path) -> dict[str, Any]:
    """An ``evaluate`` result from its JSON file, checked."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvaluationError(f"{path}: not a readable evaluation file ({error})") from None
    if not isinstance(result, dict) or result.get("format") != FORMAT:
        raise EvaluationError(f"{path}: not a lesionsoup evaluation file (format {FORMAT!r})")
    return result


def evaluation_metrics(result: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Lesion -> metric -> value of an ``evaluate`` result (``SegmentationHistograms.metrics``)."""
    histograms = SegmentationHistograms.from_dict(result["histograms"])
    counts = [ImageCounts(**entry) for entry in result["per_image"]]
    return histograms.metrics(counts)


def aggregate(
    json_paths: Iterable[Path],
    out_csv: Path,
    model_info: Mapping[str, tuple[str, str]],
) -> pd.DataFrame:
    """Write the long ``metrics.csv`` of many evaluation files, and its conventions.

    ``model_info`` maps each evaluated model path (as the evaluation recorded
    it) to its ``(train_combo, method)``. The counting rules, the bins and the
    distinct inference settings go to ``<out_csv stem>.conventions.json``.
    """
    out_csv = Path(out_csv)
    info = {str(Path(model)): value for model, value in model_info.items()}
    rows: list[tuple[str, str, str, str, str, str, float]] = []
    seen: dict[tuple[str, str], Path] = {}
    bins: set[int] = set()
    resolutions: set[str] = set()
    label_sets: set[str] = set()
    inference: list[dict[str, Any]] = []
    for path in map(Path, json_paths):
        result = load_evaluation(path)
        model, test = str(Path(result["model"])), result["test_dataset"]
        if model not in info:
            raise EvaluationError(f"{path}: model {model} has no train_combo and method")
        if (model, test) in seen:
            twin = seen[model, test]
            raise EvaluationError(f"{path}: evaluates {model} on {test}, as does {twin}")
        seen[model, test] = path
        bins.add(result["histograms"]["bins"])
        resolutions.add(result["resolution"])
        label_sets.add(result["labels"])
        if result["inference"] not in inference:
            inference.append(result["inference"])
        combo, method = info[model]
        for lesion, values in evaluation_metrics(result).items():
            rows.extend((model, combo, method, test, lesion, m, v) for m, v in values.items())
    if not seen:
        raise ValueError(f"{out_csv}: no evaluation files to aggregate")
    for name, values in (("bins", bins), ("resolutions", resolutions), ("labels", label_sets)):
        if len(values) > 1:
            raise EvaluationError(f"{out_csv}: the evaluations mix {name} {sorted(values)}")
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    labels = label_sets.pop()
    notes = {
        "conventions": conventions(bins.pop(), labels),
        "resolution": resolutions.pop(),
        "labels": labels,
        "inference": inference,
        "evaluations": [str(path) for path in seen.values()],
    }
    atomic_write_bytes(conventions_path(out_csv), json.dumps(notes, indent=2).encode())
    atomic_write_bytes(out_csv, table.to_csv(index=False).encode())
    return table


def read_metrics(path: Path) -> pd.DataFrame:
    """The long metrics table, checked: its columns and numeric values."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={name: str for name in COLUMNS if name != "value"})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{path}: not a readable metrics table ({error})") from None
    missing = [name for name in COLUMNS if name not in table.columns]
    if missing:
        raise ValueError(f"{path}: metrics table lacks columns {missing}")
    values = pd.to_numeric(table["value"], errors="coerce")
    bad = values.isna() & table["value"].notna()
    if bad.any():
        raise ValueError(f"{path}: non-numeric value {table['value'][bad].iloc[0]!r}")
    if table.empty:
        raise ValueError(f"{path}: metrics table has no rows")
    return table.assign(value=values)


def conventions_path(out_csv: Path) -> Path:
    """Where ``aggregate`` writes the rules behind ``out_csv``."""
    return Path(out_csv).with_name(f"{Path(out_csv).stem}.conventions.json")


def save_model_table(models: Mapping[str, Sequence[str]], path: Path) -> None:
    """Write ``models.json``: model path -> [train_combo, method], sorted.

    A file of its own, so that ``aggregate`` reruns when a model joins the matrix
    or changes method, and only then.
    """
    atomic_write_bytes(Path(path), (json.dumps(dict(models), sort_keys=True) + "\n").encode())


def load_model_table(path: Path) -> dict[str, tuple[str, str]]:
    """``models.json`` as ``aggregate``'s ``model_info``."""
    try:
        table = json.loads(Path(path).read_text())
        return {model: (combo, method) for model, (combo, method) in table.items()}
    except (OSError, AttributeError, TypeError, ValueError) as error:
        message = f"{path}: not a table of model -> [train_combo, method] ({error})"
        raise EvaluationError(message) from None


def aggregated_evaluations(notes: Path) -> list[Path]:
    """The evaluation files behind a ``metrics.csv``, as its conventions file lists them."""
    try:
        return [Path(p) for p in json.loads(Path(notes).read_text())["evaluations"]]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{notes}: cannot list the evaluation files ({error!r})") from None
