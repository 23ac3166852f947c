"""How consistent annotation styles are: per-image dispersion, and how stable the clustering is.

The clustering of ``style_metrics`` puts each dataset's average style into a
cluster. Two questions it leaves open are answered here from the same tables
(``measure_datasets``'s components and images), without re-reading a cache:

- *dispersion*: each image's own style features (``lesion_features`` per image,
  averaged over lesions), and their standard deviation across the images of each
  dataset and of each cluster: a quantitative measure of annotation consistency;
- *stability*: the clustering repeated on bootstrap resamples of each dataset's
  images (seeded). ``co_assignment[i, j]`` is the share of resamples that put
  datasets i and j in one cluster; a dataset's ``stability`` is the share of
  (resample, other dataset) pairs whose together-or-apart relation is the one of
  the clustering on all images: 1.0 when every resample reproduces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lesionsoup.analysis.style_metrics import cluster_styles, dataset_features, lesion_features
from lesionsoup.core.style_features import STYLE_FEATURES


def image_features(
    components: pd.DataFrame, images: pd.DataFrame, columns: Sequence[str] = STYLE_FEATURES
) -> pd.DataFrame:
    """Each image's style features (rows indexed by dataset and image id)."""
    by = ["dataset", "image_id"]
    return dataset_features(lesion_features(components, images, by), columns, by)


def dispersion(features_of_images: pd.DataFrame, clusters: pd.Series) -> pd.DataFrame:
    """Standard deviation of each feature across the images of each dataset and cluster.

    Rows are ``("dataset", name)`` and ``("cluster", number)``; ``images`` counts them.
    """
    datasets = features_of_images.index.get_level_values("dataset")
    groups = {
        "dataset": datasets,
        "cluster": datasets.map(lambda name: f"cluster {clusters[name]}"),
    }
    tables = []
    for kind, labels in groups.items():
        grouped = features_of_images.groupby(np.asarray(labels), sort=True)
        table = grouped.std(ddof=1).assign(images=grouped.size())
        tables.append(table.set_axis(pd.MultiIndex.from_product([[kind], table.index])))
    return pd.concat(tables).rename_axis(["group", "name"])


@dataclass(frozen=True)
class Stability:
    co_assignment: pd.DataFrame  # dataset x dataset: share of resamples in one cluster
    per_dataset: pd.Series  # dataset -> agreement with the clustering on all images
    resamples: int


def _resample(
    components: pd.DataFrame, images: pd.DataFrame, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each dataset's images drawn with replacement (as many as it has), with their rows."""
    ids = images[["dataset", "image_id"]].drop_duplicates()
    drawn = pd.concat(
        own.iloc[rng.integers(0, len(own), len(own))] for _, own in ids.groupby("dataset")
    )
    drawn = drawn.assign(draw=np.arange(len(drawn)))
    return (
        drawn.merge(components, on=["dataset", "image_id"]),
        drawn.merge(images, on=["dataset", "image_id"]),
    )


def _together(clusters: pd.Series) -> np.ndarray:
    labels = clusters.to_numpy()
    return labels[:, None] == labels[None, :]


def cluster_stability(
    components: pd.DataFrame,
    images: pd.DataFrame,
    clusters: int,
    columns: Sequence[str] = STYLE_FEATURES,
    resamples: int = 200,
    seed: int = 0,
) -> Stability:
    """The clustering's co-assignments and each dataset's stability over image resamples."""
    full = cluster_styles(dataset_features(lesion_features(components, images), columns), clusters)
    names = list(full.clusters.index)
    reference = _together(full.clusters)
    rng = np.random.default_rng(seed)
    together = np.zeros(reference.shape)
    agreement = np.zeros(len(names))
    for _ in range(resamples):
        drawn = _resample(components, images, rng)
        features = dataset_features(lesion_features(*drawn), columns).reindex(names)
        current = _together(cluster_styles(features, clusters).clusters)
        together += current
        agreement += ((current == reference).sum(axis=1) - 1) / max(len(names) - 1, 1)
    return Stability(
        pd.DataFrame(together / resamples, index=names, columns=names),
        pd.Series(agreement / resamples, index=names, name="stability"),
        resamples,
    )
