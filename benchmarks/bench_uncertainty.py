"""Bootstrap stage against evaluation stage: evaluation file sizes and seconds, demo and paper.

Run: ``python benchmarks/bench_uncertainty.py [--quick] [--paper-models 6] [--resamples 1000]``.

Demo: the demo config's synthetic datasets (``lesionsoup.data.synthetic``), indexed
and cached at the config's size like the workflow does (test splits only), one checkpoint of
the config's model (random weights) per model of the demo plan, each evaluated on every test
set by ``evaluate_model`` (what ``lesionsoup evaluate`` runs), then ``lesionsoup
uncertainty``'s calls on those files: ``load_scored``, ``uncertainty`` (one resampling
pass: intervals, comparisons, replicates) and its files.

Paper: the test sets of ``config/paper.yaml`` at their real sizes (official test splits;
published totals times the config's test fraction elsewhere) and the evaluation files of its
plan, with per-image histograms drawn at the config's cache size (a bootstrap's cost depends
on images, bins, lesions, models and resamples, not on pixels). The bootstrap stage runs on
the files of ``--paper-models`` of the plan's models and is scaled linearly to all of them
(files read and resampled); evaluation seconds per image at paper scale are
cost_table.py's ASSUMPTION (a GPU cannot be measured here). Seconds are wall time on this
machine: the load average printed with the table says whether it was shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cost_table import ASSUMPTIONS, REPO, load_config
from scipy import stats

from lesionsoup.core.atomic import write_csv
from lesionsoup.core.checkpoint import save_checkpoint
from lesionsoup.core.methods import SINGLE
from lesionsoup.core.metrics import ImageCounts, LesionHistogram
from lesionsoup.core.model import build_model
from lesionsoup.data.datasets.index import index_dataset
from lesionsoup.data.datasets.registry import get_adapter
from lesionsoup.data.preprocess import MaskRules, build_cache
from lesionsoup.data.splits import SplitOptions
from lesionsoup.data.synthetic.generator import generate
from lesionsoup.evaluation.evaluate import (
    load_evaluation,
    load_model_table,
    save_evaluation,
    save_model_table,
)
from lesionsoup.evaluation.per_model import EvaluationTarget, evaluate_model
from lesionsoup.evaluation.statistics import image_histograms_to_dict
from lesionsoup.evaluation.uncertainty import BootstrapSettings, load_scored, uncertainty
from lesionsoup.plan import study
from lesionsoup.plan.evaluation import EvaluatedModel, evaluated_models, model_table

#: Published image counts of the datasets without an official test split (FGADR Seg-set,
#: retinal-lesions); the paper config's test fraction of them is expected in ``test``.
PUBLISHED_IMAGES = {"FGADR": 1842, "RETLES": 1593}
#: Beta distributions of a trained model's probabilities on negative and positive pixels:
#: the ASSUMED shape of the paper's per-image histograms (only the file size depends on it).
PROBABILITIES = {"negatives": (0.3, 12.0), "positives": (2.0, 1.5)}
#: Uniform probabilities: every bin filled, the largest per-image histograms a file holds.
UNIFORM = {"negatives": (1.0, 1.0), "positives": (1.0, 1.0)}


@dataclass(frozen=True)
class Stage:
    """Seconds of the bootstrap stage's parts, and what it covered."""

    load_s: float
    resample_s: float  # one pass: intervals, comparisons and replicates
    write_s: float
    scored: int  # (model, test set) pairs
    compared: int  # of them, those compared with a baseline

    @property
    def total_s(self) -> float:
        return self.load_s + self.resample_s + self.write_s

    def scaled(self, scored: int, compared: int) -> Stage:
        """Linear in the pairs loaded and resampled (a comparison subtracts two pairs'
        resamples: its cost is in theirs)."""
        factor = scored / self.scored
        return Stage(
            self.load_s * factor, self.resample_s * factor, self.write_s * factor, scored, compared
        )


def uncertainty_stage(
    files: Sequence[Path], models_json: Path, settings: BootstrapSettings, out: Path
) -> Stage:
    """What ``lesionsoup uncertainty`` does (commands/evaluation.py), timed by part."""
    start = time.perf_counter()
    scored = load_scored(files, load_model_table(models_json))
    loaded = time.perf_counter()
    tables = uncertainty(scored, "ap", settings)
    resampled = time.perf_counter()
    write_csv(tables.intervals, out / "metrics_ci.csv")
    write_csv(tables.comparisons, out / "comparisons.csv")
    tables.replicates.save(out / "bootstrap.npz")
    done = time.perf_counter()
    compared = len(tables.comparisons.groupby(["model", "test_dataset"]))
    return Stage(
        loaded - start, resampled - loaded, done - resampled, len(scored), compared
    )  # fmt: skip


def compared_pairs(models: Sequence[EvaluatedModel], tests: int) -> int:
    """(model, test set) pairs with a baseline that is not themselves: every model of a
    combination with a single model, but one."""
    combos = {model.combo for model in models if model.method == SINGLE}
    return tests * sum(model.combo in combos for model in models) - tests * len(combos)


def demo_test_caches(config: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """The demo's synthetic datasets, indexed and cached at its size: test images only."""
    synthetic = config["synthetic"]
    roots = generate(
        folder / "synthetic", synthetic["images"], synthetic["seed"], synthetic["scale"],
        synthetic["styles"], list(config["datasets"]),
        dataset_styles=synthetic["dataset_styles"], lesion_sizes=synthetic["lesion_sizes"],
    )  # fmt: skip
    caches = {}
    for name in study.test_datasets(config):
        settings, adapter = config["datasets"][name], get_adapter(name)
        options = {key: settings[key] for key in adapter.option_names if key in settings}
        manifest = index_dataset(name, roots[name], options)
        uncertain = adapter.uncertain_value
        rules = MaskRules(
            settings.get("mask_threshold", adapter.mask_threshold),
            uncertain,
            settings.get(f"value_{uncertain}", adapter.uncertain_as),
            adapter.lesion_rules,
        )
        test = manifest[manifest["split"] == "test"].reset_index(drop=True)
        size = config["preprocess"]["size"]
        build_cache(test, folder / "cache" / name, size, rules, threads=1, progress=False)
        caches[name] = folder / "cache" / name
    return caches


def demo_checkpoints(
    config: Mapping[str, Any], models: Sequence[EvaluatedModel], folder: Path
) -> dict[str, Path]:
    """One checkpoint of the config's model per evaluated model (random weights, seeded);
    an ensemble is evaluated as one checkpoint here."""
    spec = dataclasses.replace(study.model_spec(config), encoder_weights=None)
    checkpoints = {}
    for index, model in enumerate(models):
        torch.manual_seed(index)
        path = (folder / model.path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, build_model(spec).state_dict(), {"architecture": spec.as_dict()})
        checkpoints[model.key] = path
    return checkpoints


def evaluate_all(
    config: Mapping[str, Any], checkpoints: Mapping[str, Path], caches: Mapping[str, Path],
    folder: Path,
) -> tuple[list[Path], float]:  # fmt: skip
    """Each model on every test set (one ``evaluate_model`` call a model, on the rule's
    threads, as the rule runs it); the evaluation files and the seconds it all took."""
    evaluation = config["evaluation"]
    torch.set_num_threads(evaluation["threads"])
    files, start = [], time.perf_counter()
    for key, checkpoint in checkpoints.items():
        targets = [
            EvaluationTarget(cache, folder / "eval" / name / f"{key}.json")
            for name, cache in caches.items()
        ]
        evaluate_model(checkpoint, targets, bins=evaluation["bins"], device="cpu")
        files += [target.output for target in targets]
    return files, time.perf_counter() - start


@dataclass(frozen=True)
class Sizes:
    """Bytes of evaluation files per image and model: all of it, and its per-image parts."""

    total: float
    image_histograms: float
    per_image_counts: float
    images: int  # summed over the files


def file_sizes(files: Sequence[Path]) -> Sizes:
    """The files' bytes over their images; the parts as ``json.dumps`` writes them."""
    total = histograms = counts = images = 0
    for path in files:
        result = load_evaluation(path)
        total += path.stat().st_size
        histograms += len(json.dumps(result["image_histograms"]))
        counts += len(json.dumps(result["per_image"]))
        images += result["images"]
    return Sizes(total / images, histograms / images, counts / images, images)


def paper_test_sizes(config: Mapping[str, Any]) -> dict[str, int]:
    """Test images of each test set: the official split, else the published total times
    the config's test fraction (expected; the seeded split rounds by patient)."""
    sizes = {}
    for name in study.test_datasets(config):
        official = get_adapter(name).official_splits.get("test")
        split = SplitOptions.from_mapping(config["datasets"][name].get("split") or {})
        sizes[name] = official or round(PUBLISHED_IMAGES[name] * split.test)
    return sizes


def _bin_shares(bins: int, alpha: float, beta: float) -> np.ndarray:
    """Shares of ``bins`` uniform bins (and the exact-1.0 bin) under Beta(alpha, beta)."""
    shares = np.append(np.diff(stats.beta.cdf(np.linspace(0, 1, bins + 1), alpha, beta)), 0.0)
    return shares / shares.sum()


def synthetic_image(
    rng: np.random.Generator, bins: int, valid: int, positive_share: Mapping[str, float],
    probabilities: Mapping[str, tuple[float, float]],
) -> list[LesionHistogram]:  # fmt: skip
    """One image's histograms (one a lesion): ``valid`` pixels, positives by their share."""
    images = []
    for share in positive_share.values():
        positives = rng.binomial(valid, share)
        counts = {
            kind: rng.multinomial(total, _bin_shares(bins, *probabilities[kind]))
            for kind, total in (("positives", positives), ("negatives", valid - positives))
        }
        images.append(LesionHistogram(bins, counts["positives"], counts["negatives"]))
    return images


def paper_result(
    template: Mapping[str, Any], model: str, test: str, images: int, valid: int,
    positive_share: Mapping[str, float], seed: int,
    probabilities: Mapping[str, tuple[float, float]] = PROBABILITIES,
) -> dict[str, Any]:  # fmt: skip
    """A demo evaluation file with the paper's images: per-image parts drawn, the pooled
    histograms their sum (the layout ``evaluate`` writes, at the template's bins)."""
    bins = int(template["histograms"]["bins"])
    rng = np.random.default_rng(seed)
    ids = [f"{test}_{index:04d}" for index in range(images)]
    drawn = [synthetic_image(rng, bins, valid, positive_share, probabilities) for _ in ids]
    lesions = list(positive_share)
    pooled = [sum(column[1:], column[0]) for column in zip(*drawn, strict=True)]
    return {
        **template,
        "model": model,
        "test_dataset": test,
        "images": images,
        "histograms": {
            **template["histograms"],
            "lesions": {lesion: h.to_dict() for lesion, h in zip(lesions, pooled, strict=True)},
        },
        "per_image": [
            dataclasses.asdict(ImageCounts.from_histogram(image_id, lesion, histogram))
            for image_id, row in zip(ids, drawn, strict=True)
            for lesion, histogram in zip(lesions, row, strict=True)
        ],
        "image_histograms": image_histograms_to_dict(ids, lesions, drawn, bins),
    }


def demo_pixels(files: Sequence[Path], size: int) -> tuple[float, dict[str, float]]:
    """The share of an image's pixels that are valid, and each lesion's share of them."""
    counts = [entry for path in files for entry in load_evaluation(path)["per_image"]]
    lesions = dict.fromkeys(entry["lesion"] for entry in counts)
    valid = {lesion: 0 for lesion in lesions}
    positive = {lesion: 0 for lesion in lesions}
    for entry in counts:
        valid[entry["lesion"]] += entry["tp"] + entry["fp"] + entry["fn"] + entry["tn"]
        positive[entry["lesion"]] += entry["tp"] + entry["fn"]
    images = len(counts) / len(lesions)
    first = next(iter(lesions))
    return valid[first] / images / size**2, {k: positive[k] / valid[k] for k in lesions}


@dataclass(frozen=True)
class Scale:
    """One column of the table: what was measured or scaled, at one scale."""

    name: str
    models: int
    images: dict[str, int]  # test images per test set
    sizes: Sizes
    uniform_histograms: float  # bytes per image, every bin filled
    evaluation_s_per_image: float
    evaluation_note: str
    bootstrap: Stage
    bootstrap_note: str

    @property
    def evaluation_s(self) -> float:
        return self.evaluation_s_per_image * self.models * sum(self.images.values())


def timed_subset(models: Sequence[EvaluatedModel], count: int) -> list[EvaluatedModel]:
    """``count`` models (0: all): the plan's first combination of several models, its
    single models first, so that some model is compared with its baseline; then the
    other models in plan order."""
    if count <= 0 or count >= len(models):
        return list(models)
    sizes = Counter(model.combo for model in models)
    first = next(combo for combo, size in sizes.items() if size > 1)
    ordered = sorted(
        (model for model in models if model.combo == first),
        key=lambda model: (model.method != SINGLE, model.path),
    )
    ordered += [model for model in models if model.combo != first]
    return ordered[: max(count, 2)]


def _note(stage: Stage, timed: int, planned: int) -> str:
    if timed == planned:
        return "measured"
    return (
        f"measured on {timed} of {planned} models ({stage.scored} files, {stage.compared} "
        "compared), scaled linearly in models"
    )


def run_demo(args: argparse.Namespace, folder: Path) -> tuple[Scale, dict[str, Any]]:
    """The demo's column, and what the paper's files borrow from it (template, pixels)."""
    config = load_config(REPO / "config.yaml")
    planned = list(evaluated_models(config).values())
    models = timed_subset(planned, args.demo_models)
    caches = demo_test_caches(config, folder)
    checkpoints = demo_checkpoints(config, models, folder)
    files, seconds = evaluate_all(config, checkpoints, caches, folder)
    table = {str(checkpoints[m.key]): [m.combo, m.method] for m in models}
    save_model_table(table, folder / "models.json")
    settings = BootstrapSettings(resamples=args.resamples)
    stage = uncertainty_stage(files, folder / "models.json", settings, folder / "demo")
    images = {name: load_evaluation(files[i])["images"] for i, name in enumerate(caches)}
    size = config["preprocess"]["size"]
    share, positives = demo_pixels(files, size)
    borrowed = {"template": load_evaluation(files[0]), "share": share, "positives": positives}
    scale = Scale(
        "demo", len(planned), images, file_sizes(files),
        uniform_bound(images, round(share * size**2), borrowed),
        seconds / (len(models) * sum(images.values())),
        f"measured on the CPU ({torch.get_num_threads()} thread(s), the rule's), model loads "
        "included",
        stage.scaled(len(planned) * len(images), compared_pairs(planned, len(images))),
        _note(stage, len(models), len(planned)),
    )  # fmt: skip
    return scale, borrowed


def write_paper_files(
    models: Sequence[EvaluatedModel], images: Mapping[str, int], valid: int,
    demo: Mapping[str, Any], folder: Path,
) -> list[Path]:  # fmt: skip
    """One drawn evaluation file per (model, test set), each model's draws its own."""
    files = []
    for index, model in enumerate(models):
        for test, count in images.items():
            result = paper_result(
                demo["template"], model.path, test, count, valid, demo["positives"], index
            )
            files.append(folder / test / f"{model.key}.json")
            save_evaluation(result, files[-1])
    return files


def uniform_bound(images: Mapping[str, int], valid: int, demo: Mapping[str, Any]) -> float:
    """Bytes per image of the per-image histograms when every bin is filled (uniform
    probabilities): the most a file of these images holds."""
    total = 0
    for test, count in images.items():
        result = paper_result(
            demo["template"], "bound", test, count, valid, demo["positives"], 0, UNIFORM
        )
        total += len(json.dumps(result["image_histograms"]))
    return total / sum(images.values())


def run_paper(args: argparse.Namespace, folder: Path, demo: Mapping[str, Any]) -> Scale:
    """The paper's column: its files drawn at its test sizes, the bootstrap timed on a
    subset of its models and scaled, evaluation seconds ASSUMED."""
    config = load_config(REPO / "config" / "paper.yaml")
    planned = list(evaluated_models(config).values())
    timed = timed_subset(planned, args.paper_models)
    images = paper_test_sizes(config)
    size = config["preprocess"]["size"]
    valid = round(demo["share"] * size**2)
    files = write_paper_files(timed, images, valid, demo, folder / "paper")
    save_model_table(model_table({m.key: m for m in timed}), folder / "paper-models.json")
    settings = BootstrapSettings(resamples=args.resamples)
    stage = uncertainty_stage(files, folder / "paper-models.json", settings, folder / "paper")
    full = stage.scaled(len(planned) * len(images), compared_pairs(planned, len(images)))
    image_s = ASSUMPTIONS["image_s"][0]
    return Scale(
        "paper", len(planned), images, file_sizes(files[: len(images)]),
        uniform_bound(images, valid, demo), image_s,
        f"ASSUMED {image_s} GPU s per {size} px image (cost_table.py)", full,
        _note(stage, len(timed), len(planned)),
    )  # fmt: skip


def _row(name: str, values: Sequence[str]) -> str:
    return f"{name:50} " + " ".join(f"{value:>16}" for value in values)


def print_table(scales: Sequence[Scale], resamples: int) -> None:
    """Both scales side by side, then what each number rests on."""
    s = scales
    rows = {
        "evaluated models (plan)": [f"{x.models}" for x in s],
        "test images, all test sets": [f"{sum(x.images.values())}" for x in s],
        **{f"  {name}": [f"{x.images.get(name, 0)}" for x in s] for name in s[0].images},
        "evaluation file, bytes per image and model": [f"{x.sizes.total:,.0f}" for x in s],
        "  of it per-image histograms": [f"{x.sizes.image_histograms:,.0f}" for x in s],
        "  of it per-image counts": [f"{x.sizes.per_image_counts:,.0f}" for x in s],
        "per-image histograms if every bin filled": [f"{x.uniform_histograms:,.0f}" for x in s],
        "evaluation s per image (one model)": [f"{x.evaluation_s_per_image:.3f}" for x in s],
        "evaluation stage s (models x images)": [f"{x.evaluation_s:,.1f}" for x in s],
        f"bootstrap stage s ({resamples} resamples)": [f"{x.bootstrap.total_s:,.1f}" for x in s],
        "  reading the files": [f"{x.bootstrap.load_s:,.1f}" for x in s],
        "  resampling (intervals, comparisons, replicates)": [
            f"{x.bootstrap.resample_s:,.1f}" for x in s
        ],
        "  writing the tables": [f"{x.bootstrap.write_s:,.1f}" for x in s],
        "bootstrap s per (model, test set)": [
            f"{x.bootstrap.total_s / x.bootstrap.scored:.2f}" for x in s
        ],
        "bootstrap / evaluation": [f"{x.bootstrap.total_s / x.evaluation_s:.3g}" for x in s],
    }
    print(_row("", [x.name for x in s]))
    for name, values in rows.items():
        print(_row(name, values))
    for x in s:
        print(f"{x.name}: evaluation {x.evaluation_note}; bootstrap {x.bootstrap_note}.")
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=BootstrapSettings.resamples)
    parser.add_argument(
        "--paper-models", type=int, default=6,
        help="time the paper's bootstrap on this many of its models (0: all), scaled to all",
    )  # fmt: skip
    parser.add_argument(
        "--demo-models", type=int, default=0, help="evaluate this many of the demo's (0: all)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 resamples, few models")
    args = parser.parse_args()
    if args.quick:
        args.resamples, args.paper_models, args.demo_models = 20, 2, 2
    with tempfile.TemporaryDirectory() as folder:
        demo, borrowed = run_demo(args, Path(folder))
        paper = run_paper(args, Path(folder), borrowed)
    print_table([demo, paper], args.resamples)


if __name__ == "__main__":
    main()
