"""The options of the commands the rules run, each defined once: argparse reads them
(``lesionsoup.commands``) and the planner writes them (``option_flags``), so a flag, its
type and its default cannot differ between the two.

An ``Option``'s ``key`` names its value in the settings the planner holds (a soup's
``soup_settings``, ``merging.bn_recompute``); ``option_flags`` writes the options whose
value is given and not None, in the group's order, and argparse reads each back to the same
value under the option's ``dest``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesionsoup.core.merge_rules import (
    BN_POLICIES,
    DEFAULT_BN_POLICY,
    DEFAULT_GROUP_BY,
    DEFAULT_KEEP,
    DEFAULT_PART,
    EPOCH,
    PARTS,
    RULES,
    SIZE_CURVE_SOUPS,
    BatchNormSample,
)
from lesionsoup.core.paths import OPTIMIZER_STATES
from lesionsoup.core.report_defaults import REPORT_DEFAULTS


@dataclass(frozen=True)
class Option:
    """A command-line option: its flag, the settings key of its value, and how argparse
    reads it (type, choices, how many values, default, help)."""

    flag: str
    help: str
    key: str = ""  # default: ``dest``
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    nargs: str | None = None
    default: Any = None
    required: bool = False
    repeated: bool = False  # given once per value (argparse's ``append``)

    @property
    def dest(self) -> str:
        """Where argparse puts the value: the flag's name, ``--bn-policy`` -> ``bn_policy``."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def name(self) -> str:
        """The settings key of the option's value."""
        return self.key or self.dest


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Add ``options`` to a command's parser (each value under its option's ``dest``)."""
    for option in options:
        settings = {"required": True} if option.required else {"default": option.default}
        if option.repeated:
            settings.update(action="append", default=list(option.default or ()))
        for field in ("type", "choices", "nargs"):
            if getattr(option, field) is not None:
                settings[field] = getattr(option, field)
        parser.add_argument(option.flag, help=option.help, **settings)


def option_flags(options: Sequence[Option], values: Mapping[str, Any]) -> str:
    """The command-line text of ``values`` (by option name) for ``options``, in their order;
    an option without a value, or with None, is left out (the command's default)."""
    words = []
    for option in options:
        value = values.get(option.name)
        if value is None:
            continue
        if option.repeated:
            words += [f"{option.flag} {each}" for each in value]
        else:
            listed = value if option.nargs else [value]
            words.append(" ".join([option.flag, *map(str, listed)]))
    return " ".join(words)


def bn_patches(text: str) -> int | str:
    """``--bn-patches``: a count of patches (>= 1), or ``epoch`` (one epoch-equivalent)."""
    if text == EPOCH:
        return EPOCH
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected {EPOCH!r} or a count >= 1, got {text!r}")
    return int(text)


def fraction(text: str) -> float:
    """A fraction in (0, 1], as ``--keep`` takes it."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a fraction in (0, 1] is needed, got {text}")
    return value


_SAMPLE = BatchNormSample()
#: ``BatchNormSample``'s options (for the recompute BatchNorm policy), keyed by its fields.
BN_SAMPLE_OPTIONS: tuple[Option, ...] = (
    Option(
        "--bn-patches",
        f"recompute: augmented training patches, a count or {EPOCH!r} (enough to tile every "
        f"training image once; default {_SAMPLE.patches})",
        key="patches",
        type=bn_patches,
        default=_SAMPLE.patches,
    ),
    Option(
        "--bn-batch-size", "recompute: batch size", "batch_size", int, default=_SAMPLE.batch_size
    ),
    Option("--bn-seed", "recompute: patch sampling seed", "seed", int, default=_SAMPLE.seed),
)


def bn_sample(args: argparse.Namespace) -> BatchNormSample:
    """The ``BatchNormSample`` of parsed ``BN_SAMPLE_OPTIONS``."""
    return BatchNormSample(
        **{option.name: getattr(args, option.dest) for option in BN_SAMPLE_OPTIONS}
    )


def _policy_defaults() -> str:
    """Each rule's default BatchNorm policy, as "recompute for swa, average otherwise"."""
    others = [
        f"{rule.bn_policy} for {rule.name}"
        for rule in RULES.values()
        if rule.bn_policy != DEFAULT_BN_POLICY
    ]
    return ", ".join([*others, f"{DEFAULT_BN_POLICY} otherwise"])


#: ``lesionsoup merge``'s options of a soup (``plan.ingredients.soup_settings``), the
#: BatchNorm sample's among them.
MERGE_OPTIONS: tuple[Option, ...] = (
    Option(
        "--rule",
        "; ".join(f"{rule.name}: {rule.summary}" for rule in RULES.values()),
        choices=list(RULES),
        required=True,
    ),
    Option(
        "--bn-policy",
        f"BatchNorm statistics (default: {_policy_defaults()})",
        choices=BN_POLICIES,
    ),
    Option(
        "--group-by",
        "hierarchical soups: the base runs' hyperparameter that defines the groups",
        default=DEFAULT_GROUP_BY,
    ),
    Option(
        "--part",
        "what the soup averages: the full model, the encoder, or the decoder with the "
        "segmentation head; the rest, BatchNorm statistics included, is the anchor's (the "
        "ingredient with the best validation score), named in the sidecar. Not for "
        f"{', '.join(rule.name for rule in RULES.values() if not rule.averages_parts)} "
        f"(default: {DEFAULT_PART})",
        choices=PARTS,
        default=DEFAULT_PART,
    ),
    *BN_SAMPLE_OPTIONS,
    Option(
        "--keep",
        "ties: the fraction of each ingredient's update kept, its largest magnitudes over the "
        f"whole model (default: {DEFAULT_KEEP})",
        type=fraction,
        default=DEFAULT_KEEP,
    ),
)

#: ``lesionsoup ensemble``'s options of a configured ensemble (``ensemble_settings``).
ENSEMBLE_OPTIONS: tuple[Option, ...] = (
    Option("--top", "keep the k best candidates (default: all)", type=int),
)

_SIZE_CURVES = REPORT_DEFAULTS["size_curves"]
#: ``lesionsoup size-curve``'s options of the study's report settings, but the evaluation's.
SIZE_CURVE_OPTIONS: tuple[Option, ...] = (
    Option("--max-members", "K, the largest k", type=int, default=_SIZE_CURVES["max_members"]),
    Option(
        "--metric",
        "a pooled metric, mean over lesions",
        default=REPORT_DEFAULTS["metric"],
    ),
    *(
        Option(
            f"--{curve}-bn-policy",
            f"BatchNorm statistics of the {curve} soups",
            choices=BN_POLICIES,
            default=RULES[curve].bn_policy,
        )
        for curve in SIZE_CURVE_SOUPS
    ),
    *BN_SAMPLE_OPTIONS,
)

#: ``lesionsoup train``'s options of a run's optimiser state (``plan.ingredients.train_arguments``).
TRAIN_OPTIMIZER_OPTIONS: tuple[Option, ...] = (
    Option(
        "--keep-optimizer",
        "also publish the optimiser state of this checkpoint in optimizer/ (best: an FGG "
        "base run; last: an SWA base run); repeatable",
        choices=OPTIMIZER_STATES,
        repeated=True,
    ),
    Option(
        "--init-optimizer",
        "start the optimiser from this published state (an FGG or SWA run: its base's)",
        type=Path,
    ),
)
