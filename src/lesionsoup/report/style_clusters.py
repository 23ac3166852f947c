"""Figures of the annotation-style analysis: dendrogram with feature table, area distributions."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import dendrogram

from lesionsoup.analysis.annotation_style import AnnotationStyles
from lesionsoup.analysis.style_metrics import StyleClustering
from lesionsoup.core.figures import figure_size, panel_figure_size, save_figure


def plot_style_clusters(
    clustering: StyleClustering, out: Path, stability: pd.Series | None = None
) -> None:
    """Left: Ward dendrogram of the datasets (with each one's ``stability`` under image
    resamples, where given); right: their features (colour: z-score)."""
    datasets = list(clustering.features.index)
    fig, (ax_tree, ax_table) = plt.subplots(
        1,
        2,
        figsize=figure_size(1.4 + 0.3 * len(datasets)),
        width_ratios=(1.2, clustering.features.shape[1]),
        layout="constrained",
    )
    tree = dendrogram(
        clustering.linkage,
        labels=datasets,
        orientation="left",
        ax=ax_tree,
        color_threshold=0,
        above_threshold_color="black",
    )
    order = tree["ivl"][::-1]  # top to bottom as drawn
    ax_tree.set_xlabel("Ward distance")
    ax_tree.set_yticklabels(
        [
            f"{name} (c{clustering.clusters[name]}"
            + (f", stable {stability[name]:.1%})" if stability is not None else ")")
            for name in tree["ivl"]
        ]
    )
    scores = clustering.standardised.loc[order]
    raw = clustering.features.loc[order]
    image = ax_table.imshow(scores.to_numpy(), cmap="cividis", vmin=-2, vmax=2, aspect="auto")
    for (row, column), value in np.ndenumerate(raw.to_numpy()):
        z = scores.to_numpy()[row, column]
        ax_table.text(
            column,
            row,
            "n/a" if np.isnan(value) else f"{value:.2f}",
            ha="center",
            va="center",
            color="black" if z > 0.3 else "white",
        )
    ax_table.set_xticks(
        range(raw.shape[1]), [c.replace("_", "\n") for c in raw.columns], fontsize="small"
    )
    ax_table.set_yticks([])
    ax_table.spines[:].set_visible(False)
    fig.colorbar(image, ax=ax_table, label="z-score across datasets", shrink=0.8)
    subtitle = (
        "\n(stable: share of image resamples keeping each dataset's cluster relations)"
        if stability is not None
        else ""
    )
    fig.suptitle(f"Annotation styles: datasets clustered on their mask features{subtitle}")
    save_figure(fig, out, tight=False)


def plot_area_distributions(components: pd.DataFrame, out: Path) -> None:
    """Per lesion, the distribution of component areas (log scale) of each dataset."""
    lesions = list(dict.fromkeys(components["lesion"]))
    datasets = sorted(components["dataset"].unique())
    fig, axes = plt.subplots(
        1,
        len(lesions),
        figsize=panel_figure_size(1, len(lesions), panel_aspect=1.1, extra=0.6),
        squeeze=False,
        sharey=True,
    )
    for ax, lesion in zip(axes[0], lesions, strict=True):
        own = components[components["lesion"] == lesion]
        data = [own.loc[own["dataset"] == d, "area"].to_numpy() for d in datasets]
        present = [i for i, values in enumerate(data) if len(values)]
        ax.boxplot(
            [data[i] for i in present],
            positions=present,
            widths=0.6,
            medianprops={"color": "black"},
        )
        ax.set_xticks(range(len(datasets)), datasets, rotation=45, ha="right")
        ax.set_yscale("log")
        ax.set_title(lesion)
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].set_ylabel("component area (cache pixels)")
    fig.suptitle("Lesion component areas per dataset")
    save_figure(fig, out)


def plot_annotation_styles(styles: AnnotationStyles, out_dir: Path) -> None:
    """The annotation-style stage's figures in ``out_dir``: its clusters with their stability
    (``clusters.png``) and the lesion areas (``areas.png``)."""
    plot_style_clusters(styles.clustering, out_dir / "clusters.png", styles.stability.per_dataset)
    plot_area_distributions(styles.components, out_dir / "areas.png")
