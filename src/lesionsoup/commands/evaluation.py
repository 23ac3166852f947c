"""Subcommand of the evaluation stage: ``evaluate`` (the workflow's ``aggregate`` is a script)."""

from __future__ import annotations

import argparse
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


REGISTER = (_add_evaluate,)
