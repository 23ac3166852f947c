"""SLURM's warning signal (profile: `--signal=TERM@300`) lets a training save its state.

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

import pytest

from workflow import load_tiny_config, snakemake, write_config

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


def test_stateful_rules_exec_their_command(tmp_path):
    configfile = write_config(tmp_path / "c.yaml", load_tiny_config())
    result = snakemake(tmp_path, configfile, "--dry-run", "--printshellcmds")
    assert result.returncode == 0, result.stdout + result.stderr
    commands: dict[str, set[str]] = {}
    job = r"^rule (\w+):\n(?:[ \t]+.*\n)*?Shell command: (\S+)"
    for rule, word in re.findall(job, result.stdout, re.MULTILINE):
        commands.setdefault(rule, set()).add(word)
    for rule in STATEFUL_RULES:
        assert commands[rule] == {"exec"}, (rule, commands.get(rule))
