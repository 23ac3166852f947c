"""The uncertainty tests' scored models (tests/evaluation/test_uncertainty.py), shared with the
size-curve tests."""

from __future__ import annotations

import numpy as np

from lesionsoup.evaluation.uncertainty import Scored
from support.statistics import simulated_pair

IDS = tuple(f"image{i}" for i in range(25))


def scored_models(test: str = "T", seed: int = 0) -> list[Scored]:
    rng = np.random.default_rng(seed)
    weak_ex, strong_ex = simulated_pair(rng, 25, (1.0, 4.0))
    weak_he, strong_he = simulated_pair(rng, 25, (1.0, 4.0))
    same_ex, same_he = simulated_pair(rng, 25, (1.0, 1.0))[0], weak_he
    return [
        Scored("m/A/base/seed1", "A", "single", test, IDS, {"EX": same_ex, "HE": same_he}),
        Scored("m/A/base/seed0", "A", "single", test, IDS, {"EX": weak_ex, "HE": weak_he}),
        Scored("m/A/greedy", "A", "greedy", test, IDS, {"EX": strong_ex, "HE": strong_he}),
    ]
