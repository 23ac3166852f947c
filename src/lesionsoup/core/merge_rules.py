"""The merge rules by name, with their defaults: the one table of what a config may ask for.

The config schema, the ``lesionsoup merge`` command, the planning of the
``merge`` rule and the merge stage all read this table, and the ingredient
pools, BatchNorm policies and parts it names; the functions behind the names
live in ``lesionsoup.merging.soups.RULE_FUNCTIONS`` and the BatchNorm policies
in ``lesionsoup.merging.batchnorm.POLICY_FUNCTIONS``. Tests check that both
cover these names and that the schema's enums equal them (a YAML schema cannot
import Python). Free of torch: the planner (``lesionsoup.plan``) reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

#: How a merged model's BatchNorm running statistics are set (``lesionsoup.merging.batchnorm``).
BatchNormPolicy = Literal["average", "recompute", "copy-best"]
BN_POLICIES: tuple[BatchNormPolicy, ...] = get_args(BatchNormPolicy)
#: The policy of every rule that names none (model soups and FissionFusion average).
DEFAULT_BN_POLICY: BatchNormPolicy = "average"

#: What a soup averages (``lesionsoup.merging.parts``): the whole model, the encoder, or the
#: decoder with the segmentation head; a part soup takes the rest from its anchor ingredient.
Part = Literal["full", "encoder", "decoder"]
PARTS: tuple[Part, ...] = get_args(Part)
DEFAULT_PART: Part = "full"


#: Where a soup's or ensemble's candidates come from, besides a recipe's runs
#: (``lesionsoup.plan.ingredients``): the hyperparameter grid, FGG and SWA continuations, the
#: Optuna study's trials.
POOLS = ("grid", "fgg", "swa", "hpo")
#: The pools of training runs the merging config adds (every pool but the study's trials).
RUN_POOLS = tuple(pool for pool in POOLS if pool != "hpo")


@dataclass(frozen=True)
class MergeRule:
    """What a rule means before any weight is read: its defaults and how its cost counts."""

    name: str
    summary: str  # one line, for help texts
    pools: tuple[str, ...] = ("grid",)  # where its candidates come from by default
    bn_policy: BatchNormPolicy = DEFAULT_BN_POLICY
    grouped: bool = False  # hierarchical: the candidates are grouped by a base setting
    #: The candidates are snapshots of one run, whose cost is its latest snapshot's.
    one_run: bool = False
    #: A soup of this rule may average one part (``PARTS``) and take the rest from its anchor.
    averages_parts: bool = True
    #: It merges the ingredients' updates from their common start (``merging.anchored``): their
    #: runs must share an initialisation, or be an encoder soup of independent runs of a
    #: pretrained encoder (``plan.ingredients.soup_anchor``).
    anchored: bool = False


SINGLE_BEST = "best"
#: Hierarchical soups are named global rule, ``o``, local rule: ``GoU`` is greedy over the
#: groups' uniform soups (FissionFusion).
RULES: dict[str, MergeRule] = {
    rule.name: rule
    for rule in (
        MergeRule(
            SINGLE_BEST, "the candidate with the best validation score", averages_parts=False
        ),
        MergeRule("uniform", "the average of every candidate"),
        MergeRule("greedy", "greedy soup: candidates by score, kept when the soup improves"),
        MergeRule(
            "swa",
            "stochastic weight averaging of one run's snapshots",
            pools=("swa",),
            bn_policy="recompute",
            one_run=True,
            averages_parts=False,
        ),
        MergeRule("UoU", "uniform soup of the groups' uniform soups", grouped=True),
        MergeRule("UoG", "uniform soup of the groups' greedy soups", grouped=True),
        MergeRule("GoU", "greedy soup of the groups' uniform soups", grouped=True),
        MergeRule("GoG", "greedy soup of the groups' greedy soups", grouped=True),
        MergeRule(
            "model_stock",
            "Model Stock: each tensor's average moved towards the common start",
            anchored=True,
        ),
        MergeRule(
            "ties",
            "TIES-merging of the updates from the common start (trim, elect, mean)",
            anchored=True,
        ),
    )
}
#: The fraction of each ingredient's update that a ``ties`` soup keeps unless it names one
#: (``merging.soups.<name>.keep``; the paper's k = 20 %).
DEFAULT_KEEP = 0.2

#: The base-run setting that groups a hierarchical soup's candidates unless a soup names one.
DEFAULT_GROUP_BY = "lr"

#: The pools of an ensemble that names none.
ENSEMBLE_POOLS: tuple[str, ...] = ("grid",)
#: The soup curves of the size curves (``analysis.size_curves``), named by their merge rules.
SIZE_CURVE_SOUPS: tuple[str, ...] = ("uniform", "greedy")


#: ``BatchNormSample.patches`` for one epoch-equivalent of training patches: as many as tile
#: every training image of the combination once (``lesionsoup.merging.batchnorm.epoch_patches``).
EPOCH = "epoch"


@dataclass(frozen=True)
class BatchNormSample:
    """The training patches the ``recompute`` BatchNorm policy runs through a merged model:
    ``patches`` augmented patches (a count, or ``EPOCH``) in batches, seeded by ``seed``."""

    patches: int | Literal["epoch"] = EPOCH
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.patches != EPOCH and not (isinstance(self.patches, int) and self.patches >= 1):
            raise ValueError(f"BatchNorm patches must be {EPOCH!r} or >= 1, got {self.patches!r}")
        if self.batch_size < 2:
            raise ValueError(f"BatchNorm batch size must be >= 2, got {self.batch_size}")


def merge_rule(name: str) -> MergeRule:
    """The rule called ``name``; an unknown name is refused with the known ones."""
    if name not in RULES:
        raise ValueError(f"unknown merge rule {name!r}; known: {list(RULES)}")
    return RULES[name]


def check_part(rule: str, part: str) -> None:
    """Refuse a part the rule cannot average: ``best`` averages nothing, and an SWA model is
    one run's trajectory average, whose anchor would be one of its own snapshots."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known: {list(PARTS)}")
    if part != DEFAULT_PART and not merge_rule(rule).averages_parts:
        raise ValueError(f"the {rule} rule averages no part: {part!r} needs another rule")
