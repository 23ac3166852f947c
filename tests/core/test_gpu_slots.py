"""Local GPU slots (core.gpu_slots): concurrent jobs claim different devices, a killed job
frees its slot, a scheduler's placement is left alone; and the `lesionsoup` commands of the
workflow's GPU rules claim theirs, under Snakemake too."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.workflow import gpu_rule_blocks

from lesionsoup.cli import build_parser
from lesionsoup.commands.arguments import claim_gpus
from lesionsoup.core.gpu_slots import (
    COUNT_ENV,
    SLOTS_DIR_ENV,
    claim_local_gpus,
    local_gpu_count,
    try_claim,
)

#: A job that claims ``argv[1]`` GPUs, writes CUDA_VISIBLE_DEVICES to ``argv[2]`` (by a
#: rename: read whole or not at all), and holds its claim until ``argv[3]`` exists.
HOLDER = """
import logging, os, sys, time
from pathlib import Path
from lesionsoup.core.gpu_slots import claim_local_gpus
logging.basicConfig(level=logging.INFO)
claim = claim_local_gpus(int(sys.argv[1]))
claimed, release = Path(sys.argv[2]), Path(sys.argv[3])
claimed.with_suffix(".tmp").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
claimed.with_suffix(".tmp").rename(claimed)
while not release.exists():
    time.sleep(0.05)
"""


def local_environment(slots: Path, gpus: int) -> dict[str, str]:
    """This process's environment as a local job's: no scheduler, ``gpus`` simulated GPUs."""
    environ = {
        k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")
    }
    return {**environ, COUNT_ENV: str(gpus), SLOTS_DIR_ENV: str(slots)}


class Holder:
    """A job in its own process holding its claim until released (or killed)."""

    def __init__(self, folder: Path, name: str, environ: dict[str, str], count: int = 1):
        self.claimed, self.release_file = folder / f"{name}.claimed", folder / f"{name}.release"
        command = [
            sys.executable,
            "-c",
            HOLDER,
            str(count),
            str(self.claimed),
            str(self.release_file),
        ]
        self.process = subprocess.Popen(command, env=environ, stderr=subprocess.PIPE, text=True)

    def devices(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while not self.claimed.exists():
            assert self.process.poll() is None, self.process.stderr.read()
            assert time.monotonic() < deadline, f"{self.claimed.name}: no claim in {timeout} s"
            time.sleep(0.05)
        return self.claimed.read_text()

    def release(self) -> str:
        self.release_file.touch()
        self.process.wait(timeout=30)
        return self.process.stderr.read()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def holders(tmp_path):
    started: list[Holder] = []

    def start(name: str, gpus: int = 2, count: int = 1) -> Holder:
        holder = Holder(tmp_path, name, local_environment(tmp_path / "slots", gpus), count)
        started.append(holder)
        return holder

    yield start
    for holder in started:
        if holder.process.poll() is None:
            holder.kill()
        holder.process.stderr.close()


def test_two_processes_get_different_devices(holders):
    a, b = holders("a"), holders("b")
    assert sorted([a.devices(), b.devices()]) == ["0", "1"]


def test_a_third_claim_waits_until_a_holder_exits(holders):
    a, b = holders("a"), holders("b")
    held = {"a": a.devices(), "b": b.devices()}
    c = holders("c")
    time.sleep(1.5)
    assert not c.claimed.exists() and c.process.poll() is None  # waiting, not failed
    a.release()
    assert c.devices() == held["a"]
    assert "waiting for 1 free GPU slot(s) of 2" in c.release()


def test_a_killed_holder_frees_its_slot(holders):
    a = holders("a", gpus=1)
    assert a.devices() == "0"
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(timeout=30)
    b = holders("b", gpus=1)
    assert b.devices(timeout=10) == "0"
    assert "waiting" not in b.release()


def test_a_multi_gpu_claim_takes_several_slots_or_none(tmp_path, holders):
    a = holders("a", gpus=3, count=2)
    assert a.devices() == "0,1"
    assert try_claim(2, 3, tmp_path / "slots") is None  # one free slot: nothing held
    single = try_claim(1, 3, tmp_path / "slots")
    assert single is not None and single.devices == (2,)
    single.release()


@pytest.mark.parametrize(
    "scheduler",
    [{"CUDA_VISIBLE_DEVICES": "3"}, {"CUDA_VISIBLE_DEVICES": ""}, {"SLURM_JOB_ID": "7"}],
)
def test_a_scheduler_placement_is_left_alone(tmp_path, scheduler):
    environ = {COUNT_ENV: "2", SLOTS_DIR_ENV: str(tmp_path / "slots"), **scheduler}
    assert claim_local_gpus(environ=environ) is None
    assert environ == {COUNT_ENV: "2", SLOTS_DIR_ENV: str(tmp_path / "slots"), **scheduler}
    assert not (tmp_path / "slots").exists()


def test_no_gpu_claims_nothing(tmp_path):
    environ = {COUNT_ENV: "0", SLOTS_DIR_ENV: str(tmp_path / "slots")}
    assert claim_local_gpus(environ=environ) is None
    assert "CUDA_VISIBLE_DEVICES" not in environ and not (tmp_path / "slots").exists()


def test_a_claim_sets_the_visible_devices_in_pci_order(tmp_path):
    environ = {COUNT_ENV: "2", SLOTS_DIR_ENV: str(tmp_path / "slots")}
    claim = claim_local_gpus(environ=environ)
    assert claim is not None and claim.devices == (0,)
    assert environ["CUDA_VISIBLE_DEVICES"] == "0" and environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert (tmp_path / "slots" / "0.lock").read_text() == f"{os.getpid()}\n"
    claim.release()
    with pytest.raises(ValueError, match="cannot claim 3 GPU"):
        claim_local_gpus(3, environ={COUNT_ENV: "2", SLOTS_DIR_ENV: str(tmp_path / "slots")})


@pytest.mark.parametrize(
    ("script", "count"),
    [("printf '0\\n1\\n2\\n'", 3), ("echo 'no driver' >&2; exit 9", 0), (None, 0)],
)
def test_gpus_are_counted_by_nvidia_smi(tmp_path, monkeypatch, script, count):
    if script is not None:
        fake = tmp_path / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\n{script}\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert local_gpu_count({}) == count
    assert local_gpu_count({COUNT_ENV: "5"}) == 5


@pytest.mark.parametrize(
    ("device", "claims"),
    [("auto", True), ("cuda", True), ("cpu", False), ("cuda:1", False), (None, False)],
)
def test_commands_claim_for_auto_and_cuda_only(tmp_path, monkeypatch, device, claims):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv(COUNT_ENV, "1")
    monkeypatch.setenv(SLOTS_DIR_ENV, str(tmp_path / "slots"))
    args = argparse.Namespace() if device is None else argparse.Namespace(device=device)
    claim = claim_gpus(args)
    assert (claim is not None) == claims
    assert (os.environ.get("CUDA_VISIBLE_DEVICES") == "0") == claims
    if claim is not None:
        claim.release()


@pytest.mark.parametrize(
    "arguments",
    [
        ["train", "-o", "run", "--cache", "c", "--model", "{}", "--settings", '{"devices": 3}'],
        [
            "hpo-trial", "-o", "t", "--job-index", "0", "--combo", "A", "--recipe", "r",
            "--storage", "s", "--cache", "c", "--definition", '{"settings": {"devices": 3}}',
        ],
    ],
    ids=["train", "hpo-trial"],
)  # fmt: skip
def test_a_run_on_several_devices_claims_as_many(tmp_path, monkeypatch, arguments):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv(COUNT_ENV, "4")
    monkeypatch.setenv(SLOTS_DIR_ENV, str(tmp_path / "slots"))
    claim = claim_gpus(build_parser().parse_args(arguments))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"
    claim.release()


def gpu_rule_commands() -> dict[str, str]:
    """Rule name -> the `lesionsoup` subcommand it runs, for every rule asking for a GPU."""
    commands = {}
    for name, block in gpu_rule_blocks().items():
        command = re.search(r'"(?:exec )?lesionsoup ([\w-]+)', block)
        commands[name] = command.group(1) if command else "(no lesionsoup command)"
    return commands


def test_every_gpu_rule_runs_a_command_that_claims_its_gpu():
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    commands = gpu_rule_commands()
    assert {"train", "warmup", "hpo_trial", "evaluate", "merge", "ensemble"} <= set(commands)
    without = {
        rule: command
        for rule, command in commands.items()
        if command not in subcommands or subcommands[command].get_default("device") is None
    }
    assert without == {}, "GPU rules whose command has no --device (so claims no GPU slot)"


def test_the_entry_point_claims_before_the_command_runs(tmp_path):
    """`lesionsoup evaluate` of an absent model: the claim is logged, then the error."""
    lesionsoup = Path(sys.executable).parent / "lesionsoup"
    model, cache, output = (tmp_path / name for name in ("absent.safetensors", "cache", "o.json"))
    result = subprocess.run(
        [str(lesionsoup), "evaluate", str(model), str(cache), "-o", str(output)],
        env=local_environment(tmp_path / "slots", 2),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    claimed = result.stderr.index("this job runs on physical GPU 0 of 2 (CUDA_VISIBLE_DEVICES=0")
    assert claimed < result.stderr.index("absent.safetensors")


#: A GPU job through `lesionsoup`'s main (its handler replaced by a 2-second recorder).
SNAKEFILE = """
rule all:
    input:
        expand("job{{index}}.json", index=range(2)),


rule job:
    output:
        "job{{index}}.json",
    resources:
        gpu=1,
    shell:
        "{python} {script} {{output}}"
"""

RECORDER = """
import json, os, sys, time
from pathlib import Path
from lesionsoup import cli
from lesionsoup.commands import evaluation

def record(args):
    start = time.time()
    time.sleep(2)
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    Path(args.output[0]).write_text(json.dumps([devices, start, time.time()]))

evaluation._evaluate = record
sys.exit(cli.main(["evaluate", "model.safetensors", "cache", "-o", sys.argv[1]]))
"""


def test_concurrent_snakemake_gpu_jobs_get_different_devices(tmp_path):
    (tmp_path / "record.py").write_text(textwrap.dedent(RECORDER))
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(SNAKEFILE.format(python=sys.executable, script=tmp_path / "record.py"))
    environ = local_environment(tmp_path / "unused", 2)
    del environ[SLOTS_DIR_ENV]  # the default: .snakemake/gpu-slots of the working directory
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(tmp_path)]
    result = subprocess.run(
        [*command, "--cores", "2", "--resources", "gpu=2"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = [json.loads((tmp_path / f"job{index}.json").read_text()) for index in range(2)]
    (a, a_start, a_end), (b, b_start, b_end) = jobs
    assert a_start < b_end and b_start < a_end, "the two GPU jobs did not run at the same time"
    assert sorted([a, b]) == ["0", "1"]
    assert sorted(p.name for p in (tmp_path / ".snakemake" / "gpu-slots").iterdir()) == [
        "0.lock",
        "1.lock",
    ]
