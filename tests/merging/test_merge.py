import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from lesionsoup.core.checkpoint import load_checkpoint, save_checkpoint
from lesionsoup.core.merge_rules import BN_POLICIES, RULES
from lesionsoup.inference.predictor import IncompatibleModels
from lesionsoup.merging.averaging import average_checkpoints
from lesionsoup.merging.batchnorm import POLICY_FUNCTIONS, BatchNormRecompute, recompute_bn
from lesionsoup.merging.selection import groups
from lesionsoup.merging.soups import RULE_FUNCTIONS, Merger, merge

ARCHITECTURE = {"arch": "tiny", "classes": 2}


def write(directory: Path, name: str, state: dict[str, torch.Tensor], **metadata: Any) -> Path:
    """A checkpoint with compatible defaults for the lineage keys."""
    path = directory / f"{name}.safetensors"
    defaults = {"architecture": ARCHITECTURE, "cache_size": 64, "init_id": "init-0"}
    save_checkpoint(path, state, {**defaults, **metadata})
    return path


# -- averaging --


def test_two_known_tensors_average_exactly(tmp_path: Path) -> None:
    a = write(tmp_path, "a", {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([[0.5]])})
    b = write(tmp_path, "b", {"w": torch.tensor([3.0, 4.0]), "b": torch.tensor([[1.5]])})
    merged = average_checkpoints([a, b])
    assert torch.equal(merged["w"], torch.tensor([2.0, 3.0]))
    assert torch.equal(merged["b"], torch.tensor([[1.0]]))


def test_weights_are_respected_and_normalised(tmp_path: Path) -> None:
    a = write(tmp_path, "a", {"w": torch.tensor([1.0, 2.0])})
    b = write(tmp_path, "b", {"w": torch.tensor([3.0, 4.0])})
    assert torch.equal(average_checkpoints([a, b], [3.0, 1.0])["w"], torch.tensor([1.5, 2.5]))
    assert torch.equal(average_checkpoints([a, b], [0.0, 2.0])["w"], torch.tensor([3.0, 4.0]))
    for bad in ([-1.0, 2.0], [0.0, 0.0], [float("nan"), 1.0], [1.0]):
        with pytest.raises(ValueError, match="weights"):
            average_checkpoints([a, b], bad)


def test_uniform_soup_of_identical_models_is_that_model(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    state = {
        "w": torch.randn(64, 33, generator=generator),
        "h": torch.randn(50, generator=generator).half(),
        "g": torch.randn(50, generator=generator).bfloat16(),
        "bn.num_batches_tracked": torch.tensor(5),
    }
    paths = [write(tmp_path, f"copy{i}", state) for i in range(7)]
    for merged in (average_checkpoints(paths), merge(paths, "uniform").state_dict):
        for name, tensor in state.items():
            assert merged[name].dtype == tensor.dtype
            assert torch.equal(merged[name], tensor), name


def test_num_batches_tracked_is_never_averaged(tmp_path: Path) -> None:
    paths = [
        write(
            tmp_path, name, {"bn.running_mean": torch.full((2,), mean), "bn.num_batches_tracked": n}
        )
        for name, mean, n in (("a", 1.0, torch.tensor(10)), ("b", 3.0, torch.tensor(31)))
    ]
    merged = average_checkpoints(paths)
    assert torch.equal(merged["bn.running_mean"], torch.full((2,), 2.0))
    assert merged["bn.num_batches_tracked"].dtype == torch.int64
    assert merged["bn.num_batches_tracked"].item() == 31


# -- compatibility --


@pytest.mark.parametrize(
    ("other_state", "other_metadata", "difference"),
    [
        ({"w": torch.zeros(2)}, {"architecture": {"arch": "other"}}, "architecture"),
        ({"w": torch.zeros(2)}, {"init_id": "init-1"}, "init_id"),
        ({"w": torch.zeros(2)}, {"cache_size": 128}, "cache_size: 128 vs 64"),
        ({"w": torch.zeros(2)}, {"cache_size": None}, "cache_size: None vs 64"),
        ({"w": torch.zeros(3)}, {}, r"changed.*w"),
        ({"w": torch.zeros(2, dtype=torch.float16)}, {}, r"changed.*F16"),
        ({"w": torch.zeros(2), "extra": torch.zeros(1)}, {}, r"unexpected.*extra"),
        ({"v": torch.zeros(2)}, {}, r"missing.*'w'"),
    ],
)
def test_incompatible_ingredients_are_refused(
    tmp_path: Path, other_state: dict, other_metadata: dict, difference: str
) -> None:
    first = write(tmp_path, "first", {"w": torch.zeros(2)})
    other = write(tmp_path, "other", other_state, **other_metadata)
    with pytest.raises(IncompatibleModels, match=f"{other}.*{difference}"):
        average_checkpoints([first, other])
    with pytest.raises(IncompatibleModels, match=str(other)):
        Merger([first, other])


def test_independent_starts_average_and_two_shared_initialisations_never_do(tmp_path: Path) -> None:
    """The paper's soups average independently started runs; two different shared
    initialisations are refused."""
    independent = []
    for name, value in (("a", 1.0), ("b", 3.0)):
        independent.append(tmp_path / f"{name}.safetensors")
        meta = {"architecture": ARCHITECTURE, "start": "independent"}
        save_checkpoint(independent[-1], {"w": torch.full((2,), value)}, meta)
    state = average_checkpoints(independent)
    assert torch.equal(state["w"], torch.full((2,), 2.0))
    shared = write(tmp_path, "shared", {"w": torch.zeros(2)})
    other = write(tmp_path, "other", {"w": torch.zeros(2)}, init_id="another")
    with pytest.raises(IncompatibleModels, match="init_id"):
        average_checkpoints([shared, other])


# -- BatchNorm recomputation --


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4, momentum=0.3),
        nn.ReLU(),
        nn.Conv2d(4, 2, 1),
        nn.BatchNorm2d(2),
    )


def example_batches() -> list[Any]:
    generator = torch.Generator().manual_seed(2)
    images = [torch.randn(2, 3, 8, 8, generator=generator) * (i + 1) for i in range(3)]
    return [images[0], (images[1], torch.zeros(2)), [images[2], torch.ones(2)]]


def test_recompute_bn_equals_torch_update_bn() -> None:
    ours, theirs = tiny_net(), tiny_net()
    for model in (ours, theirs):  # stale statistics that both must discard
        model.train()
        model(torch.randn(4, 3, 8, 8) + 5)
        model.eval()
    recompute_bn(ours, example_batches(), "cpu")
    update_bn(example_batches(), theirs, "cpu")
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for name, tensor in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], tensor), name
    assert ours[4].num_batches_tracked.item() == 3
    assert not ours.training
    assert (ours[1].momentum, ours[4].momentum) == (0.3, 0.1)


def test_recompute_bn_restores_momenta_and_mode_on_error() -> None:
    model = tiny_net()
    model.eval()
    with pytest.raises(TypeError, match="model input"):
        recompute_bn(model, [torch.randn(2, 3, 8, 8), "not a batch"])
    assert not model.training
    assert model[1].momentum == 0.3


def test_recompute_policy_matches_update_bn_on_the_averaged_weights(tmp_path: Path) -> None:
    base = tiny_net().state_dict()
    paths = []
    for i in range(2):
        torch.manual_seed(10 + i)
        state = {
            k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v
            for k, v in base.items()
        }
        paths.append(write(tmp_path, f"m{i}", state, wall_seconds=100.0 * (i + 1)))
    recompute = BatchNormRecompute(make_model=tiny_net, batches=example_batches())
    result = merge(paths, "swa", recompute=recompute)

    expected = tiny_net()
    expected.load_state_dict(average_checkpoints(paths))
    update_bn(example_batches(), expected)
    assert result.bn_policy == "recompute"
    assert result.compute_seconds == 200.0  # SWA: the latest snapshot, not the sum
    for name, tensor in expected.state_dict().items():
        assert torch.equal(result.state_dict[name], tensor), name


# -- selection with scripted scorers --


def one_hot_ingredients(tmp_path: Path, groups: Mapping[str, float]) -> list[Path]:
    """Ingredients whose tensor ``code`` is a one-hot vector, so that a soup's ``code``
    is its weight vector; ``groups`` maps each name to its learning rate."""
    names = list(groups)
    return [
        write(
            tmp_path,
            name,
            {"code": torch.eye(len(names))[i], "bn.running_mean": torch.full((1,), float(i))},
            hyperparameters={"lr": groups[name]},  # as every run records it
            wall_seconds=10.0,
        )
        for i, name in enumerate(names)
    ]


class TableScorer:
    """Scores a soup by the set of ingredients in it; records every call."""

    def __init__(self, names: list[str], table: Mapping[frozenset[str], float]) -> None:
        self.names = names
        self.table = {frozenset(key): value for key, value in table.items()}
        self.calls: list[dict[str, float]] = []

    def __call__(self, state_dict: dict[str, torch.Tensor]) -> float:
        weights = {
            n: float(w) for n, w in zip(self.names, state_dict["code"], strict=True) if w > 0
        }
        self.calls.append(weights)
        return self.table[frozenset(weights)]  # KeyError: a candidate nobody expected


def s(*names: str) -> frozenset[str]:
    return frozenset(names)


# a1, a2 share one learning rate, b1, b2 another; worked out by hand below.
GROUPS = {"a1": 0.1, "a2": 0.1, "b1": 0.01, "b2": 0.01}
TABLE = {
    s("a1"): 0.5,
    s("a2"): 0.6,
    s("b1"): 0.7,
    s("b2"): 0.4,
    s("a1", "a2"): 0.65,
    s("b1", "b2"): 0.7,  # equal to b1 alone: not a strict improvement
    s("a2", "b1"): 0.72,
    s("a1", "a2", "b1"): 0.69,
    s("a2", "b1", "b2"): 0.8,
    s("a1", "a2", "b1", "b2"): 0.66,
}


def weights_by_name(result_weights: dict[str, float]) -> dict[str, float]:
    return {Path(path).stem: round(weight, 9) for path, weight in result_weights.items()}


def test_greedy_soup_ranks_tries_once_and_keeps_strict_improvements(tmp_path: Path) -> None:
    paths = one_hot_ingredients(tmp_path, GROUPS)
    scorer = TableScorer(list(GROUPS), TABLE)
    result = merge(paths, "greedy", scorer=scorer)
    # ranked b1 .7, a2 .6, a1 .5, b2 .4: b1; +a2 .72 kept; +a1 .69 dropped; +b2 .8 kept
    assert [
        (Path(step.candidate).stem, step.score, step.accepted) for step in result.selection_trace
    ] == [
        ("b1", 0.7, True),
        ("a2", 0.72, True),
        ("a1", 0.69, False),
        ("b2", 0.8, True),
    ]
    third = round(1 / 3, 9)
    assert weights_by_name(result.weights) == {"a1": 0.0, "a2": third, "b1": third, "b2": third}
    assert result.score == 0.8
    assert len(scorer.calls) == 4 + 3  # each ingredient once, each candidate once
    assert scorer.calls[-1] == pytest.approx({"a2": 1 / 3, "b1": 1 / 3, "b2": 1 / 3})
    assert torch.allclose(result.state_dict["code"], torch.tensor([0.0, 1, 1, 1]) / 3)


def test_greedy_rejects_an_equal_score(tmp_path: Path) -> None:
    paths = one_hot_ingredients(tmp_path, {"b1": 0.01, "b2": 0.01})
    result = merge(paths, "greedy", scorer=TableScorer(["b1", "b2"], TABLE))
    assert [step.accepted for step in result.selection_trace] == [True, False]
    assert weights_by_name(result.weights) == {"b1": 1.0, "b2": 0.0}


@pytest.mark.parametrize(
    ("variant", "expected", "global_trace"),
    [
        # uniform over the two uniform local soups
        ("UoU", {"a1": 0.25, "a2": 0.25, "b1": 0.25, "b2": 0.25}, []),
        # local greedy: a keeps both (.65 > .6), b keeps b1 only (.7 is not > .7)
        ("UoG", {"a1": 0.25, "a2": 0.25, "b1": 0.5, "b2": 0.0}, []),
        # local uniform a .65, b .7; global greedy from b: adding a gives .66 -> dropped
        (
            "GoU",
            {"a1": 0.0, "a2": 0.0, "b1": 0.5, "b2": 0.5},
            [("lr=0.01", 0.7, True), ("lr=0.1", 0.66, False)],
        ),
        # local greedy a={a1,a2} .65, b={b1} .7; global from b: adding a gives .69 -> dropped
        (
            "GoG",
            {"a1": 0.0, "a2": 0.0, "b1": 1.0, "b2": 0.0},
            [("lr=0.01", 0.7, True), ("lr=0.1", 0.69, False)],
        ),
    ],
)
def test_hierarchical_soups(
    tmp_path: Path, variant: str, expected: dict[str, float], global_trace: list
) -> None:
    paths = one_hot_ingredients(tmp_path, GROUPS)
    scorer = TableScorer(list(GROUPS), TABLE)
    result = merge(paths, variant, scorer=scorer)
    assert result.rule == variant
    assert weights_by_name(result.weights) == expected
    steps = [(step.candidate, step.score, step.accepted) for step in result.selection_trace]
    assert [step for step in steps if not step[0].endswith(".safetensors")] == global_trace
    local_steps = [step for step in result.selection_trace if step.stage.startswith("local")]
    assert bool(local_steps) == variant.endswith("G")
    assert result.compute_seconds == 40.0


def test_hierarchical_greedy_local_trace(tmp_path: Path) -> None:
    paths = one_hot_ingredients(tmp_path, GROUPS)
    result = merge(paths, "UoG", scorer=TableScorer(list(GROUPS), TABLE))
    assert [
        (step.stage, Path(step.candidate).stem, step.score, step.accepted)
        for step in result.selection_trace
    ] == [
        ("local lr=0.1", "a2", 0.6, True),
        ("local lr=0.1", "a1", 0.65, True),
        ("local lr=0.01", "b1", 0.7, True),
        ("local lr=0.01", "b2", 0.7, False),
    ]


def test_group_key_is_configurable_and_checked(tmp_path: Path) -> None:
    paths = one_hot_ingredients(tmp_path, GROUPS)
    merger = Merger(paths, scorer=TableScorer(list(GROUPS), TABLE))

    def letter(metadata: dict[str, Any]) -> str:
        return "low" if metadata["hyperparameters"]["lr"] < 0.05 else "high"

    assert list(groups(merger.metadata, letter)) == ["letter=high", "letter=low"]
    with pytest.raises(ValueError, match="a1.safetensors: hyperparameters have no 'batch_size'"):
        merge(paths, "UoU", scorer=TableScorer(list(GROUPS), TABLE), group_key="batch_size")


def test_candidates_are_scored_with_the_final_batchnorm_policy(tmp_path: Path) -> None:
    paths = one_hot_ingredients(tmp_path, {"a1": 0.1, "a2": 0.1})
    seen: list[torch.Tensor] = []
    table = {s("a1"): 0.3, s("a2"): 0.9, s("a1", "a2"): 0.95}
    scorer = TableScorer(["a1", "a2"], table)

    def recording(state_dict: dict[str, torch.Tensor]) -> float:
        seen.append(state_dict["bn.running_mean"].clone())
        return scorer(state_dict)

    result = merge(paths, "greedy", bn_policy="copy-best", scorer=recording)
    assert weights_by_name(result.weights) == {"a1": 0.5, "a2": 0.5}
    # a2 (index 1, running mean 1.0) scores best alone, so the soup copies its statistics
    assert torch.equal(result.state_dict["bn.running_mean"], torch.tensor([1.0]))
    assert torch.equal(seen[-1], result.state_dict["bn.running_mean"])
    averaged = merge(paths, "greedy", bn_policy="average", scorer=TableScorer(["a1", "a2"], table))
    assert torch.equal(averaged.state_dict["bn.running_mean"], torch.tensor([0.5]))


def test_settings_each_rule_needs_are_checked(tmp_path: Path) -> None:
    paths = one_hot_ingredients(tmp_path, {"a1": 0.1, "a2": 0.1})
    with pytest.raises(ValueError, match="needs a scorer"):
        Merger(paths, bn_policy="copy-best")
    with pytest.raises(ValueError, match="needs a BatchNormRecompute"):
        Merger(paths, bn_policy="recompute")
    with pytest.raises(ValueError, match="needs a scorer"):
        merge(paths, "greedy")
    with pytest.raises(ValueError, match="unknown merge rule"):
        merge(paths, "soup")
    with pytest.raises(ValueError, match="listed twice"):
        Merger([paths[0], paths[0]])


def test_merged_checkpoint_carries_its_lineage(tmp_path: Path) -> None:
    paths = one_hot_ingredients(tmp_path, GROUPS)
    result = merge(paths, "GoU", scorer=TableScorer(list(GROUPS), TABLE))
    out = tmp_path / "merged" / "GoU.safetensors"
    out.parent.mkdir()
    save_checkpoint(out, result.state_dict, result.metadata())
    state, metadata = load_checkpoint(out)
    assert torch.equal(state["code"], result.state_dict["code"])
    assert metadata["rule"] == "GoU"
    assert metadata["bn_policy"] == "average"
    assert metadata["architecture"] == ARCHITECTURE and metadata["init_id"] == "init-0"
    assert metadata["cache_size"] == 64  # the ingredients' resolution: a complete model
    assert metadata["ingredients"] == [str(p) for p in paths]
    assert sum(metadata["weights"].values()) == pytest.approx(1.0)
    assert metadata["selection_trace"][0] == {
        "stage": "global",
        "candidate": "lr=0.01",
        "score": 0.7,
        "accepted": True,
    }
    assert metadata["compute_seconds"] == 40.0
    assert metadata["validation"] == {"selection_score": 0.7}
    assert metadata["merge_seconds"] >= 0 and metadata["selection_seconds"] >= 0
    json.dumps(metadata)  # plain JSON
    # a merged model is itself a valid ingredient of the same lineage
    assert torch.equal(
        average_checkpoints([out, paths[0]])["code"], (state["code"] + torch.eye(4)[0]) / 2
    )


def test_every_rule_and_policy_of_the_table_has_a_function():
    """The plan's table (names, defaults) and merging's functions cover the same names."""
    assert tuple(RULE_FUNCTIONS) == tuple(RULES)
    assert tuple(POLICY_FUNCTIONS) == BN_POLICIES
