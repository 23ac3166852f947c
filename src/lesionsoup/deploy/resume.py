"""``predict --continue``: whether an output folder may be continued, and what it already holds.

``OUT/predict.json`` is written when a run starts, and again with its counts
when it ends. It records the model (``model_sha256``: its weights' SHA-256,
an ensemble's members' too) and every option the outputs depend on
(``OUTPUT_KEYS``). A continued run refuses a folder whose record differs in
any of those, or that holds files but no record: two models' (or two
thresholds') lesion maps in one folder would make a ``lesions.csv`` that
describes neither. The device, the batch size and the counts may differ.

``lesions`` is the model's channel order and ``precision`` the one inference resolved to on
its device (``auto`` is bf16 on a GPU, fp32 on the CPU).

A photograph counts as predicted when its folder (published whole by one
rename, ``folders.py``) holds every output the run would write, and its
``lesions.json`` (its row of ``lesions.csv``) carries the digest of the same
settings and the SHA-256 of the same photograph: a folder left by a run without
``--continue`` under other settings, or of another photograph of that name, is
predicted again, never kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lesionsoup.core.fingerprint import digest

SETTINGS_FILE = "predict.json"
ROW_FILE = "lesions.json"
#: The keys of ``predict.json`` that decide the outputs.
OUTPUT_KEYS = (
    "model_sha256",
    "lesions",
    "precision",
    "size",
    "thresholds",
    "inference",
    "max_pixels",
    "overlay",
    "save_probabilities",
)
#: Inference settings that change no output beyond rounding.
LOOSE_INFERENCE_KEYS = ("batch_size",)


def output_settings(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a ``predict.json`` record that the outputs depend on."""
    kept = {key: record.get(key) for key in OUTPUT_KEYS}
    if isinstance(kept["inference"], dict):
        inference = kept["inference"].items()
        kept["inference"] = {k: v for k, v in inference if k not in LOOSE_INFERENCE_KEYS}
    return kept


def settings_digest(record: Mapping[str, Any]) -> str:
    """The digest each photograph's ``lesions.json`` carries."""
    return digest(output_settings(record))


def check_continuable(out: Path, record: Mapping[str, Any]) -> None:
    """A ``ValueError`` naming what differs, unless ``out`` is absent, empty, or was written
    under the same output settings as ``record``."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    path = out / SETTINGS_FILE
    if not path.is_file():
        raise ValueError(
            f"--continue: {out} holds files but no {SETTINGS_FILE}, so which model and options "
            "wrote them is unknown; predict into a new folder, or without --continue"
        )
    try:
        previous = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a JSON record of a predict run ({error})") from error
    if not isinstance(previous, dict):
        raise ValueError(f"{path}: not a JSON record of a predict run")
    old, new = output_settings(previous), output_settings(record)
    changed = [
        f"{key} was {old[key]!r}, now {new[key]!r}" for key in OUTPUT_KEYS if old[key] != new[key]
    ]
    if changed:
        raise ValueError(
            f"--continue: {out} was predicted with another model or other options "
            f"({'; '.join(changed)}); predict into a new folder, or without --continue"
        )


def row_bytes(row: Mapping[str, Any], settings: str, photograph: str) -> bytes:
    """A photograph's ``lesions.json``: its ``lesions.csv`` row, the settings digest and the
    photograph's SHA-256."""
    saved = {"settings": settings, "photograph": photograph, "row": dict(row)}
    return json.dumps(saved, indent=1).encode()


def completed_row(
    folder: Path, outputs: Iterable[str], settings: str, photograph: str
) -> dict[str, Any] | None:
    """The ``lesions.csv`` row of a photograph whose ``folder`` holds every one of ``outputs``
    (``ROW_FILE`` among them) written under ``settings`` from the photograph of SHA-256
    ``photograph``; else None."""
    if not all((folder / name).is_file() for name in outputs):
        return None
    try:
        saved = json.loads((folder / ROW_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(saved, dict) or saved.get("settings") != settings:
        return None
    if saved.get("photograph") != photograph:
        return None
    row = saved.get("row")
    return row if isinstance(row, dict) else None
