"""Subcommands of the hyperparameter search: hpo-trial, hpo-export."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from lesionsoup.commands.arguments import (
    Subcommands,
    add_cache_arguments,
    add_training_run_arguments,
    json_object,
    open_caches,
    run_options,
)

log = logging.getLogger("lesionsoup")


def _trial(args: argparse.Namespace) -> None:
    with open_caches(args.cache, args.stage_caches) as caches:
        _trial_on(args, caches)


def _trial_on(args: argparse.Namespace, caches: dict[str, Any]) -> None:
    """``hpo-trial`` on the opened caches."""
    from lesionsoup.core.checkpoint import INDEPENDENT, load_metadata
    from lesionsoup.hpo import storage as hpo_storage
    from lesionsoup.hpo import trials as hpo
    from lesionsoup.plan import hpo as hpo_plan

    init_id = INDEPENDENT if args.init is None else load_metadata(args.init)["init_id"]
    fingerprints = {dataset: cache.fingerprint for dataset, cache in caches.items()}
    name = hpo_plan.study_name(args.combo, args.recipe, args.definition, init_id, fingerprints)
    study = hpo_storage.load_study(
        hpo_storage.open_storage(args.storage), name, args.definition, args.job_index
    )
    runs = args.output.parent.parent / "runs" / name
    objective = hpo.training_objective(
        runs,
        caches,
        args.definition,
        args.init,
        study_name=name,
        options=run_options(args),
    )
    trial = hpo.run_trial(study, args.job_index, objective)
    record = hpo.publish_trial(trial, name, runs, args.output)
    log.info(
        "study %s, job %d: trial %d %s, value %s",
        *(name, args.job_index, record["number"], record["state"], record["value"]),
    )


def _export(args: argparse.Namespace) -> None:
    from lesionsoup.hpo import export as hpo_export
    from lesionsoup.hpo import trials as hpo

    summary = hpo_export.export_study(
        [hpo.read_record(folder) for folder in args.trials], args.output
    )
    log.info(
        "study %s: best trial %d, value %.4f, params %s",
        *(summary["study"], summary["trial"], summary["value"], summary["params"]),
    )


def _add_trial(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "hpo-trial",
        help="run (or re-export) one trial job of a hyperparameter study",
        description="Ask the study for a trial, train it from the shared initialisation while "
        "reporting the validation score (pruning on it), and tell the result. Job i is "
        "idempotent: a study holding job i's finished trial only re-exports it; job i's "
        "interrupted trial (killed, preempted, crashed: left running in the study) is "
        "continued with its parameters, its training resuming from the saved state. Writes "
        "OUTPUT/trial.json and, for a complete trial, OUTPUT/best.safetensors; runs live in "
        "OUTPUT/../../runs/STUDY.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="trial folder")
    parser.add_argument(
        "--job-index",
        type=int,
        required=True,
        help="this job's trial slot in the study (0, 1, ...)",
    )
    parser.add_argument("--combo", required=True, help="combination name (names the study)")
    parser.add_argument("--recipe", required=True, help="tuned recipe (names the study)")
    parser.add_argument("--storage", required=True, help="RDB URL or journal file")
    parser.add_argument(
        "--definition", type=json_object, required=True, help="study definition (JSON)"
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="shared initialisation; without it each trial starts from the pretrained encoder",
    )
    add_cache_arguments(parser, "a dataset cache (repeatable)")
    add_training_run_arguments(parser)
    parser.set_defaults(handler=_trial)


def _add_export(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "hpo-export",
        help="best parameters, ingredients, history and importance figures of a study",
        description="From the trial records: best_params.yaml (read by the final training), "
        "ingredients.json (checkpoints of complete trials), trials.csv, history.png, "
        "importances.png and parallel.png.",
    )
    parser.add_argument("trials", type=Path, nargs="+", help="trial folders (with trial.json)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.set_defaults(handler=_export)


REGISTER = (_add_trial, _add_export)
