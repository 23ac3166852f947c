"""Training: reproducibility, exact resume, stale state discarded, finished runs never retrained."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import TINY_SETTINGS, TINY_SPEC, quiet_options, spy_scaler_loads, write_toy_cache

from lesionsoup.cli import main
from lesionsoup.core.checkpoint import load_checkpoint, load_metadata
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.training import loop, resume
from lesionsoup.training import run as run_module
from lesionsoup.training.distributed import Ranks
from lesionsoup.training.run import RunOptions, train_run
from lesionsoup.training.run_folder import publish_init

SPEC = TINY_SPEC
SETTINGS = dataclasses.replace(TINY_SETTINGS, warmup_steps=2)


@pytest.fixture
def init(tmp_path, caches):
    settings = TrainSettings(**{**SETTINGS.as_dict(), "steps": 2, "freeze_encoder": True})
    train_run(tmp_path / "warmup", caches, SPEC, settings, quiet_options(threads=1))
    path = tmp_path / "init.safetensors"
    publish_init(tmp_path / "warmup", path)
    assert not (tmp_path / "warmup").exists()  # the initialisation is the warm-up's only product
    return path


def _weights(run_dir):
    return load_checkpoint(run_dir / "last.safetensors")[0]


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_same_seed_gives_identical_weights_and_outputs(tmp_path, caches, init):
    for name in ("a", "b"):
        train_run(tmp_path / name, caches, SPEC, SETTINGS, quiet_options(init=init))
    _assert_identical(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    other = TrainSettings(**{**SETTINGS.as_dict(), "seed": 1})
    train_run(tmp_path / "c", caches, SPEC, other, quiet_options(init=init))
    assert any(
        not torch.equal(x, y)
        for x, y in zip(
            _weights(tmp_path / "a").values(), _weights(tmp_path / "c").values(), strict=True
        )
    )
    for output in ("best.safetensors", "best.json", "log.csv", "validation.csv", "curves.png"):
        assert (tmp_path / "a" / output).stat().st_size > 0
    meta = load_metadata(tmp_path / "a" / "last.safetensors")
    assert meta["step"] == 8 and meta["samples_seen"] == 16
    assert meta["init_id"] == load_metadata(init)["init_id"] and meta["parent"] == str(init)
    assert set(meta["validation"]) >= {"score", "EX", "HE", "MA", "CWS"}


def test_killed_run_resumes_to_identical_weights(tmp_path, caches, init, monkeypatch):
    train_run(tmp_path / "whole", caches, SPEC, SETTINGS, quiet_options(init=init))

    real_loss = loop.segmentation_loss
    calls = {"n": 0}

    def dying_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # dies inside step 6; the last state was saved after step 3
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop, "segmentation_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        train_run(tmp_path / "killed", caches, SPEC, SETTINGS, quiet_options(init=init))
    assert not (tmp_path / "killed" / "last.safetensors").exists()  # nothing published
    monkeypatch.setattr(loop, "segmentation_loss", real_loss)
    meta = train_run(tmp_path / "killed", caches, SPEC, SETTINGS, quiet_options(init=init))
    assert meta["step"] == SETTINGS.steps
    _assert_identical(_weights(tmp_path / "whole"), _weights(tmp_path / "killed"))
    steps = (tmp_path / "killed" / "log.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in steps] == list(range(1, SETTINGS.steps + 1))


def test_finished_run_is_never_retrained(tmp_path, caches, init, monkeypatch):
    train_run(tmp_path / "run", caches, SPEC, SETTINGS, quiet_options(init=init))
    before = (tmp_path / "run" / "last.safetensors").stat().st_mtime_ns

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(loop, "segmentation_loss", must_not_train)
    train_run(tmp_path / "run", caches, SPEC, SETTINGS, quiet_options(init=init))
    assert (tmp_path / "run" / "last.safetensors").stat().st_mtime_ns == before


def test_init_with_another_architecture_is_refused(tmp_path, caches, init):
    other = ModelSpec(**{**SPEC.__dict__, "decoder_channels": (8, 8, 8)})
    with pytest.raises(ValueError, match="architecture"):
        train_run(tmp_path / "x", caches, other, SETTINGS, quiet_options(init=init))


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainSettings.from_dict({"learning_rate": 0.1})


def test_triangular_run_snapshots_before_every_learning_rate_minimum(tmp_path, caches, init):
    settings = TrainSettings(
        **{**SETTINGS.as_dict(), "schedule": "triangular", "cycle_steps": 4, "min_lr": 1e-6}
    )
    train_run(tmp_path / "fgg", caches, SPEC, settings, quiet_options(init=init))
    snapshots = sorted(p.name for p in (tmp_path / "fgg" / "snapshots").glob("*.safetensors"))
    # a quarter cycle in, descents end at updates 0 and 4 (0-based): snapshots after 1 and 5
    # completed steps, the minimum coming with the next update
    assert snapshots == ["step0000001.safetensors", "step0000005.safetensors"]
    meta = load_metadata(tmp_path / "fgg" / "snapshots" / snapshots[0])
    assert meta["step"] == 1 and meta["snapshot"] is True
    rates = [
        float(row.split(",")[2]) for row in (tmp_path / "fgg" / "log.csv").read_text().split()[1:]
    ]
    assert rates[1] == rates[5] == pytest.approx(1e-6)
    assert meta["init_id"] == load_metadata(init)["init_id"]


# --- stale, torn and damaged state -------------------------------------------------------------

OTHER_LR = TrainSettings(**{**SETTINGS.as_dict(), "lr": 5e-3})


def _train(run, caches, init, settings=SETTINGS):
    return train_run(run, caches, SPEC, settings, quiet_options(init=init))


def _assert_differs(a, b):
    assert any(not torch.equal(a[name], b[name]) for name in a)


def _die_in_step(monkeypatch, step):
    """Make the loss of ``step`` (1-based) raise KeyboardInterrupt, as a kill would."""
    real_loss = loop.segmentation_loss
    calls = {"n": 0}

    def dying_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop, "segmentation_loss", dying_loss)
    return real_loss


def _kill_then_resume(monkeypatch, run, caches, init, settings=SETTINGS):
    real_loss = _die_in_step(monkeypatch, 6)  # the last state was saved after step 3
    with pytest.raises(KeyboardInterrupt):
        _train(run, caches, init)
    monkeypatch.setattr(loop, "segmentation_loss", real_loss)
    return _train(run, caches, init, settings)


def test_state_of_other_settings_is_discarded_not_resumed(
    tmp_path, caches, init, monkeypatch, caplog
):
    _train(tmp_path / "fresh", caches, init, OTHER_LR)
    with caplog.at_level(logging.INFO):
        _kill_then_resume(monkeypatch, tmp_path / "run", caches, init, OTHER_LR)
    assert "settings.lr" in caplog.text and "resuming" not in caplog.text
    _assert_identical(_weights(tmp_path / "fresh"), _weights(tmp_path / "run"))


def test_finished_run_with_changed_inputs_is_retrained_like_a_fresh_one(tmp_path, caches, init):
    _train(tmp_path / "run", caches, init)
    old = _weights(tmp_path / "run")
    _train(tmp_path / "run", caches, init, OTHER_LR)
    _train(tmp_path / "fresh", caches, init, OTHER_LR)
    _assert_identical(_weights(tmp_path / "fresh"), _weights(tmp_path / "run"))
    _assert_differs(old, _weights(tmp_path / "run"))
    assert load_metadata(tmp_path / "run" / "best.safetensors")["hyperparameters"]["lr"] == 5e-3


def test_state_made_from_another_cache_is_discarded(tmp_path, caches, init, monkeypatch):
    real_loss = _die_in_step(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", caches, init)
    monkeypatch.setattr(loop, "segmentation_loss", real_loss)
    rebuilt = write_toy_cache(tmp_path / "rebuilt" / "AAA", "AAA", seed=7)  # same name, new data
    changed = {**caches, "AAA": Cache(rebuilt)}
    assert changed["AAA"].fingerprint != caches["AAA"].fingerprint
    _train(tmp_path / "run", changed, init)
    _train(tmp_path / "fresh", changed, init)
    _assert_identical(_weights(tmp_path / "fresh"), _weights(tmp_path / "run"))


def _fail_writing(monkeypatch):
    """The second state save dies half-way through writing its temporary file."""
    real_save = resume.save_file
    calls = {"n": 0}

    def torn_save(tensors, path, metadata=None):
        calls["n"] += 1
        real_save(tensors, path, metadata=metadata)
        if calls["n"] == 2:
            with open(path, "r+b") as handle:
                handle.truncate(os.path.getsize(path) // 2)
            raise KeyboardInterrupt

    monkeypatch.setattr(resume, "save_file", torn_save)


def _fail_renaming(monkeypatch):
    """The second state save dies after writing its temporary file, before the rename."""
    real_replace = os.replace
    calls = {"n": 0}

    def dying_replace(source, destination):
        if str(destination).endswith(resume.STATE_FILE):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", dying_replace)


@pytest.mark.parametrize("inject", [_fail_writing, _fail_renaming], ids=["writing", "renaming"])
def test_kill_inside_save_state_leaves_a_state_that_resumes_exactly(
    tmp_path, caches, init, monkeypatch, inject
):
    _train(tmp_path / "whole", caches, init)
    with monkeypatch.context() as patched:
        inject(patched)
        with pytest.raises(KeyboardInterrupt):
            _train(tmp_path / "killed", caches, init)
    work = tmp_path / "killed" / ".work"
    (work / f".{resume.STATE_FILE}.tmp99999").write_bytes(b"torn leftover of a SIGKILL")
    meta = _train(tmp_path / "killed", caches, init)
    assert meta["step"] == SETTINGS.steps
    _assert_identical(_weights(tmp_path / "whole"), _weights(tmp_path / "killed"))


def test_damaged_state_is_discarded_and_the_run_rebuilt(tmp_path, caches, init, monkeypatch):
    _train(tmp_path / "whole", caches, init)
    real_loss = _die_in_step(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", caches, init)
    monkeypatch.setattr(loop, "segmentation_loss", real_loss)
    state = tmp_path / "run" / ".work" / resume.STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 3])
    _train(tmp_path / "run", caches, init)
    _assert_identical(_weights(tmp_path / "whole"), _weights(tmp_path / "run"))


def test_damaged_state_restarts_like_a_fresh_run_without_init_and_with_snapshots(
    tmp_path, caches, monkeypatch
):
    """The restart draws a fresh run's random weights (a warm-up has no initialisation to load)
    and has a snapshots folder to save into, although the damaged state's folder was emptied."""
    settings = TrainSettings(
        **{**SETTINGS.as_dict(), "schedule": "triangular", "cycle_steps": 4, "min_lr": 1e-6}
    )
    _train(tmp_path / "fresh", caches, None, settings)
    real_loss = _die_in_step(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", caches, None, settings)
    monkeypatch.setattr(loop, "segmentation_loss", real_loss)
    state = tmp_path / "run" / ".work" / resume.STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 3])
    _train(tmp_path / "run", caches, None, settings)
    _assert_identical(_weights(tmp_path / "fresh"), _weights(tmp_path / "run"))
    for snapshot in (tmp_path / "fresh" / "snapshots").glob("*.safetensors"):
        _assert_identical(
            load_checkpoint(snapshot)[0],
            load_checkpoint(tmp_path / "run" / "snapshots" / snapshot.name)[0],
        )


def test_early_stopped_run_killed_while_publishing_does_not_train_on(
    tmp_path, caches, init, monkeypatch
):
    settings = TrainSettings(
        **{**SETTINGS.as_dict(), "steps": 16, "validate_every": 2, "early_stopping": 1, "lr": 5e-2}
    )
    whole = _train(tmp_path / "whole", caches, init, settings)
    assert whole["stopped_early"] and whole["step"] < settings.steps

    def dying_publish(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(loop, "publish", dying_publish)
        with pytest.raises(KeyboardInterrupt):
            _train(tmp_path / "run", caches, init, settings)
    assert _train(tmp_path / "run", caches, init, settings)["step"] == whole["step"]
    _assert_identical(_weights(tmp_path / "whole"), _weights(tmp_path / "run"))


def test_completed_run_keeps_each_checkpoint_once_readable_by_the_group(tmp_path, caches, init):
    previous = os.umask(0o022)
    try:
        _train(tmp_path / "run", caches, init)
    finally:
        os.umask(previous)
    run = tmp_path / "run"
    assert not (run / ".work").exists()
    for path in [run / "last.safetensors", run / "best.json", *(run / "snapshots").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# --- one writer per run folder, logs appended -------------------------------------------------


def test_second_training_of_a_folder_stops_naming_it_and_the_first_ends_undisturbed(
    tmp_path, toy_caches, caches, init
):
    _train(tmp_path / "whole", caches, init)
    run = tmp_path / "run"
    command = [
        *(sys.executable, "-m", "lesionsoup", "train", "-o", str(run), "--init", str(init)),
        *("--model", json.dumps(SPEC.as_dict()), "--settings", json.dumps(SETTINGS.as_dict())),
        *(argument for path in toy_caches.values() for argument in ("--cache", str(path))),
    ]
    second = []

    def start_the_second(step, scores):  # while the first holds the folder, mid-run
        if not second:
            second.append(subprocess.run(command, capture_output=True, text=True, timeout=300))

    train_run(
        run,
        caches,
        SPEC,
        SETTINGS,
        RunOptions(init=init, workers=0, on_validation=start_the_second),
    )
    assert second[0].returncode == 1
    assert f"{run} is being written by process {os.getpid()} " in second[0].stderr
    _assert_identical(_weights(tmp_path / "whole"), _weights(run))


KILLED_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from lesionsoup.core.specs import ModelSpec, TrainSettings
    from lesionsoup.data.cache import Cache
    from lesionsoup.training import loop
    from lesionsoup.training.run import RunOptions, train_run

    run, init, spec, settings, die_in, *caches = sys.argv[1:]
    real_loss, calls = loop.segmentation_loss, []

    def dying_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == int(die_in):
            os._exit(137)  # as SIGKILL: nothing flushed, nothing closed
        return real_loss(*args, **kwargs)

    loop.segmentation_loss = dying_loss
    train_run(
        Path(run), {Path(c).name: Cache(Path(c)) for c in caches},
        ModelSpec.from_dict(json.loads(spec)), TrainSettings.from_dict(json.loads(settings)),
        RunOptions(init=Path(init), workers=0, progress_bar=False),
    )
    """
)


def _killed_in_step(run, toy_caches, init, step):
    """Train ``run`` in a process that dies (``os._exit``) in its ``step``-th step."""
    model, settings = json.dumps(SPEC.as_dict()), json.dumps(SETTINGS.as_dict())
    arguments = [str(run), str(init), model, settings, str(step), *map(str, toy_caches.values())]
    child = subprocess.run([sys.executable, "-c", KILLED_CHILD, *arguments], timeout=300)
    assert child.returncode == 137


def _columns(path, *names):
    with open(path, newline="") as handle:
        return [[row[name] for name in names] for row in csv.DictReader(handle)]


def test_kill_right_after_a_resume_loses_no_logged_step(tmp_path, toy_caches, caches, init):
    _train(tmp_path / "whole", caches, init)
    run = tmp_path / "run"
    _killed_in_step(run, toy_caches, init, 6)  # states saved after steps 3 and 6
    _killed_in_step(run, toy_caches, init, 1)  # resumed at step 3, killed in its first step
    assert len(_columns(run / ".work" / "log.csv", "step")) == 3
    _train(run, caches, init)
    logged = _columns(run / "log.csv", "step", "loss", "lr")
    assert [int(step) for step, *_ in logged] == list(range(1, SETTINGS.steps + 1))
    assert logged == _columns(tmp_path / "whole" / "log.csv", "step", "loss", "lr")
    validated = (run / "validation.csv").read_text()
    assert validated == (tmp_path / "whole" / "validation.csv").read_text()
    assert [row[0] for row in _columns(run / "validation.csv", "step")] == ["4", "8"]
    _assert_identical(_weights(tmp_path / "whole"), _weights(run))


DAMAGED_INPUTS = {
    "cache-array": lambda caches, init: next((caches["AAA"] / "labels").glob("*valid*.npy")),
    "cache-locations": lambda caches, init: next((caches["AAA"] / "locations").glob("*.npz")),
    "init-weights": lambda caches, init: init,
    "init-sidecar": lambda caches, init: init.with_suffix(".json"),
}


@pytest.mark.parametrize("damaged", DAMAGED_INPUTS.values(), ids=DAMAGED_INPUTS.keys())
def test_truncated_input_is_named_with_exit_1(tmp_path, toy_caches, init, caplog, damaged):
    path = damaged(toy_caches, init)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    arguments = ["train", "-o", str(tmp_path / "run"), "--init", str(init)]
    arguments += ["--threads", "1", "--workers", "0", "--model", json.dumps(SPEC.as_dict())]
    arguments += ["--settings", json.dumps(SETTINGS.as_dict())]
    for cache in toy_caches.values():
        arguments += ["--cache", str(cache)]
    assert main(arguments) == 1
    assert str(path) in caplog.text and "Traceback" not in caplog.text


# --- on CUDA (marked gpu: skipped where CUDA is absent) -----------------------------------------


def _cuda_precisions():
    """Every precision this GPU computes natively (bf16 needs compute capability 8.0)."""
    native_bf16 = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)
    return ["fp32", "fp16", "bf16"] if native_bf16 else ["fp32", "fp16"]


def _cuda_train(run, caches, init, precision, settings=SETTINGS):
    return train_run(
        run, caches, SPEC, settings, quiet_options(init=init, device="cuda", precision=precision)
    )


def _logged_steps(run):
    rows = (run / "log.csv").read_text().splitlines()[1:]
    return [int(row.split(",")[0]) for row in rows], [float(row.split(",")[1]) for row in rows]


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_step_trains_in_each_precision_without_host_syncs(
    tmp_path, caches, init, monkeypatch, precision
):
    if precision not in _cuda_precisions():
        pytest.skip(f"{torch.cuda.get_device_name()} has no native {precision}")
    real_step = loop.Trainer.step

    def strict_step(self, batch, since):
        if self.progress.step == 0:  # the first step initialises lazily (kernels, loss scale)
            return real_step(self, batch, since)
        torch.cuda.set_sync_debug_mode("error")  # any host-device sync raises
        try:
            return real_step(self, batch, since)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(loop.Trainer, "step", strict_step)
    meta = _cuda_train(tmp_path / "run", caches, init, precision)
    assert meta["precision"] == precision and meta["device"].startswith("cuda")
    assert load_metadata(tmp_path / "run" / "best.safetensors")["precision"] == precision
    steps, losses = _logged_steps(tmp_path / "run")
    assert steps == list(range(1, SETTINGS.steps + 1))
    assert all(math.isfinite(loss) for loss in losses)
    assert all(torch.isfinite(tensor).all() for tensor in _weights(tmp_path / "run").values())


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_cuda_run_killed_and_resumed_continues_its_state(
    tmp_path, caches, init, monkeypatch, precision
):
    whole = _cuda_train(tmp_path / "whole", caches, init, precision)
    real_loss = _die_in_step(monkeypatch, 6)  # the last state was saved after step 3
    with pytest.raises(KeyboardInterrupt):
        _cuda_train(tmp_path / "killed", caches, init, precision)
    monkeypatch.setattr(loop, "segmentation_loss", real_loss)
    loaded = spy_scaler_loads(monkeypatch)
    meta = _cuda_train(tmp_path / "killed", caches, init, precision)
    assert meta["step"] == SETTINGS.steps and meta["precision"] == whole["precision"]
    assert bool(loaded) == (whole["precision"] == "fp16")  # the loss scale travels with the state
    assert _logged_steps(tmp_path / "killed")[0] == list(range(1, SETTINGS.steps + 1))
    # CUDA kernels are not bit-reproducible (cudnn.benchmark, atomics): close, not identical
    whole_weights, killed_weights = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    for name, tensor in whole_weights.items():
        torch.testing.assert_close(killed_weights[name], tensor, rtol=1e-2, atol=1e-2)


# -- the paper's protocol: independent starts, epochs, the monitored score --


def test_independent_starts_share_the_pretrained_encoder_and_differ_in_decoder_and_head(
    pretrained_cache,
):
    """``training.init: independent``: each seed starts from the cached "imagenet" encoder
    (compared with the file's tensors, not with another start) and draws its own decoder and
    head; the same seed draws the same start."""
    spec = dataclasses.replace(SPEC, encoder_weights="imagenet")
    starts = {}
    for seed in (0, 1, 0):
        settings = dataclasses.replace(SETTINGS, seed=seed)
        model, _ = run_module._fresh_model(
            spec, settings, quiet_options(), torch.device("cpu"), Ranks()
        )
        state = model.state_dict()
        for name, tensor in model.encoder.state_dict().items():
            assert torch.equal(tensor, pretrained_cache[name]), name
        if seed in starts:
            _assert_identical(state, starts[seed])
        starts[seed] = state
    # every convolution kernel of the decoder and head is drawn (biases start at 0, BatchNorm at 1)
    drawn = [n for n, t in starts[0].items() if not n.startswith("encoder.") and t.dim() == 4]
    assert any(name.startswith("segmentation_head.") for name in drawn)
    for name in drawn:
        assert not torch.equal(starts[0][name], starts[1][name]), name


def test_independent_run_records_its_start_and_no_initialisation(tmp_path, caches):
    train_run(tmp_path / "run", caches, SPEC, SETTINGS, quiet_options())
    meta = load_metadata(tmp_path / "run" / "last.safetensors")
    assert meta["start"] == "independent" and "init_id" not in meta and "parent" not in meta


def test_a_run_from_the_shared_initialisation_records_a_shared_start(tmp_path, caches, init):
    _train(tmp_path / "run", caches, init)
    assert load_metadata(tmp_path / "run" / "last.safetensors")["start"] == "shared"


@pytest.mark.parametrize(
    ("images", "batch", "per_epoch"), [(8, 2, 4), (8, 3, 3), (37, 16, 3), (5, 16, 1)]
)
def test_an_epoch_is_one_patch_per_training_image(images, batch, per_epoch):
    """Worked by hand: ceil(images / batch) batches, the last one short (no drop_last)."""
    settings = TrainSettings(epochs=5, validate_every_epochs=2, cycle_epochs=3, batch_size=batch)
    assert settings.steps_per_epoch(images) == per_epoch
    resolved = settings.in_steps(images)
    assert (resolved.steps, resolved.validate_every) == (5 * per_epoch, 2 * per_epoch)
    assert resolved.cycle_steps == 3 * per_epoch
    assert resolved.epochs == 5  # the record keeps what the config said
    untouched = TrainSettings(steps=7, validate_every=3)
    assert untouched.in_steps(images) == untouched


def test_epochs_become_steps_from_the_combinations_training_images(tmp_path, toy_caches):
    """Two combinations of different sizes: 4 and 4 + 4 training images, batch 2, 2 epochs."""
    settings = dataclasses.replace(SETTINGS, steps=1, epochs=2, validate_every_epochs=1)
    for names, steps in ((("AAA",), 4), (("AAA", "BBB"), 8)):
        run = tmp_path / "+".join(names)
        chosen = {name: Cache(toy_caches[name]) for name in names}
        train_run(run, chosen, SPEC, settings, quiet_options())
        meta = load_metadata(run / "last.safetensors")
        assert meta["step"] == steps and meta["hyperparameters"]["steps"] == steps
        assert meta["hyperparameters"]["validate_every"] == steps // 2
        validated = (run / "validation.csv").read_text().splitlines()[1:]
        assert [int(line.split(",")[0]) for line in validated] == [steps // 2, steps]


def test_monitor_miou_picks_best_by_the_argmax_mean_iou(tmp_path, caches):
    spec = dataclasses.replace(SPEC, head="softmax")
    settings = dataclasses.replace(SETTINGS, monitor="miou")
    train_run(tmp_path / "run", caches, spec, settings, quiet_options())
    best = load_metadata(tmp_path / "run" / "best.safetensors")["validation"]
    assert best["score"] == best["miou"] and 0 <= best["miou"] <= 1
    with pytest.raises(ValueError, match="monitor miou"):
        train_run(tmp_path / "sigmoid", caches, SPEC, settings, quiet_options())


def test_swa_continues_the_base_optimiser_from_its_final_learning_rate(tmp_path, caches):
    """SWALR: the SWA run anneals from the rate its base ended at (worked by hand: a cosine
    over 8 updates ends at min_lr) and carries its base's AdamW state (the step count goes on)."""
    from lesionsoup.core import paths as plan_paths
    from lesionsoup.training.resume import load_optimizer

    base_settings = dataclasses.replace(SETTINGS, min_lr=1e-4, warmup_steps=0)
    train_run(
        tmp_path / "base", caches, SPEC, base_settings, quiet_options(keep_optimizer=("last",))
    )
    kept = tmp_path / "base" / plan_paths.OPTIMIZER_FOLDER / plan_paths.optimizer_file("last")
    swa = dataclasses.replace(
        base_settings, schedule="swa", steps=3, lr=5e-4, start_lr=0.0, cycle_steps=1
    )
    base = tmp_path / "base" / "last.safetensors"
    options = quiet_options(init=base, init_optimizer=kept, keep_optimizer=("last",))
    train_run(tmp_path / "swa", caches, SPEC, swa, options)
    meta = load_metadata(tmp_path / "swa" / "last.safetensors")
    assert meta["hyperparameters"]["start_lr"] == pytest.approx(1e-4)
    assert meta["start"] == "independent" and meta["parent"].endswith("base/last.safetensors")
    model, optimizer = run_module._fresh_model(
        SPEC, swa, quiet_options(), torch.device("cpu"), Ranks()
    )
    load_optimizer(tmp_path / "swa" / plan_paths.OPTIMIZER_FOLDER / "last.safetensors", optimizer)
    steps = {float(state["step"]) for state in optimizer.state.values()}
    assert steps == {8.0 + 3.0}  # the base's 8 AdamW steps, then the SWA run's 3
