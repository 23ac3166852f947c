"""The uncertainty tables on simulated evaluations: intervals per lesion and for the mean,
comparisons against the combination's first single model and named pairs, Holm over each
lesion's rows, and the headline metric's replicates from the same resamples."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from support.statistics import simulated_pair
from support.uncertainty import IDS, scored_models

from lesionsoup.cli import main
from lesionsoup.core.metrics import POOLED_METRICS, LesionHistogram, average_precision
from lesionsoup.evaluation.evaluate import FORMAT, EvaluationError
from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.evaluation.statistics import (
    bootstrap_interval,
    holm,
    image_histograms_to_dict,
    paired_comparison,
)
from lesionsoup.evaluation.uncertainty import (
    BASELINE,
    MEAN_OVER_LESIONS,
    BootstrapSettings,
    Scored,
    bootstrap,
    comparison_table,
    draws_seed,
    interval_table,
    uncertainty,
)

SETTINGS = BootstrapSettings(resamples=200)


def test_intervals_hold_each_lesion_and_the_mean():
    models = scored_models()
    table = interval_table(bootstrap(models, "ap", SETTINGS))
    assert len(table) == 3 * 3 * len(POOLED_METRICS)  # models x (EX, HE, mean) x pooled metrics
    assert {"lesion_f1", "lesion_f1_small"} <= set(table["metric"])
    ece = table[table["metric"] == "ece"]
    assert len(ece) == 9 and ((ece["low"] <= ece["value"]) & (ece["value"] <= ece["high"])).all()
    ap = table[table["metric"] == "ap"].set_index(["model", "lesion"])
    greedy = ap.loc[("m/A/greedy", "EX")]
    assert greedy["value"] == pytest.approx(average_precision(models[2].lesions["EX"].pooled()))
    assert greedy["low"] <= greedy["value"] <= greedy["high"]
    mean = ap.loc[("m/A/greedy", MEAN_OVER_LESIONS), "value"]
    assert mean == pytest.approx((greedy["value"] + ap.loc[("m/A/greedy", "HE"), "value"]) / 2)


def test_one_pass_gives_each_metric_the_interval_of_its_own_bootstrap():
    """Every metric of every lesion (and of the mean) from one set of draws, as if each were
    bootstrapped alone with the test set's seed."""
    item = scored_models()[2]
    table = interval_table(bootstrap([item], "ap", SETTINGS)).set_index(["lesion", "metric"])
    seed = draws_seed(SETTINGS.seed, "T")
    groups = {**item.lesions, MEAN_OVER_LESIONS: list(item.lesions.values())}
    for lesion, images in groups.items():
        for name, metric in POOLED_METRICS.items():
            alone = bootstrap_interval(images, metric, SETTINGS.resamples, seed=seed)
            row = table.loc[(lesion, name)]
            assert (row["value"], row["low"], row["high"], row["resamples"]) == pytest.approx(
                (alone.estimate, alone.low, alone.high, alone.resamples), nan_ok=True
            )


def test_comparisons_take_the_first_single_model_and_holm_within_each_lesion():
    table = comparison_table(bootstrap(scored_models(), "ap", SETTINGS), "ap", SETTINGS)
    assert set(table["model"]) == {"m/A/base/seed1", "m/A/greedy"}
    assert set(table["baseline"]) == {"m/A/base/seed0"}  # first in path order
    assert set(table["comparison"]) == {BASELINE}
    for _, family in table.groupby("lesion"):
        assert list(family["p_holm"]) == pytest.approx(holm(list(family["p_value"])))
    greedy = table[table["model"] == "m/A/greedy"].set_index("lesion")
    assert (greedy["difference"] > 0).all() and greedy["significant"].all()
    he = table[(table["model"] == "m/A/base/seed1")].set_index("lesion").loc["HE"]
    assert he["difference"] == 0 and not he["significant"]  # the baseline's own HE scores


def other_combination(test: str) -> Scored:
    """A single model of combination B, on the images of ``scored_models``."""
    rng = np.random.default_rng(7)
    ex, he = simulated_pair(rng, 25, (2.0, 2.0))
    return Scored("m/B/base/seed0", "B", "single", test, IDS, {"EX": ex, "HE": he})


def test_named_pairs_join_each_lesions_holm_family_on_every_shared_test_set():
    models = [*scored_models("T"), other_combination("T"), *scored_models("U", seed=1)]
    named = {"cross": ("m/B/base/seed0", "m/A/greedy")}  # b: greedy of A, a: B's single
    table = comparison_table(bootstrap(models, "ap", SETTINGS), "ap", SETTINGS, named)
    cross = table[table["comparison"] == "cross"]
    assert list(cross["test_dataset"].unique()) == ["T"]  # B was not evaluated on U
    assert set(cross["baseline"]) == {"m/B/base/seed0"} and set(cross["model"]) == {"m/A/greedy"}
    assert set(cross["method"]) == {"greedy"} and set(cross["train_combo"]) == {"A"}
    seed = draws_seed(SETTINGS.seed, "T")
    for lesion in ("EX", "HE"):
        alone = paired_comparison(
            models[3].lesions[lesion], models[2].lesions[lesion], average_precision,
            SETTINGS.resamples, seed=seed,
        )  # fmt: skip
        row = cross.set_index("lesion").loc[lesion]
        assert (row["difference"], row["low"], row["high"], row["p_value"]) == pytest.approx(
            (alone.difference, alone.low, alone.high, alone.p_value)
        )
    for _, family in table.groupby("lesion"):
        assert (family["comparison"] == "cross").sum() == 1
        assert list(family["p_holm"]) == pytest.approx(holm(list(family["p_value"])))


def test_named_pairs_need_a_shared_test_set():
    models = [*scored_models("T"), other_combination("U")]
    with pytest.raises(EvaluationError, match="comparison cross: no test set"):
        comparison_table(
            bootstrap(models, "ap", SETTINGS),
            "ap",
            SETTINGS,
            {"cross": ("m/B/base/seed0", "m/A/greedy")},
        )


def test_comparisons_refuse_different_images_and_non_pooled_metrics():
    models = scored_models()
    moved = dataclasses.replace(models[2], image_ids=IDS[::-1])
    with pytest.raises(EvaluationError, match="different T images"):
        comparison_table(bootstrap([*models[:2], moved], "ap", SETTINGS), "ap", SETTINGS)
    with pytest.raises(ValueError, match="pooled metric"):
        bootstrap(models, "dice_image_mean", SETTINGS)


def test_test_sets_of_one_size_are_drawn_independently():
    draws = bootstrap([scored_models("T")[2], scored_models("U")[2]], "ap", SETTINGS)
    replicates = uncertainty([item.scored for item in draws], "ap", SETTINGS).replicates
    assert not np.array_equal(
        replicates.scores[replicates.keys.index(("m/A/greedy", "T", "EX"))],
        replicates.scores[replicates.keys.index(("m/A/greedy", "U", "EX"))],
    )


def write_evaluation(path, model: str, item: Scored) -> str:
    """A minimal evaluation file: what ``load_scored`` reads."""
    lesions = list(item.lesions)
    images = [
        [
            LesionHistogram(h.bins, h.positives[i].copy(), h.negatives[i].copy())
            for h in item.lesions.values()
        ]
        for i in range(len(item.image_ids))
    ]
    bins = images[0][0].bins
    entry = image_histograms_to_dict(item.image_ids, lesions, images, bins)
    pooled = {
        "bins": bins,
        "lesions": {
            name: sum((row[k] for row in images), LesionHistogram(bins)).to_dict()
            for k, name in enumerate(lesions)
        },
    }
    result = {"format": FORMAT, "model": model, "test_dataset": item.test_dataset}
    path.write_text(json.dumps({**result, "image_histograms": entry, "histograms": pooled}))
    return str(path)


def test_the_command_writes_replicates_whose_intervals_are_metrics_ci(tmp_path):
    """``bootstrap.npz`` holds the resamples behind ``metrics_ci.csv``, the same draws for
    every model of a test set: a model file evaluated under two names has equal rows."""
    models = scored_models()
    copy = dataclasses.replace(models[2], model="m/A/copy-of-greedy")
    files = [write_evaluation(tmp_path / f"e{i}.json", m.model, m) for i, m in enumerate(models)]
    files.append(write_evaluation(tmp_path / "copy.json", copy.model, copy))
    table = {m.model: [m.train_combo, m.method] for m in [*models, copy]}
    (tmp_path / "models.json").write_text(json.dumps(table))
    out = {name: tmp_path / name for name in ("ci.csv", "comparisons.csv", "bootstrap.npz")}
    pairs = json.dumps({"soup": {"a": "m/A/base/seed1", "b": "m/A/greedy"}})
    code = main(
        ["uncertainty", *files, "--models", str(tmp_path / "models.json"), "--resamples",
         "200", "--pairs", pairs, "--intervals", str(out["ci.csv"]),
         "--comparisons", str(out["comparisons.csv"]), "--replicates", str(out["bootstrap.npz"])]
    )  # fmt: skip
    assert code in (0, None)
    replicates = Replicates.load(out["bootstrap.npz"])
    assert (replicates.metric, replicates.confidence, replicates.resamples) == ("ap", 0.95, 200)
    intervals = pd.read_csv(out["ci.csv"])
    headline = intervals[intervals["metric"] == "ap"]
    assert len(replicates.keys) == len(headline) == 4 * 3  # models x (EX, HE, mean)
    for row in headline.itertuples():
        key = (row.model, row.test_dataset, row.lesion)
        scores = replicates.scores[replicates.keys.index(key)]
        assert replicates.interval(scores) == (row.low, row.high)
        assert replicates.estimate_of([row.model], row.test_dataset, row.lesion) == row.value
    for lesion in ("EX", "HE", MEAN_OVER_LESIONS):
        assert np.array_equal(
            replicates.mean_of(["m/A/greedy"], "T", lesion),
            replicates.mean_of(["m/A/copy-of-greedy"], "T", lesion),
        )
    comparisons = pd.read_csv(out["comparisons.csv"])
    assert list(comparisons.columns[:2]) == ["comparison", "train_combo"]
    assert (comparisons["comparison"] == "soup").sum() == 3
