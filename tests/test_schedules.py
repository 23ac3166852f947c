import math

import pytest

from lesionsoup.core.schedules import Schedule


def test_triangular_minimum_exactly_at_snapshot_steps():
    schedule = Schedule("triangular", lr=1e-5, min_lr=1e-8, steps=40, cycle_steps=8)
    assert schedule.snapshot_steps() == [4, 12, 20, 28, 36]
    rates = [schedule.lr_at(step) for step in range(40)]
    for step in schedule.snapshot_steps():
        assert rates[step] == pytest.approx(1e-8, rel=1e-9)
        assert rates[step] == min(rates)
    assert rates[0] == rates[8] == pytest.approx(1e-5)
    # linear between a maximum and the next minimum
    assert rates[2] == pytest.approx((1e-5 + 1e-8) / 2)


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
        {"kind": "triangular", "lr": 1, "steps": 10, "cycle_steps": 3},
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
