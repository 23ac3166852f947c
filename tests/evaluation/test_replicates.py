"""The bootstrap replicates file: summaries of resamples, their intervals, and its format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lesionsoup.evaluation.replicates import Replicates


@pytest.fixture
def replicates() -> Replicates:
    keys = (("m/a", "T", "EX"), ("m/b", "T", "EX"), ("m/a", "U", "EX"))
    scores = np.array([[0.1, 0.2, 0.3, 0.4], [0.3, np.nan, 0.5, 0.6], [0.9, 0.8, 0.7, 0.6]])
    return Replicates("ap", 0.5, keys, np.array([0.25, 0.45, 0.75]), scores)


def test_mean_of_models_is_taken_resample_by_resample_over_those_with_a_value(replicates):
    # hand-worked: (0.1+0.3)/2, 0.2 alone (b has none), (0.3+0.5)/2, (0.4+0.6)/2
    np.testing.assert_allclose(replicates.mean_of(["m/a", "m/b"], "T", "EX"), [0.2, 0.2, 0.4, 0.5])
    assert replicates.estimate_of(["m/a", "m/b"], "T", "EX") == pytest.approx(0.35)


def test_interval_is_numpy_percentile_at_the_stored_confidence(replicates):
    values = replicates.mean_of(["m/a"], "U", "EX")
    assert replicates.interval(values) == pytest.approx(tuple(np.percentile(values, [25, 75])))


def test_a_missing_row_is_named(replicates):
    with pytest.raises(KeyError, match="m/c"):
        replicates.mean_of(["m/c"], "T", "EX")


def test_save_and_load_round_trip_without_pickle(replicates, tmp_path: Path):
    path = tmp_path / "bootstrap.npz"
    replicates.save(path)
    loaded = Replicates.load(path)
    assert (loaded.metric, loaded.confidence, loaded.keys) == ("ap", 0.5, replicates.keys)
    np.testing.assert_array_equal(loaded.scores, replicates.scores)
    assert not list(tmp_path.glob(".*tmp*"))


def test_shapes_must_agree_and_a_damaged_file_is_named(tmp_path: Path):
    with pytest.raises(ValueError, match="2 replicate keys"):
        Replicates("ap", 0.95, (("a", "T", "EX"), ("b", "T", "EX")), np.zeros(1), np.zeros((2, 3)))
    broken = tmp_path / "bootstrap.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bootstrap.npz: not a bootstrap replicates file"):
        Replicates.load(broken)
