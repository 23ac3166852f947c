import torch

from lesionsoup.core.lesions import Lesion
from lesionsoup.training.losses import LossWeights, priority_labels, segmentation_loss

LESIONS = (Lesion.EX, Lesion.HE, Lesion.MA, Lesion.CWS)


def _batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 8, 8, generator=generator)
    target = (torch.rand(2, 4, 8, 8, generator=generator) > 0.7).float()
    valid = (torch.rand(2, 1, 8, 8, generator=generator) > 0.2).float()
    return logits, target, valid


def test_ignored_pixels_never_reach_the_loss():
    for head, channels in (("sigmoid", 4), ("softmax", 5)):
        logits, target, valid = _batch()
        logits = torch.randn(2, channels, 8, 8)
        logits.requires_grad_(True)
        loss = segmentation_loss(logits, target, valid, LossWeights(), head, LESIONS)
        loss.backward()
        ignored = valid.expand_as(logits) == 0
        assert torch.count_nonzero(logits.grad[ignored]) == 0
        # changing predictions and labels at ignored pixels changes nothing
        changed_logits = torch.where(ignored, torch.randn_like(logits) * 10, logits.detach())
        changed_target = torch.where(valid.expand_as(target) == 0, 1 - target, target)
        again = segmentation_loss(
            changed_logits, changed_target, valid, LossWeights(), head, LESIONS
        )
        torch.testing.assert_close(again, loss.detach())


def test_loss_prefers_correct_predictions_and_weights_apply():
    _, target, valid = _batch()
    good = (target * 2 - 1) * 8
    bad = -good
    weights = LossWeights()
    assert segmentation_loss(good, target, valid, weights, "sigmoid", LESIONS) < segmentation_loss(
        bad, target, valid, weights, "sigmoid", LESIONS
    )
    only_dice = segmentation_loss(good, target, valid, LossWeights(1, 0), "sigmoid", LESIONS)
    only_bce = segmentation_loss(good, target, valid, LossWeights(0, 1), "sigmoid", LESIONS)
    both = segmentation_loss(good, target, valid, LossWeights(1, 1), "sigmoid", LESIONS)
    torch.testing.assert_close(both, only_dice + only_bce)


def test_softmax_priority_ma_over_he_over_ex_over_cws():
    target = torch.zeros(1, 4, 1, 5)
    target[0, :, 0, 0] = 1  # all four: MA wins
    target[0, [0, 1, 3], 0, 1] = 1  # EX, HE, CWS: HE wins
    target[0, [0, 3], 0, 2] = 1  # EX, CWS: EX wins
    target[0, 3, 0, 3] = 1  # CWS alone
    labels = priority_labels(target, LESIONS)
    assert labels[0, 0].tolist() == [3, 2, 1, 4, 0]


def test_loss_is_float32_under_bf16_inputs():
    logits, target, valid = _batch()
    loss = segmentation_loss(logits.bfloat16(), target, valid, LossWeights(), "sigmoid", LESIONS)
    assert loss.dtype == torch.float32
