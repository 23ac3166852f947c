"""Pretrained encoder weights: read from the project cache without network, fetched once,
and a clear error at once where they cannot be had."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import huggingface_hub
import pytest
import torch
from conftest import TINY_SETTINGS, TINY_SPEC, write_pretrained_cache

from lesionsoup.cli import main
from lesionsoup.core import paths, pretrained
from lesionsoup.core.checkpoint import load_checkpoint
from lesionsoup.core.model import EncoderWeightsUnavailable, build_model

SPEC = dataclasses.replace(TINY_SPEC, encoder_weights="imagenet")
ENCODERS = ("resnet18", "tu-resnet18")  # segmentation_models_pytorch's own, and timm's
#: The time a refused network may take to become the error. A bound on retries, not a speed
#: target: huggingface_hub alone waits 1+2+4+8+8 s between its retries of a lookup that
#: neither reaches the hub nor finds the file (~25 s); one refused request takes milliseconds,
#: so 5 s fails on any retry schedule and passes on a loaded machine.
AT_ONCE_SECONDS = 5.0


def _assert_encoder_is(model: torch.nn.Module, state: dict) -> None:
    """Every encoder tensor is the cached one (a timm encoder's are under ``model.``)."""
    encoder = model.encoder.state_dict()
    assert encoder
    for name, tensor in encoder.items():
        assert torch.equal(tensor, state[name.removeprefix("model.")]), name


@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_model_reads_its_encoder_from_the_project_cache_without_network(
    encoder, tmp_path, no_network
):
    state = write_pretrained_cache(tmp_path / "project", encoder)
    spec = dataclasses.replace(SPEC, encoder=encoder)
    _assert_encoder_is(build_model(spec, tmp_path / "project"), state)
    assert no_network == []


@pytest.mark.parametrize("encoder", ENCODERS)
def test_the_model_is_the_one_segmentation_models_pytorch_builds_from_its_download(
    encoder, tmp_path, monkeypatch
):
    """Same encoder and same random decoder and head for a seed as when
    segmentation_models_pytorch (or timm) reads its own download: independent starts do not
    change with where the weights are read from."""
    import segmentation_models_pytorch as smp
    from huggingface_hub import constants

    write_pretrained_cache(tmp_path / "project", encoder)
    spec = dataclasses.replace(SPEC, encoder=encoder)
    torch.manual_seed(0)
    ours = build_model(spec, tmp_path / "project").state_dict()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(pretrained.hub_cache(tmp_path / "project")))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    torch.manual_seed(0)
    theirs = smp.Unet(
        encoder_name=encoder,
        encoder_weights=True if encoder.startswith("tu-") else "imagenet",
        encoder_depth=spec.encoder_depth,
        decoder_channels=spec.decoder_channels,
        classes=spec.out_channels,
    ).state_dict()
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name


def test_a_warmup_through_the_cli_reads_the_project_cache_and_never_the_network(
    tmp_path, toy_caches, no_network
):
    state = write_pretrained_cache(tmp_path / "project", "resnet18")
    init = tmp_path / "init.safetensors"
    settings = dataclasses.replace(TINY_SETTINGS, steps=2, freeze_encoder=True)
    code = main(
        [
            "warmup", "-o", str(init), *(f"--cache={path}" for path in toy_caches.values()),
            "--model", json.dumps(SPEC.as_dict()), "--settings", json.dumps(settings.as_dict()),
            "--pretrained-cache", str(tmp_path / "project"), "--workers", "0",
        ]
    )  # fmt: skip
    assert code == 0
    weights = load_checkpoint(init)[0]
    frozen = [
        name for name, _ in build_model(SPEC, tmp_path / "project").encoder.named_parameters()
    ]
    assert frozen
    for name in frozen:  # the warm-up trains the decoder alone
        assert torch.equal(weights[f"encoder.{name}"], state[name]), name
    assert no_network == []


def test_without_cache_or_network_the_error_comes_at_once_and_says_what_to_do(no_network):
    pretrained.source_of("resnet18", "imagenet")  # imports done before the clock starts
    start = time.monotonic()
    with pytest.raises(EncoderWeightsUnavailable) as error:
        build_model(SPEC)
    elapsed = time.monotonic() - start
    assert elapsed < AT_ONCE_SECONDS
    # asked once and refused, not retried (huggingface_hub may first ask the hub for its
    # user-agent registry, once a process: a second lookup; its retries made 8)
    assert 1 <= len(no_network) <= 2
    message = str(error.value)
    assert "could not be reached" in message
    command = "lesionsoup fetch-weights --encoder resnet18 --weights imagenet"
    assert command in message and "--pretrained-cache" in message
    assert "HF_HOME" in message and "encoder_weights: null" in message


def test_a_job_without_the_weights_in_its_cache_fails_at_once_without_asking_the_hub(
    tmp_path, no_network
):
    with pytest.raises(EncoderWeightsUnavailable, match="not in the pretrained cache") as error:
        build_model(SPEC, tmp_path / "project")
    assert f"--cache {tmp_path / 'project'}" in str(error.value)
    assert no_network == []


class FakeHub:
    """huggingface_hub's requests, answered from a cache written by ``write_pretrained_cache``
    (as if downloaded) and counted; the network is never used."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.state: dict = {}
        monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", self.metadata)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.download)

    def metadata(self, url: str, timeout: float) -> None:
        self.calls.append(f"probe {url} {timeout}")

    def download(self, repo_id: str, filename: str, revision: str, cache_dir: Path) -> str:
        self.calls.append(f"download {filename}")
        home = Path(cache_dir).parent
        if not self.state:
            self.state = write_pretrained_cache(home, "resnet18")
        found = huggingface_hub.try_to_load_from_cache(repo_id, filename, cache_dir, revision)
        assert isinstance(found, str)
        return found


def test_fetch_downloads_once_then_finds_the_weights_offline(tmp_path, monkeypatch, no_network):
    hub = FakeHub(monkeypatch)
    project = tmp_path / "project"
    record = pretrained.fetch("resnet18", "imagenet", project)
    assert [call.split()[0] for call in hub.calls] == ["probe", "download", "download"]
    assert hub.calls[-1] == "download model.safetensors"
    assert hub.calls[0].endswith(f" {pretrained.PROBE_TIMEOUT}")
    source = pretrained.source_of("resnet18", "imagenet")
    path = pretrained.cached_file(source, pretrained.hub_cache(project))
    assert record["repo_id"] == source.repo_id and record["commit"] == source.revision
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["bytes"] == path.stat().st_size and record["filename"] == "model.safetensors"
    hub.calls.clear()
    assert pretrained.fetch("resnet18", "imagenet", project) == record
    assert hub.calls == [] and no_network == []


def test_fetch_without_network_fails_at_once(tmp_path, no_network):
    pretrained.source_of("resnet18", "imagenet")
    start = time.monotonic()
    with pytest.raises(EncoderWeightsUnavailable, match="could not be reached"):
        pretrained.fetch("resnet18", "imagenet", tmp_path / "project")
    assert time.monotonic() - start < AT_ONCE_SECONDS and 1 <= len(no_network) <= 2


@pytest.mark.parametrize("encoder", ENCODERS)
def test_fetch_weights_command_records_the_cached_weights_without_network(
    encoder, tmp_path, no_network
):
    write_pretrained_cache(tmp_path / "project", encoder)
    out = tmp_path / "project" / pretrained.record_name(encoder, "imagenet")
    code = main(
        ["fetch-weights", "--encoder", encoder, "--weights", "imagenet"]
        + ["--cache", str(tmp_path / "project"), "-o", str(out)]
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert record == pretrained.fetch(encoder, "imagenet", tmp_path / "project")
    assert record["encoder"] == encoder and len(record["commit"]) == 40
    assert no_network == []


def test_unknown_encoders_and_weights_are_named():
    with pytest.raises(ValueError, match="'nosuchnet'"):
        pretrained.source_of("nosuchnet", "imagenet")
    with pytest.raises(ValueError, match=r"no 'instagram' weights for encoder 'resnet18'"):
        pretrained.source_of("resnet18", "instagram")


def test_the_workflow_names_the_record_and_the_cache_as_the_library_does():
    model = {"encoder": "tu-seresnext50_32x4d", "encoder_weights": "imagenet"}
    record = pretrained.record_name(model["encoder"], model["encoder_weights"])
    assert paths.pretrained_record(model) == f"{paths.PRETRAINED}/{record}"
    assert Path(paths.PRETRAINED) == pretrained.WORKFLOW_CACHE
    assert paths.pretrained_record({**model, "encoder_weights": None}) is None
