"""Any model reference resolved one way: a checkpoint, an ensemble file, an exported folder
(either layout, ``lesionsoup.deploy.export``) or the Hugging Face Hub id of such a folder.

A Hub id (``org/name``, or ``org/name@revision``) is read from the local Hugging Face
cache (``HF_HUB_CACHE``, else ``HF_HOME``'s) and never downloaded: ``predict`` runs
where there is no network, so a model missing there is refused with the command that
fetches it.

``model_info`` is what ``predict`` and ``export`` both read. The
preprocessing resolution (the cache size the model was trained at) is taken
from ``export.json``, else from the ``cache_size`` its metadata records (an
ensemble's: its file's, else the one its members agree on). It is never
guessed: a model that records none is refused unless the user gives the size
(``export`` also takes it from the training caches it is given), since
photographs resized to another scale than the training images' give wrong
lesion maps without any error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesionsoup.core.checkpoint import SUFFIX, CheckpointError, load_metadata
from lesionsoup.inference.predictor import CACHE_SIZE_KEY, agreed_fields, read_ensemble

#: The descriptor of an exported folder, and the format it declares.
EXPORT_FILE = "export.json"
EXPORT_FORMAT = "lesionsoup-export/1"
#: A Hugging Face Hub model id, with an optional ``@revision``.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


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
        hint = ""
        if (folder / "config.json").is_file():
            hint = (
                "; a segmentation_models_pytorch folder records neither the lesions nor the "
                "resolution predict needs: export the checkpoint with lesionsoup export "
                "--format smp"
            )
        raise CheckpointError(
            f"{folder}: not an exported lesionsoup model folder (no {EXPORT_FILE}){hint}"
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


def hub_snapshot(reference: str) -> Path:
    """The folder of the Hub model ``org/name[@revision]`` in the local Hugging Face cache."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    repo_id, _, revision = reference.partition("@")
    try:
        return Path(snapshot_download(repo_id, revision=revision or None, local_files_only=True))
    except HFValidationError as error:
        raise CheckpointError(
            f"{reference}: no such file or folder, nor a Hub id ({error})"
        ) from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{reference}: no such file or folder, nor a Hugging Face Hub model in the local "
            f"cache ({constants.HF_HUB_CACHE}); lesionsoup does not download models: fetch it "
            f"first (hf download {repo_id}{f' --revision {revision}' if revision else ''}, or "
            f"huggingface-cli download {repo_id}), or set HF_HUB_CACHE to the cache holding it"
        ) from None


def resolve_reference(path: Path) -> Path:
    """``path`` itself where it exists or names a file, else the Hub model it names."""
    text = str(path)
    if path.exists() or path.suffix in (SUFFIX, ".json") or not _HUB_ID.match(text):
        return path
    return hub_snapshot(text)


def model_info(path: Path) -> ModelInfo:
    """A checkpoint, an ensemble file, an exported folder or a Hub id, resolved and checked."""
    path = resolve_reference(Path(path))
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
