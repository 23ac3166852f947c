"""Dataset combinations: the training sets of a cross-dataset study.

A combination is named by its sorted members joined with ``+`` (``DDR+IDRID``).
The config lists combinations explicitly, or says ``singles`` (each dataset
alone) or ``all`` (every non-empty subset: 31 for five datasets).

Subset datasets (``IDRID25: {of: IDRID, ...}``, ``lesionsoup.plan.datasets``) are
datasets like any other here (``IDRID25+DDR``), except that a combination may
not hold two datasets of one source (``IDRID+IDRID25`` would train twice on the
same images): ``all`` leaves such combinations out, a listed one is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations as subsets

#: A dataset name: upper-case letters and digits, starting with a letter (``IDRID``,
#: ``EOPHTHA2``). The registry refuses other names, and the workflow's ``combo``
#: wildcard and the schemas' combination patterns spell out ``COMBO`` (tests hold them to it).
DATASET_NAME = re.compile(r"[A-Z][A-Z0-9]*")
#: A combination name: dataset names joined with ``+``.
COMBO = re.compile(rf"{DATASET_NAME.pattern}(\+{DATASET_NAME.pattern})*")


def combo_name(datasets: Iterable[str]) -> str:
    """The name of the combination of ``datasets``: sorted, without repeats, joined by ``+``."""
    members = sorted(set(datasets))
    if not members:
        raise ValueError("a combination needs at least one dataset")
    return "+".join(members)


def combo_members(name: str) -> list[str]:
    """The dataset names of a combination name."""
    return name.split("+")


def shared_sources(members: Iterable[str], sources: Mapping[str, str]) -> dict[str, list[str]]:
    """The sources that several of ``members`` take their images from, with those members."""
    by_source: dict[str, list[str]] = {}
    for member in sorted(set(members)):
        by_source.setdefault(sources.get(member, member), []).append(member)
    return {source: names for source, names in by_source.items() if len(names) > 1}


def expand_combinations(
    spec: str | Sequence[str], datasets: Sequence[str], sources: Mapping[str, str] | None = None
) -> list[str]:
    """Combination names for a config value, validated against the configured datasets.

    ``spec`` is ``"singles"``, ``"all"``, or a list whose items are combination
    names (``"DDR+IDRID"``, members in any order) or the words above. ``sources``
    maps a subset dataset to its source (others are their own): ``all`` skips the
    combinations holding two datasets of one source, a listed one is a ValueError.
    """
    sources = sources or {}
    items = [spec] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        if item == "singles":
            names.extend(sorted(datasets))
        elif item == "all":
            names.extend(
                combo_name(members)
                for k in range(1, len(datasets) + 1)
                for members in subsets(sorted(datasets), k)
                if not shared_sources(members, sources)
            )
        else:
            unknown = sorted(set(combo_members(item)) - set(datasets))
            if unknown:
                raise ValueError(
                    f"combination {item!r} names datasets that are not configured: {unknown}"
                )
            if shared := shared_sources(combo_members(item), sources):
                source, members = next(iter(shared.items()))
                raise ValueError(
                    f"combination {item!r} holds {members}, all of {source}'s images: it would "
                    "train twice on the same images"
                )
            names.append(combo_name(combo_members(item)))
    return list(dict.fromkeys(names))
