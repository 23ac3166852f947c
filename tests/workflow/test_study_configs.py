"""The study configs plan every method they declare, and no demo value reaches them.

Dry runs only: each plans in seconds. The roots are tiny native trees
(tests/support/native_trees.py); planning never reads them, but the index jobs need them to exist.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.native_trees import ddr_tree, fgadr_tree, idrid_tree, maples_export_tree, retles_tree
from support.workflow import REPO, TINY_CONFIG, planned_commands, planned_jobs, write_config
from test_workflow_pretrained import TARGET as PRETRAINED_TARGET

from lesionsoup.cli import build_parser
from lesionsoup.plan import ingredients

PAPER = REPO / "config" / "paper.yaml"
FISSIONFUSION = REPO / "config" / "fissionfusion.yaml"
AVERAGING = REPO / "config" / "averaging.yaml"
DEMO = REPO / "config.yaml"
ALL_FIVE = "DDR+FGADR+IDRID+MAPLES+RETLES"
#: The sections FissionFusion's config shares with the paper's, so both studies train alike.
SHARED_SECTIONS = ("synthetic", "datasets", "preprocess", "model", "evaluation")
PARTS = ("encoder", "decoder", "full")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, str]:
    """A small native tree per dataset, in the layout each adapter reads."""
    base = tmp_path_factory.mktemp("roots")
    one_per_split = {split: {f"{split}1": ("EX",)} for split in ("train", "valid", "test")}
    maples = {"train": {"20051019_38557_0100_PP": ("exudates",)}, "test": {"20051020_0100_PP": ()}}
    trees = {
        "IDRID": idrid_tree(
            base / "IDRID", {"train": {"IDRiD_01": ("MA",)}, "test": {"IDRiD_02": ()}}
        ),
        "DDR": ddr_tree(base / "DDR", one_per_split),
        "FGADR": fgadr_tree(base / "FGADR", {f"{i:04d}_1": ("EX",) for i in range(4)}),
        "RETLES": retles_tree(base / "RETLES", {f"{i}_left": ("hard_exudate",) for i in range(4)}),
        "MAPLES": maples_export_tree(base / "MAPLES", maples),
    }
    return {name: str(root) for name, root in trees.items()}


def with_roots(study: Path, roots: dict[str, str]) -> dict[str, Any]:
    config = load(study)
    for name, settings in config["datasets"].items():
        if "of" not in settings:  # a subset (`of: DDR`) reads its dataset's root
            settings["root"] = roots[name]
    return config


def plan(workdir: Path, config: dict[str, Any] | None) -> Counter:
    """The dry run's jobs in ``workdir`` (created), for ``config`` or, if None, no --configfile."""
    workdir.mkdir(parents=True, exist_ok=True)
    if config is None:
        return planned_jobs(workdir, None)
    return planned_jobs(workdir, write_config(workdir.parent / f"{workdir.name}.yaml", config))


def by_rule(jobs: Counter) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (rule, _), count in jobs.items():
        counts[rule] += count
    return counts


def wildcards(jobs: Counter, rule: str) -> list[dict[str, str]]:
    """The wildcards of every planned job of ``rule``, as dicts."""
    return [
        dict(item.split("=", 1) for item in text.split(", "))
        for (name, text), count in jobs.items()
        if name == rule
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def paper_plan(roots, tmp_path_factory) -> Counter:
    return plan(tmp_path_factory.mktemp("paper") / "run", with_roots(PAPER, roots))


def test_paper_plans_independent_starts_part_soups_swa_per_run_and_ensembles(paper_plan):
    config = load(PAPER)
    rules = by_rule(paper_plan)
    assert "warmup" not in rules  # every run starts from the pretrained encoder alone
    fetched = {"encoder": config["model"]["encoder"], "weights": "imagenet"}
    assert wildcards(paper_plan, "fetch_weights") == [fetched]  # once, for every job
    assert rules["hpo_trial"] == config["hpo"]["n_trials"] and rules["hpo_export"] == 1
    recipes = Counter(job["recipe"] for job in wildcards(paper_plan, "train"))
    assert recipes == {"base": 31 * 3, "swa-base": 3}
    merged = {job["method"] for job in wildcards(paper_plan, "merge")}
    parts = {f"{rule}-{part}" for rule in ("uniform", "greedy") for part in PARTS}
    swa = {f"swa-seed{seed}" for seed in (0, 1, 2)}  # one SWA model per run
    assert merged == {*parts, "uniform-hpo", "greedy-hpo", *swa}
    assert {job["name"] for job in wildcards(paper_plan, "ensemble")} == {"seeds", "hpo"}
    assert {job["combo"] for job in wildcards(paper_plan, "merge")} == {ALL_FIVE}
    assert rules["connectivity"] == 2 and rules["report_qualitative"] == 5


def test_fissionfusion_plans_its_grid_fgg_and_every_soup_of_the_same_ingredients(roots, tmp_path):
    config = load(FISSIONFUSION)
    jobs = plan(tmp_path / "run", with_roots(FISSIONFUSION, roots))
    recipes = Counter(job["recipe"] for job in wildcards(jobs, "train"))
    grid = ingredients.grid_recipes(config)
    assert len(grid) == 8 * 3  # learning rates x augmentations
    assert all(recipes[name] == 2 for name in grid)  # two seeds each
    # one FGG base per learning rate: the heavy-augmentation grid run, its first seed
    assert {name for name in recipes if name.startswith("fgg-")} == {
        f"fgg-{name}" for name in grid if name.startswith("grid-augfissionfusion_heavy-")
    }
    assert all(recipes[name] == 1 for name in recipes if name.startswith("fgg-"))
    assert recipes["finetune"] == 1 and by_rule(jobs)["warmup"] == 1  # one shared start
    merged = {job["method"]: job["combo"] for job in wildcards(jobs, "merge")}
    for pool in ("grid", "fgg"):
        for rule in ("uniform", "greedy", "GoU", "GoG"):
            assert merged[f"{rule}-{pool}"] == ALL_FIVE
            soup = config["merging"]["soups"][f"{rule}-{pool}"]
            assert soup == {"rule": rule, "ingredients": [pool]}
    assert {job["name"] for job in wildcards(jobs, "ensemble")} == {"top5-grid", "top5-fgg"}


def test_fissionfusion_trains_like_the_paper():
    """The same data, models, training defaults and evaluation; FissionFusion's own start
    (linear probing) and fine-tuning recipe."""
    paper, fission = load(PAPER), load(FISSIONFUSION)
    for section in SHARED_SECTIONS:
        assert fission[section] == paper[section], section
    for key in ("defaults", "precision"):
        assert fission["training"][key] == paper["training"][key], key
    assert (paper["training"]["init"], fission["training"]["init"]) == ("independent", "shared")


def perturbed_demo() -> dict[str, Any]:
    """The demo config with a change in every section a study could inherit."""
    demo = copy.deepcopy(load(DEMO))
    demo["training"]["recipes"]["leaked"] = {"steps": 5}
    demo["training"]["defaults"]["schedule"] = "constant"
    demo["merging"]["grid"]["values"]["lr"].append(0.01)
    demo["merging"]["soups"]["leaked"] = {"rule": "uniform"}
    demo["hpo"]["n_trials"] = 7
    pairs = demo["report"]["connectivity"]["pairs"]
    pairs["leaked"] = pairs["two-ingredients"]
    demo["evaluation"]["test_datasets"] = ["IDRID"]
    return demo


def test_a_perturbed_demo_config_leaves_the_paper_plan_unchanged(paper_plan, roots, tmp_path):
    workdir = tmp_path / "root"
    workdir.mkdir()
    write_config(workdir / "config.yaml", perturbed_demo())
    # without --configfile the Snakefile reads this config.yaml: the perturbation is seen
    demo_recipes = {job["recipe"] for job in wildcards(plan(workdir, None), "train")}
    assert "leaked" in demo_recipes and "grid-augmedium-lr1e-2" in demo_recipes
    assert plan(workdir, with_roots(PAPER, roots)) == paper_plan


def test_the_tiny_study_plans_from_a_folder_holding_the_demo_config(tmp_path):
    workdir = tmp_path / "root"
    workdir.mkdir()
    shutil.copy(DEMO, workdir / "config.yaml")  # as the repository root holds it
    jobs = plan(workdir, load(TINY_CONFIG))
    recipes = {job["recipe"] for job in wildcards(jobs, "train")}
    grid = {"grid-lr1e-3", "grid-lr2e-3"}  # tiny's grid: no demo augmentation in the names
    assert recipes == {"base", "swa-base", *grid, *(f"fgg-{name}" for name in grid)}


def test_the_tiny_study_plans_every_rule_the_study_configs_plan(paper_plan, roots, tmp_path):
    """The study configs run end to end only under ``pytest -m study``; the default run executes
    the tiny study (tests/workflow/test_workflow.py) and, with imagenet weights, its path to one
    trained model (tests/workflow/test_workflow_pretrained.py): together they hold every rule those
    DAGs hold."""
    tiny = load(TINY_CONFIG)
    pretrained = copy.deepcopy(tiny)
    pretrained["model"]["encoder_weights"] = "imagenet"
    (tmp_path / "pretrained").mkdir()
    configfile = write_config(tmp_path / "pretrained.yaml", pretrained)
    pretrained_run = planned_jobs(tmp_path / "pretrained", configfile, PRETRAINED_TARGET)
    run = set(by_rule(plan(tmp_path / "tiny", tiny))) | set(by_rule(pretrained_run))
    fissionfusion = by_rule(plan(tmp_path / "ff", with_roots(FISSIONFUSION, roots)))
    missing = (set(by_rule(paper_plan)) | set(fissionfusion)) - run
    assert not missing, f"rules no default test runs: {sorted(missing)}"


def lesionsoup_arguments(command: str) -> list[list[str]]:
    """The arguments of each ``lesionsoup`` call in a job's shell command (``exec`` and the
    log redirection dropped); none where a value waits on a checkpoint (``<TBD>`` in a dry
    run)."""
    calls = []
    for part in re.split(r"\s*&&\s*|\s*;\s*", command):
        if "<TBD>" in part:
            continue
        words = shlex.split(part)
        words = words[1:] if words[:1] == ["exec"] else words
        if words[:1] == ["lesionsoup"]:
            calls.append(words[1 : words.index(">") if ">" in words else None])
    return calls


STUDIES = [TINY_CONFIG, PAPER, FISSIONFUSION, AVERAGING]


@pytest.mark.parametrize("study", STUDIES, ids=lambda path: path.stem)
def test_every_command_a_study_plans_parses_with_the_clis_own_arguments(study, roots, tmp_path):
    """The rules write the flags and argparse reads them: a flag renamed on one side, or a
    value outside its choices, fails here rather than in a job hours into a study."""
    config = load(study) if study == TINY_CONFIG else with_roots(study, roots)
    tmp_path.joinpath("run").mkdir()
    commands = planned_commands(tmp_path / "run", write_config(tmp_path / "study.yaml", config))
    calls = [arguments for command in commands for arguments in lesionsoup_arguments(command)]
    parser, refused = build_parser(), []
    for arguments in calls:
        try:
            parser.parse_args(arguments)
        except SystemExit:
            refused.append(shlex.join(arguments))
    assert not refused, "\n".join(refused)
    planned = {arguments[0] for arguments in calls}
    assert {"index", "preprocess", "merge", "evaluate"} <= planned, planned
