"""Micro-batches accumulated to the batch, the probe that sizes them, and running out of memory.

The CPU never raises torch's out-of-memory error, so the tests raise it where a GPU would:
above a micro-batch size in the probe's trial step, or once in a training step.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest
import torch
from conftest import TINY_SETTINGS, TINY_SPEC, quiet_options

from lesionsoup.core.checkpoint import load_checkpoint, load_metadata
from lesionsoup.core.fingerprint import open_state_folder
from lesionsoup.core.model import build_model
from lesionsoup.training import loop, micro_batch
from lesionsoup.training import run as run_module
from lesionsoup.training.micro_batch import chunks, halved, largest_fitting
from lesionsoup.training.run import train_run
from lesionsoup.training.run_folder import RunPaths

SETTINGS = dataclasses.replace(TINY_SETTINGS, batch_size=4, steps=8)


def _out_of_memory_above(limit: int):
    def fits(size: int) -> None:
        if size > limit:
            raise torch.OutOfMemoryError(f"simulated: {size} patches")

    return fits


@pytest.mark.parametrize(("batch", "limit", "expected"), [(8, 8, 8), (8, 3, 2), (12, 5, 3)])
def test_the_probe_halves_until_a_micro_batch_fits(batch, limit, expected):
    assert largest_fitting(batch, _out_of_memory_above(limit)) == expected


def test_a_single_patch_that_does_not_fit_is_a_clear_error():
    with pytest.raises(MemoryError, match="one patch does not fit"):
        largest_fitting(4, _out_of_memory_above(0))
    with pytest.raises(MemoryError):
        halved(1)


def test_chunks_cover_the_batch_in_order():
    batch = {"image": torch.arange(5), "valid": torch.arange(5) * 10}
    pieces = list(chunks(batch, 2))
    assert [piece["image"].tolist() for piece in pieces] == [[0, 1], [2, 3], [4]]
    assert torch.equal(torch.cat([piece["valid"] for piece in pieces]), batch["valid"])


def _without_batchnorm(spec, pretrained_cache=None):
    """The U-Net with every BatchNorm replaced by the identity: nothing pools the batch."""
    model = build_model(spec, pretrained_cache)
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.BatchNorm2d):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, torch.nn.Identity())
    return model


def _first_step_gradients(caches, root, settings, micro) -> dict[str, torch.Tensor]:
    """The gradients of a fresh run's first step, taken at micro-batch ``micro``."""
    paths = RunPaths(root)
    run = run_module.resolve_run(paths.root, caches, TINY_SPEC, settings, None)
    open_state_folder(paths.work, run.fingerprint)
    options = quiet_options(micro_batch=micro)
    trainer, loader = run_module.set_up_trainer(paths, caches, TINY_SPEC, run, options)
    assert trainer.micro_batch == micro
    trainer.step(next(iter(loader)), since=time.perf_counter())
    return {name: p.grad.clone() for name, p in trainer.model.named_parameters()}


def test_micro_batches_add_up_to_the_whole_batch_without_batchnorm(caches, tmp_path, monkeypatch):
    """One patch at a time, four times, gives the gradient of four patches at once, to float
    tolerance: on a model without BatchNorm and with the cross-entropy alone (the Dice pools
    each micro-batch, as documented, and so does BatchNorm). Compared at one step: over
    several, Adam's near-sign early updates grow rounding differences into visible ones."""
    monkeypatch.setattr(run_module, "build_model", _without_batchnorm)
    settings = dataclasses.replace(SETTINGS, dice_weight=0.0, grad_clip=0.0)
    whole = _first_step_gradients(caches, tmp_path / "whole", settings, 4)
    piecewise = _first_step_gradients(caches, tmp_path / "piecewise", settings, 1)
    assert any(gradient.abs().max() > 0 for gradient in whole.values())
    for name, gradient in whole.items():
        torch.testing.assert_close(piecewise[name], gradient, rtol=1e-4, atol=1e-7, msg=name)
    with_dice = _first_step_gradients(caches, tmp_path / "dice", SETTINGS, 1)
    dice_whole = _first_step_gradients(caches, tmp_path / "dice_whole", SETTINGS, 4)
    assert any(  # the documented difference is real: the Dice pools each micro-batch
        not torch.allclose(with_dice[name], dice_whole[name], rtol=1e-3) for name in dice_whole
    )


def test_auto_settles_on_the_micro_batch_that_fits_and_trains_as_a_run_started_there(
    caches, tmp_path, monkeypatch
):
    real_trial = micro_batch.trial_step

    def trial_out_of_memory_above_two(model, optimizer, size, patch_size, precision):
        if size > 2:
            raise torch.OutOfMemoryError(f"simulated: {size} patches")
        real_trial(model, optimizer, size, patch_size, precision)

    monkeypatch.setattr(micro_batch, "trial_step", trial_out_of_memory_above_two)
    auto = train_run(tmp_path / "auto", caches, TINY_SPEC, SETTINGS, quiet_options())
    fixed = train_run(tmp_path / "two", caches, TINY_SPEC, SETTINGS, quiet_options(micro_batch=2))
    assert auto["micro_batch"] == fixed["micro_batch"] == 2
    a = load_checkpoint(tmp_path / "auto" / "last.safetensors")[0]
    b = load_checkpoint(tmp_path / "two" / "last.safetensors")[0]
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


def test_running_out_of_memory_mid_run_halves_the_micro_batch_and_resumes(
    caches, tmp_path, monkeypatch, caplog
):
    """Step 5 runs out of memory at micro-batch 4 (the last state is step 3's): the run goes
    on from step 3 at micro-batch 2 and finishes, its log holding each step once."""
    real_loss = loop.segmentation_loss
    calls = {"n": 0}

    def out_of_memory_once_in_step_five(logits, *args, **kwargs):
        calls["n"] += 1  # one call a step at micro-batch 4
        if calls["n"] == 5:
            raise torch.OutOfMemoryError("simulated")
        return real_loss(logits, *args, **kwargs)

    monkeypatch.setattr(loop, "segmentation_loss", out_of_memory_once_in_step_five)
    with caplog.at_level(logging.WARNING):
        meta = train_run(tmp_path / "run", caches, TINY_SPEC, SETTINGS, quiet_options())
    assert meta["step"] == SETTINGS.steps and meta["micro_batch"] == 2
    assert "out of device memory at micro-batch 4" in caplog.text
    assert "resuming with micro-batch 2" in caplog.text
    steps = (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in steps] == list(range(1, SETTINGS.steps + 1))
    assert load_metadata(tmp_path / "run" / "best.safetensors")["micro_batch"] in (2, 4)
