"""One run on several devices: gloo processes on the CPU stand in for GPUs.

References: torch's own ``BatchNorm2d`` over the union batch (for the CPU
SyncBatchNorm), and the one-process run whose batch is the union of the
ranks' batches (for the whole distributed run).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import TINY_SETTINGS, TINY_SPEC, quiet_options, write_toy_cache
from support.workflow import load_tiny_config, snakemake, write_config

from lesionsoup.cli import PREEMPTED_EXIT
from lesionsoup.core.checkpoint import (
    SHARED_INITIALISATION,
    load_checkpoint,
    load_metadata,
    save_checkpoint,
    state_digest,
)
from lesionsoup.data.cache import Cache
from lesionsoup.training.distributed import Ranks
from lesionsoup.training.run import train_run
from lesionsoup.training.supervisor import RankFailed, supervise
from lesionsoup.training.sync_batchnorm import CpuSyncBatchNorm, synchronised

#: 2 devices of batch 2 against 1 device of batch 4: 24 steps, states every 4.
SETTINGS = dataclasses.replace(
    TINY_SETTINGS, steps=24, batch_size=4, validate_every=12, state_every=4
)
TWO_DEVICES = dataclasses.replace(SETTINGS, batch_size=2, devices=2)


def _union_batch_job(batch: torch.Tensor, ranks: Ranks, relay: object) -> dict | None:
    """A rank's half of ``batch`` through a CPU SyncBatchNorm; rank 0 returns the gathered
    output, input gradient, summed parameter gradients and running statistics."""
    torch.manual_seed(0)
    layer = CpuSyncBatchNorm(batch.shape[1])
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    half = len(batch) // ranks.world
    part = batch[ranks.rank * half : (ranks.rank + 1) * half].clone().requires_grad_()
    weights = torch.linspace(-1, 1, part[0].numel()).view(part[0].shape)
    (layer(part) * weights).sum().backward()
    gathered = {}
    for name, tensor in (("output", layer(part).detach()), ("input_grad", part.grad)):
        pieces = [torch.empty_like(tensor) for _ in range(ranks.world)]
        dist.all_gather(pieces, tensor.contiguous())
        gathered[name] = torch.cat(pieces)
    for name in ("weight", "bias"):
        grad = getattr(layer, name).grad.clone()
        dist.all_reduce(grad)
        gathered[f"{name}_grad"] = grad
    gathered["running_mean"] = layer.running_mean.clone()
    gathered["running_var"] = layer.running_var.clone()
    # plain arrays: a tensor would travel as a shared-memory handle that dies with its process
    return {name: tensor.numpy() for name, tensor in gathered.items()} if ranks.writes else None


def test_cpu_sync_batchnorm_is_batchnorm_over_the_union_batch():
    """Two ranks' CpuSyncBatchNorm equals torch's BatchNorm2d over both halves: output, input
    and parameter gradients, running statistics (after the first forward pass, which updates
    them once; the gathered output comes from a second pass that updates them again, so the
    reference does two passes as well)."""
    batch = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1)) * 3 + 1
    arrays = supervise(functools.partial(_union_batch_job, batch), 2, "cpu", None)
    got = {name: torch.from_numpy(array) for name, array in arrays.items()}

    torch.manual_seed(0)
    reference = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    whole = batch.clone().requires_grad_()
    weights = torch.linspace(-1, 1, batch[0].numel()).view(batch[0].shape)
    (reference(whole) * weights.repeat(1, 1, 1)).sum().backward()
    output = reference(whole).detach()
    torch.testing.assert_close(got["output"], output)
    torch.testing.assert_close(got["input_grad"], whole.grad)
    torch.testing.assert_close(got["weight_grad"], reference.weight.grad)
    torch.testing.assert_close(got["bias_grad"], reference.bias.grad)
    torch.testing.assert_close(got["running_mean"], reference.running_mean)
    torch.testing.assert_close(got["running_var"], reference.running_var)


def test_synchronised_model_keeps_batchnorm_names_and_frozen_parameters():
    """A synchronised U-Net's state loads into a plain one, and a frozen BatchNorm stays frozen."""
    from lesionsoup.core.model import build_model

    model = build_model(TINY_SPEC)
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(False)
    synced = synchronised(build_model(TINY_SPEC), "cpu")
    synced.load_state_dict(model.state_dict())
    assert any(isinstance(module, CpuSyncBatchNorm) for module in synced.modules())
    frozen = synchronised(model, "cpu")
    assert not any(parameter.requires_grad for parameter in frozen.encoder.parameters())


def _failing_job(ranks: Ranks, relay: object) -> None:
    if ranks.rank == 1:
        raise ValueError("rank one's own error")
    dist.barrier()  # rank 0 waits forever for rank 1: the supervisor must not


def test_a_failing_rank_fails_the_run_with_its_error_and_stops_the_others():
    started = time.perf_counter()
    with pytest.raises(RankFailed, match="rank one's own error"):
        supervise(_failing_job, 2, "cpu", None)
    assert time.perf_counter() - started < 60  # not the collective's two-hour timeout


@pytest.fixture(scope="module")
def toy_cache(tmp_path_factory) -> dict[str, Cache]:
    root = tmp_path_factory.mktemp("distributed")
    return {"A": Cache(write_toy_cache(root / "A", "A", size=64))}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.safetensors")[0]


def _relative_difference(a: dict, b: dict, start: dict) -> float:
    """||a - b|| / ||b - start|| over the trained parameters: how far two runs' weights are
    apart, against how far training moved them."""
    names = [name for name, tensor in start.items() if tensor.is_floating_point()]
    names = [name for name in names if "running" not in name]
    apart = sum(((a[name] - b[name]) ** 2).sum() for name in names)
    moved = sum(((b[name] - start[name]) ** 2).sum() for name in names)
    return float((apart / moved).sqrt())


def _initialisation(path: Path, state: dict[str, torch.Tensor]) -> Path:
    metadata = {
        "architecture": TINY_SPEC.as_dict(),
        "role": SHARED_INITIALISATION,
        "init_id": state_digest(state),
    }
    save_checkpoint(path, state, metadata)
    return path


@pytest.fixture(scope="module")
def starts(tmp_path_factory) -> dict[str, Path]:
    """The seed's initial weights, and the same rounded differently: each weight moved by a
    float32 rounding error (a relative 1.2e-7, at random)."""
    from lesionsoup.core.model import build_model

    root = tmp_path_factory.mktemp("starts")
    torch.manual_seed(SETTINGS.seed)
    start = build_model(TINY_SPEC).state_dict()
    noise = torch.Generator().manual_seed(5)
    rounded = {
        name: tensor * (1 + 1.2e-7 * torch.randn(tensor.shape, generator=noise))
        if tensor.is_floating_point()
        else tensor
        for name, tensor in start.items()
    }
    return {
        "start": _initialisation(root / "start.safetensors", start),
        "rounded": _initialisation(root / "rounded.safetensors", rounded),
    }


@pytest.fixture(scope="module")
def runs(toy_cache, starts, tmp_path_factory) -> dict[str, Path]:
    """From the same start: the run on two devices (batch 2 each, SyncBatchNorm), on one
    device with their union batch (4), and on one device with one rank's batch (2); and the
    one-device run with the union batch from the start rounded differently."""
    root = tmp_path_factory.mktemp("runs")
    plan = {
        "two_devices": (TWO_DEVICES, "start"),
        "one_device": (SETTINGS, "start"),
        "one_device_half_batch": (dataclasses.replace(SETTINGS, batch_size=2), "start"),
        "one_device_rounded_start": (SETTINGS, "rounded"),
    }
    for name, (settings, start) in plan.items():
        options = quiet_options(init=starts[start])
        train_run(root / name, toy_cache, TINY_SPEC, settings, options)
    return {name: root / name for name in plan}


def test_two_devices_train_as_one_device_with_their_union_batch(runs, starts):
    """The same patches (each rank its slice of every step's), BatchNorm and the loss's batch
    statistics over both ranks: after 24 steps the two-device run's weights are no further
    from the one-device run with batch 4 than that run is from itself started from weights
    rounded differently (measured: 0.06 against 0.17 of how far training moved them). Summing
    over two processes rounds differently, and this tiny run is chaotic: Adam's early steps
    are near lr·sign(gradient), so rounding-level differences grow to a few percent in 24
    steps, whatever their source. A real change stays far above: one rank's batch alone
    (measured 1.3), or two devices without SyncBatchNorm (1.24 in the same measure)."""
    start = load_checkpoint(starts["start"])[0]
    one = _weights(runs["one_device"])
    rounding = _relative_difference(_weights(runs["one_device_rounded_start"]), one, start)
    assert _relative_difference(_weights(runs["two_devices"]), one, start) < rounding
    assert _relative_difference(_weights(runs["one_device_half_batch"]), one, start) > 5 * rounding
    meta = load_metadata(runs["two_devices"] / "last.safetensors")
    assert meta["hyperparameters"]["devices"] == 2
    assert meta["samples_seen"] == SETTINGS.steps * 4  # both ranks' patches


def _train_command(run: Path, cache: Path, init: Path) -> list[str]:
    import json

    return [
        sys.executable, "-m", "lesionsoup", "train", "-o", str(run), "--cache", str(cache),
        "--init", str(init),
        "--model", json.dumps(TINY_SPEC.as_dict()), "--settings",
        json.dumps(TWO_DEVICES.as_dict()), "--device", "cpu", "--threads", "2",
        "--workers", "0", "--log-every", "1",
    ]  # fmt: skip


def _interrupted(
    run: Path, cache: Path, init: Path, sig: signal.Signals
) -> subprocess.CompletedProcess:
    """The two-device run through the command, sent ``sig`` once its first state is saved."""
    log = run.parent / f"{run.name}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(_train_command(run, cache, init), stdout=out, stderr=out)
        state = run / ".work" / "state.safetensors"
        deadline = time.monotonic() + 300
        while not state.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(sig)
        process.wait(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, log.read_text(), "")


def _rank_pids(log: str) -> list[int]:
    line = next(line for line in log.splitlines() if "training on 2 devices: ranks" in line)
    return [int(pid) for pid in line.split("[", 1)[1].rstrip("]").split(",")]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_two_device_run_killed_and_rerun_equals_the_uninterrupted_one(
    runs, toy_cache, starts, tmp_path, sig
):
    """SIGTERM: every rank stops after one step, rank 0's state saved, exit 143; SIGKILL of
    the supervisor: its ranks exit within seconds. Either way the rerun resumes and ends with
    the uninterrupted two-device run's weights, bit for bit."""
    cache = toy_cache["A"].directory
    run = tmp_path / "killed"
    stopped = _interrupted(run, cache, starts["start"], sig)
    assert not (run / "last.safetensors").exists(), "the run finished before the signal"
    if sig == signal.SIGTERM:
        assert stopped.returncode == PREEMPTED_EXIT, stopped.stdout
        assert "SIGTERM at step" in stopped.stdout
    else:
        pids = _rank_pids(stopped.stdout)
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in pids), "ranks outlived their supervisor"
    command = _train_command(run, cache, starts["start"])
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming at step" in rerun.stderr
    whole, resumed = _weights(runs["two_devices"]), _weights(run)
    for name, tensor in whole.items():
        assert torch.equal(tensor, resumed[name]), name


def test_a_run_on_two_devices_through_snakemake(tmp_path):
    """The tiny study's base recipe on two devices: the job asks for 2 GPUs and 2 cores
    (training.threads for each device), trains as two ranks and records it."""
    config = load_tiny_config()
    config["training"]["recipes"]["base"]["devices"] = 2
    config["training"]["init"] = "independent"  # no warm-up job
    configfile = write_config(tmp_path / "config.yaml", config)
    target = "results/models/IDRID/base/seed0/last.safetensors"
    result = snakemake(tmp_path, configfile, "--cores", "2", "--printshellcmds", target)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--threads 2" in result.stdout + result.stderr
    meta = load_metadata(tmp_path / target)
    assert meta["hyperparameters"]["devices"] == 2 and meta["step"] == 4
    job_log = (tmp_path / "logs" / "train" / "IDRID" / "base" / "seed0.log").read_text()
    assert "training on 2 devices" in job_log


class _Pruned(Exception):
    """Stands for optuna.TrialPruned: raised by the run's own callback."""


def test_the_runs_on_validation_is_called_in_the_supervisor_and_stops_every_rank(
    toy_cache, tmp_path
):
    """An Optuna trial's callback stays in the command's process: it gets rank 0's scores,
    and its exception stops both ranks once the state is saved, then reaches the caller."""
    seen = []

    def prune_at_the_second(step: int, scores: dict) -> None:
        seen.append((step, scores["score"]))
        if len(seen) == 2:
            raise _Pruned(f"pruned at {step}")

    settings = dataclasses.replace(TWO_DEVICES, validate_every=6)
    options = quiet_options(on_validation=prune_at_the_second)
    with pytest.raises(_Pruned, match="pruned at 12"):
        train_run(tmp_path / "trial", toy_cache, TINY_SPEC, settings, options)
    assert [step for step, _ in seen] == [6, 12]
    assert not (tmp_path / "trial" / "last.safetensors").exists()
    work = tmp_path / "trial" / ".work"
    assert (work / "state.safetensors").exists()
    rows = (work / "validation.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == [6, 12]  # the state's, saved before it
