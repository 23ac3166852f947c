"""A study's export, from its trials' records (the declared inputs), not the storage:
best parameters as YAML, the ingredients (checkpoints of COMPLETE trials) and the figures."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml

from lesionsoup.core.atomic import atomic_path, atomic_write_bytes, atomic_write_json
from lesionsoup.hpo.trials import FINAL_STATES, JOB_ATTR


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

    from lesionsoup.core.figures import plt, save_figure

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
