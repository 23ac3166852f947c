"""Subcommands of the report and analysis stages: figures, tables, costs, style, connectivity."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from lesionsoup.commands.arguments import Subcommands, json_object, open_caches

log = logging.getLogger("lesionsoup")


def _labelled(text: str) -> tuple[str, Path]:
    """``LABEL=PATH`` as a pair."""
    label, separator, path = text.partition("=")
    if not separator or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    return label, Path(path)


def _evaluations(metrics_csv: Path) -> list[Path]:
    """The evaluation files listed next to ``metrics.csv`` by ``evaluate.aggregate``."""
    from lesionsoup.evaluation.evaluate import conventions_path

    notes = conventions_path(metrics_csv)
    try:
        return [Path(p) for p in json.loads(notes.read_text())["evaluations"]]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{notes}: cannot list the evaluation files ({error!r})") from None


def _cross_dataset(args: argparse.Namespace) -> None:
    import pandas as pd

    from lesionsoup.report.cross_dataset import plot_fine_coarse, plot_heatmaps
    from lesionsoup.report.tables import read_metrics, write_csv

    metrics = read_metrics(args.metrics)
    matrices = plot_heatmaps(metrics, args.heatmap, args.metric, args.method)
    table = pd.concat(matrices, names=["lesion"])  # rows: lesion x combination; columns: tests
    write_csv(table.reset_index(), args.heatmap.with_suffix(".csv"))
    summary = plot_fine_coarse(metrics, args.coarse, args.fine_coarse, args.metric, args.method)
    write_csv(summary, args.fine_coarse.with_suffix(".csv"))


def _costs(args: argparse.Namespace) -> None:
    from lesionsoup.report.methods import cost_table
    from lesionsoup.report.tables import read_metrics, write_csv

    table = cost_table(read_metrics(args.metrics), _evaluations(args.metrics))
    write_csv(table, args.output)
    log.info("costs of %d models -> %s", len(table), args.output)


def _methods(args: argparse.Namespace) -> None:
    from lesionsoup.report.methods import plot_cost_gain, plot_method_comparison, read_costs
    from lesionsoup.report.tables import read_metrics, write_csv

    metrics = read_metrics(args.metrics)
    write_csv(
        plot_method_comparison(metrics, args.comparison, args.metric),
        args.comparison.with_suffix(".csv"),
    )
    gains = plot_cost_gain(metrics, read_costs(args.costs), args.cost_gain, args.metric)
    write_csv(gains, args.cost_gain.with_suffix(".csv"))


def _pr_curves(args: argparse.Namespace) -> None:
    from lesionsoup.report.pr_curves import plot_pr_curves
    from lesionsoup.report.tables import read_metrics, write_csv

    metrics = read_metrics(args.metrics)
    drawn = plot_pr_curves(metrics, _evaluations(args.metrics), args.output, args.top, args.metric)
    write_csv(drawn, args.output.with_suffix(".csv"))


def _short(checkpoint: Path) -> str:
    """A checkpoint's name for a figure title: its path below results/, without suffix."""
    parts = checkpoint.with_suffix("").parts
    return "/".join(parts[parts.index("results") + 1 :] if "results" in parts else parts[-3:])


def _annotation_style(args: argparse.Namespace) -> None:
    from lesionsoup.analysis.style_metrics import (
        STYLE_FEATURES,
        StyleSettings,
        cluster_styles,
        dataset_features,
        measure_datasets,
    )
    from lesionsoup.report.style_clusters import plot_area_distributions, plot_style_clusters
    from lesionsoup.report.tables import write_csv

    caches = open_caches(args.cache)
    components, features = measure_datasets(caches, settings=StyleSettings(**args.settings))
    columns = args.features or STYLE_FEATURES
    clustering = cluster_styles(dataset_features(features, columns), args.clusters)
    out = args.out_dir
    write_csv(components, out / "components.csv")
    write_csv(features, out / "features.csv")
    table = clustering.features.join(clustering.clusters).reset_index()
    write_csv(table, out / "clusters.csv")
    plot_style_clusters(clustering, out / "clusters.png")
    plot_area_distributions(components, out / "areas.png")
    log.info("annotation-style clusters: %s", clustering.clusters.to_dict())


def _connectivity(args: argparse.Namespace) -> None:
    import pandas as pd
    import torch

    from lesionsoup.analysis.connectivity import barrier, connectivity_curve
    from lesionsoup.report.connectivity import plot_connectivity
    from lesionsoup.report.tables import write_csv

    torch.set_num_threads(args.threads)
    caches = open_caches(args.cache)
    curves = {
        policy: connectivity_curve(
            args.a, args.b, caches, args.points, policy, args.bn_patches, args.patch_size
        )
        for policy in args.bn_policy
    }
    table = pd.concat(curves, names=["bn_policy"]).reset_index(level=0)
    write_csv(table, args.output)
    title = f"Linear mode connectivity\nA = {_short(args.a)}\nB = {_short(args.b)}"
    plot_connectivity(curves, args.figure, title)
    for policy, curve in curves.items():
        log.info(
            "%s: score barrier %.4f, loss barrier %.4f",
            policy,
            barrier(curve),
            barrier(curve, "loss", higher_is_better=False),
        )


def _qualitative(args: argparse.Namespace) -> None:
    from lesionsoup.data.cache import Cache
    from lesionsoup.report.qualitative import plot_qualitative

    shown = plot_qualitative(Cache(args.cache), dict(args.model), args.output, args.images)
    log.info("qualitative figure of %s -> %s", shown, args.output)


def _summary(args: argparse.Namespace) -> None:
    from lesionsoup.report.summary import write_summary

    write_summary(dict(args.table), args.output)


def _add_metrics_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("metrics", type=Path, help="the long metrics.csv of the evaluation")
    parser.add_argument("--metric", default="ap", help="metric to show (default: ap)")


def _add_cross_dataset(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "report-cross-dataset",
        help="heatmaps (combination x test set, per lesion) and the fine-vs-coarse figure",
    )
    _add_metrics_options(parser)
    parser.add_argument("--method", default="single", help="models averaged in each cell")
    parser.add_argument("--coarse", nargs="*", default=["RETLES"], help="coarse-style datasets")
    parser.add_argument("--heatmap", type=Path, required=True, help="heatmap PNG (+ .csv)")
    parser.add_argument("--fine-coarse", type=Path, required=True, help="figure PNG (+ .csv)")
    parser.set_defaults(handler=_cross_dataset)


def _add_costs(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "costs", help="costs.csv: training, merging and inference seconds of every model"
    )
    parser.add_argument(
        "metrics", type=Path, help="metrics.csv (its .conventions.json lists the evaluation files)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.set_defaults(handler=_costs)


def _add_methods(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "report-methods", help="method comparison and cost-vs-gain figures with their tables"
    )
    _add_metrics_options(parser)
    parser.add_argument("--costs", type=Path, required=True, help="costs.csv")
    parser.add_argument("--comparison", type=Path, required=True, help="figure PNG (+ .csv)")
    parser.add_argument("--cost-gain", type=Path, required=True, help="figure PNG (+ .csv)")
    parser.set_defaults(handler=_methods)


def _add_pr_curves(commands: Subcommands) -> None:
    parser = commands.add_parser("report-pr", help="PR curves of the best models per test set")
    _add_metrics_options(parser)
    parser.add_argument("--top", type=int, default=3, help="models per test set")
    parser.add_argument("-o", "--output", type=Path, required=True, help="figure PNG (+ .csv)")
    parser.set_defaults(handler=_pr_curves)


def _add_annotation_style(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "annotation-style", help="measure the datasets' annotation styles and cluster them"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        action="append",
        required=True,
        help="a dataset cache (repeatable; named by its folder)",
    )
    parser.add_argument("--clusters", type=int, default=2)
    parser.add_argument(
        "--features", nargs="+", default=None, help="dataset features to cluster on (default: all)"
    )
    parser.add_argument(
        "--settings",
        type=json_object,
        default={},
        help="StyleSettings as JSON (min_shape_area, band_px, gradient_sigma)",
    )
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.set_defaults(handler=_annotation_style)


def _add_connectivity(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "connectivity", help="linear mode connectivity curve between two checkpoints"
    )
    parser.add_argument("a", type=Path, help="checkpoint at lambda 0")
    parser.add_argument("b", type=Path, help="checkpoint at lambda 1")
    parser.add_argument(
        "--cache",
        type=Path,
        action="append",
        required=True,
        help="validation (and BatchNorm) data (repeatable)",
    )
    parser.add_argument("--points", type=int, default=11)
    parser.add_argument(
        "--bn-policy", nargs="+", choices=["average", "recompute"], default=["average", "recompute"]
    )
    parser.add_argument("--bn-patches", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("-o", "--output", type=Path, required=True, help="curve CSV")
    parser.add_argument("--figure", type=Path, required=True, help="figure PNG")
    parser.add_argument("--threads", type=int, default=1)
    parser.set_defaults(handler=_connectivity)


def _add_qualitative(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "qualitative", help="test images with ground truth and models' predictions"
    )
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument(
        "--model",
        type=_labelled,
        action="append",
        required=True,
        help="LABEL=PATH of a checkpoint or ensemble (repeatable)",
    )
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.set_defaults(handler=_qualitative)


def _add_summary(commands: Subcommands) -> None:
    parser = commands.add_parser("summary", help="summary.md of the study's main tables")
    parser.add_argument(
        "--table",
        type=_labelled,
        action="append",
        required=True,
        help="TITLE=CSV (repeatable, in order)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.set_defaults(handler=_summary)


REGISTER = (
    _add_cross_dataset,
    _add_costs,
    _add_methods,
    _add_pr_curves,
    _add_annotation_style,
    _add_connectivity,
    _add_qualitative,
    _add_summary,
)
