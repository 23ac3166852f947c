"""SLURM's warning signal (`--signal=TERM@300`, cluster.warning_seconds) lets a training save.

SLURM sends the signal to every process of the job step: the jobstep's Snakemake, the rule's
shell and the command. Once the step's first process (Snakemake) exits, SLURM kills whatever
is left. A shell between Snakemake and the command dies at the signal at once, so Snakemake
would exit while the command is still saving; the rules whose command saves its state on
SIGTERM therefore `exec` it. Emulated here with a process group, without SLURM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from snakemake_executor_plugin_slurm.validation import validate_slurm_extra
from support.workflow import load_tiny_config, snakemake, write_config

#: Rules whose command runs the trainer, which saves its state on SIGTERM.
STATEFUL_RULES = ("warmup", "train", "hpo_trial")

WORKER = """
import signal, sys, time
requested = []
signal.signal(signal.SIGTERM, lambda *_: requested.append(True))
open("started", "w").close()
while not requested:
    time.sleep(0.05)
time.sleep(2)  # writing the state
open("saved", "w").close()
sys.exit(143)
"""

SNAKEFILE = """
rule job:
    output: "done"
    log: "job.log"
    shell: "exec {python} worker.py > {{log}} 2>&1"
"""


def test_exec_command_finishes_saving_before_the_job_step_ends(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(python=sys.executable))
    command = [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet"]
    step = subprocess.Popen(command, cwd=tmp_path, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        assert step.poll() is None, "snakemake ended before the command started"
        time.sleep(0.1)
    os.killpg(step.pid, signal.SIGTERM)  # SLURM's --signal: every process of the step
    step.wait(timeout=120)
    with pytest.raises(ProcessLookupError):  # nothing left for SLURM to kill at step end
        os.killpg(step.pid, signal.SIGKILL)
    assert (tmp_path / "saved").exists()
    assert step.returncode != 0  # the job fails, so Snakemake retries it and it resumes


def _dry_run(tmp_path, cluster: dict) -> str:
    config = load_tiny_config()
    config["cluster"] = cluster
    result = snakemake(
        tmp_path, write_config(tmp_path / "c.yaml", config), "--dry-run", "--printshellcmds"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_stateful_rules_exec_their_command_and_only_they_ask_for_the_warning(tmp_path):
    output = _dry_run(tmp_path, {"warning_seconds": 240})
    job = r"^rule (\w+):\n((?:[ \t]+.*\n)*?)Shell command: (\S+)"
    first_words: dict[str, set[str]] = {}
    extras: dict[str, set[str]] = {}
    for rule, lines, word in re.findall(job, output, re.MULTILINE):
        first_words.setdefault(rule, set()).add(word)
        extras.setdefault(rule, set()).update(re.findall(r"slurm_extra=([^,\n]*)", lines))
    for rule in STATEFUL_RULES:
        assert first_words[rule] == {"exec"}, (rule, first_words.get(rule))
        assert extras[rule] == {"--signal=TERM@240"}, rule
    # an option the executor leaves to the user (it refuses those it sets itself)
    validate_slurm_extra(
        SimpleNamespace(resources=SimpleNamespace(slurm_extra="--signal=TERM@240"))
    )
    others = {rule: found for rule, found in extras.items() if rule not in STATEFUL_RULES}
    assert others and not any(others.values()), others


def test_no_warning_when_zero_and_a_warning_longer_than_the_limit_is_refused(tmp_path):
    output = _dry_run(tmp_path, {"warning_seconds": 0})
    assert "--signal" not in output
    config = load_tiny_config()
    config["cluster"] = {"warning_seconds": 3600, "max_runtime_minutes": 60}
    result = snakemake(tmp_path, write_config(tmp_path / "bad.yaml", config), "--dry-run")
    assert result.returncode != 0
    assert "cluster.warning_seconds" in result.stdout + result.stderr
