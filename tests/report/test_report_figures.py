"""Report figures and tables from a small, hand-written metrics table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from support.replicate_fixtures import replicates_for
from test_report_methods import comparisons_csv

from lesionsoup.core.figures import save_figure
from lesionsoup.core.metrics import LesionHistogram, SegmentationHistograms
from lesionsoup.evaluation.costs import cost_table
from lesionsoup.evaluation.evaluate import COLUMNS, FORMAT, read_metrics
from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.report import cross_dataset, methods, pr_curves
from lesionsoup.report.cross_dataset import (
    fine_coarse_table,
    heatmap_matrix,
    plot_fine_coarse,
    plot_heatmaps,
    report_cross_dataset,
    style_group,
)
from lesionsoup.report.methods import (
    MethodOutputs,
    method_table,
    report_methods,
    seed_noise_table,
)
from lesionsoup.report.pr_curves import best_models, plot_pr_curves
from lesionsoup.report.summary import SECTIONS, write_study_summary, write_summary
from lesionsoup.report.tables import markdown_table, model_scores

# (model, combo, method, test set) -> AP of EX and HE. The two single seeds of each
# combination differ by 0.2, so their mean sits halfway.
SCORES = {
    ("s0_I", "IDRID", "single", "IDRID"): (0.6, 0.4),
    ("s1_I", "IDRID", "single", "IDRID"): (0.8, 0.6),
    ("s0_I", "IDRID", "single", "RETLES"): (0.2, 0.3),
    ("s1_I", "IDRID", "single", "RETLES"): (0.4, 0.5),
    ("s0_R", "RETLES", "single", "IDRID"): (0.1, 0.2),
    ("s1_R", "RETLES", "single", "IDRID"): (0.3, 0.4),
    ("s0_R", "RETLES", "single", "RETLES"): (0.7, 0.5),
    ("s1_R", "RETLES", "single", "RETLES"): (0.9, 0.7),
    ("s0_M", "IDRID+RETLES", "single", "IDRID"): (0.5, 0.5),
    ("s0_M", "IDRID+RETLES", "single", "RETLES"): (0.6, 0.6),
    ("u_I", "IDRID", "uniform", "IDRID"): (0.9, 0.7),
    ("u_I", "IDRID", "uniform", "RETLES"): (0.3, 0.3),
    ("e_I", "IDRID", "ensemble", "IDRID"): (0.85, 0.65),
    ("e_I", "IDRID", "ensemble", "RETLES"): (0.45, 0.55),
}


def metrics_table() -> pd.DataFrame:
    rows = []
    for (model, combo, method, test), values in SCORES.items():
        for lesion, value in zip(("EX", "HE"), values, strict=True):
            rows.append((model, combo, method, test, lesion, "ap", value))
            rows.append((model, combo, method, test, lesion, "dice_pooled", value / 2))
    return pd.DataFrame(rows, columns=list(COLUMNS))


@pytest.fixture
def metrics_csv(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.csv"
    metrics_table().to_csv(path, index=False)
    return path


# --- Bootstrap replicates of the fixture metrics: the intervals of the cross-dataset and
# PR-curve figures (their own tests: tests/report/test_report_intervals.py).
RESAMPLES = 50


def fixture_replicates(metric: str = "ap", confidence: float = 0.9) -> Replicates:
    """Replicates of every (model, test set, lesion) of ``metrics_table``, and their mean."""
    return replicates_for(metrics_table(), metric, confidence, RESAMPLES, seed=7)


@pytest.fixture
def replicates_npz(tmp_path: Path) -> Path:
    path = tmp_path / "bootstrap.npz"
    fixture_replicates().save(path)
    return path


# --- end of the replicates block


def test_read_metrics_checks_columns_and_values(tmp_path: Path, metrics_csv: Path) -> None:
    table = read_metrics(metrics_csv)
    assert len(table) == 4 * len(SCORES)
    broken = tmp_path / "broken.csv"
    metrics_table().drop(columns="lesion").to_csv(broken, index=False)
    with pytest.raises(ValueError, match=r"broken.csv: metrics table lacks columns \['lesion'\]"):
        read_metrics(broken)
    metrics_table().assign(value="high").to_csv(broken, index=False)
    with pytest.raises(ValueError, match="broken.csv: non-numeric value 'high'"):
        read_metrics(broken)


def test_model_score_is_the_mean_over_lesions(metrics_csv: Path) -> None:
    scores = model_scores(read_metrics(metrics_csv), "ap").set_index(["model", "test_dataset"])
    for (model, _, _, test), values in SCORES.items():
        assert scores.loc[(model, test), "score"] == pytest.approx(np.mean(values))
    with pytest.raises(ValueError, match="metric 'nope' not in the metrics table"):
        model_scores(read_metrics(metrics_csv), "nope")


def test_heatmap_matrix_averages_the_single_models(metrics_csv: Path) -> None:
    matrix = heatmap_matrix(read_metrics(metrics_csv), "EX", "ap")
    assert list(matrix.index) == ["IDRID", "IDRID+RETLES", "RETLES"]
    assert list(matrix.columns) == ["IDRID", "RETLES"]
    expected = [[0.7, 0.3], [0.5, 0.6], [0.2, 0.8]]
    np.testing.assert_allclose(matrix.to_numpy(), expected)
    dice = heatmap_matrix(read_metrics(metrics_csv), "HE", "dice_pooled", "uniform")
    np.testing.assert_allclose(dice.to_numpy(), [[0.35, 0.15]])


def test_heatmap_figure_and_its_matrices(tmp_path: Path, metrics_csv: Path) -> None:
    out = tmp_path / "fig" / "heatmap.png"
    matrices = plot_heatmaps(read_metrics(metrics_csv), fixture_replicates(), out)
    assert out.stat().st_size > 10_000
    assert set(matrices) == {"EX", "HE"}
    assert matrices["HE"].loc["RETLES", "RETLES"] == pytest.approx(0.6)
    assert not list(out.parent.glob(".*"))  # no temporary file left


def test_style_groups() -> None:
    assert style_group("DDR+IDRID", {"RETLES"}) == "fine only"
    assert style_group("RETLES", {"RETLES"}) == "coarse only"
    assert style_group("IDRID+RETLES", {"RETLES"}) == "mixed"


def test_fine_coarse_table(tmp_path: Path, metrics_csv: Path) -> None:
    summary, per_combo = fine_coarse_table(
        read_metrics(metrics_csv), {"RETLES"}, fixture_replicates()
    )
    table = summary.set_index(["test_dataset", "group"])
    # IDRID combination on IDRID: seeds score 0.5 and 0.7 -> 0.6
    assert table.loc[("IDRID", "fine only"), "mean"] == pytest.approx(0.6)
    assert table.loc[("RETLES", "coarse only"), "mean"] == pytest.approx(0.7)
    assert table.loc[("RETLES", "mixed"), "mean"] == pytest.approx(0.6)
    assert set(table["combinations"]) == {1}
    assert len(per_combo) == 6
    out = tmp_path / "fine_coarse.png"
    plotted = plot_fine_coarse(read_metrics(metrics_csv), {"RETLES"}, fixture_replicates(), out)
    assert out.exists() and plotted.equals(summary)


def test_method_table_has_spread_over_seeds(metrics_csv: Path) -> None:
    table = method_table(read_metrics(metrics_csv)).set_index(
        ["train_combo", "test_dataset", "method"]
    )
    single = table.loc[("IDRID", "IDRID", "single")]
    assert single["models"] == 2
    assert single["mean"] == pytest.approx(0.6)
    assert single["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert single["best"] == pytest.approx(0.7)
    assert np.isnan(table.loc[("IDRID", "IDRID", "uniform"), "std"])


def histograms(positives: list[int], negatives: list[int]) -> SegmentationHistograms:
    result = SegmentationHistograms(["EX", "HE"], bins=4)
    for lesion in ("EX", "HE"):
        result.histograms[result.lesions[0 if lesion == "EX" else 1]] = LesionHistogram(
            4, np.array(positives), np.array(negatives)
        )
    return result


def write_evaluation(
    path: Path, model: str, test: str, hist: SegmentationHistograms, seconds: float
) -> Path:
    result = {
        "format": FORMAT,
        "model": model,
        "test_dataset": test,
        "seconds": seconds,
        "histograms": hist.to_dict(),
        "per_image": [],
    }
    path.write_text(json.dumps(result))
    return path


def test_best_models_and_pr_curves(tmp_path: Path, metrics_csv: Path) -> None:
    metrics = read_metrics(metrics_csv)
    best = best_models(metrics, top=2)
    on_idrid = best[best["test_dataset"] == "IDRID"]
    assert list(on_idrid["model"]) == ["u_I", "e_I"]  # 0.8 and 0.75
    good = histograms([0, 0, 1, 4, 5], [5, 3, 1, 0, 0])
    evaluations = [
        write_evaluation(tmp_path / f"{model}_{test}.json", model, test, good, 1.0)
        for model, test in zip(best["model"], best["test_dataset"], strict=True)
    ]
    out = tmp_path / "pr.png"
    drawn = plot_pr_curves(metrics, evaluations, fixture_replicates(), out, top=2)
    assert out.exists()
    assert len(drawn) == 2 * 2 * 2  # test sets x models x lesions
    assert set(drawn["metric"]) == {"ap"}  # the legend's values: the models' in metrics.csv
    values = drawn.set_index(["model", "test_dataset", "lesion"])["value"]
    assert values[("u_I", "IDRID", "EX")] == pytest.approx(0.9)
    assert values[("e_I", "IDRID", "HE")] == pytest.approx(0.65)
    with pytest.raises(ValueError, match="no evaluation file"):
        plot_pr_curves(metrics, evaluations[:1], fixture_replicates(), out, top=2)


def test_cost_table_from_sidecars_and_evaluations(tmp_path: Path) -> None:
    import torch

    from lesionsoup.core.checkpoint import save_checkpoint
    from lesionsoup.inference.predictor import write_ensemble

    arch = {"encoder": "resnet18", "lesions": ["EX", "HE"]}
    single = tmp_path / "single.safetensors"
    save_checkpoint(single, {"w": torch.zeros(1)}, {"architecture": arch, "wall_seconds": 100.0})
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, {"w": torch.zeros(1)}, {"architecture": arch, "wall_seconds": 50.0})
    soup = tmp_path / "soup.safetensors"
    save_checkpoint(
        soup,
        {"w": torch.zeros(1)},
        {
            "architecture": arch,
            "compute_seconds": 150.0,
            "merge_seconds": 2.0,
            "selection_seconds": 3.0,
        },
    )
    ensemble = tmp_path / "ensemble.json"
    write_ensemble(ensemble, [single, other])
    metrics = pd.DataFrame(
        [
            (str(p), "IDRID", m, "IDRID", "EX", "ap", 0.5)
            for p, m in ((single, "single"), (soup, "uniform"), (ensemble, "ensemble"))
        ],
        columns=list(COLUMNS),
    )
    hist = histograms([0, 0, 1, 4, 5], [5, 3, 1, 0, 0])
    evaluations = [
        write_evaluation(tmp_path / "a.json", str(single), "IDRID", hist, 4.0),
        write_evaluation(tmp_path / "b.json", str(single), "DDR", hist, 6.0),
        write_evaluation(tmp_path / "c.json", str(soup), "IDRID", hist, 5.0),
    ]
    costs = cost_table(metrics, evaluations).set_index("method")
    assert costs.loc["single", "compute_seconds"] == pytest.approx(110.0)
    assert costs.loc["uniform", "training_seconds"] == pytest.approx(150.0)
    assert costs.loc["uniform", "merging_seconds"] == pytest.approx(5.0)
    assert costs.loc["uniform", "compute_seconds"] == pytest.approx(160.0)
    assert costs.loc["ensemble", "compute_seconds"] == pytest.approx(150.0)
    assert set(costs["source"]) == {"sidecar"}  # written outside a workflow: no job records


def test_markdown_and_summary(tmp_path: Path) -> None:
    table = pd.DataFrame({"method": ["single", "uniform"], "gain": [0.0, 0.12345]})
    text = markdown_table(table)
    assert text.splitlines() == [
        "| method | gain |",
        "|---|---|",
        "| single | 0.000 |",
        "| uniform | 0.123 |",
    ]
    csv = tmp_path / "gains.csv"
    table.to_csv(csv, index=False)
    summary = write_summary({"Cost vs gain": csv}, tmp_path / "summary.md")
    assert "## Cost vs gain" in summary and "| uniform | 0.123 |" in summary
    assert (tmp_path / "summary.md").read_text() == summary
    with pytest.raises(ValueError, match="missing.csv: cannot read the table for 'Other'"):
        write_summary({"Other": tmp_path / "missing.csv"}, tmp_path / "summary.md")


def test_cross_dataset_figures_and_summary(
    tmp_path: Path, metrics_csv: Path, replicates_npz: Path
) -> None:
    heatmap, fine_coarse = tmp_path / "cross.png", tmp_path / "fine_coarse.png"
    report_cross_dataset(metrics_csv, replicates_npz, heatmap, fine_coarse, coarse=["RETLES"])
    table = pd.read_csv(heatmap.with_suffix(".csv")).set_index(["lesion", "train_combo"])
    assert table.loc[("EX", "IDRID"), "IDRID"] == pytest.approx(0.7)
    assert table.loc[("HE", "RETLES"), "RETLES"] == pytest.approx(0.6)
    assert fine_coarse.exists() and fine_coarse.with_suffix(".csv").exists()
    summary = tmp_path / "summary.md"
    write_summary({"Scores": heatmap.with_suffix(".csv")}, summary)
    text = summary.read_text()
    header = "| lesion | train_combo | IDRID | IDRID low | IDRID high | RETLES | RETLES low |"
    assert header in text
    assert re.search(r"\| EX \| IDRID \| 0\.700 \| [.\d]+ \| [.\d]+ \| 0\.300 \|", text)


def test_study_summary_sections_in_order(tmp_path: Path) -> None:
    tables = {}
    for name in SECTIONS:
        tables[name] = tmp_path / f"{name}.csv"
        table = {"table": [name], "method": ["single"], "beyond_seed_noise": [False]}
        table |= {"soup": ["uniform"], "verdict": ["better"], "verdict_vs_ensemble": ["worse"]}
        pd.DataFrame(table).to_csv(tables[name], index=False)
    text = write_study_summary(dict(reversed(tables.items())), tmp_path / "summary.md")
    titles = [line.removeprefix("## ") for line in text.splitlines() if line.startswith("## ")]
    assert titles == list(SECTIONS.values())
    assert "better in 1 of 1 merged models (uniform)" in text  # the averaging verdicts
    without = {name: path for name, path in tables.items() if name != "averaging"}
    text = write_study_summary(without, tmp_path / "summary.md")  # a study without soups
    assert SECTIONS["averaging"] not in text


def figure_texts(fig: plt.Figure) -> str:
    """Every title, axis label and legend entry of a figure, one per line."""
    texts = [fig.get_suptitle()]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        if ax.get_legend() is not None:
            texts += [text.get_text() for text in ax.get_legend().get_texts()]
    return "\n".join(texts)


def test_every_figure_and_table_names_its_metric(
    tmp_path: Path, metrics_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: dict[str, str] = {}

    def recording(fig: plt.Figure, out: Path, tight: bool = True) -> None:
        shown[Path(out).name] = figure_texts(fig)
        save_figure(fig, out, tight)

    for module in (cross_dataset, methods, pr_curves):
        monkeypatch.setattr(module, "save_figure", recording)
    costs = tmp_path / "costs.csv"
    pd.DataFrame(
        {
            "model": ["s0_I"],
            "method": ["single"],
            "train_combo": ["IDRID"],
            "compute_seconds": [1.0],
            "source": ["measured"],
        }
    ).to_csv(costs, index=False)
    names = ("cross", "fc", "methods", "gain", "seed_noise")
    figures = {name: tmp_path / f"{name}.png" for name in names}
    metric, label = "dice_pooled", "Dice (pooled pixels)"
    replicates = tmp_path / "bootstrap.npz"
    fixture_replicates(metric).save(replicates)
    report_cross_dataset(
        metrics_csv, replicates, figures["cross"], figures["fc"], metric, coarse=["RETLES"]
    )
    outputs = MethodOutputs(
        figures["methods"], figures["gain"], tmp_path / "sig.csv",
        figures["seed_noise"].with_suffix(".csv"), figures["seed_noise"],
    )  # fmt: skip
    comparisons = comparisons_csv(tmp_path / "comparisons.csv", {("u_I", "IDRID"): True})
    report_methods(metrics_csv, costs, replicates, comparisons, outputs, metric)
    metrics = read_metrics(metrics_csv)
    best = best_models(metrics, 1, metric)
    good = histograms([0, 0, 1, 4, 5], [5, 3, 1, 0, 0])
    evaluations = [
        write_evaluation(tmp_path / f"{m}_{t}.json", m, t, good, 1.0)
        for m, t in zip(best["model"], best["test_dataset"], strict=True)
    ]
    drawn = plot_pr_curves(
        metrics, evaluations, fixture_replicates(metric), tmp_path / "pr.png", 1, metric
    )
    assert set(shown) == {f"{name}.png" for name in (*names, "pr")}
    for name, texts in shown.items():
        assert label in texts, name
    assert f"{label} 0.45 [" in shown["pr.png"]  # u_I on IDRID, EX: 0.9 / 2
    for figure in figures.values():
        assert set(pd.read_csv(figure.with_suffix(".csv"))["metric"]) == {metric}
    assert set(drawn["metric"]) == {metric}
    text = write_summary({"Scores": figures["cross"].with_suffix(".csv")}, tmp_path / "s.md")
    assert f"## Scores: {label}" in text and "dice_pooled" not in text


def test_seed_noise_compares_each_methods_gain_with_the_seeds_spread():
    rows = [
        ("s0", "A", "single", 0.50), ("s1", "A", "single", 0.54), ("s2", "A", "single", 0.52),
        ("g", "A", "greedy", 0.60), ("u", "A", "uniform", 0.53), ("b", "B", "single", 0.4),
        ("bg", "B", "greedy", 0.9),
    ]  # fmt: skip
    metrics = pd.DataFrame(
        [(m, c, k, "T", "EX", "ap", v) for m, c, k, v in rows],
        columns=["model", "train_combo", "method", "test_dataset", "lesion", "metric", "value"],
    )
    table = seed_noise_table(metrics, "ap").set_index("method")
    assert list(table.index) == ["greedy", "uniform"]  # B has one seed: no spread to compare
    assert table.loc["greedy", "seed_sd"] == pytest.approx(0.02)
    assert table.loc["greedy", "gain"] == pytest.approx(0.08)
    assert table.loc["greedy", "beyond_seed_noise"]  # 0.08 > 2 x 0.02
    assert not table.loc["uniform", "beyond_seed_noise"]  # 0.01
