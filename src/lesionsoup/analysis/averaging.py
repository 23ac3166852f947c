"""When does weight averaging work: each merged model against the mean of its own ingredients
and against the ensemble of the same models, with bootstrap intervals and Holm's adjustment.

The records come from the planner (``lesionsoup.plan.averaging.merged_conditions``): a merged
model, its condition (rule, part, BatchNorm policy, start, training-set fraction), its
references (the ingredients whose mean it is compared with) and its ensemble, where there is
one. The scores are the headline metric's bootstrap replicates (``bootstrap.npz``,
``evaluation.replicates.Replicates``): every model scored on one test set is resampled with
the same draws of its images, so ``merged - mean(references)`` is computed resample by
resample, a paired bootstrap of the difference. Each row is one test set, or ``all``: the
difference averaged over the test sets every model of the row was scored on, resample by
resample (a stratified bootstrap, test sets drawn independently).

p-values are the paired bootstrap's two-sided ``shifted_null_p_value``; Holm's adjustment runs
over each family of rows: one comparison (``ingredients`` or ``ensemble``), one lesion, and
either the per-test-set rows or the ``all`` rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.evaluation.statistics import finite_mean, holm, shifted_null_p_value

#: The test-set column of the rows averaged over every test set.
ALL_TESTS = "all"
#: What a merged model is compared with: the mean of its ingredients, or their ensemble.
VERSUS: tuple[str, ...] = ("ingredients", "ensemble")
CONDITION = ("rule", "part", "bn_policy", "start", "fraction")
GAIN_COLUMNS = (
    "model", "train_combo", "soup", *CONDITION, "references", "versus", "test_dataset",
    "lesion", "metric", "merged", "reference", "gain", "low", "high", "p_value", "p_holm",
    "significant",
)  # fmt: skip


@dataclass(frozen=True)
class MergedModel:
    """One merged model of the study, as ``plan.averaging.merged_conditions`` records it."""

    model: str
    train_combo: str
    soup: str
    rule: str
    part: str
    bn_policy: str
    start: str
    fraction: float
    references: tuple[str, ...]
    ensemble: str | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> MergedModel:
        return cls(**{**record, "references": tuple(record["references"])})

    def compared_with(self, versus: str) -> tuple[str, ...]:
        """The models whose mean this one is compared with (none: no such comparison)."""
        if versus == "ingredients":
            return self.references
        return (self.ensemble,) if self.ensemble else ()


def _scored(replicates: Replicates, models: Sequence[str], test: str, lesion: str) -> bool:
    try:
        for model in models:
            replicates.estimate_of([model], test, lesion)
    except KeyError:
        return False
    return True


def _difference(
    replicates: Replicates,
    merged: str,
    references: Sequence[str],
    tests: Sequence[str],
    lesion: str,
) -> tuple[float, float, float, np.ndarray]:
    """Merged, reference mean and the difference's resamples, averaged over ``tests``."""
    own = np.mean([replicates.estimate_of([merged], test, lesion) for test in tests])
    other = np.mean([replicates.estimate_of(list(references), test, lesion) for test in tests])
    resampled = [
        replicates.mean_of([merged], test, lesion)
        - replicates.mean_of(list(references), test, lesion)
        for test in tests
    ]
    return float(own), float(other), float(own - other), finite_mean(np.array(resampled))


def _rows(
    replicates: Replicates,
    model: MergedModel,
    versus: str,
    tests: Sequence[str],
    lesions: Sequence[str],
) -> list[dict[str, Any]]:
    references = model.compared_with(versus)
    if not references:
        return []
    rows = []
    for lesion in lesions:
        scored = [t for t in tests if _scored(replicates, [model.model, *references], t, lesion)]
        for test, group in [*((t, [t]) for t in scored), (ALL_TESTS, scored)]:
            if not group:
                continue
            merged, reference, gain, resampled = _difference(
                replicates, model.model, references, group, lesion
            )
            low, high = replicates.interval(resampled)
            rows.append(
                {
                    "model": model.model,
                    "train_combo": model.train_combo,
                    "soup": model.soup,
                    **{key: getattr(model, key) for key in CONDITION},
                    "references": len(references),
                    "versus": versus,
                    "test_dataset": test,
                    "lesion": lesion,
                    "metric": replicates.metric,
                    "merged": merged,
                    "reference": reference,
                    "gain": gain,
                    "low": low,
                    "high": high,
                    "p_value": shifted_null_p_value(resampled, gain),
                }  # fmt: skip
            )
    return rows


def gain_table(
    models: Sequence[MergedModel], replicates: Replicates, alpha: float = 0.05
) -> pd.DataFrame:
    """Every merged model against the mean of its ingredients and against its ensemble, per
    test set and over all of them, per lesion and for the mean over lesions (module docstring)."""
    tests = sorted({test for _, test, _ in replicates.keys})
    lesions = sorted({lesion for _, _, lesion in replicates.keys})
    rows = [
        row
        for model in models
        for versus in VERSUS
        for row in _rows(replicates, model, versus, tests, lesions)
    ]
    table = pd.DataFrame(rows, columns=list(GAIN_COLUMNS[:-2]))
    pooled = table["test_dataset"] == ALL_TESTS
    family = table.groupby([table["versus"], table["lesion"], pooled])["p_value"]
    table["p_holm"] = family.transform(lambda p_values: holm(list(p_values))).astype(float)
    table["significant"] = table["p_holm"] < alpha
    return table
