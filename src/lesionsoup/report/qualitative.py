"""Qualitative figures: test images, their ground truth and models' predictions as overlays.

Each lesion gets one colour; a prediction panel fills the pixels a model
predicts (probability >= 0.5) and outlines the ground truth in black.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from lesionsoup.core.figures import panel_figure_size, save_figure
from lesionsoup.core.lesions import TRAINED, Lesion, unpack
from lesionsoup.core.metrics import DICE_THRESHOLD
from lesionsoup.data.cache import Cache
from lesionsoup.evaluation.evaluate import image_probabilities
from lesionsoup.inference.infer import DEFAULT_SETTINGS
from lesionsoup.inference.predictor import load_predictor

#: Lesion colours (RGB, 0-1), distinct in hue and in lightness.
LESION_COLOURS: dict[Lesion, tuple[float, float, float]] = {
    Lesion.EX: (0.99, 0.91, 0.15),
    Lesion.HE: (0.27, 0.00, 0.33),
    Lesion.MA: (0.13, 0.57, 0.55),
    Lesion.CWS: (0.75, 0.85, 1.00),
}


def chosen_images(cache: Cache, count: int, split: str = "test") -> list[str]:
    """The ``count`` images of a split with the most lesion pixels (ties: index order)."""
    index = cache.index[cache.index["split"] == split]
    if index.empty:
        raise ValueError(f"{cache.directory}: no images in split {split!r}")
    columns = [f"px_{lesion.value}" for lesion in TRAINED if f"px_{lesion.value}" in index]
    totals = index[columns].sum(axis=1)
    order = totals.sort_values(ascending=False, kind="stable").index
    return list(index.loc[order, "image_id"].astype(str)[:count])


def overlay(image: np.ndarray, masks: np.ndarray, lesions: tuple[Lesion, ...]) -> np.ndarray:
    """The image (float RGB 0-1) with each lesion's mask filled in its colour (60 % opaque)."""
    result = image.astype(np.float32) / 255
    for mask, lesion in zip(masks, lesions, strict=True):
        colour = np.array(LESION_COLOURS.get(lesion, (1.0, 0.0, 0.0)), np.float32)
        result[mask.astype(bool)] = 0.4 * result[mask.astype(bool)] + 0.6 * colour
    return result


def outline(target: np.ndarray, into: np.ndarray) -> np.ndarray:
    """Draw the union of the ground-truth masks' boundaries in black onto an overlay."""
    union = target.any(axis=0).astype(np.uint8)
    edge = union & ~cv2.erode(union, np.ones((3, 3), np.uint8))
    result = into.copy()
    result[edge.astype(bool)] = 0.0
    return result


def plot_qualitative(
    cache: Cache, models: Mapping[str, Path], out: Path, images: int = 3, split: str = "test"
) -> list[str]:
    """Rows: the chosen images; columns: image, ground truth, one panel per model."""
    predictors = {label: load_predictor(path) for label, path in models.items()}
    lesions = next(iter(predictors.values())).lesions if predictors else TRAINED
    ids = chosen_images(cache, images, split)
    columns = 2 + len(predictors)
    fig, axes = plt.subplots(
        len(ids),
        columns,
        figsize=panel_figure_size(len(ids), columns, panel_aspect=1.0, extra=0.8),
        squeeze=False,
    )
    for row, image_id in enumerate(ids):
        image = np.asarray(cache.image(image_id))
        labels = np.asarray(cache.labels(image_id))
        target = unpack(labels, lesions)
        panels = {"image": image / 255, "ground truth": overlay(image, target, lesions)}
        for label, predictor in predictors.items():
            probs = image_probabilities(predictor, image, labels, DEFAULT_SETTINGS)
            predicted = overlay(image, probs >= DICE_THRESHOLD, lesions)
            panels[label] = outline(target, predicted)
        for ax, (title, panel) in zip(axes[row], panels.items(), strict=True):
            ax.imshow(np.clip(panel, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title if row == 0 else "", fontsize="small")
        axes[row, 0].set_ylabel(image_id, fontsize="small")
    handles = [
        Patch(facecolor=LESION_COLOURS.get(x, (1, 0, 0)), edgecolor="black", label=x.value)
        for x in lesions
    ]
    handles.append(Line2D([], [], color="black", linewidth=2, label="ground-truth outline"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(f"{cache.directory.name}: predictions (p ≥ {DICE_THRESHOLD}) on {split} images")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(fig, out, tight=False)
    return ids
