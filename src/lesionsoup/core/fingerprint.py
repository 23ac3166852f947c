"""Fingerprints: what a resumable state was computed from, so that a stale one is never resumed.

A fingerprint is a JSON object of everything a result depends on (settings,
model spec, initialisation id, the fingerprints of its input caches), plus the
data-format version of the states this code writes. A state folder records
its fingerprint in ``fingerprint.json`` when it is created; a later start with
a different fingerprint discards the folder (one log line names what changed)
instead of resuming it. Finished results carry the digest, so that a finished
run is only skipped when it was made from the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lesionsoup.core.atomic import atomic_write_json

log = logging.getLogger(__name__)

#: Version of the resumable-state layout; raising it discards every older state.
STATE_FORMAT = 2
FILE = "fingerprint.json"

Fingerprint = dict[str, Any]


def fingerprint(**parts: Any) -> Fingerprint:
    """The fingerprint of ``parts`` (JSON values), stamped with the state format."""
    return json.loads(json.dumps({"state_format": STATE_FORMAT, **parts}, sort_keys=True))


def digest(value: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``value``."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the values that differ between two JSON objects."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix or "(all)"]
    changed: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in old or key not in new:
            changed.append(path)
        else:
            changed += changed_keys(old[key], new[key], path)
    return changed


def _recorded(directory: Path) -> Fingerprint | None:
    try:
        value = json.loads((directory / FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def discard_if_stale(directory: Path, current: Fingerprint) -> bool:
    """Delete ``directory`` unless it records ``current``; True when something was discarded.

    A folder without a readable fingerprint is stale too: it was written by
    older code or torn by a crash, and nothing proves what it was made from.
    """
    directory = Path(directory)
    if not directory.exists():
        return False
    recorded = _recorded(directory)
    if recorded == current:
        return False
    reason = "no fingerprint" if recorded is None else ", ".join(changed_keys(recorded, current))
    log.warning("%s: discarding stale state (changed: %s)", directory, reason)
    shutil.rmtree(directory)
    return True


def open_state_folder(directory: Path, current: Fingerprint) -> Path:
    """``directory``, emptied if stale, created if missing, recording ``current``."""
    directory = Path(directory)
    discard_if_stale(directory, current)
    directory.mkdir(parents=True, exist_ok=True)
    if _recorded(directory) is None:
        atomic_write_json(directory / FILE, current)
    return directory
