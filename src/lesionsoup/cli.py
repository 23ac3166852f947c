"""The `lesionsoup` command: every workflow stage, callable on its own.

The Snakemake rules call these subcommands, so a stage behaves the same inside
and outside the workflow. The subcommands live in ``lesionsoup.commands``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import version

from lesionsoup.commands import registrars
from lesionsoup.commands.arguments import claim_gpus
from lesionsoup.core.permissions import restrict
from lesionsoup.core.preemption import Preempted

log = logging.getLogger("lesionsoup")

#: Exit status after SIGTERM (preemption, scancel): 128 + 15, as a killed process.
PREEMPTED_EXIT = 143


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; with ``command``, of the subcommands of its module
    only (``commands.MODULES``): all a run of it parses, without the others' imports."""
    parser = argparse.ArgumentParser(
        prog="lesionsoup",
        description="Cross-dataset retinal lesion segmentation: data, training, soups, evaluation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {version('lesionsoup')}",
        help="print the installed version and exit",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in registrars(command):
        register(commands)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is no option (the options before
    the subcommand take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if "permissions" in args:  # predict, export: run by hand, private by default
        restrict(args.permissions)
    claim = None
    try:
        claim = claim_gpus(args)  # before anything initialises CUDA; held until it ends
        args.handler(args)
    except Preempted as stop:
        log.warning("%s", stop)
        return PREEMPTED_EXIT
    except (ValueError, OSError, ArithmeticError) as error:
        log.error("%s", error)
        return 1
    finally:
        if claim is not None:
            claim.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
