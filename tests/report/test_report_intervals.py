"""Bootstrap intervals in the cross-dataset heatmaps, the fine-vs-coarse figure and the PR
curves: checked against ``np.percentile`` of resample means computed here by hand."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import test_report_figures
from test_report_figures import fixture_replicates, histograms, write_evaluation

from lesionsoup.core.figures import save_figure
from lesionsoup.evaluation.evaluate import COLUMNS, read_metrics
from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.report import pr_curves
from lesionsoup.report.cross_dataset import (
    fine_coarse_table,
    heatmap_table,
    plot_fine_coarse,
    plot_heatmaps,
    report_cross_dataset,
)
from lesionsoup.report.intervals import confidence_text, interval_text, read_replicates
from lesionsoup.report.pr_curves import best_models, plot_pr_curves, report_pr_curves

metrics_csv = test_report_figures.metrics_csv  # the fixture: the figure tests' metrics.csv
#: ``fixture_replicates``' confidence: 0.9, so the 5th and 95th percentiles.
PERCENTILES = [5, 95]


def rows_of(replicates: Replicates, test: str, lesion: str, *models: str) -> np.ndarray:
    """The resample rows of ``models``, found by scanning the keys (not ``Replicates._row``)."""
    index = {key: row for row, key in enumerate(replicates.keys)}
    return replicates.scores[[index[model, test, lesion] for model in models]]


def test_heatmap_cell_interval_is_that_of_the_mean_over_its_models(metrics_csv: Path) -> None:
    replicates = fixture_replicates()
    table = heatmap_table(read_metrics(metrics_csv), replicates, "EX")
    assert list(table.columns) == [
        "IDRID", "IDRID low", "IDRID high", "RETLES", "RETLES low", "RETLES high",
    ]  # fmt: skip
    # IDRID-trained singles on the RETLES test set: s0_I and s1_I, resample by resample
    by_hand = rows_of(replicates, "RETLES", "EX", "s0_I", "s1_I").mean(axis=0)
    low, high = np.percentile(by_hand, PERCENTILES)
    assert table.loc["IDRID", "RETLES"] == pytest.approx(0.3)
    assert table.loc["IDRID", ["RETLES low", "RETLES high"]].tolist() == pytest.approx([low, high])
    # the mixed combination has one model: its own interval
    alone = np.percentile(rows_of(replicates, "IDRID", "EX", "s0_M")[0], PERCENTILES)
    assert table.loc["IDRID+RETLES", ["IDRID low", "IDRID high"]].tolist() == pytest.approx(alone)
    # the mean of two models' resamples is narrower than either model's own interval
    own = np.percentile(rows_of(replicates, "RETLES", "EX", "s0_I")[0], PERCENTILES)
    assert high - low < own[1] - own[0]


def test_uniform_heatmap_intervals_and_the_figure(tmp_path: Path, metrics_csv: Path) -> None:
    replicates = fixture_replicates()
    table = heatmap_table(read_metrics(metrics_csv), replicates, "HE", method="uniform")
    by_hand = np.percentile(rows_of(replicates, "IDRID", "HE", "u_I")[0], PERCENTILES)
    assert table.loc["IDRID", ["IDRID low", "IDRID high"]].tolist() == pytest.approx(by_hand)
    out = tmp_path / "heatmap.png"
    tables = plot_heatmaps(read_metrics(metrics_csv), replicates, out)
    assert out.stat().st_size > 10_000
    assert tables["HE"].loc["RETLES", "RETLES"] == pytest.approx(0.6)


def two_fine_combinations() -> tuple[pd.DataFrame, Replicates]:
    """Fine-only combinations A (models a0, a1) and B (b0), coarse-only C (c0), on test T."""
    rng = np.random.default_rng(3)
    values = {"a0": (0.5, 0.3), "a1": (0.7, 0.5), "b0": (0.2, 0.4), "c0": (0.6, 0.6)}
    combo = {"a0": "A", "a1": "A", "b0": "B", "c0": "C"}
    rows, keys, scores = [], [], []
    for model, lesions in values.items():
        resampled = np.array(lesions)[:, None] + rng.normal(0, 0.05, (2, 40))
        for lesion, value, own in zip(("EX", "HE"), lesions, resampled, strict=True):
            rows.append((model, combo[model], "single", "T", lesion, "ap", value))
            keys.append((model, "T", lesion))
            scores.append(own)
        keys.append((model, "T", "mean"))
        scores.append(resampled.mean(axis=0))
    metrics = pd.DataFrame(rows, columns=list(COLUMNS))
    estimates = np.array([score.mean() for score in scores])
    return metrics, Replicates("ap", 0.9, tuple(keys), estimates, np.array(scores))


def test_fine_coarse_interval_is_that_of_the_groups_mean_of_combination_means(
    tmp_path: Path,
) -> None:
    metrics, replicates = two_fine_combinations()
    summary, _ = fine_coarse_table(metrics, {"C"}, replicates)
    fine = summary.set_index("group").loc["fine only"]
    assert fine["combinations"] == 2
    assert fine["mean"] == pytest.approx(np.mean([0.5, 0.3]))  # A 0.5, B 0.3
    combo_a = rows_of(replicates, "T", "mean", "a0", "a1").mean(axis=0)
    combo_b = rows_of(replicates, "T", "mean", "b0")[0]
    by_hand = np.percentile((combo_a + combo_b) / 2, PERCENTILES)
    assert [fine["low"], fine["high"]] == pytest.approx(by_hand)
    coarse = summary.set_index("group").loc["coarse only"]
    alone = np.percentile(rows_of(replicates, "T", "mean", "c0")[0], PERCENTILES)
    assert [coarse["low"], coarse["high"]] == pytest.approx(alone)
    out = tmp_path / "fine_coarse.png"
    assert plot_fine_coarse(metrics, {"C"}, replicates, out).equals(summary)
    assert out.stat().st_size > 10_000


def test_cross_dataset_tables_carry_the_intervals(tmp_path: Path, metrics_csv: Path) -> None:
    replicates = tmp_path / "bootstrap.npz"
    fixture_replicates().save(replicates)
    heatmap, fine_coarse = tmp_path / "cross.png", tmp_path / "fc.png"
    report_cross_dataset(metrics_csv, replicates, heatmap, fine_coarse, coarse=["RETLES"])
    cells = pd.read_csv(heatmap.with_suffix(".csv"))
    assert {"IDRID low", "IDRID high", "RETLES low", "RETLES high"} <= set(cells.columns)
    groups = pd.read_csv(fine_coarse.with_suffix(".csv"))
    assert list(groups.columns) == [
        "metric", "test_dataset", "group", "mean", "std", "combinations", "low", "high",
    ]  # fmt: skip
    assert (groups["low"] <= groups["high"]).all()


def test_a_missing_replicate_row_is_named(tmp_path: Path, metrics_csv: Path) -> None:
    full = fixture_replicates()
    keep = [row for row, key in enumerate(full.keys) if key[0] != "s1_I"]
    partial = tmp_path / "bootstrap.npz"
    Replicates(
        "ap",
        full.confidence,
        tuple(full.keys[row] for row in keep),
        full.estimates[keep],
        full.scores[keep],
    ).save(partial)
    with pytest.raises(ValueError, match=r"bootstrap.npz: no bootstrap replicates .*s1_I"):
        report_cross_dataset(metrics_csv, partial, tmp_path / "a.png", tmp_path / "b.png")
    with pytest.raises(KeyError, match="s1_I"):
        heatmap_table(read_metrics(metrics_csv), Replicates.load(partial), "EX")


def test_replicates_of_another_metric_are_refused(tmp_path: Path, metrics_csv: Path) -> None:
    path = tmp_path / "bootstrap.npz"
    fixture_replicates("dice_pooled").save(path)
    with pytest.raises(ValueError, match=r"bootstrap.npz: bootstrap replicates of 'dice_pooled'"):
        read_replicates(path, "ap")
    with pytest.raises(ValueError, match="the figure shows 'ap'"):
        report_cross_dataset(metrics_csv, path, tmp_path / "a.png", tmp_path / "b.png")
    with pytest.raises(ValueError, match="the figure shows 'ap'"):
        plot_heatmaps(read_metrics(metrics_csv), Replicates.load(path), tmp_path / "a.png")


def pr_inputs(tmp_path: Path, metrics: pd.DataFrame, top: int) -> list[Path]:
    best = best_models(metrics, top=top)
    good = histograms([0, 0, 1, 4, 5], [5, 3, 1, 0, 0])
    return [
        write_evaluation(tmp_path / f"{model}_{test}.json", model, test, good, 1.0)
        for model, test in zip(best["model"], best["test_dataset"], strict=True)
    ]


def test_pr_legends_give_each_models_interval_on_the_lesion(
    tmp_path: Path, metrics_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legends: list[str] = []

    def recording(fig: plt.Figure, out: Path, tight: bool = True) -> None:
        legends.extend(t.get_text() for ax in fig.axes if ax.legend_ for t in ax.legend_.texts)
        save_figure(fig, out, tight)

    monkeypatch.setattr(pr_curves, "save_figure", recording)
    metrics, replicates = read_metrics(metrics_csv), fixture_replicates()
    out = tmp_path / "pr.png"
    drawn = plot_pr_curves(metrics, pr_inputs(tmp_path, metrics, 2), replicates, out, top=2)
    assert out.stat().st_size > 10_000
    ends = drawn.set_index(["model", "test_dataset", "lesion"])[["low", "high"]]
    by_hand = np.percentile(rows_of(replicates, "IDRID", "HE", "e_I")[0], PERCENTILES)
    assert ends.loc[("e_I", "IDRID", "HE")].tolist() == pytest.approx(by_hand)
    assert f"ensemble IDRID\nAP 0.65 {interval_text(*by_hand)}" in legends
    assert confidence_text(replicates) == "90%"


def test_pr_report_writes_the_intervals_and_refuses_a_mismatch(
    tmp_path: Path, metrics_csv: Path
) -> None:
    metrics = read_metrics(metrics_csv)
    evaluations = pr_inputs(tmp_path, metrics, 1)
    notes = tmp_path / "metrics.conventions.json"
    notes.write_text(json.dumps({"evaluations": [str(path) for path in evaluations]}))
    replicates, out = tmp_path / "bootstrap.npz", tmp_path / "pr.png"
    fixture_replicates().save(replicates)
    report_pr_curves(metrics_csv, notes, replicates, out, top=1)
    table = pd.read_csv(out.with_suffix(".csv"))
    assert list(table.columns) == [
        "model", "test_dataset", "lesion", "metric", "value", "low", "high",
    ]  # fmt: skip
    assert table["low"].notna().all() and (table["low"] <= table["high"]).all()
    fixture_replicates("dice_pooled").save(replicates)
    with pytest.raises(ValueError, match=r"bootstrap.npz: bootstrap replicates of 'dice_pooled'"):
        report_pr_curves(metrics_csv, notes, replicates, out, top=1)
    empty = Replicates("ap", 0.9, (), np.zeros(0), np.zeros((0, 3)))
    with pytest.raises(KeyError, match="u_I"):  # the best model on IDRID
        plot_pr_curves(metrics, evaluations, empty, out, top=1)


def test_interval_text() -> None:
    assert interval_text(0.4123, 0.6) == "[0.41, 0.60]"
    assert interval_text(float("nan"), 0.6) == ""
