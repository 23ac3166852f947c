"""Runtime requests grow with each retry but never above the partition's limit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.workflow import REPO, load_tiny_config, snakemake, write_config

from lesionsoup.plan import cluster


@pytest.mark.parametrize(
    ("minutes", "maximum", "expected"),
    [
        (24 * 60, 1440, [1440, 1440, 1440]),  # the 24 h training on a 24 h partition
        (24 * 60, 2880, [1440, 2880, 2880]),
        (60, 1440, [60, 120, 180]),  # far below the limit: plain scaling
        (90, 100, [90, 100, 100]),
    ],
)
def test_runtime_is_scaled_by_attempt_and_capped_on_every_attempt(minutes, maximum, expected):
    requests = [cluster.runtime_request(minutes, attempt, maximum) for attempt in (1, 2, 3)]
    assert requests == expected


def test_rule_resource_caps_every_attempt_with_the_configured_maximum():
    runtime = cluster.scaled_runtime(24 * 60, {"cluster": {"max_runtime_minutes": 2000}})
    assert [runtime(None, attempt) for attempt in range(1, 11)] == [1440] + [2000] * 9


@pytest.mark.parametrize(("minutes", "attempt", "maximum"), [(0, 1, 60), (60, 0, 60), (60, 1, 0)])
def test_non_positive_values_are_refused_by_name(minutes, attempt, maximum):
    with pytest.raises(ValueError, match="at least 1"):
        cluster.runtime_request(minutes, attempt, maximum)


def test_no_rule_scales_runtime_outside_the_capped_function():
    rules = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    uncapped = [
        f"{path.name}:{number}"
        for path in rules
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bruntime\s*=.*\battempt\b", line)
    ]
    assert rules and not uncapped


def resource_blocks(rules: list[Path]) -> dict[str, list[str]]:
    """Each ``resources:`` block of the rule files spelt out (not one of common.smk's, such
    as ``**SMALL_JOB``) -> the rules that spell it."""
    blocks: dict[str, list[str]] = {}
    for path in rules:
        for block in re.split(r"^(?=rule |checkpoint )", path.read_text(), flags=re.MULTILINE):
            written = re.search(r"^    resources:\n((?:        .*\n)+)", block, re.MULTILINE)
            if written and "**" not in written.group(1):
                name = re.match(r"(?:rule|checkpoint) (\w+):", block).group(1)
                blocks.setdefault(written.group(1), []).append(name)
    return blocks


def test_no_resources_block_is_spelt_out_twice():
    """Rules that ask for the same resources share a block of common.smk (SMALL_JOB...)."""
    blocks = resource_blocks(sorted((REPO / "workflow" / "rules").glob("*.smk")))
    assert len(blocks) > 10
    assert {block: rules for block, rules in blocks.items() if len(rules) > 1} == {}


def test_every_job_of_the_tiny_study_asks_for_at_most_the_configured_maximum(tmp_path):
    config = load_tiny_config()
    config["cluster"] = {"max_runtime_minutes": 45}  # below train's 24 h, above fixed requests
    result = snakemake(tmp_path, write_config(tmp_path / "c.yaml", config), "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    runtimes: dict[str, set[int]] = {}
    job = r"^rule (\w+):\n(?:[ \t]+.*\n)*?[ \t]+resources: .*?runtime=(\d+)"
    for rule, minutes in re.findall(job, result.stdout, re.MULTILINE):
        runtimes.setdefault(rule, set()).add(int(minutes))
    assert max(max(values) for values in runtimes.values()) == 45
    for rule in ("train", "warmup", "hpo_trial", "evaluate", "merge", "preprocess"):
        assert runtimes[rule] == {45}, rule
    assert runtimes["synth"] == {10}
