"""The ensemble stage: a combination's candidates into one prediction-space ensemble file.

An ensemble averages its members' probabilities at prediction time
(``lesionsoup.inference.predictor``), so unlike a soup it needs no shared
initialisation; its members must still record one architecture and training
resolution, which the file records too: whichever k are kept, it is predicted
like one model. Its cost counts the candidates' training as the merge stage
does (``lesionsoup.merging.candidates.training_seconds``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

import torch

from lesionsoup.core.checkpoint import load_metadata, load_state_dict
from lesionsoup.core.combos import combo_name
from lesionsoup.core.methods import ENSEMBLE
from lesionsoup.data.cache import Cache
from lesionsoup.inference.predictor import agreed_fields, spec_of, write_ensemble
from lesionsoup.merging.candidates import expand_ingredients, training_seconds
from lesionsoup.merging.held_out import HeldOut, settings_of

log = logging.getLogger(__name__)


def top_k(
    candidates: Sequence[Path],
    metadata: Mapping[Path, Mapping[str, Any]],
    caches: Mapping[str, Cache],
    top: int,
    device: str | torch.device,
) -> tuple[list[Path], dict[Path, float]]:
    """The ``top`` candidates by validation score, and every candidate's score."""
    first = candidates[0]
    spec = spec_of(first, metadata[first])  # every candidate's, as they agree on it
    held_out = HeldOut(caches, settings_of(metadata[first]).bins, device)
    scores = {path: held_out.scores(load_state_dict(path), spec)["score"] for path in candidates}
    return sorted(candidates, key=lambda path: -scores[path])[:top], scores


def ensemble_stage(
    output: Path,
    ingredients: Sequence[Path],
    caches: Mapping[str, Cache],
    *,
    top: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Write an ensemble file of the candidates (all, or the ``top`` k by validation score);
    returns its metadata."""
    candidates = expand_ingredients(ingredients)
    if top is not None and top < 1:
        raise ValueError(f"an ensemble needs top >= 1, not {top}")
    metadata = {path: load_metadata(path) for path in candidates}
    inference = agreed_fields(metadata)
    start = perf_counter()
    members, scores = (
        (candidates, {}) if top is None else top_k(candidates, metadata, caches, top, device)
    )
    selection_seconds = perf_counter() - start
    trained = training_seconds(candidates)
    info = {
        **inference,
        "rule": ENSEMBLE,
        "selection": "all" if top is None else f"top-{top}",
        "combination": combo_name(caches),
        "datasets": sorted(caches),
        "candidates": [str(path) for path in candidates],
        "validation_scores": {str(path): score for path, score in scores.items()},
        "training_seconds": trained,
        "selection_seconds": selection_seconds,
        "compute_seconds": trained + selection_seconds,
    }
    write_ensemble(output, members, info)
    log.info("%s: ensemble of %d of %d candidates", output, len(members), len(candidates))
    return info
