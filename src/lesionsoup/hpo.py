"""Hyperparameter search with Optuna: one study per (combination, tuned recipe).

Each trial is its own workflow job, identified by a job index. Job ``i`` is
idempotent: if the study already holds a finished trial tagged with ``i`` it
returns that trial; if it finds its own trial still RUNNING (the job was
killed, preempted or crashed), it continues that trial: same number, same
parameters, and the run folder keyed by the trial number, so the training
resumes from its saved state instead of starting a new trial and discarding
the work done. Only outcomes of the hyperparameters (pruned, diverged) end a
trial early; an interruption never tells the study anything. Trials of many
jobs share one storage: a journal file (safe for several processes and for
several nodes on a shared file system, through its lock file) or any RDB URL.

A study's name carries a digest of everything that defines it (search space,
trial settings, sampler, pruner, model, shared initialisation), so a changed
search space starts a new study and never mixes trials of two spaces, while a
raised ``n_trials`` only adds jobs. The export reads the trials' records (the
declared inputs), not the storage: best parameters as YAML, the ingredients
(checkpoints of COMPLETE trials) and the figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from lesionsoup import study as study_config
from lesionsoup.atomic import atomic_path, atomic_write_bytes, atomic_write_json
from lesionsoup.combos import expand_combinations
from lesionsoup.specs import TrainSettings

log = logging.getLogger(__name__)

JOB_ATTR = "job_index"
FAILURE_ATTR = "failure"
TUNABLE = frozenset(field.name for field in dataclasses.fields(TrainSettings)) - {"seed"}
FINAL_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


class StorageError(ConnectionError):
    """The study storage cannot be opened; the message names it."""


class TrialFailed(RuntimeError):
    """An outcome of the hyperparameters (a diverging loss): the trial fails, the job succeeds."""


# --- config -> jobs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyPlan:
    combo: str
    recipe: str

    @property
    def directory(self) -> str:
        return f"results/hpo/{self.combo}/{self.recipe}"

    def trial_output(self, index: int) -> str:
        """Job ``index``'s folder: trial.json, and best.safetensors for a complete trial."""
        return f"{self.directory}/trials/{index}"


def _section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config.get("hpo") or {}


def plans(config: Mapping[str, Any]) -> list[StudyPlan]:
    """Every study the config asks for: tuned recipes x tuned combinations."""
    section = _section(config)
    recipes = section.get("recipes", [])
    unknown = sorted(set(recipes) - set(config["training"]["recipes"]))
    if unknown:
        raise ValueError(f"hpo.recipes names unknown recipes {unknown}")
    combos = study_config.combinations(config)
    if section.get("combinations") is not None:
        combos = expand_combinations(section["combinations"], sorted(config["datasets"]))
    return [StudyPlan(combo, recipe) for combo in combos for recipe in recipes]


def is_tuned(config: Mapping[str, Any], combo: str, recipe: str) -> bool:
    return StudyPlan(combo, recipe) in plans(config)


def trial_outputs(config: Mapping[str, Any]) -> list[str]:
    """The trial jobs' outputs; raising ``n_trials`` only appends to this list."""
    return [
        folder
        for plan in plans(config)
        for folder in trial_folders(config, plan.combo, plan.recipe)
    ]


def trial_folders(config: Mapping[str, Any], combo: str, recipe: str) -> list[str]:
    """The trial jobs of one study (the export's input)."""
    plan = StudyPlan(combo, recipe)
    return [plan.trial_output(index) for index in range(_section(config)["n_trials"])]


def export_outputs(config: Mapping[str, Any]) -> list[str]:
    return [
        f"{plan.directory}/{name}"
        for plan in plans(config)
        for name in ("best_params.yaml", "ingredients.json", "history.png")
    ]


def storage_location(config: Mapping[str, Any], combo: str, recipe: str) -> str:
    """The configured RDB URL or journal file, else a journal file next to the study's outputs."""
    return _section(config).get("storage") or f"{StudyPlan(combo, recipe).directory}/journal.log"


def definition(config: Mapping[str, Any], recipe: str) -> dict[str, Any]:
    """Everything that defines a study of ``recipe`` (besides its initialisation), as JSON."""
    section = _section(config)
    base = study_config.recipe_settings(config, recipe, section["seed"])
    settings = TrainSettings.from_dict({**base, **section["trial"]}).as_dict()
    space = dict(section["space"])
    distributions(space)
    return {
        "space": space,
        "settings": settings,
        "sampler": {"seed": section["seed"], "startup_trials": section["startup_trials"]},
        "pruner": dict(section["pruner"]),
        "model": study_config.model_spec(config).as_dict(),
    }


def study_name(combo: str, recipe: str, definition: Mapping[str, Any], init_id: str) -> str:
    text = json.dumps({"definition": definition, "init_id": init_id}, sort_keys=True)
    return f"{combo}.{recipe}.{hashlib.sha256(text.encode()).hexdigest()[:12]}"


# --- search space -------------------------------------------------------------------------------


def distributions(space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Optuna distributions of a config search space; unknown settings are refused."""
    unknown = sorted(set(space) - TUNABLE)
    if unknown:
        raise ValueError(f"hpo.space: {unknown} are not training settings ({sorted(TUNABLE)})")
    result = {}
    for name, spec in space.items():
        kind = spec["type"]
        if kind == "categorical":
            result[name] = optuna.distributions.CategoricalDistribution(list(spec["choices"]))
        elif kind in ("float", "int"):
            cls = (
                optuna.distributions.FloatDistribution
                if kind == "float"
                else optuna.distributions.IntDistribution
            )
            options = {key: spec[key] for key in ("log", "step") if key in spec}
            try:
                result[name] = cls(spec["low"], spec["high"], **options)
            except ValueError as error:
                raise ValueError(f"hpo.space.{name}: {error}") from error
        else:
            raise ValueError(f"hpo.space.{name}: unknown type {kind!r}")
    return result


def suggest(trial: optuna.Trial, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The trial's values for every parameter of the space."""
    values: dict[str, Any] = {}
    for name, dist in distributions(space).items():
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, dist.choices)
            continue
        suggest_number = (
            trial.suggest_int
            if isinstance(dist, optuna.distributions.IntDistribution)
            else trial.suggest_float
        )
        values[name] = suggest_number(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return values


# --- storage and study --------------------------------------------------------------------------


def _redacted(location: str) -> str:
    if "://" not in location or "@" not in location:
        return location
    scheme, rest = location.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"


def open_storage(location: str) -> optuna.storages.BaseStorage:
    """An RDB storage for a URL (``scheme://...``), else a journal file; errors name it."""
    if "://" in location:
        try:
            return optuna.storages.RDBStorage(location)
        except Exception as error:
            raise StorageError(
                f"HPO storage {_redacted(location)} is unreachable: {type(error).__name__}: {error}"
            ) from error
    path = Path(location)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
    except OSError as error:
        raise StorageError(f"HPO storage {path}: cannot open the journal file: {error}") from error
    return optuna.storages.JournalStorage(backend)


def _pruner(spec: Mapping[str, Any], steps: int) -> optuna.pruners.BasePruner:
    if spec["kind"] == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec["startup_trials"], n_warmup_steps=spec["warmup_steps"]
        )
    if spec["kind"] == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec["min_resource"],
            max_resource=steps,
            reduction_factor=spec["reduction_factor"],
        )
    return optuna.pruners.NopPruner()


def load_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    definition: Mapping[str, Any],
    job_index: int,
) -> optuna.Study:
    """The study (created by whichever job comes first), with a TPE sampler seeded per job."""
    sampler = optuna.samplers.TPESampler(
        seed=definition["sampler"]["seed"] * 100_003 + job_index,
        n_startup_trials=definition["sampler"]["startup_trials"],
        constant_liar=True,
    )
    pruner = _pruner(definition["pruner"], definition["settings"]["steps"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.create_study(
            storage=storage,
            study_name=name,
            sampler=sampler,
            pruner=pruner,
            direction="maximize",
            load_if_exists=True,
        )


def _is_final(trial: optuna.trial.FrozenTrial) -> bool:
    state = trial.state
    return state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) or (
        state == optuna.trial.TrialState.FAIL and FAILURE_ATTR in trial.user_attrs
    )


Objective = Callable[[optuna.Trial], float]


def _frozen(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _continued_or_new(
    study: optuna.Study, job_index: int, own: Sequence[optuna.trial.FrozenTrial]
) -> optuna.Trial:
    """The job's interrupted (still RUNNING) trial reopened, else a new trial tagged with the job.

    A reopened trial's suggestions return the values it already holds, so the
    objective sees the same parameters and trains in the same run folder.
    """
    running = [t for t in own if t.state == optuna.trial.TrialState.RUNNING]
    if not running:
        trial = study.ask()
        trial.set_user_attr(JOB_ATTR, job_index)
        return trial
    interrupted = running[-1]
    log.info(
        "job %d: continuing its interrupted trial %d, params %s",
        *(job_index, interrupted.number, interrupted.params),
    )
    return optuna.trial.Trial(study, interrupted._trial_id)


def run_trial(
    study: optuna.Study, job_index: int, objective: Objective
) -> optuna.trial.FrozenTrial:
    """Job ``job_index``'s trial: its finished one, else its interrupted one or a new one, told.

    ``objective`` returns the validation score, or raises ``optuna.TrialPruned``
    or ``TrialFailed``: outcomes of the hyperparameters, which end the trial and
    the job successfully. Any other exception (preemption, Ctrl-C, out of
    memory, a bug) propagates and leaves the trial RUNNING: it says nothing
    about the hyperparameters, and the job's rerun continues the trial.
    """
    own = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(JOB_ATTR) == job_index]
    finished = [t for t in own if _is_final(t)]
    if finished:
        log.info("job %d: trial %d already %s", job_index, finished[-1].number, finished[-1].state)
        return finished[-1]
    trial = _continued_or_new(study, job_index, own)
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    except TrialFailed as error:
        trial.set_user_attr(FAILURE_ATTR, str(error))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, value)
    return _frozen(study, trial.number)


def report(trial: optuna.Trial, step: int, score: float) -> None:
    """Report a finite validation score at ``step``; raise TrialPruned when the pruner says so.

    A continued trial already holds the steps it reported before its
    interruption; one revalidated by a run that resumed from an earlier state
    is not reported twice (Optuna would keep the first value and warn).
    """
    if math.isfinite(score) and step not in _frozen(trial.study, trial.number).intermediate_values:
        trial.report(score, step)
    if trial.should_prune():
        raise optuna.TrialPruned(f"trial {trial.number} pruned at step {step}")


# --- trial jobs ---------------------------------------------------------------------------------


def trial_record(
    trial: optuna.trial.FrozenTrial, study_name: str, checkpoint: str | None
) -> dict[str, Any]:
    """What the export needs of one trial (JSON)."""
    return {
        "study": study_name,
        "job_index": trial.user_attrs[JOB_ATTR],
        "number": trial.number,
        "state": FINAL_STATES[trial.state.name],
        "value": trial.value,
        "params": trial.params,
        "distributions": {
            name: optuna.distributions.distribution_to_json(distribution)
            for name, distribution in trial.distributions.items()
        },
        "intermediate_values": {str(k): v for k, v in trial.intermediate_values.items()},
        "failure": trial.user_attrs.get(FAILURE_ATTR),
        "checkpoint": checkpoint,
    }


def read_record(folder: Path) -> dict[str, Any]:
    """The trial.json of a trial job's folder."""
    path = Path(folder) / "trial.json"
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable trial record ({error})") from error
    missing = {"study", "job_index", "number", "state", "params"} - set(record)
    if missing:
        raise ValueError(f"{path}: trial record lacks {sorted(missing)}")
    return record


def training_objective(
    runs: Path,
    caches: Mapping[str, Any],
    definition: Mapping[str, Any],
    init: Path,
    threads: int = 1,
    study_name: str = "",
) -> Objective:
    """Train one run per trial from the shared initialisation; its best validation score.

    The run folder is keyed by the trial number, so a continued trial resumes
    its own run from the saved training state.
    """
    from lesionsoup.checkpoint import load_metadata
    from lesionsoup.specs import ModelSpec
    from lesionsoup.train import RunPaths, train_run

    spec = ModelSpec.from_dict(definition["model"])

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, definition["space"])
        settings = TrainSettings.from_dict({**definition["settings"], **params})
        run = RunPaths(runs / f"trial{trial.number:04d}")
        try:
            train_run(
                run.root,
                caches,
                spec,
                settings,
                init=init,
                threads=threads,
                progress_bar=False,
                extra_metadata={"hpo": {"study": study_name, "trial": trial.number}},
                on_validation=lambda step, scores: report(trial, step, scores["score"]),
            )
        except FloatingPointError as error:
            raise TrialFailed(str(error)) from error
        score = load_metadata(run.best).get("validation", {}).get("score", math.nan)
        if not math.isfinite(score):
            raise TrialFailed(f"{run.root}: no finite validation score")
        return float(score)

    return objective


def publish_trial(
    trial: optuna.trial.FrozenTrial, study_name: str, runs: Path, out: Path
) -> dict[str, Any]:
    """Write ``out/trial.json`` and, for a COMPLETE trial, its best checkpoint as an ingredient
    (the run's weights file, linked: stored once)."""
    from lesionsoup.checkpoint import load_metadata, relabel_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    checkpoint = None
    if trial.state == optuna.trial.TrialState.COMPLETE:
        best = runs / f"trial{trial.number:04d}" / "best.safetensors"
        checkpoint = str(out / "best.safetensors")
        hpo = {"study": study_name, "trial": trial.number, "job_index": trial.user_attrs[JOB_ATTR]}
        outcome = {"hpo": hpo, "trial_state": "complete", "trial_value": trial.value}
        relabel_checkpoint(best, Path(checkpoint), {**load_metadata(best), **outcome})
    record = trial_record(trial, study_name, checkpoint)
    atomic_write_json(out / "trial.json", record)
    return record


# --- export -------------------------------------------------------------------------------------


def records_study(records: Sequence[Mapping[str, Any]]) -> optuna.Study:
    """An in-memory study holding the records' trials (for figures and importances)."""
    names = {record["study"] for record in records}
    if len(names) > 1:
        raise ValueError(f"trial records come from several studies: {sorted(names)}")
    study = optuna.create_study(direction="maximize", study_name=next(iter(names), "empty"))
    states = {value: getattr(optuna.trial.TrialState, key) for key, value in FINAL_STATES.items()}
    for record in sorted(records, key=lambda r: r["number"]):
        state = states[record["state"]]
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=record["value"] if state == optuna.trial.TrialState.COMPLETE else None,
                params=record["params"],
                distributions={
                    name: optuna.distributions.json_to_distribution(text)
                    for name, text in record["distributions"].items()
                },
                intermediate_values={int(k): v for k, v in record["intermediate_values"].items()},
                user_attrs={JOB_ATTR: record["job_index"]},
            )
        )
    return study


def best_record(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    complete = [record for record in records if record["state"] == "complete"]
    if not complete:
        states = sorted({record["state"] for record in records})
        raise ValueError(f"no trial of the study completed (states: {states}); nothing to export")
    return max(complete, key=lambda record: (record["value"], -record["number"]))


def export_study(records: Sequence[Mapping[str, Any]], out: Path) -> dict[str, Any]:
    """best_params.yaml, ingredients.json, trials.csv and the figures, into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    best = best_record(records)
    summary = {
        "study": best["study"],
        "trial": best["number"],
        "job_index": best["job_index"],
        "value": best["value"],
        "params": best["params"],
    }
    atomic_write_bytes(out / "best_params.yaml", yaml.safe_dump(summary, sort_keys=True).encode())
    ingredients = [
        record["checkpoint"]
        for record in sorted(records, key=lambda r: r["job_index"])
        if record["state"] == "complete"
    ]
    atomic_write_json(
        out / "ingredients.json", {"study": best["study"], "ingredients": ingredients}
    )
    study = records_study(records)
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    with atomic_path(out / "trials.csv") as tmp:
        frame.to_csv(tmp, index=False)
    plot_study(study, out)
    return summary


def plot_study(study: optuna.Study, out: Path) -> None:
    """history.png, importances.png, parallel.png; a figure says why when it cannot be drawn."""
    from optuna.visualization import matplotlib as optuna_plots

    from lesionsoup.report.style import plt, save_figure

    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    figures = {
        "history.png": (1, lambda: optuna_plots.plot_optimization_history(study)),
        "importances.png": (
            2,
            lambda: optuna_plots.plot_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            ),
        ),
        "parallel.png": (2, lambda: optuna_plots.plot_parallel_coordinate(study)),
    }
    for name, (needed, draw) in figures.items():
        reason = None
        if len(complete) < needed:
            reason = f"needs {needed} complete trials, the study has {len(complete)}"
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    axes = draw()
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            except (ValueError, RuntimeError, ZeroDivisionError) as error:
                reason = str(error)
        if reason is not None:
            figure, axes = plt.subplots(figsize=(6, 2))
            axes.axis("off")
            axes.text(0.5, 0.5, f"{name[:-4]}: {reason}", ha="center", va="center", wrap=True)
        save_figure(figure, out / name)


# --- final training -----------------------------------------------------------------------------


def read_best_params(path: Path) -> dict[str, Any]:
    try:
        summary = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the best hyperparameters ({error})") from error
    if not isinstance(summary, dict) or not isinstance(summary.get("params"), dict):
        raise ValueError(f"{path}: expected a mapping with a `params` mapping")
    unknown = sorted(set(summary["params"]) - TUNABLE)
    if unknown:
        raise ValueError(f"{path}: {unknown} are not training settings")
    return summary["params"]


def with_best_params(settings: Mapping[str, Any], best_params_path: Path | None) -> dict[str, Any]:
    """A run's settings, overridden by its study's best parameters when it was tuned."""
    if best_params_path is None:
        return dict(settings)
    return TrainSettings.from_dict({**settings, **read_best_params(best_params_path)}).as_dict()
