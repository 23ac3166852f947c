"""The README.md of an exported model folder: data, method, scores, intended use and limits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lesionsoup.core.merge_rules import DEFAULT_PART
from lesionsoup.deploy.models import ModelInfo
from lesionsoup.inference.predictor import CACHE_SIZE_KEY

#: What each lesion code stands for, in legends and model cards.
LESION_NAMES = {
    "EX": "hard exudates",
    "HE": "haemorrhages",
    "MA": "microaneurysms",
    "CWS": "cotton-wool spots (soft exudates)",
    "IRMA": "intraretinal microvascular abnormalities",
    "NV": "neovascularisation",
}


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def _training_section(info: ModelInfo, counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    metadata = info.member_metadata[0]
    combination = info.metadata.get("combination") or metadata.get("combination", "not recorded")
    datasets = info.metadata.get("datasets") or metadata.get("datasets") or []
    lines = ["## Training data", ""]
    lines.append(f"- Combination: `{combination}`")
    lines.append(f"- Datasets: {', '.join(datasets) if datasets else 'not recorded'}")
    if counts:
        lines += ["", "Images per split (from the training caches):", ""]
        splits = sorted({split for per_split in counts.values() for split in per_split})
        rows = [
            [name, *(per_split.get(s, 0) for s in splits)] for name, per_split in counts.items()
        ]
        lines += _table(["dataset", *splits], rows)
    else:
        lines.append("- Image counts: not recorded (pass `--cache` to `lesionsoup export`)")
    return lines


def _soup_lines(metadata: dict[str, Any]) -> list[str]:
    """A soup's rule, part and anchor, the starts of the ingredients it keeps, and its weights."""
    weights = metadata.get("weights", {})
    kept = [path for path, weight in weights.items() if weight > 0]
    part = metadata.get("part", DEFAULT_PART)
    lines = [
        f"- Weight-space soup: rule `{metadata.get('rule', '?')}`, BatchNorm policy "
        f"`{metadata.get('bn_policy', '?')}`, {len(kept)} of {len(metadata['ingredients'])} "
        f"ingredients kept"
    ]
    if part != DEFAULT_PART:
        lines.append(f"- Averages the {part}; the rest is the anchor's, `{metadata.get('anchor')}`")
    recorded = metadata.get("starts") or {}
    if recorded:
        starts = Counter(recorded.get(path, "not recorded") for path in kept)
        lines.append(
            "- Starts of the kept ingredients: "
            + ", ".join(f"{start} ({count})" for start, count in sorted(starts.items()))
        )
    return [*lines, "", *_table(["ingredient", "weight"], sorted(weights.items()))]


def _method_section(info: ModelInfo) -> list[str]:
    metadata = info.metadata
    architecture = info.member_metadata[0].get("architecture", {})
    lines = ["## Method", ""]
    lines.append(
        f"- Architecture: U-Net, encoder `{architecture.get('encoder')}` "
        f"(depth {architecture.get('encoder_depth')}), decoder channels "
        f"{architecture.get('decoder_channels')}, {architecture.get('head')} head"
    )
    if info.method == "single":
        hyper = metadata.get("hyperparameters", {})
        lines.append(
            f"- Single model: {metadata.get('step', '?')} steps, "
            f"{metadata.get('samples_seen', '?')} patches of {hyper.get('patch_size', '?')} px, "
            f"learning rate {hyper.get('lr', '?')} ({hyper.get('schedule', '?')} schedule), "
            f"batch size {hyper.get('batch_size', '?')}, seed {hyper.get('seed', '?')}"
        )
    elif info.method == "soup":
        lines += _soup_lines(metadata)
    else:
        lines.append(
            f"- Prediction-space ensemble of {len(info.members)} models "
            f"(selection: {metadata.get('selection', 'not recorded')}); "
            "their probabilities are averaged with the weights below"
        )
        rows = [
            [f"members/member_{index:02d}", str(source), weight]
            for index, (source, weight) in enumerate(zip(info.members, info.weights, strict=True))
        ]
        lines += ["", *_table(["member", "source", "weight"], rows)]
    return lines


def _validation_section(info: ModelInfo) -> list[str]:
    lines = ["## Validation scores", ""]
    sources = (
        [("model", info.metadata.get("validation") or {})]
        if info.method != "ensemble"
        else [
            (f"member_{index:02d}", meta.get("validation") or {})
            for index, meta in enumerate(info.member_metadata)
        ]
    )
    keys = sorted({key for _, scores in sources for key in scores if key != "step"})
    if not keys:
        return [*lines, "Not recorded."]
    rows = [[name, *(scores.get(key, "") for key in keys)] for name, scores in sources]
    lines.append(
        "Pooled average precision per lesion on the validation split of the training "
        "datasets (`score`: their mean), as recorded when the model was saved."
    )
    return [*lines, "", *_table(["", *keys], rows)]


def _test_section(metrics: pd.DataFrame | None) -> list[str]:
    lines = ["## Test metrics", ""]
    if metrics is None:
        return [*lines, "Not included (pass `--metrics results/metrics.csv` to add them)."]
    pivot = metrics.pivot_table(
        index=["test_dataset", "lesion"], columns="metric", values="value", aggfunc="first"
    )
    rows = [[*index, *values] for index, values in zip(pivot.index, pivot.to_numpy(), strict=True)]
    return [*lines, *_table(["test dataset", "lesion", *pivot.columns], rows)]


def model_card(
    info: ModelInfo,
    exported: Mapping[str, Any],
    metrics: pd.DataFrame | None,
    counts: Mapping[str, Mapping[str, int]],
) -> str:
    """The README.md of an exported folder."""
    size = exported[CACHE_SIZE_KEY]
    lesions = ", ".join(f"{code} ({LESION_NAMES.get(code, code)})" for code in info.lesions)
    source = Path(exported["source"])
    lines = [
        f"# lesionsoup model: {source.parent.name}/{source.stem}",
        "",
        f"Retinal lesion segmentation of colour fundus photographs: {lesions}. "
        f"One probability map per lesion. Method: **{info.method}**.",
        "",
        "```",
        "lesionsoup predict THIS_FOLDER photographs/ -o predictions/",
        "```",
        "",
        *_training_section(info, counts),
        "",
        *_method_section(info),
        "",
        *_validation_section(info),
        "",
        *_test_section(metrics),
        "",
        "## Intended use and limits",
        "",
        "- For research only. This is **not a medical device**; it is not validated for "
        "diagnosis, screening or any clinical decision.",
        "- Input: colour fundus photographs (JPEG, PNG or TIFF, 8-bit RGB, any size). The "
        "field of view is detected, the photograph is cropped to it and resized so that its "
        f"longer side is **{size} px** (the training resolution), then padded to a square; "
        "predictions are mapped back to the photograph's own pixel grid. EXIF orientation "
        "is ignored.",
        "- Photographs far from the training data (other cameras, fields, resolutions, "
        "ungradable images) can fail silently; check the overlays. Thresholds for the "
        "binary masks are the user's choice (default 0.5), not calibrated per lesion.",
        "",
        "## Files",
        "",
        *_table(["file", "sha256"], sorted(exported["sha256"].items())),
        "",
        f"Exported with lesionsoup {exported['lesionsoup_version']} from `{exported['source']}`.",
        "",
    ]
    return "\n".join(lines)
