"""Soups by rule name: build and score candidates one way, select, and record the lineage.

``merge`` looks the rule up in ``RULE_FUNCTIONS`` (the names and defaults are
``lesionsoup.core.merge_rules.RULES``). Selection (greedy, hierarchical
greedy, single best) scores every candidate through ``Merger.evaluate``, which
builds it with ``Merger.build``: the same path, BatchNorm policy included,
that builds the final model, so a candidate is scored as it would be saved.

A part soup (``part`` encoder or decoder, ``lesionsoup.merging.parts``) first
picks its anchor, the ingredient that scores best as it is (what the ``best``
rule with its default policy picks), then runs its rule over soups that average
the part and take the rest from the anchor: a greedy part soup ranks and keeps
ingredients by the scores of those soups. The sidecar names the part, the
anchor, and the start of every ingredient (``averaging.ingredient_start``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any, Protocol

from lesionsoup.core.checkpoint import StateDict, load_state_dict
from lesionsoup.core.merge_rules import (
    DEFAULT_GROUP_BY,
    DEFAULT_KEEP,
    DEFAULT_PART,
    BatchNormPolicy,
    Part,
    check_part,
    merge_rule,
)
from lesionsoup.inference.predictor import INFERENCE_FIELDS
from lesionsoup.merging import selection
from lesionsoup.merging.anchored import AnchoredMerge, anchored_merge, check_anchor, common_start
from lesionsoup.merging.averaging import (
    INDEPENDENT,
    average_checkpoints,
    check_compatible,
    ingredient_start,
)
from lesionsoup.merging.batchnorm import (
    POLICY_FUNCTIONS,
    BatchNormRecompute,
    PolicyInputs,
    check_policy,
)
from lesionsoup.merging.candidates import base_group_key
from lesionsoup.merging.parts import anchor_rest, part_filter
from lesionsoup.merging.selection import GroupKey, Selection, SelectionStep

log = logging.getLogger(__name__)

#: Metadata a merged model inherits: what inference needs (every ingredient records it
#: alike, so the merged model is as complete as they are), the start (shared initialisation
#: or independent) and parent of the ingredient it is described by (the first, the single
#: best, or a part soup's anchor).
LINEAGE: tuple[str, ...] = (*INFERENCE_FIELDS, "init_id", "start", "parent")
#: The selection stage that picks a part soup's anchor.
ANCHOR = "anchor"


class Scorer(Protocol):
    """Held-out score of a model given its state dict; higher is better."""

    def __call__(self, state_dict: StateDict) -> float: ...


@dataclass
class MergeResult:
    """A merged state dict and its lineage."""

    state_dict: StateDict
    rule: str
    bn_policy: str
    ingredients: list[str]
    weights: dict[str, float]  # every ingredient considered; 0 for those left out
    selection_trace: list[SelectionStep]
    merge_seconds: float  # building the final model
    selection_seconds: float  # scoring candidates
    compute_seconds: float  # training time of the ingredients (sum; SWA: the latest snapshot's)
    score: float | None  # the final model's held-out score, when selection computed it
    lineage: dict[str, Any] = field(default_factory=dict)  # LINEAGE: what the ingredients share
    part: Part = DEFAULT_PART  # what is averaged; the rest is the anchor's
    anchor: str | None = None  # a part soup's anchor ingredient
    starts: dict[str, str] = field(default_factory=dict)  # each ingredient's start
    #: An anchored rule's settings: its common start (``merged_from``), TIES' ``keep``.
    anchored: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """Sidecar metadata for ``save_checkpoint``."""
        return {
            **self.lineage,
            "rule": self.rule,
            "bn_policy": self.bn_policy,
            "ingredients": self.ingredients,
            "weights": self.weights,
            "part": self.part,
            **({"anchor": self.anchor} if self.anchor is not None else {}),
            "starts": self.starts,
            **self.anchored,
            "selection_trace": [asdict(step) for step in self.selection_trace],
            "merge_seconds": self.merge_seconds,
            "selection_seconds": self.selection_seconds,
            "compute_seconds": self.compute_seconds,
            **({"validation": {"selection_score": self.score}} if self.score is not None else {}),
        }


class Merger:
    """Builds and scores soups of one set of compatible checkpoints under one BatchNorm policy.

    ``scorer`` is needed for selection and for ``copy-best``; ``recompute`` for
    the ``recompute`` policy. Each soup is scored once, however often asked. A
    soup of a ``part`` averages that part and takes the rest from ``anchor``
    (one of the ingredients), whose tensors it reads once. With ``combine`` (an anchored
    rule's merge) a soup of several members is their merge around the ingredients' common
    start, each member alike; a single member is itself, as selection and copy-best score it.
    That start is ``start`` once checked against the ingredients (``check_anchor``: the
    pretrained start of an encoder soup of independent runs, or their shared
    initialisation), else the shared initialisation their sidecars lead to.
    """

    def __init__(
        self,
        ingredients: Sequence[Path],
        *,
        bn_policy: BatchNormPolicy = "average",
        scorer: Scorer | None = None,
        recompute: BatchNormRecompute | None = None,
        part: Part = DEFAULT_PART,
        anchor: Path | None = None,
        combine: tuple[str, AnchoredMerge] | None = None,
        start: Path | None = None,
    ) -> None:
        self.ingredients = [Path(p) for p in ingredients]
        if len(set(self.ingredients)) != len(self.ingredients):
            raise ValueError(f"an ingredient is listed twice: {[str(p) for p in ingredients]}")
        check_policy(bn_policy, can_score=scorer is not None, recompute=recompute)
        self.bn_policy = bn_policy
        self.scorer = scorer
        self.recompute = recompute
        self.metadata = check_compatible(self.ingredients)
        if (part == DEFAULT_PART) != (anchor is None) or anchor not in (None, *self.ingredients):
            needed = "no anchor" if part == DEFAULT_PART else "an anchor among its ingredients"
            raise ValueError(f"a {part} soup takes {needed}, not {anchor}")
        self.part, self.anchor = part, anchor
        self._averaged = part_filter(part)
        self._anchor_rest = anchor_rest(anchor, part) if anchor is not None else {}
        self._scores: dict[tuple[tuple[str, float], ...], float] = {}
        self.combine = None if combine is None else combine[1]
        self.start = self._anchored_start(combine, start)
        self._start_state: StateDict | None = None

    def _anchored_start(
        self, combine: tuple[str, AnchoredMerge] | None, start: Path | None
    ) -> Path | None:
        """The checked common start of an anchored rule's merge; None without one."""
        if combine is None:
            if start is not None:
                raise ValueError(f"{start}: only an anchored rule merges around a start")
            return None
        if start is None:
            return common_start(combine[0], self.metadata)
        return check_anchor(combine[0], start, self.metadata, self.part)

    def _members(self, weights: Mapping[Path, float]) -> list[Path]:
        """Ingredients with a positive weight, in ingredient order."""
        return [path for path in self.ingredients if weights.get(path, 0.0) > 0]

    def build(self, weights: Mapping[Path, float]) -> StateDict:
        """The averaged state dict of a soup with this merger's BatchNorm policy applied."""
        members = self._members(weights)
        if self.combine is not None and self.start is not None and len(members) > 1:
            if self._start_state is None:
                self._start_state = load_state_dict(self.start)
            models = [load_state_dict(path) for path in members]
            state = self.combine(self._start_state, models, self._averaged)
        else:
            weighted = [weights[path] for path in members]
            state = average_checkpoints(members, weighted, self._averaged)
        state.update((name, tensor.clone()) for name, tensor in self._anchor_rest.items())
        inputs = PolicyInputs(members, self.evaluate, self.recompute, self._averaged)
        return POLICY_FUNCTIONS[self.bn_policy](state, inputs)

    def _soup_key(self, weights: Mapping[Path, float]) -> tuple[tuple[str, float], ...]:
        """Normalised weights, rounded so that one soup reached two ways is one key."""
        members = self._members(weights)
        total = sum(weights[path] for path in members)
        return tuple((str(path), round(weights[path] / total, 12)) for path in members)

    def evaluate(self, weights: Mapping[Path, float]) -> float:
        """The held-out score of a soup built by ``build`` (remembered per soup)."""
        if self.scorer is None:
            raise ValueError("scoring soups needs a scorer")
        key = self._soup_key(weights)
        if key not in self._scores:
            score = float(self.scorer(self.build(weights)))
            if math.isnan(score):
                raise ValueError(f"the scorer returned NaN for the soup {dict(key)}")
            self._scores[key] = score
        return self._scores[key]

    def result(self, rule: str, chosen: Selection, selection_seconds: float) -> MergeResult:
        """The final model of a selection, built and described."""
        start = perf_counter()
        state = self.build(chosen.weights)
        merge_seconds = perf_counter() - start
        total = sum(chosen.weights.values())
        costs = [
            float(meta.get("compute_seconds", meta.get("wall_seconds", 0.0)))
            for meta in self.metadata.values()
        ]
        described_by = self.metadata[chosen.described_by or self.anchor or self.ingredients[0]]
        return MergeResult(
            state_dict=state,
            rule=rule,
            bn_policy=self.bn_policy,
            ingredients=[str(path) for path in self.ingredients],
            weights={str(p): chosen.weights.get(p, 0.0) / total for p in self.ingredients},
            selection_trace=chosen.trace,
            merge_seconds=merge_seconds,
            selection_seconds=selection_seconds,
            compute_seconds=max(costs) if merge_rule(rule).one_run else sum(costs),
            score=self._scores.get(self._soup_key(chosen.weights)),
            lineage={key: described_by[key] for key in LINEAGE if key in described_by},
            part=self.part,
            anchor=None if self.anchor is None else str(self.anchor),
            starts={str(path): ingredient_start(path, m) for path, m in self.metadata.items()},
            anchored={} if self.start is None else {"merged_from": str(self.start)},
        )


def _uniform(merger: Merger, group_key: GroupKey) -> Selection:
    return Selection(selection.uniform(merger.ingredients))


def _greedy(merger: Merger, group_key: GroupKey) -> Selection:
    return selection.greedy(selection.singles(merger.ingredients), merger.evaluate, "greedy")


def _single_best(merger: Merger, group_key: GroupKey) -> Selection:
    return selection.single_best(merger.ingredients, merger.evaluate)


def _hierarchical(
    merger: Merger, group_key: GroupKey, *, global_greedy: bool, local_greedy: bool
) -> Selection:
    grouped = selection.groups(merger.metadata, group_key)
    return selection.hierarchical(
        grouped, merger.evaluate, global_greedy=global_greedy, local_greedy=local_greedy
    )


#: Each rule of ``lesionsoup.core.merge_rules.RULES``, by name, as what it selects.
RULE_FUNCTIONS: dict[str, Callable[[Merger, GroupKey], Selection]] = {
    "best": _single_best,
    "uniform": _uniform,
    "greedy": _greedy,
    "swa": _uniform,  # one run's snapshots, averaged alike
    "UoU": partial(_hierarchical, global_greedy=False, local_greedy=False),
    "UoG": partial(_hierarchical, global_greedy=False, local_greedy=True),
    "GoU": partial(_hierarchical, global_greedy=True, local_greedy=False),
    "GoG": partial(_hierarchical, global_greedy=True, local_greedy=True),
    # every candidate, merged around their common start by the Merger's anchored merge
    "model_stock": _uniform,
    "ties": _uniform,
}


def pick_anchor(ingredients: Sequence[Path], scorer: Scorer | None) -> Selection:
    """A part soup's anchor: the ingredient that scores best as it is, as the ``best`` rule
    with its default BatchNorm policy picks it, with every ingredient's score in the trace."""
    full = Merger(ingredients, scorer=scorer)
    return selection.single_best(full.ingredients, full.evaluate, ANCHOR)


def _warn_on_starts(merger: Merger) -> None:
    """Say so when a soup averages more than the encoder over several starts."""
    starts = {ingredient_start(path, meta) for path, meta in merger.metadata.items()}
    if merger.part != "encoder" and (len(starts) > 1 or INDEPENDENT in starts):
        log.warning(
            "a %s soup of ingredients started apart (%s): only their encoders share a start, "
            "the pretrained one",
            merger.part,
            ", ".join(sorted(starts)),
        )


def merge(
    ingredients: Sequence[Path],
    rule: str,
    *,
    bn_policy: BatchNormPolicy | None = None,
    scorer: Scorer | None = None,
    recompute: BatchNormRecompute | None = None,
    group_key: GroupKey | None = None,
    part: Part = DEFAULT_PART,
    keep: float = DEFAULT_KEEP,
    start: Path | None = None,
) -> MergeResult:
    """Merge checkpoints by ``rule`` (a name of ``core.merge_rules.RULES``), by default with
    the rule's BatchNorm policy; hierarchical rules group the ingredients by ``group_key``
    (default: the learning rate of each ingredient's base run, ``DEFAULT_GROUP_BY`` of the run
    that left the shared initialisation, so FGG and SWA snapshots join their base's group).
    A ``part`` other than ``full`` averages that part only, the rest from the anchor. An
    anchored rule (``model_stock``, ``ties`` keeping ``keep`` of each update) merges around
    the ingredients' common start, ``start`` when given (checked, ``check_anchor``: the
    pretrained start for an encoder soup of independent runs), and refuses ingredients that
    have none."""
    check_part(rule, part)
    combine = (rule, anchored_merge(rule, keep)) if merge_rule(rule).anchored else None
    policy = bn_policy or merge_rule(rule).bn_policy
    began = perf_counter()
    anchor = pick_anchor(ingredients, scorer) if part != DEFAULT_PART else None
    merger = Merger(
        ingredients,
        bn_policy=policy,
        scorer=scorer,
        recompute=recompute,
        part=part,
        anchor=anchor and anchor.described_by,
        combine=combine,
        start=start,
    )
    _warn_on_starts(merger)
    key = base_group_key(DEFAULT_GROUP_BY) if group_key is None else group_key
    chosen = RULE_FUNCTIONS[rule](merger, key)
    if anchor is not None:
        chosen = Selection(chosen.weights, anchor.trace + chosen.trace, chosen.described_by)
    result = merger.result(rule, chosen, perf_counter() - began)
    if rule == "ties":
        result.anchored["keep"] = keep
    return result
