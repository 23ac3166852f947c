"""The merge stage: a combination's candidates into one merged checkpoint.

Selection (greedy soups, the single best model) scores models on the
combination's validation split (``lesionsoup.merging.held_out``). The
``recompute`` BatchNorm policy re-estimates the statistics in one pass over
seeded, augmented training patches of the combination, one epoch-equivalent
by default (``lesionsoup.merging.batchnorm``).

Cost: ``compute_seconds`` of a merged model is the training time of every run
that produced a candidate (each run counted once, with its ancestors back to
the shared initialisation, whose warm-up every model shares and is left out)
plus the seconds spent selecting and merging. ``training_seconds`` holds the
first part alone.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lesionsoup.core.checkpoint import load_metadata, save_checkpoint
from lesionsoup.core.combos import combo_name
from lesionsoup.core.merge_rules import (
    DEFAULT_GROUP_BY,
    DEFAULT_KEEP,
    DEFAULT_PART,
    BatchNormPolicy,
    BatchNormSample,
    Part,
    check_part,
    merge_rule,
)
from lesionsoup.data.cache import Cache
from lesionsoup.inference.predictor import spec_of
from lesionsoup.merging.batchnorm import batchnorm_recompute
from lesionsoup.merging.candidates import base_group_key, expand_ingredients, training_seconds
from lesionsoup.merging.held_out import HeldOut, settings_of
from lesionsoup.merging.soups import merge

log = logging.getLogger(__name__)


def merge_stage(
    output: Path,
    ingredients: Sequence[Path],
    caches: Mapping[str, Cache],
    rule: str,
    *,
    bn_policy: BatchNormPolicy | None = None,
    group_by: str = DEFAULT_GROUP_BY,
    part: Part = DEFAULT_PART,
    keep: float = DEFAULT_KEEP,
    anchor: Path | None = None,
    bn_sample: BatchNormSample = BatchNormSample(),  # noqa: B008 (frozen)
    device: str | torch.device = "cpu",
    workers: int = 0,
) -> dict[str, Any]:
    """Merge ``ingredients`` by ``rule`` (``core.merge_rules.RULES``), save and return the
    checkpoint's metadata; ``bn_policy``, ``part``, ``keep``, ``anchor`` (its ``start``) as
    ``soups.merge``'s, ``workers`` load the recompute patches."""
    defaults = merge_rule(rule)  # an unknown rule or part is refused before any file is read
    check_part(rule, part)
    paths = expand_ingredients(ingredients)
    policy = bn_policy or defaults.bn_policy
    spec, settings = spec_of(paths[0], first := load_metadata(paths[0])), settings_of(first)
    held_out = HeldOut(caches, settings.bins, device)
    recompute = None
    if policy == "recompute":
        recompute = batchnorm_recompute(caches, spec, settings, bn_sample, device, workers)
    result = merge(
        paths,
        rule,
        bn_policy=policy,
        scorer=held_out.scorer(spec),
        recompute=recompute,
        group_key=base_group_key(group_by),
        part=part,
        keep=keep,
        start=anchor,
    )
    trained = training_seconds(paths)
    validation = held_out.scores(result.state_dict, spec)
    metadata = {
        **result.metadata(),
        "combination": combo_name(caches),
        "datasets": sorted(caches),
        "training_seconds": trained,
        "compute_seconds": trained + result.merge_seconds + result.selection_seconds,
        "validation": validation,
        **({"group_by": group_by} if defaults.grouped else {}),
        **(
            {"bn_recompute": {**dataclasses.asdict(bn_sample), "patch_count": recompute.patches}}
            if recompute is not None
            else {}
        ),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(output, result.state_dict, metadata)
    log.info(
        "%s: %s soup of the %s, validation score %.4f", output, rule, part, validation["score"]
    )
    return metadata
