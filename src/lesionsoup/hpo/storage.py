"""Where a study's trials live (a journal file or an RDB URL), and the study itself.

A journal file is safe for several processes and for several nodes on a shared
file system, through its lock file, and a torn write never makes it unreadable
(``lesionsoup.hpo.journal``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from lesionsoup.hpo.journal import RepairingJournalBackend


class StorageError(ConnectionError):
    """The study storage cannot be opened; the message names it."""


def _redacted(location: str) -> str:
    if "://" not in location or "@" not in location:
        return location
    scheme, rest = location.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"


def open_storage(location: str) -> optuna.storages.BaseStorage:
    """An RDB storage for a URL (``scheme://...``), else a journal file; errors name it."""
    if "://" in location:
        try:
            return optuna.storages.RDBStorage(location)
        except Exception as error:
            raise StorageError(
                f"HPO storage {_redacted(location)} is unreachable: {type(error).__name__}: {error}"
            ) from error
    path = Path(location)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = RepairingJournalBackend(str(path))
    except OSError as error:
        raise StorageError(f"HPO storage {path}: cannot open the journal file: {error}") from error
    return optuna.storages.JournalStorage(backend)


def _pruner(spec: Mapping[str, Any], steps: int) -> optuna.pruners.BasePruner:
    if spec["kind"] == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec["startup_trials"], n_warmup_steps=spec["warmup_steps"]
        )
    if spec["kind"] == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec["min_resource"],
            max_resource=steps,
            reduction_factor=spec["reduction_factor"],
        )
    return optuna.pruners.NopPruner()


def load_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    definition: Mapping[str, Any],
    job_index: int,
) -> optuna.Study:
    """The study (created by whichever job comes first), with a TPE sampler seeded per job."""
    sampler = optuna.samplers.TPESampler(
        seed=definition["sampler"]["seed"] * 100_003 + job_index,
        n_startup_trials=definition["sampler"]["startup_trials"],
        constant_liar=True,
    )
    pruner = _pruner(definition["pruner"], definition["settings"]["steps"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.create_study(
            storage=storage,
            study_name=name,
            sampler=sampler,
            pruner=pruner,
            direction="maximize",
            load_if_exists=True,
        )
