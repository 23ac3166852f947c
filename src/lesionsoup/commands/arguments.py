"""Argument types and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lesionsoup.core.gpu_slots import Claim, claim_local_gpus
from lesionsoup.core.permissions import DEFAULT_MODE, MODES

if TYPE_CHECKING:
    from lesionsoup.training.run import RunOptions


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
    """``--device``: a command that has it may use a GPU, and ``claim_gpus`` places it."""
    parser.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda or cuda:N; auto and cuda first claim a GPU of this machine that "
        "no other lesionsoup job holds (lesionsoup.core.gpu_slots)",
    )


def claim_gpus(args: argparse.Namespace) -> Claim | None:
    """A GPU of this machine for a command whose ``--device`` is ``auto`` or ``cuda``: claimed
    before torch initialises CUDA, so that concurrent jobs run on different devices. None for
    other commands and devices (``cuda:N`` names its device), a job a scheduler placed, or a
    machine without GPUs."""
    if getattr(args, "device", None) not in ("auto", "cuda"):
        return None
    return claim_local_gpus(_devices_asked(args))


def _devices_asked(args: argparse.Namespace) -> int:
    """The devices a command's run trains on: its training settings' ``devices`` (a trial's
    in its study definition), else one."""
    settings = getattr(args, "settings", None) or getattr(args, "definition", {}).get("settings")
    return int((settings or {}).get("devices", 1))


def micro_batch_argument(value: str) -> str | int:
    """``--micro-batch``: ``auto`` or a positive number of patches."""
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"auto or a positive number of patches, not {value!r}")
    return int(value)


def add_training_run_arguments(parser: argparse.ArgumentParser) -> None:
    """How the commands that train run it (``run_options``): pretrained weights, cores,
    device, precision, micro-batch, progress lines and trackers."""
    from lesionsoup.training.progress import LOG_EVERY
    from lesionsoup.training.trackers import TRACKERS

    add_pretrained_argument(parser)
    parser.add_argument(
        "--threads", type=int, default=1, help="cores of the job, shared by its devices' processes"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="data-loading processes (default threads - 1)"
    )
    add_device_argument(parser)
    parser.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 on GPUs with native bf16, fp16 with loss scaling on older ones, fp32 "
        "on the CPU), bf16, fp16 or fp32",
    )
    parser.add_argument(
        "--micro-batch",
        type=micro_batch_argument,
        default="auto",
        help="patches of one forward pass, accumulated to the batch: auto (the largest that "
        "fits the device, probed; halved on running out of memory) or a number",
    )
    parser.add_argument(
        "--log-every",
        type=int,
        default=LOG_EVERY,
        help=f"steps between loss read-backs and progress lines (default {LOG_EVERY})",
    )
    parser.add_argument(
        "--tracker",
        action="append",
        choices=TRACKERS,
        default=[],
        help="also log the losses, learning rate, patches/s and validation scores to this "
        "tracker (tensorboard; wandb, offline unless WANDB_MODE says otherwise), in the run "
        "folder; repeatable; needs the extra of its name, e.g. pip install 'lesionsoup[wandb]'",
    )


def run_options(args: argparse.Namespace, **start: Any) -> RunOptions:
    """The options a training command's arguments give, and how the run starts (``start``)."""
    from lesionsoup.training.run import RunOptions
    from lesionsoup.training.trackers import check_trackers

    return RunOptions(
        pretrained_cache=args.pretrained_cache,
        threads=args.threads,
        workers=args.workers,
        device=args.device,
        precision=args.precision,
        micro_batch=args.micro_batch,
        log_every=args.log_every,
        trackers=check_trackers(args.tracker),
        **start,
    )


def add_cache_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--cache`` (repeatable; ``what`` says what the command reads in it) and
    ``--stage-caches``, which ``open_caches`` reads."""
    parser.add_argument("--cache", type=Path, action="append", required=True, help=what)
    parser.add_argument(
        "--stage-caches",
        default=None,
        metavar="DIR",
        help="read copies of the caches in DIR, e.g. node-local scratch ('$TMPDIR/lesionsoup'; "
        "environment variables and ~ are expanded when the command runs): each is copied, "
        "checked against the original (files, array digests, data_sha256), shared by the jobs "
        "of the node and removed by the last one at the end; empty or absent: read in place",
    )


@contextmanager
def open_caches(directories: list[Path], stage: str | None = None) -> Iterator[dict[str, Any]]:
    """Dataset name (the folder's name) -> ``lesionsoup.data.cache.Cache``, while in the block;
    with ``stage`` (``--stage-caches``), opened on checked copies there (``data.staging``)."""
    from lesionsoup.data.staging import staged_caches

    with staged_caches(directories, stage) as caches:
        yield caches


Subcommands = argparse._SubParsersAction
