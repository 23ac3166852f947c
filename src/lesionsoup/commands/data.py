"""Subcommands of the data stages: synth, index, preprocess."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from lesionsoup.commands.arguments import Subcommands, json_object, optional_int
from lesionsoup.data.datasets import ADAPTERS, default_styles, get_adapter
from lesionsoup.data.datasets.native import UNRECOGNISED_CHOICES
from lesionsoup.data.mask_resize import MASK_RESIZE_RULES
from lesionsoup.data.synthetic import LAYOUTS

log = logging.getLogger("lesionsoup")

#: A registry entry: a dataset's adapter or its synthetic layout.
Entry = TypeVar("Entry")


def _synth(args: argparse.Namespace) -> None:
    from lesionsoup.data.synthetic.generator import generate
    from lesionsoup.data.tree import stamp_contents, write_stamp

    roots = generate(
        args.out,
        images=args.images,
        seed=args.seed,
        scale=args.scale,
        styles=args.styles,
        dataset_styles=args.dataset_styles,
        lesion_sizes=args.lesion_sizes,
        workers=args.threads,
        progress=True,
    )
    for name, root in roots.items():
        log.info("%s: %s", name, root)
    for stamp, stamped in args.stamps.items():
        write_stamp(stamp, stamp_contents(stamped))


def _index(args: argparse.Namespace) -> None:
    from lesionsoup.data.datasets.index import index_dataset
    from lesionsoup.data.manifest import write_manifest

    manifest = index_dataset(args.dataset, args.root, args.options, args.unrecognised)
    write_manifest(manifest, args.output)
    counts = manifest.groupby("split").size().to_dict()
    log.info("%s: %d images %s -> %s", args.dataset, len(manifest), counts, args.output)


def _preprocess(args: argparse.Namespace) -> None:
    from lesionsoup.data.manifest import read_manifest
    from lesionsoup.data.preprocess import MaskRules, build_cache

    rules = MaskRules(
        threshold=args.mask_threshold,
        uncertain_value=args.uncertain_value,
        uncertain_as=args.uncertain_as,
        lesion_rules=args.lesion_rules,
        resize=args.mask_resize,
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


def _dataset_name(name: str) -> str:
    """The registered name of a dataset typed in any letter case (``idrid`` is ``IDRID``);
    any other name is left to ``index_dataset``, whose options may describe it as a
    dataset of the user's own (``layout: generic``), or which names the known ones."""
    try:
        return get_adapter(name).name
    except ValueError:
        return name


def _per_dataset(fact: Callable[[Entry], object], registry: Mapping[str, Entry]) -> str:
    """``NAME: fact`` of each registered dataset that has the fact, for a help text (the
    help then names what the registry holds, never a list of its own)."""
    facts = {name: fact(entry) for name, entry in sorted(registry.items())}
    return "; ".join(f"{name}: {value}" for name, value in facts.items() if value not in (None, ""))


def _add_synth(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "synth",
        help="write synthetic fundus datasets in the native layout of every registered dataset",
        description="Synthetic colour fundus photographs with lesion masks, written in the native "
        f"folder layout of each registered dataset ({', '.join(sorted(LAYOUTS))}); further "
        f"trees in another layout of the same images: "
        f"{_per_dataset(lambda layout: ', '.join(layout.trees), LAYOUTS)}. "
        "The same seed gives byte-identical files.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the trees into")
    parser.add_argument("--images", type=int, default=12, help="images per dataset")
    parser.add_argument(
        "--seed", type=int, default=0, help="generator seed (the same seed, the same bytes)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="native sizes x this factor")
    parser.add_argument(
        "--styles", type=json_object, default={}, help="annotation-style overrides (JSON)"
    )
    parser.add_argument(
        "--dataset-styles",
        type=json_object,
        default=None,
        help=f"annotation style of each dataset (JSON), default {json.dumps(default_styles())}",
    )
    parser.add_argument(
        "--lesion-sizes",
        type=json_object,
        default={},
        help="size factor per lesion class (JSON), e.g. '{\"MA\": 3}'; default 1",
    )
    parser.add_argument(
        "--stamps",
        type=json_object,
        default={},
        help="JSON: tree stamps to write once the trees are written, each with the roots it "
        'fingerprints, e.g. \'{"resources/trees/IDRID.json": ["out/IDRID"]}\'',
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="processes writing the datasets' trees"
    )
    parser.set_defaults(handler=_synth)


def _add_index(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "index",
        help="read a dataset in its native layout and write its manifest",
        description="Write the manifest of one dataset (image, masks per lesion, split, size).",
    )
    parser.add_argument(
        "dataset",
        type=_dataset_name,
        help=f"one of {', '.join(sorted(ADAPTERS))}, in any letter case",
    )
    parser.add_argument(
        "root",
        type=Path,
        help="the dataset folder as downloaded, the folder above it, or an archive extracted "
        "twice (the log says which it found)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="manifest CSV to write")
    parser.add_argument(
        "--options",
        type=json_object,
        default={},
        help='adapter options as JSON, e.g. \'{"split": {"seed": 0, "test": 0.3, '
        '"train_fraction": 0.5}}\'; "of": SOURCE indexes a subset dataset of SOURCE (its '
        "adapter, its split draws); besides split and of: "
        f"{_per_dataset(lambda adapter: ', '.join(adapter.options), ADAPTERS)}",
    )
    parser.add_argument(
        "--unrecognised",
        choices=UNRECOGNISED_CHOICES,
        default="warn",
        help="folders and files the adapter does not read: one warning naming them, or an "
        "error (an image left without any mask by them is an error either way)",
    )
    parser.set_defaults(handler=_index)


def _add_preprocess(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "preprocess",
        help="crop, resize and cache the images and masks of a manifest",
        description="Detect the field of view, crop the black borders, resize to a square and "
        "write the cache (RGB + label plane, patch-readable, with geometry records).",
    )
    parser.add_argument("manifest", type=Path, help="the dataset's manifest CSV (lesionsoup index)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="cache folder")
    parser.add_argument(
        "--size", type=int, default=1536, help="side of the square cached images, pixels"
    )
    parser.add_argument(
        "--mask-threshold",
        type=int,
        default=128,
        help="a mask pixel at or above this value is lesion (before --lesion-rules)",
    )
    parser.add_argument(
        "--uncertain-value",
        type=optional_int,
        default=None,
        help="mask value of excluded annotations, or none "
        f"({_per_dataset(lambda adapter: adapter.uncertain_value, ADAPTERS)})",
    )
    parser.add_argument(
        "--uncertain-as",
        choices=["ignore", "lesion", "background"],
        default="ignore",
        help="what a pixel of --uncertain-value becomes: excluded from loss and metrics "
        "(ignore), lesion or background",
    )
    parser.add_argument(
        "--lesion-rules",
        type=json.loads,
        default={},
        help='JSON: per-lesion rules over --mask-threshold, e.g. \'{"HE": {"values": [2]}}\'',
    )
    parser.add_argument(
        "--mask-resize",
        choices=MASK_RESIZE_RULES,
        default=MASK_RESIZE_RULES[0],
        help="how binarised masks are resized onto the cache grid (and ROI-space masks into "
        "their photograph): preserve never erases a lesion (a pixel at least half lesion, and "
        "specks a pixel too small drawn at their own scale); nearest copies one native pixel "
        "per cache pixel, cv2.INTER_NEAREST as the authors' loaders, so a microaneurysm "
        "smaller than a cache pixel may vanish",
    )
    parser.add_argument(
        "--on-bad-image",
        choices=["fail", "skip"],
        default="fail",
        help="an unreadable photograph or mask stops the job (fail), or is listed in "
        "skipped.csv and left out (skip)",
    )
    parser.add_argument("--threads", type=int, default=1, help="processes preprocessing images")
    parser.set_defaults(handler=_preprocess)


REGISTER = (_add_synth, _add_index, _add_preprocess)
