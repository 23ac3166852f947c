"""Paper-scale cost on paper: GPU-hours, disk, VRAM and wall time of a study config.

What the study runs comes from the plan (``lesionsoup.plan`` on the config: training runs and
their steps, warm-ups, HPO trials, evaluated models x test sets). Sizes are measured here:
the config's model saved as safetensors (a checkpoint), and cache bytes per image at the
config's size. GPU seconds per training step and per evaluated image, and VRAM per job, are
inputs: ASSUMPTIONS unless measured on the cluster's GPU with ``--measure cuda`` (which times
the model step and ``evaluate`` at the config's sizes and reads the peak GPU memory). On a CPU,
``--measure cpu`` times the same code at a reduced size, for information only.

After (part of) a run, ``--results <working directory>`` adds a second table: GPU-hours per
rule with each job's wall time from its Snakemake benchmark record
(``results/benchmarks/<rule>/...tsv``) where it has one, the model's estimate where not, and a
``source`` column saying which (``measured``, ``model``, or how many of each).

    python benchmarks/cost_table.py [--config config/paper.yaml] [--gpus 1 8 32]
        [--step-s 0.25] [--image-s 0.1] [--vram-gib 20] [--measure cpu|cuda]
        [--results DIR] [--write docs/cluster.md]

``--write`` replaces the table between the markers of that file.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from bench_data_pipeline import synthetic_cache
from bench_evaluate import write_cache
from bench_training import model_step_rate
from snakemake.utils import validate
from torch.utils.flop_counter import FlopCounterMode

from lesionsoup.core import paths
from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.benchmark_records import measured_seconds
from lesionsoup.core.checkpoint import save_checkpoint
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.evaluation.evaluate import evaluate
from lesionsoup.inference.predictor import load_predictor
from lesionsoup.plan import datasets, evaluation, hpo, ingredients, study
from lesionsoup.plan.datasets import resolve_subsets
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.sampling import PatchDataset, PatchSampler

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
BEGIN, END = "<!-- cost-table:begin -->", "<!-- cost-table:end -->"

#: ASSUMED images per dataset (train, valid, test): official splits where there are (IDRiD
#: 54/27, DDR 383/149/225, MAPLES-DR 138/60), else the published totals (FGADR Seg-set 1842,
#: retinal-lesions 1593) split by the paper config's fractions (test 0.2, valid 0.12).
SPLITS = {
    "IDRID": (46, 8, 27),
    "DDR": (383, 149, 225),
    "FGADR": (1253, 221, 368),
    "RETLES": (1083, 191, 319),
    "MAPLES": (117, 21, 60),
}


@dataclass(frozen=True)
class Costs:
    """Per-unit costs: seconds per training step / evaluated image, bytes, VRAM."""

    step_s: float
    image_s: float
    vram_gib: float
    checkpoint_bytes: int
    cache_bytes_per_image: int
    step_flops: float  # forward + backward of one training batch, counted
    image_flops: float  # forward of one evaluated image, counted
    job_overhead_s: float
    source: str  # "assumed" or "measured on <device>"


@dataclass(frozen=True)
class Work:
    """What the plan runs: GPU jobs and their units of work. A training job holds its run's
    ``devices`` GPUs for every step and validation (rank 0 validates while the others wait),
    so its GPU counts are its units times its devices."""

    trainings: int
    training_gpus: int  # the GPUs of every training job, summed
    most_devices: int  # the GPUs of the widest training job
    training_steps: int
    training_gpu_steps: int  # steps x devices
    validation_images: int
    validation_gpu_images: int  # validation images x devices
    evaluations: int
    evaluated_images: int
    longest_training_steps: int
    longest_validation_images: int
    checkpoints: int
    cached_images: int


def load_config(path: Path) -> dict:
    config = yaml.safe_load(path.read_text())
    validate(config, str(SCHEMA))  # fills in the documented defaults
    resolve_subsets(config, SCHEMA)  # a subset dataset (`of`) takes its source's entry
    return config


def _splits(config: dict, name: str) -> tuple[int, int, int]:
    """(train, valid, test) images of a dataset; a subset keeps its train_fraction of its
    source's training images (rounded) and the source's validation and test images."""
    train, valid, test = SPLITS[datasets.source_of(config, name)]
    fraction = (config["datasets"][name].get("split") or {}).get("train_fraction", 1.0)
    return max(1, round(train * fraction)), valid, test


def _validations(config: dict, settings: dict, combo: str) -> int:
    """Validation images one run evaluates: its validations x the combination's valid images."""
    valid = sum(_splits(config, name)[1] for name in combo.split("+"))
    return settings["steps"] // settings["validate_every"] * valid


def _in_steps(config: dict, combo: str, settings: dict) -> dict:
    """A job's settings with lengths in epochs turned into steps on the combination's training
    images (the full budget: early stopping can only shorten it)."""
    images = sum(_splits(config, name)[0] for name in combo.split("+"))
    return TrainSettings.from_dict(settings).in_steps(images).as_dict()


def _starts(config: dict, run: study.Run) -> list[str]:
    return ingredients.init_for(config, run.combo, run.recipe, run.seed)


@dataclass(frozen=True)
class Job:
    """A planned GPU job: its rule, its benchmark record (relative to the working directory),
    and its training combination and settings in steps (None for an evaluation)."""

    rule: str
    record: str
    combo: str
    settings: dict | None = None


def training_jobs(config: dict) -> list[Job]:
    """Warm-ups, training runs (soup ingredients included) and HPO trials of the plan."""
    planned = study.runs(config) + ingredients.ingredient_runs(config)
    warmups = sorted(
        {run.combo for run in planned if study.paths.init(run.combo) in _starts(config, run)}
    )
    warmup = study.warmup_settings(config)
    jobs = [
        Job("warmup", paths.WARMUP_BENCHMARK.format(combo=c), c, _in_steps(config, c, warmup))
        for c in warmups
    ]
    for run in {run.directory: run for run in planned}.values():
        record = paths.TRAIN_BENCHMARK.format(combo=run.combo, recipe=run.recipe, seed=run.seed)
        settings = ingredients.settings_for(config, run.recipe, run.seed)
        jobs.append(Job("train", record, run.combo, _in_steps(config, run.combo, settings)))
    for plan in hpo.plans(config):
        settings = _in_steps(config, plan.combo, hpo.definition(config, plan.recipe)["settings"])
        for index in range(config["hpo"]["n_trials"]):
            record = paths.HPO_TRIAL_BENCHMARK.format(**dataclasses.asdict(plan), index=index)
            jobs.append(Job("hpo_trial", record, plan.combo, settings))
    return jobs


def count_work(config: dict) -> Work:
    """Training runs (warm-ups, runs, soup ingredients, HPO trials) and evaluations of the plan."""
    planned = training_jobs(config)
    warmups = [job.combo for job in planned if job.rule == "warmup"]
    jobs = [(job.combo, job.settings) for job in planned]
    trained = [(job.combo, job.settings) for job in planned if job.rule == "train"]
    snapshots = sum(
        len(TrainSettings.from_dict(settings).lr_schedule.snapshot_steps())
        for _, settings in trained
    )
    soups = [m for m in ingredients.merged_models(config) if m[0].endswith(".safetensors")]
    models = evaluation.evaluated_models(config)
    tests = study.test_datasets(config)
    longest = max(trained, key=lambda job: job[1]["steps"])
    return Work(
        trainings=len(jobs),
        training_gpus=sum(settings["devices"] for _, settings in jobs),
        most_devices=max(settings["devices"] for _, settings in jobs),
        training_steps=sum(settings["steps"] for _, settings in jobs),
        training_gpu_steps=sum(settings["steps"] * settings["devices"] for _, settings in jobs),
        validation_images=sum(_validations(config, settings, combo) for combo, settings in jobs),
        validation_gpu_images=sum(
            _validations(config, settings, combo) * settings["devices"] for combo, settings in jobs
        ),
        evaluations=len(models) * len(tests),
        evaluated_images=len(models) * sum(_splits(config, test)[2] for test in tests),
        longest_training_steps=max(
            (settings["steps"] for combo, settings in jobs[: len(warmups)] if combo == longest[0]),
            default=0,
        )
        + longest[1]["steps"],
        longest_validation_images=_validations(config, longest[1], longest[0]),
        checkpoints=2 * len(trained) + snapshots + len(soups) + len(warmups),
        cached_images=sum(sum(_splits(config, name)) for name in config["datasets"]),
    )


def checkpoint_bytes(spec: ModelSpec, folder: Path) -> tuple[int, Path]:
    """Size of the model's state dict saved as safetensors (random weights, same shapes)."""
    path = folder / "model.safetensors"
    save_checkpoint(path, build_model(spec).state_dict(), {"architecture": spec.as_dict()})
    return path.stat().st_size, path


def flops_per_pixel(spec: ModelSpec, side: int = 128) -> tuple[float, float]:
    """Forward and forward + backward FLOPs per input pixel, counted by torch at ``side`` px
    (a fully convolutional net's FLOPs grow with the pixel count)."""
    model = build_model(spec)
    image = torch.randn(1, 3, side, side)
    with FlopCounterMode(display=False) as forward:
        model(image)
    with FlopCounterMode(display=False) as both:
        model(image).sum().backward()
    return forward.get_total_flops() / side**2, both.get_total_flops() / side**2


def cache_bytes_per_image(size: int, folder: Path, images: int = 2) -> int:
    """Bytes one image takes in a cache of ``size`` px (image, label plane, lesion pixel lists)."""
    synthetic_cache(folder / "cache", size, images=images)
    files = [path for path in (folder / "cache").rglob("*") if path.is_file()]
    return sum(path.stat().st_size for path in files) // images


def measure_step_s(spec: ModelSpec, patch: int, batch: int, device: torch.device) -> float:
    """Seconds per training step (forward, loss, backward, AdamW) of ``spec`` on ``device``."""
    with tempfile.TemporaryDirectory() as folder:
        cache = synthetic_cache(Path(folder) / "cache", max(256, 2 * patch), images=4)
        sampler = PatchSampler({"SYN": cache}, "train", patch, 0.5, "proportional", seed=0)
        dataset = PatchDataset(sampler, build_augmentation("medium"), batch)
        patches = next(iter(torch.utils.data.DataLoader(dataset, batch_size=batch)))
        rate = model_step_rate(spec, patches, 3, device, fp32=device.type == "cpu")
    return batch / rate


def measure_image_s(model: Path, size: int, device: torch.device, images: int = 4) -> float:
    """Seconds per test image of ``evaluate`` (whole-image inference, histograms), model load
    excluded."""
    with tempfile.TemporaryDirectory() as folder:
        cache = write_cache(Path(folder) / "cache", images, size)
        start = time.perf_counter()
        load_predictor(model, device)
        load = time.perf_counter() - start
        start = time.perf_counter()
        evaluate(model, cache, device=device)
        return max(0.0, time.perf_counter() - start - load) / images


def measure(config: dict, args: argparse.Namespace, folder: Path) -> tuple[Costs, str]:
    """Per-unit costs (sizes always measured; times and VRAM measured or assumed), and a note
    on what was measured."""
    spec = dataclasses.replace(study.model_spec(config), encoder_weights=None)
    size = config["preprocess"]["size"]
    checkpoint, model = checkpoint_bytes(spec, folder)
    settings = study.recipe_settings(config, next(iter(config["training"]["recipes"])), 0)
    patch, batch = settings["patch_size"], settings["batch_size"]
    forward, both = flops_per_pixel(spec)
    costs = Costs(
        step_s=args.step_s,
        image_s=args.image_s,
        vram_gib=args.vram_gib,
        checkpoint_bytes=checkpoint,
        cache_bytes_per_image=cache_bytes_per_image(size, folder),
        step_flops=both * patch**2 * batch,
        image_flops=forward * size**2,
        job_overhead_s=args.job_overhead_s,
        source="assumed",
    )
    if args.measure is None:
        return costs, ""
    device = torch.device(args.measure)
    if device.type == "cpu":  # reduced sizes, reported beside the assumptions
        step = measure_step_s(spec, 128, 2, device)
        image = measure_image_s(model, 256, device)
        pixels = (patch**2 * batch / (128**2 * 2), size**2 / 256**2)
        note = (
            f"Measured on the CPU at reduced sizes: {step:.2f} s per step (patch 128, batch 2), "
            f"{image:.2f} s per 256 px image; scaled by pixels to the config's sizes, "
            f"{step * pixels[0]:.1f} s per step and {image * pixels[1]:.1f} s per image."
        )
        return costs, note
    torch.cuda.reset_peak_memory_stats(device)
    step = measure_step_s(spec, patch, batch, device)
    image = measure_image_s(model, size, device)
    vram = torch.cuda.max_memory_allocated(device) / 2**30
    name = torch.cuda.get_device_name(device)
    measured = dataclasses.replace(
        costs, step_s=step, image_s=image, vram_gib=vram, source=f"measured on {name}"
    )
    return measured, f"Times and VRAM measured on {name} (patch {patch}, batch {batch})."


def _bytes(size: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size:,.0f} B"


def _flops(count: float) -> str:
    return f"{count / 1e12:,.2f} TFLOP"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.0f} h" if seconds >= 36000 else f"{seconds / 3600:,.1f} h"


def gpu_seconds(work: Work, costs: Costs) -> dict[str, float]:
    """GPU seconds by kind of work: each job's devices x its seconds (evaluations: one GPU)."""
    return {
        "training steps": work.training_gpu_steps * costs.step_s,
        "validation during training": work.validation_gpu_images * costs.image_s,
        "evaluation": work.evaluated_images * costs.image_s,
        "job start-ups": (work.training_gpus + work.evaluations) * costs.job_overhead_s,
    }


def longest_chain_s(work: Work, costs: Costs, test_images: int) -> float:
    """The plan's longest sequence of jobs: a warm-up, its longest run, its largest test set."""
    training = work.longest_training_steps * costs.step_s
    validation = work.longest_validation_images * costs.image_s
    return training + validation + test_images * costs.image_s + 3 * costs.job_overhead_s


def table(config: dict, work: Work, costs: Costs, gpus: list[int]) -> list[str]:
    """The Markdown table: the plan's counts, per-unit costs, and the totals they give."""
    settings = study.recipe_settings(config, next(iter(config["training"]["recipes"])), 0)
    size, encoder = config["preprocess"]["size"], config["model"]["encoder"]
    seconds = gpu_seconds(work, costs)
    total = sum(seconds.values())
    tests = study.test_datasets(config)
    chain = longest_chain_s(work, costs, max(_splits(config, test)[2] for test in tests))
    times = costs.source
    rows = [
        ("training jobs (warm-ups, runs, soup ingredients, HPO trials)", f"{work.trainings:,}"),
        ("GPUs of the training jobs, summed (each holds its run's `devices`)",
         f"{work.training_gpus:,}"),
        ("training steps, all jobs", f"{work.training_steps:,}"),
        ("validation images evaluated during training", f"{work.validation_images:,}"),
        ("evaluation jobs (models x test sets)", f"{work.evaluations:,}"),
        ("test images evaluated", f"{work.evaluated_images:,}"),
        (f"s per training step on each GPU (patch {settings['patch_size']}, batch "
         f"{settings['batch_size']} per GPU) [{times}]", f"{costs.step_s:.3g}"),
        (f"GPU s per evaluated image ({size} px, whole) [{times}]", f"{costs.image_s:.3g}"),
        ("FLOPs per training step, forward and backward [counted]", _flops(costs.step_flops)),
        ("FLOPs per evaluated image, forward [counted]", _flops(costs.image_flops)),
        ("GPU throughput these times imply, training / evaluation",
         f"{costs.step_flops / costs.step_s / 1e12:.0f} / "
         f"{costs.image_flops / costs.image_s / 1e12:.0f} TFLOP/s"),
        ("start-up per job: Python, torch, model load; queue wait excluded [assumed]",
         f"{costs.job_overhead_s:.0f} s"),
        *((f"GPU-hours, {kind}", _hours(value)) for kind, value in seconds.items()),
        ("**GPU-hours, total**", f"**{_hours(total)}**"),
        *((f"wall time on {count} GPU{'s' * (count > 1)}", _hours(max(total / count, chain)))
          for count in gpus if count >= work.most_devices),
        (f"VRAM per GPU job [{times}]", f"{costs.vram_gib:.1f} GiB"),
        (f"checkpoint, U-Net {encoder} as safetensors [measured]", _bytes(costs.checkpoint_bytes)),
        (f"cache per image at {size} px [measured]", _bytes(costs.cache_bytes_per_image)),
        (f"disk, caches ({work.cached_images:,} images)",
         _bytes(work.cached_images * costs.cache_bytes_per_image)),
        (f"disk, checkpoints ({work.checkpoints:,}: best and last per run, snapshots, soups, "
         "initialisations)", _bytes(work.checkpoints * costs.checkpoint_bytes)),
        ("scratch per running training (state: weights and two AdamW moments)",
         _bytes(3 * costs.checkpoint_bytes)),
    ]  # fmt: skip
    return ["| quantity | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]


def gpu_jobs(config: dict) -> list[Job]:
    """Every planned job the model costs: the training jobs, then one evaluation per model."""
    evaluations = [
        Job("evaluate", paths.EVALUATE_BENCHMARK.format(model=model.key), model.combo)
        for model in evaluation.evaluated_models(config).values()
    ]
    return training_jobs(config) + evaluations


def modeled_s(config: dict, job: Job, costs: Costs) -> float:
    """A job's seconds by the model: its steps and validation images (an evaluation: its test
    images), and its start-up."""
    if job.settings is None:
        images = sum(_splits(config, test)[2] for test in study.test_datasets(config))
        return images * costs.image_s + costs.job_overhead_s
    validation = _validations(config, job.settings, job.combo) * costs.image_s
    return job.settings["steps"] * costs.step_s + validation + costs.job_overhead_s


def _source(measured: int, count: int) -> str:
    if measured == count:
        return "measured"
    return "model" if measured == 0 else f"measured {measured} of {count}, model for the rest"


#: GPU rules the model leaves out: the measured table adds the records it finds of them
UNMODELED = ("merge", "ensemble", "connectivity", "size_curve")


def measured_table(config: dict, costs: Costs, results: Path) -> list[str]:
    """GPU-hours per rule from the jobs' Snakemake benchmark records under ``results`` (the
    study's working directory): each job's recorded wall time where it has a record, the
    model's estimate where not, times its devices; then the recorded jobs of rules the model
    leaves out."""
    totals: dict[str, list[float]] = {}  # rule -> [GPU seconds, jobs measured, jobs]
    for job in gpu_jobs(config):
        recorded = measured_seconds(results / job.record)
        seconds = modeled_s(config, job, costs) if recorded is None else recorded
        entry = totals.setdefault(job.rule, [0.0, 0, 0])
        entry[0] += seconds * (job.settings["devices"] if job.settings else 1)
        entry[1] += recorded is not None
        entry[2] += 1
    for rule in UNMODELED:  # one GPU each
        records = sorted((results / paths.BENCHMARKS / rule).rglob("*.tsv"))
        if records:
            recorded = sum(measured_seconds(record) or 0.0 for record in records)
            totals[f"{rule} (not in the model)"] = [recorded, len(records), len(records)]
    totals["**all**"] = [sum(entry[i] for entry in totals.values()) for i in range(3)]
    rows = [
        f"| {rule} | {count:,.0f} | {seconds:,.0f} | {seconds / 3600:,.2f} | "
        f"{_source(int(measured), int(count))} |"
        for rule, (seconds, measured, count) in totals.items()
    ]
    header = "| GPU jobs (rule) | jobs | GPU seconds | GPU-hours | source |"
    return [header, "|---|---|---|---|---|", *rows]


def write_between_markers(path: Path, lines: list[str]) -> None:
    """Replace the text between BEGIN and END in ``path`` (temp file, then rename)."""
    text = path.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"{path}: needs exactly one {BEGIN} and one {END} line")
    block = "\n".join([BEGIN, *lines, END])
    pattern = re.escape(BEGIN) + ".*?" + re.escape(END)
    atomic_write_bytes(path, re.sub(pattern, lambda _: block, text, flags=re.DOTALL).encode())


#: Inputs that CPU cannot measure: (default, what the default stands for). Replace them with
#: your GPU's figures, or measure them there with --measure cuda.
ASSUMPTIONS = {
    "step_s": (0.25, "GPU s per training step at the config's patch and batch (A100-class, bf16)"),
    "image_s": (0.1, "GPU s per evaluated image at the config's size (A100-class, bf16)"),
    "vram_gib": (20.0, "peak GPU memory of a job, GiB (UNet-ResNet101, batch 8 x 512 px, bf16)"),
    "job_overhead_s": (60.0, "start-up of a job: Python, torch import, model load; no queue"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "config" / "paper.yaml")
    parser.add_argument(
        "--gpus",
        type=int,
        nargs="+",
        default=[2, 8, 32],
        help="GPU counts of the wall-time rows (those below a training job's devices are left out)",
    )
    for name, (default, meaning) in ASSUMPTIONS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=float, default=default, help=f"ASSUMED {meaning}")
    parser.add_argument("--measure", choices=["cpu", "cuda"], help="time the steps here")
    parser.add_argument(
        "--results",
        type=Path,
        help="working directory of a run of this config: adds GPU-hours per rule from the jobs' "
        "benchmark records there (results/benchmarks/), the model's for jobs without one",
    )
    parser.add_argument("--write", type=Path, help="Markdown file to write the table into")
    args = parser.parse_args()

    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as folder:
        costs, note = measure(config, args, Path(folder))
    shown = args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config
    inputs = " ".join(
        f"--{name.replace('_', '-')} {getattr(costs, name):.3g}" for name in ASSUMPTIONS
    )
    inputs += f" --results {args.results}" if args.results else ""
    lines = [*table(config, count_work(config), costs, args.gpus), ""]
    if args.results:
        lines += [*measured_table(config, costs, args.results), ""]
    lines.append(
        f"Config `{shown}`; written by `python benchmarks/cost_table.py --config {shown} "
        f"{inputs}`. {note}".rstrip()
    )
    print("\n".join(lines))
    if args.write:
        write_between_markers(args.write, lines)


if __name__ == "__main__":
    main()
