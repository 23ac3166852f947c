"""Filter-normalised perturbations (Li et al. 2018) against a hand-worked quadratic loss."""

import pytest
import torch

from lesionsoup.analysis.sharpness import (
    filter_normalised_direction,
    perturbation_losses,
    sharpness,
)


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )


def test_each_filter_of_a_direction_has_the_norm_of_its_weights_filter():
    model = small_model()
    direction = filter_normalised_direction(model, torch.Generator().manual_seed(1))
    for name, weight in model.named_parameters():
        if weight.dim() == 1:  # biases and BatchNorm parameters stay put
            assert not direction[name].any(), name
            continue
        for filter_index in range(weight.shape[0]):
            expected = torch.linalg.vector_norm(weight.detach()[filter_index])
            got = torch.linalg.vector_norm(direction[name][filter_index])
            assert got == pytest.approx(float(expected), rel=1e-5), (name, filter_index)


def test_loss_increase_of_a_quadratic_bowl_matches_the_hand_worked_value():
    """With L(w) = c * sum of squared weights (matrices only) and ||d|| = ||w|| filter
    by filter, L(w + r d) - L(w) = c (2 r <w, d> + r^2 ||w||^2): the linear term cancels
    in increase(2r) - 2 increase(r) = 2 c r^2 ||w||^2, whatever the direction."""
    model, curvature, radius = small_model(), 3.0, 0.1

    def loss(module: torch.nn.Module) -> float:
        return curvature * sum(
            float((w.detach() ** 2).sum()) for w in module.parameters() if w.dim() > 1
        )

    squared_norm = loss(model) / curvature
    before = [w.detach().clone() for w in model.parameters()]
    table = perturbation_losses(model, loss, [radius, 2 * radius], directions=4, seed=7)
    for _, rows in table.groupby("direction"):
        near, far = rows.sort_values("radius")["increase"].tolist()
        assert far - 2 * near == pytest.approx(2 * curvature * radius**2 * squared_norm, rel=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    means = sharpness(table)
    assert list(means.index) == [radius, 2 * radius] and means.iloc[1] > means.iloc[0]
    again = perturbation_losses(model, loss, [radius, 2 * radius], directions=4, seed=7)
    assert again.equals(table)


def test_bad_radii_are_refused():
    with pytest.raises(ValueError, match="positive radii"):
        perturbation_losses(small_model(), lambda model: 0.0, [0.0])
