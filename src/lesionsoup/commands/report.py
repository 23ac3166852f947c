"""Subcommands of the report stage's analyses, which also serve by hand: annotation styles of
any caches, linear mode connectivity between any two checkpoints.

The figures and tables drawn from ``metrics.csv`` are ``workflow/scripts/`` of their rules.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from lesionsoup.commands.arguments import (
    Subcommands,
    add_cache_arguments,
    add_device_argument,
    json_object,
    open_caches,
)
from lesionsoup.core.merge_rules import BN_POLICIES, DEFAULT_PART, PARTS
from lesionsoup.core.report_defaults import REPORT_DEFAULTS
from lesionsoup.plan.options import BN_SAMPLE_OPTIONS, add_options, bn_sample

log = logging.getLogger("lesionsoup")


def _short(checkpoint: Path) -> str:
    """A checkpoint's name for a figure title: its path below results/, without suffix."""
    parts = checkpoint.with_suffix("").parts
    return "/".join(parts[parts.index("results") + 1 :] if "results" in parts else parts[-3:])


def _annotation_style(args: argparse.Namespace) -> None:
    from lesionsoup.analysis.style_consistency import (
        cluster_stability,
        dispersion,
        image_features,
    )
    from lesionsoup.analysis.style_metrics import (
        STYLE_FEATURES,
        StyleSettings,
        cluster_styles,
        dataset_features,
        lesion_features,
        measure_datasets,
    )
    from lesionsoup.report.style_clusters import plot_area_distributions, plot_style_clusters
    from lesionsoup.report.tables import write_csv

    with open_caches(args.cache, args.stage_caches) as caches:
        components, images = measure_datasets(caches, settings=StyleSettings(**args.settings))
    features = lesion_features(components, images)
    columns = args.features or STYLE_FEATURES
    clustering = cluster_styles(dataset_features(features, columns), args.clusters)
    stability = cluster_stability(
        components, images, args.clusters, columns, args.resamples, args.seed
    )
    out = args.out_dir
    write_csv(components, out / "components.csv")
    write_csv(features, out / "features.csv")
    table = clustering.features.join(clustering.clusters).join(stability.per_dataset)
    write_csv(table.reset_index(), out / "clusters.csv")
    spread = dispersion(image_features(components, images, columns), clustering.clusters)
    write_csv(spread.reset_index(), out / "consistency.csv")
    write_csv(
        stability.co_assignment.rename_axis("dataset").reset_index(), out / "co_assignment.csv"
    )
    plot_style_clusters(clustering, out / "clusters.png", stability.per_dataset)
    plot_area_distributions(components, out / "areas.png")
    log.info(
        "annotation-style clusters: %s; stability over %d resamples: %s",
        clustering.clusters.to_dict(),
        stability.resamples,
        stability.per_dataset.round(2).to_dict(),
    )


def _sharpness_of_pair(args: argparse.Namespace, caches: dict, device: Any) -> Any:
    """The sharpness table of checkpoints A and B (``model`` column: A or B)."""
    import pandas as pd

    from lesionsoup.analysis.sharpness import checkpoint_sharpness

    tables = {
        name: checkpoint_sharpness(
            path,
            caches,
            args.sharpness_radii,
            args.sharpness_directions,
            args.sharpness_seed,
            device=device,
        )  # fmt: skip
        for name, path in (("A", args.a), ("B", args.b))
    }
    return pd.concat(tables, names=["model"]).reset_index(level=0)


def _connectivity(args: argparse.Namespace) -> None:
    import pandas as pd
    import torch

    from lesionsoup.analysis.connectivity import barrier, connectivity_curve
    from lesionsoup.analysis.sharpness import sharpness
    from lesionsoup.core.device import pick_device
    from lesionsoup.report.connectivity import plot_connectivity
    from lesionsoup.report.tables import write_csv

    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    with open_caches(args.cache, args.stage_caches) as caches:
        curves = {
            policy: connectivity_curve(
                args.a,
                args.b,
                caches,
                args.points,
                policy,
                bn_sample(args),
                device=device,
                part=args.part,
            )
            for policy in args.bn_policy
        }
        flatness = _sharpness_of_pair(args, caches, device) if args.sharpness else None
    table = pd.concat(curves, names=["bn_policy"]).reset_index(level=0)
    write_csv(table, args.output)
    if flatness is not None:
        write_csv(flatness, args.sharpness)
    moved = "" if args.part == DEFAULT_PART else f" ({args.part} only, the rest A's)"
    title = f"Linear mode connectivity{moved}\nA = {_short(args.a)}\nB = {_short(args.b)}"
    plot_connectivity(curves, args.figure, title, flatness)
    for policy, curve in curves.items():
        log.info(
            "%s: score barrier %.4f, loss barrier %.4f",
            policy,
            barrier(curve),
            barrier(curve, "loss", higher_is_better=False),
        )
    if flatness is not None:
        for name, own in flatness.groupby("model"):
            log.info("sharpness of %s: %s", name, sharpness(own).round(4).to_dict())


def _add_annotation_style(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "annotation-style", help="measure the datasets' annotation styles and cluster them"
    )
    add_cache_arguments(parser, "a dataset cache (repeatable; named by its folder)")
    defaults = REPORT_DEFAULTS["annotation_style"]
    parser.add_argument(
        "--clusters", type=int, default=defaults["clusters"], help="clusters of datasets by style"
    )
    parser.add_argument(
        "--features", nargs="+", default=None, help="dataset features to cluster on (default: all)"
    )
    parser.add_argument(
        "--settings",
        type=json_object,
        default={},
        help="StyleSettings as JSON (min_shape_area, band_px, gradient_sigma)",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=defaults["resamples"],
        help="image resamples for the cluster stability",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults["seed"], help="seed of those resamples"
    )
    parser.add_argument(
        "--out-dir", type=Path, required=True, help="folder of the tables and figures"
    )
    parser.set_defaults(handler=_annotation_style)


def _add_connectivity(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "connectivity", help="linear mode connectivity curve between two checkpoints"
    )
    parser.add_argument("a", type=Path, help="checkpoint at lambda 0")
    parser.add_argument("b", type=Path, help="checkpoint at lambda 1")
    add_cache_arguments(parser, "validation (and BatchNorm) data (repeatable)")
    defaults = REPORT_DEFAULTS["connectivity"]
    parser.add_argument(
        "--points",
        type=int,
        default=defaults["points"],
        help="interpolation points from A to B, both included",
    )
    parser.add_argument(
        "--bn-policy",
        nargs="+",
        choices=BN_POLICIES,
        default=defaults["bn_policies"],
        help="BatchNorm statistics of each interpolated model (one curve per policy)",
    )
    parser.add_argument(
        "--part",
        choices=PARTS,
        default=DEFAULT_PART,
        help="the part that moves along the path; the rest stays A's (default: the full model)",
    )
    add_options(parser, BN_SAMPLE_OPTIONS)
    add_device_argument(parser)
    parser.add_argument(
        "--sharpness-radii", type=float, nargs="+", default=defaults["sharpness"]["radii"],
        help="radii of the filter-normalised perturbations of A and B",
    )  # fmt: skip
    parser.add_argument(
        "--sharpness-directions",
        type=int,
        default=defaults["sharpness"]["directions"],
        help="random directions per radius",
    )
    parser.add_argument(
        "--sharpness-seed",
        type=int,
        default=defaults["sharpness"]["seed"],
        help="seed of the random directions",
    )
    parser.add_argument("--sharpness", type=Path, default=None, help="sharpness CSV of A and B")
    parser.add_argument("-o", "--output", type=Path, required=True, help="curve CSV")
    parser.add_argument("--figure", type=Path, required=True, help="figure PNG")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.set_defaults(handler=_connectivity)


REGISTER = (_add_annotation_style, _add_connectivity)
