"""Size curves of three tiny candidates, checked against soups and ensembles evaluated directly."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY_SETTINGS, TINY_SPEC, write_toy_cache
from support import REPO
from support.uncertainty import scored_models

import lesionsoup.analysis.size_curves as module
from lesionsoup.analysis.size_curves import (
    COLUMNS,
    CURVES,
    SizeCurveOptions,
    mean_over_lesions,
    point_interval,
    size_curves,
)
from lesionsoup.cli import main
from lesionsoup.core.checkpoint import load_checkpoint, save_checkpoint
from lesionsoup.core.metrics import LesionHistogram, average_precision
from lesionsoup.core.model import build_model
from lesionsoup.core.report_defaults import REPORT_DEFAULTS
from lesionsoup.data.cache import Cache
from lesionsoup.evaluation.evaluate import evaluate, load_evaluation
from lesionsoup.evaluation.per_model import EvaluationTarget, evaluate_model
from lesionsoup.evaluation.statistics import (
    bootstrap_interval,
    image_histograms_from_dict,
    image_histograms_to_dict,
)
from lesionsoup.evaluation.uncertainty import (
    BootstrapSettings,
    draws_seed,
    load_scored,
    uncertainty,
)
from lesionsoup.inference.infer import InferenceSettings
from lesionsoup.inference.predictor import write_ensemble
from lesionsoup.merging.averaging import average_checkpoints
from lesionsoup.merging.stage import merge_stage
from lesionsoup.training.sampling import ValidationImages
from lesionsoup.training.validation import validate

#: Training seconds each candidate's sidecar records (distinct runs: distinct learning rates).
WALL_SECONDS = (100.0, 200.0, 400.0)
#: The points' bootstrap: not the defaults, so that the tests see the settings reach it.
BOOTSTRAP = BootstrapSettings(resamples=200, confidence=0.9, seed=3)


def candidate(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_model(TINY_SPEC)
    with torch.no_grad():  # BatchNorm statistics that differ between the candidates
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    settings = dataclasses.replace(TINY_SETTINGS, lr=1e-3 * (seed + 1))
    metadata = {
        "architecture": TINY_SPEC.as_dict(),
        "init_id": "init-0",
        "wall_seconds": WALL_SECONDS[seed],
        "hyperparameters": settings.as_dict(),
    }
    save_checkpoint(path, model.state_dict(), metadata)
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[list[Path], dict[str, Cache], pd.DataFrame]:
    root = tmp_path_factory.mktemp("size")
    caches = {
        name: Cache(write_toy_cache(root / "cache" / name, name, seed=index))
        for index, name in enumerate(("AAA", "BBB"))
    }
    paths = [candidate(root / f"c{seed}.safetensors", seed) for seed in range(3)]
    return (
        paths,
        caches,
        size_curves(paths, caches, SizeCurveOptions(max_members=3, bootstrap=BOOTSTRAP)),
    )


def ranked_by_validation(paths: list[Path], caches: dict[str, Cache]) -> list[Path]:
    """The candidates by validation score, computed independently of the merging package."""
    images = [ValidationImages(c, "valid", TINY_SPEC.lesion_classes) for c in caches.values()]

    def score(path: Path) -> float:
        model = build_model(TINY_SPEC)
        model.load_state_dict(load_checkpoint(path)[0])
        return validate(model, images, TINY_SPEC, TINY_SETTINGS.bins)["score"]

    return sorted(paths, key=lambda path: -score(path))


def direct_results(model: Path, caches: dict[str, Cache]) -> list[dict]:
    """A model file evaluated on each cache's test split."""
    return [evaluate(model, cache.directory) for cache in caches.values()]


def direct(model: Path, caches: dict[str, Cache], results: list[dict] | None = None) -> dict:
    """Test set -> mean AP over lesions of a model file on each cache's test split."""
    results = results or direct_results(model, caches)
    return {r["test_dataset"]: mean_over_lesions(r, "ap") for r in results}


def direct_intervals(results: list[dict]) -> dict[tuple[str, str], float]:
    """(test set, ``low`` or ``high``) -> the AP interval of ``bootstrap_interval`` on each
    result's per-image histograms, with ``BOOTSTRAP``'s settings and the study's draws."""
    intervals = {}
    for result in results:
        lesions = list(image_histograms_from_dict(result["image_histograms"]).values())
        seed = draws_seed(BOOTSTRAP.seed, result["test_dataset"])
        interval = bootstrap_interval(
            lesions, average_precision, BOOTSTRAP.resamples, BOOTSTRAP.confidence, seed
        )
        intervals[result["test_dataset"], "low"] = interval.low
        intervals[result["test_dataset"], "high"] = interval.high
    return intervals


def values(table: pd.DataFrame, curve: str, k: int, column: str = "value") -> dict[str, float]:
    rows = table[(table["curve"] == curve) & (table["k"] == k)]
    return dict(zip(rows["test_dataset"], rows[column], strict=True))


def intervals(table: pd.DataFrame, curve: str, k: int) -> dict[tuple[str, str], float]:
    """(test set, ``low`` or ``high``) -> the bound of the point's interval."""
    return {
        (test, bound): value
        for bound in ("low", "high")
        for test, value in values(table, curve, k, bound).items()
    }


def evaluated(model: Path, caches: dict[str, Cache], out: Path, **options) -> list[Path]:
    """The workflow's evaluation files of a model (``evaluate_model``), one per cache."""
    outputs = [out / name / f"{model.stem}.json" for name in caches]
    targets = [
        EvaluationTarget(c.directory, o) for c, o in zip(caches.values(), outputs, strict=True)
    ]
    evaluate_model(model, targets, **options)
    return outputs


def count_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the model of every ``evaluate`` call of the size curves, one per test set."""
    calls: list[str] = []

    def counting(predictor, *args, **kwargs):
        calls.append(str(predictor.path))
        return evaluate(predictor, *args, **kwargs)

    monkeypatch.setattr(module, "evaluate", counting)
    return calls


@pytest.fixture
def counted(monkeypatch) -> list[str]:
    return count_evaluations(monkeypatch)


@pytest.fixture(scope="module")
def reused(study, tmp_path_factory) -> tuple[dict[str, list[Path]], pd.DataFrame, list[str]]:
    """Evaluation files of the three candidates and of the top-2 uniform soup (members listed
    out of rank order), the size curves computed with them, and their ``evaluate`` calls."""
    paths, caches, _ = study
    root = tmp_path_factory.mktemp("eval")
    soup = root / "soup.safetensors"  # the merge stage's uniform soup of the top two
    merge_stage(soup, ranked_by_validation(paths, caches)[:2][::-1], caches, "uniform")
    files = {str(model): evaluated(model, caches, root) for model in (*paths, soup)}
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = count_evaluations(monkeypatch)
        evaluations = sum(files.values(), [])
        options = SizeCurveOptions(max_members=3, evaluations=evaluations, bootstrap=BOOTSTRAP)
        table = size_curves(paths, caches, options)
    return files, table, calls


def test_every_curve_has_a_point_per_k_and_test_set(study):
    _, _, table = study
    assert tuple(table.columns) == COLUMNS
    assert set(table["evaluation"]) == {"computed"}
    assert sorted(table["curve"].unique()) == sorted(CURVES)
    counts = table.groupby(["curve", "test_dataset"])["k"].apply(sorted)
    assert all(ks == [1, 2, 3] for ks in counts)


def test_k1_of_every_curve_is_the_best_single_candidate(study):
    paths, caches, table = study
    best = ranked_by_validation(paths, caches)[0]
    results = direct_results(best, caches)
    expected, interval = direct(best, caches, results), direct_intervals(results)
    assert set(table["confidence"]) == {BOOTSTRAP.confidence}
    assert set(table["resamples"]) == {BOOTSTRAP.resamples}
    for curve in CURVES:
        assert values(table, curve, 1) == pytest.approx(expected, abs=1e-12)
        assert intervals(table, curve, 1) == interval
        assert set(table[(table["curve"] == curve) & (table["k"] == 1)]["members"]) == {str(best)}


def test_uniform_soup_of_all_equals_the_averaged_checkpoints(study, tmp_path):
    paths, caches, table = study
    soup = tmp_path / "soup.safetensors"
    save_checkpoint(soup, average_checkpoints(paths), {"architecture": TINY_SPEC.as_dict()})
    results = direct_results(soup, caches)
    assert values(table, "uniform", 3) == pytest.approx(direct(soup, caches, results), abs=1e-12)
    assert intervals(table, "uniform", 3) == pytest.approx(direct_intervals(results), abs=1e-12)


def test_ensemble_of_k_equals_the_top_k_ensemble(study, tmp_path):
    paths, caches, table = study
    ranked = ranked_by_validation(paths, caches)
    for k in (2, 3):
        ensemble = tmp_path / f"top{k}.json"
        write_ensemble(ensemble, ranked[:k])
        results = direct_results(ensemble, caches)
        expected = direct(ensemble, caches, results)
        assert values(table, "ensemble", k) == pytest.approx(expected, abs=1e-9)
        assert intervals(table, "ensemble", k) == pytest.approx(direct_intervals(results), abs=1e-9)
        low, high = values(table, "ensemble", k, "low"), values(table, "ensemble", k, "high")
        assert all(low[test] < high[test] for test in low)  # the images differ in score


def test_compute_counts_the_candidates_considered_and_grows_with_k(study):
    paths, caches, table = study
    ranked = ranked_by_validation(paths, caches)
    seconds = {path: WALL_SECONDS[paths.index(path)] for path in paths}
    for curve in ("uniform", "ensemble"):
        rows = table[table["curve"] == curve]
        expected = rows["k"].map(lambda k: sum(seconds[p] for p in ranked[:k]))
        assert list(rows["training_seconds"]) == pytest.approx(list(expected))
    assert (table["compute_seconds"] > table["training_seconds"]).all()  # inference counted
    for _, rows in table.groupby(["curve", "test_dataset"]):
        assert rows.sort_values("k")["compute_seconds"].is_monotonic_increasing


def test_greedy_members_only_grow_from_the_best_candidate(study):
    paths, caches, table = study
    greedy = table[(table["curve"] == "greedy") & (table["test_dataset"] == "AAA")]
    members = [set(m.split(";")) for m in greedy.sort_values("k")["members"]]
    assert all(a <= b for a, b in zip(members, members[1:], strict=False))
    assert members[0] == {str(ranked_by_validation(paths, caches)[0])}


def test_reused_points_score_as_fresh_evaluations_and_are_not_evaluated_again(study, reused):
    paths, caches, fresh = study
    files, table, calls = reused
    best, second = ranked_by_validation(paths, caches)[:2]
    soup = next(name for name in files if name.endswith("soup.safetensors"))
    assert values(table, "uniform", 1) == pytest.approx(direct(best, caches), abs=1e-12)
    assert values(table, "uniform", 2) == pytest.approx(direct(Path(soup), caches), abs=1e-12)
    for column in ("value", "low", "high"):
        assert list(table[column]) == pytest.approx(list(fresh[column]), abs=1e-12)
    single = table["members"] == str(best)
    pair = table["members"].map(lambda m: set(m.split(";")) == {str(best), str(second)})
    expected = single | (pair & (table["curve"] != "ensemble"))
    assert list(table["evaluation"]) == list(expected.map({True: "reused", False: "computed"}))
    recorded = {
        load_evaluation(p)["test_dataset"]: load_evaluation(p)["seconds"] for p in files[str(best)]
    }
    assert list(table[single]["inference_seconds"]) == [
        recorded[t] for t in table[single]["test_dataset"]
    ]
    computed = {
        (frozenset(row.members.split(";")), row.curve == "ensemble", row.test_dataset)
        for row in table[~expected].itertuples()
    }  # the distinct models (both soups average BatchNorm) on each test set
    assert len(calls) == len(computed) > 0
    assert not any(name.endswith("-k1") for name in calls)


def test_a_reused_point_has_the_studys_interval_of_its_evaluation(study, reused):
    """The uncertainty stage's mean-over-lesions interval of the same evaluation files (the
    same draws of each test set's images)."""
    paths, caches, _ = study
    files, table, _ = reused
    best = ranked_by_validation(paths, caches)[0]
    scored = load_scored(files[str(best)], {str(best): ("AAA+BBB", "single")})
    study_ci = uncertainty(scored, "ap", BOOTSTRAP).intervals
    mean = study_ci[(study_ci["lesion"] == "mean") & (study_ci["metric"] == "ap")]
    assert len(mean) == len(caches)
    expected = {
        (row.test_dataset, bound): getattr(row, bound)
        for row in mean.itertuples()
        for bound in ("low", "high")
    }
    assert intervals(table, "greedy", 1) == expected


def test_a_points_interval_uses_the_draws_of_the_studys_intervals_on_its_test_set():
    """On 25 simulated images (the toy test sets' two leave the percentiles little room):
    the uncertainty stage's mean-over-lesions interval, which another test set's draws miss."""
    scored = scored_models("T")[2]
    lesions = list(scored.lesions)
    images = [
        [LesionHistogram(h.bins, h.positives[i], h.negatives[i]) for h in scored.lesions.values()]
        for i in range(len(scored.image_ids))
    ]
    bins = images[0][0].bins
    pooled = {
        k: sum((row[i] for row in images), LesionHistogram(bins)) for i, k in enumerate(lesions)
    }
    result = {
        "test_dataset": "T",
        "image_histograms": image_histograms_to_dict(scored.image_ids, lesions, images, bins),
        "histograms": {"bins": bins, "lesions": {k: h.to_dict() for k, h in pooled.items()}},
    }
    study_ci = uncertainty([scored], "ap", BOOTSTRAP).intervals
    [row] = study_ci[(study_ci["lesion"] == "mean") & (study_ci["metric"] == "ap")].itertuples()
    interval = point_interval(result, "ap", BOOTSTRAP)
    assert (interval.low, interval.high) == (row.low, row.high)
    other = point_interval({**result, "test_dataset": "U"}, "ap", BOOTSTRAP)
    assert (other.low, other.high) != (row.low, row.high)


def test_a_study_like_the_demo_evaluates_only_the_ensemble_of_two(study, tmp_path, counted):
    """Two candidates not evaluated themselves, and the study's best and uniform soups of
    them (``merge_stage``) evaluated: only the ensemble of two is left to evaluate."""
    paths, caches, _ = study
    soups = [tmp_path / "best.safetensors", tmp_path / "uniform.safetensors"]
    for soup in soups:
        merge_stage(soup, paths[:2], caches, soup.stem)
    files = [file for soup in soups for file in evaluated(soup, caches, tmp_path)]
    table = size_curves(paths[:2], caches, SizeCurveOptions(max_members=3, evaluations=files))
    assert len(counted) == len(caches) and all(name.endswith("ensemble-k2") for name in counted)
    computed = (table["curve"] == "ensemble") & (table["k"] == 2)
    assert list(table["evaluation"]) == list(computed.map({True: "computed", False: "reused"}))
    best = ranked_by_validation(paths[:2], caches)[0]
    assert values(table, "ensemble", 1) == pytest.approx(direct(best, caches), abs=1e-12)
    assert values(table, "uniform", 2) == pytest.approx(direct(soups[1], caches), abs=1e-12)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"bins": 500}, "bins"),
        ({"settings": InferenceSettings(tta=("horizontal",))}, "inference"),
        ({"split": "valid"}, "split"),
    ],
    ids=["bins", "settings", "split"],
)
def test_an_evaluation_with_other_settings_is_not_reused(
    study, tmp_path, counted, caplog, change, named
):
    paths, caches, _ = study
    best = ranked_by_validation(paths, caches)[0]
    files = evaluated(best, caches, tmp_path, **change)
    with caplog.at_level(logging.INFO, logger=module.__name__):
        table = size_curves(paths, caches, SizeCurveOptions(max_members=1, evaluations=files))
    assert set(table["evaluation"]) == {"computed"} and len(counted) == len(caches)
    assert values(table, "uniform", 1) == pytest.approx(direct(best, caches), abs=1e-12)
    for file in files:
        assert f"{file}: not reused" in caplog.text
    assert named in caplog.text


@pytest.mark.parametrize("edit", [{"resolution": "native"}, {"model_sha256": "0" * 64}])
def test_an_evaluation_of_another_resolution_or_model_file_is_not_reused(
    study, reused, tmp_path, counted, edit
):
    """The unedited files are reused (``reused``'s k = 1 rows); edited, they are not."""
    paths, caches, _ = study
    files = reused[0][str(ranked_by_validation(paths, caches)[0])]
    edited = []
    for path in files:
        result = load_evaluation(path)
        result["fingerprint"].update(edit)
        edited.append(tmp_path / path.parent.name / path.name)
        edited[-1].parent.mkdir()
        edited[-1].write_text(json.dumps(result))
    table = size_curves(paths, caches, SizeCurveOptions(max_members=1, evaluations=edited))
    assert set(table["evaluation"]) == {"computed"} and len(counted) == len(caches)


def test_cli_writes_the_table_and_figure(study, reused, tmp_path):
    paths, caches, _ = study
    files = reused[0]
    out, figure = tmp_path / "curves.csv", tmp_path / "curves.png"
    cache_args = [arg for c in caches.values() for arg in ("--cache", str(c.directory))]
    evaluations = [str(path) for path in sum(files.values(), [])]
    main(["size-curve", *map(str, paths[:2]), *cache_args, "--max-members", "2",
          "--device", "cpu", "-o", str(out), "--figure", str(figure),
          "--resamples", str(BOOTSTRAP.resamples), "--confidence", str(BOOTSTRAP.confidence),
          "--seed", str(BOOTSTRAP.seed), "--evaluations", *evaluations])  # fmt: skip
    table = pd.read_csv(out)
    assert sorted(table["k"].unique()) == [1, 2]
    assert "reused" in set(table[table["k"] == 1]["evaluation"])
    assert set(table["confidence"]) == {BOOTSTRAP.confidence}
    assert set(table["resamples"]) == {BOOTSTRAP.resamples}
    for curve in CURVES:  # the k = 1 intervals of the size curves with the same bootstrap
        assert intervals(table, curve, 1) == pytest.approx(intervals(reused[1], curve, 1))
    assert figure.stat().st_size > 0


def test_size_curve_defaults_match_the_schema():
    import yaml

    schema = REPO / "workflow" / "schemas" / "report.schema.yaml"
    section = yaml.safe_load(schema.read_text())["properties"]["size_curves"]["properties"]
    assert {key: value["default"] for key, value in section.items()} == REPORT_DEFAULTS[
        "size_curves"
    ]


def test_one_size_curve_job_per_merging_combination_with_two_candidates():
    from support.workflow import load_tiny_config

    from lesionsoup.plan.report import (
        report_targets,
        size_curve_arguments,
        size_curve_combos,
        size_curve_inputs,
    )

    config = load_tiny_config()
    assert size_curve_combos(config) == ["IDRID"]
    assert "results/report/size_curves/IDRID.png" in report_targets(config, ["IDRID"])
    assert size_curve_inputs(config, "IDRID") == {
        "candidates": [
            "results/models/IDRID/grid-lr1e-3/seed0/last.safetensors",
            "results/models/IDRID/grid-lr2e-3/seed0/last.safetensors",
        ],
        "caches": ["results/cache/IDRID"],
    }
    assert size_curve_arguments(config) == (
        "--max-members 3 --metric ap --uniform-bn-policy average --greedy-bn-policy average"
    )
    one = {**config, "merging": {**config["merging"], "grid": {"recipe": "base", "values": {}}}}
    one["merging"]["grid"]["values"] = {"lr": [0.001]}
    assert size_curve_combos(one) == []
    recomputed = {**config, "merging": {**config["merging"], "soups": {"u": {"rule": "uniform",
                  "bn_policy": "recompute"}}}}  # fmt: skip
    assert "--uniform-bn-policy recompute" in size_curve_arguments(recomputed)
    assert "--bn-patches 4" in size_curve_arguments(recomputed)
    assert size_curve_combos({"report": {}}) == []


def test_the_size_curve_job_reads_the_evaluation_files_of_the_candidates_and_soups(tmp_path):
    import re

    from support.workflow import load_tiny_config, snakemake, write_config

    from lesionsoup.core import paths
    from lesionsoup.plan.evaluation import evaluated_models, evaluation_files
    from lesionsoup.plan.ingredients import soup_methods
    from lesionsoup.plan.report import size_curve_evaluations, size_curve_inputs

    config = load_tiny_config()
    soups = [  # SWA: one model per run (swa-seed0)
        paths.evaluation("IDRID", f"merged/IDRID/{method}")
        for method in soup_methods(config, "IDRID")
    ]
    # the grid's last checkpoints are evaluated as the uniform soup's ingredients (method
    # ingredient), and the size curve reuses those evaluations too
    grid = [
        paths.evaluation("IDRID", paths.model_key(path))
        for path in size_curve_inputs(config, "IDRID")["candidates"]
    ]
    assert sorted(size_curve_evaluations(config, "IDRID")) == sorted(grid + soups)
    config["merging"]["checkpoint"] = "best"
    config["training"]["seeds"] = [0, 1]
    config["report"] = {**config.get("report", {}), "size_curves": {"pool": ["base"]}}
    bootstrap = {"resamples": 50, "confidence": 0.8, "seed": 7}  # not the defaults
    config["evaluation"]["bootstrap"] = bootstrap
    candidates = size_curve_inputs(config, "IDRID")["candidates"]
    expected = [paths.evaluation("IDRID", paths.model_key(path)) for path in candidates] + soups
    assert sorted(size_curve_evaluations(config, "IDRID")) == sorted(expected)
    assert set(expected) <= set(evaluation_files(config, evaluated_models(config)))
    result = snakemake(tmp_path, write_config(tmp_path / "c.yaml", config), "--dry-run", "-p")
    assert result.returncode == 0, result.stdout + result.stderr
    evaluated = re.findall(r"^rule evaluate:\n\s+input: .*\n\s+output: (.*)$", result.stdout, re.M)
    command = next(line for line in result.stdout.splitlines() if "lesionsoup size-curve" in line)
    given = command.split("--evaluations ", 1)[1].split(" -o ", 1)[0].split()
    assert sorted(given) == sorted(expected)
    assert (
        f"--resamples {bootstrap['resamples']} --confidence {bootstrap['confidence']}"
        f" --seed {bootstrap['seed']} --evaluations" in command
    )
    assert set(given) <= {path for outputs in evaluated for path in outputs.split(", ")}
