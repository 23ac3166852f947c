"""Subcommands of the evaluation stage: ``evaluate``, and ``uncertainty`` (bootstrap intervals
and paired comparisons of evaluation files; the workflow's ``aggregate`` is a script)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lesionsoup.commands.arguments import (
    Subcommands,
    add_bootstrap_arguments,
    add_device_argument,
    json_object,
)

log = logging.getLogger("lesionsoup")


def _test_sets(args: argparse.Namespace) -> list:
    from lesionsoup.evaluation.per_model import EvaluationTarget

    manifests = args.manifest or [None] * len(args.cache)
    if not len(args.cache) == len(args.output) == len(manifests):
        raise SystemExit(
            f"evaluate: {len(args.cache)} caches need as many --output files"
            f" ({len(args.output)} given) and --manifest files, if any ({len(args.manifest or [])})"
        )
    triples = zip(args.cache, args.output, manifests, strict=True)
    return [EvaluationTarget(*paths) for paths in triples]


def _evaluate(args: argparse.Namespace) -> None:
    from lesionsoup.core.device import pick_device
    from lesionsoup.evaluation.per_model import evaluate_model
    from lesionsoup.inference.infer import InferenceSettings

    tests = _test_sets(args)
    reused = evaluate_model(
        args.model,
        tests,
        store=args.store,
        split=args.split,
        settings=InferenceSettings.from_dict(args.settings),
        bins=args.bins,
        resolution=args.resolution,
        device=pick_device(args.device),
        progress=True,
        labels=args.labels,
    )
    for test, again in zip(tests, reused, strict=True):
        log.info("%s on %s: %s", args.model, test.cache, "reused" if again else "evaluated")


def _add_evaluate(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="evaluate one model (checkpoint, merged model or ensemble) on its test sets",
        description="Run a model over the split of each test cache (loaded once) and write, per "
        "cache, the per-lesion histograms of positive and negative pixels over probability bins, "
        "plus per-image counts (JSON). With --store, a result already computed from the same "
        "inputs is reused instead of evaluated again.",
    )
    parser.add_argument("model", type=Path, help=".safetensors checkpoint or ensemble .json")
    parser.add_argument("cache", type=Path, nargs="+", help="the test datasets' caches")
    parser.add_argument(
        "-o", "--output", type=Path, nargs="+", required=True, help="one evaluation JSON a cache"
    )
    parser.add_argument("--split", default="test", help="the caches' split to evaluate on")
    parser.add_argument(
        "--settings", type=json_object, default={}, help="inference settings (JSON)"
    )
    parser.add_argument("--bins", type=int, default=2000, help="probability bins")
    parser.add_argument(
        "--resolution",
        choices=["cache", "native"],
        default="cache",
        help="score at the cache's resolution, or mapped back onto the native masks",
    )
    parser.add_argument(
        "--labels",
        choices=["multilabel", "priority"],
        default="multilabel",
        help="each lesion's own mask, or the softmax head's priority label map with Dice from "
        "the argmax (softmax models only)",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        nargs="+",
        default=None,
        help="the datasets' manifests, one a cache (native resolution)",
    )
    parser.add_argument("--store", type=Path, default=None, help="folder of results kept for reuse")
    add_device_argument(parser)
    parser.set_defaults(handler=_evaluate)


def _named_pairs(pairs: dict) -> dict[str, tuple[str, str]]:
    """``--pairs``' {name: {a, b}} as name -> (a, b)."""
    try:
        return {name: (str(pair["a"]), str(pair["b"])) for name, pair in pairs.items()}
    except (KeyError, TypeError):
        raise SystemExit(
            f"uncertainty: --pairs needs {{name: {{a: model, b: model}}}}, not {pairs}"
        ) from None


def _uncertainty(args: argparse.Namespace) -> None:
    from lesionsoup.core.atomic import write_csv
    from lesionsoup.evaluation.evaluate import load_model_table
    from lesionsoup.evaluation.uncertainty import (
        BASELINE,
        BootstrapSettings,
        load_scored,
        uncertainty,
    )

    settings = BootstrapSettings(args.resamples, args.confidence, args.seed, args.alpha)
    scored = load_scored(args.evaluations, load_model_table(args.models))
    tables = uncertainty(scored, args.metric, settings, _named_pairs(args.pairs), args.threads)
    write_csv(tables.intervals, args.intervals)
    write_csv(tables.comparisons, args.comparisons)
    tables.replicates.save(args.replicates)
    comparisons = tables.comparisons
    log.info(
        "%d comparisons (%d named), %d significant after Holm",
        len(comparisons),
        (comparisons["comparison"] != BASELINE).sum(),
        comparisons["significant"].sum(),
    )


def _add_uncertainty(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "uncertainty",
        help="bootstrap intervals and paired comparisons from evaluation files",
        description="Resample the test images of each evaluation file (its per-image "
        "histograms) once: a percentile interval for every pooled metric, the headline "
        "metric's resamples (.npz), and each model against its combination's first single "
        "model, plus the named pairs, on the same images, Holm-adjusted within each lesion.",
    )
    parser.add_argument("evaluations", type=Path, nargs="+", help="evaluation JSON files")
    parser.add_argument(
        "--models", type=Path, required=True, help="model table (path -> combination, method)"
    )
    parser.add_argument("--metric", default="ap", help="pooled headline metric (comparisons)")
    add_bootstrap_arguments(parser)
    parser.add_argument("--alpha", type=float, default=0.05, help="Holm-adjusted significance")
    parser.add_argument(
        "--pairs",
        type=json_object,
        default={},
        help="named comparisons (JSON): {name: {a: model, b: model}}, b - a",
    )
    parser.add_argument("--intervals", type=Path, required=True, help="metrics_ci.csv to write")
    parser.add_argument("--comparisons", type=Path, required=True, help="comparisons CSV to write")
    parser.add_argument(
        "--replicates", type=Path, required=True, help="the headline metric's resamples (.npz)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="processes sharing the (model, test set) pairs"
    )
    parser.set_defaults(handler=_uncertainty)


REGISTER = (_add_evaluate, _add_uncertainty)
