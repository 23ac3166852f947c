"""The Snakemake profiles as Snakemake itself reads them (the cluster run is run_test.sh)."""

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
from snakemake.cli import get_profile_dir
from snakemake.profiles import ProfileConfigFileParser
from snakemake_executor_plugin_slurm.utils import set_gres_string
from support.workflow import gpu_rule_blocks

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


class _Resources(dict):
    """A job's resources as the SLURM executor reads them (`.get` and attributes)."""

    __getattr__ = dict.__getitem__


def commented_variants(tmp_path: Path) -> dict[str, dict[str, dict[str, str]]]:
    """The profile's commented `set-resources` variants, uncommented and read by Snakemake."""
    variants: dict[str, list[str]] = {}
    for line in SLURM_PROFILE.read_text().splitlines():
        if line.startswith("# -- "):
            lines = variants.setdefault(line[5:], [])
        elif variants and line.startswith("# "):
            lines.append(line[2:])
    parsed = {}
    for title, lines in variants.items():
        path = tmp_path / "variant.yaml"
        path.write_text("\n".join(lines) + "\n")
        by_rule: dict[str, dict[str, str]] = {}
        for entry in read_profile(path)["set-resources"]:
            rule, assignment = entry.split(":", 1)
            name, value = assignment.split("=", 1)
            by_rule.setdefault(rule, {})[name] = ast.literal_eval(value)
        parsed[title] = by_rule
    return parsed


def test_slurm_profile_sends_no_warning_signal_to_every_job():
    """The rules that save their state ask for it; any other command would die early."""
    assert "slurm_extra" not in assignments(read_profile(SLURM_PROFILE)["default-resources"])


def test_slurm_profile_keeps_slurm_logs_beside_the_rule_logs():
    assert read_profile(SLURM_PROFILE)["slurm-logdir"] == "logs/slurm"


def test_commented_gpu_variants_cover_every_gpu_rule_and_reach_sbatch_as_documented(tmp_path):
    variants = commented_variants(tmp_path)
    assert len(variants) == 2
    expected = {"gpu_model": " --gpus=a100:1", "gres": " --gres=gpu:1"}
    for title, by_rule in variants.items():
        assert set(by_rule) == set(gpu_rule_blocks()), title
        assert len({tuple(sorted(values.items())) for values in by_rule.values()}) == 1
        values = next(iter(by_rule.values()))
        kind = "gres" if "gres" in values else "gpu_model"
        resources = _Resources({"gpu": 1, **values})  # the rules' own gpu=1, then the variant
        assert set_gres_string(SimpleNamespace(resources=resources)) == expected[kind], title
