"""The uncertainty tables on simulated evaluations: intervals per lesion and for the mean,
comparisons against the combination's first single model, Holm over the whole table."""

import dataclasses

import numpy as np
import pytest
from test_statistics import simulated_pair

from lesionsoup.core.metrics import average_precision
from lesionsoup.evaluation.evaluate import EvaluationError
from lesionsoup.evaluation.statistics import holm
from lesionsoup.evaluation.uncertainty import (
    MEAN_OVER_LESIONS,
    BootstrapSettings,
    Scored,
    comparison_table,
    interval_table,
)

SETTINGS = BootstrapSettings(resamples=200)
IDS = tuple(f"image{i}" for i in range(25))


def scored_models():
    rng = np.random.default_rng(0)
    weak_ex, strong_ex = simulated_pair(rng, 25, (1.0, 4.0))
    weak_he, strong_he = simulated_pair(rng, 25, (1.0, 4.0))
    same_ex, same_he = simulated_pair(rng, 25, (1.0, 1.0))[0], weak_he
    return [
        Scored("m/A/base/seed1", "A", "single", "T", IDS, {"EX": same_ex, "HE": same_he}),
        Scored("m/A/base/seed0", "A", "single", "T", IDS, {"EX": weak_ex, "HE": weak_he}),
        Scored("m/A/greedy", "A", "greedy", "T", IDS, {"EX": strong_ex, "HE": strong_he}),
    ]


def test_intervals_hold_each_lesion_and_the_mean():
    models = scored_models()
    table = interval_table(models, SETTINGS)
    assert len(table) == 3 * 3 * 4  # models x (EX, HE, mean) x pooled metrics
    ap = table[table["metric"] == "ap"].set_index(["model", "lesion"])
    greedy = ap.loc[("m/A/greedy", "EX")]
    assert greedy["value"] == pytest.approx(average_precision(models[2].lesions["EX"].pooled()))
    assert greedy["low"] <= greedy["value"] <= greedy["high"]
    mean = ap.loc[("m/A/greedy", MEAN_OVER_LESIONS), "value"]
    assert mean == pytest.approx((greedy["value"] + ap.loc[("m/A/greedy", "HE"), "value"]) / 2)


def test_comparisons_take_the_first_single_model_and_holm_within_each_lesion():
    table = comparison_table(scored_models(), "ap", SETTINGS)
    assert set(table["model"]) == {"m/A/base/seed1", "m/A/greedy"}
    assert set(table["baseline"]) == {"m/A/base/seed0"}  # first in path order
    for _, family in table.groupby("lesion"):
        assert list(family["p_holm"]) == pytest.approx(holm(list(family["p_value"])))
    greedy = table[table["model"] == "m/A/greedy"].set_index("lesion")
    assert (greedy["difference"] > 0).all() and greedy["significant"].all()
    he = table[(table["model"] == "m/A/base/seed1")].set_index("lesion").loc["HE"]
    assert he["difference"] == 0 and not he["significant"]  # the baseline's own HE scores


def test_comparisons_refuse_different_images_and_non_pooled_metrics():
    models = scored_models()
    moved = dataclasses.replace(models[2], image_ids=IDS[::-1])
    with pytest.raises(EvaluationError, match="different T images"):
        comparison_table([*models[:2], moved], "ap", SETTINGS)
    with pytest.raises(ValueError, match="pooled metric"):
        comparison_table(models, "dice_image_mean", SETTINGS)
