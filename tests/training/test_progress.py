"""Live progress: losses read back in bulk, the log line off a terminal, curves during a run."""

from __future__ import annotations

import csv
import logging
import math
import re
import sys

import pytest
import torch
from conftest import TINY_SETTINGS, TINY_SPEC, quiet_options

from lesionsoup.training import loop
from lesionsoup.training.progress import PendingSteps, ProgressLine, Step, StepRow, format_eta
from lesionsoup.training.run import RunOptions, train_run

SPEC = TINY_SPEC
SETTINGS = TINY_SETTINGS
LINE = re.compile(
    r"^(?P<name>\S+): step (?P<step>\d+)/(?P<total>\d+) \((?P<percent>\d+)%\)"
    r" \| loss (?P<loss>\d+\.\d{4}) \| lr (?P<lr>\d\.\d\de[-+]\d\d)"
    r" \| (?P<rate>\d+\.\d) patches/s \| ETA (?P<eta>\d+:\d\d:\d\d|\?)$"
)


def _rows(steps, loss=0.5, rate=20.0):
    return [StepRow(step, loss, 1e-3, rate) for step in steps]


def test_log_line_shows_step_mean_loss_rate_and_eta():
    line = ProgressLine("seed0", total=1000, every=100, first_step=0, started=0.0)
    line.rows = [StepRow(99, 0.4, 2e-3, 10.0), StepRow(100, 0.6, 1e-3, 30.0)]
    # 100 steps in 100 s: 900 more take 900 s; patches/s over both steps: 2 / (1/10 + 1/30)
    assert line.line(now=100.0) == (
        "seed0: step 100/1000 (10%) | loss 0.5000 | lr 1.00e-03 | 15.0 patches/s | ETA 0:15:00"
    )


def test_eta_of_a_resumed_run_counts_this_session_only():
    line = ProgressLine("run", total=300, every=50, first_step=100, started=10.0)
    line.rows = _rows([200])
    assert line.line(now=60.0).endswith("ETA 0:00:50")  # 100 steps in 50 s, 100 to go
    assert format_eta(math.nan) == "?" and format_eta(90061) == "1 day, 1:01:01"


def test_one_line_every_n_steps_and_after_the_last(caplog):
    line = ProgressLine("run", total=7, every=3, first_step=0)
    with caplog.at_level(logging.INFO, logger="lesionsoup.training.progress"):
        for chunk in ([1, 2], [3], [4, 5], [6], [7]):  # read back at states, validations, ...
            line.show(_rows(chunk))
    steps = [int(LINE.match(message)["step"]) for message in caplog.messages]
    assert steps == [3, 6, 7]


def test_pending_losses_are_read_back_once_and_a_non_finite_one_is_named(tmp_path):
    pending = PendingSteps()
    assert pending.read_back(tmp_path) == []
    for number, loss in enumerate((0.25, 0.5), start=1):
        pending.add(Step(number, torch.tensor(loss), 1e-3, 4, 0.5))
    rows = pending.read_back(tmp_path)
    assert [(row.step, row.loss) for row in rows] == [(1, 0.25), (2, 0.5)]
    assert rows[0].patches_per_s == pytest.approx(8 / 1.0, rel=0.05)  # 8 patches in about 1 s
    assert pending.read_back(tmp_path) == []
    for number, loss in enumerate((0.25, math.inf, math.nan), start=3):
        pending.add(Step(number, torch.tensor(loss), 1e-3, 4, 0.5))
    with pytest.raises(FloatingPointError, match=rf"{tmp_path}: loss is inf at step 4"):
        pending.read_back(tmp_path)


def test_run_off_a_terminal_logs_lines_not_progress_frames(tmp_path, caches, caplog, capsys):
    assert not sys.stderr.isatty()
    with caplog.at_level(logging.INFO):
        train_run(tmp_path / "seed0", caches, SPEC, SETTINGS, RunOptions(workers=0, log_every=4))
    lines = [LINE.match(message) for message in caplog.messages if LINE.match(message)]
    assert [(m["name"], int(m["step"]), int(m["total"])) for m in lines] == [
        ("seed0", 4, 8),
        ("seed0", 8, 8),
    ]
    assert "\r" not in capsys.readouterr().err


def test_the_step_reads_nothing_back_from_the_device(tmp_path, caches, monkeypatch):
    """Counted: the host reads (item, bool, float, tolist) made by lesionsoup code inside steps.

    torch's own CPU-side bookkeeping (the optimiser's step counter) is not counted; on a
    GPU, tests/training/test_train.py checks the same with CUDA's sync detection.
    """
    reads = {"n": 0, "inside": False}
    for method in ("item", "__bool__", "__float__", "tolist"):
        real = getattr(torch.Tensor, method)

        def counted(self, *args, _real=real, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if reads["inside"] and "lesionsoup" in caller:
                reads["n"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    real_step = loop.Trainer.step

    def watched_step(self, batch, since):
        reads["inside"] = True
        try:
            return real_step(self, batch, since)
        finally:
            reads["inside"] = False

    monkeypatch.setattr(loop.Trainer, "step", watched_step)
    train_run(tmp_path / "run", caches, SPEC, SETTINGS, quiet_options())
    assert reads["n"] == 0


class _StopAfterValidation(Exception):
    pass


def _stop(step, scores):
    raise _StopAfterValidation(step)


def test_curves_and_logs_exist_after_the_first_validation_of_a_running_job(tmp_path, caches):
    run = tmp_path / "run"
    with pytest.raises(_StopAfterValidation):
        train_run(run, caches, SPEC, SETTINGS, quiet_options(on_validation=_stop))
    assert not (run / "last.safetensors").exists()  # still running, as far as anyone can tell
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(run / "log.csv", newline="") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == [1, 2, 3, 4]
    with open(run / "validation.csv", newline="") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == [4]
    meta = train_run(run, caches, SPEC, SETTINGS, quiet_options())
    assert meta["step"] == SETTINGS.steps  # and the run resumes to its end
    with open(run / "validation.csv", newline="") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == [4, 8]


def test_log_interval_must_be_positive(tmp_path, caches):
    with pytest.raises(ValueError, match="log_every must be a positive number of steps, not 0"):
        train_run(tmp_path / "run", caches, SPEC, SETTINGS, RunOptions(workers=0, log_every=0))
