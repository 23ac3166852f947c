"""The candidates of a merge: which checkpoints they are, which run each left, what they cost.

Candidates arrive as checkpoint files, folders of snapshots or ingredient
lists (the HPO export's). A continuation (an SWA or FGG snapshot) records its
base run as parent, so grouping a hierarchical soup by a base setting and
counting each run's training time once both walk that chain back to the
shared initialisation, whose warm-up every candidate shares.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lesionsoup.core.checkpoint import SHARED_INITIALISATION, load_metadata


def _ingredient_list(path: Path) -> list[Path]:
    """The checkpoints of an ingredient list: a JSON list of paths, or an object whose
    ``ingredients`` is one (relative paths are relative to the working directory)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable ingredient list ({error})") from None
    items = data.get("ingredients") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"{path}: an ingredient list must be a list of checkpoint paths")
    return [Path(item) for item in items]


def expand_ingredients(items: Sequence[Path]) -> list[Path]:
    """Checkpoints from checkpoint paths, folders of checkpoints and ingredient lists."""
    paths: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(item.glob("*.safetensors"))
            if not found:
                raise ValueError(f"{item}: a folder of ingredients without any .safetensors file")
            paths += found
        elif item.suffix == ".json":
            paths += _ingredient_list(item)
        else:
            paths.append(item)
    if not paths:
        raise ValueError("no ingredients given")
    return paths


def parent_of(metadata: Mapping[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint a model was trained from, unless that is the shared initialisation."""
    parent = metadata.get("parent")
    if parent is None:
        return None
    parent_metadata = load_metadata(Path(parent))
    if parent_metadata.get("role") == SHARED_INITIALISATION:
        return None
    return Path(parent), parent_metadata


def base_hyperparameters(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters of the run that left the shared initialisation: the model's own
    run, or for a continuation (an SWA or FGG snapshot) the run it continued."""
    while (parent := parent_of(metadata)) is not None:
        metadata = parent[1]
    return dict(metadata.get("hyperparameters", {}))


def base_group_key(setting: str) -> Callable[[dict[str, Any]], Hashable]:
    """A hierarchical soup's group key: one base hyperparameter (``lr``: the learning rate)."""

    def group(metadata: dict[str, Any]) -> Hashable:
        hyperparameters = base_hyperparameters(metadata)
        if setting not in hyperparameters:
            raise ValueError(f"a base run's hyperparameters have no {setting!r} to group by")
        value = hyperparameters[setting]
        return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value

    group.__name__ = setting
    return group


def _run_key(metadata: Mapping[str, Any]) -> str:
    """What identifies the run a checkpoint came from (its snapshots share it)."""
    keys = ("parent", "init_id", "hyperparameters", "combination")
    return json.dumps({key: metadata.get(key) for key in keys}, sort_keys=True, default=str)


def training_seconds(paths: Sequence[Path]) -> float:
    """Training time of the runs behind ``paths``: each run once (its latest checkpoint's time),
    with the runs they continued; merged models count their ingredients."""
    runs: dict[str, float] = {}
    pending: list[tuple[Path, dict[str, Any]]] = [(Path(p), load_metadata(Path(p))) for p in paths]
    while pending:
        path, metadata = pending.pop()
        if "ingredients" in metadata:
            pending += [(Path(p), load_metadata(Path(p))) for p in metadata["ingredients"]]
            continue
        key = _run_key(metadata)
        seconds = float(metadata.get("wall_seconds", 0.0))
        runs[key] = max(runs.get(key, 0.0), seconds)
        parent = parent_of(metadata)
        if parent is not None:
            pending.append(parent)
    return sum(runs.values())
