"""The `lesionsoup` command: every workflow stage, callable on its own.

Each subcommand parses its arguments and calls one library function; the
Snakemake rules call these subcommands, so a stage behaves the same inside and
outside the workflow.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("lesionsoup")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "null", "") else int(text)


def _synth(args: argparse.Namespace) -> None:
    from lesionsoup.datasets.synthetic import generate

    roots = generate(
        args.out,
        images=args.images,
        seed=args.seed,
        scale=args.scale,
        styles=args.styles,
        workers=args.threads,
        progress=True,
    )
    for name, root in roots.items():
        log.info("%s: %s", name, root)


def _index(args: argparse.Namespace) -> None:
    from lesionsoup.datasets import index_dataset
    from lesionsoup.manifest import write_manifest

    manifest = index_dataset(args.dataset, args.root, args.options)
    write_manifest(manifest, args.output)
    counts = manifest.groupby("split").size().to_dict()
    log.info("%s: %d images %s -> %s", args.dataset, len(manifest), counts, args.output)


def _preprocess(args: argparse.Namespace) -> None:
    from lesionsoup.manifest import read_manifest
    from lesionsoup.preprocess import MaskRules, build_cache

    rules = MaskRules(
        threshold=args.mask_threshold,
        uncertain_value=args.uncertain_value,
        uncertain_as=args.uncertain_as,
    )
    report = build_cache(
        read_manifest(args.manifest),
        args.output,
        size=args.size,
        rules=rules,
        threads=args.threads,
        on_bad_image=args.on_bad_image,
    )
    log.info("%s", report)


def _caches(directories: list[Path]) -> dict:
    from lesionsoup.cache import Cache

    return {directory.name: Cache(directory) for directory in directories}


def _train(args: argparse.Namespace) -> None:
    from lesionsoup.specs import ModelSpec, TrainSettings
    from lesionsoup.train import train_run

    metadata = train_run(
        args.output,
        _caches(args.cache),
        ModelSpec.from_dict(args.model),
        TrainSettings.from_dict(args.settings),
        init=args.init,
        threads=args.threads,
        workers=args.workers,
        device=args.device,
    )
    log.info("finished at step %d: validation %s", metadata["step"], metadata["validation"])


def _warmup(args: argparse.Namespace) -> None:
    from lesionsoup.specs import ModelSpec, TrainSettings
    from lesionsoup.train import publish_init, train_run

    run_dir = args.output.with_suffix("")
    train_run(
        run_dir,
        _caches(args.cache),
        ModelSpec.from_dict(args.model),
        TrainSettings.from_dict(args.settings),
        threads=args.threads,
        workers=args.workers,
        device=args.device,
    )
    publish_init(run_dir, args.output)
    log.info("shared initialisation: %s", args.output)


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache", type=Path, action="append", required=True, help="a dataset cache (repeatable)"
    )
    parser.add_argument("--model", type=_json_object, required=True, help="model spec (JSON)")
    parser.add_argument(
        "--settings", type=_json_object, required=True, help="training settings (JSON)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=None, help="data-loading processes (default threads - 1)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train one U-Net run (resumes if interrupted, skips if finished)",
        description="Train a U-Net on lesion-aware patches from one or more caches, from the "
        "combination's shared initialisation. Outputs best/last checkpoints, snapshots, "
        "log.csv, validation.csv and curves.png in the run folder.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="run folder")
    parser.add_argument("--init", type=Path, default=None, help="shared initialisation")
    _add_training_arguments(parser)
    parser.set_defaults(handler=_train)


def _add_warmup(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "warmup",
        help="make a combination's shared initialisation (frozen-encoder warm-up)",
        description="Train the decoder with the encoder frozen and save the result as the "
        "shared initialisation every run of the combination starts from.",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="initialisation .safetensors to write"
    )
    _add_training_arguments(parser)
    parser.set_defaults(handler=_warmup)


def _add_synth(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "synth",
        help="write synthetic fundus datasets in the five native layouts",
        description="Synthetic colour fundus photographs with lesion masks, written in the native "
        "folder layout of IDRiD, DDR, FGADR, RETLES and MAPLES-DR (both layouts). "
        "The same seed gives byte-identical files.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the trees into")
    parser.add_argument("--images", type=int, default=12, help="images per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="native sizes x this factor")
    parser.add_argument(
        "--styles", type=_json_object, default={}, help="annotation-style overrides (JSON)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.set_defaults(handler=_synth)


def _add_index(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "index",
        help="read a dataset in its native layout and write its manifest",
        description="Write the manifest of one dataset (image, masks per lesion, split, size).",
    )
    parser.add_argument("dataset", help="IDRID, DDR, FGADR, RETLES or MAPLES")
    parser.add_argument("root", type=Path, help="the dataset folder as downloaded")
    parser.add_argument("-o", "--output", type=Path, required=True, help="manifest CSV to write")
    parser.add_argument(
        "--options",
        type=_json_object,
        default={},
        help='adapter options as JSON, e.g. \'{"split": {"seed": 0, "test": 0.3}}\'',
    )
    parser.set_defaults(handler=_index)


def _add_preprocess(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "preprocess",
        help="crop, resize and cache the images and masks of a manifest",
        description="Detect the field of view, crop the black borders, resize to a square and "
        "write the cache (RGB + label plane, patch-readable, with geometry records).",
    )
    parser.add_argument("manifest", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, help="cache folder")
    parser.add_argument("--size", type=int, default=1536)
    parser.add_argument("--mask-threshold", type=int, default=128)
    parser.add_argument(
        "--uncertain-value",
        type=_optional_int,
        default=None,
        help="mask value of excluded annotations (RETLES: 127), or none",
    )
    parser.add_argument(
        "--uncertain-as", choices=["ignore", "lesion", "background"], default="ignore"
    )
    parser.add_argument("--on-bad-image", choices=["fail", "skip"], default="fail")
    parser.add_argument("--threads", type=int, default=1)
    parser.set_defaults(handler=_preprocess)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_synth,
    _add_index,
    _add_preprocess,
    _add_warmup,
    _add_train,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionsoup",
        description="Cross-dataset retinal lesion segmentation: data, training, soups, evaluation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, OSError) as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
