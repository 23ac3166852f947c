"""Run the workflow in a scratch folder and read what it planned or did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from support import REPO

SNAKEFILE = REPO / "Snakefile"
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"


def load_tiny_config() -> dict:
    return yaml.safe_load(TINY_CONFIG.read_text())


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, configfile: Path | None, *args: str, timeout: int = 900):
    """Run snakemake with the project's Snakefile; the venv's bin first on PATH.

    ``configfile`` None runs without ``--configfile``: the Snakefile then reads the
    ``config.yaml`` of ``workdir``, as a run from the repository root reads the demo's."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    study = [] if configfile is None else ["--configfile", str(configfile)]
    command = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *study, *args,
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def planned_jobs(workdir: Path, configfile: Path | None, *targets: str) -> Counter:
    """(rule, wildcards) of every job a dry run would execute (for ``targets``, default all),
    except the `all` target."""
    result = snakemake(workdir, configfile, "--dry-run", *targets)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs: Counter = Counter()
    rule = None
    for line in result.stdout.splitlines():
        if match := re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):", line):
            rule = match.group(1)
            if rule != "all":
                jobs[(rule, "")] += 1
        elif rule and rule != "all" and (match := re.match(r"^\s+wildcards: (.*)$", line)):
            jobs[(rule, "")] -= 1
            jobs[(rule, match.group(1))] += 1
    return +jobs


def planned_commands(workdir: Path, configfile: Path | None) -> list[str]:
    """The shell command of every job a dry run would execute (script rules have none)."""
    result = snakemake(workdir, configfile, "--dry-run", "--printshellcmds")
    assert result.returncode == 0, result.stdout + result.stderr
    return re.findall(r"^Shell command: (.+)$", result.stdout, re.MULTILINE)


def executed_rules(result: subprocess.CompletedProcess[str]) -> Counter[str]:
    """Jobs per rule that a finished (not dry) snakemake run executed, from its log."""
    finished = re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)$", result.stderr, re.MULTILINE)
    return Counter(finished)


def gpu_rule_blocks() -> dict[str, str]:
    """Rule name -> its text, for every rule or checkpoint of the workflow asking for GPUs
    (a ``gpu=`` resource: one, or a run's devices)."""
    blocks = {}
    for rules in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule |checkpoint )", rules.read_text(), flags=re.MULTILINE):
            if re.search(r"^\s+gpu=\S.*,$", block, flags=re.MULTILINE):
                blocks[re.match(r"(?:rule|checkpoint) (\w+):", block).group(1)] = block
    return blocks
