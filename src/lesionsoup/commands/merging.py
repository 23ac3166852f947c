"""Subcommands of the merge stage: merge (weight-space soups), ensemble (prediction space),
and size-curve (both against the number of members)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lesionsoup.commands.arguments import (
    Subcommands,
    add_bootstrap_arguments,
    add_cache_arguments,
    add_device_argument,
    json_object,
    open_caches,
)
from lesionsoup.core.merge_rules import SIZE_CURVE_SOUPS
from lesionsoup.plan.options import (
    ENSEMBLE_OPTIONS,
    MERGE_OPTIONS,
    SIZE_CURVE_OPTIONS,
    add_options,
    bn_sample,
)

log = logging.getLogger("lesionsoup")


def _device(name: str) -> str:
    from lesionsoup.core.device import pick_device

    return str(pick_device(name))


def _merge(args: argparse.Namespace) -> None:
    import torch

    from lesionsoup.merging.stage import merge_stage

    torch.set_num_threads(args.threads)
    with open_caches(args.cache, args.stage_caches) as caches:
        metadata = merge_stage(
            args.output,
            args.ingredients,
            caches,
            args.rule,
            bn_policy=args.bn_policy,
            group_by=args.group_by,
            part=args.part,
            keep=args.keep,
            anchor=args.anchor,
            bn_sample=bn_sample(args),
            device=_device(args.device),
            workers=max(0, args.threads - 1),
        )
    kept = sum(weight > 0 for weight in metadata["weights"].values())
    log.info(
        "%s: %d of %d ingredients, validation %.4f, %.1f compute seconds",
        args.output,
        kept,
        len(metadata["weights"]),
        metadata["validation"]["score"],
        metadata["compute_seconds"],
    )


def _ensemble(args: argparse.Namespace) -> None:
    import torch

    from lesionsoup.merging.ensembles import ensemble_stage

    torch.set_num_threads(args.threads)
    with open_caches(args.cache, args.stage_caches) as caches:
        ensemble_stage(
            args.output, args.ingredients, caches, top=args.top, device=_device(args.device)
        )


def _size_curve(args: argparse.Namespace) -> None:
    from lesionsoup.analysis.size_curves import SizeCurveOptions, run_size_curve
    from lesionsoup.evaluation.uncertainty import BootstrapSettings
    from lesionsoup.inference.infer import InferenceSettings
    from lesionsoup.report.size_curves import plot_size_curves

    options = SizeCurveOptions(
        metric=args.metric,
        max_members=args.max_members,
        bn_policies={curve: getattr(args, f"{curve}_bn_policy") for curve in SIZE_CURVE_SOUPS},
        bn_sample=bn_sample(args),
        settings=InferenceSettings.from_dict(args.settings),
        bins=args.bins,
        evaluations=args.evaluations,
        bootstrap=BootstrapSettings(args.resamples, args.confidence, args.seed),
    )
    table = run_size_curve(
        args.ingredients, args.cache, options, args.output,
        stage_caches=args.stage_caches, device=args.device, threads=args.threads,
    )  # fmt: skip
    plot_size_curves(table, args.figure)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ingredients",
        type=Path,
        nargs="+",
        metavar="INGREDIENT",
        help="a checkpoint, a folder of checkpoints (snapshots) or a JSON ingredient list",
    )
    add_cache_arguments(
        parser, "a cache of the combination (repeatable); its valid split scores the candidates"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads; as many minus one load data"
    )
    add_device_argument(parser)


def _add_merge(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "merge",
        help="merge checkpoints in weight space (best, uniform, greedy, hierarchical, SWA, Model "
        "Stock, TIES)",
        description="Average compatible checkpoints (one shared initialisation) by a rule, "
        "selecting on the caches' validation split, and save the merged checkpoint with a "
        "sidecar listing ingredients, weights, selection trace, BatchNorm policy and cost, and "
        "the architecture and training resolution (cache_size) every ingredient must share.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help=".safetensors to write")
    add_options(parser, MERGE_OPTIONS)
    parser.add_argument(
        "--anchor",
        type=Path,
        default=None,
        help="model_stock, ties: the common start the updates are merged from, checked against "
        "the ingredients: their shared initialisation, or for an encoder soup of independent "
        "runs the pretrained start (`lesionsoup pretrained-start`). Default: the shared "
        "initialisation the ingredients' sidecars lead to",
    )
    _add_common(parser)
    parser.set_defaults(handler=_merge)


def _add_ensemble(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "ensemble",
        help="write a prediction-space ensemble of checkpoints (all, or the top k)",
        description="Write an ensemble file (JSON, kind 'ensemble') whose members are the "
        "candidates, or the top k of them by validation score. Every candidate must record the "
        "same architecture and training resolution (cache_size); the file records them too.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help=".json to write")
    add_options(parser, ENSEMBLE_OPTIONS)
    _add_common(parser)
    parser.set_defaults(handler=_ensemble)


def _add_size_curve(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "size-curve",
        help="test score and compute of uniform soups, greedy soups and ensembles over k members",
        description="Rank the candidates by validation score, keep the first K, and for k = 1..K "
        "evaluate on the caches' test splits the uniform soup of the first k, the greedy soup "
        "after considering the first k and the ensemble of the top k, each distinct model once "
        "(reusing the --evaluations files that are of a point's model with the same settings); "
        "write the long table (score, its bootstrap interval over the test images and compute "
        "seconds of each point) and its figure.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="table CSV to write")
    parser.add_argument("--figure", type=Path, required=True, help="figure PNG to write")
    add_options(parser, SIZE_CURVE_OPTIONS)
    parser.add_argument(
        "--settings", type=json_object, default={}, help="inference settings (JSON)"
    )
    parser.add_argument("--bins", type=int, default=2000, help="probability bins")
    parser.add_argument(
        "--evaluations",
        type=Path,
        nargs="*",
        default=[],
        metavar="FILE",
        help="evaluation files (lesionsoup evaluate) to reuse where one is a point's model on "
        "a test split with these settings and bins at cache resolution; the rest is evaluated",
    )
    add_bootstrap_arguments(parser)
    _add_common(parser)
    parser.set_defaults(handler=_size_curve)


REGISTER = (_add_merge, _add_ensemble, _add_size_curve)
