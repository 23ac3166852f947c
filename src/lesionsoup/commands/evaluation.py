"""Subcommands of the evaluation stages: evaluate, aggregate."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from lesionsoup.commands.arguments import Subcommands, add_device_argument, json_object

log = logging.getLogger("lesionsoup")


def _evaluate(args: argparse.Namespace) -> None:
    from lesionsoup.core.device import pick_device
    from lesionsoup.evaluation.evaluate import evaluate, save_evaluation
    from lesionsoup.inference.infer import InferenceSettings

    result = evaluate(
        args.model,
        args.cache,
        split=args.split,
        settings=InferenceSettings.from_dict(args.settings),
        bins=args.bins,
        resolution=args.resolution,
        manifest=args.manifest,
        device=pick_device(args.device),
        progress=True,
    )
    save_evaluation(result, args.output)
    log.info(
        "%s on %s: %d images, %.1f Mpx in %.1f s",
        args.model,
        result["test_dataset"],
        result["images"],
        result["megapixels"],
        result["seconds"],
    )


def _aggregate(args: argparse.Namespace) -> None:
    from lesionsoup.evaluation.evaluate import aggregate

    models = json.loads(args.models.read_text())
    table = aggregate(args.evaluations, args.output, {k: tuple(v) for k, v in models.items()})
    log.info("%d rows -> %s", len(table), args.output)


def _add_evaluate(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="evaluate one model (checkpoint, merged model or ensemble) on one test set",
        description="Run a model over a cache split and write the per-lesion histograms of "
        "positive and negative pixels over probability bins, plus per-image counts (JSON).",
    )
    parser.add_argument("model", type=Path, help=".safetensors checkpoint or ensemble .json")
    parser.add_argument("cache", type=Path, help="the test dataset's cache")
    parser.add_argument("-o", "--output", type=Path, required=True, help="evaluation JSON")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--settings", type=json_object, default={}, help="inference settings (JSON)"
    )
    parser.add_argument("--bins", type=int, default=2000)
    parser.add_argument("--resolution", choices=["cache", "native"], default="cache")
    parser.add_argument(
        "--manifest", type=Path, default=None, help="the dataset's manifest (native resolution)"
    )
    add_device_argument(parser)
    parser.set_defaults(handler=_evaluate)


def _add_aggregate(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "aggregate",
        help="gather evaluation JSONs into the long metrics.csv",
        description="Write metrics.csv (model, train_combo, method, test_dataset, lesion, "
        "metric, value) and the conventions behind the numbers next to it.",
    )
    parser.add_argument("evaluations", type=Path, nargs="+")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument(
        "--models",
        type=Path,
        required=True,
        help="JSON file mapping each model path to [train_combo, method]",
    )
    parser.set_defaults(handler=_aggregate)


REGISTER = (_add_evaluate, _add_aggregate)
