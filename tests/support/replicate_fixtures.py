"""Bootstrap replicates built by hand for a metrics table: the figures' tests read these."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.evaluation.uncertainty import MEAN_OVER_LESIONS


def replicates_for(
    metrics: pd.DataFrame,
    metric: str = "ap",
    confidence: float = 0.95,
    resamples: int = 200,
    seed: int = 0,
) -> Replicates:
    """Every (model, test set, lesion) of ``metrics`` at its value plus seeded noise (a part
    shared by the models of one test set, as their draws are, and a part of its own), and
    the lesion ``mean`` as each resample's mean over the lesions."""
    rows = metrics[metrics["metric"] == metric]
    rng = np.random.default_rng(seed)
    shared = {test: rng.normal(0, 0.02, resamples) for test in sorted(set(rows["test_dataset"]))}
    keys, estimates, scores = [], [], []
    for (model, test), own in rows.groupby(["model", "test_dataset"], sort=True):
        values = own["value"].to_numpy(np.float64)
        noise = shared[test] + rng.normal(0, 0.03, (len(own), resamples))
        lesions = values[:, None] + noise
        keys += [(model, test, lesion) for lesion in own["lesion"]]
        keys.append((model, test, MEAN_OVER_LESIONS))
        estimates += [*values, values.mean()]
        scores += [*lesions, lesions.mean(axis=0)]
    return Replicates(metric, confidence, tuple(keys), np.array(estimates), np.array(scores))
