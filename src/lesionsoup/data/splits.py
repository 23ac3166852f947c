"""Seeded, hash-based, patient-aware splits.

Official splits are kept as they are. Where a dataset has none (FGADR,
RETLES), each patient draws ``u = sha256(seed, dataset, patient)`` in [0, 1)
and goes to ``test`` when ``u < test``, to ``valid`` when ``u < test + valid``,
and to ``train`` otherwise. Where a dataset has official splits but no
``valid`` part (IDRiD, MAPLES), ``valid`` is carved out of the official
``train`` part the same way (``u < valid``); ``test`` is never touched.

Because every patient's draw depends on nothing but the seed, the dataset name
and its own key, adding or removing an image never moves another image; only
the seed or the fractions change a split.

Tiny datasets: when a part with a positive fraction would be empty and there
are at least as many patients as parts, the patient whose draw lies closest to
that part's interval (ties broken by patient key) moves into it from a part
that keeps at least one patient. Only then can one image's arrival move
another, and only to refill a part that was empty.

Training-set fractions (``train_fraction``, a data-size study's subsets): once
the parts are assigned, each patient of the ``train`` part draws a second
number ``v = sha256(seed, dataset, patient, "train_fraction")`` in [0, 1),
independent of ``u`` (the salt makes a different hash input), and stays in
``train`` when ``v < train_fraction``; its images go to ``unused`` otherwise,
which the manifest records, so a subset lives in the split file and changes
only with the seed, the fractions or the images. ``test`` and ``valid`` are
untouched, and the subsets are nested: every patient of the 25 % subset is in
the 50 % one, as ``v < 0.25`` implies ``v < 0.5``. The realised fraction of
patients is binomial around the requested one (n patients: standard deviation
``sqrt(f (1 - f) / n)``). Tiny datasets: when no training patient would
remain, the one with the smallest ``v`` (ties broken by patient key) stays,
which keeps the nesting (it is the first patient of every larger subset).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

TRAIN = "train"
VALID = "valid"
TEST = "test"
#: The training images a ``train_fraction`` below 1 leaves out: indexed, never trained on.
UNUSED = "unused"
#: The parts an official split (or a generic dataset's split file) may name.
PARTS: tuple[str, ...] = (TRAIN, VALID, TEST)
#: Every split a manifest may record, in manifest order (``lesionsoup.data.manifest``).
SPLITS: tuple[str, ...] = (*PARTS, UNUSED)
#: What the ``train_fraction`` draw adds to the hash input, so that it is independent of
#: the draw that assigns the parts.
FRACTION_SALT = "train_fraction"


def unit_draw(seed: int, dataset: str, patient: str) -> float:
    """A stable number in [0, 1) for one patient of one dataset under one seed."""
    digest = hashlib.sha256(f"{seed}\x1f{dataset}\x1f{patient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def fraction_draw(seed: int, dataset: str, patient: str) -> float:
    """The patient's second stable number in [0, 1): its place in the training subsets."""
    text = f"{seed}\x1f{dataset}\x1f{patient}\x1f{FRACTION_SALT}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


@dataclass(frozen=True)
class SplitOptions:
    """The ``split`` options of a dataset: seed and the fractions of seeded parts.

    ``test`` applies only to datasets without an official test part, ``valid``
    only to datasets without an official validation part; ``train_fraction`` in
    (0, 1] to every dataset: the share of the training patients kept in ``train``
    (``apply_train_fraction``), 1 keeping them all.
    """

    seed: int = 0
    test: float = 0.3
    valid: float = 0.15
    train_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"split option 'seed' must be an integer, got {self.seed!r}")
        for name in ("test", "valid"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
                raise ValueError(f"split option '{name}' must be in [0, 1), got {value!r}")
        fraction = self.train_fraction
        if (
            not isinstance(fraction, int | float)
            or isinstance(fraction, bool)
            or not 0 < fraction <= 1
        ):
            raise ValueError(f"split option 'train_fraction' must be in (0, 1], got {fraction!r}")
        if self.test + self.valid >= 1:
            raise ValueError(
                f"split options 'test' + 'valid' must leave room for train, got {self.test} + "
                f"{self.valid}"
            )

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> SplitOptions:
        if not isinstance(options, Mapping):
            raise ValueError(f"option 'split' must be a mapping, got {options!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown split option(s) {unknown}; known: {known}")
        return cls(**options)


def seeded_split(
    patients: Sequence[str], dataset: str, seed: int, fractions: Mapping[str, float]
) -> list[str]:
    """The part of each entry of ``patients``: ``fractions`` in order, the rest ``train``.

    Entries with the same patient key always land in the same part.
    """
    bounds: dict[str, tuple[float, float]] = {}
    low = 0.0
    for part, fraction in fractions.items():
        bounds[part] = (low, low + fraction)
        low += fraction
    bounds[TRAIN] = (low, 1.0)

    draws = {patient: unit_draw(seed, dataset, patient) for patient in sorted(set(patients))}
    part_of = {patient: _part_for(draw, bounds) for patient, draw in draws.items()}
    wanted = [part for part, (lo, hi) in bounds.items() if hi > lo]
    if len(draws) >= len(wanted):
        _fill_empty_parts(part_of, draws, bounds, wanted)
    return [part_of[patient] for patient in patients]


def _part_for(draw: float, bounds: Mapping[str, tuple[float, float]]) -> str:
    for part, (lo, hi) in bounds.items():
        if lo <= draw < hi:
            return part
    return TRAIN


def _distance(draw: float, interval: tuple[float, float]) -> float:
    lo, hi = interval
    return max(lo - draw, draw - hi, 0.0)


def _fill_empty_parts(
    part_of: dict[str, str],
    draws: Mapping[str, float],
    bounds: Mapping[str, tuple[float, float]],
    wanted: Sequence[str],
) -> None:
    """Move one patient into each empty wanted part, from parts that keep at least one."""
    for part in wanted:
        sizes = {name: 0 for name in bounds}
        for assigned in part_of.values():
            sizes[assigned] += 1
        if sizes[part]:
            continue
        donors = [patient for patient, assigned in part_of.items() if sizes[assigned] >= 2]
        chosen = min(donors, key=lambda patient: (_distance(draws[patient], bounds[part]), patient))
        part_of[chosen] = part


def assign_splits(
    official: Sequence[str | None],
    patients: Sequence[str],
    dataset: str,
    options: SplitOptions,
) -> list[str]:
    """The final split of each image from its official split (None where there is none).

    Either every image has an official split or none has. ``dataset`` seeds the draws: a
    subset dataset (``of: IDRID``) passes its source's name, so that its parts are the
    source's, its ``train`` part a subset of the source's.
    """
    parts = _assigned_parts(official, patients, dataset, options)
    return apply_train_fraction(parts, patients, dataset, options.seed, options.train_fraction)


def apply_train_fraction(
    splits: Sequence[str], patients: Sequence[str], dataset: str, seed: int, fraction: float
) -> list[str]:
    """``splits`` with the ``train`` patients whose ``fraction_draw`` is >= ``fraction``
    moved to ``unused``; at least one training patient stays (the module's docstring)."""
    splits = list(splits)
    if fraction >= 1:
        return splits
    training = sorted(
        {patient for patient, split in zip(patients, splits, strict=True) if split == TRAIN}
    )
    draws = {patient: fraction_draw(seed, dataset, patient) for patient in training}
    kept = {patient for patient, draw in draws.items() if draw < fraction}
    if training and not kept:
        kept = {min(training, key=lambda patient: (draws[patient], patient))}
    return [
        UNUSED if split == TRAIN and patient not in kept else split
        for patient, split in zip(patients, splits, strict=True)
    ]


def _assigned_parts(
    official: Sequence[str | None],
    patients: Sequence[str],
    dataset: str,
    options: SplitOptions,
) -> list[str]:
    if len(official) != len(patients):
        raise ValueError("one official split and one patient per image are needed")
    if all(split is None for split in official):
        fractions = {TEST: options.test, VALID: options.valid}
        return seeded_split(patients, dataset, options.seed, fractions)
    if any(split is None for split in official):
        raise ValueError(f"{dataset}: some images have an official split and some have none")
    splits = [str(split) for split in official]
    if VALID in splits:
        return splits
    train_rows = [row for row, split in enumerate(splits) if split == TRAIN]
    carved = seeded_split(
        [patients[row] for row in train_rows], dataset, options.seed, {VALID: options.valid}
    )
    for row, split in zip(train_rows, carved, strict=True):
        splits[row] = split
    return splits
