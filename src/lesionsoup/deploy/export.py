"""Self-contained model folders: every weight a model needs, its metadata and a model card.

``lesionsoup export MODEL -o DIR`` writes::

    DIR/export.json                 what the folder holds (format, model file, resolution)
    DIR/model.safetensors (+ .json)   a single or merged checkpoint and its sidecar, or
    DIR/ensemble.json               an ensemble whose members are copied into
    DIR/members/member_NN.safetensors (+ .json)
    DIR/README.md                   the model card (``lesionsoup.deploy.model_card``)

``--format smp`` (``layout="smp"``) writes each checkpoint as a segmentation_models_pytorch
folder as well (``lesionsoup.deploy.smp_export``). ``predict`` takes the folder like any
model (``lesionsoup.deploy.models``), at the resolution ``export.json`` records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lesionsoup import __version__
from lesionsoup.core.atomic import atomic_write_bytes, atomic_write_json
from lesionsoup.core.checkpoint import SUFFIX, copy_checkpoint
from lesionsoup.data.cache import Cache
from lesionsoup.deploy.folders import published_folder
from lesionsoup.deploy.model_card import model_card
from lesionsoup.deploy.models import EXPORT_FILE, EXPORT_FORMAT, ModelInfo, model_info
from lesionsoup.deploy.smp_export import AVERAGING, smp_model_files, smp_readme
from lesionsoup.inference.predictor import CACHE_SIZE_KEY, write_ensemble

_ENSEMBLE_FILE_KEYS = ("kind", "members", "weights")
#: The folder layouts ``export_model`` writes: lesionsoup's own, or smp folders as well.
LAYOUTS = ("lesionsoup", "smp")


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
    layout: str = "lesionsoup",
) -> Path:
    """Write the self-contained folder of ``model`` at ``out``; returns ``out``.

    ``metrics_csv`` adds the test metrics of ``metrics_model`` (default: the
    model path as given); ``caches`` (the training caches) add image counts
    and, when nothing else records it, the resolution. ``layout`` is one of ``LAYOUTS``.
    The folder is built next to ``out`` and renamed into place; an earlier export there
    is replaced, any other existing folder is refused.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown export format {layout!r}; choose one of {list(LAYOUTS)}")
    model, out = Path(model), Path(out)
    info = model_info(model)
    opened = [Cache(directory) for directory in caches]
    resolution = _export_size(info, size, opened)
    metrics = metrics_of_model(metrics_csv, metrics_model or str(model)) if metrics_csv else None
    if out.exists() and not (out / EXPORT_FILE).is_file() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not an exported model folder; not overwriting it")
    with published_folder(out) as folder:
        model_file = _copy_model(info, folder, layout)
        if layout == "smp" and info.method == "ensemble":
            _describe_members(info, folder, resolution)
        exported = _descriptor(info, model, folder, model_file.name, resolution, layout)
        card = model_card(info, exported, metrics, image_counts(opened))
        if layout == "smp":
            card = smp_readme(card, info)
        atomic_write_bytes(folder / "README.md", card.encode())
        atomic_write_json(folder / EXPORT_FILE, exported)
    return out


def _copy_model(info: ModelInfo, folder: Path, layout: str) -> Path:
    """Copy the model into ``folder``: the checkpoint, or every member and a new ensemble file
    naming the copies, in ``layout``; returns the model file."""
    extra = {k: v for k, v in info.metadata.items() if k not in _ENSEMBLE_FILE_KEYS}
    if layout == "smp":
        copies = smp_model_files(info, folder)
        if info.method != "ensemble":
            return copies[0]
        extra["averaging"] = AVERAGING
    elif info.method != "ensemble":
        model_file = folder / f"model{SUFFIX}"
        copy_checkpoint(info.path, model_file)
        return model_file
    else:
        (folder / "members").mkdir()
        copies = [folder / "members" / f"member_{i:02d}{SUFFIX}" for i in range(len(info.members))]
        for source, target in zip(info.members, copies, strict=True):
            copy_checkpoint(source, target)
    model_file = folder / "ensemble.json"
    write_ensemble(model_file, copies, extra, weights=list(info.weights))
    return model_file


def _describe_members(info: ModelInfo, folder: Path, resolution: int) -> None:
    """An ``export.json`` in each member's smp folder, so that each is an exported model."""
    for index, source in enumerate(info.members):
        member = folder / "members" / f"member_{index:02d}"
        described = _descriptor(
            model_info(member / f"model{SUFFIX}"),
            source,
            member,
            f"model{SUFFIX}",
            resolution,
            "smp",
        )
        atomic_write_json(member / EXPORT_FILE, described)


def _descriptor(
    info: ModelInfo, source: Path, folder: Path, model_file: str, resolution: int, layout: str
) -> dict[str, Any]:
    """``export.json``: what the folder holds, the resolution, and every file's SHA-256."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {
        "format": EXPORT_FORMAT,
        "model": model_file,
        CACHE_SIZE_KEY: resolution,
        "method": info.method,
        "layout": layout,
        "lesions": info.lesions,
        "source": str(source),
        "sources": [str(member) for member in info.members],
        "lesionsoup_version": __version__,
        "sha256": {str(p.relative_to(folder)): _sha256(p) for p in files},
    }
