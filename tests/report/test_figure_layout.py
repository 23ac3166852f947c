"""Figures a paper can use as they are: every report figure is as wide as a page or a
column, within the aspect bounds, has no empty panel; the methods figure scales its value
axis to the data and names a test set without scores instead of drawing it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import test_report_calibration as calibration_fixtures
from support.figure_layout import check_layout
from support.replicate_fixtures import replicates_for
from test_report_figures import fixture_replicates, histograms, metrics_table, write_evaluation
from test_report_methods import comparisons_csv

from lesionsoup.analysis.style_metrics import cluster_styles
from lesionsoup.core import figures
from lesionsoup.core.figures import (
    ASPECT_BOUNDS,
    COLUMN_WIDTH,
    DPI,
    PAGE_WIDTH,
    SCALED_NOTE,
    data_range,
    panel_grid,
    save_figure,
    wrap_label,
)
from lesionsoup.data.cache import Cache
from lesionsoup.evaluation.evaluate import COLUMNS
from lesionsoup.report import (
    calibration,
    connectivity,
    cross_dataset,
    methods,
    pr_curves,
    qualitative,
    size_curves,
    style_clusters,
)

Figures = dict[str, plt.Figure]


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> Figures:
    """The figures the report modules save, by file name (saved for real, then kept)."""
    shown: Figures = {}

    def keep(fig: plt.Figure, out: Path, tight: bool = True) -> None:
        save_figure(fig, out, tight)
        shown[Path(out).name] = fig

    modules = (calibration, connectivity, cross_dataset, methods, pr_curves, qualitative)
    for module in (*modules, size_curves, style_clusters):
        monkeypatch.setattr(module, "save_figure", keep)
    return shown


def test_the_page_sizes_are_a_journal_s() -> None:
    assert abs(PAGE_WIDTH - 178 / 25.4) < 0.02  # double-column text, 178 mm
    assert abs(COLUMN_WIDTH - 88 / 25.4) < 0.04  # one column, 88 mm
    assert ASPECT_BOUNDS == (0.25, 1.4)
    assert plt.rcParams["savefig.dpi"] == DPI == 300


def test_a_grid_fills_its_rows_evenly_within_the_page() -> None:
    assert panel_grid(4, PAGE_WIDTH, 2.6) == (2, 2)  # not 1 x 4, not 3 + 1
    assert panel_grid(4, PAGE_WIDTH, 1.6) == (1, 4)
    assert panel_grid(5, PAGE_WIDTH, 2.0) == (2, 3)
    assert panel_grid(1, COLUMN_WIDTH, 5.0) == (1, 1)  # a wide panel still gets its column
    with pytest.raises(ValueError, match="at least one panel"):
        panel_grid(0)


def test_the_axis_is_scaled_to_the_data_and_says_so() -> None:
    low_values = data_range([0.03, 0.11, 0.18, np.nan])
    assert low_values.limits == (0.0, 0.2)
    assert low_values.note == SCALED_NOTE
    assert data_range([0.2, 0.95]).limits == (0.0, 1.0)
    assert data_range([0.2, 0.95]).note == ""
    assert data_range([np.nan]).limits == (0.0, 1.0)
    negative = data_range([-0.04, 0.1])
    assert negative.low < -0.04 and 0.1 < negative.high <= 0.15
    assert data_range([2.0, 7.0], unit=False).high == pytest.approx(7.5)


def test_long_row_labels_wrap_at_the_plus() -> None:
    wrapped = wrap_label("DDR+E-OPHTHA+FGADR+IDRID+RETLES")
    assert wrapped == "DDR+E-OPHTHA+\nFGADR+IDRID+RETLES"
    assert wrap_label("IDRID") == "IDRID"


# --- the cross-dataset heatmaps: four lesions, a grid, one colour bar

TESTS = ("DDR", "FGADR", "IDRID", "RETLES")
COMBOS = ("IDRID", "IDRID+RETLES", "DDR+E-OPHTHA+FGADR+IDRID+RETLES")
LESIONS = ("EX", "HE", "MA", "CWS")


def low_metrics(empty_test: str | None = None) -> pd.DataFrame:
    """Single and uniform models of every combination on ``TESTS`` (and ``empty_test``,
    its values NaN: no test images), all four lesions, every value below 0.2."""
    rng = np.random.default_rng(3)
    rows = []
    tests = [*TESTS, *([empty_test] if empty_test else [])]
    for index, combo in enumerate(COMBOS):
        for model, method in ((f"s0_{index}", "single"), (f"s1_{index}", "single")):
            for test in tests:
                for lesion in LESIONS:
                    value = np.nan if test == empty_test else rng.uniform(0.02, 0.15)
                    rows.append((model, combo, method, test, lesion, "ap", value))
        for test in tests:
            for lesion in LESIONS:
                value = np.nan if test == empty_test else rng.uniform(0.02, 0.15)
                rows.append((f"u_{index}", combo, "uniform", test, lesion, "ap", value))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_the_heatmaps_are_a_page_wide_grid_with_shared_labels(
    tmp_path: Path, saved: Figures
) -> None:
    metrics = low_metrics()
    cross_dataset.plot_heatmaps(
        metrics, replicates_for(metrics, "ap", 0.95, 20), tmp_path / "h.png"
    )
    fig = saved["h.png"]
    check_layout(fig)
    assert fig.get_size_inches()[0] == pytest.approx(PAGE_WIDTH)
    panels = [ax for ax in fig.axes if ax.images and ax.get_title() in LESIONS]
    colour_bars = [ax for ax in fig.axes if ax not in panels]
    assert len(panels) == 4 and len(colour_bars) == 1  # one colour bar for all
    rows = {round(ax.get_position().y0, 3) for ax in panels}
    columns = {round(ax.get_position().x0, 3) for ax in panels}
    assert len(rows) == 2 and len(columns) == 2  # 2 x 2, not a strip
    left = min(columns)
    bottom = min(rows)
    for ax in panels:
        labels = [t.get_text() for t in ax.get_yticklabels()]
        on_left = round(ax.get_position().x0, 3) == left
        assert ax.yaxis.get_tick_params()["labelleft"] == on_left
        if on_left:
            assert "DDR+E-OPHTHA+\nFGADR+IDRID+RETLES" in labels
        bottom_shown = ax.xaxis.get_tick_params()["labelbottom"]
        assert bottom_shown == (round(ax.get_position().y0, 3) == bottom)
    # every value is below 0.2: the colour scale says so rather than running to 1
    assert panels[0].images[0].norm.vmax <= 0.2
    assert SCALED_NOTE in fig.get_suptitle()


def test_the_fine_coarse_figure_is_page_wide_on_a_scaled_axis(
    tmp_path: Path, saved: Figures
) -> None:
    metrics = low_metrics()
    replicates = replicates_for(metrics, "ap", 0.95, 20)
    cross_dataset.plot_fine_coarse(metrics, {"RETLES"}, replicates, tmp_path / "fc.png")
    fig = saved["fc.png"]
    check_layout(fig)
    [ax] = fig.axes
    assert ax.get_ylim()[1] < 0.5
    assert SCALED_NOTE in ax.get_ylabel()


# --- the methods figure: a test set without test images gets no panel


def empty_comparisons(path: Path) -> pd.DataFrame:
    return pd.read_csv(comparisons_csv(path, {}))


def test_the_methods_figure_scales_to_the_data_and_names_the_empty_test_set(
    tmp_path: Path, saved: Figures
) -> None:
    metrics = low_metrics(empty_test="E-OPHTHA")
    replicates = replicates_for(metrics, "ap", 0.95, 20)
    comparisons = empty_comparisons(tmp_path / "comparisons.csv")
    drawn = methods.plot_method_comparison(
        metrics, replicates, comparisons, tmp_path / "m.png", tests=[*TESTS, "E-OPHTHA"]
    )
    fig = saved["m.png"]
    check_layout(fig)
    assert drawn.empty == ["E-OPHTHA"]
    assert "E-OPHTHA" in drawn.caption
    assert "E-OPHTHA" in fig.get_suptitle()
    titles = [ax.get_title() for ax in fig.axes]
    assert sorted(titles) == sorted(f"test {test}" for test in TESTS)  # no E-OPHTHA panel
    for ax in fig.axes:
        low, high = ax.get_ylim()
        assert low == 0 and high < 0.5  # all values < 0.2: not a 0-1 axis
        bars = [p.get_height() for p in ax.patches if np.isfinite(p.get_height())]
        assert max(bars) < high
    assert SCALED_NOTE in fig.get_supylabel()
    assert SCALED_NOTE in drawn.caption
    # the table still holds the empty test set's rows (NaN), for methods.csv
    assert drawn.table.loc[drawn.table["test_dataset"] == "E-OPHTHA", "mean"].isna().all()


def test_a_configured_test_set_missing_from_the_metrics_is_named_too(
    tmp_path: Path, saved: Figures
) -> None:
    metrics = low_metrics()
    replicates = replicates_for(metrics, "ap", 0.95, 20)
    comparisons = empty_comparisons(tmp_path / "comparisons.csv")
    drawn = methods.plot_method_comparison(
        metrics, replicates, comparisons, tmp_path / "m.png", tests=["DDR", "E-OPHTHA"]
    )
    assert drawn.empty == ["E-OPHTHA"]
    assert "No panel: test set E-OPHTHA" in drawn.caption
    check_layout(saved["m.png"])


def test_without_an_empty_test_set_nothing_is_named(tmp_path: Path, saved: Figures) -> None:
    metrics = metrics_table()
    comparisons = empty_comparisons(tmp_path / "comparisons.csv")
    drawn = methods.plot_method_comparison(
        metrics, fixture_replicates(), comparisons, tmp_path / "m.png"
    )
    assert drawn.empty == []
    assert "No panel" not in drawn.caption
    fig = saved["m.png"]
    check_layout(fig)
    assert fig.axes[0].get_ylim() == (0.0, 1.0)  # values up to 0.9: the whole 0-1 range
    assert SCALED_NOTE not in drawn.caption


def test_cost_gain_and_seed_noise_are_page_wide(tmp_path: Path, saved: Figures) -> None:
    metrics = low_metrics()
    replicates = replicates_for(metrics, "ap", 0.95, 20)
    models = metrics[["model", "method", "train_combo"]].drop_duplicates()
    single = np.where(models["method"] == "single", 10.0, 30.0)
    costs = models.assign(compute_seconds=single, source="measured")  # costs.csv columns
    gains = methods.cost_gain_table(metrics, costs, replicates)
    methods.plot_cost_gain(gains, tmp_path / "cg.png")
    seeds = methods.seed_noise_table(metrics, "ap", replicates)
    methods.plot_seed_noise(seeds, tmp_path / "sn.png")
    check_layout(saved["cg.png"])
    check_layout(saved["sn.png"])


# --- the other report figures


def test_pr_curves_fit_the_page(tmp_path: Path, saved: Figures) -> None:
    metrics = metrics_table()
    best = pr_curves.best_models(metrics, top=2)
    good = histograms([0, 0, 1, 4, 5], [5, 3, 1, 0, 0])
    evaluations = [
        write_evaluation(tmp_path / f"{model}_{test}.json", model, test, good, 1.0)
        for model, test in zip(best["model"], best["test_dataset"], strict=True)
    ]
    pr_curves.plot_pr_curves(metrics, evaluations, fixture_replicates(), tmp_path / "pr.png", 2)
    check_layout(saved["pr.png"])


def test_reliability_fits_the_page(tmp_path: Path, saved: Figures) -> None:
    metrics_csv, notes = calibration_fixtures.evaluations(tmp_path)
    ci = calibration_fixtures.intervals(metrics_csv, tmp_path / "metrics_ci.csv")
    calibration.report_reliability(metrics_csv, notes, ci, tmp_path / "rel.png", metric="ap")
    check_layout(saved["rel.png"])


def test_size_curves_fit_the_page(tmp_path: Path, saved: Figures) -> None:
    rows = []
    for test in ("IDRID", "DDR", "FGADR"):
        for curve in ("ensemble", "uniform", "greedy"):
            for k in (1, 2, 3):
                value = 0.1 + 0.01 * k
                rows.append(
                    {"combo": "IDRID", "curve": curve, "k": k, "test_dataset": test,
                     "metric": "ap", "value": value, "low": value - 0.02,
                     "high": value + 0.02, "confidence": 0.95, "compute_seconds": 10.0 * k}
                )  # fmt: skip
    size_curves.plot_size_curves(pd.DataFrame(rows), tmp_path / "size.png")
    check_layout(saved["size.png"])


def test_connectivity_fits_a_column(tmp_path: Path, saved: Figures) -> None:
    lam = np.linspace(0, 1, 5)
    curve = pd.DataFrame({"lam": lam, "score": 0.5 - 0.1 * lam * (1 - lam), "loss": 1 + lam})
    sharpness = pd.DataFrame(
        {"model": ["A", "A", "B", "B"], "radius": [0.1, 0.2, 0.1, 0.2],
         "increase": [0.01, 0.03, 0.02, 0.05]}
    )  # fmt: skip
    connectivity.plot_connectivity({"average": curve}, tmp_path / "lmc.png", "A to B", sharpness)
    check_layout(saved["lmc.png"])


def test_style_figures_fit_the_page(tmp_path: Path, saved: Figures) -> None:
    datasets = ["DDR", "FGADR", "IDRID", "RETLES"]
    rng = np.random.default_rng(0)
    features = pd.DataFrame(
        rng.normal(size=(4, 5)), index=datasets, columns=[f"feature {i}" for i in range(5)]
    )
    style_clusters.plot_style_clusters(cluster_styles(features, 2), tmp_path / "clusters.png")
    components = pd.DataFrame(
        [(d, lesion, float(a)) for d in datasets for lesion in LESIONS for a in (4, 30, 200)],
        columns=["dataset", "lesion", "area"],
    )
    style_clusters.plot_area_distributions(components, tmp_path / "areas.png")
    check_layout(saved["clusters.png"])
    check_layout(saved["areas.png"])


def test_qualitative_fits_the_page(
    pair: tuple[Path, Path],
    toy_caches: dict[str, Path],
    tmp_path: Path,
    saved: Figures,
) -> None:
    cache = Cache(toy_caches["AAA"])
    qualitative.plot_qualitative(cache, {"A": pair[0], "B": pair[1]}, tmp_path / "q.png", 2)
    check_layout(saved["q.png"])


@pytest.mark.parametrize(
    "draw",
    [
        lambda: plt.subplots(figsize=(25.0, 4.2)),  # the old 5000 x 840 px strip
        lambda: plt.subplots(figsize=(6.0, 12.0)),  # the old methods figure, five panels
    ],
)
def test_the_layout_check_refuses_the_old_sizes(draw: Callable[[], object]) -> None:
    fig, ax = draw()
    ax.plot([0, 1], [0, 1])
    with pytest.raises(AssertionError):
        check_layout(fig)
    plt.close(fig)


def test_the_layout_check_refuses_an_empty_panel() -> None:
    fig, axes = plt.subplots(1, 2, figsize=figures.figure_size(3.0))
    axes[0].bar([0, 1], [0.1, 0.2])
    axes[1].bar([0, 1], [np.nan, np.nan])  # a test set without test images
    with pytest.raises(AssertionError, match="empty panels"):
        check_layout(fig)
    plt.close(fig)
