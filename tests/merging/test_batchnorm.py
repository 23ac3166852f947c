"""The recompute BatchNorm policy on augmented training patches, against torch's own update_bn."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import jsonschema
import pytest
import torch
import yaml
from conftest import TINY_SPEC
from support import REPO
from torch.optim.swa_utils import update_bn

from lesionsoup.core.merge_rules import BN_POLICIES, EPOCH, BatchNormSample
from lesionsoup.core.model import build_model
from lesionsoup.core.report_defaults import REPORT_DEFAULTS
from lesionsoup.core.specs import TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.merging.batchnorm import (
    POLICY_FUNCTIONS,
    PolicyInputs,
    batchnorm_recompute,
    epoch_patches,
    recompute_bn,
    recompute_patches,
)
from lesionsoup.plan.options import BN_SAMPLE_OPTIONS, add_options, bn_sample
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.sampling import PatchDataset

SPEC = TINY_SPEC
SETTINGS = TrainSettings(patch_size=32, augmentation="heavy", lesion_fraction=0.7)
SCHEMAS = REPO / "workflow" / "schemas"


@pytest.fixture
def caches(toy_caches: dict[str, Path]) -> dict[str, Cache]:
    return {name: Cache(path) for name, path in toy_caches.items()}


def stale_model(seed: int = 0) -> torch.nn.Module:
    """A model whose running statistics and momenta are far from anything recomputed."""
    torch.manual_seed(seed)
    model = build_model(SPEC)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.fill_(3.0)
                module.running_var.fill_(7.0)
                module.num_batches_tracked.fill_(1000)
                module.momentum = 0.3
    return model.eval()


def statistics(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: tensor
        for name, tensor in model.state_dict().items()
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
    }


def test_an_epoch_equivalent_tiles_every_training_image_once(caches) -> None:
    # two toy caches of 64 x 64 pixels with 4 training images each (hand-worked counts)
    assert epoch_patches(caches, 32) == 8 * 2**2
    assert epoch_patches(caches, 48) == 8 * 2**2  # a partial tile counts as one
    assert epoch_patches(caches, 64) == 8
    assert epoch_patches(caches, 20) == 8 * 4**2
    assert epoch_patches({"AAA": caches["AAA"]}, 32) == 4 * 2**2
    assert len(recompute_patches(caches, SPEC, SETTINGS, BatchNormSample())) == 32
    assert len(recompute_patches(caches, SPEC, SETTINGS, BatchNormSample(patches=5))) == 5


def test_recompute_equals_torch_update_bn_on_the_same_augmented_batches(caches) -> None:
    sample = BatchNormSample(patches=EPOCH, batch_size=6, seed=3)
    recompute = batchnorm_recompute(caches, SPEC, SETTINGS, sample)
    assert recompute.patches == 32
    images = [batch["image"] for batch in recompute.batches]
    assert [len(batch) for batch in images] == [6] * 5 + [2]
    # the batches are augmented: the same draws without augmentation give other pixels
    plain = PatchDataset(recompute.batches.dataset.sampler, build_augmentation("none"), 32)
    assert not torch.equal(torch.cat(images), torch.stack([plain[i]["image"] for i in range(32)]))

    state = stale_model(1).state_dict()
    ours = POLICY_FUNCTIONS["recompute"](dict(state), PolicyInputs([], lambda w: 0.0, recompute))
    theirs = stale_model(1)
    update_bn(images, theirs)
    reference = statistics(theirs)
    assert reference.keys() == {name for name in ours if name in reference}
    largest = max(
        float((ours[name].double() - ref.double()).abs().max()) for name, ref in reference.items()
    )
    assert largest <= 1e-5, largest
    tracked = [name for name in reference if name.endswith("num_batches_tracked")]
    assert all(int(ours[name]) == 6 for name in tracked)
    means = [name for name in reference if name.endswith("running_mean")]
    assert all(not torch.allclose(ours[name], state[name]) for name in means)  # stale ones gone


def test_recompute_restores_momenta_and_mode(caches) -> None:
    recompute = batchnorm_recompute(caches, SPEC, SETTINGS, BatchNormSample(patches=4))
    model = stale_model()
    recompute_bn(model, recompute.batches)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not model.training and all(norm.momentum == 0.3 for norm in norms)
    assert all(int(norm.num_batches_tracked) == math.ceil(4 / 8) for norm in norms)


def test_recompute_is_reproducible_and_seeded(caches) -> None:
    def recomputed(seed: int, workers: int = 0) -> dict[str, torch.Tensor]:
        sample = BatchNormSample(8, 4, seed)
        recompute = batchnorm_recompute(caches, SPEC, SETTINGS, sample, workers=workers)
        state = stale_model().state_dict()
        return POLICY_FUNCTIONS["recompute"](state, PolicyInputs([], lambda w: 0.0, recompute))

    first, again, other = recomputed(0), recomputed(0, workers=2), recomputed(1)
    means = [name for name in first if name.endswith("running_mean")]
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert any(not torch.allclose(first[name], other[name]) for name in means)


def test_sample_counts_are_checked_and_parsed() -> None:
    for patches in (0, -3, "half", 2.5):
        with pytest.raises(ValueError, match="BatchNorm patches must be 'epoch' or >= 1"):
            BatchNormSample(patches=patches)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch size must be >= 2"):
        BatchNormSample(batch_size=1)
    parser = argparse.ArgumentParser()
    add_options(parser, BN_SAMPLE_OPTIONS)
    assert bn_sample(parser.parse_args([])) == BatchNormSample()
    assert bn_sample(parser.parse_args(["--bn-patches", "12"])).patches == 12
    assert bn_sample(parser.parse_args(["--bn-patches", "epoch"])).patches == EPOCH
    for wrong in ("many", "0", "-2"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--bn-patches", wrong])


def test_schemas_name_the_one_list_of_policies_and_the_epoch_default() -> None:
    merging = yaml.safe_load((SCHEMAS / "merging.schema.yaml").read_text())
    report = yaml.safe_load((SCHEMAS / "report.schema.yaml").read_text())
    connectivity = report["properties"]["connectivity"]["properties"]
    assert tuple(connectivity["bn_policies"]["items"]["enum"]) == BN_POLICIES
    assert connectivity["bn_policies"]["default"] == REPORT_DEFAULTS["connectivity"]["bn_policies"]
    assert set(BN_POLICIES) == set(POLICY_FUNCTIONS)
    sample = merging["properties"]["bn_recompute"]
    assert sample["properties"]["patches"]["default"] == EPOCH == BatchNormSample().patches
    for patches in (EPOCH, 1, 500):
        jsonschema.validate({"bn_recompute": {"patches": patches}}, merging)
    for patches in (0, "all", 1.5):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"bn_recompute": {"patches": patches}}, merging)
