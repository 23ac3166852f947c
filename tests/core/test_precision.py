"""Precision: selection per device and GPU capability, in sidecars; fp16 resumes exactly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml
from conftest import TINY_SETTINGS, TINY_SPEC, quiet_options, spy_scaler_loads
from safetensors import safe_open
from support import REPO
from support.workflow import load_tiny_config, snakemake, write_config

from lesionsoup.cli import main
from lesionsoup.core.checkpoint import load_checkpoint, load_metadata, save_checkpoint
from lesionsoup.core.model import build_model
from lesionsoup.core.precision import PRECISIONS, Precision, resolve
from lesionsoup.inference.infer import InferenceSettings, predict
from lesionsoup.inference.predictor import load_predictor
from lesionsoup.training import loop, resume
from lesionsoup.training.run import train_run

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

#: Hand-made reference: which GPUs compute bf16 natively (NVIDIA's Ampere and later).
GPUS = {
    "P100": ((6, 0), "fp16"),
    "V100": ((7, 0), "fp16"),
    "T4": ((7, 5), "fp16"),
    "A100": ((8, 0), "bf16"),
    "RTX 3090": ((8, 6), "bf16"),
    "L4": ((8, 9), "bf16"),
    "H100": ((9, 0), "bf16"),
    "B200": ((10, 0), "bf16"),
}


@pytest.fixture
def gpu(monkeypatch):
    """Mock the capability (and name) of the CUDA device; nothing else of torch.cuda."""

    def install(name: str, capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)

    return install


@pytest.mark.parametrize("name", GPUS)
def test_auto_is_bf16_where_native_else_fp16_with_a_scaler(gpu, name):
    capability, expected = GPUS[name]
    gpu(name, capability)
    chosen = resolve("auto", torch.device("cuda:0"))
    assert chosen == Precision(expected, "cuda")
    assert chosen.scaled == (expected == "fp16")
    assert chosen.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]


@pytest.mark.parametrize("name", GPUS)
def test_explicit_precision_on_a_gpu(gpu, name):
    capability, native = GPUS[name]
    gpu(name, capability)
    assert resolve("fp16", "cuda") == Precision("fp16", "cuda")
    assert resolve("fp32", "cuda") == Precision("fp32", "cuda")
    assert not resolve("fp32", "cuda").scaled and resolve("fp32", "cuda").dtype is None
    tf32 = resolve("tf32", "cuda")  # the paper authors' fp32 with TF32 matrix products
    assert (tf32.dtype, tf32.scaled, tf32.matmul_precision) == (None, False, "high")
    assert resolve("fp32", "cuda").matmul_precision == "highest"
    if native == "bf16":
        assert resolve("bf16", "cuda") == Precision("bf16", "cuda")
    else:
        with pytest.raises(ValueError, match=rf"{name}.*{capability[0]}\.{capability[1]}.*fp16"):
            resolve("bf16", "cuda")


def test_cpu_is_fp32_unless_told_otherwise():
    assert resolve("auto", "cpu") == Precision("fp32", "cpu")
    assert resolve("tf32", "cpu") == Precision("fp32", "cpu")  # no TensorFloat-32 on a CPU
    assert resolve("bf16", "cpu").dtype == torch.bfloat16
    assert resolve("fp16", "cpu").scaled


def test_unknown_precision_is_named_with_the_choices():
    with pytest.raises(ValueError, match=r"'half'.*auto.*bf16.*fp16.*fp32"):
        resolve("half", "cpu")
    with pytest.raises(ValueError, match="'half'"):
        InferenceSettings(precision="half")


def test_schema_offers_exactly_the_known_precisions():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert tuple(schema["$defs"]["precision"]["enum"]) == PRECISIONS
    training = schema["properties"]["training"]["properties"]
    inference = schema["properties"]["evaluation"]["properties"]["inference"]["properties"]
    assert training["precision"]["default"] == inference["precision"]["default"] == "auto"


def test_autocast_computes_in_the_chosen_dtype():
    layer = torch.nn.Linear(4, 4)
    inputs = torch.randn(2, 4)
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        with resolve(name, "cpu").autocast():
            assert layer(inputs).dtype == dtype


def test_scaler_is_a_pass_through_unless_fp16():
    loss = torch.tensor(2.0)
    assert resolve("bf16", "cpu").scaler().scale(loss) is loss
    assert resolve("fp16", "cpu").scaler().scale(loss).item() == 2.0 * 2**16  # torch's init scale


# --- training runs on the CPU ------------------------------------------------------------------

SPEC = TINY_SPEC
SETTINGS = dataclasses.replace(TINY_SETTINGS, schedule="triangular", cycle_steps=4, min_lr=1e-6)


def _train(run, caches, precision, **extra):
    return train_run(run, caches, SPEC, SETTINGS, quiet_options(precision=precision, **extra))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_sidecar_records_the_precision_used(tmp_path, caches, precision):
    _train(tmp_path / "run", caches, precision)
    sidecars = [tmp_path / "run" / "last.safetensors", tmp_path / "run" / "best.safetensors"]
    sidecars += sorted((tmp_path / "run" / "snapshots").glob("*.safetensors"))
    assert len(sidecars) == 4
    for path in sidecars:
        assert load_metadata(path)["precision"] == precision, path


def test_auto_on_the_cpu_records_fp32(tmp_path, caches):
    assert _train(tmp_path / "run", caches, "auto")["precision"] == "fp32"


def _scaler_state(run):
    with safe_open(run / ".work" / resume.STATE_FILE, framework="pt") as handle:
        return json.loads(handle.metadata()["lesionsoup-state"])["progress"]["scaler"]


def test_fp16_run_killed_and_resumed_ends_as_an_uninterrupted_one(tmp_path, caches, monkeypatch):
    _train(tmp_path / "whole", caches, "fp16")
    real_loss = loop.segmentation_loss
    calls = {"n": 0}

    def dying_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # the last state was saved after step 3
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop, "segmentation_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "killed", caches, "fp16")
    saved = _scaler_state(tmp_path / "killed")
    assert set(saved) >= {"scale", "_growth_tracker"}
    monkeypatch.setattr(loop, "segmentation_loss", real_loss)
    loaded = spy_scaler_loads(monkeypatch)
    _train(tmp_path / "killed", caches, "fp16")
    assert loaded == saved  # the resumed run continues with the saved loss scale
    whole, killed = (
        load_checkpoint(tmp_path / n / "last.safetensors")[0] for n in ("whole", "killed")
    )
    for name in whole:
        assert torch.equal(whole[name], killed[name]), name


# --- inference, the command line and the workflow ----------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_inference_computes_in_the_configured_precision(tmp_path, precision):
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, precision == "bf16"):
        expected = torch.sigmoid(model(images).float())
    settings = InferenceSettings(precision=precision)
    torch.testing.assert_close(predict(model, images, "sigmoid", settings), expected)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model.state_dict(), {"architecture": SPEC.as_dict(), "cache_size": 64})
    predictor = load_predictor(path, "cpu")
    torch.testing.assert_close(predictor.predict(images, settings), expected)
    if precision == "bf16":  # the reference differs from fp32: the setting did something
        assert not torch.allclose(predict(model, images, "sigmoid"), expected, rtol=0, atol=1e-6)


def test_command_line_precision_reaches_the_sidecar(tmp_path, toy_caches):
    arguments = ["train", "-o", str(tmp_path / "run"), "--threads", "1", "--workers", "0"]
    arguments += [
        "--model",
        json.dumps(SPEC.as_dict()),
        "--settings",
        json.dumps(SETTINGS.as_dict()),
    ]
    arguments += ["--precision", "bf16", "--log-every", "2"]
    for cache in toy_caches.values():
        arguments += ["--cache", str(cache)]
    assert main(arguments) == 0
    assert load_metadata(tmp_path / "run" / "last.safetensors")["precision"] == "bf16"


def test_workflow_passes_the_configured_precision_and_interval(tmp_path):
    config = load_tiny_config()
    config["training"].update(precision="fp16", log_every=7)
    result = snakemake(
        tmp_path, write_config(tmp_path / "config.yaml", config), "--dry-run", "--printshellcmds"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = (result.stdout + result.stderr).splitlines()
    commands = [line[line.index("lesionsoup ") :] for line in output if "lesionsoup " in line]
    training = [c for c in commands if c.split()[1] in ("warmup", "train", "hpo-trial")]
    assert {c.split()[1] for c in training} == {"warmup", "train", "hpo-trial"}
    assert all("--precision fp16" in command for command in training)
    assert all("--log-every 7" in command for command in training)
