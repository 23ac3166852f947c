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

A study is named and defined by ``lesionsoup.plan.hpo``; its export reads the
trials' records (``lesionsoup.hpo.export``).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from lesionsoup.core.atomic import atomic_write_json
from lesionsoup.core.specs import TrainSettings
from lesionsoup.hpo.space import suggest
from lesionsoup.training.progress import LOG_EVERY

log = logging.getLogger(__name__)

JOB_ATTR = "job_index"
FAILURE_ATTR = "failure"
FINAL_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


class TrialFailed(RuntimeError):
    """An outcome of the hyperparameters (a diverging loss): the trial fails, the job succeeds."""


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
    precision: str = "auto",
    log_every: int = LOG_EVERY,
    pretrained_cache: Path | None = None,
) -> Objective:
    """Train one run per trial from the shared initialisation; its best validation score.

    ``precision``, ``log_every`` and ``pretrained_cache`` are passed to ``train_run``.

    The run folder is keyed by the trial number, so a continued trial resumes
    its own run from the saved training state.
    """
    from lesionsoup.core.checkpoint import load_metadata
    from lesionsoup.core.specs import ModelSpec
    from lesionsoup.training.run import RunOptions, train_run
    from lesionsoup.training.run_folder import RunPaths
    from lesionsoup.training.run_lock import run_lock

    spec = ModelSpec.from_dict(definition["model"])

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, definition["space"])
        settings = TrainSettings.from_dict({**definition["settings"], **params})
        options = RunOptions(
            init=init,
            pretrained_cache=pretrained_cache,
            threads=threads,
            precision=precision,
            progress_bar=False,
            log_every=log_every,
            extra_metadata={"hpo": {"study": study_name, "trial": trial.number}},
            on_validation=lambda step, scores: report(trial, step, scores["score"]),
        )
        run = RunPaths(runs / f"trial{trial.number:04d}")
        with run_lock(run.root):  # its clean-up too, should a second job continue it
            try:
                train_run(run.root, caches, spec, settings, options)
            except optuna.TrialPruned:
                shutil.rmtree(run.work, ignore_errors=True)  # a pruned trial never resumes
                raise
            except FloatingPointError as error:
                shutil.rmtree(run.work, ignore_errors=True)
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
    from lesionsoup.core.checkpoint import load_metadata, relabel_checkpoint

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
