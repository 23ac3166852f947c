"""Self-contained model folders: every weight a model needs, its metadata and a model card.

``lesionsoup export MODEL -o DIR`` writes::

    DIR/export.json                 what the folder holds (format, model file, resolution)
    DIR/model.safetensors (+ .json)   a single or merged checkpoint and its sidecar, or
    DIR/ensemble.json               an ensemble whose members are copied into
    DIR/members/member_NN.safetensors (+ .json)
    DIR/README.md                   the model card

``model_info`` reads any model reference the same way: a checkpoint, an
ensemble file or an exported folder. The preprocessing resolution (the cache
size the model was trained at) is taken from ``export.json``, else from the
``cache_size`` its metadata records (an ensemble's: its file's, else the one
its members agree on). It is never guessed: a model that records none is
refused unless the user gives the size (``export`` also takes it from the
training caches it is given), since photographs resized to another scale
than the training images' give wrong lesion maps without any error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lesionsoup import __version__
from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.checkpoint import SUFFIX, CheckpointError, copy_checkpoint, load_metadata
from lesionsoup.data.cache import Cache
from lesionsoup.inference.predictor import (
    CACHE_SIZE_KEY,
    agreed_fields,
    read_ensemble,
    write_ensemble,
)

EXPORT_FILE = "export.json"
EXPORT_FORMAT = "lesionsoup-export/1"
#: What each lesion code stands for, in legends and model cards.
LESION_NAMES = {
    "EX": "hard exudates",
    "HE": "haemorrhages",
    "MA": "microaneurysms",
    "CWS": "cotton-wool spots (soft exudates)",
    "IRMA": "intraretinal microvascular abnormalities",
    "NV": "neovascularisation",
}
_ENSEMBLE_FILE_KEYS = ("kind", "members", "weights")


@dataclass(frozen=True)
class ModelInfo:
    """A model reference resolved to the file ``load_predictor`` takes, with its metadata."""

    path: Path  # a checkpoint or an ensemble file
    metadata: dict[str, Any]  # the checkpoint's sidecar, or the ensemble file's content
    members: tuple[Path, ...]
    member_metadata: tuple[dict[str, Any], ...]
    weights: tuple[float, ...]
    exported: dict[str, Any] | None = None  # export.json, for an exported folder

    @property
    def method(self) -> str:
        """``ensemble``, ``soup`` (any merged checkpoint) or ``single``."""
        if self.path.suffix == ".json":
            return "ensemble"
        return "soup" if "ingredients" in self.metadata else "single"

    @property
    def lesions(self) -> list[str]:
        return list(self.member_metadata[0].get("architecture", {}).get("lesions", []))

    @property
    def cache_size(self) -> int | None:
        """The preprocessing resolution, where the folder or the metadata records it."""
        if self.exported is not None:
            return int(self.exported[CACHE_SIZE_KEY])
        if CACHE_SIZE_KEY in self.metadata:
            return int(self.metadata[CACHE_SIZE_KEY])
        members = dict(zip(self.members, self.member_metadata, strict=True))
        size = agreed_fields(members, (CACHE_SIZE_KEY,)).get(CACHE_SIZE_KEY)
        return None if size is None else int(size)

    def recorded_size(self) -> int:
        """``cache_size``, which a model must record: a guessed resolution would give wrong
        lesion maps without any error."""
        size = self.cache_size
        if size is None:
            raise CheckpointError(
                f"{self.path}: records no '{CACHE_SIZE_KEY}' (the resolution the model was "
                "trained at, which photographs are resized to); give it with --size"
            )
        return size

    @property
    def patch_size(self) -> int | None:
        """The training patch size, where every member records the same one."""
        return _agreed(
            (meta.get("hyperparameters") or {}).get("patch_size") for meta in self.member_metadata
        )


def _agreed(values: Any) -> int | None:
    distinct = set(values)
    if len(distinct) != 1 or None in distinct:
        return None
    return int(distinct.pop())


def _read_export(folder: Path) -> dict[str, Any]:
    descriptor = folder / EXPORT_FILE
    if not descriptor.is_file():
        raise CheckpointError(
            f"{folder}: not an exported lesionsoup model folder (no {EXPORT_FILE})"
        )
    try:
        exported = json.loads(descriptor.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{descriptor}: unreadable ({error})") from None
    if not isinstance(exported, dict) or exported.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{descriptor}: not a {EXPORT_FORMAT!r} descriptor")
    name, size = exported.get("model"), exported.get(CACHE_SIZE_KEY)
    if not isinstance(name, str) or Path(name).name != name or not isinstance(size, int):
        raise CheckpointError(
            f"{descriptor}: needs 'model' (a file name in the folder) and '{CACHE_SIZE_KEY}'"
        )
    return exported


def model_info(path: Path) -> ModelInfo:
    """A checkpoint, an ensemble file or an exported folder, resolved and checked."""
    path = Path(path)
    if path.is_dir():
        exported = _read_export(path)
        inner = model_info(path / exported["model"])
        return ModelInfo(
            inner.path,
            inner.metadata,
            inner.members,
            inner.member_metadata,
            inner.weights,
            exported,
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    if path.suffix == SUFFIX:
        metadata = load_metadata(path)
        return ModelInfo(path, metadata, (path,), (metadata,), (1.0,))
    if path.suffix != ".json":
        raise CheckpointError(
            f"{path}: not a model (expected a {SUFFIX} checkpoint, a .json ensemble "
            f"or an exported model folder)"
        )
    members, weights, data = read_ensemble(path)
    member_metadata = tuple(load_metadata(member) for member in members)
    return ModelInfo(path, data, tuple(members), member_metadata, tuple(weights))


# ----------------------------------------------------------------------------- writing


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _export_size(info: ModelInfo, size: int | None, caches: Sequence[Cache]) -> int:
    """The resolution to record: given, else recorded, else the training caches' own."""
    if size is not None:
        return size
    if info.cache_size is not None or not caches:
        return info.recorded_size()  # refuses a model that records none
    sizes = {str(cache.directory): cache.size for cache in caches}
    if len(set(sizes.values())) != 1:
        raise ValueError(
            f"{info.path}: records no '{CACHE_SIZE_KEY}' and the caches differ in size: {sizes}"
        )
    return caches[0].size


def image_counts(caches: Sequence[Cache]) -> dict[str, dict[str, int]]:
    """Dataset -> split -> number of images, from the caches a model was trained on."""
    return {
        str(cache.settings.get("dataset", cache.directory.name)): {
            str(split): int(count) for split, count in cache.index["split"].value_counts().items()
        }
        for cache in caches
    }


def metrics_of_model(metrics_csv: Path, model: str) -> pd.DataFrame:
    """The rows of a long ``metrics.csv`` (``evaluation.evaluate.COLUMNS``) for one model.

    ``model`` matches the ``model`` column as written, or as the same file.
    """
    metrics_csv = Path(metrics_csv)
    try:
        table = pd.read_csv(metrics_csv)
    except (OSError, ValueError) as error:
        raise ValueError(f"{metrics_csv}: not a readable metrics table ({error})") from None
    needed = {"model", "test_dataset", "lesion", "metric", "value"}
    if not needed <= set(table.columns):
        raise ValueError(f"{metrics_csv}: missing columns {sorted(needed - set(table.columns))}")
    wanted = Path(model).resolve()
    names = table["model"].astype(str)
    rows = table[(names == model) | names.map(lambda name: Path(name).resolve() == wanted)]
    if rows.empty:
        known = sorted(names.unique())[:5]
        raise ValueError(f"{metrics_csv}: no rows for model {model!r} (models: {known}...)")
    return rows


def export_model(
    model: Path,
    out: Path,
    *,
    size: int | None = None,
    metrics_csv: Path | None = None,
    metrics_model: str | None = None,
    caches: Sequence[Path] = (),
) -> Path:
    """Write the self-contained folder of ``model`` at ``out``; returns ``out``.

    ``metrics_csv`` adds the test metrics of ``metrics_model`` (default: the
    model path as given); ``caches`` (the training caches) add image counts
    and, when nothing else records it, the resolution. The folder is built
    next to ``out`` and renamed into place; an earlier export there is replaced,
    any other existing folder is refused.
    """
    model, out = Path(model), Path(out)
    info = model_info(model)
    opened = [Cache(directory) for directory in caches]
    resolution = _export_size(info, size, opened)
    metrics = metrics_of_model(metrics_csv, metrics_model or str(model)) if metrics_csv else None
    if out.exists() and not (out / EXPORT_FILE).is_file() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not an exported model folder; not overwriting it")

    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        if info.method == "ensemble":
            copies = [
                partial / "members" / f"member_{index:02d}{SUFFIX}"
                for index in range(len(info.members))
            ]
            (partial / "members").mkdir()
            for source, target in zip(info.members, copies, strict=True):
                copy_checkpoint(source, target)
            extra = {k: v for k, v in info.metadata.items() if k not in _ENSEMBLE_FILE_KEYS}
            model_file = partial / "ensemble.json"
            write_ensemble(model_file, copies, extra, weights=list(info.weights))
        else:
            model_file = partial / f"model{SUFFIX}"
            copy_checkpoint(info.path, model_file)
        files = sorted(p for p in partial.rglob("*") if p.is_file())
        exported = {
            "format": EXPORT_FORMAT,
            "model": model_file.name,
            CACHE_SIZE_KEY: resolution,
            "method": info.method,
            "lesions": info.lesions,
            "source": str(model),
            "sources": [str(member) for member in info.members],
            "lesionsoup_version": __version__,
            "sha256": {str(p.relative_to(partial)): _sha256(p) for p in files},
        }
        card = model_card(info, exported, metrics, image_counts(opened))
        atomic_write_bytes(partial / "README.md", card.encode())
        atomic_write_bytes(partial / EXPORT_FILE, json.dumps(exported, indent=2).encode())
        if out.exists():
            shutil.rmtree(out)
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- model card


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
        weights = metadata.get("weights", {})
        kept = sum(1 for weight in weights.values() if weight > 0)
        lines.append(
            f"- Weight-space soup: rule `{metadata.get('rule', '?')}`, BatchNorm policy "
            f"`{metadata.get('bn_policy', '?')}`, {kept} of {len(metadata['ingredients'])} "
            f"ingredients kept"
        )
        lines += ["", *_table(["ingredient", "weight"], sorted(weights.items()))]
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
