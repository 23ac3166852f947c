"""Measured job costs: Snakemake's benchmark files (written here by Snakemake's own writer)
read back, and the cost table that uses them where every job behind a model has one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from snakemake.benchmark import BenchmarkRecord, write_benchmark_records

from lesionsoup.core import paths
from lesionsoup.core.benchmark_records import measured_seconds, read_record
from lesionsoup.core.checkpoint import save_checkpoint
from lesionsoup.evaluation.costs import cost_table
from lesionsoup.evaluation.evaluate import COLUMNS
from lesionsoup.inference.predictor import write_ensemble

ARCH = {"encoder": "resnet18", "lesions": ["EX"]}


def write_record(path: Path, *seconds: float, extended: bool = False, sampled: bool = True):
    """One row per repeat, as Snakemake writes a ``benchmark:`` file."""
    records = []
    for value in seconds:
        record = BenchmarkRecord(running_time=value, max_rss=512.0, cpu_time=2 * value)
        record.data_collected = sampled
        # what Snakemake fills in for a job before it writes an extended record
        record.wildcards, record.params, record.resources = {"combo": "A"}, {}, {"gpu": 1}
        record.input = []
        records.append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_benchmark_records(records, str(path), extended)


@pytest.mark.parametrize("extended", [False, True])
def test_a_record_is_the_mean_over_its_repeats(tmp_path: Path, extended: bool) -> None:
    path = tmp_path / "job.tsv"
    write_record(path, 10.0, 20.0, extended=extended)
    record = read_record(path)
    assert record.seconds == pytest.approx(15.0)
    assert record.cpu_seconds == pytest.approx(30.0)
    assert record.max_rss_mb == pytest.approx(512.0)


def test_an_unsampled_job_has_seconds_only(tmp_path: Path) -> None:
    path = tmp_path / "job.tsv"
    write_record(path, 0.3, sampled=False)  # exited before the first sample: NA
    record = read_record(path)
    assert (record.seconds, record.cpu_seconds, record.max_rss_mb) == (0.3, None, None)
    assert measured_seconds(tmp_path / "absent.tsv") is None
    assert measured_seconds(None) is None


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "no rows"),
        ("a\tb\n1\t2\n", "no column 's'"),
        ("s\th:m:s\nNA\t-\n", "no wall-clock seconds"),
        ("s\tcpu_time\n1.0\tmany\n", "'cpu_time' holds a value that is not a number"),
    ],
)
def test_a_bad_record_is_named(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "job.tsv"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"{path}.*{problem}"):
        read_record(path)


@pytest.mark.parametrize(
    "model, record",
    [
        ("results/models/A+B/base/seed2/best.safetensors", "train/A+B/base/seed2"),
        ("results/models/A/fgg-x/seed0/snapshots/step9.safetensors", "train/A/fgg-x/seed0"),
        ("results/hpo/A/base/trials/3/best.safetensors", "hpo_trial/A/base/trial3"),
        ("results/merged/A/GoU.safetensors", "merge/A/GoU"),
        ("results/merged/A/ensemble-top2.json", "ensemble/A/top2"),
        ("results/models/A/init.safetensors", None),  # the warm-up: no model of its own
        ("results/merged/A/GoU.json", None),
        ("elsewhere/best.safetensors", None),
    ],
)
def test_the_job_that_wrote_a_model(model: str, record: str | None) -> None:
    expected = None if record is None else f"results/benchmarks/{record}.tsv"
    assert paths.writer_benchmark(model) == expected


def _results_tree() -> dict[str, str]:
    """Two runs, a uniform soup of their best checkpoints and an ensemble of them, written
    where the workflow writes them (relative paths, in the working directory)."""
    runs = [paths.run("IDRID", "base", seed) + "/best.safetensors" for seed in (0, 1)]
    for run, seconds in zip(runs, (100.0, 50.0), strict=True):
        Path(run).parent.mkdir(parents=True)
        metadata = {"architecture": ARCH, "wall_seconds": seconds}
        save_checkpoint(Path(run), {"w": torch.zeros(1)}, metadata)
    soup = paths.merged("IDRID", "uniform")
    Path(soup).parent.mkdir(parents=True)
    # as merging/stage.py writes it: compute_seconds = training + merge + selection
    merged = {
        "training_seconds": 150.0,
        "compute_seconds": 155.0,
        "merge_seconds": 2.0,
        "selection_seconds": 3.0,
    }
    metadata = {"architecture": ARCH, "ingredients": runs, **merged}
    save_checkpoint(Path(soup), {"w": torch.zeros(1)}, metadata)
    ensemble = paths.ensemble("IDRID", "all")
    write_ensemble(Path(ensemble), [Path(run) for run in runs], {"candidates": runs})
    return {"single": runs[0], "uniform": soup, "ensemble": ensemble}


def _metrics(models: dict[str, str]) -> pd.DataFrame:
    rows = [(path, "IDRID", method, "IDRID", "EX", "ap", 0.5) for method, path in models.items()]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_the_cost_table_reads_the_jobs_records(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    models = _results_tree()
    metrics = _metrics(models)
    before = cost_table(metrics, []).set_index("method")
    assert set(before["source"]) == {"sidecar"}  # no records yet: the sidecars' times
    assert before.loc["uniform", "compute_seconds"] == pytest.approx(155.0)

    for seed, seconds in ((0, 400.0), (1, 300.0)):
        write_record(Path(paths.TRAIN_BENCHMARK.format(combo="IDRID", recipe="base", seed=seed)),
                     seconds)  # fmt: skip
    write_record(Path(paths.MERGE_BENCHMARK.format(combo="IDRID", method="uniform")), 30.0)
    write_record(Path(paths.ENSEMBLE_BENCHMARK.format(combo="IDRID", name="all")), 8.0, 12.0)
    measured = cost_table(metrics, []).set_index("method")
    assert set(measured["source"]) == {"measured"}
    # hand-worked: the single model's run; the soup's two runs and its merge job; the
    # ensemble's two candidate runs and the mean of its job's two repeats
    assert measured.loc["single", "training_seconds"] == pytest.approx(400.0)
    assert measured.loc["single", "merging_seconds"] == 0.0
    assert measured.loc["uniform", "compute_seconds"] == pytest.approx(730.0)
    assert measured.loc["ensemble", "merging_seconds"] == pytest.approx(10.0)
    assert measured.loc["ensemble", "compute_seconds"] == pytest.approx(710.0)

    write_record(Path(paths.TRAIN_BENCHMARK.format(combo="IDRID", recipe="base", seed=1)), 500.0)
    changed = cost_table(metrics, []).set_index("method")
    assert changed.loc["single", "compute_seconds"] == pytest.approx(400.0)  # not its run
    assert changed.loc["uniform", "compute_seconds"] == pytest.approx(930.0)
    assert changed.loc["ensemble", "compute_seconds"] == pytest.approx(910.0)


def test_a_model_with_a_job_unrecorded_falls_back_to_its_sidecars(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models = _results_tree()
    write_record(Path(paths.TRAIN_BENCHMARK.format(combo="IDRID", recipe="base", seed=0)), 400.0)
    write_record(Path(paths.MERGE_BENCHMARK.format(combo="IDRID", method="uniform")), 30.0)
    costs = cost_table(_metrics(models), []).set_index("method")
    assert costs.loc["single", "source"] == "measured"
    assert costs.loc["uniform", "source"] == "sidecar"  # seed 1's run left no record
    assert costs.loc["uniform", "compute_seconds"] == pytest.approx(155.0)


def test_a_soup_of_a_continuation_counts_the_run_it_continued(tmp_path, monkeypatch):
    """An SWA model: a soup of one SWA run's snapshots, which continued a base run; its
    training is both runs' jobs (hand-worked: 400 + 50), as its sidecar's is."""
    monkeypatch.chdir(tmp_path)
    base = Path(paths.run("IDRID", "base", 0)) / "best.safetensors"
    swa_run = Path(paths.run("IDRID", "swa-base", 0))
    snapshots = [swa_run / "last.safetensors", swa_run / "snapshot.safetensors"]
    for path, metadata in (
        (base, {"wall_seconds": 400.0}),
        *((snapshot, {"wall_seconds": 50.0, "parent": str(base)}) for snapshot in snapshots),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, {"w": torch.zeros(1)}, {"architecture": ARCH, **metadata})
    swa = Path(paths.merged("IDRID", "swa-seed0"))
    swa.parent.mkdir(parents=True)
    metadata = {"architecture": ARCH, "ingredients": [str(s) for s in snapshots]}
    save_checkpoint(swa, {"w": torch.zeros(1)}, metadata)
    write_record(Path(paths.TRAIN_BENCHMARK.format(combo="IDRID", recipe="base", seed=0)), 400.0)
    write_record(Path(paths.TRAIN_BENCHMARK.format(combo="IDRID", recipe="swa-base", seed=0)), 50.0)
    write_record(Path(paths.MERGE_BENCHMARK.format(combo="IDRID", method="swa-seed0")), 5.0)
    costs = cost_table(_metrics({"swa": str(swa)}), []).set_index("method")
    assert costs.loc["swa", "source"] == "measured"
    assert costs.loc["swa", "training_seconds"] == pytest.approx(450.0)
    assert costs.loc["swa", "merging_seconds"] == pytest.approx(5.0)
