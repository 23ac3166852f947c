"""benchmarks/cost_table.py on the tiny study: the GPU-hours per rule read each job's Snakemake
benchmark record where there is one, the model's estimate where not, and say which."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import REPO
from test_job_costs import write_record

sys.path.insert(0, str(REPO / "benchmarks"))
import cost_table  # noqa: E402  (benchmarks/ is not a package)

COSTS = cost_table.Costs(
    step_s=0.25,
    image_s=0.1,
    vram_gib=20.0,
    checkpoint_bytes=1,
    cache_bytes_per_image=1,
    step_flops=1.0,
    image_flops=1.0,
    job_overhead_s=60.0,
    source="assumed",
)


def rows(config: dict, results: Path) -> dict[str, list[str]]:
    """Rule -> [jobs, GPU seconds, source] of the measured table."""
    lines = cost_table.measured_table(config, COSTS, results)
    assert lines[0] == "| GPU jobs (rule) | jobs | GPU seconds | GPU-hours | source |"
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return {cell[0].strip("*"): [cell[1], cell[2], cell[4]] for cell in cells}


def seconds(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_the_table_reads_the_records_of_the_tiny_study(tmp_path: Path) -> None:
    config = cost_table.load_config(REPO / "tests" / "configs" / "tiny.yaml")
    jobs = cost_table.gpu_jobs(config)
    trains = [job for job in jobs if job.rule == "train"]
    assert {job.rule for job in jobs} == {"warmup", "train", "hpo_trial", "evaluate"}
    modeled = rows(config, tmp_path)
    assert {row[2] for row in modeled.values()} == {"model"}
    assert modeled["train"][0] == str(len(trains))

    first = trains[0]
    write_record(tmp_path / first.record, 100.0)
    one = rows(config, tmp_path)
    assert one["train"][2] == f"measured 1 of {len(trains)}, model for the rest"
    devices = first.settings["devices"]
    expected = seconds(modeled["train"][1]) + devices * (
        100.0 - cost_table.modeled_s(config, first, COSTS)
    )
    assert seconds(one["train"][1]) == pytest.approx(expected, abs=1)
    assert one["evaluate"] == modeled["evaluate"]

    write_record(tmp_path / first.record, 250.0)  # the job reran and took longer
    changed = rows(config, tmp_path)
    assert seconds(changed["train"][1]) == pytest.approx(expected + devices * 150.0, abs=1)
    assert seconds(changed["all"][1]) - seconds(one["all"][1]) == pytest.approx(
        devices * 150.0, abs=1
    )

    for job in jobs:
        write_record(tmp_path / job.record, 1.0)
    for name in ("uniform", "greedy"):  # merges: jobs the model leaves out, added as recorded
        write_record(
            tmp_path / cost_table.paths.MERGE_BENCHMARK.format(combo="A", method=name), 2.5
        )
    measured = rows(config, tmp_path)
    assert {row[2] for row in measured.values()} == {"measured"}
    assert measured["merge (not in the model)"][:2] == ["2", "5"]
    assert measured["all"][0] == str(len(jobs) + 2)
    evaluations = sum(job.rule == "evaluate" for job in jobs)  # one device, 1 s each
    assert seconds(measured["evaluate"][1]) == pytest.approx(evaluations, abs=1)
