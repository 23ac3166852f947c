import math

import pytest

from lesionsoup.core.schedules import Schedule


def fissionfusion_schedule(iterations_per_epoch, cycle=4, lr_1=1e-5, lr_2=1e-8):
    """FissionFusion's ``fgg.py``, scripted by hand from its definition: epochs 1 to 17, each of
    ``N`` iterations at ``cyclic_learning_rate(epoch, cycle, LR1, LR2)(i / N)``, a checkpoint
    after every epoch with ``(epoch % cycle + 1) == cycle // 2``.

    Returns the rate of every iteration and the 0-based iterations a checkpoint follows.
    """
    rates, saved = [], []
    for epoch in range(1, 18):
        for i in range(iterations_per_epoch):
            t = ((epoch % cycle) + i / iterations_per_epoch) / cycle
            if t < 0.5:
                rates.append(lr_1 * (1.0 - 2.0 * t) + lr_2 * 2.0 * t)
            else:
                rates.append(lr_1 * (2.0 * t - 1.0) + lr_2 * (2.0 - 2.0 * t))
        if (epoch % cycle + 1) == cycle // 2:
            saved.append(len(rates) - 1)
    return rates, saved


@pytest.mark.parametrize("iterations_per_epoch", [1, 2, 5, 50])
def test_triangular_schedule_is_fissionfusions(iterations_per_epoch):
    rates, saved = fissionfusion_schedule(iterations_per_epoch)
    schedule = Schedule(
        "triangular",
        lr=1e-5,
        min_lr=1e-8,
        steps=17 * iterations_per_epoch,
        cycle_steps=4 * iterations_per_epoch,
    )
    assert [schedule.lr_at(step) for step in range(schedule.steps)] == pytest.approx(
        rates, rel=1e-9, abs=1e-18
    )
    assert schedule.snapshot_steps() == saved
    n = iterations_per_epoch
    assert saved == [n - 1, 5 * n - 1, 9 * n - 1, 13 * n - 1, 17 * n - 1]  # epochs 1, 5, ..., 17


def test_triangular_run_starts_mid_descent_and_snapshots_before_each_minimum():
    schedule = Schedule("triangular", lr=1.0, min_lr=0.0, steps=34, cycle_steps=8)
    rates = [schedule.lr_at(step) for step in range(34)]
    assert rates[0] == pytest.approx(0.5)  # a quarter cycle in: halfway down
    assert schedule.snapshot_steps() == [1, 9, 17, 25, 33]
    for step in schedule.snapshot_steps():  # the last update of a descent, the minimum next
        assert rates[step] == pytest.approx(0.25) and rates[step - 1] > rates[step]
        if step + 1 < 34:
            assert rates[step + 1] == 0.0
    assert rates[6] == pytest.approx(1.0)  # the maximum, a whole cycle after the minimum
    with pytest.raises(ValueError, match="cycle_steps >= 2"):
        Schedule("triangular", lr=1.0, steps=4, cycle_steps=1)


def test_cosine_warmup_then_decay_to_min():
    schedule = Schedule("cosine", lr=1.0, steps=11, warmup_steps=2, min_lr=0.1)
    assert schedule.lr_at(0) == 0.5 and schedule.lr_at(1) == 1.0
    assert schedule.lr_at(2) == pytest.approx(1.0)
    assert schedule.lr_at(10) == pytest.approx(0.1)
    rates = [schedule.lr_at(step) for step in range(2, 11)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_swa_anneals_then_snapshots_at_cycle_ends():
    constant = Schedule("swa", lr=0.01, start_lr=0.1, steps=20, warmup_steps=4, cycle_steps=4)
    assert constant.lr_at(3) == pytest.approx(0.01)
    assert all(constant.lr_at(step) == 0.01 for step in range(4, 20))
    assert constant.snapshot_steps() == [7, 11, 15, 19]
    cyclic = Schedule(
        "swa", lr=0.01, start_lr=0.1, steps=20, warmup_steps=4, cycle_steps=4, cyclic=True
    )
    for step in cyclic.snapshot_steps():  # cycle ends have the lowest rate of the cycle
        assert cyclic.lr_at(step) == pytest.approx(0.01)
        assert cyclic.lr_at(step - 3) > cyclic.lr_at(step)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "bogus", "lr": 1, "steps": 1},
        {"kind": "triangular", "lr": 1, "steps": 10, "cycle_steps": 0},
        {"kind": "swa", "lr": 1, "steps": 10},
        {"kind": "cosine", "lr": 0, "steps": 10},
    ],
)
def test_invalid_schedules_are_refused(kwargs):
    with pytest.raises(ValueError):
        Schedule(**kwargs)


def test_constant_schedule_has_no_snapshots():
    schedule = Schedule("constant", lr=0.5, steps=5)
    assert schedule.snapshot_steps() == []
    assert all(math.isclose(schedule.lr_at(s), 0.5) for s in range(5))
