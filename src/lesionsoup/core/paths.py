"""Every location the workflow writes, in one place (nnU-Net's ``paths.py``).

The templates use Snakemake's wildcard syntax, so the rules name them as they
are in ``input:``/``output:`` (``f"{paths.RUN}/best.safetensors"``) and the
plan code fills them in with the functions below; a location therefore
changes in one line, for the jobs and for the code that asks for them alike.
Outputs live under ``results/``, logs under ``logs/``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

RESULTS = "results"
LOGS = "logs"
RESOURCES = "resources"

# data: native dataset (its tree's stamp, ``data.tree``) -> manifest -> preprocessed cache
TREE_STAMP = f"{RESOURCES}/trees/{{dataset}}.json"
MANIFEST = f"{RESULTS}/data/{{dataset}}/manifest.csv"
CACHE = f"{RESULTS}/cache/{{dataset}}"

# pretrained encoder weights, fetched once where Snakemake runs and read offline by the jobs:
# an HF_HOME-style folder (core.pretrained) shared by the studies of this working directory,
# and one record per (encoder, weights) saying what is there
PRETRAINED = f"{RESOURCES}/pretrained"
PRETRAINED_RECORD = f"{PRETRAINED}/{{encoder}}.{{weights}}.json"
# the model every independent run begins from (``build_model`` with the pretrained encoder,
# decoder and head from seed 0): the anchor of encoder soups of independent runs, one per
# study (the model spec is the study's, ``plan.study.model_spec``)
PRETRAINED_START = f"{RESULTS}/models/pretrained-{{encoder}}.{{weights}}.safetensors"
PRETRAINED_START_METADATA = f"{RESULTS}/models/pretrained-{{encoder}}.{{weights}}.json"

# training: a combination's shared initialisation, then its runs
MODELS = f"{RESULTS}/models/{{combo}}"
INIT = f"{MODELS}/init.safetensors"
INIT_METADATA = f"{MODELS}/init.json"
RUN = f"{MODELS}/{{recipe}}/seed{{seed}}"
# a run's AdamW state at a checkpoint (OPTIMIZER_STATES): kept only for continuations' bases
OPTIMIZER_FOLDER = "optimizer"
RUN_OPTIMIZER = f"{RUN}/{OPTIMIZER_FOLDER}"
#: The checkpoints whose optimiser state a run may publish in its optimizer folder, as
#: ``<checkpoint>.safetensors``: ``best`` (an FGG base), ``last`` (an SWA base).
OPTIMIZER_STATES: tuple[str, ...] = ("best", "last")


def optimizer_file(checkpoint: str) -> str:
    """The file, in a run's optimizer folder, of the optimiser state saved with ``checkpoint``."""
    if checkpoint not in OPTIMIZER_STATES:
        raise ValueError(f"no optimiser state is kept for {checkpoint!r}; {list(OPTIMIZER_STATES)}")
    return f"{checkpoint}.safetensors"


# hyperparameter search: one study per (combination, recipe), its trial jobs and its export
HPO_STUDY = f"{RESULTS}/hpo/{{combo}}/{{recipe}}"
HPO_TRIAL = f"{HPO_STUDY}/trials/{{index}}"
HPO_JOURNAL = f"{HPO_STUDY}/journal.log"
HPO_BEST_PARAMS = f"{HPO_STUDY}/best_params.yaml"
HPO_INGREDIENTS = f"{HPO_STUDY}/ingredients.json"
HPO_HISTORY = f"{HPO_STUDY}/history.png"

# merging: soups (weights + sidecar) and ensembles (a sidecar naming their members)
MERGED_DIR = f"{RESULTS}/merged/{{combo}}"
MERGED = f"{MERGED_DIR}/{{method}}.safetensors"
MERGED_METADATA = f"{MERGED_DIR}/{{method}}.json"
ENSEMBLE = f"{MERGED_DIR}/ensemble-{{name}}.json"

# evaluation: one file per (test set, model key), written by one job per model; the results
# kept for reuse by their fingerprint; the model table; the long metrics table
EVALUATION = f"{RESULTS}/eval/{{test}}/{{model}}.json"
EVALUATION_STORE = f"{RESULTS}/eval/store"
EVALUATED_MODELS = f"{RESULTS}/eval/models.json"
METRICS = f"{RESULTS}/metrics.csv"
METRICS_CONVENTIONS = f"{RESULTS}/metrics.conventions.json"
COSTS = f"{RESULTS}/costs.csv"
METRICS_CI = f"{RESULTS}/metrics_ci.csv"
COMPARISONS = f"{RESULTS}/comparisons.csv"
BOOTSTRAP = f"{RESULTS}/bootstrap.npz"  # evaluation.replicates: the resamples behind intervals

# report and analyses
REPORT = f"{RESULTS}/report"
QUALITATIVE = f"{REPORT}/qualitative/{{test}}.png"
ANNOTATION_STYLE = f"{RESULTS}/analysis/annotation_style"
CONNECTIVITY = f"{RESULTS}/analysis/connectivity/{{pair}}"
SIZE_CURVES = f"{REPORT}/size_curves/{{combo}}"
SUMMARY = f"{RESULTS}/summary.md"


def tree_stamp(dataset: str) -> str:
    return TREE_STAMP.format(dataset=dataset)


def pretrained_record(model: Mapping[str, Any]) -> str | None:
    """The fetch record of a ``model`` section's encoder weights; None without any."""
    weights = model.get("encoder_weights")
    return (
        None
        if weights is None
        else PRETRAINED_RECORD.format(encoder=model["encoder"], weights=weights)
    )


def pretrained_start(model: Mapping[str, Any]) -> str | None:
    """The pretrained start of a ``model`` section's encoder weights; None without any."""
    weights = model.get("encoder_weights")
    return (
        None
        if weights is None
        else PRETRAINED_START.format(encoder=model["encoder"], weights=weights)
    )


def manifest(dataset: str) -> str:
    return MANIFEST.format(dataset=dataset)


def cache(dataset: str) -> str:
    return CACHE.format(dataset=dataset)


def init(combo: str) -> str:
    """A combination's shared initialisation, the start of every run that averages."""
    return INIT.format(combo=combo)


def run(combo: str, recipe: str, seed: int) -> str:
    """A training run's folder: best/last checkpoints, snapshots, logs and curves."""
    return RUN.format(combo=combo, recipe=recipe, seed=seed)


def hpo_study(combo: str, recipe: str) -> str:
    return HPO_STUDY.format(combo=combo, recipe=recipe)


def hpo_trial(combo: str, recipe: str, index: int) -> str:
    return HPO_TRIAL.format(combo=combo, recipe=recipe, index=index)


def merged(combo: str, method: str) -> str:
    return MERGED.format(combo=combo, method=method)


def ensemble(combo: str, name: str) -> str:
    return ENSEMBLE.format(combo=combo, name=name)


def model_key(path: str) -> str:
    """A model's path without ``results/`` and suffix: names its evaluation files."""
    return path.removeprefix(f"{RESULTS}/").rsplit(".", 1)[0]


def evaluation(test: str, model: str) -> str:
    """The evaluation file of a model key on a test set."""
    return EVALUATION.format(test=test, model=model)


def connectivity(pair: str) -> str:
    return CONNECTIVITY.format(pair=pair)


def size_curves(combo: str) -> str:
    return SIZE_CURVES.format(combo=combo)


def written_folders(config: Mapping[str, Any]) -> list[str]:
    """The top folders the workflow writes into: results, logs and the generated demo data."""
    synthetic = config["synthetic"]
    return [RESULTS, LOGS, *([synthetic["out"]] if synthetic["enabled"] else [])]


BENCHMARKS = f"{RESULTS}/benchmarks"


def benchmark(name: str) -> str:
    """A job's Snakemake benchmark record, ``results/benchmarks/<name>.tsv`` (its wall time,
    CPU time and peak memory); ``name`` is ``<rule>/<its wildcards>``."""
    return f"{BENCHMARKS}/{name}.tsv"


# the records of the GPU jobs, by rule: what the cost tables read
WARMUP_BENCHMARK = benchmark("warmup/{combo}")
TRAIN_BENCHMARK = benchmark("train/{combo}/{recipe}/seed{seed}")
HPO_TRIAL_BENCHMARK = benchmark("hpo_trial/{combo}/{recipe}/trial{index}")
MERGE_BENCHMARK = benchmark("merge/{combo}/{method}")
ENSEMBLE_BENCHMARK = benchmark("ensemble/{combo}/{name}")
EVALUATE_BENCHMARK = benchmark("evaluate/{model}")
CONNECTIVITY_BENCHMARK = benchmark("connectivity/{pair}")
SIZE_CURVE_BENCHMARK = benchmark("size_curve/{combo}")
#: (model file template, its job's record template); a run's or a trial's files all lie in its
#: folder
_WRITERS = (
    (f"{RUN}/", TRAIN_BENCHMARK),
    (f"{HPO_TRIAL}/", HPO_TRIAL_BENCHMARK),
    (MERGED, MERGE_BENCHMARK),
    (ENSEMBLE, ENSEMBLE_BENCHMARK),
)


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    literal = [
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    ]
    return re.compile("".join(literal))


def writer_benchmark(model: str) -> str | None:
    """The benchmark record of the job that wrote ``model`` (a run's or an HPO trial's
    checkpoint, a soup, an ensemble file; relative to the working directory), or None for any
    other file."""
    for template, record in _WRITERS:
        found = _pattern(template).match(model)
        if found and (template.endswith("/") or found.end() == len(model)):
            return record.format(**found.groupdict())
    return None


def log(name: str) -> str:
    """A rule's log, ``logs/<name>.log``; ``name`` may hold wildcards."""
    return f"{LOGS}/{name}.log"
