"""Subset datasets: a config entry that takes another's data at a fraction of its training set.

A data-size study crosses training-set sizes in one config, so one source
dataset appears under several names::

    datasets:
      IDRID: { root: /data/idrid }
      IDRID25: { of: IDRID, split: { train_fraction: 0.25 } }
      IDRID50: { of: IDRID, split: { train_fraction: 0.5 } }

An entry with ``of`` takes every option of its source's entry (root, split,
mask rules, a generic layout's patterns...), its own keys overriding: shallowly
at the top level, except ``split``, which is merged key by key (``IDRID25``
above keeps the source's seed and valid fraction). The merged entry is checked
against the source's schema (``check_merged``), and ``resolve_subsets``
replaces the entry in the config with it, ``of`` kept, so that every rule reads
a subset's root, tree stamp, adapter and options as any other dataset's; the
index command gets ``of`` and draws the splits with the source's name, so that
the subset's test and valid parts are the source's exactly and its train part
the nested subset of ``lesionsoup.data.splits`` (``unused`` rows for the rest).

A subset is a dataset of its own everywhere else: its own manifest, cache and
combinations (``IDRID25+DDR``), and a test dataset only where named:
``evaluation.test_datasets: all`` leaves subsets out, as their test part
duplicates their source's (``test_datasets``). A source must be configured and
may not itself have ``of``; a combination may not hold two datasets of one
source (``source_of``, checked by ``lesionsoup.core.combos``), which would
train twice on the same images.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lesionsoup.plan.validation import ConfigError, short_message

#: The key of a subset dataset's entry naming its source dataset.
SOURCE = "of"
#: The key merged key by key rather than replaced.
MERGED_BY_KEY = ("split",)


def merged_entry(source: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """The source's entry overridden by a subset's own keys (``of`` left out)."""
    merged = {**source, **{key: value for key, value in own.items() if key != SOURCE}}
    for key in MERGED_BY_KEY:
        if isinstance(source.get(key), Mapping) and isinstance(own.get(key), Mapping):
            merged[key] = {**source[key], **own[key]}
    return merged


def resolve_subsets(config: dict[str, Any], schema: Path | str | None = None) -> None:
    """Replace each subset entry of ``config["datasets"]`` by its merged entry, ``of`` kept.

    Raises ``ConfigError`` naming the key: an unknown source, a source that is itself a
    subset, a merged entry the source's schema refuses (given ``schema``, the config
    schema file). Resolving twice changes nothing.
    """
    datasets = config["datasets"]
    resolved: dict[str, dict[str, Any]] = {}
    for name, own in datasets.items():
        if not isinstance(own, Mapping) or SOURCE not in own:
            continue
        source = own[SOURCE]
        if source not in datasets:
            raise ConfigError(
                f"config key datasets.{name}.{SOURCE}: dataset {source!r} is not configured; "
                f"configured: {sorted(datasets)}"
            )
        if SOURCE in datasets[source]:
            raise ConfigError(
                f"config key datasets.{name}.{SOURCE}: {source} is itself a subset (of: "
                f"{datasets[source][SOURCE]}); name a dataset without `of` as the source"
            )
        merged = merged_entry(datasets[source], own)
        if schema is not None:
            check_merged(name, source, merged, schema)
        resolved[name] = {**merged, SOURCE: source}
    datasets.update(resolved)


def check_merged(name: str, source: str, merged: Mapping[str, Any], schema: Path | str) -> None:
    """Check a subset's merged entry against what the config schema allows its source."""
    import jsonschema
    import yaml

    full = yaml.safe_load(Path(schema).read_text())
    datasets = {"$defs": full["$defs"], **full["properties"]["datasets"]}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(datasets).iter_errors({source: dict(merged)})
    )
    if error is not None:
        message = short_message(error).removeprefix(f"config key {source}")
        raise ConfigError(
            f"config key datasets.{name}{message} (its entry merged with its source {source}'s)"
        )


def source_of(config: Mapping[str, Any], name: str) -> str:
    """The dataset whose data ``name`` is: its ``of``, or itself."""
    return str(config["datasets"][name].get(SOURCE, name))


def sources(config: Mapping[str, Any]) -> dict[str, str]:
    """``source_of`` every configured dataset, by name."""
    return {name: source_of(config, name) for name in config["datasets"]}


def is_subset(config: Mapping[str, Any], name: str) -> bool:
    return SOURCE in config["datasets"][name]
