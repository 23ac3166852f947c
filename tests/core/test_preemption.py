"""SIGTERM (SLURM preemption, scancel) mid-run: state saved, rerun resumes to the same weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import TINY_SPEC, quiet_options
from safetensors import safe_open

from lesionsoup.cli import PREEMPTED_EXIT
from lesionsoup.core.checkpoint import load_checkpoint
from lesionsoup.core.specs import TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.training.run import train_run

SPEC = TINY_SPEC
SETTINGS = TrainSettings(
    steps=60, batch_size=2, patch_size=32, validate_every=30, state_every=10, augmentation="light"
)


def _train_command(run: Path, caches: dict[str, Path]) -> list[str]:
    command = [sys.executable, "-m", "lesionsoup", "train", "-o", str(run), "--threads", "1"]
    for path in caches.values():
        command += ["--cache", str(path)]
    return command + [
        "--model", json.dumps(SPEC.as_dict()), "--settings", json.dumps(SETTINGS.as_dict()),
    ]  # fmt: skip


def test_sigterm_saves_state_and_rerun_ends_with_uninterrupted_weights(tmp_path, toy_caches):
    run = tmp_path / "preempted"
    process = subprocess.Popen(_train_command(run, toy_caches), stderr=subprocess.PIPE, text=True)
    state = run / ".work" / "state.safetensors"
    deadline = time.monotonic() + 240
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.exists(), "no state was saved before the deadline"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == PREEMPTED_EXIT, stderr[-2000:]
    with safe_open(state, framework="pt") as handle:
        saved_step = json.loads(handle.metadata()["lesionsoup-state"])["progress"]["step"]
    assert 0 < saved_step < SETTINGS.steps
    assert f"SIGTERM at step {saved_step}" in stderr  # saved at the step it stopped: nothing lost
    assert not (run / "last.safetensors").exists()

    resumed = subprocess.run(
        _train_command(run, toy_caches), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming at step {saved_step}" in resumed.stderr
    weights, meta = load_checkpoint(run / "last.safetensors")
    assert meta["step"] == SETTINGS.steps

    caches = {name: Cache(path) for name, path in toy_caches.items()}
    torch.set_num_threads(1)
    train_run(tmp_path / "whole", caches, SPEC, SETTINGS, quiet_options(threads=1))
    reference, _ = load_checkpoint(tmp_path / "whole" / "last.safetensors")
    for name, tensor in reference.items():
        assert torch.equal(tensor, weights[name]), name
