"""The methods models are recorded under, and their order in tables and figures."""

from __future__ import annotations

from lesionsoup.core.merge_rules import RULES
from lesionsoup.core.methods import ENSEMBLE, INGREDIENT, METHOD_ORDER, SINGLE, method_names


def test_every_method_has_a_place_in_the_order() -> None:
    methods = {SINGLE, ENSEMBLE, INGREDIENT, *(m for rule in RULES for m in method_names(rule))}
    assert set(METHOD_ORDER) == methods
    assert len(METHOD_ORDER) == len(methods)


def test_the_order_lists_baselines_soups_picks_then_anchored_soups() -> None:
    """The demo's tables keep their order: each soup's part soups after it."""
    assert METHOD_ORDER[:7] == (
        *("single", "ensemble", "swa"),
        *("uniform", "uniform-encoder", "uniform-decoder", "greedy"),
    )
    rest = [m for m in METHOD_ORDER if m in ("GoG", "best", "ingredient", "model_stock", "ties")]
    assert rest == ["GoG", "best", "ingredient", "model_stock", "ties"]
