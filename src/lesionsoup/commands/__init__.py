"""The subcommands of `lesionsoup`, one module per group of workflow stages.

Each module exposes ``REGISTER``: functions that add their subcommands to the
parser. A subcommand parses its arguments and calls one library function.
"""

from __future__ import annotations

from collections.abc import Callable

from lesionsoup.commands import data, evaluation, hpo, merging, predict, report, training
from lesionsoup.commands.arguments import Subcommands

REGISTRARS: tuple[Callable[[Subcommands], None], ...] = (
    *data.REGISTER,
    *training.REGISTER,
    *hpo.REGISTER,
    *merging.REGISTER,
    *evaluation.REGISTER,
    *report.REGISTER,
    *predict.REGISTER,
)
