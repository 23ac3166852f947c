"""Argument types and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


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
