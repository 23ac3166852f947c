"""The methods models are recorded under (``metrics.csv``, figures), and the order they are
listed in: every one derived from the merge rules' table (``core.merge_rules.RULES``)."""

from __future__ import annotations

from lesionsoup.core.merge_rules import DEFAULT_PART, PARTS, RULES, Part, check_part

#: The method of a model that is one training run's best checkpoint: every other
#: method's baseline.
SINGLE = "single"
#: The method of a merged model's ingredient that no other method evaluates (a grid run's
#: checkpoint, the base an SWA run continues): its gain is measured against them.
INGREDIENT = "ingredient"
#: The method an ensemble is recorded under (its sidecar's ``rule``, ``metrics.csv``).
ENSEMBLE = "ensemble"


def method_name(rule: str, part: Part = DEFAULT_PART) -> str:
    """The method a merged model is recorded under (``metrics.csv``, figures): its rule, with
    the part it averages when not the full model (``uniform-encoder``)."""
    check_part(rule, part)
    return rule if part == DEFAULT_PART else f"{rule}-{part}"


def method_names(base: str) -> tuple[str, ...]:
    """``base`` (a rule or another method) and, for a rule that averages parts, its part
    soups' methods: the order tables and figures list them in."""
    if base not in RULES or not RULES[base].averages_parts:
        return (base,)
    return tuple(method_name(base, part) for part in PARTS)


def _rule_group(name: str) -> int:
    """Where a rule's methods are listed: 0 one run's trajectory average (SWA), 1 the soups,
    2 the one picked checkpoint (``best``), 3 the soups merging updates from a common start."""
    rule = RULES[name]
    if rule.one_run:
        return 0
    if rule.anchored:
        return 3
    return 1 if rule.averages_parts else 2


def _group_methods(group: int) -> tuple[str, ...]:
    """The methods of a ``_rule_group``'s rules, in table order, each soup's part soups after it
    (``uniform``, ``uniform-encoder``, ``uniform-decoder``)."""
    return tuple(
        method for rule in RULES if _rule_group(rule) == group for method in method_names(rule)
    )


#: Every method in the order of tables and figures: the single runs, the ensembles, the rules'
#: methods by ``_rule_group``, the ingredients after the picked checkpoints.
METHOD_ORDER: tuple[str, ...] = (
    SINGLE,
    ENSEMBLE,
    *_group_methods(0),
    *_group_methods(1),
    *_group_methods(2),
    INGREDIENT,
    *_group_methods(3),
)
