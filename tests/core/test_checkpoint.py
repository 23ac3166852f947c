import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lesionsoup.core.checkpoint as checkpoint
from lesionsoup.core.atomic import WriteError, atomic_write_bytes
from lesionsoup.core.checkpoint import (
    FORMAT,
    CheckpointError,
    TensorSpec,
    load_checkpoint,
    load_metadata,
    load_state_dict,
    relabel_checkpoint,
    save_checkpoint,
    sidecar_path,
    state_digest,
    tensor_specs,
)

METADATA = {
    "architecture": {"arch": "Unet", "encoder": "resnet34", "classes": 4, "activation": None},
    "hyperparameters": {"learning_rate": 0.001, "batch_size": 8},
    "parent": "results/init/DDR.safetensors",
    "init_id": "abc123",
    "step": 1200,
    "samples_seen": 9600,
    "wall_seconds": 61.5,
    "device_seconds": 58.25,
    "validation": {"EX": 0.61, "HE": 0.42},
}


def example_state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(3, 4, generator=generator)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=generator),
        "transposed": torch.randn(5, 6, generator=generator).t(),  # not contiguous
        "half": torch.randn(7, generator=generator).half(),
        "brain": torch.randn(7, generator=generator).bfloat16(),
        "bn.num_batches_tracked": torch.tensor(17),
        "tied.a": shared,
        "tied.b": shared,  # same storage
        "row": shared[1],  # a view into it
    }


def test_round_trip_is_bit_identical(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    state = example_state()
    save_checkpoint(path, state, METADATA)
    loaded, metadata = load_checkpoint(path)
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name], tensor), name
    assert metadata == METADATA
    assert load_metadata(path) == METADATA
    assert json.loads(sidecar_path(path).read_text()) == METADATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_overwrite_replaces_both_files(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"w": torch.zeros(2)}, {"step": 1})
    save_checkpoint(path, {"w": torch.ones(2)}, {"step": 2})
    state, metadata = load_checkpoint(path)
    assert torch.equal(state["w"], torch.ones(2))
    assert metadata == {"step": 2}


def test_header_carries_the_format_marker(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"w": torch.zeros(2)}, {})
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_length])
    assert header["__metadata__"] == {"format": FORMAT}


def test_tensor_specs_read_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"a": torch.zeros(2, 3), "n": torch.tensor(1)}, {})
    assert tensor_specs(path) == {"a": TensorSpec("F32", (2, 3)), "n": TensorSpec("I64", ())}


def test_foreign_safetensors_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, path, metadata={"format": "pt"})
    sidecar_path(path).write_text("{}")
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*not a lesionsoup"):
        load_checkpoint(path)


def test_file_that_is_not_safetensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"this is not a tensor file at all")
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*not a readable"):
        load_metadata(path)


def test_truncated_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"w": torch.arange(100.0)}, {})
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_state_dict(path)


def test_missing_sidecar_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"w": torch.zeros(2)}, {})
    sidecar_path(path).unlink()
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "model.json"))):
        load_checkpoint(path)


def test_corrupt_sidecar_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"w": torch.zeros(2)}, {})
    sidecar_path(path).write_text('{"step": ')
    with pytest.raises(CheckpointError, match="model.json: corrupt"):
        load_metadata(path)


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="absent.safetensors: checkpoint not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_bad_arguments_leave_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must end in .safetensors"):
        save_checkpoint(tmp_path / "model.pt", {"w": torch.zeros(2)}, {})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path / "model.safetensors", {"w": torch.zeros(2)}, {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_state_digest_identifies_content_not_order() -> None:
    state = {"a": torch.arange(4.0), "b": torch.ones(2, dtype=torch.bfloat16)}
    reordered = {"b": state["b"].clone(), "a": state["a"].clone()}
    assert state_digest(state) == state_digest(reordered)
    changed = dict(state, a=torch.tensor([0.0, 1.0, 2.0, 3.5]))
    assert state_digest(changed) != state_digest(state)
    assert state_digest({"a": state["a"].reshape(2, 2), "b": state["b"]}) != state_digest(state)


def test_modules_never_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    import lesionsoup.merging.averaging as merge

    for module in (checkpoint, merge):
        source = Path(module.__file__).read_text()
        assert not re.search(r"torch\.(save|load)\(|import pickle|pickle\.", source), (
            module.__name__
        )

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle used")

    for target, name in ((torch, "save"), (torch, "load"), (pickle, "dump"), (pickle, "load")):
        monkeypatch.setattr(target, name, refuse)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"w": torch.ones(3)}, {"init_id": "x"})
    assert torch.equal(load_checkpoint(path)[0]["w"], torch.ones(3))


def test_relabelled_checkpoint_shares_the_weights_with_new_metadata(tmp_path: Path) -> None:
    source = tmp_path / "run" / "best.safetensors"
    source.parent.mkdir()
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    save_checkpoint(source, state, {"step": 4})
    target = tmp_path / "trial" / "best.safetensors"
    target.parent.mkdir()
    relabel_checkpoint(source, target, {"step": 4, "trial": 7})
    weights, meta = load_checkpoint(target)
    assert torch.equal(weights["w"], state["w"]) and meta == {"step": 4, "trial": 7}
    assert load_metadata(source) == {"step": 4}
    assert target.stat().st_ino == source.stat().st_ino  # stored once


@pytest.fixture
def full_disk():
    """Files may grow to 64 KiB: a write past that fails with EFBIG, as on a full disk
    (SIGXFSZ ignored, so the write returns an error instead of killing the process)."""
    import resource
    import signal

    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
    yield
    resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize(
    "write",
    [
        lambda path: atomic_write_bytes(path, bytes(200_000)),
        lambda path: save_checkpoint(path, {"w": torch.zeros(50_000)}, {}),
    ],
    ids=["atomic-write", "checkpoint"],
)
def test_a_full_disk_names_the_file_and_leaves_no_partial_file(tmp_path, full_disk, write):
    path = tmp_path / "model.safetensors"
    with pytest.raises(WriteError, match="File too large") as error:
        write(path)
    assert str(error.value).startswith(f"{path}: cannot be written")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary
