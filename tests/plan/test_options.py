"""Each command's options are defined once (``lesionsoup.plan.options``): the flags the planner
writes for the tiny study's real jobs parse, with the command's own parser, back to the values
the planner holds."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO
from support.config_validation import snakefile_validation

from lesionsoup.cli import build_parser
from lesionsoup.plan import ingredients, study
from lesionsoup.plan import report as report_plan
from lesionsoup.plan.options import (
    ENSEMBLE_OPTIONS,
    MERGE_OPTIONS,
    SIZE_CURVE_OPTIONS,
    TRAIN_OPTIMIZER_OPTIONS,
    Option,
    option_flags,
)

CONFIG = snakefile_validation(yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text()))
#: What each command needs besides the planned options, to parse.
REQUIRED = {
    "merge": ["-o", "m.safetensors", "--cache", "c", "a.safetensors"],
    "ensemble": ["-o", "e.json", "--cache", "c", "a.safetensors"],
    "size-curve": ["-o", "t.csv", "--figure", "f.png", "--cache", "c", "a.safetensors"],
    "train": ["-o", "run", "--cache", "c", "--model", "{}", "--settings", "{}"],
}


def parsed_back(command: str, flags: str, options: Sequence[Option]) -> dict[str, Any]:
    """``flags`` parsed by ``command``'s parser: each option's value, by its settings key."""
    args = build_parser().parse_args([command, *shlex.split(flags), *REQUIRED[command]])
    return {option.name: getattr(args, option.dest) for option in options}


def expected(values: Mapping[str, Any], options: Sequence[Option]) -> dict[str, Any]:
    """Each option's value: the planner's, else the option's default."""
    given = {key: value for key, value in values.items() if value is not None}
    return {option.name: given.get(option.name, option.default) for option in options}


def _soups() -> list[tuple[str, str]]:
    return [
        (combo, method)
        for combo in ingredients.merging_combinations(CONFIG)
        for method in ingredients.soup_methods(CONFIG, combo)
    ]


@pytest.mark.parametrize(("combo", "method"), _soups())
def test_a_planned_soup_parses_back_to_its_settings(combo: str, method: str) -> None:
    soup = ingredients.soup_settings(CONFIG, method)
    values = {**soup, **(soup["bn_recompute"] or {})}
    flags = ingredients.soup_arguments(CONFIG, method)
    assert parsed_back("merge", flags, MERGE_OPTIONS) == expected(values, MERGE_OPTIONS)


def test_the_tiny_study_covers_every_merge_option() -> None:
    """Some soup of the tiny study writes each option but ``--keep`` (no ``ties`` soup)."""
    written = {
        word
        for _, method in _soups()
        for word in ingredients.soup_arguments(CONFIG, method).split()
    }
    assert {option.flag for option in MERGE_OPTIONS} - written == {"--keep"}


def test_keep_parses_back() -> None:
    values = {"rule": "ties", "keep": 0.1}
    flags = option_flags(MERGE_OPTIONS, values)
    assert parsed_back("merge", flags, MERGE_OPTIONS) == expected(values, MERGE_OPTIONS)


@pytest.mark.parametrize("name", list(CONFIG["merging"]["ensembles"]))
def test_a_planned_ensemble_parses_back_to_its_settings(name: str) -> None:
    values = ingredients.ensemble_settings(CONFIG, name)
    flags = ingredients.ensemble_arguments(CONFIG, name)
    assert flags
    assert parsed_back("ensemble", flags, ENSEMBLE_OPTIONS) == expected(values, ENSEMBLE_OPTIONS)


def test_the_planned_size_curve_parses_back_to_the_report_settings() -> None:
    assert report_plan.size_curve_combos(CONFIG)  # the tiny study draws size curves
    values = report_plan.size_curve_settings(CONFIG)
    assert (
        values["max_members"] == report_plan.report_settings(CONFIG)["size_curves"]["max_members"]
    )
    flags = report_plan.size_curve_arguments(CONFIG)
    parsed = parsed_back("size-curve", flags, SIZE_CURVE_OPTIONS)
    assert parsed == expected(values, SIZE_CURVE_OPTIONS)


def test_every_planned_run_parses_back_to_its_optimiser_settings() -> None:
    written = set()
    for run in study.runs(CONFIG) + ingredients.ingredient_runs(CONFIG):
        settings = ingredients.optimizer_settings(CONFIG, run.combo, run.recipe, run.seed)
        flags = ingredients.train_arguments(CONFIG, run.combo, run.recipe, run.seed)
        written |= set(flags.split()[::2])
        assert parsed_back("train", flags, TRAIN_OPTIMIZER_OPTIONS) == {
            "keep_optimizer": settings.get("keep_optimizer", []),
            "init_optimizer": Path(settings["init_optimizer"])
            if "init_optimizer" in settings
            else None,
        }
    assert written == {option.flag for option in TRAIN_OPTIMIZER_OPTIONS}


def test_a_list_option_writes_every_value() -> None:
    option = Option("--radii", "radii", type=float, nargs="+")
    assert option_flags([option], {"radii": [0.05, 0.1]}) == "--radii 0.05 0.1"
    assert option_flags([option], {"radii": None}) == ""
