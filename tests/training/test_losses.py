import pytest
import segmentation_models_pytorch as smp
import torch

from lesionsoup.core.lesions import Lesion
from lesionsoup.training.losses import (
    DiceOptions,
    LossWeights,
    priority_labels,
    segmentation_loss,
    softmax_loss,
)

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


def _dice_only(logits, labels, lesions, options):
    """The softmax head's Dice term alone, on a class-index map (0 = background)."""
    target = torch.stack([(labels == k + 1).float() for k in range(len(lesions))], dim=1)
    valid = torch.ones(labels.shape[0], 1, *labels.shape[1:])
    return softmax_loss(logits, target, valid, LossWeights(dice=1.0, bce=0.0), lesions, options)


def test_dice_options_on_a_hand_worked_case():
    # one 2x2 image, EX only; all logits 0, so every pixel has p(background) = p(EX) = 0.5
    logits = torch.zeros(1, 2, 2, 2)
    one_ex = torch.tensor([[[1, 0], [0, 0]]])
    # EX: I = 0.5, P = 2, T = 1; background: I = 1.5, P = 2, T = 3
    ex, background = 1 - 1.0 / 3.0, 1 - 3.0 / 5.0
    expected = {
        DiceOptions(smooth=0.0): ex,
        DiceOptions(smooth=0.0, background=True): (ex + background) / 2,
        DiceOptions(smooth=0.4, background=True): ((1 - 1.4 / 3.4) + (1 - 3.4 / 5.4)) / 2,
    }
    for options, value in expected.items():
        got = _dice_only(logits, one_ex, (Lesion.EX,), options)
        assert got.item() == pytest.approx(value), options
    # no EX pixel: EX Dice is 0 (loss 1) when kept, adds 0 when skipped; background I=2, T=4
    no_ex = torch.zeros(1, 2, 2, dtype=torch.long)
    kept = DiceOptions(smooth=0.0, background=True, absent="keep")
    skipped = DiceOptions(smooth=0.0, background=True, absent="skip")
    assert _dice_only(logits, no_ex, (Lesion.EX,), kept).item() == pytest.approx((1 + 1 / 3) / 2)
    assert _dice_only(logits, no_ex, (Lesion.EX,), skipped).item() == pytest.approx(1 / 6)


@pytest.mark.parametrize("absent_class", [None, 3])
def test_authors_dice_equals_segmentation_models_pytorch_dice_loss(absent_class):
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 5, 16, 16, generator=generator) * 3
    labels = torch.randint(0, 5, (3, 16, 16), generator=generator)
    if absent_class is not None:
        labels[labels == absent_class] = 0
    reference = smp.losses.DiceLoss(mode="multiclass", smooth=0.4)(logits, labels)
    # segmentation_models_pytorch >= 0.4 computes Dice as a Tversky score, (I + s) /
    # (I + FP / 2 + FN / 2 + s) = (2I + 2s) / (P + T + 2s): its smooth s is our 2s
    ours = _dice_only(logits, labels, LESIONS, DiceOptions(0.8, background=True, absent="skip"))
    torch.testing.assert_close(ours, reference)
    kept = _dice_only(logits, labels, LESIONS, DiceOptions(0.8, background=True, absent="keep"))
    assert (kept > ours) == (absent_class is not None)


def test_dice_options_are_checked():
    with pytest.raises(ValueError, match="dice_absent must be 'keep' or 'skip'"):
        DiceOptions(absent="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dice_smooth must not be negative"):
        DiceOptions(smooth=-1.0)
