"""The method figures' intervals and significance, cost vs gain, and seed noise against
method effects, checked against hand-computed resample summaries."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import same_color
from support.replicate_fixtures import replicates_for

from lesionsoup.core.figures import save_figure
from lesionsoup.evaluation.evaluate import COLUMNS
from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.report import methods
from lesionsoup.report.methods import (
    NO_SEEDS,
    NO_SPREAD,
    MethodOutputs,
    cost_gain_table,
    method_errors,
    plot_seed_noise,
    report_methods,
    seed_noise_table,
)
from lesionsoup.report.summary import gain_notes, seed_noise_notes, write_study_summary

#: (model, combination, method, test set) -> score (one lesion, so the mean over lesions).
Scores = Mapping[tuple[str, str, str, str], float]


def metrics_of(scores: Scores, metric: str = "ap") -> pd.DataFrame:
    rows = [(m, c, k, t, "EX", metric, v) for (m, c, k, t), v in scores.items()]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def replicates_of(
    estimates: Mapping[tuple[str, str], float],
    noise: Mapping[tuple[str, str], np.ndarray],
    metric: str = "ap",
) -> Replicates:
    """Rows of the mean over lesions: (model, test set) -> whole-set value, and the
    resamples' deviations from it."""
    keys = tuple((model, test, "mean") for model, test in estimates)
    values = np.array(list(estimates.values()), np.float64)
    scores = np.stack([values[i] + noise[key[:2]] for i, key in enumerate(keys)])
    return Replicates(metric, 0.95, keys, values, scores)


def comparisons_csv(path: Path, significant: Mapping[tuple[str, str], bool]) -> Path:
    """A ``comparisons.csv`` of the mean over lesions: (model, test set) -> significant."""
    rows = [
        ("baseline", "ap", "A", "greedy", model, test, "mean", 0.1, 0.05, 0.15, 0.01, 0.02, flag)
        for (model, test), flag in significant.items()
    ]
    columns = ["comparison", "metric", "train_combo", "method", "model", "test_dataset", "lesion"]
    columns += ["difference", "low", "high", "p_value", "p_holm", "significant"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


def test_each_bar_gets_the_percentile_interval_of_its_models_mean_on_each_resample() -> None:
    scores = {
        ("s0", "A", "single", "T"): 0.50,
        ("s1", "A", "single", "T"): 0.60,
        ("g", "A", "greedy", "T"): 0.70,
    }
    rng = np.random.default_rng(1)
    noise = {(m, t): rng.normal(0, 0.03, 500) for m, _, _, t in scores}
    replicates = replicates_of({(m, t): v for (m, _, _, t), v in scores.items()}, noise)
    comparisons = pd.DataFrame(
        {"model": ["g", "s1"], "test_dataset": ["T"] * 2, "lesion": ["mean"] * 2}
    ).assign(significant=True, comparison="baseline")
    table = method_errors(metrics_of(scores), replicates, comparisons).set_index("method")
    seeds = (0.50 + noise[("s0", "T")] + 0.60 + noise[("s1", "T")]) / 2
    low, high = np.percentile(seeds, [2.5, 97.5])
    assert table.loc["single", ["low", "high"]].tolist() == pytest.approx([low, high])
    assert table.loc["single", "below"] == pytest.approx(0.55 - low)
    assert table.loc["single", "above"] == pytest.approx(high - 0.55)
    greedy = np.percentile(0.70 + noise[("g", "T")], [2.5, 97.5])
    assert table.loc["greedy", ["low", "high"]].tolist() == pytest.approx(greedy)
    # a star only where the method has one model there: s1's comparison marks no bar
    assert table.loc["greedy", "significant"] and not table.loc["single", "significant"]
    # a configured pair (g against another model) is no mark on g's bar
    named = comparisons.assign(comparison="soup_vs_ensemble")
    assert not method_errors(metrics_of(scores), replicates, named)["significant"].any()


def test_cost_gain_is_the_mean_over_pairs_of_the_method_minus_the_single_models() -> None:
    scores = {
        ("s0", "A", "single", "T1"): 0.50,
        ("s1", "A", "single", "T1"): 0.70,
        ("s0", "A", "single", "T2"): 0.30,
        ("s1", "A", "single", "T2"): 0.40,
        ("u", "A", "uniform", "T1"): 0.65,
        ("u", "A", "uniform", "T2"): 0.45,
        ("sb", "B", "single", "T1"): 0.20,
        ("ub", "B", "uniform", "T1"): 0.40,
        ("un", "C", "uniform", "T1"): 0.99,  # C has no single model: no pair
    }
    rng = np.random.default_rng(2)
    noise = {(m, t): rng.normal(0, 0.02, 400) for m, _, _, t in scores}
    replicates = replicates_of({(m, t): v for (m, _, _, t), v in scores.items()}, noise)
    costs = pd.DataFrame(
        {
            "model": ["s0", "s1", "u", "ub"],
            "method": ["single", "single", "uniform", "uniform"],
            "compute_seconds": [10.0, 30.0, 60.0, 80.0],
            "source": ["measured", "measured", "measured", "sidecar"],
        }
    )
    table = cost_gain_table(metrics_of(scores), costs, replicates).set_index("method")
    assert list(table.index) == ["single", "uniform"]
    # (A, T1): 0.65 - 0.6; (A, T2): 0.45 - 0.35; (B, T1): 0.4 - 0.2
    assert table.loc["uniform", "gain"] == pytest.approx(np.mean([0.05, 0.10, 0.20]))
    assert table.loc["uniform", "pairs"] == 3
    resampled = np.mean(
        [
            noise[("u", "T1")] - (noise[("s0", "T1")] + noise[("s1", "T1")]) / 2 + 0.05,
            noise[("u", "T2")] - (noise[("s0", "T2")] + noise[("s1", "T2")]) / 2 + 0.10,
            noise[("ub", "T1")] - noise[("sb", "T1")] + 0.20,
        ],
        axis=0,
    )
    low, high = np.percentile(resampled, [2.5, 97.5])
    assert table.loc["uniform", ["low", "high"]].tolist() == pytest.approx([low, high])
    assert table.loc["single", ["gain", "low", "high"]].tolist() == [0, 0, 0]
    assert np.isnan(table.loc["single", "p_value"]) and not table.loc["single", "significant"]
    assert table.loc["uniform", "compute_seconds"] == pytest.approx(70.0)
    assert table.loc["uniform", "source"] == "measured/sidecar"  # ub's jobs left no record
    assert table.loc["single", "source"] == "measured"
    with pytest.raises(ValueError, match="no single models"):
        cost_gain_table(metrics_of({("u", "A", "uniform", "T1"): 0.6}), costs, replicates)


def test_a_planted_gain_is_significant_and_a_null_one_is_not() -> None:
    resamples = 999
    rng = np.random.default_rng(3)
    shared = rng.normal(0, 0.03, resamples)  # the same draws of images for every model
    scores = {
        ("s", "A", "single", "T"): 0.50,
        ("big", "A", "greedy", "T"): 0.58,
        ("null", "A", "uniform", "T"): 0.501,
    }
    noise = {(m, t): shared + rng.normal(0, 0.01, resamples) for m, _, _, t in scores}
    replicates = replicates_of({(m, t): v for (m, _, _, t), v in scores.items()}, noise)
    costs = pd.DataFrame(
        {"model": ["s"], "method": ["single"], "compute_seconds": [1.0], "source": ["measured"]}
    )
    table = cost_gain_table(metrics_of(scores), costs, replicates, alpha=0.05)
    table = table.set_index("method")
    p_values = {}
    for model, method, observed in (("big", "greedy", 0.08), ("null", "uniform", 0.001)):
        differences = observed + noise[(model, "T")] - noise[("s", "T")]
        extreme = np.sum(np.abs(differences - observed) >= observed)
        p_values[method] = (1 + extreme) / (1 + resamples)
        assert table.loc[method, "p_value"] == pytest.approx(p_values[method])
    assert p_values["greedy"] == pytest.approx(1 / 1000)  # 0.08 is 5.7 sd of 0.014 away
    assert p_values["uniform"] > 0.5
    assert table.loc["greedy", "p_holm"] == pytest.approx(2 / 1000)  # smallest of two: x 2
    assert table.loc["uniform", "p_holm"] == pytest.approx(p_values["uniform"])
    assert table.loc["greedy", "significant"] and not table.loc["uniform", "significant"]
    assert gain_notes(table.reset_index()).splitlines() == [  # in METHOD_ORDER
        f"- uniform: +0.001 (bootstrap interval {table.loc['uniform', 'low']:+.3f} to "
        f"{table.loc['uniform', 'high']:+.3f}), Holm-adjusted p = "
        f"{p_values['uniform']:.3g}: not significant",
        f"- greedy: +0.080 (bootstrap interval {table.loc['greedy', 'low']:+.3f} to "
        f"{table.loc['greedy', 'high']:+.3f}), Holm-adjusted p = 0.002: significant",
    ]


def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, plt.Figure]:
    """The figures ``methods`` saves, by file name, still open."""
    shown: dict[str, plt.Figure] = {}

    def keep(fig: plt.Figure, out: Path, tight: bool = True) -> None:
        shown[Path(out).name] = fig
        save_figure(fig, out, tight)

    monkeypatch.setattr(methods, "save_figure", keep)
    return shown


def test_seed_noise_flags_a_gain_beyond_two_seed_sds_and_not_one_within(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = {
        ("s0", "A", "single", "T"): 0.50,
        ("s1", "A", "single", "T"): 0.54,
        ("s2", "A", "single", "T"): 0.52,  # sd 0.02
        ("g", "A", "greedy", "T"): 0.60,  # gain 0.08 = 4 sd
        ("e", "A", "ensemble", "T"): 0.57,  # gain 0.05 = 2.5 sd
        ("u", "A", "uniform", "T"): 0.55,  # gain 0.03 = 1.5 sd
        ("sb", "B", "single", "T"): 0.40,  # one seed: no spread
        ("gb", "B", "greedy", "T"): 0.90,
    }
    metrics = metrics_of(scores)
    replicates = replicates_for(metrics, "ap")
    table = seed_noise_table(metrics, "ap", replicates).set_index("method")
    assert list(table.index) == ["ensemble", "greedy", "uniform"]
    assert table.loc["greedy", "seed_sd"] == pytest.approx(0.02)
    assert table["gain_over_seed_sd"].tolist() == pytest.approx([2.5, 4.0, 1.5])
    assert table["beyond_seed_noise"].tolist() == [True, True, False]
    resampled = dict(
        zip((model for model, _, _ in replicates.keys), replicates.scores, strict=True)
    )
    greedy = resampled["g"] - np.mean([resampled[m] for m in ("s0", "s1", "s2")], axis=0)
    assert table.loc["greedy", ["low", "high"]].tolist() == pytest.approx(
        np.percentile(greedy, [2.5, 97.5])
    )
    shown = recorded(monkeypatch)
    plot_seed_noise(table.reset_index(), tmp_path / "seed_noise.png", "ap")
    points = {
        round(float(line.get_ydata()[0]), 6): line.get_markerfacecolor()
        for line in shown["seed_noise.png"].axes[0].get_lines()
        if line.get_marker() == "o" and len(line.get_ydata())
    }
    assert set(points) == {2.5, 4.0, 1.5}
    # filled where beyond seed noise
    assert same_color(points[1.5], "white") and not same_color(points[4.0], "white")
    assert not same_color(points[2.5], "white")
    assert seed_noise_notes(table.reset_index()).splitlines() == [
        "- ensemble: yes, gain beyond 2 sd of the seeds in 1 of 1 (combination, test set) pairs",
        "- uniform: no, gain beyond 2 sd of the seeds in 0 of 1 (combination, test set) pairs",
        "- greedy: yes, gain beyond 2 sd of the seeds in 1 of 1 (combination, test set) pairs",
    ]
    two_combos = pd.concat([table.reset_index(), table.reset_index().assign(train_combo="C")])
    two_combos.loc[two_combos["train_combo"] == "C", "beyond_seed_noise"] = False
    assert "- greedy: partly, gain beyond 2 sd of the seeds in 1 of 2 (combination" in (
        seed_noise_notes(two_combos)
    )


def test_the_report_without_seeds_says_so_and_writes_every_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = {
        ("s", "A", "single", "T"): 0.5,
        ("g", "A", "greedy", "T"): 0.6,
        ("u", "A", "uniform", "T"): 0.55,
    }
    metrics = metrics_of(scores)
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    replicates_for(metrics, "ap").save(tmp_path / "bootstrap.npz")
    costs = pd.DataFrame({"model": ["s", "g", "u"], "method": ["single", "greedy", "uniform"]})
    costs.assign(train_combo="A", compute_seconds=[1.0, 3.0, 3.0], source="sidecar").to_csv(
        tmp_path / "costs.csv", index=False
    )
    comparisons = comparisons_csv(tmp_path / "comparisons.csv", {("g", "T"): True})
    out = tmp_path / "report"
    outputs = MethodOutputs(
        comparison=out / "methods.png",
        cost_gain=out / "cost_gain.png",
        significance=out / "significance.csv",
        seed_noise=tmp_path / "elsewhere" / "noise.csv",
        seed_noise_figure=out / "seed_noise.png",
    )
    shown = recorded(monkeypatch)
    inputs = (tmp_path / "metrics.csv", tmp_path / "costs.csv", tmp_path / "bootstrap.npz")
    report_methods(*inputs, comparisons, outputs, "ap")
    assert NO_SEEDS in [text.get_text() for text in shown["seed_noise.png"].axes[0].texts]
    noise = pd.read_csv(outputs.seed_noise)
    assert noise.empty and {"seed_sd", "gain", "low", "high", "beyond_seed_noise"} <= set(noise)
    assert not (out / "seed_noise.csv").exists()
    bars = pd.read_csv(out / "methods.csv").set_index("method")
    assert bars.loc["greedy", "significant"] and not bars.loc["uniform", "significant"]
    assert {"low", "high"} <= set(bars)
    gains = pd.read_csv(out / "cost_gain.csv")
    expected = ["metric", "method", "gain", "low", "high", "p_value", "p_holm", "significant"]
    assert list(gains.columns) == [*expected, "pairs", "compute_seconds", "source"]
    assert "[sidecar]" in shown["cost_gain.png"].axes[0].get_xlabel()
    assert "*" in [text.get_text() for text in shown["methods.png"].axes[0].texts]
    for name in ("methods.png", "cost_gain.png", "seed_noise.png"):
        assert (out / name).stat().st_size > 10_000
    with pytest.raises(
        ValueError,
        match=r"bootstrap.npz: bootstrap replicates of 'ap', but the figure shows 'dice_pooled'",
    ):
        report_methods(*inputs, comparisons, outputs, "dice_pooled")
    replicates_for(metrics[metrics["model"] != "u"], "ap").save(tmp_path / "bootstrap.npz")
    with pytest.raises(ValueError, match=r"bootstrap.npz: no bootstrap replicates of ap for"):
        report_methods(*inputs, comparisons, outputs, "ap")


def test_the_summary_says_which_gains_are_significant_and_beyond_seed_noise(
    tmp_path: Path,
) -> None:
    gains = pd.DataFrame(
        {
            "metric": "ap",
            "method": ["single", "greedy"],
            "gain": [0.0, 0.1],
            "low": [0.0, 0.05],
            "high": [0.0, 0.15],
            "p_holm": [np.nan, 0.01],
            "significant": [False, True],
        }
    )
    noise = pd.DataFrame(columns=["metric", "method", "gain", "seed_sd", "beyond_seed_noise"])
    tables = {}
    for name in ("heatmap", "fine_coarse", "methods", "significance", "styles"):
        tables[name] = tmp_path / f"{name}.csv"
        pd.DataFrame({"table": [name]}).to_csv(tables[name], index=False)
    for name, table in (("cost_gain", gains), ("seed_noise", noise)):
        tables[name] = tmp_path / f"{name}.csv"
        table.to_csv(tables[name], index=False)
    text = write_study_summary(tables, tmp_path / "summary.md")
    assert (
        "- greedy: +0.100 (bootstrap interval +0.050 to +0.150), "
        "Holm-adjusted p = 0.01: significant" in text
    )
    assert "No recipe has two or more seeds: seed noise cannot be separated" in text
    assert "| greedy | 0.100 | 0.050 | 0.150 | 0.010 | True |" in text


def test_seeds_that_score_the_same_give_no_spread_to_scale_by(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = {
        ("s0", "A", "single", "T"): 0.5,
        ("s1", "A", "single", "T"): 0.5,
        ("g", "A", "greedy", "T"): 0.6,
    }
    table = seed_noise_table(metrics_of(scores), "ap")
    assert table["beyond_seed_noise"].tolist() == [True]  # any gain exceeds no spread
    shown = recorded(monkeypatch)
    plot_seed_noise(table, tmp_path / "seed_noise.png", "ap")
    assert [text.get_text() for text in shown["seed_noise.png"].axes[0].texts] == [NO_SPREAD]
