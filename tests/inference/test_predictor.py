import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from support.predictor import save_tiny, tiny_spec

from lesionsoup.core.checkpoint import CheckpointError, sidecar_path
from lesionsoup.core.lesions import Lesion
from lesionsoup.inference.infer import InferenceSettings, predict
from lesionsoup.inference.predictor import load_predictor, read_ensemble, write_ensemble


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    folder = tmp_path_factory.mktemp("models")
    return {
        name: (folder / f"{name}.safetensors", save_tiny(folder / f"{name}.safetensors", seed))
        for seed, name in enumerate(("a", "b"))
    }


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_checkpoint_predicts_as_its_model(models, images):
    path, model = models["a"]
    predictor = load_predictor(path)
    assert predictor.lesions == (Lesion.EX, Lesion.HE, Lesion.MA, Lesion.CWS)
    assert predictor.device == torch.device("cpu")
    assert torch.equal(predictor.predict(images), predict(model, images, "sigmoid"))
    settings = InferenceSettings(tta=("vertical",), padding="zero")
    assert torch.equal(
        predictor.predict(images, settings), predict(model, images, "sigmoid", settings)
    )


def test_ensemble_of_one_equals_its_model_exactly(models, images, tmp_path):
    path, model = models["a"]
    ensemble = tmp_path / "one.json"
    write_ensemble(ensemble, [path])
    assert torch.equal(load_predictor(ensemble).predict(images), predict(model, images, "sigmoid"))


def test_ensemble_averages_probabilities(models, images, tmp_path):
    (path_a, model_a), (path_b, model_b) = models["a"], models["b"]
    probs_a, probs_b = predict(model_a, images, "sigmoid"), predict(model_b, images, "sigmoid")
    assert (probs_a - probs_b).abs().max() > 1e-3
    write_ensemble(tmp_path / "two.json", [path_a, path_b])
    torch.testing.assert_close(
        load_predictor(tmp_path / "two.json").predict(images), (probs_a + probs_b) / 2
    )
    write_ensemble(tmp_path / "weighted.json", [path_a, path_b], weights=[1, 3])
    torch.testing.assert_close(
        load_predictor(tmp_path / "weighted.json").predict(images), 0.25 * probs_a + 0.75 * probs_b
    )


def test_ensemble_averages_probabilities_not_logits(tmp_path, images):
    """A softmax and a sigmoid member: only probabilities are comparable."""
    sigmoid = save_tiny(tmp_path / "sigmoid.safetensors", 3)
    softmax = save_tiny(tmp_path / "softmax.safetensors", 4, head="softmax")
    members = [tmp_path / "sigmoid.safetensors", tmp_path / "softmax.safetensors"]
    write_ensemble(tmp_path / "mixed.json", members)
    expected = (predict(sigmoid, images, "sigmoid") + predict(softmax, images, "softmax")) / 2
    torch.testing.assert_close(load_predictor(tmp_path / "mixed.json").predict(images), expected)


def test_ensemble_file_is_relative_and_moves_with_its_folder(models, images, tmp_path):
    folder = tmp_path / "study"
    (folder / "ckpt").mkdir(parents=True)
    for name in ("a", "b"):
        source = models[name][0]
        shutil.copy(source, folder / "ckpt" / source.name)
        shutil.copy(sidecar_path(source), folder / "ckpt" / sidecar_path(source).name)
    members = [folder / "ckpt" / "a.safetensors", folder / "ckpt" / "b.safetensors"]
    write_ensemble(folder / "ens" / "e.json", members, {"rule": "ensemble", "combo": "DDR"})
    data = json.loads((folder / "ens" / "e.json").read_text())
    assert data["members"] == ["../ckpt/a.safetensors", "../ckpt/b.safetensors"]
    assert data["kind"] == "ensemble" and data["combo"] == "DDR"
    assert not [p for p in (folder / "ens").iterdir() if p.name != "e.json"]  # no temporary files
    shutil.move(folder, tmp_path / "moved")
    moved = load_predictor(tmp_path / "moved" / "ens" / "e.json")
    expected = [tmp_path / "moved" / "ckpt" / f"{name}.safetensors" for name in ("a", "b")]
    assert [m.path.resolve() for m in moved.members] == [path.resolve() for path in expected]
    probs = [predict(models[name][1], images, "sigmoid") for name in ("a", "b")]
    torch.testing.assert_close(moved.predict(images), (probs[0] + probs[1]) / 2)


def test_absolute_member_paths_and_weights_are_read(models, tmp_path):
    path_a, path_b = models["a"][0], models["b"][0]
    ensemble = tmp_path / "abs.json"
    members = [str(path_a), str(path_b)]
    ensemble.write_text(json.dumps({"kind": "ensemble", "members": members, "weights": [2, 6]}))
    paths, weights, _ = read_ensemble(ensemble)
    assert paths == [path_a, path_b] and weights == [0.25, 0.75]
    assert [m.weight for m in load_predictor(ensemble).members] == [0.25, 0.75]


def test_members_must_predict_the_same_lesions(models, tmp_path):
    other = tmp_path / "ex_only.safetensors"
    save_tiny(other, 5, lesions=("EX",))
    ensemble = tmp_path / "bad.json"
    members = [str(models["a"][0]), str(other)]
    ensemble.write_text(json.dumps({"kind": "ensemble", "members": members}))
    with pytest.raises(CheckpointError, match="different lesions") as error:
        load_predictor(ensemble)
    assert all(str(p) in str(error.value) for p in (ensemble, models["a"][0], other))
    with pytest.raises(CheckpointError, match="different lesions"):
        write_ensemble(tmp_path / "bad2.json", [models["a"][0], other])
    assert not (tmp_path / "bad2.json").exists()


def test_foreign_and_missing_files_are_named(models, tmp_path):
    missing = tmp_path / "missing.safetensors"
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors at all")
    no_sidecar = tmp_path / "lonely.safetensors"
    shutil.copy(models["a"][0], no_sidecar)
    cases = {
        missing: "not found",
        foreign: "not a lesionsoup checkpoint",
        garbage: "not a readable safetensors",
        no_sidecar: "sidecar",
    }
    for path, problem in cases.items():
        with pytest.raises(CheckpointError, match=problem) as error:
            load_predictor(path)
        assert str(path.with_suffix("")) in str(error.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"kind": "soup", "members": ["a.safetensors"]}', "unknown model file kind 'soup'"),
        ('{"architecture": {}}', "looks like a checkpoint sidecar"),
        ("[1, 2]", "unknown model file kind None"),
        ("{not json", "not a readable ensemble"),
        ('{"kind": "ensemble", "members": []}', "non-empty list"),
        ('{"kind": "ensemble", "members": ["x.pt"]}', "is not a .safetensors checkpoint"),
        ('{"kind": "ensemble", "members": ["gone.safetensors"]}', "gone.safetensors: checkpoint"),
        ('{"kind": "ensemble", "members": ["m.safetensors"], "weights": [-1]}', "'weights'"),
        ('{"kind": "ensemble", "members": ["m.safetensors"], "weights": [1, 1]}', "'weights'"),
    ],
)
def test_bad_ensemble_files_are_named(tmp_path, models, content, problem):
    shutil.copy(models["a"][0], tmp_path / "m.safetensors")
    shutil.copy(sidecar_path(models["a"][0]), tmp_path / "m.json")
    path = tmp_path / "ensemble.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match=problem) as error:
        load_predictor(path)
    assert str(tmp_path) in str(error.value)


def test_other_suffixes_and_bad_architectures_are_refused(models, tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match="model.pt: not a model file"):
        load_predictor(weights)
    broken = tmp_path / "broken.safetensors"
    shutil.copy(models["a"][0], broken)
    sidecar_path(broken).write_text(json.dumps({"architecture": {"encoder_depth": 2}}))
    with pytest.raises(CheckpointError, match="broken.json: no usable 'architecture'"):
        load_predictor(broken)
    wrong = tmp_path / "wrong.safetensors"
    shutil.copy(models["a"][0], wrong)
    spec = tiny_spec(decoder_channels=(16, 16, 8)).as_dict()
    sidecar_path(wrong).write_text(json.dumps({"architecture": spec}))
    with pytest.raises(CheckpointError, match="wrong.safetensors: weights do not fit"):
        load_predictor(wrong)


def test_write_ensemble_refuses_bad_requests(models, tmp_path):
    path_a = models["a"][0]
    with pytest.raises(ValueError, match="must end in .json"):
        write_ensemble(tmp_path / "e.yaml", [path_a])
    with pytest.raises(ValueError, match=r"may not set \['members'\]"):
        write_ensemble(tmp_path / "e.json", [path_a], {"members": []})
    with pytest.raises(ValueError, match="at least one member"):
        write_ensemble(tmp_path / "e.json", [])
    with pytest.raises(CheckpointError, match="'weights'"):
        write_ensemble(tmp_path / "e.json", [path_a], weights=[0])
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        write_ensemble(tmp_path / "e.json", [tmp_path / "missing.safetensors"])
    assert not (tmp_path / "e.json").exists()
