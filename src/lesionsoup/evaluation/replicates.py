"""The bootstrap replicates behind every interval a figure draws (``results/bootstrap.npz``).

One row per (model, test set, lesion): the headline metric on the whole test
set (``estimates``) and on each resample of its test images (``scores``). Every
model scored on one test set is resampled with the same draws, so any summary
of a figure's models (the mean over a method's seeds, over the combinations of a
style group, a method's mean gain over the single models) has its interval from
the same summary of each resample: ``mean_of`` then ``interval``. Resamples of
different test sets are independent, so averaging rows of several test sets
resample by resample is a stratified bootstrap. The lesion ``mean`` holds each
resample's mean over the lesions (``uncertainty.MEAN_OVER_LESIONS``).

Stored as a NumPy ``.npz`` without pickled objects: string arrays for the keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesionsoup.core.atomic import atomic_path
from lesionsoup.evaluation.statistics import finite_mean, percentile_interval

#: What identifies a row: (model, test_dataset, lesion).
Key = tuple[str, str, str]


@dataclass(frozen=True)
class Replicates:
    """``scores[i]`` are the resamples of ``keys[i]``; ``estimates[i]`` its whole-set value."""

    metric: str
    confidence: float
    keys: tuple[Key, ...]
    estimates: np.ndarray
    scores: np.ndarray
    _rows: dict[Key, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rows = len(self.keys)
        if self.estimates.shape != (rows,) or self.scores.ndim != 2 or len(self.scores) != rows:
            raise ValueError(
                f"{rows} replicate keys need ({rows},) estimates and ({rows}, resamples) scores, "
                f"not {self.estimates.shape} and {self.scores.shape}"
            )
        index = {
            (str(Path(model)), str(test), str(lesion)): row
            for row, (model, test, lesion) in enumerate(self.keys)
        }
        if len(index) != rows:
            raise ValueError("replicate keys repeat a (model, test set, lesion)")
        object.__setattr__(self, "_rows", index)

    @property
    def resamples(self) -> int:
        return int(self.scores.shape[1])

    def _row(self, model: str, test_dataset: str, lesion: str) -> int:
        key = (str(Path(model)), test_dataset, lesion)
        if key not in self._rows:
            raise KeyError(f"no bootstrap replicates of {self.metric} for {key}")
        return self._rows[key]

    def mean_of(self, models: Sequence[str], test_dataset: str, lesion: str) -> np.ndarray:
        """Each resample's mean over ``models`` (those with a value there) on one test set."""
        if not models:
            raise ValueError(f"a mean over no models on {test_dataset} ({lesion})")
        rows = [self._row(model, test_dataset, lesion) for model in models]
        return finite_mean(self.scores[rows])

    def estimate_of(self, models: Sequence[str], test_dataset: str, lesion: str) -> float:
        """The whole-set value's mean over ``models``, as ``mean_of`` averages each resample."""
        rows = [self._row(model, test_dataset, lesion) for model in models]
        return float(finite_mean(self.estimates[rows][:, None])[0])

    def interval(self, resampled: np.ndarray) -> tuple[float, float]:
        """The percentile interval, at the stored confidence, of a summary's resamples."""
        return percentile_interval(np.asarray(resampled, np.float64), self.confidence)

    def save(self, path: Path | str) -> None:
        keys = np.array(self.keys, dtype=str).reshape(len(self.keys), 3)
        with atomic_path(Path(path)) as tmp, tmp.open("wb") as handle:
            np.savez(
                handle,
                metric=np.array(self.metric),
                confidence=np.array(self.confidence),
                keys=keys,
                estimates=self.estimates,
                scores=self.scores,
            )

    @classmethod
    def load(cls, path: Path | str) -> Replicates:
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                return cls(
                    str(data["metric"]),
                    float(data["confidence"]),
                    tuple((str(m), str(t), str(lesion)) for m, t, lesion in data["keys"]),
                    data["estimates"].astype(np.float64),
                    data["scores"].astype(np.float64),
                )
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{path}: not a bootstrap replicates file ({error})") from None
