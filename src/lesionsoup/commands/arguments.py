"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse
import json


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


Subcommands = argparse._SubParsersAction
