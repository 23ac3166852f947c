"""The annotation-style stage (``lesionsoup annotation-style``): every dataset's lesion
components measured on its cache (``style_metrics``), the datasets clustered by their style
features, the clusters' stability under image resamples and each image's dispersion
(``style_consistency``), written as the analysis's tables; its figures are
``report.style_clusters``'s."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lesionsoup.analysis.style_consistency import (
    Stability,
    cluster_stability,
    dispersion,
    image_features,
)
from lesionsoup.analysis.style_metrics import (
    STYLE_FEATURES,
    StyleClustering,
    StyleSettings,
    cluster_styles,
    dataset_features,
    lesion_features,
    measure_datasets,
)
from lesionsoup.core.atomic import write_csv
from lesionsoup.core.report_defaults import REPORT_DEFAULTS
from lesionsoup.data.staging import staged_caches

log = logging.getLogger(__name__)
_DEFAULTS = REPORT_DEFAULTS["annotation_style"]


@dataclass(frozen=True)
class AnnotationStyleOptions:
    """How the styles are measured (``style``) and clustered: ``clusters`` groups of datasets
    on the dataset ``features``; ``resamples`` image resamples drawn from ``seed`` for the
    clusters' stability."""

    clusters: int = _DEFAULTS["clusters"]
    features: Sequence[str] = STYLE_FEATURES
    style: StyleSettings = field(default_factory=StyleSettings)
    resamples: int = _DEFAULTS["resamples"]
    seed: int = _DEFAULTS["seed"]


@dataclass(frozen=True)
class AnnotationStyles:
    """What the stage found: the lesion components, the clustering and its stability."""

    components: pd.DataFrame
    clustering: StyleClustering
    stability: Stability


def run_annotation_style(
    caches: Sequence[Path],
    options: AnnotationStyleOptions,
    out_dir: Path,
    stage_caches: str | None = None,
) -> AnnotationStyles:
    """The stage on the caches (opened on checked copies in ``stage_caches``): its tables in
    ``out_dir`` (components, features, clusters, consistency, co_assignment)."""
    with staged_caches(caches, stage_caches) as opened:
        components, images = measure_datasets(opened, settings=options.style)
    features = lesion_features(components, images)
    columns = options.features
    clustering = cluster_styles(dataset_features(features, columns), options.clusters)
    stability = cluster_stability(
        components, images, options.clusters, columns, options.resamples, options.seed
    )
    write_csv(components, out_dir / "components.csv")
    write_csv(features, out_dir / "features.csv")
    table = clustering.features.join(clustering.clusters).join(stability.per_dataset)
    write_csv(table.reset_index(), out_dir / "clusters.csv")
    spread = dispersion(image_features(components, images, columns), clustering.clusters)
    write_csv(spread.reset_index(), out_dir / "consistency.csv")
    co_assignment = stability.co_assignment.rename_axis("dataset").reset_index()
    write_csv(co_assignment, out_dir / "co_assignment.csv")
    log.info(
        "annotation-style clusters: %s; stability over %d resamples: %s",
        clustering.clusters.to_dict(),
        stability.resamples,
        stability.per_dataset.round(2).to_dict(),
    )
    return AnnotationStyles(components, clustering, stability)
