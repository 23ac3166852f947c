"""Part soups: the encoder or the decoder (with the segmentation head) averaged, the rest from
the anchor, on small U-Nets; checked against means computed here with torch on the state
dicts, and against the anchor's tensors bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TINY_SETTINGS, TINY_SPEC, write_toy_cache
from torch.optim.swa_utils import update_bn

from lesionsoup.cli import build_parser, main
from lesionsoup.core.checkpoint import StateDict, load_checkpoint, load_metadata, save_checkpoint
from lesionsoup.core.merge_rules import PARTS, RULES
from lesionsoup.core.methods import method_name
from lesionsoup.core.model import build_model
from lesionsoup.data.cache import Cache
from lesionsoup.inference.predictor import IncompatibleModels
from lesionsoup.merging.averaging import check_compatible
from lesionsoup.merging.batchnorm import BatchNormRecompute
from lesionsoup.merging.held_out import HeldOut
from lesionsoup.merging.soups import merge
from lesionsoup.merging.stage import merge_stage
from lesionsoup.plan.evaluation import evaluated_models, model_table
from lesionsoup.plan.ingredients import merged_models, soup_arguments, soup_settings
from lesionsoup.report.tables import ordered_methods

#: The encoder's tensors, or the decoder's and the segmentation head's: written out here.
IN_PART: dict[str, Callable[[str], bool]] = {
    "encoder": lambda name: name.split(".")[0] == "encoder",
    "decoder": lambda name: name.split(".")[0] in ("decoder", "segmentation_head"),
}


def random_state(seed: int) -> StateDict:
    """A small U-Net's state with every floating tensor (statistics too) drawn from ``seed``,
    and BatchNorm step counts that differ between seeds."""
    generator = torch.Generator().manual_seed(seed)
    state = build_model(TINY_SPEC).state_dict()
    for name, tensor in state.items():
        if tensor.is_floating_point():
            state[name] = torch.rand(tensor.shape, generator=generator) + 0.1
        else:
            state[name] = torch.full_like(tensor, 10 + seed)
    return state


def write(path: Path, state: StateDict, **metadata) -> Path:
    recorded = {
        "architecture": TINY_SPEC.as_dict(),
        "cache_size": 64,
        "init_id": "init-0",
        "hyperparameters": TINY_SETTINGS.as_dict(),
        **metadata,
    }
    save_checkpoint(path, state, recorded)
    return path


def distance_scorer(target: StateDict) -> Callable[[StateDict], float]:
    """Higher the closer a state's floating tensors are to ``target``'s."""

    def score(state: StateDict) -> float:
        return -sum(
            float((state[name].double() - tensor.double()).pow(2).sum())
            for name, tensor in target.items()
            if tensor.is_floating_point()
        )

    return score


def hand_mean(states: list[StateDict], name: str, weights: list[float]) -> torch.Tensor:
    total = sum(w * s[name].double() for s, w in zip(states, weights, strict=True))
    return (total / sum(weights)).to(states[0][name].dtype)


@pytest.fixture
def three(tmp_path: Path) -> tuple[list[Path], list[StateDict]]:
    states = [random_state(seed) for seed in range(3)]
    paths = [write(tmp_path / f"m{i}.safetensors", s) for i, s in enumerate(states)]
    return paths, states


def assert_part_soup(merged: StateDict, states: list[StateDict], part: str, anchor: StateDict):
    """The part is the mean of the ingredients (step counts: their maximum), the rest the
    anchor's bit for bit; both parts hold tensors."""
    averaged = [name for name in merged if IN_PART[part](name)]
    rest = [name for name in merged if not IN_PART[part](name)]
    assert averaged and rest and set(merged) == set(states[0])
    for name in averaged:
        if merged[name].is_floating_point():
            expected = hand_mean(states, name, [1.0] * len(states))
        else:
            expected = torch.stack([s[name] for s in states]).amax(0)
        torch.testing.assert_close(merged[name], expected, msg=name)
    for name in rest:
        assert torch.equal(merged[name], anchor[name]), name


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_uniform_part_soup_averages_the_part_and_keeps_the_anchors_rest(three, part):
    paths, states = three
    result = merge(paths, "uniform", scorer=distance_scorer(states[1]), part=part)
    assert result.anchor == str(paths[1])  # the ingredient the scorer ranks best
    assert_part_soup(result.state_dict, states, part, states[1])
    head = "segmentation_head.0.weight"
    assert torch.equal(result.state_dict[head], states[1][head]) == (part == "encoder")
    metadata = result.metadata()
    assert (metadata["part"], metadata["anchor"]) == (part, str(paths[1]))
    anchor_steps = [step for step in metadata["selection_trace"] if step["stage"] == "anchor"]
    own = [distance_scorer(states[1])(state) for state in states]
    assert [step["score"] for step in anchor_steps] == pytest.approx(own)
    assert [step["accepted"] for step in anchor_steps] == [False, True, False]


def test_full_soup_is_unchanged_and_names_no_anchor(three):
    paths, states = three
    result = merge(paths, "uniform")
    for name, tensor in result.state_dict.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, hand_mean(states, name, [1.0, 1.0, 1.0]))
    assert result.metadata()["part"] == "full" and "anchor" not in result.metadata()


def test_greedy_part_soup_chooses_encoders_with_the_anchors_decoder(tmp_path):
    """A is the anchor (best as it is); the target's encoder lies between A's and B's (nearer
    B's), so greedy keeps B then A; C's encoder is far and is left out."""
    a = random_state(0)
    b = {n: t + torch.randn_like(t) * 0.1 if t.is_floating_point() else t for n, t in a.items()}
    b = {n: t + 10 * (t - a[n]) * IN_PART["decoder"](n) for n, t in b.items()}  # far decoder
    c = {n: t + 3.0 if t.is_floating_point() else t for n, t in a.items()}
    target = {n: 0.4 * a[n] + 0.6 * b[n] if IN_PART["encoder"](n) else a[n] for n in a}
    score = distance_scorer(target)
    assert score(a) > score(b) > score(c)  # the anchor is A
    paths = [write(tmp_path / f"{n}.safetensors", s) for n, s in (("c", c), ("a", a), ("b", b))]
    result = merge(paths, "greedy", scorer=score, part="encoder")
    assert result.anchor == str(paths[1])
    assert result.weights == {str(paths[0]): 0.0, str(paths[1]): 0.5, str(paths[2]): 0.5}
    greedy = [(s.candidate, s.accepted) for s in result.selection_trace if s.stage == "greedy"]
    assert greedy == [(str(paths[2]), True), (str(paths[1]), True), (str(paths[0]), False)]
    assert_part_soup(result.state_dict, [a, b], "encoder", a)


def test_hierarchical_part_soup_weights_the_groups(tmp_path, three):
    """UoU over groups {m0, m1} and {m2}: the encoder is 1/4 m0 + 1/4 m1 + 1/2 m2."""
    _, states = three
    paths = [
        write(tmp_path / f"g{i}.safetensors", s, hyperparameters={"lr": lr})
        for i, (s, lr) in enumerate(zip(states, (1e-3, 1e-3, 3e-3), strict=True))
    ]
    result = merge(paths, "UoU", scorer=distance_scorer(states[0]), part="encoder")
    for name, tensor in result.state_dict.items():
        if IN_PART["encoder"](name) and tensor.is_floating_point():
            torch.testing.assert_close(tensor, hand_mean(states, name, [0.25, 0.25, 0.5]))
        elif not IN_PART["encoder"](name):
            assert torch.equal(tensor, states[0][name]), name


def test_copy_best_sets_only_the_averaged_parts_statistics(three):
    """The member whose soup alone (its decoder, the anchor's encoder) scores best gives the
    decoder's statistics; the encoder's statistics stay the anchor's."""
    paths, states = three
    target = {n: states[2][n] if IN_PART["decoder"](n) else states[0][n] for n in states[0]}
    target = {n: t + 0.01 if IN_PART["encoder"](n) else t for n, t in target.items()}
    result = merge(
        paths, "uniform", bn_policy="copy-best", scorer=distance_scorer(target), part="decoder"
    )
    assert result.anchor == str(paths[0])  # m2's encoder is farther than m0's decoder
    merged = result.state_dict
    for name, tensor in merged.items():
        statistic = name.rsplit(".", 1)[-1] in ("running_mean", "running_var")
        if IN_PART["encoder"](name):
            assert torch.equal(tensor, states[0][name]), name
        elif statistic:
            assert torch.equal(tensor, states[2][name]), name


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_recompute_sets_only_the_averaged_parts_statistics(three, part):
    paths, states = three
    batches = [torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in (1, 2)]
    recompute = BatchNormRecompute(lambda: build_model(TINY_SPEC), batches)
    result = merge(
        paths,
        "uniform",
        bn_policy="recompute",
        scorer=distance_scorer(states[2]),
        recompute=recompute,
        part=part,
    )
    hybrid = {
        name: hand_mean(states, name, [1.0] * 3) if IN_PART[part](name) else states[2][name]
        for name in states[0]
    }
    reference = build_model(TINY_SPEC)
    reference.load_state_dict(hybrid)
    update_bn(batches, reference)
    expected = reference.state_dict()
    for name, tensor in result.state_dict.items():
        if IN_PART[part](name):
            torch.testing.assert_close(tensor, expected[name], msg=name)
        else:
            assert torch.equal(tensor, states[2][name]), name


def test_part_is_refused_where_it_means_nothing(three):
    paths, states = three
    for rule in ("best", "swa"):
        with pytest.raises(ValueError, match=f"the {rule} rule averages no part"):
            merge(paths, rule, scorer=distance_scorer(states[0]), part="encoder")
        with pytest.raises(ValueError, match="averages no part"):
            merge_stage(Path("never.safetensors"), [Path("missing")], {}, rule, part="decoder")
    assert {name for name, rule in RULES.items() if not rule.averages_parts} == {"best", "swa"}
    with pytest.raises(ValueError, match="scorer"):
        merge(paths, "uniform", part="encoder")  # the anchor is chosen by score


def test_starts_are_recorded_and_unverifiable_ones_refused(tmp_path, three, caplog):
    paths, states = three
    alone = write(tmp_path / "alone.safetensors", states[0], init_id=None, start="independent")
    score = distance_scorer(states[0])
    result = merge([*paths[:2], alone], "uniform", scorer=score, part="encoder")
    assert "started apart" not in caplog.text  # the encoders share the pretrained start
    merge([paths[0], alone], "uniform", scorer=score, part="decoder")
    assert "a decoder soup of ingredients started apart (independent, shared:init-0)" in caplog.text
    assert result.metadata()["starts"] == {
        str(paths[0]): "shared:init-0",
        str(paths[1]): "shared:init-0",
        str(alone): "independent",
    }
    unknown = write(tmp_path / "unknown.safetensors", states[0], init_id=None)
    with pytest.raises(IncompatibleModels, match="unknown.safetensors: no init_id"):
        check_compatible([paths[0], unknown])
    other = write(tmp_path / "other.safetensors", states[0], init_id="init-1")
    with pytest.raises(IncompatibleModels, match="other.safetensors and .* differ in init_id"):
        check_compatible([alone, paths[0], other])


# -- the stage, the command line, the plan --


def test_cli_part_soup_sidecar_names_the_anchor_by_validation_score(tmp_path, three):
    paths, _ = three
    cache = write_toy_cache(tmp_path / "cache" / "AAA", "AAA")
    output = tmp_path / "soup.safetensors"
    options = ["--rule", "greedy", "--part", "decoder", "--cache", str(cache)]
    assert main(["merge", "-o", str(output), *options, *map(str, paths)]) == 0
    metadata = load_metadata(output)
    held_out = HeldOut({"AAA": Cache(cache)}, TINY_SETTINGS.bins, "cpu")
    own = {str(p): held_out.scores(load_checkpoint(p)[0], TINY_SPEC)["score"] for p in paths}
    assert (metadata["part"], metadata["anchor"]) == ("decoder", max(own, key=own.get))
    merged, _ = load_checkpoint(output)
    anchor = load_checkpoint(Path(metadata["anchor"]))[0]
    assert all(torch.equal(merged[n], anchor[n]) for n in merged if IN_PART["encoder"](n))
    assert set(metadata["starts"].values()) == {"shared:init-0"}


CONFIG = {
    "datasets": {"IDRID": {}},
    "training": {"combinations": ["IDRID"], "seeds": [0], "recipes": {"base": {}}},
    "merging": {
        "soups": {
            "uniform": {},
            "encoders": {"rule": "uniform", "part": "encoder"},
            "decoders": {"rule": "greedy", "part": "decoder"},
        }
    },
}


def test_soup_arguments_pass_the_part_to_the_command():
    for soup, part in (("uniform", "full"), ("encoders", "encoder"), ("decoders", "decoder")):
        assert soup_settings(CONFIG, soup)["part"] == part
        options = soup_arguments(CONFIG, soup).split()
        args = build_parser().parse_args(
            ["merge", "-o", "m.safetensors", *options, "--cache", "c", "x"]
        )
        assert args.part == part
    bad = {**CONFIG, "merging": {"soups": {"b": {"rule": "best", "part": "encoder"}}}}
    with pytest.raises(ValueError, match="merging.soups.b: the best rule averages no part"):
        soup_settings(bad, "b")


def test_a_part_soup_is_its_own_method_in_metrics_and_figures():
    methods = {path: method for path, _, method in merged_models(CONFIG)}
    assert methods == {
        "results/merged/IDRID/uniform.safetensors": "uniform",
        "results/merged/IDRID/encoders.safetensors": "uniform-encoder",
        "results/merged/IDRID/decoders.safetensors": "greedy-decoder",
    }
    table = model_table(evaluated_models(CONFIG))
    assert table["results/merged/IDRID/encoders.safetensors"] == ["IDRID", "uniform-encoder"]
    shuffled = ["greedy-decoder", "zzz", "uniform-encoder", "greedy", "uniform", "single"]
    assert ordered_methods(shuffled) == [
        "single", "uniform", "uniform-encoder", "greedy", "greedy-decoder", "zzz",
    ]  # fmt: skip
    assert [method_name("GoU", part) for part in PARTS] == ["GoU", "GoU-encoder", "GoU-decoder"]
