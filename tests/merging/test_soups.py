"""The merge stage end to end on toy caches: soups, single best, SWA, ensembles, the CLI."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch
from conftest import TINY_SPEC, quiet_options, write_toy_cache
from support.predict import rendered, write_photograph
from torch.optim.swa_utils import update_bn

from lesionsoup.cli import build_parser, main
from lesionsoup.core.checkpoint import load_checkpoint, load_metadata, save_checkpoint
from lesionsoup.core.merge_rules import BN_POLICIES, DEFAULT_PART, PARTS, RULES, BatchNormSample
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.deploy.export import export_model
from lesionsoup.deploy.models import EXPORT_FILE
from lesionsoup.inference.predictor import IncompatibleModels, load_predictor, read_ensemble
from lesionsoup.merging.anchored import model_stock, ties
from lesionsoup.merging.averaging import average_checkpoints
from lesionsoup.merging.batchnorm import batchnorm_recompute
from lesionsoup.merging.candidates import base_group_key, expand_ingredients, training_seconds
from lesionsoup.merging.ensembles import ensemble_stage
from lesionsoup.merging.held_out import settings_of
from lesionsoup.merging.soups import merge
from lesionsoup.merging.stage import merge_stage
from lesionsoup.plan.ingredients import grid_recipes, init_for, settings_for, train_arguments
from lesionsoup.training.run import train_run
from lesionsoup.training.run_folder import publish_init
from lesionsoup.training.sampling import ValidationImages
from lesionsoup.training.validation import validate

SPEC = TINY_SPEC
CONFIG = {
    "datasets": {"AAA": {}, "BBB": {}},
    "training": {
        "combinations": ["AAA+BBB"],
        "seeds": [0],
        "defaults": {
            "batch_size": 2,
            "patch_size": 32,
            "validate_every": 4,
            "state_every": 4,
            "augmentation": "light",
            "bins": 1030,
        },
        "recipes": {"base": {"steps": 4, "lr": 0.002}},
    },
    "merging": {
        "grid": {"recipe": "base", "values": {"lr": [0.001, 0.003]}},
        "swa": {
            "base": "base",
            "settings": {"steps": 3, "lr": 5e-4, "start_lr": 1e-3, "cycle_steps": 1},
        },
        "fgg": {"settings": {"steps": 4, "lr": 1e-3, "min_lr": 1e-5, "cycle_steps": 2}},
    },
}


class Study:
    """A toy combination's caches, shared initialisation and ingredient runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.caches = {
            name: Cache(write_toy_cache(root / "cache" / name, name, seed=index))
            for index, name in enumerate(("AAA", "BBB"))
        }
        warmup = TrainSettings.from_dict(
            {**settings_for(CONFIG, "base", 0), "steps": 2, "freeze_encoder": True}
        )
        self.train_dir("warmup", warmup, None)
        init = self.path(init_for(CONFIG, "AAA+BBB", "base", 0)[0])
        init.parent.mkdir(parents=True)
        publish_init(root / "warmup", init)
        for recipe in ("base", *grid_recipes(CONFIG)):
            self.train(recipe)
        self.grid = [self.path(f"{self.run(r)}/last.safetensors") for r in grid_recipes(CONFIG)]
        for recipe in grid_recipes(CONFIG):
            self.train(f"fgg-{recipe}")
        self.fgg = [self.path(f"{self.run(f'fgg-{r}')}/snapshots") for r in grid_recipes(CONFIG)]
        self.train("swa-base")
        self.swa = self.path(f"{self.run('swa-base')}/snapshots")

    def path(self, relative: str) -> Path:
        return self.root / relative

    @staticmethod
    def run(recipe: str) -> str:
        return f"results/models/AAA+BBB/{recipe}/seed0"

    def train(self, recipe: str) -> None:
        """A run as rule ``train`` makes it: its settings, start and optimiser-state options."""
        settings = TrainSettings.from_dict(settings_for(CONFIG, recipe, 0))
        options = train_arguments(CONFIG, "AAA+BBB", recipe, 0).split()
        args = build_parser().parse_args(
            ["train", "-o", "run", "--model", "{}", "--settings", "{}", "--cache", "c", *options]
        )
        self.train_dir(
            self.run(recipe),
            settings,
            self.path(init_for(CONFIG, "AAA+BBB", recipe, 0)[0]),
            keep_optimizer=tuple(args.keep_optimizer),
            init_optimizer=args.init_optimizer and self.path(str(args.init_optimizer)),
        )

    def train_dir(self, run: str, settings: TrainSettings, init: Path | None, **kwargs) -> None:
        # train_run saves snapshots into a folder it does not create (reported to the lead)
        (self.path(run) / ".work" / "snapshots").mkdir(parents=True, exist_ok=True)
        train_run(self.path(run), self.caches, SPEC, settings, quiet_options(init=init, **kwargs))

    def cache_arguments(self) -> list[str]:
        return [f"--cache={cache.directory}" for cache in self.caches.values()]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    return Study(tmp_path_factory.mktemp("study"))


def held_out_score(path: Path, caches: dict[str, Cache]) -> float:
    """The validation score of a checkpoint, computed independently of the merge stage."""
    model = build_model(SPEC)
    model.load_state_dict(load_checkpoint(path)[0])
    images = [ValidationImages(cache, "valid", SPEC.lesion_classes) for cache in caches.values()]
    return validate(model, images, SPEC, 1030)["score"]


def test_ingredients_expand_from_files_folders_and_lists(study, tmp_path):
    listing = tmp_path / "ingredients.json"
    listing.write_text(json.dumps({"study": "s", "ingredients": [str(study.grid[1])]}))
    paths = expand_ingredients([study.grid[0], study.fgg[0], listing])
    snapshots = sorted(study.fgg[0].glob("*.safetensors"))
    assert len(snapshots) == 2  # a snapshot at each minimum of two triangular cycles
    assert paths == [study.grid[0], *snapshots, study.grid[1]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        expand_ingredients([tmp_path / "empty"])


def test_greedy_soup_records_lineage_selection_and_cost(study, tmp_path):
    output = tmp_path / "greedy.safetensors"
    merge_stage(output, study.grid, study.caches, "greedy")
    metadata = load_metadata(output)
    assert metadata["rule"] == "greedy" and metadata["bn_policy"] == "average"
    assert metadata["ingredients"] == [str(path) for path in study.grid]
    assert sum(metadata["weights"].values()) == pytest.approx(1.0)
    trace = metadata["selection_trace"]
    assert len(trace) == 2 and trace[0]["accepted"]
    first = Path(trace[0]["candidate"])
    assert trace[0]["score"] == pytest.approx(held_out_score(first, study.caches))
    assert metadata["validation"]["score"] == pytest.approx(held_out_score(output, study.caches))
    assert metadata["init_id"] == load_metadata(study.grid[0])["init_id"]
    trained = sum(load_metadata(path)["wall_seconds"] for path in study.grid)
    assert metadata["training_seconds"] == pytest.approx(trained)
    assert metadata["compute_seconds"] == pytest.approx(
        trained + metadata["merge_seconds"] + metadata["selection_seconds"]
    )
    assert metadata["selection_seconds"] > 0


def test_single_best_is_the_best_ingredient_unchanged(study, tmp_path):
    output = tmp_path / "best.safetensors"
    metadata = merge_stage(output, study.grid, study.caches, "best")
    scores = {step["candidate"]: step["score"] for step in metadata["selection_trace"]}
    best = max(scores, key=scores.__getitem__)
    assert metadata["weights"] == {path: float(path == best) for path in scores}
    merged, _ = load_checkpoint(output)
    original, _ = load_checkpoint(Path(best))
    assert all(torch.equal(merged[name], original[name]) for name in original)


def test_fgg_snapshots_group_by_their_base_learning_rate(study, tmp_path):
    snapshot = sorted(study.fgg[1].glob("*.safetensors"))[0]
    metadata = load_metadata(snapshot)
    assert metadata["hyperparameters"]["lr"] == 1e-3  # the FGG run's own peak rate
    assert base_group_key("lr")(metadata) == 0.003  # its base grid run's rate
    output = tmp_path / "UoG.safetensors"
    result = merge_stage(output, [*study.grid, *study.fgg], study.caches, "UoG")
    stages = {step["stage"] for step in result["selection_trace"]}
    assert stages == {"local lr=0.001", "local lr=0.003"}
    assert result["group_by"] == "lr"
    for base, snapshots in zip(study.grid, study.fgg, strict=True):
        group = [str(base), *map(str, snapshots.glob("*.safetensors"))]
        assert sum(result["weights"][path] for path in group) == pytest.approx(0.5)


def test_hierarchical_merge_groups_by_the_base_runs_learning_rate_by_default(study):
    """``merge``'s default group key is the base run's ``lr``, which every sidecar records."""
    paths = expand_ingredients([*study.grid, *study.fgg])
    result = merge(paths, "UoU")
    for base, snapshots in zip(study.grid, study.fgg, strict=True):
        group = [str(base), *map(str, sorted(snapshots.glob("*.safetensors")))]
        assert len(group) == 3
        assert [result.weights[path] for path in group] == pytest.approx([1 / 6] * 3)
    assert load_metadata(paths[2])["parent"] == str(study.grid[0].with_name("best.safetensors"))


def test_swa_averages_snapshots_and_recomputes_batchnorm(study, tmp_path):
    output = tmp_path / "swa.safetensors"
    metadata = merge_stage(output, [study.swa], study.caches, "swa")
    snapshots = sorted(study.swa.glob("*.safetensors"))
    assert len(snapshots) == 3
    assert metadata["bn_policy"] == "recompute" and metadata["bn_recompute"]["patches"] == "epoch"
    assert metadata["bn_recompute"]["patch_count"] == 2 * 4 * (64 // 32) ** 2  # tiles train once
    assert metadata["cache_size"] == 64  # the snapshots' training resolution
    merged, _ = load_checkpoint(output)
    averaged = average_checkpoints(snapshots)
    weights = [name for name in merged if name.endswith("conv1.0.weight")]
    assert all(torch.equal(merged[name], averaged[name]) for name in weights)
    statistics = [name for name in merged if name.endswith("running_mean")]
    assert any(not torch.allclose(merged[name], averaged[name]) for name in statistics)
    # torch's update_bn over the snapshots' own augmented training patches gives the same
    settings = settings_of(load_metadata(snapshots[0]))
    patches = batchnorm_recompute(study.caches, SPEC, settings, BatchNormSample()).batches
    reference = build_model(SPEC)
    reference.load_state_dict(averaged)
    update_bn([batch["image"] for batch in patches], reference)
    for name, tensor in reference.state_dict().items():
        assert torch.allclose(merged[name], tensor, rtol=0, atol=1e-6), name
    # cost: the base run plus the SWA run up to its latest snapshot, each once
    base = load_metadata(study.path(f"{study.run('base')}/last.safetensors"))["wall_seconds"]
    latest = load_metadata(snapshots[-1])["wall_seconds"]
    assert training_seconds(snapshots) == pytest.approx(base + latest)
    assert metadata["training_seconds"] == pytest.approx(base + latest)


def test_incompatible_ingredients_are_refused_by_the_cli_naming_the_files(study, tmp_path, caplog):
    state, metadata = load_checkpoint(study.grid[1])
    stranger = tmp_path / "stranger.safetensors"
    save_checkpoint(stranger, state, {**metadata, "init_id": "another-initialisation"})
    output = tmp_path / "uniform.safetensors"
    arguments = ["merge", "-o", str(output), "--rule", "uniform", *study.cache_arguments()]
    with caplog.at_level(logging.ERROR):
        assert main([*arguments, str(study.grid[0]), str(stranger)]) == 1
    assert str(stranger) in caplog.text and str(study.grid[0]) in caplog.text
    assert "init_id" in caplog.text
    assert not output.exists()


def test_uniform_soup_through_the_cli(study, tmp_path):
    output = tmp_path / "uniform.safetensors"
    arguments = ["merge", "-o", str(output), "--rule", "uniform", *study.cache_arguments()]
    assert main([*arguments, *map(str, study.grid)]) == 0
    merged, metadata = load_checkpoint(output)
    averaged = average_checkpoints(study.grid)
    assert all(torch.equal(merged[name], averaged[name]) for name in averaged)
    assert metadata["weights"] == {str(path): 0.5 for path in study.grid}


@pytest.mark.parametrize("rule", ["model_stock", "ties"])
def test_anchored_soup_through_the_cli(study, tmp_path, rule):
    """Model Stock and TIES over two grid runs and an FGG snapshot (whose parent is a grid run's
    checkpoint), around the shared initialisation the sidecars lead to."""
    init = study.path(init_for(CONFIG, "AAA+BBB", "base", 0)[0])
    ingredients = [*study.grid, sorted(study.fgg[0].glob("*.safetensors"))[0]]
    output = tmp_path / f"{rule}.safetensors"
    keep = ["--keep", "0.3"] if rule == "ties" else []
    arguments = ["merge", "-o", str(output), "--rule", rule, *keep, *study.cache_arguments()]
    assert main([*arguments, *map(str, ingredients)]) == 0
    merged, metadata = load_checkpoint(output)
    anchor, models = load_checkpoint(init)[0], [load_checkpoint(p)[0] for p in ingredients]
    expected = ties(anchor, models, keep=0.3) if keep else model_stock(anchor, models)
    assert all(torch.equal(merged[name], expected[name]) for name in expected)
    averaged = average_checkpoints(ingredients)
    assert not all(torch.equal(merged[name], averaged[name]) for name in averaged)
    assert (metadata["rule"], metadata["merged_from"]) == (rule, str(init))
    assert metadata.get("keep") == (0.3 if keep else None)


def test_top_k_ensemble_through_the_cli(study, tmp_path):
    output = tmp_path / "merged" / "ensemble-top2.json"
    candidates = [*study.grid, study.fgg[0]]
    arguments = ["ensemble", "-o", str(output), "--top", "2", *study.cache_arguments()]
    assert main([*arguments, *map(str, candidates)]) == 0
    members, weights, data = read_ensemble(output)
    scores = data["validation_scores"]
    ranked = sorted(scores, key=lambda path: -scores[path])
    assert [str(member.resolve()) for member in members] == [
        str(Path(path).resolve()) for path in ranked[:2]
    ]
    assert weights == [0.5, 0.5] and data["selection"] == "top-2"
    assert all(member.is_file() for member in members)
    assert len(load_predictor(output).members) == 2


def test_ensemble_of_all_candidates_counts_their_training(study, tmp_path):
    output = tmp_path / "ensemble-all.json"
    info = ensemble_stage(output, study.grid, study.caches)
    members, _, data = read_ensemble(output)
    assert [member.resolve() for member in members] == [path.resolve() for path in study.grid]
    assert data["validation_scores"] == {}
    assert info["training_seconds"] == pytest.approx(training_seconds(study.grid))
    with pytest.raises(ValueError, match="top >= 1"):
        ensemble_stage(output, study.grid, study.caches, top=0)


def test_soups_and_ensembles_predict_and_export_at_their_ingredients_resolution(study, tmp_path):
    soup, ensemble = tmp_path / "uniform.safetensors", tmp_path / "ensemble.json"
    merge_stage(soup, study.grid, study.caches, "uniform")
    ensemble_stage(ensemble, study.grid, study.caches)
    photo = write_photograph(tmp_path / "photo.png", rendered(0, 150, 170).image)
    for model, recorded in ((soup, load_metadata(soup)), (ensemble, read_ensemble(ensemble)[2])):
        assert recorded["cache_size"] == 64  # the toy caches' size, as training recorded it
        assert recorded["architecture"] == json.loads(json.dumps(SPEC.as_dict()))
        out = tmp_path / f"predicted-{model.stem}"
        options = ["-o", str(out), "--no-progress", "--no-overlay"]
        assert main(["predict", str(model), str(photo), *options]) == 0
        assert json.loads((out / "predict.json").read_text())["size"] == 64
        export_model(model, tmp_path / f"export-{model.stem}")
        exported = json.loads((tmp_path / f"export-{model.stem}" / EXPORT_FILE).read_text())
        assert exported["cache_size"] == 64


def test_ingredients_of_two_resolutions_are_refused_naming_both(study, tmp_path):
    state, metadata = load_checkpoint(study.grid[1])
    stranger = tmp_path / "at128.safetensors"
    save_checkpoint(stranger, state, {**metadata, "cache_size": 128})
    difference = f"{stranger} and {study.grid[0]} differ in cache_size: 128 vs 64"
    with pytest.raises(IncompatibleModels, match=re.escape(difference)):
        merge_stage(tmp_path / "soup.safetensors", [study.grid[0], stranger], study.caches, "best")
    with pytest.raises(IncompatibleModels, match=re.escape(difference)):
        ensemble_stage(tmp_path / "ensemble.json", [study.grid[0], stranger], study.caches, top=1)
    assert not list(tmp_path.glob("soup*")) and not (tmp_path / "ensemble.json").exists()


def test_cli_choices_are_the_tables():
    parser = build_parser()
    base = ["merge", "-o", "m.safetensors", "--cache", "c", "x"]
    for rule in RULES:
        for policy in BN_POLICIES:
            args = parser.parse_args([*base, "--rule", rule, "--bn-policy", policy])
            assert (args.rule, args.bn_policy) == (rule, policy)
    for part in PARTS:
        assert parser.parse_args([*base, "--rule", "uniform", "--part", part]).part == part
    assert parser.parse_args([*base, "--rule", "uniform"]).part == DEFAULT_PART
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--rule", "soup"])
