"""Hyperparameter search: parallel trial jobs, interrupted trials, reruns, export, storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from snakemake.utils import validate
from support import REPO, TESTS

from lesionsoup.core.preemption import Preempted
from lesionsoup.core.search_space import TUNABLE
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.hpo import export as hpo_export
from lesionsoup.hpo import space as hpo_space
from lesionsoup.hpo import storage as hpo_storage
from lesionsoup.hpo import trials as hpo
from lesionsoup.plan import hpo as hpo_plan
from lesionsoup.plan import study as study_config

HPO_SCHEMA = str(REPO / "workflow" / "schemas" / "hpo.schema.yaml")
SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "augmentation": {"type": "categorical", "choices": ["none", "light"]},
}
optuna.logging.set_verbosity(optuna.logging.WARNING)


def tiny_config(**hpo_section) -> dict:
    config = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    section = {
        "recipes": ["base"],
        "n_trials": 3,
        "startup_trials": 1,
        "trial": {"steps": 4, "validate_every": 2, "bins": 2060},
        "space": SPACE,
        **hpo_section,
    }
    validate(section, HPO_SCHEMA)
    return {**config, "hpo": section}


def journal_study(path: Path, job_index: int = 0, name: str = "s") -> optuna.Study:
    definition = hpo_plan.definition(tiny_config(), "base")
    return hpo_storage.load_study(hpo_storage.open_storage(str(path)), name, definition, job_index)


def quick_objective(trial: optuna.Trial) -> float:
    params = hpo_space.suggest(trial, SPACE)
    for step in (1, 2):
        trial.report(params["lr"] * step, step)
    return params["lr"]


def diverged(trial: optuna.Trial) -> float:
    raise hpo.TrialFailed("loss is nan")


# --- config -> jobs ------------------------------------------------------------------------------


def test_schema_fills_defaults_and_refuses_unknown_settings():
    section: dict = {"recipes": ["base"]}
    validate(section, HPO_SCHEMA)
    assert section["pruner"]["kind"] == "median" and section["n_trials"] >= 1
    with pytest.raises(Exception, match="learning_rate"):
        validate({"space": {"learning_rate": SPACE["lr"]}}, HPO_SCHEMA)
    with pytest.raises(ValueError, match="learning_rate"):
        hpo_space.distributions({"learning_rate": SPACE["lr"]})


def test_raising_n_trials_adds_only_new_trial_jobs():
    three = hpo_plan.trial_outputs(tiny_config(n_trials=3))
    five = hpo_plan.trial_outputs(tiny_config(n_trials=5))
    assert len(three) == 3 * 2  # combinations IDRID and DDR+IDRID, recipe base
    assert set(three) < set(five) and len(set(five) - set(three)) == 2 * 2
    assert hpo_plan.definition(tiny_config(n_trials=3), "base") == hpo_plan.definition(
        tiny_config(n_trials=5), "base"
    )


def test_only_configured_combinations_and_recipes_are_tuned():
    config = tiny_config(combinations=["IDRID"])
    assert hpo_plan.plans(config) == [hpo_plan.StudyPlan("IDRID", "base")]
    assert hpo_plan.is_tuned(config, "IDRID", "base") and not hpo_plan.is_tuned(
        config, "DDR+IDRID", "base"
    )
    with pytest.raises(ValueError, match="nope"):
        hpo_plan.plans(tiny_config(recipes=["nope"]))


def test_search_space_change_starts_a_new_study():
    base = hpo_plan.definition(tiny_config(), "base")
    wider = hpo_plan.definition(
        tiny_config(space={**SPACE, "lr": {**SPACE["lr"], "high": 0.1}}), "base"
    )
    caches = {"IDRID": "cache1"}
    name = hpo_plan.study_name("IDRID", "base", base, "init1", caches)
    assert name == hpo_plan.study_name("IDRID", "base", dict(base), "init1", dict(caches))
    assert name.startswith("IDRID.base.")
    assert hpo_plan.study_name("IDRID", "base", wider, "init1", caches) != name
    assert hpo_plan.study_name("IDRID", "base", base, "init2", caches) != name
    assert hpo_plan.study_name("DDR", "base", base, "init1", caches) != name
    # a rebuilt cache (a redrawn mask) starts a new study, whatever the initialisation
    assert hpo_plan.study_name("IDRID", "base", base, "init1", {"IDRID": "cache2"}) != name


# --- trials ------------------------------------------------------------------------------------


def test_finished_job_is_reused_not_rerun(tmp_path):
    study = journal_study(tmp_path / "journal.log")
    calls = []

    def objective(trial):
        calls.append(trial.number)
        return quick_objective(trial)

    first = hpo.run_trial(study, 0, objective)
    again = hpo.run_trial(journal_study(tmp_path / "journal.log"), 0, objective)
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert again.number == first.number and calls == [first.number]


def test_pruned_and_diverged_trials_are_final_and_never_ingredients(tmp_path):
    study = journal_study(tmp_path / "journal.log")

    def pruned(trial):
        trial.report(0.1, 1)
        raise optuna.TrialPruned()

    checkpoint = "trials/0/best.safetensors"
    records = [
        hpo.trial_record(hpo.run_trial(study, 0, quick_objective), "s", checkpoint),
        hpo.trial_record(hpo.run_trial(study, 1, pruned), "s", None),
        hpo.trial_record(hpo.run_trial(study, 2, diverged), "s", None),
    ]
    assert [r["state"] for r in records] == ["complete", "pruned", "failed"]
    assert records[2]["failure"] == "loss is nan"
    assert hpo.run_trial(study, 1, quick_objective).state == optuna.trial.TrialState.PRUNED
    assert hpo.run_trial(study, 2, quick_objective).state == optuna.trial.TrialState.FAIL
    hpo_export.export_study(records, tmp_path / "out")
    ingredients = json.loads((tmp_path / "out" / "ingredients.json").read_text())
    assert ingredients["ingredients"] == [checkpoint]


@pytest.mark.parametrize(
    "interruption",
    [
        Preempted("SIGTERM at step 1; state saved"),
        KeyboardInterrupt(),
        RuntimeError("CUDA out of memory"),
        OSError("disk full"),
    ],
    ids=type,
)
def test_an_interruption_leaves_the_trial_running_and_the_rerun_continues_it(
    tmp_path, interruption
):
    seen = []

    def objective(trial):
        seen.append((trial.number, hpo_space.suggest(trial, SPACE)))
        for step in (1, 2):
            hpo.report(trial, step, 0.1 * step * len(seen))
            if len(seen) == 1:
                raise interruption
        return 0.5

    with pytest.raises(type(interruption)):
        hpo.run_trial(journal_study(tmp_path / "journal.log"), 0, objective)
    assert journal_study(tmp_path / "journal.log").trials[0].state.name == "RUNNING"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when a step is reported twice
        rerun = hpo.run_trial(journal_study(tmp_path / "journal.log"), 0, objective)
    assert [number for number, _ in seen] == [0, 0] and seen[0][1] == seen[1][1]
    assert rerun.state.name == "COMPLETE" and rerun.params == seen[0][1]
    assert rerun.intermediate_values == {1: 0.1, 2: 0.4}  # step 1 kept from the first attempt
    assert len(journal_study(tmp_path / "journal.log").trials) == 1


WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path[:0] = {folders!r}
    from lesionsoup.hpo import export as hpo_export
    from lesionsoup.hpo import space as hpo_space
    from lesionsoup.hpo import storage as hpo_storage
    from lesionsoup.hpo import trials as hpo
    from lesionsoup.plan import hpo as hpo_plan
    from test_hpo import SPACE, journal_study, quick_objective
    journal, mode, *indexes = sys.argv[1:]

    def hang(trial):
        hpo.report(trial, 1, hpo_space.suggest(trial, {{"lr": SPACE["lr"]}})["lr"])
        Path(journal + ".started").touch()
        time.sleep(120)

    for index in indexes:
        study = journal_study(Path(journal), int(index))
        hpo.run_trial(study, int(index), hang if mode == "hang" else quick_objective)
    """
)


def start_worker(tmp_path: Path, mode: str, *indexes: int) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    if not script.exists():  # rewriting it would truncate it under a worker that is reading it
        folders = [str(Path(__file__).parent), str(TESTS)]  # test_hpo's and support's
        script.write_text(WORKER.format(folders=folders))
    command = [sys.executable, str(script), str(tmp_path / "journal.log"), mode]
    return subprocess.Popen([*command, *map(str, indexes)], stderr=subprocess.PIPE, text=True)


def test_parallel_trial_jobs_all_land_in_one_journal(tmp_path):
    workers = [start_worker(tmp_path, "quick", *range(k, 16, 4)) for k in range(4)]
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors
    trials = journal_study(tmp_path / "journal.log").trials
    assert len(trials) == 16
    assert sorted(t.user_attrs[hpo.JOB_ATTR] for t in trials) == list(range(16))
    assert sorted(t.number for t in trials) == list(range(16))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.params["lr"] for t in trials}) == 16  # per-job sampler seeds: no twins


def test_killed_trial_is_continued_by_its_job_while_other_jobs_ask_new_ones(tmp_path):
    worker = start_worker(tmp_path, "hang", 0)
    started = tmp_path / "journal.log.started"
    deadline = time.monotonic() + 60
    while not started.exists():
        assert worker.poll() is None and time.monotonic() < deadline, worker.stderr.read()
        time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    killed = journal_study(tmp_path / "journal.log").trials[0]
    assert killed.state.name == "RUNNING"
    other = hpo.run_trial(journal_study(tmp_path / "journal.log", 1), 1, quick_objective)

    def continued(trial):
        params = hpo_space.suggest(trial, SPACE)
        for step in (1, 2):
            hpo.report(trial, step, 0.25 * step)
        return params["lr"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when a step is reported twice
        restarted = hpo.run_trial(journal_study(tmp_path / "journal.log"), 0, continued)
    states = {t.number: t.state.name for t in journal_study(tmp_path / "journal.log").trials}
    assert states == {0: "COMPLETE", 1: "COMPLETE"} and other.number == 1
    assert restarted.number == 0 and restarted.params["lr"] == killed.params["lr"]
    assert restarted.intermediate_values == {1: killed.params["lr"], 2: 0.5}
    assert restarted.user_attrs[hpo.JOB_ATTR] == 0


# --- storage -----------------------------------------------------------------------------------


def test_unreachable_rdb_storage_is_named():
    url = "postgresql://nobody@127.0.0.1:1/x"
    with pytest.raises(hpo_storage.StorageError, match="postgresql://nobody@127.0.0.1:1/x"):
        hpo_storage.open_storage(url)
    with pytest.raises(
        hpo_storage.StorageError, match=r"postgresql://nobody:\*\*\*@127.0.0.1:1/x"
    ) as e:
        hpo_storage.open_storage("postgresql://nobody:secret@127.0.0.1:1/x")
    assert "secret" not in str(e.value)


def test_unwritable_journal_is_named(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(hpo_storage.StorageError, match="not-a-folder/journal.log"):
        hpo_storage.open_storage(str(blocker / "journal.log"))


def test_default_storage_is_a_journal_per_study_and_a_url_is_kept():
    assert hpo_plan.storage_location(tiny_config(), "IDRID", "base").endswith(
        "hpo/IDRID/base/journal.log"
    )
    url = "sqlite:///studies.db"
    assert hpo_plan.storage_location(tiny_config(storage=url), "IDRID", "base") == url


# --- real training, export, final training -----------------------------------------------------


def shared_init(tmp_path: Path, toy_caches: dict[str, Path]) -> tuple[dict[str, Cache], Path]:
    """The toy caches opened, and a one-step warm-up published as the shared initialisation."""
    from conftest import quiet_options

    from lesionsoup.training.run import train_run
    from lesionsoup.training.run_folder import publish_init

    caches = {name: Cache(path) for name, path in toy_caches.items()}
    spec = ModelSpec.from_dict(tiny_config()["model"])
    settings = TrainSettings(steps=1, batch_size=2, patch_size=32, freeze_encoder=True, bins=2060)
    train_run(tmp_path / "warmup", caches, spec, settings, quiet_options())
    publish_init(tmp_path / "warmup", tmp_path / "init.safetensors")
    return caches, tmp_path / "init.safetensors"


@pytest.fixture
def init(tmp_path, toy_caches):
    return shared_init(tmp_path, toy_caches)


def test_trained_trials_export_best_params_that_the_final_training_reads(tmp_path, init):
    from lesionsoup.core.checkpoint import load_metadata

    caches, init_path = init
    config = tiny_config(pruner={"kind": "none"})
    definition = hpo_plan.definition(config, "base")
    fingerprints = {dataset: cache.fingerprint for dataset, cache in caches.items()}
    init_id = load_metadata(init_path)["init_id"]
    name = hpo_plan.study_name("AAA+BBB", "base", definition, init_id, fingerprints)
    runs = tmp_path / "runs" / name
    records = []
    for index in range(2):
        study = hpo_storage.load_study(
            hpo_storage.open_storage(str(tmp_path / "j.log")), name, definition, index
        )
        objective = hpo.training_objective(runs, caches, definition, init_path, study_name=name)
        trial = hpo.run_trial(study, index, objective)
        records.append(hpo.publish_trial(trial, name, runs, tmp_path / "trials" / str(index)))
    assert [record["state"] for record in records] == ["complete", "complete"]
    ingredient = load_metadata(Path(records[0]["checkpoint"]))
    assert ingredient["trial_state"] == "complete" and ingredient["hpo"]["job_index"] == 0
    assert ingredient["hyperparameters"]["lr"] == records[0]["params"]["lr"]
    assert ingredient["parent"] == str(init_path)

    summary = hpo_export.export_study(
        [hpo.read_record(tmp_path / "trials" / "1"), records[0]], tmp_path
    )
    best = max(records, key=lambda record: record["value"])
    assert summary["params"] == best["params"]
    for figure in ("history.png", "importances.png", "parallel.png"):
        assert (tmp_path / figure).stat().st_size > 0
    assert len((tmp_path / "trials.csv").read_text().splitlines()) == 3
    settings = hpo_plan.with_best_params(
        study_config.recipe_settings(config, "base", 7), tmp_path / "best_params.yaml"
    )
    assert settings["lr"] == best["params"]["lr"]
    assert settings["augmentation"] == best["params"]["augmentation"]
    assert settings["seed"] == 7
    assert settings["steps"] == config["training"]["recipes"]["base"]["steps"]
    assert (
        hpo_plan.with_best_params(study_config.recipe_settings(config, "base", 7), None)["lr"]
        == 0.001
    )


def test_export_without_a_complete_trial_or_with_a_bad_yaml_says_so(tmp_path):
    study = journal_study(tmp_path / "journal.log")
    failed = hpo.trial_record(hpo.run_trial(study, 0, diverged), "s", None)
    with pytest.raises(ValueError, match=r"no trial of the study completed \(states: \['failed'\]"):
        hpo_export.export_study([failed], tmp_path)
    bad = tmp_path / "best_params.yaml"
    bad.write_text("params: {learning_rate: 1}\n")
    with pytest.raises(ValueError, match="best_params.yaml.*learning_rate"):
        hpo_plan.with_best_params(study_config.recipe_settings(tiny_config(), "base", 0), bad)


def test_pruned_trial_leaves_no_resumable_state(tmp_path, init, monkeypatch):
    from lesionsoup.core.checkpoint import load_metadata

    caches, init_path = init
    definition = hpo_plan.definition(tiny_config(pruner={"kind": "none"}), "base")
    fingerprints = {dataset: cache.fingerprint for dataset, cache in caches.items()}
    init_id = load_metadata(init_path)["init_id"]
    name = hpo_plan.study_name("AAA+BBB", "base", definition, init_id, fingerprints)
    runs = tmp_path / "runs" / name

    def prune(trial, step, score):
        raise optuna.TrialPruned(f"pruned at {step}")

    monkeypatch.setattr(hpo, "report", prune)
    study = hpo_storage.load_study(
        hpo_storage.open_storage(str(tmp_path / "j.log")), name, definition, 0
    )
    objective = hpo.training_objective(runs, caches, definition, init_path, study_name=name)
    trial = hpo.run_trial(study, 0, objective)
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert (runs / f"trial{trial.number:04d}").is_dir()
    assert not (runs / f"trial{trial.number:04d}" / ".work").exists()


def test_the_schema_names_exactly_the_tunable_settings():
    """The HPO schema's setting names are TrainSettings' fields but the seed (a YAML schema
    cannot import Python, so this test holds the two equal)."""
    schema = yaml.safe_load((REPO / "workflow/schemas/hpo.schema.yaml").read_text())
    assert set(schema["$defs"]["setting_name"]["enum"]) == set(TUNABLE)


def test_a_learning_rate_range_reaching_the_floor_is_refused_naming_it(tmp_path):
    config = {
        "training": {
            "defaults": {"min_lr": 1e-4},
            "recipes": {"base": {"lr": 1e-3}},
        },
        "hpo": {
            "seed": 0,
            "trial": {},
            "startup_trials": 1,
            "pruner": {"kind": "none"},
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
        },
        "model": {"encoder": "resnet18", "encoder_weights": None},
    }
    with pytest.raises(ValueError, match=r"hpo\.space\.lr\.low: min_lr 0\.0001 >= lr 0\.0001"):
        hpo_plan.definition(config, "base")
    config["hpo"]["space"]["lr"] = {"type": "categorical", "choices": [1e-3, 1e-4]}
    with pytest.raises(ValueError, match=r"hpo\.space\.lr\.choices"):
        hpo_plan.definition(config, "base")
    config["hpo"]["space"]["lr"] = {"type": "float", "low": 2e-4, "high": 1e-2}
    assert hpo_plan.definition(config, "base")["space"]["lr"]["low"] == 2e-4
