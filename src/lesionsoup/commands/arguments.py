"""Argument types and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lesionsoup.core.permissions import DEFAULT_MODE, MODES
from lesionsoup.plan.merge_rules import EPOCH, BatchNormSample


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "null", "") else int(text)


def bn_patches(text: str) -> int | str:
    """``--bn-patches``: a count of patches (>= 1), or ``epoch`` (one epoch-equivalent)."""
    if text == EPOCH:
        return EPOCH
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected {EPOCH!r} or a count >= 1, got {text!r}")
    return int(text)


def add_bn_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--bn-*`` options of ``BatchNormSample`` (for the recompute BatchNorm policy)."""
    sample = BatchNormSample()
    parser.add_argument(
        "--bn-patches",
        type=bn_patches,
        default=sample.patches,
        help=f"recompute: augmented training patches, a count or {EPOCH!r} (enough to tile "
        f"every training image once; default {sample.patches})",
    )
    parser.add_argument(
        "--bn-batch-size", type=int, default=sample.batch_size, help="recompute: batch size"
    )
    parser.add_argument(
        "--bn-seed", type=int, default=sample.seed, help="recompute: patch sampling seed"
    )


def bn_sample(args: argparse.Namespace) -> BatchNormSample:
    """The ``BatchNormSample`` of parsed ``--bn-*`` options."""
    return BatchNormSample(args.bn_patches, args.bn_batch_size, args.bn_seed)


def add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    """The bootstrap over test images (``evaluation.bootstrap``; its schema's defaults)."""
    parser.add_argument("--resamples", type=int, default=1000, help="resamples of the test images")
    parser.add_argument("--confidence", type=float, default=0.95, help="the intervals' level")
    parser.add_argument(
        "--seed", type=int, default=0, help="bootstrap seed (with each test set's name)"
    )


def add_permissions_argument(parser: argparse.ArgumentParser) -> None:
    """``--permissions``: the ``results.mode`` of a command run by hand; ``cli.main`` applies it."""
    parser.add_argument(
        "--permissions",
        choices=list(MODES),
        default=DEFAULT_MODE,
        help="who may read what it writes: group (owner and group read, others nothing; the "
        "default), private (owner only) or umask (your umask as it is); narrows the umask",
    )


def add_pretrained_argument(parser: argparse.ArgumentParser) -> None:
    """``--pretrained-cache`` of the commands that build a model from its pretrained encoder."""
    parser.add_argument(
        "--pretrained-cache",
        type=Path,
        default=None,
        help="folder the pretrained encoder weights (model.encoder_weights) are read from, "
        "never using the network; `lesionsoup fetch-weights` fills it. Default: the Hugging "
        "Face cache ($HF_HOME), downloading them there once when missing",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def add_training_progress_arguments(parser: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--log-every`` of the commands that train."""
    from lesionsoup.training.progress import LOG_EVERY

    parser.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 on GPUs with native bf16, fp16 with loss scaling on older ones, fp32 "
        "on the CPU), bf16, fp16 or fp32",
    )
    parser.add_argument(
        "--log-every",
        type=int,
        default=LOG_EVERY,
        help=f"steps between loss read-backs and progress lines (default {LOG_EVERY})",
    )


def open_caches(directories: list[Path]) -> dict[str, Any]:
    """Dataset name (the folder's name) -> ``lesionsoup.data.cache.Cache``."""
    from lesionsoup.data.cache import Cache

    return {directory.name: Cache(directory) for directory in directories}


Subcommands = argparse._SubParsersAction
