"""The subcommands of `lesionsoup`, one module per group of workflow stages.

Each module exposes ``REGISTER``: functions that add their subcommands to the
parser. A subcommand parses its arguments and calls one library function.
``MODULES`` says which module registers each subcommand, so that a run imports
the module of its own command only: every job of the workflow starts a
`lesionsoup` process, and the other stages' imports are start-up time it
would wait for (``tests/commands/test_cli.py`` checks the table against the modules).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from lesionsoup.commands.arguments import Subcommands

#: The module (``lesionsoup.commands.<module>``) of each subcommand, in the help's order.
MODULES: dict[str, str] = {
    "synth": "data",
    "index": "data",
    "preprocess": "data",
    "fetch-weights": "training",
    "pretrained-start": "training",
    "warmup": "training",
    "train": "training",
    "hpo-trial": "hpo",
    "hpo-export": "hpo",
    "merge": "merging",
    "ensemble": "merging",
    "size-curve": "merging",
    "evaluate": "evaluation",
    "uncertainty": "evaluation",
    "annotation-style": "report",
    "connectivity": "report",
    "predict": "predict",
    "export": "predict",
}


def registrars(command: str | None = None) -> tuple[Callable[[Subcommands], None], ...]:
    """The functions that add subcommands to the parser: those of ``command``'s module, or
    those of every module when ``command`` is None or no subcommand."""
    modules = [MODULES[command]] if command in MODULES else dict.fromkeys(MODULES.values())
    return tuple(
        register
        for module in modules
        for register in import_module(f"{__name__}.{module}").REGISTER
    )
