"""One evaluation job per model: the model is loaded once and run over every test set.

A cluster job pays a queue wait, a Python and torch start-up and a model load;
evaluating a model on all its test sets in one job pays them once per model
instead of once per (model, test set). The job still writes one result file
per test set (``lesionsoup.evaluation.evaluate``), which is what ``aggregate``
reads.

Snakemake reruns the whole job, and deletes all its outputs first, when any
test set's cache changes or a test set is added. So that an unchanged
(model, test set) result is not recomputed then, each result is also kept in
a store folder under the digest of its fingerprint: the model file's bytes
(an ensemble's and its members'), the cache's fingerprint (its settings and the
digest of its arrays and index, ``data.cache``), the manifest's bytes
at native resolution, the split, the inference settings, the bins, the
resolution, the labels (``evaluation.labels``) and the result format. A result
is reused only when all of these are the same; anything else is evaluated
again. Stale store entries are never read again and may be deleted at any time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.fingerprint import Fingerprint, digest, fingerprint
from lesionsoup.core.metrics import DEFAULT_BINS
from lesionsoup.data.cache import Cache
from lesionsoup.evaluation.evaluate import (
    FORMAT,
    EvaluationError,
    Labels,
    Resolution,
    evaluate,
    load_evaluation,
    save_evaluation,
)
from lesionsoup.inference.infer import DEFAULT_SETTINGS, InferenceSettings
from lesionsoup.inference.predictor import Predictor, load_predictor, read_ensemble

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationTarget:
    """One test set of a model: its cache, its result file, its manifest (native resolution)."""

    cache: Path
    output: Path
    manifest: Path | None = None


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    hasher = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while block := stream.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def model_digest(path: Path) -> str:
    """SHA-256 of a model file; an ensemble's covers its members' weights too."""
    path = Path(path)
    if path.suffix != ".json":
        return file_digest(path)
    members, _, _ = read_ensemble(path)
    return digest({"ensemble": file_digest(path), "members": [file_digest(m) for m in members]})


def pair_fingerprint(
    model: Path,
    model_sha256: str,
    test: EvaluationTarget,
    split: str,
    settings: InferenceSettings,
    bins: int,
    resolution: Resolution,
    labels: Labels = "multilabel",
) -> Fingerprint:
    """Everything the result of ``model`` on ``test`` depends on (see the module docstring)."""
    native = resolution == "native" and test.manifest is not None
    return fingerprint(
        kind="evaluation",
        format=FORMAT,
        model=str(model),
        model_sha256=model_sha256,
        cache=str(test.cache),
        cache_fingerprint=Cache(test.cache).fingerprint,
        manifest_sha256=file_digest(test.manifest) if native else None,
        split=split,
        inference=settings.as_dict(),
        bins=bins,
        resolution=resolution,
        labels=labels,
    )


def _stored(store: Path | None, key: Fingerprint) -> dict[str, Any] | None:
    """The stored result of ``key``, or None; an unreadable or mismatched entry is ignored."""
    if store is None:
        return None
    path = store / f"{digest(key)}.json"
    if not path.is_file():
        return None
    try:
        result = load_evaluation(path)
    except EvaluationError as error:
        log.warning("%s: ignoring an unreadable stored result (%s)", path, error)
        return None
    return result if result.get("fingerprint") == key else None


def _store(store: Path | None, key: Fingerprint, result: dict[str, Any]) -> None:
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(store / f"{digest(key)}.json", json.dumps(result).encode())


def evaluate_model(
    model: Path,
    tests: Sequence[EvaluationTarget],
    store: Path | None = None,
    split: str = "test",
    settings: InferenceSettings = DEFAULT_SETTINGS,
    bins: int = DEFAULT_BINS,
    resolution: Resolution = "cache",
    device: str | torch.device = "cpu",
    progress: bool = False,
    labels: Labels = "multilabel",
) -> list[bool]:
    """Evaluate ``model`` on every test set, writing each ``output``; True where one was reused.

    The model is loaded once, and only if some test set is not in ``store``.
    """
    model, store = Path(model), None if store is None else Path(store)
    if len({test.output for test in tests}) != len(tests):
        raise ValueError(f"{model}: two test sets write the same result file")
    model_sha256 = model_digest(model)
    predictor: Predictor | None = None
    reused = []
    for test in tests:
        key = pair_fingerprint(model, model_sha256, test, split, settings, bins, resolution, labels)
        result = _stored(store, key)
        reused.append(result is not None)
        if result is None:
            predictor = predictor or load_predictor(model, device)
            result = evaluate(
                predictor, test.cache, split, settings, bins, resolution, test.manifest,
                progress=progress, labels=labels,
            )  # fmt: skip
            result["fingerprint"] = key
            _store(store, key, result)
        save_evaluation(result, test.output)
    return reused
