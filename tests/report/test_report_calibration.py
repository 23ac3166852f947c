"""The reliability figure: the best model of each method per test set, one panel per
(test set, lesion), curves at the reliability points of the pooled histograms, legends with
the ECE of metrics.csv and its interval of metrics_ci.csv."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionsoup.core.lesions import Lesion
from lesionsoup.core.metrics import (
    LesionHistogram,
    SegmentationHistograms,
    expected_calibration_error,
    reliability,
)
from lesionsoup.evaluation.evaluate import COLUMNS, FORMAT
from lesionsoup.report import calibration
from lesionsoup.report.calibration import calibration_models, report_reliability

LESIONS = ("EX", "HE")
# (model, method) -> AP on both test sets; the better single seed is s1
MODELS = {
    ("s0", "single"): 0.5,
    ("s1", "single"): 0.7,
    ("e", "ensemble"): 0.8,
    ("w", "swa"): 0.6,
    ("u", "uniform"): 0.75,
    ("g", "greedy"): 0.78,
    ("x", "UoU"): 0.9,  # a sixth method: beyond METHODS_DRAWN
}
TESTS = ("IDRID", "DDR")


def histogram(skew: int) -> LesionHistogram:
    """10 bins, 100 pixels a bin; bin k holds 10 * k positives shifted by ``skew`` bins."""
    positives = np.array([min(100, max(0, 10 * (k - skew))) for k in range(11)])
    return LesionHistogram(10, positives, 100 - positives)


def evaluations(folder: Path) -> tuple[Path, Path]:
    """Evaluation files, metrics.csv (AP and ECE) and its conventions file listing them."""
    rows, files = [], []
    for index, ((model, method), ap) in enumerate(MODELS.items()):
        for test in TESTS:
            pooled = SegmentationHistograms(LESIONS, bins=10)
            for lesion in LESIONS:
                pooled.histograms[Lesion(lesion)] = histogram(index % 3)
                ece = expected_calibration_error(pooled[lesion])
                rows += [(model, "IDRID", method, test, lesion, "ap", ap)]
                rows += [(model, "IDRID", method, test, lesion, "ece", ece)]
            path = folder / f"{model}_{test}.json"
            result = {"model": model, "test_dataset": test, "histograms": pooled.to_dict()}
            path.write_text(json.dumps({"format": FORMAT, **result}))
            files.append(str(path))
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(folder / "metrics.csv", index=False)
    notes = folder / "metrics.conventions.json"
    notes.write_text(json.dumps({"evaluations": files}))
    return folder / "metrics.csv", notes


def intervals(metrics_csv: Path, path: Path) -> Path:
    table = pd.read_csv(metrics_csv)
    table = table.assign(low=table["value"] - 0.01, high=table["value"] + 0.02, resamples=9)
    table.to_csv(path, index=False)
    return path


def test_the_best_model_of_the_first_methods_per_test_set(tmp_path):
    metrics_csv, _ = evaluations(tmp_path)
    chosen = calibration_models(pd.read_csv(metrics_csv), "ap")
    on_idrid = chosen[chosen["test_dataset"] == "IDRID"]
    assert list(on_idrid["method"]) == ["single", "ensemble", "swa", "uniform", "greedy"]
    assert list(on_idrid["model"]) == ["s1", "e", "w", "u", "g"]
    assert len(chosen) == 2 * 5


def test_the_figure_has_a_panel_per_lesion_and_test_set(tmp_path, monkeypatch):
    metrics_csv, notes = evaluations(tmp_path)
    ci = intervals(metrics_csv, tmp_path / "metrics_ci.csv")
    figures = []
    saving = calibration.save_figure
    monkeypatch.setattr(
        calibration, "save_figure", lambda fig, out: (figures.append(fig), saving(fig, out))
    )
    out = tmp_path / "report" / "reliability.png"
    report_reliability(metrics_csv, notes, ci, out, metric="ap")
    assert out.stat().st_size > 10_000
    [figure] = figures
    titles = sorted(ax.get_title() for ax in figure.axes)
    assert titles == sorted(f"{lesion} on {test}" for lesion in LESIONS for test in TESTS)
    for ax in figure.axes:
        assert len(ax.lines) == 5 + 1  # a curve per method and the diagonal
    panel = next(ax for ax in figure.axes if ax.get_title() == "HE on DDR")
    curve = panel.lines[0]  # s1: the second model, skew 1
    points = reliability(histogram(1))
    occupied = points.pixels > 0
    np.testing.assert_allclose(curve.get_xdata(), points.confidence[occupied])
    np.testing.assert_allclose(curve.get_ydata(), points.accuracy[occupied])
    drawn = pd.read_csv(out.with_suffix(".csv")).set_index(["model", "test_dataset", "lesion"])
    row = drawn.loc[("s1", "DDR", "HE")]
    assert row["ece"] == pytest.approx(expected_calibration_error(histogram(1)))
    assert (row["low"], row["high"]) == pytest.approx((row["ece"] - 0.01, row["ece"] + 0.02))
    assert "single: ECE" in panel.get_legend().get_texts()[0].get_text()
