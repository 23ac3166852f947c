"""The merge stage: a combination's ingredients into soups and ensembles.

Selection (greedy soups, the single best model, an ensemble's top k) scores
models on the combination's validation split, never its test split, with the
score the training loop selects on: pooled average precision, averaged over
the lesions (``lesionsoup.training.trainer.validate``). The ``recompute`` BatchNorm
policy re-estimates the statistics over a fixed, seeded set of un-augmented
training patches.

Cost: ``compute_seconds`` of a merged model or an ensemble is the training
time of every run that produced a candidate (each run counted once, with its
ancestors back to the shared initialisation, whose warm-up every model shares
and is left out) plus the seconds spent selecting and merging.
``training_seconds`` holds the first part alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import torch

from lesionsoup.core.checkpoint import StateDict, load_metadata, load_state_dict, save_checkpoint
from lesionsoup.core.combos import combo_name
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.inference.predictor import agreed_fields, spec_of, write_ensemble
from lesionsoup.merging.averaging import (
    HIERARCHICAL,
    RULES,
    BatchNormPolicy,
    BatchNormRecompute,
    Merger,
    MergeResult,
    SelectionStep,
    lineage_of,
)
from lesionsoup.plan.ingredients import SINGLE_BEST
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.sampling import PatchDataset, PatchSampler, ValidationImages
from lesionsoup.training.validation import validate

log = logging.getLogger(__name__)

SHARED_INIT_ROLE = "shared-initialisation"
SOUP_RULES = (SINGLE_BEST, *RULES)


# -- ingredients --


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


def _parent_of(metadata: Mapping[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint a model was trained from, unless that is the shared initialisation."""
    parent = metadata.get("parent")
    if parent is None:
        return None
    parent_metadata = load_metadata(Path(parent))
    if parent_metadata.get("role") == SHARED_INIT_ROLE:
        return None
    return Path(parent), parent_metadata


def base_hyperparameters(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters of the run that left the shared initialisation: the model's own
    run, or for a continuation (an SWA or FGG snapshot) the run it continued."""
    while (parent := _parent_of(metadata)) is not None:
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
        parent = _parent_of(metadata)
        if parent is not None:
            pending.append(parent)
    return sum(runs.values())


# -- held-out scoring and BatchNorm batches --


def _settings_of(metadata: Mapping[str, Any]) -> TrainSettings:
    """The training settings a checkpoint's sidecar records (defaults for what it lacks)."""
    known = {field.name for field in dataclasses.fields(TrainSettings)}
    recorded = metadata.get("hyperparameters", {})
    return TrainSettings.from_dict({k: v for k, v in recorded.items() if k in known})


class HeldOut:
    """Scores models on the validation split of a combination's caches."""

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


@dataclass(frozen=True)
class BatchNormSample:
    """The training patches the ``recompute`` BatchNorm policy runs through a merged model."""

    patches: int = 64
    batch_size: int = 8
    seed: int = 0


def batchnorm_recompute(
    caches: Mapping[str, Cache],
    spec: ModelSpec,
    settings: TrainSettings,
    sample: BatchNormSample,
    device: str | torch.device,
) -> BatchNormRecompute:
    """Fixed batches of training patches (drawn as in training, without augmentation)."""
    sampler = PatchSampler.for_training(dict(caches), settings, spec.lesion_classes, sample.seed)
    dataset = PatchDataset(sampler, build_augmentation("none"), length=sample.patches)
    images = torch.stack([dataset[index]["image"] for index in range(len(dataset))])
    return BatchNormRecompute(
        make_model=lambda: build_model(spec),
        batches=list(images.split(sample.batch_size)),
        device=device,
    )


# -- soups --


def single_best(merger: Merger) -> MergeResult:
    """The ingredient with the best held-out score, as a one-member soup."""
    start = perf_counter()
    scores = {path: merger.evaluate({path: 1.0}) for path in merger.ingredients}
    best = max(merger.ingredients, key=scores.__getitem__)
    selection_seconds = perf_counter() - start
    start = perf_counter()
    state = merger.build({best: 1.0})
    return MergeResult(
        state_dict=state,
        rule=SINGLE_BEST,
        bn_policy=merger.bn_policy,
        ingredients=[str(path) for path in merger.ingredients],
        weights={str(path): float(path == best) for path in merger.ingredients},
        selection_trace=[
            SelectionStep(SINGLE_BEST, str(path), score, path == best)
            for path, score in scores.items()
        ],
        merge_seconds=perf_counter() - start,
        selection_seconds=selection_seconds,
        compute_seconds=0.0,  # replaced by the stage's accounting
        score=scores[best],
        lineage=lineage_of(merger.metadata[best]),
    )


def merge_stage(
    output: Path,
    ingredients: Sequence[Path],
    caches: Mapping[str, Cache],
    rule: str,
    *,
    bn_policy: BatchNormPolicy | None = None,
    group_by: str = "lr",
    bn_sample: BatchNormSample = BatchNormSample(),
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Merge ``ingredients`` by ``rule`` and save the checkpoint; returns its metadata.

    ``rule`` is ``best`` (the single best ingredient) or one of ``merge.RULES``;
    the BatchNorm policy defaults to ``recompute`` for SWA, ``average`` otherwise.
    """
    if rule not in SOUP_RULES:
        raise ValueError(f"unknown merge rule {rule!r}; known: {SOUP_RULES}")
    paths = expand_ingredients(ingredients)
    policy = bn_policy or ("recompute" if rule == "swa" else "average")
    first = load_metadata(paths[0])
    spec = spec_of(paths[0], first)
    settings = _settings_of(first)
    held_out = HeldOut(caches, settings.bins, device)
    recompute = (
        batchnorm_recompute(caches, spec, settings, bn_sample, device)
        if policy == "recompute"
        else None
    )
    merger = Merger(paths, bn_policy=policy, scorer=held_out.scorer(spec), recompute=recompute)
    if rule == SINGLE_BEST:
        result = single_best(merger)
    elif rule in HIERARCHICAL:
        result = merger.hierarchical(rule, base_group_key(group_by))
    else:
        result = {"uniform": merger.uniform, "greedy": merger.greedy, "swa": merger.swa}[rule]()
    trained = training_seconds(paths)
    validation = held_out.scores(result.state_dict, spec)
    metadata = {
        **result.metadata(),
        "combination": combo_name(caches),
        "datasets": sorted(caches),
        "training_seconds": trained,
        "compute_seconds": trained + result.merge_seconds + result.selection_seconds,
        "validation": validation,
        **({"group_by": group_by} if rule in HIERARCHICAL else {}),
        **({"bn_recompute": dataclasses.asdict(bn_sample)} if policy == "recompute" else {}),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(output, result.state_dict, metadata)
    log.info("%s: %s soup, validation score %.4f", output, rule, validation["score"])
    return metadata


# -- ensembles --


def ensemble_stage(
    output: Path,
    ingredients: Sequence[Path],
    caches: Mapping[str, Cache],
    *,
    top: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Write an ensemble file of the candidates (all, or the ``top`` k by validation score);
    returns its metadata.

    Every candidate must record the same architecture and resolution, which the
    ensemble records too: whichever k are kept, it is predicted like one model.
    """
    candidates = expand_ingredients(ingredients)
    if top is not None and top < 1:
        raise ValueError(f"an ensemble needs top >= 1, not {top}")
    metadata = {path: load_metadata(path) for path in candidates}
    inference = agreed_fields(metadata)
    start = perf_counter()
    members, scores = candidates, {}
    if top is not None:
        first = candidates[0]
        spec = spec_of(first, metadata[first])  # every candidate's, as they agree on it
        held_out = HeldOut(caches, _settings_of(metadata[first]).bins, device)
        scores = {
            path: held_out.scores(load_state_dict(path), spec)["score"] for path in candidates
        }
        members = sorted(candidates, key=lambda path: -scores[path])[:top]
    selection_seconds = perf_counter() - start
    trained = training_seconds(candidates)
    info = {
        **inference,
        "rule": "ensemble",
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
