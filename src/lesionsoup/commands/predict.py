"""Subcommands for end users: predict (photographs to lesion maps), export (a model folder)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lesionsoup.commands.arguments import (
    Subcommands,
    add_device_argument,
    add_permissions_argument,
)

log = logging.getLogger("lesionsoup")

#: Mirror lesionsoup.inference.infer (not imported here, so that `--help` stays fast; a test
#: keeps them equal).
FLIP_CHOICES = ("horizontal", "vertical", "both")
MODE_CHOICES = ("whole", "sliding")
#: Mirrors lesionsoup.deploy.export.LAYOUTS (tests/deploy/test_export_smp.py keeps them equal).
EXPORT_FORMATS = ("lesionsoup", "smp")
#: Mirrors lesionsoup.deploy.predict.MAX_PIXELS (the same test keeps them equal).
MAX_PIXELS = 50_000_000
MAX_PIXELS_HELP = (
    "largest photograph decoded at full size (default 50 megapixels, ~3 GB at the peak); a "
    "larger JPEG is decoded at 1/2, 1/4 or 1/8 of each side, another format refused"
)
EXIT_CODES = (
    "Exit code: 0 when every photograph was predicted, or under --keep-going when at least "
    "one was; 1 when a photograph failed without --keep-going (the run stops there), when "
    "every photograph failed, or when the model or inputs are unusable. Whenever a "
    "photograph failed, OUT/failures.csv lists it and why."
)


def threshold(text: str) -> tuple[str | None, float]:
    """``0.4`` (every lesion) or ``MA=0.3`` (one lesion)."""
    name, _, value = text.rpartition("=")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0.5 or LESION=0.5, not {text!r}") from None
    return (name.upper() or None), number


def photograph_inputs(args: argparse.Namespace) -> list[Path]:
    """The photographs and folders, given as INPUT arguments or with -i, not both."""
    if args.inputs and args.input:
        raise ValueError(
            "photographs given both as INPUT arguments and with -i/--input; use one form"
        )
    if not (args.inputs or args.input):
        raise ValueError("no photographs: give INPUT arguments or -i/--input")
    return args.inputs or args.input


def _predict(args: argparse.Namespace) -> None:
    import torch

    from lesionsoup.core.device import pick_device
    from lesionsoup.core.lesions import parse_lesions
    from lesionsoup.deploy.predict import PredictOptions, predict_photographs

    inputs = photograph_inputs(args)
    torch.set_num_threads(args.threads)
    default = [value for name, value in args.threshold if name is None]
    per_lesion = {name: value for name, value in args.threshold if name is not None}
    parse_lesions(list(per_lesion))  # rejects unknown lesion names
    options = PredictOptions(
        size=args.size,
        threshold=default[-1] if default else 0.5,
        lesion_thresholds={parse_lesions([n])[0].value: v for n, v in per_lesion.items()},
        mode=args.mode,
        tile=args.tile,
        overlap=args.overlap,
        tta=tuple(args.tta),
        batch_size=args.batch_size,
        keep_going=args.keep_going,
        max_pixels=args.max_pixels,
        overlay=not args.no_overlay,
        progress=not args.no_progress,
        resume=args.resume,
        save_probabilities=args.save_probabilities,
    )
    device = str(pick_device(args.device))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA GPU is available here")
    report = predict_photographs(args.model, inputs, args.output, options, device)
    log.info(
        "%d photographs predicted into %s, %d kept from before, %d failed",
        report.predicted,
        args.output,
        report.kept,
        len(report.failures),
    )
    if report.failures and not (report.predicted or report.kept):
        raise ValueError(f"every photograph failed; see {args.output / 'failures.csv'}")


def _export(args: argparse.Namespace) -> None:
    from lesionsoup.deploy.export import export_model

    out = export_model(
        args.model,
        args.output,
        size=args.size,
        metrics_csv=args.metrics,
        metrics_model=args.metrics_model,
        caches=args.cache,
        layout=args.layout,
    )
    log.info("exported %s to %s", args.model, out)


def _add_photographs_and_outputs(parser: argparse.ArgumentParser) -> None:
    """INPUT or -i, -o, and what is written into the output folder."""
    inputs = parser.add_argument(
        "inputs", type=Path, nargs="+", metavar="INPUT", help="photo or folder (or use -i)"
    )
    inputs.required = False  # -i may give them instead: photograph_inputs wants one form
    parser.add_argument(
        "-i",
        "--input",
        type=Path,
        action="append",
        default=[],
        help="photo or folder (repeatable), instead of INPUT arguments",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output folder; an existing one is kept, each photograph's folder in it replaced, "
        "and its lesions.csv, failures.csv and predict.json describe this run alone (but see "
        "--continue)",
    )
    parser.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="keep the photographs already predicted into the output folder (every output "
        "complete) and predict the rest; lesions.csv lists both. A folder predicted by "
        "another model or with other options (predict.json) is refused",
    )
    parser.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write <id>/probabilities.npz: per lesion (key: its name) the float32 "
        "probability map at the photograph's size; the masks are these >= the thresholds",
    )


def _add_predict(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "predict",
        help="segment lesions in fundus photographs (probability maps, masks, overlays, CSV)",
        description="For each photograph (JPEG, PNG or TIFF; folders are searched recursively): "
        "detect the field of view, crop and resize it to the model's resolution, predict, map "
        "back to the photograph's size, and write per lesion an 8-bit probability map and a "
        "binary mask, an overlay with a legend, and lesions.csv (areas in pixels and % of the "
        "field of view, connected-component counts). Photographs above --max-pixels are "
        "decoded reduced (JPEG) or refused.",
        epilog=EXIT_CODES,
    )
    parser.add_argument(
        "model",
        type=Path,
        help="a checkpoint, an ensemble .json, an exported model folder, or the Hugging Face "
        "Hub id of one (org/name[@revision], read from the local Hugging Face cache)",
    )
    _add_photographs_and_outputs(parser)
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="preprocessing resolution (default: the training resolution recorded with the "
        "model; a model that records none needs this option)",
    )
    parser.add_argument(
        "--threshold",
        type=threshold,
        action="append",
        default=[],
        help="mask threshold: 0.5 for every lesion, or LESION=0.3 (repeatable; default 0.5)",
    )
    _add_inference_options(parser)
    add_device_argument(parser)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for inference")
    parser.add_argument(
        "--keep-going", action="store_true", help="skip bad photographs, list them in failures.csv"
    )
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help=MAX_PIXELS_HELP)
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlay.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_permissions_argument(parser)
    parser.set_defaults(handler=_predict)


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    """How the model runs over a photograph: whole or tiled, flips, batch."""
    parser.add_argument(
        "--mode",
        choices=MODE_CHOICES,
        default="whole",
        help="the whole image at once, or sliding tiles (--tile, --overlap)",
    )
    parser.add_argument(
        "--tile", type=int, default=None, help="sliding tile (default: training patch size)"
    )
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding tile overlap")
    parser.add_argument(
        "--tta",
        choices=FLIP_CHOICES,
        action="append",
        default=[],
        help="flip test-time augmentation (repeatable)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=1, help="photographs (or tiles) per batch"
    )


def _add_export(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "export",
        help="write a self-contained model folder with a model card (predict accepts it)",
        description="Copy a checkpoint, merged model or ensemble (every member) with its "
        "metadata into one folder, record the preprocessing resolution, and write README.md: "
        "training data, method, validation and test metrics, intended use and limits.",
    )
    parser.add_argument("model", type=Path, help="a checkpoint or an ensemble .json")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder to write")
    parser.add_argument(
        "--format",
        dest="layout",
        choices=EXPORT_FORMATS,
        default="lesionsoup",
        help="lesionsoup: the checkpoints as they are; smp: each also a "
        "segmentation_models_pytorch folder (config.json, strict-loading weights) that "
        "smp.from_pretrained loads and the Hugging Face Hub hosts (default: lesionsoup)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="the training resolution (default: recorded with the model, else the --cache "
        "caches'; a model that records neither needs this option)",
    )
    parser.add_argument("--metrics", type=Path, default=None, help="metrics.csv with test scores")
    parser.add_argument(
        "--metrics-model",
        default=None,
        help="the model's name in the metrics' 'model' column (default: MODEL as given)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        action="append",
        default=[],
        help="a training cache, for image counts and, where the model records none, the "
        "resolution (repeatable)",
    )
    add_permissions_argument(parser)
    parser.set_defaults(handler=_export)


REGISTER = (_add_predict, _add_export)
