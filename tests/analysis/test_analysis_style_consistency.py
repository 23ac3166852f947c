"""Annotation-style dispersion and clustering stability on style tables whose answer is known."""

import numpy as np
import pandas as pd
import pytest

from lesionsoup.analysis.style_consistency import cluster_stability, dispersion, image_features
from lesionsoup.analysis.style_metrics import COMPONENT_COLUMNS, IMAGE_COLUMNS


def style_tables(log_areas: dict[str, float], spread: float, images: int = 8, seed: int = 0):
    """Component and image tables of one lesion (EX): per image three components whose
    log10 areas scatter by ``spread`` around the dataset's value; edges follow the size."""
    rng = np.random.default_rng(seed)
    components, image_rows = [], []
    for dataset, centre in log_areas.items():
        for index in range(images):
            image_id = f"{dataset}_{index}"
            areas = 10 ** (centre + spread * rng.standard_normal(3))
            components += [(dataset, image_id, "EX", a, 1 + centre / 10, 0.9) for a in areas]
            image_rows.append((dataset, image_id, "EX", 3, 10 * centre, 10, 5, 10, 5, 10))
    return (
        pd.DataFrame(components, columns=list(COMPONENT_COLUMNS)),
        pd.DataFrame(image_rows, columns=list(IMAGE_COLUMNS)),
    )


SEPARATED = {"A": 1.0, "B": 1.05, "C": 3.0, "D": 3.05}


def test_perfectly_separated_styles_cluster_stably():
    stability = cluster_stability(*style_tables(SEPARATED, spread=0.01), clusters=2, resamples=40)
    assert (stability.per_dataset == 1.0).all()
    expected = pd.DataFrame(
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]],
        index=list("ABCD"),
        columns=list("ABCD"),
    )
    pd.testing.assert_frame_equal(stability.co_assignment, expected.astype(float))


def test_styles_drawn_from_one_distribution_do_not_cluster_stably():
    same = dict.fromkeys("ABCD", 2.0)
    stability = cluster_stability(
        *style_tables(same, spread=0.5, images=5), clusters=2, resamples=40
    )
    assert stability.per_dataset.max() < 1.0
    assert np.allclose(np.diag(stability.co_assignment), 1.0)


def test_dispersion_is_the_spread_of_each_images_own_style():
    components, images = style_tables(SEPARATED, spread=0.3, images=6, seed=1)
    features = image_features(components, images, ["log_area_median"])
    by_hand = (
        components.assign(log_area=np.log10(components["area"]))
        .groupby(["dataset", "image_id"])["log_area"]
        .median()
        .groupby("dataset")
        .std(ddof=1)
    )
    table = dispersion(features, pd.Series({"A": 1, "B": 1, "C": 2, "D": 2}))
    for dataset, value in by_hand.items():
        assert table.loc[("dataset", dataset), "log_area_median"] == pytest.approx(value)
        assert table.loc[("dataset", dataset), "images"] == 6
    assert table.loc[("cluster", "cluster 1"), "images"] == 12
    within = table.loc[("cluster", "cluster 1"), "log_area_median"]
    assert within >= min(by_hand["A"], by_hand["B"])  # pooling two datasets adds their offset
