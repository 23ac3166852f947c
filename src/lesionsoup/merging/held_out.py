"""Held-out scores of candidate models: the combination's validation split, never its test split.

The score is the one the training loop selects on: pooled average precision,
averaged over the lesions (``lesionsoup.training.validation.validate``), so a
soup is chosen by the criterion its ingredients were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

from lesionsoup.core.checkpoint import StateDict
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.training.sampling import ValidationImages
from lesionsoup.training.validation import validate


def settings_of(metadata: Mapping[str, Any]) -> TrainSettings:
    """The training settings a checkpoint's sidecar records (defaults for what it lacks)."""
    known = {field.name for field in dataclasses.fields(TrainSettings)}
    recorded = metadata.get("hyperparameters", {})
    return TrainSettings.from_dict({k: v for k, v in recorded.items() if k in known})


class HeldOut:
    """Scores models on the validation split of a combination's caches (one model built per
    architecture, reloaded for each candidate)."""

    def __init__(self, caches: Mapping[str, Cache], bins: int, device: str | torch.device) -> None:
        self.caches = dict(caches)
        self.bins = bins
        self.device = torch.device(device)
        self._models: dict[ModelSpec, torch.nn.Module] = {}

    def scores(self, state_dict: StateDict, spec: ModelSpec) -> dict[str, float]:
        """``validate``'s scores: ``score`` (mean pooled AP) and one AP per lesion."""
        if spec not in self._models:
            self._models[spec] = build_model(spec).to(self.device)
        model = self._models[spec]
        model.load_state_dict(state_dict)
        images = [
            ValidationImages(cache, "valid", spec.lesion_classes) for cache in self.caches.values()
        ]
        return validate(model, images, spec, self.bins)

    def scorer(self, spec: ModelSpec) -> Callable[[StateDict], float]:
        return lambda state_dict: self.scores(state_dict, spec)["score"]
