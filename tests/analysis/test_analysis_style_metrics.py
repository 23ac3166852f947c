"""Annotation-style measures on hand-made masks, and the clustering on real synthetic data."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lesionsoup.analysis.style_metrics import (
    StyleSettings,
    boundary_gradients,
    cluster_styles,
    component_shapes,
    dataset_features,
    lesion_features,
    measure_datasets,
    standardise,
)
from lesionsoup.data.cache import Cache
from lesionsoup.data.datasets import index_dataset
from lesionsoup.data.preprocess import MaskRules, build_cache
from lesionsoup.data.synthetic.generator import generate
from lesionsoup.report.style_clusters import plot_area_distributions, plot_style_clusters


def test_component_shapes_of_a_disc_and_an_l_shape() -> None:
    mask = np.zeros((60, 60), np.uint8)
    cv2.circle(mask, (15, 15), 10, 1, -1)
    mask[40:55, 40:44] = 1  # an L: a bar and a foot
    mask[51:55, 40:55] = 1
    mask[2, 50] = 1  # one pixel: too small for a shape
    shapes = sorted(component_shapes(mask.astype(bool), min_shape_area=10))
    single, l_shape, disc = shapes
    assert single[0] == 1 and math.isnan(single[1]) and math.isnan(single[2])
    assert disc[0] == int(mask[:30, :30].sum())
    assert disc[1] == pytest.approx(1.0, abs=0.15)  # a disc is as regular as it gets
    assert disc[2] > 0.9
    assert l_shape[1] > disc[1] + 0.3 and l_shape[2] < 0.7


def test_boundary_gradients_on_an_edge_and_off_it() -> None:
    image = np.zeros((40, 40), np.float32)
    image[10:30, 10:30] = 1.0  # a square: its edge has gradient 1, the rest 0
    gradient = np.abs(np.gradient(image)[0]) + np.abs(np.gradient(image)[1])
    valid = np.ones_like(image, bool)
    exact = np.zeros((40, 40), bool)
    exact[10:30, 10:30] = True
    drawn_around = np.zeros((40, 40), bool)
    drawn_around[8:32, 8:32] = True  # 2 px outside the edge
    on = boundary_gradients(exact, gradient, valid, band_px=2)
    off = boundary_gradients(drawn_around, gradient, valid, band_px=2)
    assert on[0] / on[1] > 0.4 and off[0] == 0  # nothing on the loose outline
    assert off[2] > 0 and off[4] == 0  # the edge lies in the inner band


def test_standardise_and_clusters_are_numbered_by_first_dataset() -> None:
    features = pd.DataFrame(
        {"a": [1.0, 1.1, 5.0, 0.9], "b": [2.0, 2.0, 2.0, 2.0]}, index=["P", "Q", "R", "S"]
    )
    scores = standardise(features)
    assert scores["b"].eq(0).all()
    np.testing.assert_allclose(scores["a"].mean(), 0, atol=1e-12)
    clustering = cluster_styles(features, clusters=2)
    assert clustering.clusters.to_dict() == {"P": 1, "Q": 1, "R": 2, "S": 1}
    with pytest.raises(ValueError, match="clusters must be in 1..4"):
        cluster_styles(features, clusters=5)


@pytest.fixture(scope="module")
def synthetic_caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Cache]:
    """The five synthetic datasets (RETLES in the coarse style), cached at 128 px.

    Masks are binarised at 128 (FGADR's anti-aliased edges then stay fine; with
    threshold 1 they gain a one-pixel rim that reads as coarse at this scale).
    """
    out = tmp_path_factory.mktemp("synthetic")
    roots = generate(out / "native", images=6, seed=0, scale=0.1)
    caches = {}
    for name in ("IDRID", "DDR", "FGADR", "RETLES", "MAPLES"):
        manifest = index_dataset(name, roots[name], {})
        rules = MaskRules(uncertain_value=127 if name == "RETLES" else None)
        build_cache(
            manifest, out / "cache" / name, size=128, rules=rules, threads=1, progress=False
        )
        caches[name] = Cache(out / "cache" / name)
    return caches


def test_coarse_synthetic_dataset_is_its_own_cluster(
    synthetic_caches: dict[str, Cache], tmp_path: Path
) -> None:
    components, images = measure_datasets(synthetic_caches, settings=StyleSettings())
    features = lesion_features(components, images)
    assert set(features["dataset"]) == set(synthetic_caches)
    assert (features["images"] == 6).all()
    listed = features.set_index(["dataset", "lesion"])["components"]
    counted = components.groupby(["dataset", "lesion"]).size()
    assert (listed == counted.reindex(listed.index, fill_value=0)).all()
    per_dataset = dataset_features(features)
    coarse = per_dataset.loc["RETLES"]
    fine = per_dataset.drop(index="RETLES")
    assert coarse["log_area_median"] > fine["log_area_median"].max()
    assert coarse["edge_balance"] > fine["edge_balance"].max()
    clustering = cluster_styles(per_dataset, clusters=2)
    retles = clustering.clusters["RETLES"]
    assert (clustering.clusters.drop(index="RETLES") != retles).all()
    assert clustering.clusters.drop(index="RETLES").nunique() == 1
    plot_style_clusters(clustering, tmp_path / "clusters.png")
    plot_area_distributions(components, tmp_path / "areas.png")
    assert (tmp_path / "clusters.png").exists() and (tmp_path / "areas.png").exists()


def test_unknown_feature_is_named() -> None:
    features = pd.DataFrame({"dataset": ["A"], "lesion": ["EX"], "edge_contrast": [1.0]})
    with pytest.raises(ValueError, match=r"unknown style features \['roundness'\]"):
        dataset_features(features, ["roundness"])


def test_the_annotation_style_command_writes_the_stage_tables_and_figures(
    synthetic_caches: dict[str, Cache], tmp_path: Path
) -> None:
    """`lesionsoup annotation-style`: the stage's five tables (``run_annotation_style``) and
    its two figures (``report.style_clusters``), the coarse dataset a cluster of its own."""
    from lesionsoup.cli import main

    caches = [arg for cache in synthetic_caches.values() for arg in ("--cache", cache.directory)]
    out = tmp_path / "styles"
    main(["annotation-style", *map(str, caches), "--resamples", "5", "--out-dir", str(out)])
    written = {path.name for path in out.iterdir()}
    tables = {"components", "features", "clusters", "consistency", "co_assignment"}
    assert written == {f"{name}.csv" for name in tables} | {"clusters.png", "areas.png"}
    clusters = pd.read_csv(out / "clusters.csv").set_index("dataset")
    assert set(clusters.index) == set(synthetic_caches)
    assert (clusters.drop(index="RETLES")["cluster"] != clusters.loc["RETLES", "cluster"]).all()
    assert pd.read_csv(out / "co_assignment.csv")["dataset"].tolist() == list(clusters.index)
