"""The averaging study's analysis: gains over the ingredients' mean and over the ensemble,
checked against a direct NumPy computation of the paired bootstrap, and its figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from support.figure_layout import check_layout
from support.ingredients import make_config

from lesionsoup.analysis.averaging import ALL_TESTS, MergedModel, gain_table
from lesionsoup.core import paths
from lesionsoup.core.methods import INGREDIENT
from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.plan.averaging import merged_conditions
from lesionsoup.plan.evaluation import evaluated_models
from lesionsoup.plan.ingredients import grid_recipes
from lesionsoup.report import averaging as report

TESTS = ("DDR", "IDRID")
LESIONS = ("EX", "mean")
RESAMPLES = 400


def soup(name: str, references: tuple[str, ...], ensemble: str | None = None, **condition):
    defaults = {"rule": "uniform", "part": "full", "bn_policy": "average", "start": "shared"}
    return MergedModel(
        model=f"results/merged/C/{name}.safetensors", train_combo="C", soup=name,
        fraction=condition.pop("fraction", 1.0), references=references, ensemble=ensemble,
        **{**defaults, **condition},
    )  # fmt: skip


@pytest.fixture
def replicates() -> tuple[Replicates, dict[tuple[str, str, str], np.ndarray]]:
    """Replicates of 3 ingredients, 2 soups and an ensemble, with known draws."""
    rng = np.random.default_rng(0)
    models = [f"results/models/C/r/seed{k}/last.safetensors" for k in range(3)]
    models += ["results/merged/C/good.safetensors", "results/merged/C/bad.safetensors"]
    models += ["results/merged/C/ensemble-all.json"]
    shift = {"good": 0.1, "bad": -0.1}
    keys, estimates, scores, truth = [], [], [], {}
    for model in models:
        for test in TESTS:
            for lesion in LESIONS:
                base = 0.5 + next((v for k, v in shift.items() if f"/{k}." in model), 0.0)
                draws = base + rng.normal(0, 0.02, RESAMPLES)
                keys.append((model, test, lesion))
                estimates.append(base + rng.normal(0, 0.005))
                scores.append(draws)
                truth[model, test, lesion] = np.array([estimates[-1], *draws])
    table = Replicates("ap", 0.95, tuple(keys), np.array(estimates), np.array(scores))
    return table, truth


def test_gains_are_the_paired_bootstrap_of_the_difference(replicates) -> None:
    table, truth = replicates
    ingredients = tuple(f"results/models/C/r/seed{k}/last.safetensors" for k in range(3))
    models = [
        soup("good", ingredients, "results/merged/C/ensemble-all.json"),
        soup("bad", ingredients, rule="greedy"),
        soup("lonely", ()),  # nothing to compare with: no rows
    ]
    gains = gain_table(models, table, alpha=0.05)
    assert set(gains["soup"]) == {"good", "bad"}
    # by hand, straight from the draws: difference per test set, then the mean over them
    for name in ("good", "bad"):
        merged = f"results/merged/C/{name}.safetensors"
        for lesion in LESIONS:
            per_test = {
                test: truth[merged, test, lesion]
                - np.mean([truth[m, test, lesion] for m in ingredients], axis=0)
                for test in TESTS
            }
            for test, difference in [
                *per_test.items(),
                (ALL_TESTS, np.mean(list(per_test.values()), axis=0)),
            ]:
                row = gains[
                    (gains["soup"] == name)
                    & (gains["versus"] == "ingredients")
                    & (gains["test_dataset"] == test)
                    & (gains["lesion"] == lesion)
                ]
                assert len(row) == 1
                row = row.iloc[0]
                assert row["gain"] == pytest.approx(difference[0])
                low, high = np.percentile(difference[1:], [2.5, 97.5])
                assert (row["low"], row["high"]) == (pytest.approx(low), pytest.approx(high))
                extreme = np.abs(difference[1:] - difference[0]) >= abs(difference[0])
                assert row["p_value"] == pytest.approx((1 + extreme.sum()) / (1 + RESAMPLES))
    good = gains[(gains["soup"] == "good") & (gains["test_dataset"] == ALL_TESTS)]
    assert (good.loc[good["versus"] == "ingredients", "gain"] > 0.05).all()
    assert set(good["versus"]) == {"ingredients", "ensemble"}
    assert not (gains[gains["soup"] == "bad"]["versus"] == "ensemble").any()
    # Holm within a family (versus, lesion, pooled or not), by hand for one family
    family = gains[(gains["versus"] == "ingredients") & (gains["lesion"] == "EX")
                   & (gains["test_dataset"] != ALL_TESTS)]  # fmt: skip
    order = np.argsort(family["p_value"].to_numpy())
    m, running, expected = len(family), 0.0, np.empty(len(family))
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * family["p_value"].to_numpy()[index]))
        expected[index] = running
    assert family["p_holm"].to_numpy() == pytest.approx(expected)
    assert (gains["significant"] == (gains["p_holm"] < 0.05)).all()


def test_verdicts_say_better_worse_and_the_inference_cost(replicates) -> None:
    table, _ = replicates
    ingredients = tuple(f"results/models/C/r/seed{k}/last.safetensors" for k in range(3))
    gains = gain_table(
        [soup("good", ingredients, "results/merged/C/ensemble-all.json"), soup("bad", ingredients)],
        table,
    )
    by_gain = report.verdicts(gains).sort_values("gain")
    assert list(by_gain["soup"]) == ["bad", "good"]
    assert list(by_gain["verdict"]) == ["worse", "better"]
    assert list(by_gain["inference_passes"]) == [1, 1]
    assert by_gain["ensemble_passes"].iloc[1] == 3 and np.isnan(by_gain["ensemble_passes"].iloc[0])
    assert by_gain["verdict_vs_ensemble"].iloc[1] == "better"
    assert len(by_gain) == 2


def test_the_gain_figure_is_a_page_wide_grid_without_empty_panels(
    replicates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table, _ = replicates
    ingredients = tuple(f"results/models/C/r/seed{k}/last.safetensors" for k in range(3))
    models = [
        soup("good", ingredients, part="encoder"),
        soup("bad", ingredients, start="independent", bn_policy="recompute", fraction=0.5),
    ]
    shown: list[plt.Figure] = []
    monkeypatch.setattr(report, "save_figure", lambda fig, out, tight=True: shown.append(fig))
    report.plot_gains(gain_table(models, table), tmp_path / "averaging.png")
    (fig,) = shown
    check_layout(fig)  # the (shared, full) and (independent, encoder) panels are hidden
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in visible) == [
        "independent start, full", "shared start, encoder",
    ]  # fmt: skip
    top = max(ax.get_ylim()[1] for ax in visible)
    assert top < 0.5  # scaled to gains of about 0.1, not to a 0-1 score axis


def test_barriers_come_from_each_pair_s_curve(tmp_path: Path, monkeypatch) -> None:
    lam = np.linspace(0, 1, 5)
    curves = {
        "flat": pd.DataFrame({"bn_policy": "average", "lam": lam, "score": 0.5, "loss": 1.0}),
        "dip": pd.DataFrame(
            {"bn_policy": "average", "lam": lam, "score": [0.6, 0.5, 0.2, 0.5, 0.4],
             "loss": [1.0, 1.2, 2.0, 1.1, 1.0]}
        ),
    }  # fmt: skip
    table = report.barrier_table(curves, {"flat": "full", "dip": "encoder"}).set_index("pair")
    assert table.loc["flat", "score_barrier"] == 0.0
    assert table.loc["dip", "score_barrier"] == pytest.approx(0.5 - 0.2)  # chord 0.5 at lam 0.5
    assert table.loc["dip", "loss_barrier"] == pytest.approx(1.0)
    shown: list[plt.Figure] = []
    monkeypatch.setattr(report, "save_figure", lambda fig, out, tight=True: shown.append(fig))
    report.plot_barriers(table.reset_index(), tmp_path / "barriers.png")
    check_layout(shown[0])


def test_the_plan_records_each_merged_model_s_condition_and_references() -> None:
    config = make_config(
        soups={
            "uniform": {},
            "swa": {},
            "GoU": {"ingredients": ["grid", "fgg"]},
            "stock-encoder": {"rule": "model_stock", "part": "encoder", "ingredients": ["base"]},
        },
        ensembles={"all-base": {"ingredients": ["base"]}, "top2": {"top": 2}},
    )
    config["datasets"]["IDRID"] = {"split": {"train_fraction": 0.5}}
    records = {record["soup"]: record for record in merged_conditions(config)}
    assert set(records) == {"uniform", "swa-seed0", "GoU", "stock-encoder"}
    grid = [f"{paths.run('IDRID', recipe, 0)}/last.safetensors" for recipe in grid_recipes(config)]
    assert records["uniform"]["references"] == grid
    assert records["uniform"]["ensemble"] is None  # top2 keeps the top 2 only
    assert records["GoU"]["references"] == []  # FGG snapshot folders are not evaluated alone
    assert records["swa-seed0"]["references"] == [
        f"{paths.run('IDRID', 'base', 0)}/last.safetensors"
    ]
    stock = records["stock-encoder"]
    assert (stock["rule"], stock["part"], stock["start"], stock["fraction"]) == (
        "model_stock", "encoder", "shared", 0.5,
    )  # fmt: skip
    assert stock["ensemble"] == paths.ensemble("IDRID", "all-base")
    assert stock["references"] == [
        f"{paths.run('IDRID', 'base', seed)}/last.safetensors" for seed in (0, 1)
    ]
    # every reference is evaluated: as the single model it is, or as an ingredient
    evaluated = {model.path: model.method for model in evaluated_models(config).values()}
    for record in records.values():
        assert all(reference in evaluated for reference in record["references"])
    assert {evaluated[path] for path in grid} == {INGREDIENT}


def test_an_interval_that_misses_its_estimate_draws_no_negative_bar(
    replicates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table, _ = replicates
    ingredients = tuple(f"results/models/C/r/seed{k}/last.safetensors" for k in range(3))
    gains = gain_table([soup("good", ingredients)], table)
    gains["low"] = gains["gain"] + 0.01  # a percentile interval above its estimate (few images)
    shown: list[plt.Figure] = []
    monkeypatch.setattr(report, "save_figure", lambda fig, out, tight=True: shown.append(fig))
    report.plot_gains(gains, tmp_path / "averaging.png")  # matplotlib refuses negative bars
    check_layout(shown[0])
