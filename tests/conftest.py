"""Shared fixtures: tiny caches written with the real cache writer, and the tiny model and
training settings the training tests share."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lesionsoup.core.lesions import TRAINED, pack
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache, CacheEntry, CacheWriter
from lesionsoup.data.geometry import Geometry

#: A cluster's usual umask, world-readable files: every test runs under it.
CLUSTER_UMASK = 0o022


@pytest.fixture(scope="session", autouse=True)
def cluster_umask():
    """The session's umask, set before any fixture (the workflow runs of module fixtures too)."""
    previous = os.umask(CLUSTER_UMASK)
    yield
    os.umask(previous)


@pytest.fixture(autouse=True)
def umask_restored(cluster_umask):
    """Put the umask back after a test (``lesionsoup predict`` and ``export`` narrow it)."""
    yield
    os.umask(CLUSTER_UMASK)


#: The tiny U-Net of the model tests: a run takes seconds on the CPU.
TINY_SPEC = ModelSpec(
    encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4)
)
#: The training tests' run: 8 steps, validations at 4 and 8, states at 3 and 6.
TINY_SETTINGS = TrainSettings(
    steps=8,
    batch_size=2,
    patch_size=32,
    lr=2e-3,
    validate_every=4,
    state_every=3,
    augmentation="light",
    bins=1030 * 2,
)


def quiet_options(**options):
    """The ``RunOptions`` of a test run: batches loaded in the test's process, no progress bar."""
    from lesionsoup.training.run import RunOptions

    return RunOptions(workers=0, progress_bar=False, **options)


#: Colour of each trained lesion in the toy images, so that a model can learn them.
TOY_COLOURS = {"EX": (250, 230, 60), "HE": (90, 10, 10), "MA": (120, 0, 30), "CWS": (235, 235, 225)}


def toy_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A disc-shaped fundus-like image with square lesions of known colours."""
    yy, xx = np.mgrid[:size, :size]
    fov = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.48) ** 2
    image = np.zeros((size, size, 3), np.uint8)
    image[fov] = (180, 70, 40)
    masks = {}
    for lesion in TRAINED:
        mask = np.zeros((size, size), bool)
        for _ in range(rng.integers(1, 4)):
            side = int(rng.integers(2, max(3, size // 10)))
            y, x = rng.integers(size // 4, 3 * size // 4 - side, size=2)
            mask[y : y + side, x : x + side] = True
        mask &= fov
        image[mask] = TOY_COLOURS[lesion.value]
        masks[lesion] = mask
    return image, pack(masks, fov)


def write_toy_cache(
    directory: Path, name: str, size: int = 64, splits: dict[str, int] | None = None, seed: int = 0
) -> Path:
    splits = splits or {"train": 4, "valid": 2, "test": 2}
    rng = np.random.default_rng(seed)
    writer = CacheWriter(directory, {"size": size, "dataset": name, "seed": seed})
    ids = []
    for split, count in splits.items():
        for index in range(count):
            image, labels = toy_image(rng, size)
            image_id = f"{name}_{split}_{index}"
            geometry = Geometry.fit(size, size, (0, 0, size, size), size)
            writer.write(CacheEntry(image_id, split, image, labels, geometry))
            ids.append(image_id)
    writer.publish(ids)
    return directory


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` are skipped, and reported as such, where CUDA is absent."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="CUDA not available")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture
def toy_caches(tmp_path: Path) -> dict[str, Path]:
    return {
        name: write_toy_cache(tmp_path / "cache" / name, name, seed=index)
        for index, name in enumerate(("AAA", "BBB"))
    }


@pytest.fixture
def caches(toy_caches: dict[str, Path]) -> dict[str, Cache]:
    """The toy caches, opened."""
    return {name: Cache(path) for name, path in toy_caches.items()}


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two toy checkpoints (tests/support/connectivity.py): the connectivity and layout tests'."""
    from support.connectivity import checkpoint

    return checkpoint(tmp_path / "a.safetensors", 0), checkpoint(tmp_path / "b.safetensors", 1)


def spy_scaler_loads(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The loss-scaler state a resumed run loads, recorded as it loads it (empty if none)."""
    import torch

    loaded: dict = {}
    real_load = torch.amp.GradScaler.load_state_dict

    def spying_load(self: torch.amp.GradScaler, state: dict) -> None:
        loaded.update(state)
        real_load(self, state)

    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict", spying_load)
    return loaded


def write_pretrained_cache(hf_home: Path, encoder: str = "resnet18", seed: int = 1234) -> dict:
    """A Hugging Face cache holding ``encoder``'s "imagenet" weights as segmentation_models_pytorch
    (or timm, for a ``tu-`` encoder) downloads them (random tensors drawn from ``seed``: no
    network here); returns that state (a timm encoder's without its ``model.`` prefix).

    With ``HF_HOME`` set to ``hf_home`` and ``HF_HUB_OFFLINE=1``, ``encoder_weights: imagenet``
    loads these weights the way it loads the real ones on a machine that fetched them once;
    ``hf_home`` is also what ``lesionsoup fetch-weights --cache`` fills (its project cache).
    """
    import torch
    from safetensors.torch import save_file

    from lesionsoup.core.pretrained import hub_cache, source_of, timm_name

    source = source_of(encoder, "imagenet")
    generator = torch.Generator().manual_seed(seed)
    state = {
        name: torch.rand(tensor.shape, generator=generator).to(tensor.dtype)
        for name, tensor in _encoder_state(encoder, timm_name(encoder)).items()
    }
    repo = hub_cache(hf_home) / ("models--" + source.repo_id.replace("/", "--"))
    commit = source.revision or f"{seed:040x}"  # timm's: the main branch, at a made-up commit
    if source.revision is None:
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for companion in source.companions:
        (snapshot / companion).write_text("{}")
    save_file(state, str(snapshot / source.filename))
    return state


def _encoder_state(encoder: str, timm_model: str | None) -> dict:
    """The state of the network whose pretrained weights ``encoder`` loads."""
    if timm_model is not None:
        import timm

        return timm.create_model(timm_model).state_dict()
    from segmentation_models_pytorch.encoders import encoders

    return encoders[encoder]["encoder"](**{**encoders[encoder]["params"], "depth": 5}).state_dict()


@pytest.fixture
def pretrained_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """resnet18's "imagenet" encoder weights in an offline Hugging Face cache (see above)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # for subprocesses
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # this process read both when it imported huggingface_hub
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return write_pretrained_cache(tmp_path / "hf")


@pytest.fixture
def no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A machine without network and with an empty Hugging Face cache (not in offline mode:
    nothing tells the hub client the network is gone); returns the attempts to use it, each
    recorded and refused (``network_guard``)."""
    import socket

    from huggingface_hub import constants
    from support.network_guard import refusing

    attempts: list[str] = []
    replacements = refusing(attempts.append)
    monkeypatch.setattr(socket, "getaddrinfo", replacements["getaddrinfo"])
    monkeypatch.setattr(socket.socket, "connect", replacements["connect"])
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))  # for subprocesses
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return attempts
