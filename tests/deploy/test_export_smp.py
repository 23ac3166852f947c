"""export --format smp: folders segmentation_models_pytorch loads, and Hub ids predict reads.

The references are the ecosystem's own: ``smp.from_pretrained`` (strict) builds and fills
the model from the exported folder alone, and huggingface_hub's ``scan_cache_dir`` and
smp's own Hub loading accept the hand-made cache the Hub id is read from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from huggingface_hub import ModelCard
from support.predict import save_random_model
from test_export import TRAINING, _assert_same, _probabilities, photographs  # noqa: F401

from lesionsoup.cli import main
from lesionsoup.commands.predict import EXPORT_FORMATS
from lesionsoup.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec
from lesionsoup.deploy.export import LAYOUTS, export_model
from lesionsoup.deploy.models import EXPORT_FILE, model_info
from lesionsoup.inference.predictor import load_predictor, spec_of, write_ensemble
from lesionsoup.merging.averaging import average_checkpoints

SPECS = {
    depth: ModelSpec(
        encoder="resnet18",
        encoder_weights=None,
        encoder_depth=depth,
        decoder_channels=(32, 16, 8, 8, 4)[:depth],
        lesions=("MA", "HE", "EX"),
    )
    for depth in (3, 5)
}
HUB_ID = "lesionsoup-test/tiny-unet"


def _save(path: Path, spec: ModelSpec, seed: int, **metadata: object) -> Path:
    torch.manual_seed(seed)
    model = build_model(spec)
    with torch.no_grad():  # BatchNorm statistics other than the defaults, so they count
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean"):
                tensor.uniform_(-0.1, 0.1)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model.state_dict(), {"architecture": spec.as_dict(), **metadata})
    return path


def _lesionsoup_logits(checkpoint: Path, image: torch.Tensor) -> torch.Tensor:
    state, metadata = load_checkpoint(checkpoint)
    model = build_model(spec_of(checkpoint, metadata))
    model.load_state_dict(state)
    with torch.no_grad():
        return model.eval()(image)


def _smp_logits(folder: Path | str, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return smp.from_pretrained(str(folder)).eval()(image)


IMAGE = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("depth", [3, 5])
def test_smp_from_pretrained_gives_the_checkpoints_outputs(tmp_path, depth):
    checkpoint = _save(tmp_path / "run" / "best.safetensors", SPECS[depth], seed=depth)
    export_model(checkpoint, tmp_path / "export", size=64, layout="smp")
    folder = tmp_path / "export"
    assert {"config.json", "model.safetensors", "model.json", "README.md", EXPORT_FILE} <= {
        p.name for p in folder.iterdir()
    }
    expected = _lesionsoup_logits(checkpoint, IMAGE)
    assert expected.std() > 0
    shutil.rmtree(tmp_path / "run")
    assert torch.equal(_smp_logits(folder, IMAGE), expected)  # from_pretrained loads strictly
    config = json.loads((folder / "config.json").read_text())
    assert config["_model_class"] == "Unet" and config["encoder_depth"] == depth
    card = ModelCard.load(folder / "README.md")  # the Hub's own reading of a model card
    assert card.data.library_name == "segmentation-models-pytorch"
    assert "smp.from_pretrained" in card.text and "lesionsoup predict" in card.text


def test_a_trimmed_checkpoint_alone_does_not_load_strictly_into_smp(tmp_path):
    """The failure the smp layout fixes: smp keeps the stages lesionsoup drops at depth 3."""
    state, _ = load_checkpoint(_save(tmp_path / "m.safetensors", SPECS[3], seed=0))
    model = smp.Unet(
        "resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8), classes=3
    )
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*encoder\.layer4"):
        model.load_state_dict(state)


def test_smp_loads_an_exported_soup(tmp_path):
    ingredients = [
        _save(tmp_path / f"i{i}.safetensors", SPECS[3], seed=i, init_id="shared") for i in range(2)
    ]
    soup = tmp_path / "soup.safetensors"
    metadata = {"architecture": SPECS[3].as_dict(), "ingredients": [str(p) for p in ingredients]}
    save_checkpoint(soup, average_checkpoints(ingredients), {**metadata, "rule": "uniform"})
    export_model(soup, tmp_path / "export", size=64, layout="smp")
    assert model_info(tmp_path / "export").method == "soup"
    expected = _lesionsoup_logits(soup, IMAGE)
    assert not torch.equal(expected, _lesionsoup_logits(ingredients[0], IMAGE))
    assert torch.equal(_smp_logits(tmp_path / "export", IMAGE), expected)


def test_predict_on_the_smp_folder_equals_predict_on_the_checkpoint(tmp_path, photographs):  # noqa: F811
    model = save_random_model(tmp_path / "run" / "best.safetensors", **TRAINING)
    direct = _probabilities(model, photographs, tmp_path / "direct", size=96)
    main(["export", str(model), "-o", str(tmp_path / "export"), "--size", "96", "--format", "smp"])
    shutil.rmtree(tmp_path / "run")
    _assert_same(direct, _probabilities(tmp_path / "export", photographs, tmp_path / "via"))


def test_an_exported_ensemble_is_a_folder_of_smp_models(tmp_path, photographs):  # noqa: F811
    members = [save_random_model(tmp_path / "m" / f"s{i}.safetensors", seed=i) for i in range(2)]
    ensemble = tmp_path / "m" / "ensemble.json"
    write_ensemble(ensemble, members, {"selection": "top-2"}, weights=[1, 3])
    direct = _probabilities(ensemble, photographs, tmp_path / "direct", size=64)
    expected = [_lesionsoup_logits(member, IMAGE) for member in members]
    export_model(ensemble, tmp_path / "export", size=64, layout="smp")
    shutil.rmtree(tmp_path / "m")
    folder = tmp_path / "export"
    for index, logits in enumerate(expected):
        member = folder / "members" / f"member_{index:02d}"
        assert torch.equal(_smp_logits(member, IMAGE), logits)
        assert model_info(member).cache_size == 64 and model_info(member).method == "single"
    written = json.loads((folder / "ensemble.json").read_text())
    assert written["averaging"]["rule"] == "weighted-mean-of-probabilities"
    assert written["weights"] == [0.25, 0.75] and written["selection"] == "top-2"
    _assert_same(direct, _probabilities(folder, photographs, tmp_path / "via"))


def _hub_cache(cache: Path, folder: Path, repo_id: str, commit: str) -> Path:
    """``folder`` as the Hub client stores a download in ``cache``: each file a blob named by
    its SHA-256, linked from ``snapshots/<commit>/``, and ``refs/main`` naming the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, blob)
        link = repo / "snapshots" / commit / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(*[".."] * (len(link.relative_to(repo).parts) - 1), "blobs", blob.name))
    return repo


def test_a_hub_id_is_predicted_from_the_local_cache_without_network(
    tmp_path,
    photographs,  # noqa: F811
    no_network,
    monkeypatch,
):
    from huggingface_hub import constants, scan_cache_dir

    model = save_random_model(tmp_path / "run" / "best.safetensors", **TRAINING)
    export_model(model, tmp_path / "export", size=96, layout="smp")
    commit = "0123456789abcdef0123456789abcdef01234567"
    _hub_cache(tmp_path / "hub", tmp_path / "export", HUB_ID, commit)
    scan = scan_cache_dir(tmp_path / "hub")  # the Hub client's own reading of the layout
    assert scan.warnings == []
    files = {f.file_name for repo in scan.repos for f in repo.refs["main"].files}
    assert {"config.json", "model.safetensors", "model.json", EXPORT_FILE} <= files
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # for subprocesses
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # this process read it at import
    via_folder = _probabilities(tmp_path / "export", photographs, tmp_path / "folder")
    _assert_same(via_folder, _probabilities(Path(HUB_ID), photographs, tmp_path / "hub-id"))
    _assert_same(
        via_folder, _probabilities(Path(f"{HUB_ID}@{commit}"), photographs, tmp_path / "r")
    )
    recorded = json.loads((tmp_path / "hub-id" / "predict.json").read_text())
    assert recorded["model"] == HUB_ID and commit in recorded["model_file"]
    assert torch.equal(_smp_logits(HUB_ID, IMAGE), _smp_logits(tmp_path / "export", IMAGE))
    assert no_network == []


def test_a_hub_id_missing_from_the_cache_says_what_to_fetch(tmp_path, no_network, photographs):  # noqa: F811
    """Not in offline mode either: the cache alone is read, so nothing tries the network."""
    with pytest.raises(CheckpointError) as raised:
        _probabilities(Path(HUB_ID), photographs, tmp_path / "out")
    message = str(raised.value)
    assert HUB_ID in message and f"hf download {HUB_ID}" in message and "empty-hf" in message
    assert no_network == []
    with pytest.raises(CheckpointError, match=r"missing\.safetensors: model file not found"):
        model_info(tmp_path / "missing.safetensors")


def test_a_plain_smp_folder_is_refused_with_how_to_export_one(tmp_path, photographs):  # noqa: F811
    smp.Unet(
        "resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8)
    ).save_pretrained(tmp_path / "plain")
    with pytest.raises(CheckpointError, match=r"plain: not an exported .*--format smp"):
        _probabilities(tmp_path / "plain", photographs, tmp_path / "out", size=64)


def test_lesionsoup_loads_the_full_smp_weights_but_no_others(tmp_path):
    checkpoint = _save(tmp_path / "m.safetensors", SPECS[3], seed=0)
    export_model(checkpoint, tmp_path / "export", size=64, layout="smp")
    state, _ = load_checkpoint(tmp_path / "export" / "model.safetensors")
    assert any(key.startswith("encoder.layer4.") for key in state)
    assert not any(state[key].any() for key in state if key.startswith("encoder.layer4."))
    del state["decoder.blocks.0.conv1.0.weight"]
    save_checkpoint(tmp_path / "broken.safetensors", state, {"architecture": SPECS[3].as_dict()})
    with pytest.raises(
        CheckpointError,
        match=r"(?s)broken\.safetensors: weights do not fit.*decoder.blocks.0.conv1.0.weight",
    ):
        load_predictor(tmp_path / "broken.safetensors")


def test_export_formats_and_errors(tmp_path):
    assert EXPORT_FORMATS == LAYOUTS
    with pytest.raises(ValueError, match="unknown export format 'onnx'"):
        export_model(tmp_path / "any.safetensors", tmp_path / "out", layout="onnx")
    assert not (tmp_path / "out").exists()
