"""FGG as FissionFusion's fgg.py: from the base's best checkpoint, with its AdamW moments.

The optimiser state a base run publishes is read back here with safetensors
directly and put into a ``torch.optim.AdamW`` by hand, and the FGG run's first
update is compared to that optimiser's first step on the same batch.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import quiet_options
from safetensors import safe_open
from test_train import SETTINGS, SPEC
from torch.utils.data import default_collate

from lesionsoup.core import paths
from lesionsoup.core.checkpoint import load_checkpoint, load_metadata
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.losses import LossWeights, segmentation_loss
from lesionsoup.training.resume import load_optimizer, save_optimizer
from lesionsoup.training.run import train_run
from lesionsoup.training.run_folder import publish_init
from lesionsoup.training.sampling import PatchDataset, PatchSampler

#: An FGG continuation's settings as plan.ingredients.settings_for makes them: the base's
#: settings with the triangular schedule; one update, so its result is the first step's.
FGG = TrainSettings(
    **{
        **SETTINGS.as_dict(),
        "schedule": "triangular",
        "steps": 1,
        "lr": 1e-3,
        "min_lr": 1e-5,
        "cycle_steps": 4,
        "warmup_steps": 0,
        "early_stopping": 0,
    }
)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Caches, a shared initialisation and a finished base run that kept its optimiser state."""
    from conftest import write_toy_cache

    root = tmp_path_factory.mktemp("fgg")
    caches = {
        name: Cache(write_toy_cache(root / name, name, seed=index))
        for index, name in enumerate(("AAA", "BBB"))
    }
    warmup = TrainSettings(**{**SETTINGS.as_dict(), "steps": 2, "freeze_encoder": True})
    _train(root / "warmup", caches, warmup)
    publish_init(root / "warmup", root / "init.safetensors")
    _train(
        root / "base", caches, SETTINGS, init=root / "init.safetensors", keep_optimizer=("best",)
    )
    return root, caches


def _train(run, caches, settings, **kwargs):
    return train_run(run, caches, SPEC, settings, quiet_options(**kwargs))


def _state_by_hand(path):
    """The published optimiser state read with safetensors alone: per parameter index, its
    named tensors; and the groups from the header."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    with safe_open(path, framework="pt") as handle:
        header = json.loads(handle.metadata()["lesionsoup-optimizer"])
        for key in handle.keys():  # noqa: SIM118
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = handle.get_tensor(key)
    return state, header["param_groups"]


def _first_step_by_hand(caches, start, state):
    """The FGG run's first update done with a plain torch AdamW holding ``state``."""
    model = build_model(SPEC)
    model.load_state_dict(load_checkpoint(start)[0])
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=FGG.lr_schedule.lr_at(0), weight_decay=FGG.weight_decay
    )
    for index, slots in state.items():
        optimizer.state[parameters[index]] = {name: value.clone() for name, value in slots.items()}
    sampler = PatchSampler.for_training(dict(caches), FGG, SPEC.lesion_classes, FGG.seed)
    dataset = PatchDataset(sampler, build_augmentation(FGG.augmentation), length=FGG.batch_size)
    batch = default_collate([dataset[index] for index in range(len(dataset))])
    logits = model(batch["image"])
    weights = LossWeights(dice=FGG.dice_weight, bce=FGG.bce_weight)
    loss = segmentation_loss(
        logits, batch["target"], batch["valid"], weights, SPEC.head, SPEC.lesion_classes
    )
    optimizer.zero_grad()
    loss.backward()
    if FGG.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), FGG.grad_clip)
    optimizer.step()
    return model.state_dict()


def _max_difference(a, b):
    return max((a[name].float() - b[name].float()).abs().max().item() for name in a)


def test_base_publishes_the_adamw_state_of_its_best_checkpoint(base):
    root, _ = base
    published = root / "base" / paths.OPTIMIZER_FOLDER / paths.optimizer_file("best")
    state, groups = _state_by_hand(published)
    best = load_metadata(root / "base" / "best.safetensors")
    assert {int(slots["step"]) for slots in state.values()} == {best["step"]}
    assert set(state[0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert groups[0]["weight_decay"] == SETTINGS.weight_decay
    assert not (root / "base" / ".work").exists()


def test_runs_not_asked_keep_an_empty_optimizer_folder(base, tmp_path):
    root, caches = base
    _train(tmp_path / "plain", caches, SETTINGS, init=root / "init.safetensors")
    assert list((tmp_path / "plain" / paths.OPTIMIZER_FOLDER).iterdir()) == []
    # asked later (an FGG run now starts from it): the run is retrained to keep its state
    _train(
        tmp_path / "plain",
        caches,
        SETTINGS,
        init=root / "init.safetensors",
        keep_optimizer=("best",),
    )
    assert (tmp_path / "plain" / paths.OPTIMIZER_FOLDER / paths.optimizer_file("best")).is_file()


def test_fgg_first_step_uses_the_base_runs_adamw_moments(base, tmp_path):
    root, caches = base
    start = root / "base" / "best.safetensors"
    published = root / "base" / paths.OPTIMIZER_FOLDER / paths.optimizer_file("best")
    _train(tmp_path / "fgg", caches, FGG, init=start, init_optimizer=published)
    fgg = load_checkpoint(tmp_path / "fgg" / "last.safetensors")[0]
    carried = _first_step_by_hand(caches, start, _state_by_hand(published)[0])
    fresh = _first_step_by_hand(caches, start, {})
    assert _max_difference(fgg, carried) < 1e-6
    assert _max_difference(fgg, fresh) > 1e-4  # a fresh AdamW's first step is another one
    # and without the state the run takes the fresh step: the difference is the state alone
    _train(tmp_path / "fresh", caches, FGG, init=start)
    assert (
        _max_difference(load_checkpoint(tmp_path / "fresh" / "last.safetensors")[0], fresh) < 1e-6
    )


def test_optimizer_state_of_another_model_is_refused_naming_the_file(tmp_path):
    small, large = torch.nn.Linear(2, 2), torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(small.parameters())
    small(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    path = tmp_path / "state.safetensors"
    save_optimizer(path, optimizer)
    with pytest.raises(ValueError, match="state.safetensors.*another model"):
        load_optimizer(path, torch.optim.AdamW(large.parameters()))
    path.write_bytes(b"not a state")
    with pytest.raises(ValueError, match="state.safetensors: not a readable optimiser state"):
        load_optimizer(path, optimizer)
