"""The Snakemake profiles as Snakemake itself reads them (the cluster run is run_test.sh)."""

import ast
from pathlib import Path

import pytest
from snakemake.cli import get_profile_dir
from snakemake.profiles import ProfileConfigFileParser

REPOSITORY = Path(__file__).resolve().parents[2]
SLURM_PROFILE = REPOSITORY / "profiles" / "slurm" / "config.yaml"
LOCAL_PROFILE = REPOSITORY / "profiles" / "local" / "config.yaml"


def read_profile(path: Path) -> dict[str, str | list[str]]:
    with path.open() as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def assignments(entries: list[str]) -> dict[str, str]:
    """`name=expression` entries of a profile key, as Snakemake passes them on."""
    return dict(entry.split("=", 1) for entry in entries)


def test_bare_profile_name_slurm_resolves_to_the_repository_profile(monkeypatch):
    monkeypatch.chdir(REPOSITORY)
    profile_dir, config_file = get_profile_dir("slurm")
    assert config_file.resolve() == SLURM_PROFILE
    assert profile_dir.resolve() == SLURM_PROFILE.parent


@pytest.mark.parametrize("account, partition", [("def-lab", "gpu_a100"), ("", "")])
def test_slurm_profile_takes_account_and_partition_from_the_environment(
    monkeypatch, account, partition
):
    monkeypatch.setenv("LESIONSOUP_SLURM_ACCOUNT", account)
    monkeypatch.setenv("LESIONSOUP_SLURM_PARTITION", partition)
    resources = assignments(read_profile(SLURM_PROFILE)["default-resources"])
    # Snakemake evaluates each value as a Python expression; empty means "not set".
    assert ast.literal_eval(resources["slurm_account"]) == account
    assert ast.literal_eval(resources["slurm_partition"]) == partition


def test_slurm_profile_submits_requeueable_retried_jobs_and_no_test_settings(monkeypatch):
    monkeypatch.delenv("LESIONSOUP_SLURM_ACCOUNT", raising=False)
    monkeypatch.delenv("LESIONSOUP_SLURM_PARTITION", raising=False)
    profile = read_profile(SLURM_PROFILE)
    assert profile["executor"] == "slurm"
    assert profile["slurm-requeue"] == "True"
    assert int(profile["retries"]) == 2
    resources = assignments(profile["default-resources"])
    assert {"mem_mb", "runtime"} <= resources.keys()
    assert "gpu" not in resources and "gpu_model" not in resources
    assert not {"slurm-status-command", "slurm-init-seconds-before-status-checks"} & set(profile)


def test_local_profile_runs_gpu_jobs_one_at_a_time():
    profile = read_profile(LOCAL_PROFILE)
    assert assignments(profile["resources"]) == {"gpu": "1"}
    assert assignments(profile["set-resource-scopes"]) == {"gpu": "local"}
