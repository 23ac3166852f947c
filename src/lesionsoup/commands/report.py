"""Subcommands of the analyses, which also serve by hand: annotation styles of any caches,
linear mode connectivity and sharpness between any two checkpoints. Each parses its options
and calls its analysis's stage function (``analysis/``), then draws that stage's figures
(``report/``): the analyses compute and write tables, the report draws.

The figures and tables drawn from ``metrics.csv`` are ``workflow/scripts/`` of their rules.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lesionsoup.commands.arguments import (
    Subcommands,
    add_cache_arguments,
    add_device_argument,
    json_object,
)
from lesionsoup.core.merge_rules import BN_POLICIES, DEFAULT_PART, PARTS
from lesionsoup.core.report_defaults import REPORT_DEFAULTS
from lesionsoup.plan.options import BN_SAMPLE_OPTIONS, add_options, bn_sample


def _annotation_style(args: argparse.Namespace) -> None:
    from lesionsoup.analysis.annotation_style import AnnotationStyleOptions, run_annotation_style
    from lesionsoup.analysis.style_metrics import STYLE_FEATURES, StyleSettings
    from lesionsoup.report.style_clusters import plot_annotation_styles

    style = StyleSettings(**args.settings)
    features = args.features or STYLE_FEATURES
    options = AnnotationStyleOptions(args.clusters, features, style, args.resamples, args.seed)
    styles = run_annotation_style(args.cache, options, args.out_dir, args.stage_caches)
    plot_annotation_styles(styles, args.out_dir)


def _connectivity(args: argparse.Namespace) -> None:
    from lesionsoup.analysis.landscape import ConnectivityOptions, run_connectivity
    from lesionsoup.analysis.sharpness import SharpnessOptions
    from lesionsoup.report.connectivity import plot_landscape

    perturbations = SharpnessOptions(
        args.sharpness_radii, args.sharpness_directions, args.sharpness_seed
    )
    options = ConnectivityOptions(
        args.points, args.bn_policy, args.part, bn_sample(args), perturbations
    )
    landscape = run_connectivity(
        (args.a, args.b), args.cache, options, args.output, args.sharpness,
        stage_caches=args.stage_caches, device=args.device, threads=args.threads,
    )  # fmt: skip
    plot_landscape(landscape, args.figure)


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
