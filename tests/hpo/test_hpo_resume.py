"""A killed (SIGKILL) or preempted (SIGTERM) trial job, started again, continues its own trial.

The interrupted jobs are real `lesionsoup hpo-trial` processes sharing one journal; the
reruns run the same command in the test's process, which spares them the imports.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from conftest import quiet_options
from test_hpo import shared_init, tiny_config

from lesionsoup.cli import PREEMPTED_EXIT, main
from lesionsoup.core.checkpoint import load_checkpoint, load_metadata
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.hpo import storage as hpo_storage
from lesionsoup.hpo import trials as hpo
from lesionsoup.plan import hpo as hpo_plan
from lesionsoup.training.run import train_run

#: Interrupted soon after the first saved state (step 2), long before the first report (step 10).
TRIAL = {"steps": 30, "validate_every": 10, "state_every": 2, "bins": 2060}


@dataclass
class TrialJobs:
    """The trial jobs of one study, with the arguments of the workflow's hpo_trial rule."""

    root: Path
    caches: dict[str, Path]
    init: Path
    definition: dict[str, Any]

    @property
    def name(self) -> str:
        init_id = load_metadata(self.init)["init_id"]
        caches = {name: Cache(path).fingerprint for name, path in self.caches.items()}
        return hpo_plan.study_name("AAA+BBB", "base", self.definition, init_id, caches)

    @property
    def runs(self) -> Path:
        return self.root / "runs" / self.name

    def output(self, index: int) -> Path:
        return self.root / "trials" / str(index)

    def arguments(self, index: int) -> list[str]:
        arguments = [
            "hpo-trial", "-o", str(self.output(index)), "--job-index", str(index),
            "--combo", "AAA+BBB", "--recipe", "base", "--storage", str(self.root / "journal.log"),
            "--definition", json.dumps(self.definition), "--init", str(self.init), "--threads", "1",
        ]  # fmt: skip
        for path in self.caches.values():
            arguments += ["--cache", str(path)]
        return arguments

    def start(self, index: int) -> subprocess.Popen:
        command = [sys.executable, "-m", "lesionsoup", *self.arguments(index)]
        return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)

    def trials(self) -> dict[int, optuna.trial.FrozenTrial]:
        """The study's trials (read from the journal) by job index (None: not tagged yet)."""
        storage = hpo_storage.open_storage(str(self.root / "journal.log"))
        study = optuna.load_study(study_name=self.name, storage=storage)
        return {trial.user_attrs.get(hpo.JOB_ATTR): trial for trial in study.trials}


def saved_trial_numbers(jobs: TrialJobs) -> set[int]:
    """The trials whose run has saved a training state."""
    states = jobs.runs.glob("trial*/.work/state.safetensors")
    return {int(path.parent.parent.name.removeprefix("trial")) for path in states}


def interrupt(jobs: TrialJobs, signals: dict[int, signal.Signals]) -> dict[int, subprocess.Popen]:
    """Start the jobs in parallel; send each its signal once its trial's run has saved a state."""
    processes = {index: jobs.start(index) for index in signals}
    pending = dict(signals)
    deadline = time.monotonic() + 120
    while pending:
        assert time.monotonic() < deadline, "no training state saved before the deadline"
        assert all(processes[index].poll() is None for index in pending), "a job ended early"
        saved = saved_trial_numbers(jobs)
        for index, trial in (jobs.trials() if saved else {}).items():
            if index in pending and trial.number in saved:
                processes[index].send_signal(pending.pop(index))
        time.sleep(0.05)
    return processes


def test_killed_and_preempted_trial_jobs_continue_their_own_trials(tmp_path, toy_caches, caplog):
    caches, init = shared_init(tmp_path, toy_caches)
    config = tiny_config(n_trials=2, pruner={"kind": "none"}, trial=TRIAL)
    jobs = TrialJobs(tmp_path / "hpo", toy_caches, init, hpo_plan.definition(config, "base"))
    processes = interrupt(jobs, {0: signal.SIGTERM, 1: signal.SIGKILL})
    _, stderr = processes[0].communicate(timeout=120)
    assert processes[0].returncode == PREEMPTED_EXIT, stderr[-2000:]
    assert processes[1].wait(timeout=60) == -signal.SIGKILL
    interrupted = jobs.trials()
    assert sorted(interrupted) == [0, 1]
    assert all(trial.state.name == "RUNNING" for trial in interrupted.values())

    caplog.set_level(logging.INFO)
    for index, trial in interrupted.items():  # the same command, in this process (no imports)
        caplog.clear()
        assert main(jobs.arguments(index)) == 0
        assert f"continuing its interrupted trial {trial.number}" in caplog.text
        assert f"trial{trial.number:04d}: resuming at step" in caplog.text
        record = hpo.read_record(jobs.output(index))
        assert (record["number"], record["params"]) == (trial.number, trial.params)
        assert record["state"] == "complete" and Path(record["checkpoint"]).exists()
    final = jobs.trials()
    assert len(final) == 2 and all(trial.state.name == "COMPLETE" for trial in final.values())
    assert all(sorted(trial.intermediate_values) == [10, 20, 30] for trial in final.values())

    # the killed trial ends with the weights of an uninterrupted run of the same trial
    trial = interrupted[1]
    settings = TrainSettings.from_dict({**jobs.definition["settings"], **trial.params})
    spec = ModelSpec.from_dict(jobs.definition["model"])
    train_run(tmp_path / "whole", caches, spec, settings, quiet_options(init=init))
    reference, _ = load_checkpoint(tmp_path / "whole" / "last.safetensors")
    weights, _ = load_checkpoint(jobs.runs / f"trial{trial.number:04d}" / "last.safetensors")
    for name, tensor in reference.items():
        assert torch.equal(tensor, weights[name]), name
