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
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

TRAIN = "train"


def unit_draw(seed: int, dataset: str, patient: str) -> float:
    """A stable number in [0, 1) for one patient of one dataset under one seed."""
    digest = hashlib.sha256(f"{seed}\x1f{dataset}\x1f{patient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class SplitOptions:
    """The ``split`` options of a dataset: seed and the fractions of seeded parts.

    ``test`` applies only to datasets without an official test part, ``valid``
    only to datasets without an official validation part.
    """

    seed: int = 0
    test: float = 0.3
    valid: float = 0.15

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"split option 'seed' must be an integer, got {self.seed!r}")
        for name in ("test", "valid"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
                raise ValueError(f"split option '{name}' must be in [0, 1), got {value!r}")
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

    Either every image has an official split or none has.
    """
    if len(official) != len(patients):
        raise ValueError("one official split and one patient per image are needed")
    if all(split is None for split in official):
        fractions = {"test": options.test, "valid": options.valid}
        return seeded_split(patients, dataset, options.seed, fractions)
    if any(split is None for split in official):
        raise ValueError(f"{dataset}: some images have an official split and some have none")
    splits = [str(split) for split in official]
    if "valid" in splits:
        return splits
    train_rows = [row for row, split in enumerate(splits) if split == TRAIN]
    carved = seeded_split(
        [patients[row] for row in train_rows], dataset, options.seed, {"valid": options.valid}
    )
    for row, split in zip(train_rows, carved, strict=True):
        splits[row] = split
    return splits
